package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
)

// TestSPFReasonText pins the reason line of every result (it is built by
// concatenation, not fmt).
func TestSPFReasonText(t *testing.T) {
	t.Parallel()
	ip4, ip6 := net.ParseIP("192.0.2.7").To4(), net.ParseIP("2001:db8::1")
	cases := []struct {
		name string
		res  Result
		ip   net.IP
		err  error
		want string
	}{
		{"pass", ResultPass, ip4, spf.ErrMatchedIP, "192.0.2.7 is authorized by example.com: matched ip"},
		{"pass without detail", ResultPass, ip6, nil, "2001:db8::1 is authorized by example.com"},
		{"fail", ResultFail, ip4, spf.ErrMatchedAll, "192.0.2.7 is not authorized by example.com: matched all"},
		{"softfail", ResultSoftFail, ip6, spf.ErrMatchedAll, "2001:db8::1 is probably not authorized by example.com: matched all"},
		{"neutral", ResultNeutral, ip4, nil, "example.com makes no assertion about 192.0.2.7"},
		{"none, no record", ResultNone, ip4, spf.ErrNoResult, "example.com has no SPF record"},
		{"none, other detail", ResultNone, ip4, errors.New("spf: odd"), "example.com has no SPF record: odd"},
		{"temperror", ResultTempError, ip4, errors.New("lookup timed out"), "temporary DNS error checking example.com: lookup timed out"},
		{"permerror", ResultPermError, ip4, &SPFSyntaxError{Domain: "example.com", Msg: "bad"},
			"SPF record of example.com cannot be evaluated: syntax error in SPF record of example.com: bad"},
		{"permerror without detail", ResultPermError, ip4, nil, "SPF record of example.com cannot be evaluated"},
	}
	for _, tc := range cases {
		if got := spfReason(tc.res, "example.com", tc.ip, tc.err); got != tc.want {
			t.Errorf("%s: spfReason = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestSPFSyntaxCacheDomains: a malformed record published by two domains is
// checked once, and each error names the domain it was found at (the
// cached error is not modified).
func TestSPFSyntaxCacheDomains(t *testing.T) {
	t.Parallel()
	const bad = "v=spf1 ip4:192.0.2.1 bogus:x -all"
	srv := dnstest.New(t, `
a.example.  300 IN TXT "`+bad+`"
b.example.  300 IN TXT "`+bad+`"
ok.example. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
`)
	c := NewSPFChecker(newCache(t, srv, time.Second), SPFConfig{})
	ip := net.ParseIP("192.0.2.1")
	for round := range 2 {
		for _, d := range []string{"a.example", "b.example"} {
			r := c.CheckMailFrom(context.Background(), ip, "x", "u@"+d)
			want := "syntax error in SPF record of " + d + ": "
			if r.Result != ResultPermError || !strings.Contains(r.Reason, want) {
				t.Errorf("round %d, %s: %+v, want permerror naming %s", round, d, r, d)
			}
		}
		if r := c.CheckMailFrom(context.Background(), ip, "x", "u@ok.example"); r.Result != ResultPass {
			t.Errorf("round %d, ok.example: %+v", round, r)
		}
	}
	c.syntax.mu.Lock()
	n := len(c.syntax.m)
	se := c.syntax.m[bad]
	c.syntax.mu.Unlock()
	if n != 2 {
		t.Errorf("%d records remembered, want 2", n)
	}
	if se == nil || se.Domain != "" {
		t.Errorf("cached error %+v: want one without a domain", se)
	}
}

// TestSPFSyntaxCacheBounds: the cache never holds more than its entries,
// long records are not kept, and its verdicts are checkSPFRecord's.
func TestSPFSyntaxCacheBounds(t *testing.T) {
	t.Parallel()
	c := newSPFSyntaxCache()
	for i := range 3 * spfSyntaxCacheEntries {
		rec := fmt.Sprintf("v=spf1 ip4:192.0.%d.%d -all", i/256%256, i%256)
		if i%3 == 0 {
			rec += " bogus:x"
		}
		for range 2 { // miss, then hit
			if got, want := c.get(rec, syntaxError) == nil, checkSPFRecord(rec) == nil; got != want {
				t.Fatalf("check(%q) ok=%v, checkSPFRecord ok=%v", rec, got, want)
			}
		}
		if n := len(c.m); n > spfSyntaxCacheEntries {
			t.Fatalf("%d entries after %d records", n, i+1)
		}
	}
	long := "v=spf1 " + strings.Repeat("ip4:192.0.2.1 ", spfSyntaxCacheMaxLen/14+1) + "-all"
	clear(c.m)
	if c.get(long, syntaxError) != nil || len(c.m) != 0 {
		t.Errorf("long record: kept %d entries (want 0) or refused", len(c.m))
	}
	var nilCache *spfSyntaxCache
	if nilCache.get("v=spf1 -all", syntaxError) != nil || nilCache.get("v=spf1 bogus", syntaxError) == nil {
		t.Error("a nil cache does not check")
	}
}

// TestSPFWithResolver: a checker made with WithResolver keeps the limits
// and shares the syntax memory.
func TestSPFWithResolver(t *testing.T) {
	t.Parallel()
	c := NewSPFChecker(nil, SPFConfig{LookupLimit: 3, VoidLookupLimit: 5})
	d := c.WithResolver(nil)
	if d.lookupLimit != 3 || d.voidLimit != 5 || d.syntax != c.syntax || d.syntax == nil {
		t.Errorf("WithResolver: %+v from %+v", d, c)
	}
}

// FuzzSPFSyntaxCache: the cache answers as checkSPFRecord does, on the
// first (miss) and the second (hit) call.
func FuzzSPFSyntaxCache(f *testing.F) {
	for _, s := range []string{"v=spf1 -all", "v=spf1 ip4:192.0.2.1 bogus:x", "v=spf1 %{", "x", ""} {
		f.Add(s)
	}
	c := newSPFSyntaxCache()
	f.Fuzz(func(t *testing.T, rec string) {
		want := checkSPFRecord(rec)
		for i := range 2 {
			got := c.get(rec, syntaxError)
			if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
				t.Fatalf("call %d: check(%q) = %v, checkSPFRecord = %v", i, rec, got, want)
			}
		}
	})
}

// BenchmarkSPFWarmCacheHelo is the HELO check of a connection with its
// answers in the cache (what each message of a connection paid before the
// milter kept the result per connection).
func BenchmarkSPFWarmCacheHelo(b *testing.B) {
	srv := dnstest.New(b, `
mail.example.com. 300 IN TXT "v=spf1 a -all"
mail.example.com. 300 IN A   192.0.2.25
`)
	c := NewSPFChecker(newCache(b, srv, time.Second), SPFConfig{})
	ctx := context.Background()
	ip := net.ParseIP("192.0.2.25")
	if r := c.CheckHelo(ctx, ip, "mail.example.com"); r.Result != ResultPass {
		b.Fatalf("%+v", r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c.CheckHelo(ctx, ip, "mail.example.com")
	}
}

// BenchmarkSPFRecordSyntax is the syntax check of a typical record, made
// afresh and through the cache.
func BenchmarkSPFRecordSyntax(b *testing.B) {
	const rec = "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 include:_spf.example.com a:mx.example.com ~all"
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = checkSPFRecord(rec)
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := newSPFSyntaxCache()
		b.ReportAllocs()
		for b.Loop() {
			_ = c.get(rec, syntaxError)
		}
	})
}
