package cache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"
)

const zone = `
$TTL 300
example.            IN SOA  ns.example. hostmaster.example. 1 7200 3600 1209600 120
example.            IN TXT  "v=spf1 ip4:192.0.2.0/24 -all"
multi.example.      IN TXT  "part one " "part two"
mx.example.         IN MX   10 mail.example.
mail.example.       IN A    192.0.2.25
mail.example.       IN AAAA 2001:db8::25
alias.example.      IN CNAME target.example.
target.example.     IN TXT  "at the target"
short.example. 5    IN TXT  "five seconds"
long.example. 86400 IN TXT  "one day"
25.2.0.192.in-addr.arpa. IN PTR mail.example.
a.b.example.        IN TXT  "deep"
`

// clock is a settable clock for the tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTest(t *testing.T, mod func(*Config)) (*Resolver, *dnstest.Server, *clock) {
	t.Helper()
	srv := dnstest.New(t, zone)
	clk := &clock{now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	cfg := Config{Nameservers: []string{srv.Addr}, Timeout: 300 * time.Millisecond, Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, srv, clk
}

func dnsErr(t *testing.T, err error) *net.DNSError {
	t.Helper()
	de, ok := err.(*net.DNSError) // deliberately a type assertion: the libraries use one
	if !ok {
		t.Fatalf("error %v (%T) is not a bare *net.DNSError", err, err)
	}
	return de
}

func TestTXTJoinedAndCaseInsensitiveHit(t *testing.T) {
	r, srv, _ := newTest(t, nil)
	ctx := context.Background()
	got, err := r.LookupTXT(ctx, "multi.example")
	if err != nil || len(got) != 1 || got[0] != "part one part two" {
		t.Fatalf("LookupTXT = %q, %v; want one joined string", got, err)
	}
	for _, n := range []string{"MULTI.Example.", "multi.example."} {
		if _, err := r.LookupTXT(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if q := srv.Queries(); q != 1 {
		t.Errorf("upstream queries = %d, want 1", q)
	}
	if s := r.Stats(); s.Hits != 2 || s.Misses != 1 {
		t.Errorf("stats = %+v, want 2 hits 1 miss", s)
	}
}

func TestTTLExpiryAndClamp(t *testing.T) {
	r, srv, clk := newTest(t, func(c *Config) { c.MinTTL = 30 * time.Second; c.MaxTTL = time.Hour })
	ctx := context.Background()
	// short.example has TTL 5: clamped up to MinTTL 30s.
	r.LookupTXT(ctx, "short.example")
	clk.Add(29 * time.Second)
	r.LookupTXT(ctx, "short.example")
	if q := srv.QueriesFor("short.example", dns.TypeTXT); q != 1 {
		t.Fatalf("queries within MinTTL = %d, want 1", q)
	}
	clk.Add(2 * time.Second)
	r.LookupTXT(ctx, "short.example")
	if q := srv.QueriesFor("short.example", dns.TypeTXT); q != 2 {
		t.Fatalf("queries after expiry = %d, want 2", q)
	}
	// long.example has TTL 86400: clamped down to MaxTTL 1h.
	r.LookupTXT(ctx, "long.example")
	clk.Add(59 * time.Minute)
	r.LookupTXT(ctx, "long.example")
	clk.Add(2 * time.Minute)
	r.LookupTXT(ctx, "long.example")
	if q := srv.QueriesFor("long.example", dns.TypeTXT); q != 2 {
		t.Fatalf("long.example queries = %d, want 2 (cached 1h, then again)", q)
	}
}

func TestNegativeCaching(t *testing.T) {
	r, srv, clk := newTest(t, func(c *Config) { c.MinTTL = time.Second })
	ctx := context.Background()

	// NXDOMAIN: IsNotFound, not temporary, cached for min(SOA TTL 300, MINIMUM 120).
	_, err := r.LookupTXT(ctx, "nope.example")
	de := dnsErr(t, err)
	if !de.IsNotFound || de.IsTemporary {
		t.Fatalf("NXDOMAIN error = %+v", de)
	}
	// NODATA: the name exists (it has an A record) but no TXT.
	txt, err := r.LookupTXT(ctx, "mail.example")
	if err != nil || len(txt) != 0 {
		t.Fatalf("NODATA = %q, %v; want empty, nil", txt, err)
	}
	// Empty non-terminal b.example (RFC 8020): NODATA, not NXDOMAIN.
	if _, err := r.LookupTXT(ctx, "b.example"); err != nil {
		t.Fatalf("empty non-terminal: %v", err)
	}
	clk.Add(119 * time.Second)
	r.LookupTXT(ctx, "nope.example")
	r.LookupTXT(ctx, "mail.example")
	if q := srv.Queries(); q != 3 {
		t.Fatalf("queries within negative TTL = %d, want 3", q)
	}
	if s := r.Stats(); s.NegativeHits != 2 {
		t.Errorf("negative hits = %d, want 2", s.NegativeHits)
	}
	clk.Add(2 * time.Second)
	r.LookupTXT(ctx, "nope.example")
	if q := srv.QueriesFor("nope.example", dns.TypeTXT); q != 2 {
		t.Fatalf("nope.example queries after the SOA minimum = %d, want 2", q)
	}
}

func TestNegativeTTLClampedToMax(t *testing.T) {
	r, srv, clk := newTest(t, func(c *Config) { c.MaxNegTTL = 10 * time.Second; c.MinTTL = time.Second })
	r.LookupTXT(context.Background(), "nope.example")
	clk.Add(11 * time.Second)
	r.LookupTXT(context.Background(), "nope.example")
	if q := srv.Queries(); q != 2 {
		t.Fatalf("queries = %d, want 2 (negative TTL clamped to 10s)", q)
	}
}

func TestTemporaryFailureNotCachedAsNegative(t *testing.T) {
	for _, f := range []struct {
		name  string
		fault dnstest.Fault
	}{
		{"servfail", dnstest.FaultServFail},
		{"refused", dnstest.FaultRefused},
		{"formerr", dnstest.FaultFormErr},
		{"timeout", dnstest.FaultDrop},
		{"garbage", dnstest.FaultGarbage},
		{"wrong id", dnstest.FaultWrongID},
		{"wrong question", dnstest.FaultWrongQuestion},
	} {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			r, srv, clk := newTest(t, func(c *Config) { c.Timeout = 100 * time.Millisecond; c.ErrTTL = 2 * time.Second })
			ctx := context.Background()
			srv.SetFault("example", f.fault)
			_, err := r.LookupTXT(ctx, "example")
			de := dnsErr(t, err)
			if !de.IsTemporary || de.IsNotFound {
				t.Fatalf("error = %+v, want temporary", de)
			}
			// Within ErrTTL the failure is remembered, not re-asked.
			before := srv.Queries()
			if _, err := r.LookupTXT(ctx, "example"); err == nil {
				t.Fatal("remembered failure answered without error")
			}
			if srv.Queries() != before {
				t.Fatal("a remembered failure was asked again within ErrTTL")
			}
			// After ErrTTL, with the server healthy, the real answer comes.
			srv.SetFault("example", dnstest.FaultNone)
			clk.Add(3 * time.Second)
			txt, err := r.LookupTXT(ctx, "example")
			if err != nil || len(txt) != 1 {
				t.Fatalf("after recovery: %q, %v", txt, err)
			}
		})
	}
}

func TestSingleFlight(t *testing.T) {
	r, srv, _ := newTest(t, nil)
	srv.SetDelay(100 * time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			txt, err := r.LookupTXT(context.Background(), "example")
			if err != nil || len(txt) != 1 {
				errs <- fmt.Errorf("%q, %v", txt, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if q := srv.Queries(); q != 1 {
		t.Errorf("upstream queries for 100 concurrent misses = %d, want 1", q)
	}
	if c := r.Stats().Collapsed; c != 99 {
		t.Errorf("collapsed = %d, want 99", c)
	}
}

func TestTruncatedRetriedOverTCP(t *testing.T) {
	r, srv, _ := newTest(t, nil)
	big := strings.Repeat("x", 250)
	var parts []string
	for i := 0; i < 8; i++ {
		parts = append(parts, `"`+big+`"`)
	}
	srv.MustAdd("big.example. 300 IN TXT " + strings.Join(parts, " "))
	txt, err := r.LookupTXT(context.Background(), "big.example")
	if err != nil || len(txt) != 1 || len(txt[0]) != 2000 {
		t.Fatalf("big TXT: %d records, err %v", len(txt), err)
	}
	udp, tcp := srv.TransportQueries()
	if udp != 1 || tcp != 1 {
		t.Errorf("udp=%d tcp=%d, want 1 and 1", udp, tcp)
	}
	// A server that sets TC on every UDP answer is also followed to TCP.
	srv.SetFault("example", dnstest.FaultTruncate)
	if txt, err := r.LookupTXT(context.Background(), "example"); err != nil || len(txt) != 1 {
		t.Fatalf("forced TC: %q, %v", txt, err)
	}
}

func TestServeStale(t *testing.T) {
	r, srv, clk := newTest(t, func(c *Config) {
		c.Timeout = 100 * time.Millisecond
		c.StaleTTL = 10 * time.Minute
		c.ErrTTL = 30 * time.Second
	})
	ctx := context.Background()
	if _, err := r.LookupTXT(ctx, "example"); err != nil {
		t.Fatal(err)
	}
	srv.SetFaultAll(dnstest.FaultDrop) // the upstream goes away
	clk.Add(6 * time.Minute)           // past the 300s TTL, within the stale window
	txt, err := r.LookupTXT(ctx, "example")
	if err != nil || len(txt) != 1 {
		t.Fatalf("stale answer: %q, %v", txt, err)
	}
	// Within the failure-recheck time the stale answer is served without
	// asking upstream again.
	before := srv.Queries()
	if txt, err := r.LookupTXT(ctx, "example"); err != nil || len(txt) != 1 {
		t.Fatalf("second stale answer: %q, %v", txt, err)
	}
	if srv.Queries() != before {
		t.Error("upstream asked again within ErrTTL")
	}
	// After the failure timer, still down: asked again, stale again.
	clk.Add(31 * time.Second)
	if txt, err := r.LookupTXT(ctx, "example"); err != nil || len(txt) != 1 {
		t.Fatalf("third stale answer: %q, %v", txt, err)
	}
	if s := r.Stats(); s.StaleServes != 3 {
		t.Errorf("stale serves = %d, want 3", s.StaleServes)
	}
	// Past the stale window: a temporary error.
	clk.Add(10 * time.Minute)
	_, err = r.LookupTXT(ctx, "example")
	if de := dnsErr(t, err); !de.IsTemporary {
		t.Fatalf("past the stale window: %+v", de)
	}
}

func TestEvictionAtBound(t *testing.T) {
	r, srv, _ := newTest(t, func(c *Config) { c.MaxEntries = 32 })
	for i := 0; i < 200; i++ {
		srv.MustAdd(fmt.Sprintf("n%d.example. 300 IN TXT \"%d\"", i, i))
	}
	for i := 0; i < 200; i++ {
		if _, err := r.LookupTXT(context.Background(), fmt.Sprintf("n%d.example", i)); err != nil {
			t.Fatal(err)
		}
	}
	s := r.Stats()
	if s.Entries > 32 {
		t.Errorf("entries = %d, want at most 32", s.Entries)
	}
	if s.Evictions == 0 || s.Evictions+s.Entries != 200 {
		t.Errorf("evictions = %d, entries = %d: want them to add up to 200", s.Evictions, s.Entries)
	}
}

func TestCNAMEChain(t *testing.T) {
	r, _, _ := newTest(t, nil)
	txt, err := r.LookupTXT(context.Background(), "alias.example")
	if err != nil || len(txt) != 1 || txt[0] != "at the target" {
		t.Fatalf("CNAME: %q, %v", txt, err)
	}
}

func TestCNAMETargetOutsideAnswerIsQueried(t *testing.T) {
	// The server answers the alias with the CNAME alone, as a server not
	// authoritative for the target does; the resolver asks for the target.
	srv := dnstest.New(t, "ext.example. 300 IN CNAME elsewhere.test.\n")
	srv.MustAdd(`elsewhere.test. 300 IN TXT "found"`)
	srv.SetNoChase(true)
	r, err := New(Config{Nameservers: []string{srv.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	txt, err := r.LookupTXT(context.Background(), "ext.example")
	if err != nil || len(txt) != 1 || txt[0] != "found" {
		t.Fatalf("%q, %v", txt, err)
	}
	if q := srv.QueriesFor("elsewhere.test", dns.TypeTXT); q != 1 {
		t.Errorf("target queried %d times, want 1", q)
	}
}

func TestTypedLookups(t *testing.T) {
	r, _, _ := newTest(t, nil)
	ctx := context.Background()
	mx, err := r.LookupMX(ctx, "mx.example")
	if err != nil || len(mx) != 1 || mx[0].Host != "mail.example." || mx[0].Pref != 10 {
		t.Fatalf("MX: %v, %v", mx, err)
	}
	ips, err := r.LookupIPAddr(ctx, "mail.example")
	if err != nil || len(ips) != 2 {
		t.Fatalf("IPAddr: %v, %v", ips, err)
	}
	names, err := r.LookupAddr(ctx, "192.0.2.25")
	if err != nil || len(names) != 1 || names[0] != "mail.example." {
		t.Fatalf("PTR: %v, %v", names, err)
	}
	_, err = r.LookupIPAddr(ctx, "nope.example")
	if de := dnsErr(t, err); !de.IsNotFound {
		t.Fatalf("IPAddr of a missing name: %+v", de)
	}
	ips, err = r.LookupIPAddr(ctx, "example") // exists, no address
	if err != nil || len(ips) != 0 {
		t.Fatalf("IPAddr NODATA: %v, %v", ips, err)
	}
}

func TestCallerDeadline(t *testing.T) {
	r, srv, _ := newTest(t, func(c *Config) { c.Timeout = time.Second })
	srv.SetFaultAll(dnstest.FaultDrop)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.LookupTXT(ctx, "example")
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("lookup took %v past a 50ms deadline", d)
	}
	if de := dnsErr(t, err); !de.IsTemporary || !de.IsTimeout {
		t.Fatalf("error = %+v, want a temporary timeout", de)
	}
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	if _, err := New(Config{Nameservers: []string{"not an address"}}); err == nil {
		t.Error("a bad nameserver was accepted")
	}
	r, err := New(Config{Nameservers: []string{"127.0.0.1"}})
	if err != nil || r.Nameservers()[0] != "127.0.0.1:53" {
		t.Errorf("bare IP nameserver: %v, %v", r, err)
	}
	if _, err := New(Config{Nameservers: []string{"127.0.0.1"}, MinTTL: time.Hour, MaxTTL: time.Minute}); err == nil {
		t.Error("MinTTL above MaxTTL accepted")
	}
}

// TestLibraryErrorContract checks the error contract against the libraries
// themselves: a SERVFAIL is a temporary error and an NXDOMAIN a "none" or a
// permanent key error, in blitiri spf and in go-msgauth dkim.
func TestLibraryErrorContract(t *testing.T) {
	r, srv, _ := newTest(t, func(c *Config) { c.Timeout = 100 * time.Millisecond })
	srv.MustAdd(`sf.example. 300 IN TXT "v=spf1 -all"`)
	srv.SetFault("sf.example", dnstest.FaultServFail)
	srv.SetFault("sel._domainkey.sf.example", dnstest.FaultServFail)
	ip := net.ParseIP("192.0.2.1")
	ctx := context.Background()

	res, _ := spf.CheckHostWithSender(ip, "helo.example", "a@sf.example", spf.WithResolver(r), spf.WithContext(ctx))
	if res != spf.TempError {
		t.Errorf("spf on SERVFAIL = %v, want temperror", res)
	}
	res, _ = spf.CheckHostWithSender(ip, "helo.example", "a@nope.example", spf.WithResolver(r), spf.WithContext(ctx))
	if res != spf.None {
		t.Errorf("spf on NXDOMAIN = %v, want none", res)
	}
	res, _ = spf.CheckHostWithSender(ip, "helo.example", "a@example", spf.WithResolver(r), spf.WithContext(ctx))
	if res != spf.Pass {
		t.Errorf("spf pass case = %v, want pass", res)
	}

	msg := func(d string) string {
		return "DKIM-Signature: v=1; a=rsa-sha256; d=" + d + "; s=sel; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n" +
			"From: a@" + d + "\r\n\r\n"
	}
	lookup := func(name string) ([]string, error) { return r.LookupTXT(ctx, name) }
	v, err := dkim.VerifyWithOptions(strings.NewReader(msg("sf.example")), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(v) != 1 || !dkim.IsTempFail(v[0].Err) {
		t.Errorf("dkim on SERVFAIL: %v, %v; want a temporary failure", v, err)
	}
	v, err = dkim.VerifyWithOptions(strings.NewReader(msg("nope.example")), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(v) != 1 || !dkim.IsPermFail(v[0].Err) {
		t.Errorf("dkim on NXDOMAIN: %v, %v; want a permanent failure", v, err)
	}
}

func TestErrorsAreBare(t *testing.T) {
	r, _, _ := newTest(t, nil)
	_, err := r.LookupTXT(context.Background(), "nope.example")
	var de *net.DNSError
	if !errors.As(err, &de) || errors.Unwrap(err) != nil {
		t.Fatalf("error %v is wrapped or not a DNSError", err)
	}
}

func TestRetryAcrossServers(t *testing.T) {
	down := dnstest.New(t, zone)
	down.SetFaultAll(dnstest.FaultDrop)
	up := dnstest.New(t, zone)
	r, err := New(Config{Nameservers: []string{down.Addr, up.Addr}, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	txt, err := r.LookupTXT(context.Background(), "example")
	if err != nil || len(txt) != 1 {
		t.Fatalf("%q, %v", txt, err)
	}
	if down.Queries() != 1 || up.Queries() != 1 {
		t.Errorf("queries: down %d, up %d; want 1 and 1", down.Queries(), up.Queries())
	}
	if s := r.Stats(); s.UpstreamQueries != 2 || s.UpstreamFailures != 0 {
		t.Errorf("stats %+v: want 2 upstream queries, 0 failures", s)
	}
}

func TestRawOctetsAndEscapedNames(t *testing.T) {
	r, srv, _ := newTest(t, nil)
	// A TXT record with an 8-bit octet, a quote and a backslash, and a name
	// with a space (SPF macros can produce one).
	srv.MustAdd(`raw.example. 300 IN TXT "caf\233 \"q\" \\"`, `a\ b.example. 300 IN TXT "spaced"`)
	txt, err := r.LookupTXT(context.Background(), "raw.example")
	if err != nil || len(txt) != 1 || txt[0] != "caf\xe9 \"q\" \\" {
		t.Fatalf("raw octets: %q, %v", txt, err)
	}
	txt, err = r.LookupTXT(context.Background(), "a b.example")
	if err != nil || len(txt) != 1 || txt[0] != "spaced" {
		t.Fatalf("name with a space: %q, %v", txt, err)
	}
}

func TestTxtString(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:     "plain",
		`\233`:      "\xe9",
		`a\"b`:      `a"b`,
		`\\`:        `\`,
		`\999`:      "999",
		`trailing\`: `trailing\`,
		`\0651`:     "A1",
		`x\;y`:      "x;y",
	} {
		if got := txtString(in); got != want {
			t.Errorf("txtString(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInvalidNamesAreNotFoundWithoutAQuery(t *testing.T) {
	r, srv, _ := newTest(t, nil)
	for _, name := range []string{
		strings.Repeat("a", 64) + ".example",         // label over 63 octets
		strings.Repeat("abcdefghi.", 26) + "example", // name over 253 characters
		"a..example", // empty label
	} {
		_, err := r.LookupTXT(context.Background(), name)
		if de := dnsErr(t, err); !de.IsNotFound || de.IsTemporary {
			t.Errorf("%q: %+v, want not found", name, de)
		}
	}
	if q := srv.Queries(); q != 0 {
		t.Errorf("%d queries sent for invalid names", q)
	}
}
