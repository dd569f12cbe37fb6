package verify

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/emersion/go-msgauth/dkim"
)

// body10KB is a 10 KB text body of 80-column lines.
var body10KB = strings.Repeat(strings.Repeat("x", 78)+"\r\n", 128)

// BenchmarkDKIMVerify10KB verifies an RSA-2048 relaxed/relaxed signature of
// a 10 KB message, streamed as the milter does, with the key in the cache.
// Compare with BenchmarkRSAVerifyPlusSHA256Body, the cryptographic floor.
func BenchmarkDKIMVerify10KB(b *testing.B) {
	k := keysOnce()
	srv := dnstest.New(b, "")
	addTXT(srv, "rsa._domainkey.example.com", keyRecord(b, k.rsa))
	r := newCache(b, srv, time.Second)
	msg := sign(b, strings.SplitAfter(testMessage, "\r\n\r\n")[0]+body10KB, rsaOpts(k, dkim.CanonicalizationRelaxed))
	fields, body := splitMessage(b, msg)
	ctx := context.Background()
	run := func() {
		v := NewDKIMVerifier(r, DKIMConfig{})
		for _, f := range fields {
			v.Header(f.name, f.value)
		}
		v.EndOfHeaders(ctx)
		v.Write([]byte(body))
		res, err := v.Finish(ctx)
		if err != nil || len(res) != 1 || res[0].Result != ResultPass {
			b.Fatalf("%+v %v", res, err)
		}
	}
	run() // warm the cache
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
}

// BenchmarkRSAVerifyPlusSHA256Body is the raw cost of one RSA-2048
// PKCS#1 v1.5 verification plus SHA-256 over the same 10 KB body.
func BenchmarkRSAVerifyPlusSHA256Body(b *testing.B) {
	k := keysOnce()
	digest := sha256.Sum256([]byte("header hash input"))
	sig, err := rsa.SignPKCS1v15(nil, k.rsa, crypto.SHA256, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(body10KB)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		sha256.Sum256(body)
		if err := rsa.VerifyPKCS1v15(&k.rsa.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSPFWarmCache checks a MAIL FROM whose record has an include and
// an a: term, every answer in the cache.
func BenchmarkSPFWarmCache(b *testing.B) {
	srv := dnstest.New(b, `
example.com.      300 IN TXT "v=spf1 include:_spf.example.com a:mx.example.com -all"
_spf.example.com. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 ~all"
mx.example.com.   300 IN A   192.0.2.25
`)
	c := NewSPFChecker(newCache(b, srv, time.Second), SPFConfig{})
	ctx := context.Background()
	ip := net.ParseIP("192.0.2.25")
	if r := c.CheckMailFrom(ctx, ip, "mx.example.com", "alice@example.com"); r.Result != ResultPass {
		b.Fatalf("%+v", r)
	}
	srv.ResetCounts()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c.CheckMailFrom(ctx, ip, "mx.example.com", "alice@example.com")
	}
	b.StopTimer()
	if q := srv.Queries(); q != 0 {
		b.Fatalf("%d DNS queries with a warm cache", q)
	}
}
