package verify

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/google/go-cmp/cmp"
)

const spfZone = `
$TTL 300
example.com.           IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
mail.example.com.      IN TXT "v=spf1 a -all"
mail.example.com.      IN A   192.0.2.25
soft.example.com.      IN TXT "v=spf1 ~all"
sf.example.com.        IN TXT "v=spf1 include:broken.example.com -all"
nospf.example.com.     IN TXT "some other text"
void.example.com.      IN TXT "v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com ip4:192.0.2.1 -all"
late.example.com.      IN TXT "v=spf1 ip4:192.0.2.1 bogus:x -all"
`

func spfFixture(t *testing.T) (*dnstest.Server, *SPFChecker) {
	t.Helper()
	srv := dnstest.New(t, spfZone)
	srv.SetFault("broken.example.com", dnstest.FaultServFail)
	return srv, NewSPFChecker(newCache(t, srv, 300*time.Millisecond), SPFConfig{})
}

func TestSPFMailFrom(t *testing.T) {
	_, c := spfFixture(t)
	ctx := context.Background()
	cases := []struct {
		ip, helo, from string
		want           SPFResult
	}{
		{"192.0.2.7", "mail.example.com", "alice@example.com",
			SPFResult{Result: ResultPass, Scope: ScopeMailFrom, Domain: "example.com", Sender: "alice@example.com"}},
		{"198.51.100.1", "mail.example.com", "alice@example.com",
			SPFResult{Result: ResultFail, Scope: ScopeMailFrom, Domain: "example.com", Sender: "alice@example.com"}},
		{"198.51.100.1", "x", "bob@soft.example.com",
			SPFResult{Result: ResultSoftFail, Scope: ScopeMailFrom, Domain: "soft.example.com", Sender: "bob@soft.example.com"}},
		// RFC 7208 §2.4: null reverse-path → postmaster@HELO.
		{"192.0.2.25", "mail.example.com", "",
			SPFResult{Result: ResultPass, Scope: ScopeMailFrom, Domain: "mail.example.com", Sender: "postmaster@mail.example.com"}},
		{"192.0.2.26", "mail.example.com.", "<>",
			SPFResult{Result: ResultFail, Scope: ScopeMailFrom, Domain: "mail.example.com", Sender: "postmaster@mail.example.com"}},
		{"192.0.2.25", "[192.0.2.25]", "",
			SPFResult{Result: ResultNone, Scope: ScopeMailFrom, Domain: "[192.0.2.25]"}},
		// RFC 7208 §4.3: no local-part → postmaster.
		{"192.0.2.7", "x", "@example.com",
			SPFResult{Result: ResultPass, Scope: ScopeMailFrom, Domain: "example.com", Sender: "postmaster@example.com"}},
		{"192.0.2.7", "x", `"a@b"@example.com`,
			SPFResult{Result: ResultPass, Scope: ScopeMailFrom, Domain: "example.com", Sender: `"a@b"@example.com`}},
		{"192.0.2.7", "x", "a@nospf.example.com",
			SPFResult{Result: ResultNone, Scope: ScopeMailFrom, Domain: "nospf.example.com", Sender: "a@nospf.example.com"}},
		// NXDOMAIN → none (RFC 7208 §4.3).
		{"192.0.2.7", "x", "a@nx.example.com",
			SPFResult{Result: ResultNone, Scope: ScopeMailFrom, Domain: "nx.example.com", Sender: "a@nx.example.com"}},
		{"192.0.2.7", "x", "a@localhost",
			SPFResult{Result: ResultNone, Scope: ScopeMailFrom, Domain: "localhost", Sender: "a@localhost"}},
		// SERVFAIL inside an include → temperror (RFC 7208 §5.2).
		{"192.0.2.7", "x", "a@sf.example.com",
			SPFResult{Result: ResultTempError, Scope: ScopeMailFrom, Domain: "sf.example.com", Sender: "a@sf.example.com"}},
		// RFC 7208 §4.6: a syntax error after a match is still permerror.
		{"192.0.2.1", "x", "a@late.example.com",
			SPFResult{Result: ResultPermError, Scope: ScopeMailFrom, Domain: "late.example.com", Sender: "a@late.example.com"}},
		// RFC 7208 §4.6.4: three void lookups before the match.
		{"192.0.2.1", "x", "a@void.example.com",
			SPFResult{Result: ResultPermError, Scope: ScopeMailFrom, Domain: "void.example.com", Sender: "a@void.example.com"}},
		{"::ffff:192.0.2.7", "x", "alice@example.com",
			SPFResult{Result: ResultPass, Scope: ScopeMailFrom, Domain: "example.com", Sender: "alice@example.com"}},
	}
	for _, tc := range cases {
		t.Run(tc.ip+"/"+tc.from, func(t *testing.T) {
			got := c.CheckMailFrom(ctx, net.ParseIP(tc.ip), tc.helo, tc.from)
			if got.Reason == "" {
				t.Error("empty reason")
			}
			got.Reason = ""
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestSPFHelo(t *testing.T) {
	srv, c := spfFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		ip, helo string
		want     Result
		queries  bool
	}{
		{"192.0.2.25", "mail.example.com", ResultPass, true},
		{"192.0.2.99", "mail.example.com.", ResultFail, true},
		{"192.0.2.25", "[192.0.2.25]", ResultNone, false}, // address literal
		{"192.0.2.25", "192.0.2.25", ResultNone, false},
		{"192.0.2.25", "localhost", ResultNone, false}, // not multi-label
		{"192.0.2.25", "", ResultNone, false},
	} {
		srv.ResetCounts()
		got := c.CheckHelo(ctx, net.ParseIP(tc.ip), tc.helo)
		if got.Result != tc.want || got.Scope != ScopeHelo || got.Reason == "" {
			t.Errorf("CheckHelo(%s, %q) = %+v, want %s", tc.ip, tc.helo, got, tc.want)
		}
		if srv.Queries() > 0 && !tc.queries {
			t.Errorf("CheckHelo(%q): DNS queries made", tc.helo)
		}
		if tc.queries && got.Sender != "postmaster@mail.example.com" {
			t.Errorf("sender %q", got.Sender)
		}
	}
}

// TestSPFLimits: the 10-term limit and the void limit are enforced and can
// be changed.
func TestSPFLimits(t *testing.T) {
	srv := dnstest.New(t, "")
	// chain0 includes chain1 … chain11, whose record passes 192.0.2.1.
	for i := range 12 {
		rec := fmt.Sprintf("v=spf1 include:chain%d.example.com -all", i+1)
		if i == 11 {
			rec = "v=spf1 ip4:192.0.2.1 -all"
		}
		srv.MustAdd(fmt.Sprintf(`chain%d.example.com. 300 IN TXT "%s"`, i, rec))
	}
	srv.MustAdd(`void.example.com. 300 IN TXT "v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com ip4:192.0.2.1 -all"`)
	r := newCache(t, srv, 300*time.Millisecond)
	ip := net.ParseIP("192.0.2.1")
	for _, tc := range []struct {
		cfg  SPFConfig
		from string
		want Result
	}{
		{SPFConfig{}, "a@chain0.example.com", ResultPermError}, // 11 includes > 10
		{SPFConfig{}, "a@chain2.example.com", ResultPass},      // 9 includes
		{SPFConfig{LookupLimit: 11}, "a@chain0.example.com", ResultPass},
		{SPFConfig{LookupLimit: 3}, "a@chain7.example.com", ResultPermError},
		{SPFConfig{}, "a@void.example.com", ResultPermError}, // 3 void lookups > 2
		{SPFConfig{VoidLookupLimit: 3}, "a@void.example.com", ResultPass},
	} {
		got := NewSPFChecker(r, tc.cfg).CheckMailFrom(context.Background(), ip, "x", tc.from)
		if got.Result != tc.want {
			t.Errorf("%+v %s: %s (%s), want %s", tc.cfg, tc.from, got.Result, got.Reason, tc.want)
		}
	}
}

// TestSPFCacheErrors: through pkg/cache, a SERVFAIL or timeout of the
// sender's record gives temperror, NXDOMAIN gives none, a cancelled context
// gives temperror.
func TestSPFCacheErrors(t *testing.T) {
	srv, _ := spfFixture(t)
	ip := net.ParseIP("192.0.2.7")
	for _, tc := range []struct {
		fault dnstest.Fault
		want  Result
	}{
		{dnstest.FaultNone, ResultPass},
		{dnstest.FaultServFail, ResultTempError},
		{dnstest.FaultDrop, ResultTempError},
		{dnstest.FaultGarbage, ResultTempError},
	} {
		srv.SetFault("example.com", tc.fault)
		c := NewSPFChecker(newCache(t, srv, 200*time.Millisecond), SPFConfig{}) // nothing cached
		if got := c.CheckMailFrom(context.Background(), ip, "x", "a@example.com"); got.Result != tc.want {
			t.Errorf("fault %v: %+v, want %s", tc.fault, got, tc.want)
		}
	}
	srv.SetFault("example.com", dnstest.FaultNone)
	c := NewSPFChecker(newCache(t, srv, 200*time.Millisecond), SPFConfig{})
	if got := c.CheckMailFrom(context.Background(), ip, "x", "a@gone.example.com"); got.Result != ResultNone {
		t.Errorf("NXDOMAIN: %+v, want none", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := c.CheckMailFrom(ctx, ip, "x", "a@soft.example.com"); got.Result != ResultTempError {
		t.Errorf("cancelled context: %+v, want temperror", got)
	}
}

func TestSPFRecordSyntax(t *testing.T) {
	for _, tc := range []struct {
		rec string
		ok  bool
	}{
		{"v=spf1", true},
		{"v=spf1 -all", true},
		{"V=SPF1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx ptr ~all", true},
		{"v=spf1 a:mail.example.com/24//64 mx:%{d}/28 -all", true},
		{"v=spf1 include:_spf.%{d2} exists:%{i}.%{l1r+-}._spf.%{d} -all", true},
		{"v=spf1 redirect=_spf.example.com", true},
		{"v=spf1 exp=explain.%{d} -all", true},
		{"v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all", true}, // unknown modifier
		{"v=spf1 a:foo:bar/baz.example.com", true},                    // "/" and ":" in a domain-spec
		{"v=spf1 -all moo", false},                                    // unknown mechanism
		{"v=spf1 ip4:192.0.2.1 bogus:x", false},
		{"v=spf1 ip4:192.0.2.01", false}, // leading zero
		{"v=spf1 ip4:192.0.2.1/33", false},
		{"v=spf1 ip6:2001:db8::/129", false},
		{"v=spf1 ip6:192.0.2.1", false},
		{"v=spf1 a//129", false},
		{"v=spf1 a/024", false},
		{"v=spf1 a:foo-bar -all", false},           // no top label
		{"v=spf1 a:example.123 -all", false},       // numeric top label
		{"v=spf1 include:%{x}.example.com", false}, // unknown macro letter
		{"v=spf1 include:%{c}.example.com", false}, // c only in exp
		{"v=spf1 include:%{d0}.example.com", false},
		{"v=spf1 include:%.example.com", false},
		{"v=spf1 include:%{d.example.com", false},
		{"v=spf1 redirect=a.example.com redirect=b.example.com", false},
		{"v=spf1 exp=a.example.com exp=b.example.com", false},
		{"v=spf1 a:\xef\xbb\xbfgarbage.example.net -all", false}, // non-ASCII
		{"v=spf1 a:ctrl.example.com\rptr -all", false},
		{"v=spf1 all:x", false},
		{"v=spf1 ptr/24", false},
		{"v=spf10", false},
	} {
		err := checkSPFRecord(tc.rec)
		if (err == nil) != tc.ok {
			t.Errorf("checkSPFRecord(%q) = %v, want ok=%v", tc.rec, err, tc.ok)
		}
	}
}

func TestSPFQueryName(t *testing.T) {
	long := strings.Repeat("a.", 130) + "example.com" // 271 octets
	got, err := spfQueryName(long)
	if err != nil || len(got) > 253 || !strings.HasSuffix(got, ".example.com") || strings.HasPrefix(got, ".") {
		t.Errorf("spfQueryName(271 octets) = %q (%d), %v", got, len(got), err)
	}
	for _, bad := range []string{"", "a..example.com", strings.Repeat("x", 64) + ".example.com"} {
		if _, err := spfQueryName(bad); err == nil {
			t.Errorf("spfQueryName(%q): no error", bad)
		}
	}
}
