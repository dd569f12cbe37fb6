package health

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

// newResolver starts the test DNS server with zone and returns it and a
// pkg/cache resolver that asks it (temporary failures not remembered).
func newResolver(t testing.TB, zone string) (*dnstest.Server, *cache.Resolver) {
	t.Helper()
	srv := dnstest.New(t, zone)
	r, err := cache.New(cache.Config{Nameservers: []string{srv.Addr}, Timeout: 500 * time.Millisecond, Attempts: 2, ErrTTL: -1, StaleTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	return srv, r
}

// txt renders a TXT record line, split into character-strings of at most
// 255 octets (RFC 1035 §3.3.14) as a zone file needs for long keys.
func txt(name, text string) string {
	var parts []string
	for len(text) > 255 {
		parts = append(parts, `"`+text[:255]+`"`)
		text = text[255:]
	}
	parts = append(parts, `"`+text+`"`)
	return name + " IN TXT " + strings.Join(parts, " ") + "\n"
}

var (
	keysOnce sync.Once
	rsa1024  string
	rsa2048  string
)

// rsaKeys generates a real 1024-bit and 2048-bit RSA key once per test
// binary and returns their SubjectPublicKeyInfo in base64.
func rsaKeys(t testing.TB) (k1024, k2048 string) {
	t.Helper()
	keysOnce.Do(func() {
		rsa1024 = rsaPub(t, 1024)
		rsa2048 = rsaPub(t, 2048)
	})
	return rsa1024, rsa2048
}

func rsaPub(t testing.TB, bits int) string {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return spki(t, &k.PublicKey)
}

// rsaShort returns a public key with a 512-bit modulus. crypto/rsa refuses
// to generate keys under 1024 bits, and the size check needs only the
// modulus, so this is a prime with its top bit set: a well-formed
// SubjectPublicKeyInfo of the size a short DKIM key has.
func rsaShort(t testing.TB) string {
	n, err := rand.Prime(rand.Reader, 512)
	if err != nil {
		t.Fatal(err)
	}
	return spki(t, &rsa.PublicKey{N: new(big.Int).Set(n), E: 65537})
}

func spki(t testing.TB, pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func ed25519Pub(t testing.TB) string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(pub)
}

// find returns the findings of fs with the given code.
func find(fs []Finding, code Code) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Code == code {
			out = append(out, f)
		}
	}
	return out
}

// want checks that fs has a finding of code with severity sev and rule
// rule (rule "" is not checked).
func want(t *testing.T, what string, fs []Finding, code Code, sev Verdict, rule string) {
	t.Helper()
	got := find(fs, code)
	for _, f := range got {
		if f.Severity == sev && (rule == "" || f.Rule == rule) {
			return
		}
	}
	t.Errorf("%s: no %s finding %s (%s); findings:\n%s", what, sev, code, rule, dump(fs))
}

// wantNo checks that fs has no finding of code.
func wantNo(t *testing.T, what string, fs []Finding, code Code) {
	t.Helper()
	if got := find(fs, code); len(got) > 0 {
		t.Errorf("%s: unexpected %s: %+v", what, code, got)
	}
}

func dump(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "  %-5s %-24s %-18s %s: %s\n", f.Severity, f.Code, f.Rule, f.Name, f.Message)
	}
	return b.String()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}
