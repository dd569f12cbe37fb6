package verify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"
)

// testKeys are generated once per test binary: RSA-2048 generation is slow
// under the race detector.
type testKeys struct {
	rsa *rsa.PrivateKey
	ed  ed25519.PrivateKey
}

var keysOnce = sync.OnceValue(func() testKeys {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return testKeys{rsa: rk, ed: ek}
})

// keyRecord is the DNS TXT value publishing the public half of signer.
func keyRecord(t testing.TB, signer crypto.Signer) string {
	t.Helper()
	switch pub := signer.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	t.Fatalf("unknown key type %T", signer)
	return ""
}

// addTXT publishes value at name, cut into 255-octet character-strings.
func addTXT(srv *dnstest.Server, name, value string) {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, value[:255])
		value = value[255:]
	}
	parts = append(parts, value)
	srv.Add(&dns.TXT{Hdr: hdr(dns.Fqdn(name), dns.TypeTXT), Txt: parts})
}

// sign returns msg with a DKIM-Signature field added on top.
func sign(t testing.TB, msg string, o dkim.SignOptions) string {
	t.Helper()
	var b bytes.Buffer
	if err := dkim.Sign(&b, strings.NewReader(msg), &o); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// field is one header field as the milter receives it from Postfix with
// SMFIP_HDR_LEADSPC: the name, and every octet after the colon, with folds
// as "\n".
type field struct{ name, value string }

// splitMessage cuts a CRLF message into fields (as Postfix would send them)
// and the body.
func splitMessage(t testing.TB, msg string) ([]field, string) {
	t.Helper()
	head, body, ok := strings.Cut(msg, "\r\n\r\n")
	if !ok { // a message without a body (and without the empty line)
		head = strings.TrimSuffix(msg, "\r\n")
	}
	var out []field
	for _, line := range strings.SplitAfter(head+"\r\n", "\r\n") {
		if line == "" {
			continue
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line[0] == ' ' || line[0] == '\t' {
			out[len(out)-1].value += "\n" + line
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("bad header line %q", line)
		}
		out = append(out, field{name, value})
	}
	return out, body
}

// verifyMessage streams msg through a DKIMVerifier the way the milter will,
// with body chunks of chunk octets.
func verifyMessage(t testing.TB, r TXTResolver, cfg DKIMConfig, msg string, chunk int) []DKIMResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fields, body := splitMessage(t, msg)
	v := NewDKIMVerifier(r, cfg)
	for _, f := range fields {
		if err := v.Header(f.name, f.value); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.EndOfHeaders(ctx); err != nil {
		t.Fatal(err)
	}
	for b := []byte(body); len(b) > 0; {
		n := min(chunk, len(b))
		if _, err := v.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	res, err := v.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// results is a compact view of results for comparisons: "result d= s=".
func results(rs []DKIMResult) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, string(r.Result)+" "+r.Domain+" "+r.Selector)
	}
	return out
}

// checkNoLeak fails if the number of goroutines does not come back to base.
func checkNoLeak(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d, want %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const testMessage = "From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: the quarterly\r\n" +
	" report, folded\r\n" +
	"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	"\r\n" +
	"the numbers  are\tin.\r\n" +
	"\r\n" +
	"\r\n"
