package integration

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// debianPython is Debian's interpreter, for which python3-dkim (dkimpy) is
// installed; a python3 of another origin may come first on PATH.
const debianPython = "/usr/bin/python3"

// arcSealer seals messages with dkimpy (Debian's python3-dkim), an ARC
// implementation independent of ours, through pkg/verify's helper script
// (pkg/verify/testdata/arc/dkimpy_arc.py, one JSON request per call).
type arcSealer struct {
	script, dnsHost, dnsPort string
	domain, selector, keyPEM string
}

// newARCSealer makes an RSA-2048 sealer for domain and publishes its key
// at arc._domainkey.<domain> in the bed's DNS. Without dkimpy the scenario
// fails under CI=true and is skipped loudly otherwise.
func newARCSealer(t *testing.T, w *world, domain string) *arcSealer {
	t.Helper()
	check := exec.Command(debianPython, "-c", "import dkim, authres, dns.query")
	if out, err := check.CombinedOutput(); err != nil {
		msg := "dkimpy (Debian python3-dkim, python3-authres, python3-dnspython) is not usable: " +
			err.Error() + ": " + strings.TrimSpace(string(out)) + "; run scripts/install-deps.sh"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Log(strings.Repeat("*", 72))
		t.Skip("SKIPPING THE ARC SCENARIO: " + msg)
	}
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	w.dns.MustAdd(txtRR("arc._domainkey."+domain, "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der)))
	host, port, err := net.SplitHostPort(w.dns.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return &arcSealer{
		script: filepath.Join(w.root, "pkg", "verify", "testdata", "arc", "dkimpy_arc.py"), dnsHost: host, dnsPort: port,
		domain: domain, selector: "arc",
		keyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)})),
	}
}

// seal does what a sealing list does with a message it is about to send
// on: its own Authentication-Results (the assessment of the message as it
// arrived, results written as A-R resinfos) on top, then dkimpy's ARC set
// (RFC 8617 §5.1) over everything.
func (s *arcSealer) seal(t *testing.T, msg []byte, assessment string) []byte {
	t.Helper()
	in := []byte("Authentication-Results: " + s.domain + "; " + assessment + "\r\n" + string(msg))
	req, _ := json.Marshal(map[string]any{"op": "sign", "message": base64.StdEncoding.EncodeToString(in),
		"selector": s.selector, "domain": s.domain, "key": s.keyPEM, "srv_id": s.domain, "t": time.Now().Unix()})
	cmd := exec.Command(debianPython, s.script, s.dnsHost, s.dnsPort)
	cmd.Stdin = strings.NewReader(string(req) + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var resp struct {
		Fields []string
		Error  string
	}
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &resp) != nil || resp.Error != "" || len(resp.Fields) != 3 {
		t.Fatalf("dkimpy sealed nothing: %q", out)
	}
	var b strings.Builder
	for _, f := range resp.Fields {
		raw, err := base64.StdEncoding.DecodeString(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
	}
	return []byte(b.String() + string(in))
}

// scARC: an author at arcauthor.example (p=reject, Ed25519 DKIM) posts to a
// list; the list checks the message (DKIM and DMARC pass), adds its List-Id
// and a footer (which breaks the author's body hash), seals it with ARC and
// sends it from its own address (SPF passes for the list, unaligned). DMARC
// fails here.
//   - Daemon "arc" trusts the sealer arclist.example and delivers what
//     indirect evidence vouches for: 250, INBOX, arc=pass in our A-R and the
//     trusted_forwarder override (policy.dmarc=none).
//   - Daemon "header" trusts no sealer: handled as before ARC was read, the
//     List-Id under reject-unless-indirect quarantines it (Junk, mailing_list).
//   - The same list sealing as arcother.example, which "arc" does not trust:
//     rejected as under its reject_policy = "reject" (550).
func scARC(t *testing.T, w *world) {
	const author, list, other, usr = "arcauthor.example", "arclist.example", "arcother.example", "arc-sealer"
	key := newEd25519Key(t)
	key.publish(w, "ed", author)
	w.dns.MustAdd(
		txtRR("_dmarc."+author, "v=DMARC1; p=reject"),
		txtRR(author, "v=spf1 ip4:198.51.100.12 -all"),
		txtRR(list, "v=spf1 ip4:192.0.2.91 -all"),
		txtRR(other, "v=spf1 ip4:192.0.2.91 -all"),
	)
	trusted, untrusted := newARCSealer(t, w, list), newARCSealer(t, w, other)
	build := func(s *arcSealer) []byte {
		signed := key.sign(t, newMsg("alice@"+author, "dev@"+s.domain, "[dev] ARC", nil, "The patch.\n"), author, "ed")
		head, body, _ := strings.Cut(string(signed), "\r\n\r\n")
		head += "\r\nList-Id: Developers <dev." + s.domain + ">"
		msg := []byte(head + "\r\n\r\n" + body + "--\r\ndev mailing list\r\n")
		return s.seal(t, msg, "dkim=pass header.d="+author+"; spf=pass smtp.mailfrom="+author+"; dmarc=pass header.from="+author)
	}
	overrideOf := func(t *testing.T, m string) string {
		for _, r := range ourResults(t, m) {
			if r.Method == "dmarc" {
				return r.Reason
			}
		}
		return ""
	}
	c := w.session(t, "arc", client("192.0.2.91", "mail."+list))
	r, err := c.send("dev-bounces@"+list, []string{rcpt(usr)}, build(trusted))
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got := w.wantOnly(t, usr, 1, inbox)
	wantAR(t, got[0], "arc=pass", "arc smtp.remote-ip=192.0.2.91", "arc header.oldest-pass=0",
		"dkim=fail", "spf=pass", "dmarc=fail", "dmarc header.from="+author, "dmarc policy.dmarc=none")
	if o := overrideOf(t, got[0]); o != "trusted_forwarder" {
		t.Errorf("dmarc override %q, want trusted_forwarder", o)
	}

	const usr2 = "arc-sealer-unknown"
	c = w.session(t, "header", client("192.0.2.91", "mail."+list))
	r, err = c.send("dev-bounces@"+list, []string{rcpt(usr2)}, build(trusted))
	wantReply(t, r, err, "EOM", 250, "2.0.0")
	got = w.wantOnly(t, usr2, 1, junk)
	wantAR(t, got[0], "arc=pass", "dmarc=fail", "dmarc policy.dmarc=quarantine")
	if o := overrideOf(t, got[0]); o != "mailing_list" {
		t.Errorf("dmarc override %q, want mailing_list", o)
	}

	const usr3 = "arc-sealer-untrusted"
	c = w.session(t, "arc", client("192.0.2.91", "mail."+other))
	r, err = c.send("dev-bounces@"+other, []string{rcpt(usr3)}, build(untrusted))
	wantReply(t, r, err, "EOM", 550, "5.7.1")
	w.wantNothing(t, usr3)
	var verdicts []string
	for _, l := range strings.Split(readFile(t, w.d["arc"].log), "\n") {
		if strings.Contains(l, "msg=verdict") && strings.Contains(l, "header_from_domain="+author) {
			verdicts = append(verdicts, l)
		}
	}
	if len(verdicts) != 2 || !strings.Contains(verdicts[0], "arc=pass") || !strings.Contains(verdicts[0], "trusted-arc-sealer: trusted ARC sealer "+list) ||
		!strings.Contains(verdicts[1], "arc=pass") || !strings.Contains(verdicts[1], "action=reject") {
		t.Errorf("daemon arc: want the verdict lines of the trusted (override logged) and the untrusted (rejected) sealer, got %q", verdicts)
	}
}
