package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"
	"github.com/emersion/go-smtp"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/internal/pgtest"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// smtpSink is a real SMTP server on loopback (go-smtp's) standing in for
// the relay: it keeps every message per recipient.
type smtpSink struct {
	addr string
	mu   sync.Mutex
	got  map[string][][]byte
}

func newSMTPSink(t *testing.T) *smtpSink {
	t.Helper()
	k := &smtpSink{got: map[string][][]byte{}}
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSess{k: k}, nil }))
	s.Domain = "sink.test"
	s.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.addr = ln.Addr().String()
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return k
}

func (k *smtpSink) messages(to string) [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([][]byte(nil), k.got[to]...)
}

type sinkSess struct {
	k  *smtpSink
	to []string
}

func (s *sinkSess) Mail(string, *smtp.MailOptions) error      { return nil }
func (s *sinkSess) Rcpt(to string, _ *smtp.RcptOptions) error { s.to = append(s.to, to); return nil }
func (s *sinkSess) Reset()                                    { s.to = nil }
func (s *sinkSess) Logout() error                             { return nil }
func (s *sinkSess) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	for _, to := range s.to {
		s.k.got[to] = append(s.k.got[to], b)
	}
	return nil
}

// sendForged sends n forged messages (From domain dom, p=reject) over one
// milter connection, each answered 550.
func sendForged(t *testing.T, addr, dom string, n int) error {
	cl := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		ActionMask: milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine, ReadTimeout: 20 * time.Second, WriteTimeout: 10 * time.Second,
	})
	s, err := cl.Session()
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Conn("forger.example", milter.FamilyInet, 40000, "198.51.100.3"); err != nil {
		return err
	}
	s.Helo("forger.example")
	for range n {
		s.Macros(milter.CodeMail, "{client_addr}", "198.51.100.3")
		s.Mail("x@forger.example", nil)
		s.Rcpt("user@ours.example", nil)
		s.HeaderField("From", " ceo@"+dom)
		s.HeaderEnd()
		_, act, err := s.BodyReadFrom(strings.NewReader("hi\r\n"))
		if err != nil || act.SMTPCode != 550 {
			return fmt.Errorf("forged message: %+v %v, want 550", act, err)
		}
		s.Abort()
	}
	return nil
}

// TestBinaryPostgreSQLTwoDaemons: two daemons record into one PostgreSQL
// database at once, and are stopped by SIGTERM with their rows still
// queued (flush_interval 1h: everything is written by the drain). The
// counts add up to the messages sent. Restarted after the period closed,
// both senders run at once, and each report goes out exactly once.
func TestBinaryPostgreSQLTwoDaemons(t *testing.T) {
	dsn := pgtest.Database(t)
	srv := dnstest.New(t, `$TTL 300
_dmarc.one.example. IN TXT "v=DMARC1; p=reject; rua=mailto:r@one.example"
_dmarc.two.example. IN TXT "v=DMARC1; p=reject; rua=mailto:r@two.example"
`)
	sink := newSMTPSink(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	body := fmt.Sprintf(`listen = "inet:127.0.0.1:0"
[dns]
nameservers = [%q]
[store]
url = %q
[report]
enabled = true
from = "dmarc@ours.example"
relay = "smtp://%s"
send_window = "0s"
flush_interval = "1h"
grace = "2h"
`, srv.Addr, dsn, sink.addr)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(testNowEnv, "2026-12-06T20:00:00Z")
	start := func() []*daemonProc {
		var ds []*daemonProc
		for range 2 {
			ds = append(ds, startDaemon(t, "serve", "--config", cfg))
		}
		return ds
	}
	ds := start()
	var addrs []string
	for _, d := range ds {
		addrs = append(addrs, d.waitFor(t, `msg="dmarc-milter started".* addr=(\S+)`)[1])
	}
	const conns, perConn = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*conns)
	for i, a := range addrs {
		for c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dom := []string{"one.example", "two.example"}[(i+c)%2]
				if err := sendForged(t, a, dom, perConn); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sent := int64(len(addrs) * conns * perConn)
	for _, d := range ds {
		d.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, d := range ds {
		waitStopped(t, d)
		if !strings.Contains(d.logText(), `msg="report rows written"`) {
			t.Errorf("no drain at SIGTERM:\n%s", d.logText())
		}
	}

	var out, errb bytes.Buffer
	if code := run([]string{"report", "status", "--config", cfg, "--json"}, &out, &errb); code != exitOK {
		t.Fatalf("report status: %s", errb.String())
	}
	var st []domainStatusJSON
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	var stored int64
	for _, s := range st {
		stored += s.Messages
	}
	if stored != sent {
		t.Errorf("store counts %d messages, %d were sent:\n%s", stored, sent, out.String())
	}

	t.Setenv(testNowEnv, "2026-12-07T02:30:00Z")
	ds = start()
	for _, a := range []string{"r@one.example", "r@two.example"} {
		if err := pollFor(20*time.Second, func() bool { return len(sink.messages(a)) > 0 }); err != nil {
			t.Fatalf("no report to %s", a)
		}
	}
	time.Sleep(time.Second) // a second send would come now
	var inReports uint64
	for _, a := range []string{"r@one.example", "r@two.example"} {
		msgs := sink.messages(a)
		if len(msgs) != 1 {
			t.Errorf("%s got %d reports, want exactly 1", a, len(msgs))
		}
		fs, err := report.ParseMessage(bytes.NewReader(msgs[0]), report.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range fs[0].Records {
			inReports += r.Row.Count
		}
	}
	if inReports != uint64(sent) {
		t.Errorf("reports count %d messages, %d were sent", inReports, sent)
	}
	sentBy := 0
	for _, d := range ds {
		d.cmd.Process.Signal(syscall.SIGTERM)
		waitStopped(t, d)
		sentBy += strings.Count(d.logText(), `msg="report sent"`)
	}
	if sentBy != 2 {
		t.Errorf("%d \"report sent\" lines from both daemons, want 2", sentBy)
	}
}

// waitStopped waits for the daemon's last log line, then for its exit
// (Wait closes the log pipe: reading must be over first).
func waitStopped(t *testing.T, d *daemonProc) {
	t.Helper()
	if err := pollFor(40*time.Second, func() bool { return strings.Contains(d.logText(), "msg=stopped") }); err != nil {
		t.Errorf("daemon did not stop: %v\n%s", err, d.logText())
	}
	d.cmd.Wait()
}

func pollFor(d time.Duration, f func() bool) error {
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// TestBinaryStoreUnreachable: the store is down from the start (a
// PostgreSQL socket directory where nothing listens). Mail flows at its
// usual speed; the rows wait in memory; at SIGTERM what could not be
// written is counted and logged.
func TestBinaryStoreUnreachable(t *testing.T) {
	srv := dnstest.New(t, `$TTL 300
_dmarc.one.example. IN TXT "v=DMARC1; p=reject"
`)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = "inet:127.0.0.1:0"
[timeouts]
drain = "2s"
[dns]
nameservers = [%q]
[store]
url = "host=%s port=1 user=x dbname=x connect_timeout=1"
[report]
enabled = true
from = "dmarc@ours.example"
schedule = "external"
`, srv.Addr, dir)), 0o600)
	d := startDaemon(t, "serve", "--config", cfg)
	d.waitFor(t, `level=ERROR msg="report store not available; rows are queued in memory until it answers"`)
	addr := d.waitFor(t, `msg="dmarc-milter started".* addr=(\S+)`)[1]
	t0 := time.Now()
	if err := sendForged(t, addr, "one.example", 20); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el > 5*time.Second {
		t.Errorf("20 messages took %v with the store down", el)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	waitStopped(t, d)
	if !strings.Contains(d.logText(), `msg="report rows lost at shutdown: the store did not answer" rows=1 messages=20`) {
		t.Errorf("no loss logged at SIGTERM:\n%s", d.logText())
	}
}

// TestBinaryKill9: kill -9 loses at most the rows of the last flush
// interval (they were only in memory). The test sends a steady stream,
// kills the daemon, and compares the store with what was answered; the
// figures are logged for docs/reports.md.
func TestBinaryKill9(t *testing.T) {
	srv := dnstest.New(t, `$TTL 300
_dmarc.one.example. IN TXT "v=DMARC1; p=reject"
`)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	const flush = time.Second
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = "inet:127.0.0.1:0"
[dns]
nameservers = [%q]
[store]
url = "sqlite:%s/r.db"
[report]
enabled = true
from = "dmarc@ours.example"
schedule = "external"
flush_interval = %q
`, srv.Addr, dir, flush.String())), 0o600)
	d := startDaemon(t, "serve", "--config", cfg)
	addr := d.waitFor(t, `msg="dmarc-milter started".* addr=(\S+)`)[1]
	var answered []time.Time
	stop := time.Now().Add(3500 * time.Millisecond)
	for time.Now().Before(stop) {
		if err := sendForged(t, addr, "one.example", 5); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			answered = append(answered, time.Now())
		}
		time.Sleep(20 * time.Millisecond)
	}
	killed := time.Now()
	d.cmd.Process.Kill()
	d.cmd.Wait()
	var out, errb bytes.Buffer
	if code := run([]string{"report", "status", "--config", cfg, "--json"}, &out, &errb); code != exitOK {
		t.Fatalf("report status: %s", errb.String())
	}
	var st []domainStatusJSON
	json.Unmarshal(out.Bytes(), &st)
	var stored int64
	for _, s := range st {
		stored += s.Messages
	}
	lost := int64(len(answered)) - stored
	window := 0
	for _, a := range answered {
		if killed.Sub(a) <= flush+500*time.Millisecond {
			window++
		}
	}
	t.Logf("kill -9: %d messages answered, %d stored, %d lost; %d answered in the last flush interval (%v) + 0.5 s",
		len(answered), stored, lost, window, flush)
	if lost < 0 || lost > int64(window) {
		t.Errorf("lost %d messages, more than the %d of the last flush interval", lost, window)
	}
}
