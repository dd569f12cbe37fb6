// Package integration runs the milter behind a real Postfix (Debian's
// package, a private instance on loopback) that delivers over LMTP into a real
// Dovecot with Pigeonhole Sieve, using the files shipped in deploy/. See
// docs/tests.md.
package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The Debian programs the test bed runs. Postfix needs root to start (its
// master binds, chowns the queue and drops privileges itself).
var bedTools = []string{
	"/usr/sbin/postfix", "/usr/sbin/postqueue", "/usr/sbin/postsuper", "/usr/sbin/postcat",
	"/usr/sbin/dovecot", "/usr/bin/sievec", "/usr/bin/sieve-test",
}

// rcptDomain is the domain Postfix accepts mail for and hands to Dovecot.
const rcptDomain = "rcpt.example"

// requireBed skips (locally) or fails (under CI=true) when the test bed
// cannot run here. A skip is loud on purpose: a green run without the
// integration tests must not look like a full one.
func requireBed(t *testing.T) {
	t.Helper()
	var missing []string
	if runtime.GOOS != "linux" {
		missing = append(missing, "Linux")
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root (postfix start)")
	}
	for _, p := range bedTools {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	for _, u := range []string{"postfix", "nobody", "dovecot", "dovenull"} {
		if _, err := user.Lookup(u); err != nil {
			missing = append(missing, "user "+u)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("integration test bed unavailable, missing: %s; "+
		"run scripts/install-deps.sh as root (Debian: postfix dovecot-core dovecot-lmtpd dovecot-sieve)",
		strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Log(strings.Repeat("*", 72))
	t.Log("SKIPPING THE POSTFIX INTEGRATION TESTS")
	t.Skip(msg)
}

// repoRoot is the module root (the parent of integration/).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// bedDir makes the directory that holds every file of the test bed. It is not
// t.TempDir(): that is mode 0700, and Postfix's and Dovecot's unprivileged
// processes must traverse it. DMARC_IT_KEEP=1 keeps it for inspection.
func bedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dmarc-it-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("DMARC_IT_KEEP") != "" {
			t.Logf("DMARC_IT_KEEP: test bed kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitListening waits until something accepts TCP connections on addr.
func waitListening(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v: %w", addr, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs a command and fails the test with its output when it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// chownName gives path to a system user and its primary group.
func chownName(t *testing.T, path, name string) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// tailFile returns the last n lines of a log, for failure reports.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------- Dovecot

// dovecot is a private Dovecot: LMTP on a loopback port, Maildirs under
// mailDir, the deploy/dovecot snippet and Sieve script.
type dovecot struct {
	dir     string
	mailDir string
	lmtp    string // 127.0.0.1:port
	log     string
}

// startDovecot writes a private configuration that !includes
// deploy/dovecot/90-dmarc-milter.conf and overrides only the script's path,
// installs deploy/dovecot/dmarc-quarantine.sieve with authservID put in,
// compiles it with sievec (the delivery user cannot write the binary) and
// runs dovecot in the foreground as a child of the test.
func startDovecot(t *testing.T, root, dir, authservID string) *dovecot {
	t.Helper()
	d := &dovecot{
		dir:     filepath.Join(dir, "dovecot"),
		mailDir: filepath.Join(dir, "mail"),
		lmtp:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		log:     filepath.Join(dir, "dovecot", "dovecot.log"),
	}
	for _, sub := range []string{"run", "state", "sieve"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(d.mailDir, 0o755); err != nil {
		t.Fatal(err)
	}
	chownName(t, d.mailDir, "nobody")

	script := readFile(t, filepath.Join(root, "deploy/dovecot/dmarc-quarantine.sieve"))
	const placeholder = `mx\\.example\\.org`
	if !strings.Contains(script, placeholder) {
		t.Fatalf("deploy/dovecot/dmarc-quarantine.sieve no longer holds the authserv-id placeholder %s", placeholder)
	}
	script = strings.ReplaceAll(script, placeholder, strings.ReplaceAll(authservID, ".", `\\.`))
	sieve := filepath.Join(d.dir, "sieve", "dmarc-quarantine.sieve")
	writeFile(t, sieve, script, 0o644)

	_, port, _ := net.SplitHostPort(d.lmtp)
	conf := filepath.Join(d.dir, "dovecot.conf")
	writeFile(t, conf, fmt.Sprintf(`# Private Dovecot for the integration tests (written by integration/bed_test.go).
instance_name = dmarc-it-%[5]s
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
info_log_path = %[1]s/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_login_user = dovenull
# Every recipient is a virtual user delivered as "nobody" into its own Maildir.
first_valid_uid = 1
mail_location = maildir:%[2]s/%%n/Maildir
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=%[2]s/%%n
}
passdb {
  driver = static
  args = nopassword=y
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[3]s
  }
}
# The shipped snippet, verbatim; only the script's path differs here.
!include %[4]s
plugin {
  sieve_before = %[6]s
}
`, d.dir, d.mailDir, port, filepath.Join(root, "deploy/dovecot/90-dmarc-milter.conf"), port, sieve), 0o644)

	run(t, "/usr/bin/sievec", "-c", conf, sieve)

	cmd := exec.Command("/usr/sbin/dovecot", "-F", "-c", conf)
	logf, err := os.Create(filepath.Join(d.dir, "dovecot.stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the test binary die without cleanup, Dovecot goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	if err := waitListening(d.lmtp, 10*time.Second); err != nil {
		t.Fatalf("dovecot: %v\n%s\n%s", err, tailFile(d.log, 20), tailFile(logf.Name(), 20))
	}
	return d
}

// sieveTest runs the installed Sieve script over a message with sieve-test
// (no delivery) and returns the folder it would file the message into.
func (d *dovecot) sieveTest(t *testing.T, message string) folder {
	t.Helper()
	f, err := os.CreateTemp(d.dir, "sieve-test-*.eml")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(message)
	f.Close()
	os.Chmod(f.Name(), 0o644)
	defer os.Remove(f.Name())
	out := run(t, "/usr/bin/sieve-test", "-c", filepath.Join(d.dir, "dovecot.conf"),
		"-o", "mail_uid=nobody", "-o", "mail_gid=nogroup",
		filepath.Join(d.dir, "sieve", "dmarc-quarantine.sieve"), f.Name())
	switch {
	case strings.Contains(out, "store message in folder: Junk"):
		return junk
	case strings.Contains(out, "store message in folder: INBOX"):
		return inbox
	}
	t.Fatalf("sieve-test: cannot tell the folder:\n%s", out)
	return ""
}

// folder names a Maildir folder of one user.
type folder string

const (
	inbox folder = "INBOX"
	junk  folder = "Junk"
)

func (d *dovecot) folderDir(usr string, f folder) string {
	base := filepath.Join(d.mailDir, usr, "Maildir")
	if f == inbox {
		return base
	}
	return filepath.Join(base, "."+string(f))
}

// delivered lists the messages of a user: folder → file contents.
func (d *dovecot) delivered(usr string) map[folder][]string {
	out := map[folder][]string{}
	for _, f := range []folder{inbox, junk} {
		for _, sub := range []string{"new", "cur"} {
			files, _ := filepath.Glob(filepath.Join(d.folderDir(usr, f), sub, "*"))
			slices.Sort(files)
			for _, p := range files {
				if b, err := os.ReadFile(p); err == nil {
					out[f] = append(out[f], string(b))
				}
			}
		}
	}
	return out
}

func count(m map[folder][]string) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// ---------------------------------------------------------------- Postfix

// smtpService is one smtpd listener of the private Postfix, with its own
// milter address (set with -o in master.cf, overriding main.cf's
// smtpd_milters from the deploy fragment).
type smtpService struct {
	name   string
	milter string // "inet:127.0.0.1:PORT"
	addr   string // filled in: 127.0.0.1:PORT
}

// postfix is a private Postfix instance: its own config, queue and data
// directories, smtpd on loopback ports, delivery over LMTP to Dovecot.
type postfix struct {
	conf string
	log  string
	smtp map[string]string // service name → address
}

// startPostfix writes main.cf (test settings, then deploy/postfix/
// main.cf.fragment verbatim) and master.cf, checks and starts the instance.
func startPostfix(t *testing.T, root, dir, lmtp string, services []smtpService) *postfix {
	t.Helper()
	p := &postfix{
		conf: filepath.Join(dir, "postfix", "conf"),
		log:  filepath.Join(dir, "postfix", "log", "postfix.log"),
		smtp: map[string]string{},
	}
	queue := filepath.Join(dir, "postfix", "queue")
	data := filepath.Join(dir, "postfix", "data")
	for _, d := range []string{p.conf, queue, data, filepath.Dir(p.log)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	chownName(t, data, "postfix")

	fragment := readFile(t, filepath.Join(root, "deploy/postfix/main.cf.fragment"))
	main := fmt.Sprintf(`# Private Postfix for the integration tests (written by integration/bed_test.go).
compatibility_level = 3.6
queue_directory = %[1]s
data_directory = %[2]s
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
maillog_file = %[3]s
maillog_file_prefixes = %[4]s
myhostname = mx.rcpt.example
mydomain = rcpt.example
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
# "all": an IPv6 XCLIENT ADDR= is refused under ipv4 only.
inet_protocols = all
mynetworks = 127.0.0.0/8 [::1]/128
# The test client simulates remote clients (address, name, HELO, SASL login).
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP
virtual_mailbox_domains = %[5]s
virtual_transport = lmtp:inet:[%[6]s]:%[7]s
alias_maps =
alias_database =
biff = no
# Deliver at once, retry deferred mail quickly (the tests wait for it).
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
# --- deploy/postfix/main.cf.fragment, verbatim ---
%[8]s`, queue, data, p.log, filepath.Dir(p.log), rcptDomain,
		strings.Split(lmtp, ":")[0], strings.Split(lmtp, ":")[1], fragment)
	writeFile(t, filepath.Join(p.conf, "main.cf"), main, 0o644)

	var master strings.Builder
	master.WriteString("# Private master.cf for the integration tests: no chroot, one smtpd per milter.\n")
	for i := range services {
		s := &services[i]
		s.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p.smtp[s.name] = s.addr
		fmt.Fprintf(&master, "%s inet n - n - - smtpd\n  -o syslog_name=postfix/%s\n  -o smtpd_milters=%s\n",
			s.addr, s.name, s.milter)
	}
	master.WriteString(`pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`)
	writeFile(t, filepath.Join(p.conf, "master.cf"), master.String(), 0o644)

	run(t, "/usr/sbin/postfix", "-c", p.conf, "check")
	if out, err := exec.Command("/usr/sbin/postconf", "-c", p.conf, "-n").CombinedOutput(); err != nil ||
		strings.Contains(string(out), "warning") {
		t.Fatalf("postconf -n: %v\n%s", err, out)
	}
	run(t, "/usr/sbin/postfix", "-c", p.conf, "start")
	t.Cleanup(func() {
		t0 := time.Now()
		defer func() { t.Logf("postfix stopped in %v", time.Since(t0).Round(time.Millisecond)) }()
		if out, err := exec.Command("/usr/sbin/postfix", "-c", p.conf, "stop").CombinedOutput(); err != nil {
			t.Logf("postfix stop: %v\n%s", err, out)
			exec.Command("/usr/sbin/postfix", "-c", p.conf, "abort").Run()
		}
	})
	for _, s := range services {
		if err := waitListening(s.addr, 10*time.Second); err != nil {
			t.Fatalf("postfix: %v\n%s", err, tailFile(p.log, 30))
		}
	}
	return p
}

// queued is one message in the Postfix queue, as postqueue -j lists it.
type queued struct {
	QueueName  string `json:"queue_name"`
	QueueID    string `json:"queue_id"`
	Sender     string `json:"sender"`
	Recipients []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

// queue lists the messages in the queue that are for rcpt (all when "").
func (p *postfix) queue(t *testing.T, rcpt string) []queued {
	t.Helper()
	out, err := exec.Command("/usr/sbin/postqueue", "-c", p.conf, "-j").Output()
	if err != nil {
		t.Fatalf("postqueue -j: %v", err)
	}
	var res []queued
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var q queued
		if err := json.Unmarshal(sc.Bytes(), &q); err != nil {
			t.Fatalf("postqueue -j: %v: %s", err, sc.Text())
		}
		for _, r := range q.Recipients {
			if rcpt == "" || strings.EqualFold(r.Address, rcpt) {
				res = append(res, q)
				break
			}
		}
	}
	return res
}

// logLines returns the lines of the Postfix log that contain every one of
// the substrings.
func (p *postfix) logLines(subs ...string) []string {
	b, _ := os.ReadFile(p.log)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}

// errNotYet is returned by a poll function that wants to be called again.
var errNotYet = errors.New("not yet")

// poll calls f until it returns something other than errNotYet, or d passes.
func poll(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if !errors.Is(err, errNotYet) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still not done after %v", d)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
