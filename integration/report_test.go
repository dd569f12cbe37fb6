package integration

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// scReportRoundTrip: the daemon records the mail it evaluates through
// Postfix (the clock fixed late yesterday, DMARC_MILTER_TEST_NOW, a
// test-only variable), is restarted with the clock just after midnight,
// builds yesterday's report and sends it, DKIM-signed, through Postfix to
// the rua mailbox in Dovecot. The delivered message is parsed back
// (Subject, file name, gzip, XML) and passes DMARC through `dmarc-milter
// evaluate` on its DKIM signature alone.
func scReportRoundTrip(t *testing.T, w *world) {
	const (
		reported = "reported.example" // the domain whose mail we report on
		reporter = "reporter.example" // our reporting domain
		usr      = "rua"              // the domain owner's report mailbox
	)
	sendKey := newRSAKey(t)
	sendKey.publish(w, "s1", reported)
	repKey := newRSAKey(t)
	repKey.publish(w, "rep", reporter)
	w.dns.MustAdd(
		txtRR("_dmarc."+reported, "v=DMARC1; p=reject; rua=mailto:"+rcpt(usr)),
		txtRR(reported, "v=spf1 ip4:192.0.2.90 -all"),
		// RFC 9990 §4: rcpt.example agrees to receive reported.example's reports.
		txtRR(reported+"._report._dmarc."+rcptDomain, "v=DMARC1"),
		txtRR("_dmarc."+reporter, "v=DMARC1; p=reject"),
		txtRR(reporter, "v=spf1 -all"),
	)
	der, err := x509.MarshalPKCS8PrivateKey(repKey.signer)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(w.dir, "report-dkim.pem")
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), 0o600)
	cfg := filepath.Join(w.dir, "milter-report.toml")
	writeFile(t, cfg, fmt.Sprintf(`# the reporting daemon of the integration tests
log_level = "debug"
[store]
url = "sqlite:%s"
[report]
enabled = true
from = "dmarc@%s"
org_name = "Integration Test"
relay = "smtp://%s"
dkim_key_file = %q
dkim_selector = "rep"
send_window = "0s"
`, filepath.Join(w.dir, "report.db"), reporter, w.pf.smtp["report"], keyFile), 0o644)
	d := &daemon{bin: w.bin, config: cfg, listen: w.milters["report"], nameserver: w.dns.Addr,
		log: filepath.Join(w.dir, "milter-report.log")}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("reporting daemon log (tail):\n%s", tailFile(d.log, 40))
		}
	})

	today := time.Now().UTC().Truncate(24 * time.Hour)
	yesterday := today.AddDate(0, 0, -1)
	d.env = []string{"DMARC_MILTER_TEST_NOW=" + today.Add(-10*time.Minute).Format(time.RFC3339)}
	d.start(t)
	// Two signed messages from the domain's server, one forgery from IPv6.
	for range 2 {
		m := sendKey.sign(t, newMsg("news@"+reported, rcpt("report-in"), "signed", nil, "Hello.\n"), reported, "s1")
		c := w.session(t, "report", client("192.0.2.90", "mx."+reported))
		r, err := c.send("bounce@"+reported, []string{rcpt("report-in")}, m)
		wantReply(t, r, err, "EOM", 250, "2.0.0")
	}
	c := w.session(t, "report", client("IPV6:2001:db8::66", "forger.example"))
	r, err := c.send("x@forger.example", []string{rcpt("report-in")}, newMsg("ceo@"+reported, rcpt("report-in"), "forged", nil, "Pay.\n"))
	wantReply(t, r, err, "EOM", 550, "5.7.1")
	w.wantOnly(t, "report-in", 2, inbox)
	d.stop(t) // SIGTERM drains the recorder into the store

	d.env = []string{"DMARC_MILTER_TEST_NOW=" + today.Add(20*time.Minute).Format(time.RFC3339)}
	d.start(t)
	defer d.stop(t)
	got := w.wantOnly(t, usr, 1, inbox)[0]
	if !strings.Contains(readFile(t, d.log), `msg="report sent" domain=reported.example to=rua@rcpt.example`) {
		t.Errorf("no \"report sent\" log line")
	}

	m, err := mail.ReadMessage(strings.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := report.ParseMessage(strings.NewReader(got), report.Limits{})
	if err != nil || len(fs) != 1 {
		t.Fatalf("ParseMessage: %v, %d reports", err, len(fs))
	}
	f := fs[0]
	id := f.Metadata.ReportID
	if s, want := m.Header.Get("Subject"), report.Subject(reported, reporter, id); s != want {
		t.Errorf("Subject %q, want %q", s, want)
	}
	wantName := fmt.Sprintf("%s!%s!%d!%d!%s.xml.gz", reporter, reported, yesterday.Unix(), today.Unix(), id)
	if !strings.Contains(got, `filename="`+wantName+`"`) {
		t.Errorf("no attachment named %s", wantName)
	}
	if f.PolicyPublished.Domain != reported || f.PolicyPublished.P != report.DispositionReject ||
		!f.Metadata.DateRange.Begin.Equal(yesterday) || !f.Metadata.DateRange.End.Equal(today) {
		t.Errorf("report: %+v %+v", f.PolicyPublished, f.Metadata)
	}
	counts := map[string]uint64{}
	for _, rec := range f.Records {
		counts[rec.Row.SourceIP.String()+" "+string(rec.Row.PolicyEvaluated.Disposition)] += rec.Row.Count
	}
	if counts["192.0.2.90 pass"] != 2 || counts["2001:db8::66 reject"] != 1 || len(counts) != 2 {
		t.Errorf("records: %v", counts)
	}

	// The report passes DMARC at its receiver on its DKIM signature alone
	// (RFC 9990 §3.5.2), from a client that SPF does not authorize.
	eml := filepath.Join(w.dir, "report.eml")
	writeFile(t, eml, got, 0o644)
	out, err := exec.Command(w.bin, "evaluate", "--nameserver", w.dns.Addr, "--authserv-id", authservID,
		"--ip", "192.0.2.200", "--helo", "elsewhere.example", "--mail-from", "dmarc@"+reporter, eml).CombinedOutput()
	if err != nil {
		t.Fatalf("evaluate: %v\n%s", err, out)
	}
	for _, want := range []string{"dkim=pass", "header.d=" + reporter, "dmarc=pass", "header.from=" + reporter, "spf=fail"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("evaluate output lacks %q:\n%s", want, out)
		}
	}
	if st, err := os.Stat(filepath.Join(w.dir, "report.db")); err != nil || st.Size() == 0 {
		t.Errorf("store file: %v", err)
	}
}
