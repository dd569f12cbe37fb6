package verify

import (
	"bufio"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
)

// dkimpy drives testdata/arc/dkimpy_arc.py: Debian's python3-dkim (dkimpy),
// an independent ARC implementation, sealing and validating on request.
type dkimpy struct {
	cmd *exec.Cmd
	in  *json.Encoder
	out *bufio.Scanner
}

// debianPython is Debian's interpreter: python3-dkim is installed for it,
// not for a python3 of another origin that may come first on PATH.
const debianPython = "/usr/bin/python3"

// startDkimpy starts the helper with keys read from srv. Without dkimpy
// the test fails under CI=true (scripts/install-deps.sh installs it) and is
// skipped loudly otherwise.
func startDkimpy(t *testing.T, srv *dnstest.Server) *dkimpy {
	t.Helper()
	check := exec.Command(debianPython, "-c", "import dkim, authres, dns.query")
	if out, err := check.CombinedOutput(); err != nil {
		msg := "dkimpy (Debian python3-dkim, python3-authres, python3-dnspython) is not usable: " +
			err.Error() + ": " + strings.TrimSpace(string(out)) + "; run scripts/install-deps.sh"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPING THE ARC DIFFERENTIAL TEST: " + msg)
	}
	host, port, err := net.SplitHostPort(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(debianPython, "testdata/arc/dkimpy_arc.py", host, port)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	return &dkimpy{cmd: cmd, in: json.NewEncoder(stdin), out: sc}
}

func (d *dkimpy) call(t *testing.T, req map[string]any, resp any) {
	t.Helper()
	if err := d.in.Encode(req); err != nil {
		t.Fatal(err)
	}
	if !d.out.Scan() {
		t.Fatalf("dkimpy helper ended: %v", d.out.Err())
	}
	var e struct{ Error string }
	json.Unmarshal(d.out.Bytes(), &e)
	if e.Error != "" {
		t.Fatalf("dkimpy %s: %s", req["op"], e.Error)
	}
	if err := json.Unmarshal(d.out.Bytes(), resp); err != nil {
		t.Fatal(err)
	}
}

// pySealer is a sealer whose sets dkimpy makes.
type pySealer struct {
	domain, selector string
	keyPEM           string
}

// seal has dkimpy add a set to msg. dkimpy takes the chain status for cv=
// from the sealer's own Authentication-Results field (arc=...), which is
// added first, as a sealing MTA would.
func (d *dkimpy) seal(t *testing.T, msg string, s pySealer, arc string, headers []string) string {
	t.Helper()
	ar := "Authentication-Results: " + s.domain + "; dmarc=pass header.from=example.com"
	if arc != "" {
		ar = "Authentication-Results: " + s.domain + "; arc=" + arc + "; dmarc=pass header.from=example.com"
	}
	msg = ar + "\r\n" + msg
	req := map[string]any{"op": "sign", "message": base64.StdEncoding.EncodeToString([]byte(msg)),
		"selector": s.selector, "domain": s.domain, "key": s.keyPEM, "srv_id": s.domain, "t": 1700000000}
	if headers != nil {
		req["headers"] = headers
	}
	var resp struct{ Fields []string }
	d.call(t, req, &resp)
	if len(resp.Fields) != 3 {
		t.Fatalf("dkimpy sealed %d fields", len(resp.Fields))
	}
	var b strings.Builder
	for _, f := range resp.Fields {
		raw, err := base64.StdEncoding.DecodeString(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
	}
	return b.String() + msg
}

// verify returns dkimpy's chain status: pass, fail or none; dkimpy's "no
// status" for a chain whose newest seal says cv=fail is fail (RFC 8617 §5.2
// step 2).
func (d *dkimpy) verify(t *testing.T, msg string) (ChainValidation, string) {
	t.Helper()
	var resp struct{ CV, Reason string }
	d.call(t, map[string]any{"op": "verify", "message": base64.StdEncoding.EncodeToString([]byte(msg))}, &resp)
	if resp.CV == "" {
		return ChainFail, "no status: " + resp.Reason
	}
	return ChainValidation(resp.CV), resp.Reason
}

// dropSet removes the three fields of instance n.
func dropSet(t *testing.T, msg string, n string) string {
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	var out []string
	for _, f := range rawFields(head + "\r\n") {
		if arcFieldKind(f.name) != arcNone {
			_, v, _ := strings.Cut(f.text, ":")
			if m := arcInstanceRE.FindStringSubmatch(v); m != nil && m[1] == n {
				continue
			}
		}
		out = append(out, f.text)
	}
	return strings.Join(out, "\r\n") + "\r\n\r\n" + body
}

// arcDiffMessages are the messages sealed: plain text, MIME with folded
// fields and white space for relaxed canonicalization to change, no body.
var arcDiffMessages = map[string]string{
	"text": testMessage,
	"mime": "From: \"Alice Example\" <alice@example.com>\r\n" +
		"To: list@lists.example.org,\r\n\tbob@example.net\r\n" +
		"Subject:   =?utf-8?q?caf=C3=A9?=   and\r\n  more\r\n" +
		"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n" +
		"Message-ID: <2@example.com>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"b1\"\r\n" +
		"\r\n" +
		"--b1\r\nContent-Type: text/plain\r\n\r\nline with trailing space   \r\n\ttabbed  line\r\n\r\n--b1--\r\n\r\n\r\n",
	"no body": "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: empty\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\n\r\n",
}

// TestARCDifferential: chains sealed by dkimpy at test time, as they are
// and mutated; our cv equals dkimpy's on every one, and equals what the
// mutation should give (so that the test cannot pass by both failing
// everything).
func TestARCDifferential(t *testing.T) {
	srv := dnstest.New(t, "")
	py := startDkimpy(t, srv)
	k := keysOnce()
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.rsa)}))
	list := pySealer{domain: "lists.example.org", selector: "arc", keyPEM: keyPEM}
	fwd := pySealer{domain: "forwarder.example.net", selector: "s2", keyPEM: keyPEM}
	relay := pySealer{domain: "relay.example.com", selector: "s1", keyPEM: keyPEM}
	for _, s := range []pySealer{list, fwd, relay} {
		addTXT(srv, s.selector+"._domainkey."+s.domain, keyRecord(t, k.rsa))
	}
	ours := testSealer{domain: "ours.example", selector: "go", key: k.rsa}
	addTXT(srv, "go._domainkey.ours.example", keyRecord(t, k.rsa))
	r := newCache(t, srv, time.Second)

	type mutation struct {
		name string
		make func(t *testing.T, msg string) string
		want ChainValidation
	}
	one := func(t *testing.T, msg string) string { return py.seal(t, msg, list, "", nil) }
	two := func(t *testing.T, msg string) string { return py.seal(t, one(t, msg), fwd, "pass", nil) }
	three := func(t *testing.T, msg string) string { return py.seal(t, two(t, msg), relay, "pass", nil) }
	mutations := []mutation{
		{name: "one set", make: func(t *testing.T, m string) string { return one(t, m) }, want: ChainPass},
		{name: "two sets", make: func(t *testing.T, m string) string { return two(t, m) }, want: ChainPass},
		{name: "three sets", make: func(t *testing.T, m string) string { return three(t, m) }, want: ChainPass},
		{name: "chosen headers", make: func(t *testing.T, m string) string {
			return py.seal(t, py.seal(t, m, list, "", []string{"from", "subject"}), fwd, "pass", []string{"from", "to", "date", "from"})
		}, want: ChainPass},
		{name: "unsigned field added on top", make: func(t *testing.T, m string) string {
			return "Received: from mx.example.net by mx.example.org; Sat, 28 Nov 2026 12:01:00 +0000\r\n" + three(t, m)
		}, want: ChainPass},
		{name: "ARC fields reordered and names in lower case", make: func(t *testing.T, m string) string {
			s := two(t, m)
			s = strings.Replace(s, "ARC-Seal: i=1", "arc-seal: i=1", 1)
			head, body, _ := strings.Cut(s, "\r\n\r\n")
			fs := rawFields(head + "\r\n")
			fs[0], fs[2] = fs[2], fs[0] // the newest set: AAR first, seal third
			var out []string
			for _, f := range fs {
				out = append(out, f.text)
			}
			return strings.Join(out, "\r\n") + "\r\n\r\n" + body
		}, want: ChainPass},
		{name: "header change", make: func(t *testing.T, m string) string {
			return strings.Replace(three(t, m), "\r\nDate: Sat, 28 Nov", "\r\nDate: Sun, 29 Nov", 1)
		}, want: ChainFail},
		{name: "body change", make: func(t *testing.T, m string) string {
			return three(t, m) + "appended by someone\r\n"
		}, want: ChainFail},
		{name: "broken seal in the middle", make: func(t *testing.T, m string) string {
			s := replaceField(t, two(t, m), FieldARCSeal, 0, breakSig)
			return py.seal(t, s, relay, "pass", nil)
		}, want: ChainFail},
		{name: "AAR changed in the middle", make: func(t *testing.T, m string) string {
			return replaceField(t, three(t, m), FieldARCAuthenticationResults, 1, func(s string) string {
				return strings.Replace(s, "dmarc=pass", "dmarc=fail", 1)
			})
		}, want: ChainFail},
		{name: "instance gap", make: func(t *testing.T, m string) string {
			return dropSet(t, three(t, m), "2")
		}, want: ChainFail},
		{name: "duplicate instance", make: func(t *testing.T, m string) string {
			a := one(t, m)
			b := py.seal(t, m, fwd, "", nil) // another set 1 of the same message
			head, _, _ := strings.Cut(b, "\r\nAuthentication-Results:")
			return head + "\r\n" + a
		}, want: ChainFail},
		{name: "cv=none on i=2", make: func(t *testing.T, m string) string {
			return ours.seal(t, one(t, m), sealOpts{cv: "none", headers: "from:to:subject"})
		}, want: ChainFail},
		{name: "cv=none on i=2, edited", make: func(t *testing.T, m string) string {
			return replaceField(t, two(t, m), FieldARCSeal, 0, func(s string) string {
				return strings.Replace(s, "cv=pass", "cv=none", 1)
			})
		}, want: ChainFail},
		{name: "newest seal says cv=fail", make: func(t *testing.T, m string) string {
			return py.seal(t, one(t, m), fwd, "fail", nil)
		}, want: ChainFail},
		{name: "our set on top of dkimpy's", make: func(t *testing.T, m string) string {
			return ours.seal(t, two(t, m), sealOpts{headers: "from:to:subject:date"})
		}, want: ChainPass},
		{name: "no chain", make: func(t *testing.T, m string) string { return m }, want: ChainNone},
	}
	for name, msg := range arcDiffMessages {
		for _, mu := range mutations {
			t.Run(name+"/"+mu.name, func(t *testing.T) {
				m := mu.make(t, msg)
				theirs, why := py.verify(t, m)
				got := verifyARC(t, r, ARCConfig{}, m, 5)
				if got.CV != theirs {
					t.Errorf("cv=%s (%s: %s), dkimpy cv=%s (%s)", got.CV, got.Failure, got.Reason, theirs, why)
				}
				if got.CV != mu.want {
					t.Errorf("cv=%s (%s: %s), want %s", got.CV, got.Failure, got.Reason, mu.want)
				}
			})
		}
	}
}
