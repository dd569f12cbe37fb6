package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// forged runs one milter conversation: a message from a client outside the
// trusted networks whose From domain publishes p=reject and that nothing
// authenticates.
func forged(t *testing.T, addr string) {
	t.Helper()
	cl := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		ActionMask: milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine, ReadTimeout: 20 * time.Second, WriteTimeout: 10 * time.Second,
	})
	s, err := cl.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Conn("forger.example", milter.FamilyInet, 40000, "198.51.100.3"); err != nil {
		t.Fatal(err)
	}
	s.Helo("forger.example")
	s.Macros(milter.CodeMail, "{client_addr}", "198.51.100.3")
	s.Mail("x@forger.example", nil)
	s.Rcpt("user@ours.example", nil)
	s.HeaderField("From", " ceo@example.com")
	s.HeaderEnd()
	_, act, err := s.BodyReadFrom(strings.NewReader("hi\r\n"))
	if err != nil || act.Code != milter.ActReplyCode || act.SMTPCode != 550 {
		t.Fatalf("forged message: %+v %v, want a 550 reject", act, err)
	}
}

// TestBinaryNoDiskWithoutReports: without report.enabled the daemon opens
// no store and writes nothing to its state directory.
func TestBinaryNoDiskWithoutReports(t *testing.T) {
	state := t.TempDir()
	t.Setenv("STATE_DIRECTORY", state)
	d := startDaemon(t, "serve", "--listen", "inet:127.0.0.1:0")
	m := d.waitFor(t, `msg="dmarc-milter started".* addr=(\S+) .*authserv_id="macro j, else ([^"]+)"`)
	converse(t, m[1], m[2])
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitFor(t, `msg=stopped`)
	d.cmd.Wait()
	if ents, _ := os.ReadDir(state); len(ents) != 0 {
		t.Errorf("state directory not empty: %v", ents)
	}
	if strings.Contains(d.logText(), "report") {
		t.Errorf("reporting mentioned without report.enabled:\n%s", d.logText())
	}
}

// TestBinaryReports: with report.enabled the daemon records into the
// default SQLite file in $STATE_DIRECTORY (drained at SIGTERM); SIGHUP
// says which report settings need a restart; report status and report
// build read the store (build with the test clock of DMARC_MILTER_TEST_NOW).
func TestBinaryReports(t *testing.T) {
	srv := dnstest.New(t, `$TTL 300
_dmarc.example.com. IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"
`)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o700)
	t.Setenv("STATE_DIRECTORY", state)
	t.Setenv(testNowEnv, "2026-12-06T12:00:00Z")
	cfg := filepath.Join(dir, "c.toml")
	body := "listen = \"inet:127.0.0.1:0\"\n[dns]\nnameservers = [\"" + srv.Addr + "\"]\n" +
		"[report]\nenabled = true\nfrom = \"dmarc@ours.example\"\nschedule = \"external\"\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"check-config", "--config", cfg}, &out, &errb); code != exitOK {
		t.Fatalf("check-config: %d %s", code, errb.String())
	}
	d := startDaemon(t, "serve", "--config", cfg)
	d.waitFor(t, `msg="aggregate reports enabled" store=sqlite:`+regexpQuote(state+"/dmarc-milter.db"))
	addr := d.waitFor(t, `msg="dmarc-milter started".* addr=(\S+)`)[1]
	for range 3 {
		forged(t, addr)
	}
	os.WriteFile(cfg, []byte(body+"interval = \"1h\"\norg_name = \"Reloaded\"\n"), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitFor(t, `takes effect at the next restart" key=report.interval`)
	d.waitFor(t, `msg="report settings applied" schedule=external`)
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitFor(t, `msg="report rows written" rows=1 messages=3`)
	d.waitFor(t, `msg=stopped`)
	d.cmd.Wait()
	os.WriteFile(cfg, []byte(body), 0o600)

	out.Reset()
	if code := run([]string{"report", "status", "--config", cfg, "--json"}, &out, &errb); code != exitOK {
		t.Fatalf("report status: %d %s", code, errb.String())
	}
	var st []domainStatusJSON
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	found := false
	for _, s := range st {
		if s.Domain == "example.com" {
			found = s.Messages == 3 && s.Rows == 1
		}
	}
	if !found {
		t.Errorf("status: %s", out.String())
	}

	// A preview of the open period, written without marking anything.
	outDir := filepath.Join(dir, "out")
	out.Reset()
	if code := run([]string{"report", "build", "--config", cfg, "--out", outDir}, &out, &errb); code != exitOK {
		t.Fatalf("report build: %d %s", code, errb.String())
	}
	ents, _ := os.ReadDir(outDir)
	var gz, eml []byte
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(outDir, e.Name()))
		switch {
		case strings.HasSuffix(e.Name(), ".xml.gz"):
			gz = b
		case strings.HasSuffix(e.Name(), ".eml"):
			eml = b
		}
	}
	if gz == nil || eml == nil {
		t.Fatalf("report build wrote %v\n%s", ents, out.String())
	}
	f, err := report.ParseFile(bytes.NewReader(gz), report.Limits{})
	if err != nil || f.Records[0].Row.Count != 3 || f.Records[0].Row.PolicyEvaluated.Disposition != report.ActionReject {
		t.Errorf("built report: %v %+v", err, f)
	}
	if !bytes.Contains(eml, []byte("To: dmarc@example.com")) {
		t.Errorf("message not to the rua address:\n%s", eml)
	}
	// Building marked nothing: the report is still to be sent.
	out.Reset()
	t.Setenv(testNowEnv, "2026-12-07T06:00:00Z")
	run([]string{"report", "send", "--config", cfg, "--dry-run"}, &out, &errb)
	if !strings.Contains(out.String(), "due 1,") {
		t.Errorf("report send --dry-run: %s %s", out.String(), errb.String())
	}
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestReportUsage: the report commands check their arguments.
func TestReportUsage(t *testing.T) {
	var out, errb bytes.Buffer
	for _, args := range [][]string{{"report"}, {"report", "frob"}, {"report", "build", "--config", "/nonexistent.toml"},
		{"report", "build"}} {
		if code := run(args, &out, &errb); code != exitConfig {
			t.Errorf("%v: exit %d, want %d", args, code, exitConfig)
		}
	}
	if _, err := parseTime("2026-12-06"); err != nil {
		t.Error(err)
	}
	if tm, err := parseTime("2026-12-06T01:00:00+01:00"); err != nil || !tm.Equal(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("RFC 3339: %v %v", tm, err)
	}
	if _, err := parseTime("yesterday"); err == nil {
		t.Error("parseTime(yesterday) succeeded")
	}
}

// FuzzParseTime: the --since/--until parser never panics, and what it
// accepts is UTC and round-trips through RFC 3339.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-12-06", "2026-12-06T01:00:00+01:00", "2026-12-06T00:00:00Z", "", "yesterday", "2026-13-40", "9999-12-31T23:59:59-23:59"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := parseTime(s)
		if err != nil {
			return
		}
		if tm.Location() != time.UTC {
			t.Errorf("parseTime(%q) = %v, not UTC", s, tm)
		}
		if back, err := time.Parse(time.RFC3339, tm.Format(time.RFC3339)); err == nil && !back.Equal(tm.Truncate(time.Second)) {
			t.Errorf("parseTime(%q) = %v does not round-trip", s, tm)
		}
	})
}

// TestBinaryCorruptStore: a corrupt SQLite file is a clear error at start,
// and mail still flows.
func TestBinaryCorruptStore(t *testing.T) {
	srv := dnstest.New(t, `$TTL 300
_dmarc.example.com. IN TXT "v=DMARC1; p=reject"
`)
	dir := t.TempDir()
	db := filepath.Join(dir, "bad.db")
	os.WriteFile(db, bytes.Repeat([]byte("this is not an SQLite database. "), 200), 0o600)
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen = "inet:127.0.0.1:0"
[timeouts]
drain = "1s"
[dns]
nameservers = [%q]
[store]
url = "sqlite:%s"
[report]
enabled = true
from = "dmarc@ours.example"
schedule = "external"
`, srv.Addr, db)), 0o600)
	d := startDaemon(t, "serve", "--config", cfg)
	d.waitFor(t, `level=ERROR msg="report store not available; rows are queued in memory until it answers" err=".*corrupt or not a database`)
	addr := d.waitFor(t, `msg="dmarc-milter started".* addr=(\S+)`)[1]
	forged(t, addr)
	d.cmd.Process.Signal(syscall.SIGTERM)
	waitStopped(t, d)
}
