package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildDaemon compiles cmd/dmarc-milter from this checkout (with -race when
// the tests run with it, so that the daemon's races fail the suite too).
func buildDaemon(t *testing.T, root string) (string, error) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dmarc-milter")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/dmarc-milter")
	cmd := exec.Command(goTool(), args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/dmarc-milter: %v\n%s", err, out)
	}
	return bin, nil
}

// goTool is the go command that runs this test.
func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// daemonConfigs are the configuration files of the three daemons: what each
// scenario relies on is set explicitly, not left to defaults.
var daemonConfigs = map[string]string{
	// The main daemon: quarantine by header (Sieve files it into Junk).
	"header": `
[actions]
reject_policy = "reject-unless-indirect"
quarantine_method = "header"
temperror = "tempfail"
`,
	// Quarantine into Postfix's hold queue.
	"hold": `
[actions]
reject_policy = "reject-unless-indirect"
quarantine_method = "hold"
temperror = "tempfail"
`,
	// Takes in the reports sent to its intake mailbox (scIntake).
	"intake": `
[intake]
domains = ["intake-owner.example"]
addresses = ["dmarc-reports@rcpt.example"]
ptr_budget = "1s"
health_interval = "0s"
`,
	// Stopped and started by the restart scenario.
	"restart": `
[actions]
reject_policy = "reject-unless-indirect"
quarantine_method = "header"
temperror = "tempfail"
`,
	// Trusts one ARC sealer and delivers what indirect evidence vouches
	// for; list headers count for nothing (arc_test.go).
	"arc": `
[actions]
reject_policy = "reject"
indirect_flow = "deliver"
quarantine_method = "header"
temperror = "tempfail"
[dmarc]
trusted_arc_sealers = ["arclist.example"]
`,
}

// daemon is one running dmarc-milter.
type daemon struct {
	bin, config, listen, nameserver string
	log                             string
	env                             []string // added to the environment
	cmd                             *exec.Cmd
	done                            chan struct{}
}

// startDaemon writes the named configuration and starts the daemon with the
// command line an operator would use, plus our DNS server.
func startDaemon(t *testing.T, bin, dir, name, listen, nameserver string) *daemon {
	t.Helper()
	cfg := filepath.Join(dir, "milter-"+name+".toml")
	common := fmt.Sprintf("# dmarc-milter %q for the integration tests\nlog_level = \"debug\"\n", name)
	writeFile(t, cfg, common+daemonConfigs[name], 0o644)
	d := &daemon{bin: bin, config: cfg, listen: listen, nameserver: nameserver,
		log: filepath.Join(dir, "milter-"+name+".log")}
	d.start(t)
	t.Cleanup(func() { d.stop(t) })
	return d
}

// start runs the daemon and waits until it accepts connections.
func (d *daemon) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(d.bin, "serve", "--config", d.config, "--listen", d.listen,
		"--authserv-id", authservID, "--nameserver", d.nameserver)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// A -race binary sleeps 1 s at exit by default; a race still makes it
	// exit with status 66, which stop reports.
	// Each daemon has a state directory of its own (the intake's store).
	state := filepath.Join(filepath.Dir(d.config), "state-"+strings.TrimSuffix(strings.TrimPrefix(filepath.Base(d.config), "milter-"), ".toml"))
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	// d.env comes last: a scenario's own variables win (exec keeps the last of
	// duplicate keys).
	d.cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=50", "STATE_DIRECTORY="+state), d.env...)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); logf.Close(); close(done) }(d.cmd, d.done)
	addr := strings.TrimPrefix(d.listen, "inet:")
	if err := waitListening(addr, 20*time.Second); err != nil {
		t.Fatalf("dmarc-milter: %v\n%s", err, tailFile(d.log, 30))
	}
}

// stop sends SIGTERM (the daemon drains and exits) and waits; SIGKILL after
// 30 s. It is a no-op when the daemon is not running.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if d.cmd == nil {
		return
	}
	t0 := time.Now()
	defer func() { t.Logf("dmarc-milter %s stopped in %v", d.listen, time.Since(t0).Round(time.Millisecond)) }()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Errorf("dmarc-milter did not exit 30 s after SIGTERM; killing it")
		d.cmd.Process.Kill()
		<-d.done
	}
	if st := d.cmd.ProcessState; st != nil && !st.Success() {
		t.Errorf("dmarc-milter exited with %v after SIGTERM\n%s", st, tailFile(d.log, 20))
	}
	d.cmd = nil
}
