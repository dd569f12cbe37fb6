package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
)

// authservID is the authserv-id our daemons write (and the Sieve script
// matches).
const authservID = "mx.rcpt.example"

// world is the shared test bed: one DNS server, one Dovecot, one Postfix
// with one smtpd listener per milter, and the milters.
type world struct {
	root string
	dir  string
	dns  *dnstest.Server
	dc   *dovecot
	pf   *postfix
	d    map[string]*daemon // milter name → running daemon
	bin  string             // the daemon's binary
	// milters are the milter sockets of the smtpd listeners, by name.
	milters map[string]string
}

// TestPostfix starts the bed once and runs every scenario against it.
// Scenarios use distinct domains and recipients, so they never see each
// other's mail; they run one after the other.
func TestPostfix(t *testing.T) {
	requireBed(t)
	checkGoroutines(t)
	start := time.Now()
	w := &world{root: repoRoot(t), dir: bedDir(t), d: map[string]*daemon{}}
	w.dns = dnstest.New(t, "")

	_, statErr := os.Stat(filepath.Join(w.root, "cmd/dmarc-milter"))
	haveDaemon := statErr == nil
	var bin string
	var buildErr error
	if haveDaemon {
		// A daemon that does not build fails the scenarios, not the bed check.
		if bin, buildErr = buildDaemon(t, w.root); buildErr != nil {
			haveDaemon = false
		}
	}
	milters := map[string]string{
		"stub": startStub(t, authservID),
		// A path relative to the queue directory, as deploy/postfix/master.cf.md
		// documents for a chrooted smtpd.
		"stub-unix": "unix:dmarc-milter/milter.sock",
		// Nothing listens there: milter_default_action applies.
		"dead": fmt.Sprintf("inet:127.0.0.1:%d", freePort(t)),
	}
	startStubUnix(t, filepath.Join(w.dir, "postfix", "queue", "dmarc-milter", "milter.sock"), authservID)
	// "report": the reporting daemon, started by its scenario.
	for _, name := range []string{"header", "hold", "restart", "arc", "report", "intake"} {
		milters[name] = fmt.Sprintf("inet:127.0.0.1:%d", freePort(t))
	}
	w.bin, w.milters = bin, milters
	w.dc = startDovecot(t, w.root, w.dir, authservID)
	var services []smtpService
	for _, name := range []string{"stub", "stub-unix", "dead", "header", "hold", "restart", "arc", "report", "intake"} {
		services = append(services, smtpService{name: name, milter: milters[name]})
	}
	w.pf = startPostfix(t, w.root, w.dir, w.dc.lmtp, services)
	for _, name := range []string{"header", "hold", "restart", "arc", "intake"} {
		if !haveDaemon {
			break
		}
		w.d[name] = startDaemon(t, bin, w.dir, name, milters[name], w.dns.Addr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix log (tail):\n%s", tailFile(w.pf.log, 60))
			t.Logf("dovecot log (tail):\n%s", tailFile(w.dc.log, 30))
			for name, d := range w.d {
				t.Logf("daemon %s log (tail):\n%s", name, tailFile(d.log, 30))
			}
		}
	})
	t.Logf("test bed up in %v (dir %s)", time.Since(start).Round(time.Millisecond), w.dir)

	t.Run("bed", func(t *testing.T) { testBed(t, w) })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if !haveDaemon {
		// Only while the daemon is being written: the bed itself was checked.
		t.Skip("SKIPPING THE DAEMON SCENARIOS: cmd/dmarc-milter does not exist yet")
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t0 := time.Now()
			sc.run(t, w)
			t.Logf("%s: %v", sc.name, time.Since(t0).Round(time.Millisecond))
		})
	}
	t.Run("negotiation", func(t *testing.T) { testNegotiation(t, w) })
}

// testNegotiation: Postfix 3.7 (which offers every protocol flag) agreed on
// the flags we ask for, on every connection of every daemon: no reply to
// any event before the end of message, no DATA event, header values byte
// for byte. The daemons log each connection's options at debug level.
func testNegotiation(t *testing.T, w *world) {
	const want = `protocol="NR_CONN NR_HELO NR_MAIL NR_RCPT NR_HDR NR_EOH NR_BODY NODATA NOUNKNOWN HDR_LEADSPC"`
	conns := 0
	for name, d := range w.d {
		for _, line := range strings.Split(readFile(t, d.log), "\n") {
			if !strings.Contains(line, `msg="milter connection"`) {
				continue
			}
			conns++
			if !strings.Contains(line, want) {
				t.Errorf("daemon %s: %s\nwant %s", name, line, want)
			}
		}
	}
	if conns == 0 {
		t.Fatal("no milter connection logged by any daemon")
	}
	t.Logf("%d milter connections from Postfix negotiated %s", conns, want)
}

// msg builds a message with CRLF line ends from header lines and a body.
func msg(headers []string, body string) []byte {
	return []byte(strings.Join(headers, "\r\n") + "\r\n\r\n" + strings.ReplaceAll(body, "\n", "\r\n"))
}

// session opens an SMTP session on one smtpd listener and simulates a client
// with XCLIENT.
func (w *world) session(t *testing.T, service string, xclient map[string]string) *smtpClient {
	t.Helper()
	c, err := dialSMTP(w.pf.smtp[service])
	if err != nil {
		t.Fatalf("smtp %s: %v", service, err)
	}
	t.Cleanup(func() { c.Close() })
	if xclient != nil {
		if r, err := c.xclient(xclient); err != nil || r.Code != 250 {
			t.Fatalf("XCLIENT %v: %v %v", xclient, r, err)
		}
	}
	return c
}

// waitMail waits until usr has n messages in total and returns them.
func (w *world) waitMail(t *testing.T, usr string, n int) map[folder][]string {
	t.Helper()
	var got map[folder][]string
	err := poll(20*time.Second, func() error {
		got = w.dc.delivered(usr)
		if count(got) < n {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: waiting for %d message(s): %v; have %d; queue: %+v", usr, n, err, count(got), w.pf.queue(t, usr+"@"+rcptDomain))
	}
	return got
}

// settle waits until the Postfix queue holds nothing for rcpt outside the
// hold queue, so that "nothing more was delivered" can be asserted.
func (w *world) settle(t *testing.T, rcpt string) {
	t.Helper()
	err := poll(20*time.Second, func() error {
		for _, q := range w.pf.queue(t, rcpt) {
			if q.QueueName != "hold" {
				return errNotYet
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("queue for %s did not drain: %v: %+v", rcpt, err, w.pf.queue(t, rcpt))
	}
}

// headerValues returns the unfolded values of every field called name, in
// message order.
func headerValues(message, name string) []string {
	head, _, _ := strings.Cut(strings.ReplaceAll(message, "\r\n", "\n"), "\n\n")
	var out []string
	cur := -1
	for _, line := range strings.Split(head, "\n") {
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && cur >= 0 {
			out[cur] += " " + strings.TrimSpace(line)
			continue
		}
		cur = -1
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, strings.TrimSpace(v))
			cur = len(out) - 1
		}
	}
	return out
}

// ourAR returns the Authentication-Results fields that carry our
// authserv-id.
func ourAR(message string) []string {
	var out []string
	re := regexp.MustCompile(`(?i)^` + regexp.QuoteMeta(authservID) + `(\s+\d+)?\s*;`)
	for _, v := range headerValues(message, "Authentication-Results") {
		if re.MatchString(v) {
			out = append(out, v)
		}
	}
	return out
}

// checkGoroutines fails the test when goroutines started during it (DNS
// server, stub milter, process waiters, SMTP clients) are still running a few
// seconds after every cleanup. Registered first, it runs last.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		err := poll(5*time.Second, func() error {
			if runtime.NumGoroutine() > before {
				return errNotYet
			}
			return nil
		})
		if err != nil {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutines: %d before, %d after cleanup:\n%s", before, runtime.NumGoroutine(), buf)
		}
	})
}
