package verify

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/emersion/go-msgauth/dkim"
)

// body10KB is a 10 KB text body of 80-column lines.
var body10KB = strings.Repeat(strings.Repeat("x", 78)+"\r\n", 128)

// body50KB is a 50 KB text body of words, with a few of the things relaxed
// canonicalization changes (double spaces, a tab, trailing spaces).
var body50KB = strings.Repeat("The numbers are in.  See the attached report for\tdetails \r\n"+
	strings.Repeat("lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do\r\n", 15), 50)[:50_000] + "\r\n"

// benchDKIM verifies a message with body signed by each of opts (the last
// one on top), streamed as the milter does (chunks of 64 KiB), with the keys
// in the cache.
func benchDKIM(b *testing.B, body string, opts ...func(testKeys) dkim.SignOptions) {
	k := keysOnce()
	srv := dnstest.New(b, "")
	addTXT(srv, "rsa._domainkey.example.com", keyRecord(b, k.rsa))
	addTXT(srv, "ed._domainkey.example.com", keyRecord(b, k.ed))
	benchDKIMWith(b, newCache(b, srv, time.Second), body, opts...)
}

func benchDKIMWith(b *testing.B, r TXTResolver, body string, opts ...func(testKeys) dkim.SignOptions) {
	k := keysOnce()
	msg := strings.SplitAfter(testMessage, "\r\n\r\n")[0] + body
	for _, o := range opts {
		msg = sign(b, msg, o(k))
	}
	fields, rest := splitMessage(b, msg)
	bodyBytes := []byte(rest)
	ctx := context.Background()
	run := func() {
		v := NewDKIMVerifier(r, DKIMConfig{})
		for _, f := range fields {
			v.Header(f.name, f.value)
		}
		v.EndOfHeaders(ctx)
		for p := bodyBytes; len(p) > 0; {
			n := min(len(p), 65535)
			v.Write(p[:n])
			p = p[n:]
		}
		res, err := v.Finish(ctx)
		if err != nil || len(res) != len(opts) {
			b.Fatalf("%+v %v", res, err)
		}
		for _, r := range res {
			if r.Result != ResultPass {
				b.Fatalf("%+v", res)
			}
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

func rsaRelaxed(k testKeys) dkim.SignOptions { return rsaOpts(k, dkim.CanonicalizationRelaxed) }
func edRelaxed(k testKeys) dkim.SignOptions  { return edOpts(k, dkim.CanonicalizationRelaxed) }
func edSimple(k testKeys) dkim.SignOptions   { return edOpts(k, dkim.CanonicalizationSimple) }
func rsaSimple(k testKeys) dkim.SignOptions  { return rsaOpts(k, dkim.CanonicalizationSimple) }

// BenchmarkDKIMVerify10KB verifies an RSA-2048 relaxed/relaxed signature of
// a 10 KB message, streamed as the milter does, with the key in the cache.
// Compare with BenchmarkRSAVerifyPlusSHA256Body, the cryptographic floor.
func BenchmarkDKIMVerify10KB(b *testing.B) { benchDKIM(b, body10KB, rsaRelaxed) }

// BenchmarkDKIMVerify10KBSimple: the same with simple/simple.
func BenchmarkDKIMVerify10KBSimple(b *testing.B) { benchDKIM(b, body10KB, rsaSimple) }

// BenchmarkDKIMVerify50KBRelaxed: RSA-2048 relaxed/relaxed over 50 KB of
// text with double spaces, tabs and trailing spaces.
func BenchmarkDKIMVerify50KBRelaxed(b *testing.B) { benchDKIM(b, body50KB, rsaRelaxed) }

// BenchmarkDKIMVerifyEd25519: Ed25519 relaxed/relaxed, 10 KB.
func BenchmarkDKIMVerifyEd25519(b *testing.B) { benchDKIM(b, body10KB, edRelaxed) }

// BenchmarkDKIMVerifyDual: an RSA relaxed and an Ed25519 simple signature
// of the same 10 KB message (two body canonicalizations, two keys).
func BenchmarkDKIMVerifyDual(b *testing.B) { benchDKIM(b, body10KB, rsaRelaxed, edSimple) }

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

// benchBodyHash hashes body with one body canonicalization, in chunks of
// 64 KiB as the milter receives it.
func benchBodyHash(b *testing.B, body []byte, relaxed bool) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		h := newBodyHasher(relaxed)
		for p := body; len(p) > 0; {
			n := min(len(p), 65535)
			h.write(p[:n])
			p = p[n:]
		}
		h.sum()
		h.release()
	}
}

// flowed50KB is body50KB with a space at the end of every line, as
// format=flowed text has: a place where relaxed canonicalization changes
// the body on every line.
var flowed50KB = strings.ReplaceAll(body50KB, "\r\n", " \r\n")

// text50KB is 50 KB of words on lines of at most 72 columns, as
// cmd/milterbench writes its bodies: single spaces, nothing for relaxed
// canonicalization to change.
var text50KB = func() string {
	words := strings.Fields(`the quarterly report invoice meeting agenda shipment order delivery
		update summary project review budget forecast team schedule please find attached regarding
		account statement payment reminder newsletter offer customer support ticket release notes`)
	var b strings.Builder
	line := 0
	for i := 0; b.Len() < 50_000; i++ {
		w := words[(i*7+i/3)%len(words)]
		if line+len(w) > 72 {
			b.WriteString("\r\n")
			line = 0
		}
		if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String() + "\r\n"
}()

func BenchmarkDKIMBodyHashRelaxedText(b *testing.B) { benchBodyHash(b, []byte(text50KB), true) }

func BenchmarkDKIMBodyHashSimple(b *testing.B)  { benchBodyHash(b, []byte(body50KB), false) }
func BenchmarkDKIMBodyHashRelaxed(b *testing.B) { benchBodyHash(b, []byte(body50KB), true) }
func BenchmarkDKIMBodyHashRelaxedFlowed(b *testing.B) {
	benchBodyHash(b, []byte(flowed50KB), true)
}

// BenchmarkDKIMBodyHashFloor is SHA-256 alone over the same 50 KB.
func BenchmarkDKIMBodyHashFloor(b *testing.B) {
	body := []byte(body50KB)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		sha256.Sum256(body)
	}
}

// BenchmarkARCVerify10KB3Sets validates an ARC chain of three sets (RSA-2048,
// Ed25519, RSA-2048; relaxed/relaxed) over the same 10 KB message as
// BenchmarkDKIMVerify10KB, streamed as the milter does, with the keys in the
// cache: the newest AMS and the three seals are verified, and the two older
// AMSes for OldestPass.
func BenchmarkARCVerify10KB3Sets(b *testing.B) {
	benchARC(b, ARCConfig{})
}

// BenchmarkARCVerify10KB3SetsNoOldestPass: the same without the older
// AMSes (OldestPassDepth -1): what RFC 8617 §5.2 requires.
func BenchmarkARCVerify10KB3SetsNoOldestPass(b *testing.B) {
	benchARC(b, ARCConfig{OldestPassDepth: -1})
}

func benchARC(b *testing.B, cfg ARCConfig) {
	w := newARCWorld(b)
	msg := strings.SplitAfter(testMessage, "\r\n\r\n")[0] + body10KB
	for _, s := range []testSealer{w.list, w.fwd, w.relay} {
		msg = s.seal(b, msg, sealOpts{})
	}
	fields, rest := splitRaw(msg)
	bodyBytes := []byte(rest)
	ctx := context.Background()
	run := func() {
		v := NewARCVerifier(w.r, cfg)
		for _, f := range fields {
			v.Header(f.name, f.value)
		}
		v.EndOfHeaders(ctx)
		for p := bodyBytes; len(p) > 0; {
			n := min(len(p), 65535)
			v.Write(p[:n])
			p = p[n:]
		}
		res, err := v.Finish(ctx)
		if err != nil || res.CV != ChainPass {
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

// BenchmarkARCVerify50Sets validates the longest chain RFC 8617 allows: 50
// sets by 50 sealers (Ed25519), a short body, keys in the cache: 50 seals,
// the newest AMS and 8 older ones.
func BenchmarkARCVerify50Sets(b *testing.B) {
	k := keysOnce()
	srv := dnstest.New(b, "")
	r := newCache(b, srv, time.Second)
	msg := testMessage
	for i := 1; i <= MaxARCInstance; i++ {
		s := testSealer{domain: fmt.Sprintf("sealer%d.example", i), selector: "s", key: k.ed}
		addTXT(srv, "s._domainkey."+s.domain, keyRecord(b, s.key))
		msg = s.seal(b, msg, sealOpts{})
	}
	fields, rest := splitRaw(msg)
	ctx := context.Background()
	run := func() {
		v := NewARCVerifier(r, ARCConfig{})
		for _, f := range fields {
			v.Header(f.name, f.value)
		}
		v.EndOfHeaders(ctx)
		v.Write([]byte(rest))
		res, err := v.Finish(ctx)
		if err != nil || res.CV != ChainPass {
			b.Fatalf("%+v %v", res, err)
		}
	}
	run()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
}
