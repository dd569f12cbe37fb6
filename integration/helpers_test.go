package integration

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/dmarc-milter/dmarc-milter/internal/authres"
)

// dkimKey is a signing key and the TXT record that publishes it.
type dkimKey struct {
	signer crypto.Signer
	txt    string // "v=DKIM1; k=...; p=..."
}

func newEd25519Key(t *testing.T) dkimKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return dkimKey{signer: priv, txt: "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}
}

func newRSAKey(t *testing.T) dkimKey {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return dkimKey{signer: priv, txt: "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)}
}

// publish adds the key at selector._domainkey.domain.
func (k dkimKey) publish(w *world, selector, domain string) {
	w.dns.MustAdd(txtRR(selector+"._domainkey."+domain, k.txt))
}

// sign returns the message with a DKIM-Signature by domain prepended.
func (k dkimKey) sign(t *testing.T, message []byte, domain, selector string) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(message), &dkim.SignOptions{
		Domain: domain, Selector: selector, Signer: k.signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// txtRR writes a TXT record as zone text, split into the 255-byte strings
// that a long DKIM key needs (RFC 1035 §3.3.14, RFC 6376 §3.6.2.2).
func txtRR(name, value string) string {
	var parts []string
	for len(value) > 200 {
		parts = append(parts, `"`+value[:200]+`"`)
		value = value[200:]
	}
	parts = append(parts, `"`+value+`"`)
	return fmt.Sprintf("%s. 300 IN TXT %s", name, strings.Join(parts, " "))
}

var msgSeq atomic.Int64

// newMsg builds a message: From, To, Subject, Date, Message-ID, extra
// header lines, and a body. Line ends are CRLF.
func newMsg(from, to, subject string, extra []string, body string) []byte {
	id := fmt.Sprintf("<%d.%d@%s>", time.Now().UnixNano(), msgSeq.Add(1), domainOf(from))
	h := []string{
		"From: <" + from + ">",
		"To: <" + to + ">",
		"Subject: " + subject,
		"Date: " + time.Now().Format(time.RFC1123Z),
		"Message-ID: " + id,
	}
	return msg(append(h, extra...), body)
}

func domainOf(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return d
}

// ourResults parses the single Authentication-Results field that carries our
// authserv-id, and fails the test when there is not exactly one.
func ourResults(t *testing.T, message string) []authres.Result {
	t.Helper()
	ars := ourAR(message)
	if len(ars) != 1 {
		t.Fatalf("want exactly one Authentication-Results by %s, got %q", authservID, ars)
	}
	_, res, err := authres.Parse(ars[0])
	if err != nil {
		t.Fatalf("our Authentication-Results %q: %v", ars[0], err)
	}
	t.Logf("A-R: %s", ars[0])
	return res
}

// wantAR checks our Authentication-Results against expectations written as
// "method=value" (some result of that method has that value) or
// "method ptype.prop=value" (the first result of that method has that
// property; "ptype.prop~=domain" accepts the domain or an address in it).
func wantAR(t *testing.T, message string, wants ...string) {
	t.Helper()
	res := ourResults(t, message)
	for _, w := range wants {
		if method, prop, ok := strings.Cut(w, " "); ok {
			k, v, _ := strings.Cut(prop, "=")
			// "prop~=domain": the value is the domain or an address in it
			// (smtp.mailfrom may be either, RFC 8601 §2.7.2).
			k, suffix := strings.CutSuffix(k, "~")
			found := false
			for _, r := range res {
				if r.Method == method {
					got := strings.ToLower(r.Props[k])
					found = got == strings.ToLower(v) || suffix && strings.HasSuffix(got, "@"+strings.ToLower(v))
					break
				}
			}
			if !found {
				t.Errorf("A-R: want %s; got %q", w, ourAR(message))
			}
			continue
		}
		method, v, _ := strings.Cut(w, "=")
		found := false
		for _, r := range res {
			found = found || (r.Method == method && r.Value == v)
		}
		if !found {
			t.Errorf("A-R: want %s; got %q", w, ourAR(message))
		}
	}
}

// wantReply checks an SMTP reply's stage, code and enhanced status code.
func wantReply(t *testing.T, r reply, err error, stage string, code int, enhanced string) {
	t.Helper()
	if err != nil {
		t.Fatalf("SMTP: %v (%v)", err, r)
	}
	if r.Stage != stage || r.Code != code || !strings.HasPrefix(r.Text, enhanced) {
		t.Fatalf("SMTP reply %v; want %s: %d %s", r, stage, code, enhanced)
	}
}

// rcpt is the address of a scenario's own mailbox.
func rcpt(usr string) string { return usr + "@" + rcptDomain }

// wantOnly waits for n messages of usr, lets the queue drain, and checks that
// exactly n arrived, all in folder f.
func (w *world) wantOnly(t *testing.T, usr string, n int, f folder) []string {
	t.Helper()
	w.waitMail(t, usr, n)
	w.settle(t, rcpt(usr))
	got := w.dc.delivered(usr)
	if count(got) != n || len(got[f]) != n {
		t.Fatalf("%s: want exactly %d message(s) in %s, got INBOX=%d Junk=%d", usr, n, f, len(got[inbox]), len(got[junk]))
	}
	return got[f]
}

// wantNothing checks that nothing was delivered to usr and nothing is queued
// for it.
func (w *world) wantNothing(t *testing.T, usr string) {
	t.Helper()
	if q := w.pf.queue(t, rcpt(usr)); len(q) != 0 {
		t.Errorf("queued for %s: %+v", usr, q)
	}
	if got := w.dc.delivered(usr); count(got) != 0 {
		t.Errorf("delivered to %s: INBOX=%d Junk=%d", usr, len(got[inbox]), len(got[junk]))
	}
}
