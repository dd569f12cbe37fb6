package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
)

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(good, []byte("mode = \"monitor\"\n"), 0o600)
	os.WriteFile(bad, []byte("mode = \"monitor\"\n\n[dns]\ntimout = \"1s\"\n"), 0o600)

	var out, errb bytes.Buffer
	if code := run([]string{"check-config", "--config", good}, &out, &errb); code != exitOK {
		t.Fatalf("good config: exit %d: %s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	code := run([]string{"check-config", "--config", bad}, &out, &errb)
	msg := errb.String()
	if code != exitConfig || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, `bad.toml:4: unknown key "dns.timout"`) {
		t.Errorf("bad config: exit %d, message %q; want 2 and one line naming the key and line", code, msg)
	}
	errb.Reset()
	if code := run([]string{"check-config", "--listen", "tcp:x"}, &out, &errb); code != exitConfig || !strings.Contains(errb.String(), "listen") {
		t.Errorf("bad --listen: exit %d %q", code, errb.String())
	}
	if code := run([]string{"bogus"}, &out, &errb); code != exitConfig {
		t.Errorf("unknown command: exit %d", code)
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	srv := dnstest.New(t, `$TTL 300
reject.example. IN TXT "v=spf1 -all"
_dmarc.reject.example. IN TXT "v=DMARC1; p=reject"
`)
	dir := t.TempDir()
	eml := filepath.Join(dir, "m.eml")
	os.WriteFile(eml, []byte("From: a@reject.example\r\nSubject: x\r\n\r\nbody\r\n"), 0o600)
	var out, errb bytes.Buffer
	code := run([]string{"evaluate", "--nameserver", srv.Addr, "--authserv-id", "mx.example.org",
		"--ip", "198.51.100.1", "--helo", "h.example", "--mail-from", "a@reject.example", eml}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	o := out.String()
	for _, want := range []string{
		"Authentication-Results: mx.example.org;",
		"spf=fail smtp.mailfrom=a@reject.example",
		"dmarc=fail (p=reject dis=reject)",
		`disposition: action=reject reply="550 5.7.1 Email rejected per DMARC policy for reject.example"`,
		"record at reject.example: v=DMARC1; p=reject",
	} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
}

// buildBinary builds the command once for the tests that run it.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dmarc-milter-test")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "dmarc-milter")
		out, err := exec.Command("go", "build", "-o", buildOnce.path, ".").CombinedOutput()
		if err != nil {
			buildOnce.err = err
			t.Logf("%s", out)
		}
	})
	if buildOnce.err != nil {
		t.Fatalf("go build: %v", buildOnce.err)
	}
	return buildOnce.path
}

// daemonProc is a running binary whose log is scanned line by line.
type daemonProc struct {
	cmd   *exec.Cmd
	lines chan string
	mu    sync.Mutex
	log   strings.Builder
}

func startDaemon(t *testing.T, args ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{cmd: exec.Command(binary(t), args...), lines: make(chan string, 100)}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cmd.Process.Kill(); d.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			select {
			case d.lines <- sc.Text():
			default:
			}
		}
		close(d.lines)
	}()
	return d
}

// waitFor returns the first log line matching re.
func (d *daemonProc) waitFor(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-d.lines:
			if !ok {
				t.Fatalf("daemon exited before logging %q:\n%s", re, d.logText())
			}
			if m := rx.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-timeout:
			t.Fatalf("no log line %q:\n%s", re, d.logText())
		}
	}
}

func (d *daemonProc) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// converse runs the milter conversation of two messages Postfix could
// send that need no DNS: one from a trusted network (loopback, accepted at
// MAIL FROM) and one authenticated submission with a forged A-R.
func converse(t *testing.T, addr, authservID string) {
	t.Helper()
	cl := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		ActionMask: milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
	})
	s, err := cl.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if act, err := s.Conn("localhost", milter.FamilyInet, 40000, "127.0.0.1"); err != nil || act.Code != milter.ActContinue {
		t.Fatalf("Conn: %+v %v", act, err)
	}
	if act, err := s.Helo("localhost"); err != nil || act.Code != milter.ActContinue {
		t.Fatalf("Helo: %+v %v", act, err)
	}
	if act, err := s.Mail("root@localhost", nil); err != nil || act.Code != milter.ActAccept {
		t.Fatalf("trusted network: MAIL FROM answer %+v %v, want accept", act, err)
	}
	s.Abort()
	s.Macros(milter.CodeMail, "{auth_authen}", "alice", "{client_addr}", "198.51.100.3")
	if act, err := s.Mail("alice@example.org", nil); err != nil || act.Code != milter.ActContinue {
		t.Fatalf("MAIL: %+v %v", act, err)
	}
	s.HeaderField("Authentication-Results", " "+authservID+"; dmarc=pass")
	s.HeaderField("From", " alice@example.org")
	s.HeaderEnd()
	mods, act, err := s.BodyReadFrom(strings.NewReader("hi\r\n"))
	if err != nil || act.Code != milter.ActAccept {
		t.Fatalf("authenticated message: %+v %v", act, err)
	}
	if len(mods) != 1 || mods[0].Code != milter.ActChangeHeader || mods[0].HeaderIndex != 1 {
		t.Errorf("forged A-R not deleted: %+v", mods)
	}
	s.Abort()
}

// TestBinaryDefaults runs the README's command: the built binary with no
// configuration at all listens on inet:127.0.0.1:8894 and answers a milter
// conversation; SIGTERM stops it with exit status 0.
func TestBinaryDefaults(t *testing.T) {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:8894", time.Second); err == nil {
		c.Close()
		if os.Getenv("CI") == "true" {
			t.Fatal("127.0.0.1:8894 is in use: cannot run the daemon on its defaults")
		}
		t.Skip("SKIPPED LOUDLY: 127.0.0.1:8894 is in use by another process; cannot run the daemon on its defaults")
	}
	d := startDaemon(t)
	m := d.waitFor(t, `msg="dmarc-milter started".* addr=(\S+) .*authserv_id="macro j, else ([^"]+)"`)
	if m[1] != "127.0.0.1:8894" {
		t.Fatalf("listening on %s", m[1])
	}
	converse(t, m[1], m[2])
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitFor(t, `msg=stopped`)
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// TestBinaryReload: SIGHUP with an invalid file keeps the running
// configuration and says why; a valid one is applied.
func TestBinaryReload(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	write := func(s string) {
		if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("listen = \"inet:127.0.0.1:0\"\nauthserv_id = \"mx.reload.example\"\n")
	d := startDaemon(t, "serve", "--config", cfg)
	addr := d.waitFor(t, `msg="dmarc-milter started".* addr=(\S+)`)[1]

	write("listen = \"inet:127.0.0.1:0\"\nmode = \"monitor\"\n[actions]\nrejectpolicy = \"reject\"\n")
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitFor(t, `level=ERROR msg="reload refused: keeping the running configuration".*c\.toml:4: unknown key \\"actions\.rejectpolicy\\"`)
	converse(t, addr, "mx.reload.example") // still the old authserv-id

	write("listen = \"inet:127.0.0.1:0\"\nauthserv_id = \"mx.new.example\"\nmode = \"monitor\"\n")
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitFor(t, `msg="configuration reloaded" mode=monitor`)
	converse(t, addr, "mx.new.example")

	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitFor(t, `msg=stopped`)
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
	_ = io.Discard
}
