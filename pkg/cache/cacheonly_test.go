package cache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/google/go-cmp/cmp"
)

// TestCacheOnly: the view never queries; before the answers are cached it
// misses with a temporary error, afterwards it gives exactly what the
// Resolver gives (positive, NXDOMAIN, NODATA, A+AAAA, PTR, MX), and an
// expired answer is a miss again.
func TestCacheOnly(t *testing.T) {
	r, srv, clk := newTest(t, func(c *Config) { c.MinTTL = time.Second })
	ctx := context.Background()
	calls := []struct {
		what string
		run  func(v *CacheOnly) (any, error)
		real func() (any, error)
	}{
		{"txt", func(v *CacheOnly) (any, error) { return v.LookupTXT(ctx, "Example.") },
			func() (any, error) { return r.LookupTXT(ctx, "example") }},
		{"nxdomain", func(v *CacheOnly) (any, error) { return v.LookupTXT(ctx, "nope.example") },
			func() (any, error) { return r.LookupTXT(ctx, "nope.example") }},
		{"nodata", func(v *CacheOnly) (any, error) { return v.LookupTXT(ctx, "mail.example") },
			func() (any, error) { return r.LookupTXT(ctx, "mail.example") }},
		{"mx", func(v *CacheOnly) (any, error) { return v.LookupMX(ctx, "mx.example") },
			func() (any, error) { return r.LookupMX(ctx, "mx.example") }},
		{"ip", func(v *CacheOnly) (any, error) { return v.LookupIPAddr(ctx, "mail.example") },
			func() (any, error) { return r.LookupIPAddr(ctx, "mail.example") }},
		{"ptr", func(v *CacheOnly) (any, error) { return v.LookupAddr(ctx, "192.0.2.25") },
			func() (any, error) { return r.LookupAddr(ctx, "192.0.2.25") }},
	}
	for _, c := range calls {
		v := r.CacheOnly()
		_, err := c.run(v)
		if de := dnsErr(t, err); !de.IsTemporary || !v.Missed() {
			t.Errorf("%s, cold: error %+v, missed %v; want a temporary error and a miss", c.what, de, v.Missed())
		}
	}
	if q := srv.Queries(); q != 0 {
		t.Fatalf("the view queried upstream %d times", q)
	}
	if s := r.Stats(); s.Misses != 0 {
		t.Errorf("the view counted %d misses, want 0 (the lookup that follows counts them)", s.Misses)
	}
	for _, c := range calls {
		want, wantErr := c.real()
		v := r.CacheOnly()
		got, err := c.run(v)
		if v.Missed() {
			t.Errorf("%s, warm: missed", c.what)
		}
		if d := cmp.Diff(want, got); d != "" || fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Errorf("%s, warm: %v (-resolver +view):\n%s\nerror %v, resolver's %v", c.what, got, d, err, wantErr)
		}
	}
	before := srv.Queries()
	clk.Add(time.Hour)
	v := r.CacheOnly()
	if _, err := v.LookupTXT(ctx, "example"); err == nil || !v.Missed() {
		t.Errorf("expired answer: error %v, missed %v; want a miss", err, v.Missed())
	}
	if srv.Queries() != before {
		t.Error("the view queried upstream for an expired answer")
	}
	v.Reset()
	if v.Missed() {
		t.Error("Missed after Reset")
	}
}

// TestCacheOnlyInvalidNameAndRememberedFailure: a name that cannot exist is
// answered not-found without a miss (as the Resolver answers it without a
// query); a remembered temporary failure is an answer, not a miss.
func TestCacheOnlyInvalidNameAndRememberedFailure(t *testing.T) {
	r, srv, _ := newTest(t, func(c *Config) { c.Timeout = 100 * time.Millisecond; c.ErrTTL = time.Minute })
	ctx := context.Background()
	v := r.CacheOnly()
	_, err := v.LookupTXT(ctx, "bad..name")
	if de := dnsErr(t, err); !de.IsNotFound || v.Missed() {
		t.Errorf("invalid name: %+v, missed %v", de, v.Missed())
	}
	srv.SetFault("example", dnstest.FaultServFail)
	r.LookupTXT(ctx, "example")
	v = r.CacheOnly()
	_, err = v.LookupTXT(ctx, "example")
	if de := dnsErr(t, err); !de.IsTemporary || v.Missed() {
		t.Errorf("remembered failure: %+v, missed %v; want the temporary error, no miss", de, v.Missed())
	}
}
