package mailout

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// reportMessage is shaped like an RFC 9990 §3.5.2 report: the Subject of
// the RFC's grammar and a gzip attachment, here with LF line ends as a
// builder might write them.
func reportMessage(from string) []byte {
	return []byte(strings.Join([]string{
		"From: DMARC reports <" + from + ">",
		"To: dmarc@example.com",
		"Subject: Report Domain: example.com Submitter: receiver.example Report-ID: <20261206.example.com@receiver.example>",
		"Date: Mon, 07 Dec 2026 00:30:00 +0000",
		"Message-ID: <20261206.example.com@receiver.example>",
		"MIME-Version: 1.0",
		`Content-Type: multipart/mixed; boundary="b1"`,
		"",
		"--b1",
		"Content-Type: text/plain; charset=us-ascii",
		"",
		"DMARC aggregate report for example.com.",
		"",
		"--b1",
		"Content-Type: application/gzip",
		"Content-Transfer-Encoding: base64",
		`Content-Disposition: attachment; filename="receiver.example!example.com!1796515200!1796601600!20261206.xml.gz"`,
		"",
		base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x1f, 0x8b, 8, 0}, 12)),
		"--b1--",
		"",
	}, "\n"))
}

// testKey writes a private key in the given PEM form and returns the
// file and the DNS TXT value of its public key.
func testKey(t *testing.T, kind string) (file, txt string) {
	t.Helper()
	var der []byte
	var blockType, pub string
	var err error
	switch kind {
	case "rsa-pkcs1", "rsa-pkcs8":
		var k *rsa.PrivateKey
		if k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		pub = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pubDER)
		if kind == "rsa-pkcs1" {
			der, blockType = x509.MarshalPKCS1PrivateKey(k), "RSA PRIVATE KEY"
		} else {
			der, err = x509.MarshalPKCS8PrivateKey(k)
			blockType = "PRIVATE KEY"
		}
	case "ed25519":
		var p ed25519.PublicKey
		var k ed25519.PrivateKey
		if p, k, err = ed25519.GenerateKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
		pub = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(p)
		der, err = x509.MarshalPKCS8PrivateKey(k)
		blockType = "PRIVATE KEY"
	}
	if err != nil || der == nil {
		t.Fatalf("%s: %v", kind, err)
	}
	file = filepath.Join(t.TempDir(), kind+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, pub
}

// txtRecord splits a long TXT value into 255-octet strings.
func txtRecord(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	parts = append(parts, `"`+value+`"`)
	return fmt.Sprintf("%s 300 IN TXT %s", name, strings.Join(parts, " "))
}

// TestSignVerifies signs a report with each key form and verifies the
// result with go-msgauth's verifier, with our streaming verifier
// (pkg/verify) against the key served by internal/dnstest, and checks that
// the message passes DMARC (p=reject, strict DKIM alignment) through
// pkg/policy with that DKIM result alone.
func TestSignVerifies(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"rsa-pkcs1", "rsa-pkcs8", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			keyFile, pub := testKey(t, kind)
			srv := dnstest.New(t, txtRecord("rep._domainkey.receiver.example.", pub)+"\n"+
				`_dmarc.receiver.example. 300 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"`)
			res := newResolver(t, srv)
			s, err := NewSigner(SignerOptions{Domain: "Receiver.Example", Selector: "rep", KeyFile: keyFile})
			if err != nil {
				t.Fatal(err)
			}
			signed, err := s.Sign(reportMessage("dmarc-reports@receiver.example"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(signed, []byte("DKIM-Signature: ")) || bytes.Contains(bytes.ReplaceAll(signed, []byte("\r\n"), nil), []byte("\n")) {
				t.Fatalf("signed message does not start with the signature or has bare LF:\n%s", signed)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			// go-msgauth's verifier.
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{
				LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(ctx, name) },
			})
			if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "receiver.example" {
				t.Fatalf("go-msgauth: %v %+v", err, vs)
			}
			for _, h := range []string{"from", "to", "subject", "date", "message-id", "mime-version", "content-type"} {
				if !contains(vs[0].HeaderKeys, h) {
					t.Errorf("%s not signed: h=%v", h, vs[0].HeaderKeys)
				}
			}

			// Ours.
			results := verifyOurs(t, ctx, res, signed)
			if len(results) != 1 || results[0].Result != verify.ResultPass || results[0].Domain != "receiver.example" || results[0].Selector != "rep" {
				t.Fatalf("pkg/verify: %+v", results)
			}

			// DMARC: the From domain's strict policy passes on DKIM alone
			// (SPF fails here), RFC 9990 §3.5.2.
			in := policy.Input{
				SourceIP: netip.MustParseAddr("192.0.2.1"),
				MailFrom: "bounce@elsewhere.example",
				From:     policy.ParseFrom([]string{"DMARC reports <dmarc-reports@receiver.example>"}),
				SPF:      verify.SPFResult{Result: verify.ResultFail, Scope: verify.ScopeMailFrom, Domain: "elsewhere.example"},
				DKIM:     results,
			}
			policy.Prepare(ctx, res, &in, policy.Options{})
			if v := policy.Evaluate(in); v.Result != policy.ResultPass {
				t.Errorf("DMARC %s, want pass: %+v", v.Result, v.Domains)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// verifyOurs feeds a message to pkg/verify's streaming verifier as the
// milter does: each header field, then the body.
func verifyOurs(t *testing.T, ctx context.Context, r verify.TXTResolver, msg []byte) []verify.DKIMResult {
	t.Helper()
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	v := verify.NewDKIMVerifier(r, verify.DKIMConfig{})
	defer v.Abort()
	var name, value string
	flush := func() {
		if name != "" {
			v.Header(name, value)
		}
	}
	for _, line := range strings.Split(string(msg[:end]), "\r\n") {
		if line[0] == ' ' || line[0] == '\t' {
			value += "\r\n" + line
			continue
		}
		flush()
		name, value, _ = strings.Cut(line, ":")
	}
	flush()
	v.EndOfHeaders(ctx)
	v.Write(msg[end+4:])
	res, err := v.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestSignTamper: the signature covers the body and the listed fields, and
// an added second From or Subject breaks it (over-signing).
func TestSignTamper(t *testing.T) {
	t.Parallel()
	keyFile, pub := testKey(t, "ed25519")
	srv := dnstest.New(t, txtRecord("rep._domainkey.receiver.example.", pub))
	res := newResolver(t, srv)
	s, err := NewSigner(SignerOptions{Domain: "receiver.example", Selector: "rep", KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := s.Sign(reportMessage("dmarc-reports@receiver.example"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	end := bytes.Index(signed, []byte("\r\n\r\n"))
	for name, tampered := range map[string][]byte{
		"body changed":      bytes.Replace(signed, []byte("aggregate report"), []byte("aggregate rep0rt"), 1),
		"subject changed":   bytes.Replace(signed, []byte("Submitter: receiver"), []byte("Submitter: attacker"), 1),
		"second From added": append(append(append([]byte{}, signed[:end+2]...), "From: evil@attacker.example\r\n"...), signed[end+2:]...),
		"Reply-To added":    append(append(append([]byte{}, signed[:end+2]...), "Reply-To: evil@attacker.example\r\n"...), signed[end+2:]...),
	} {
		got := verifyOurs(t, ctx, res, tampered)
		if len(got) != 1 || got[0].Result != verify.ResultFail {
			t.Errorf("%s: %+v, want fail", name, got)
		}
	}
	if got := verifyOurs(t, ctx, res, signed); len(got) != 1 || got[0].Result != verify.ResultPass {
		t.Errorf("untouched: %+v", got)
	}
}

func TestSignRefuses(t *testing.T) {
	t.Parallel()
	keyFile, _ := testKey(t, "ed25519")
	s, err := NewSigner(SignerOptions{Domain: "receiver.example", Selector: "rep", KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		err  error
	}{
		{"From of another Organizational Domain", reportMessage("dmarc@other.example"), ErrNotAligned},
		{"From under a public suffix sibling", []byte("From: a@receiver.co.uk\r\n\r\nbody\r\n"), ErrNotAligned},
		{"no From", []byte("To: a@example.com\r\n\r\nbody\r\n"), ErrMessage},
		{"two From fields", []byte("From: a@receiver.example\r\nFrom: b@receiver.example\r\n\r\nbody\r\n"), ErrMessage},
		{"two addresses", []byte("From: a@receiver.example, b@receiver.example\r\n\r\nbody\r\n"), ErrMessage},
		{"no end of header", []byte("From: a@receiver.example\r\n"), ErrMessage},
	} {
		if _, err := s.Sign(tc.msg); !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
		}
	}
	// A subdomain of the signing domain aligns (relaxed).
	if _, err := s.Sign(reportMessage("dmarc@reports.receiver.example")); err != nil {
		t.Errorf("subdomain From: %v", err)
	}
}

func TestNewSignerRefuses(t *testing.T) {
	t.Parallel()
	good, _ := testKey(t, "ed25519")
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	small := smallRSAKey(t)
	ecKey := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	pemBytes, _ := os.ReadFile(good)
	for _, tc := range []struct {
		name string
		opts SignerOptions
	}{
		{"bad domain", SignerOptions{Domain: "not a domain", Selector: "s", KeyFile: good}},
		{"empty selector", SignerOptions{Domain: "receiver.example", KeyFile: good}},
		{"selector with a semicolon", SignerOptions{Domain: "receiver.example", Selector: "s;x", KeyFile: good}},
		{"no key file", SignerOptions{Domain: "receiver.example", Selector: "s"}},
		{"world-readable key", SignerOptions{Domain: "receiver.example", Selector: "s", KeyFile: write("open.pem", pemBytes, 0o644)}},
		{"not PEM", SignerOptions{Domain: "receiver.example", Selector: "s", KeyFile: write("x.pem", []byte("hello"), 0o600)}},
		{"EC key block", SignerOptions{Domain: "receiver.example", Selector: "s", KeyFile: write("ec.pem", ecKey, 0o600)}},
		{"RSA under 1024 bits", SignerOptions{Domain: "receiver.example", Selector: "s", KeyFile: write("small.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}), 0o600)}},
	} {
		if _, err := NewSigner(tc.opts); !errors.Is(err, ErrSignerConfig) {
			t.Errorf("%s: err %v, want ErrSignerConfig", tc.name, err)
		}
	}
}

// smallRSAKey builds a 512-bit RSA key by hand: crypto/rsa no longer
// generates keys under 1024 bits, but such keys exist in old files.
func smallRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	one := big.NewInt(1)
	for range 10 {
		p, err1 := rand.Prime(rand.Reader, 256)
		q, err2 := rand.Prime(rand.Reader, 256)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		if d := new(big.Int).ModInverse(big.NewInt(65537), phi); d != nil {
			return &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537}, D: d, Primes: []*big.Int{p, q}}
		}
	}
	t.Fatal("no 512-bit key")
	return nil
}

func TestToCRLF(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"a\r\nb\r\n":  "a\r\nb\r\n",
		"a\nb\n":      "a\r\nb\r\n",
		"a\rb\r\n":    "a\r\nb\r\n",
		"a\r\n\nb":    "a\r\n\r\nb",
		"no line end": "no line end",
		"\n":          "\r\n",
	} {
		if got := string(toCRLF([]byte(in))); got != want {
			t.Errorf("toCRLF(%q) = %q, want %q", in, got, want)
		}
	}
}
