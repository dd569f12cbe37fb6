package policy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func TestWalkTargets(t *testing.T) {
	cases := []struct {
		rule, domain string
		want         []string
	}{
		{"RFC 9989 §4.10 step 4, x < 8", "a.mail.example.com", []string{"a.mail.example.com", "mail.example.com", "example.com", "com"}},
		{"RFC 9989 §4.10 step 4, x = 8", "a.b.c.d.e.f.example.com", []string{"a.b.c.d.e.f.example.com", "b.c.d.e.f.example.com", "c.d.e.f.example.com", "d.e.f.example.com", "e.f.example.com", "f.example.com", "example.com", "com"}},
		{"RFC 9989 §5.1.8 example (10 labels)", "mail.a.b.c.d.e.f.g.example.com", []string{"mail.a.b.c.d.e.f.g.example.com", "c.d.e.f.g.example.com", "d.e.f.g.example.com", "e.f.g.example.com", "f.g.example.com", "g.example.com", "example.com", "com"}},
		{"single label", "com", []string{"com"}},
	}
	for _, c := range cases {
		got := walkTargets(c.domain)
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s: walkTargets(%s) (-want +got):\n%s", c.rule, c.domain, diff)
		}
		if len(got) > MaxWalkQueries {
			t.Errorf("%s: %d queries, limit %d", c.rule, len(got), MaxWalkQueries)
		}
	}
	long := strings.Repeat("x.", 100) + "example.com"
	if n := len(walkTargets(long)); n != MaxWalkQueries {
		t.Errorf("RFC 9989 §4.10: a 102-label name gives %d queries, want %d", n, MaxWalkQueries)
	}
}

// discoverCase is one RFC branch of policy discovery, run against the
// dnstest server through pkg/cache.
type discoverCase struct {
	name, rule string
	records    map[string][]string
	extra      []dns.RR
	faults     map[string]dnstest.Fault
	domain     string
	method     Method
	// want
	policyDomain, org string
	existence         Existence
	queries           []string
	existQueries      []string
	tempErr           bool
	existErr          bool // the existence test failed (Discovery.ExistErr), discovery did not
}

var discoverCases = []discoverCase{
	{name: "record at the author", rule: "RFC 9989 §4.10.1 (Author Domain first)",
		records: map[string][]string{"mail.example.com": {"v=DMARC1; p=reject"}, "example.com": {"v=DMARC1; p=none"}},
		domain:  "Mail.Example.COM.", policyDomain: "mail.example.com", org: "example.com", queries: []string{"_dmarc.mail.example.com"}},
	{name: "non-DMARC TXT at the author does not hide the parent", rule: "RFC 9989 §4.10 step 2 (STYLE trap 2)",
		records: map[string][]string{"mail.example.com": {"v=spf1 -all", "google-site-verification=x"}, "example.com": {"v=DMARC1; p=reject"}},
		domain:  "mail.example.com", policyDomain: "example.com", org: "example.com",
		queries: []string{"_dmarc.mail.example.com", "_dmarc.example.com", "_dmarc.com"}},
	{name: "several records at the author are discarded, walk goes on", rule: "RFC 9989 §4.10 step 2",
		records: map[string][]string{"mail.example.com": {"v=DMARC1; p=none", "v=DMARC1; p=reject"}, "example.com": {"v=DMARC1; p=quarantine"}},
		domain:  "mail.example.com", policyDomain: "example.com", org: "example.com",
		queries: []string{"_dmarc.mail.example.com", "_dmarc.example.com", "_dmarc.com"}},
	{name: "several records at the only name: no policy", rule: "RFC 9989 §4.10 step 2, §4.10.1",
		records: map[string][]string{"example.com": {"v=DMARC1; p=none", "v=DMARC1; p=reject"}},
		domain:  "example.com", org: "example.com", queries: []string{"_dmarc.example.com", "_dmarc.com"}},
	{name: "no record anywhere", rule: "RFC 9989 §4.10.1 (MUST NOT apply DMARC)",
		domain: "a.example.net", org: "a.example.net", queries: []string{"_dmarc.a.example.net", "_dmarc.example.net", "_dmarc.net"}},
	{name: "psd=y at the author stops the walk", rule: "RFC 9989 §4.10 step 2, §4.10.2 rule 3",
		records: map[string][]string{"bank.example": {"v=DMARC1; p=reject; psd=y"}, "example": {"v=DMARC1; p=none"}},
		domain:  "bank.example", policyDomain: "bank.example", org: "bank.example", queries: []string{"_dmarc.bank.example"}},
	{name: "PSD policy for a subdomain without its own record", rule: "RFC 9989 §4.10.1 (Public Suffix Domain)",
		records: map[string][]string{"bank.example": {"v=DMARC1; p=reject; psd=y"}},
		extra:   []dns.RR{aRR("giant.bank.example")},
		domain:  "giant.bank.example", policyDomain: "bank.example", org: "giant.bank.example",
		queries: []string{"_dmarc.giant.bank.example", "_dmarc.bank.example"}},
	{name: "psd=y at the shortened start: the skipped Organizational Domain, PSD policy", rule: "RFC 9989 §4.10 step 4, §4.10.2 rule 2, §4.10.1",
		records: map[string][]string{"c.d.e.f.g.example.com": {"v=DMARC1; p=quarantine; psd=y"}, "b.c.d.e.f.g.example.com": {"v=DMARC1; p=none"}},
		domain:  "a.b.c.d.e.f.g.example.com", policyDomain: "c.d.e.f.g.example.com", org: "b.c.d.e.f.g.example.com",
		queries: []string{"_dmarc.a.b.c.d.e.f.g.example.com", "_dmarc.c.d.e.f.g.example.com"}},
	{name: "np: author domain does not exist", rule: "RFC 9989 §3.2.13, Appendix A.4 (NXDOMAIN)",
		records: map[string][]string{"example.com": {"v=DMARC1; p=reject; np=reject; sp=none"}},
		domain:  "nosuch.example.com", policyDomain: "example.com", org: "example.com", existence: NonExistent,
		queries: []string{"_dmarc.nosuch.example.com", "_dmarc.example.com", "_dmarc.com"}, existQueries: []string{"MX nosuch.example.com", "A/AAAA nosuch.example.com"}},
	{name: "np: MX NODATA proves existence", rule: "RFC 9989 Appendix A.4 (NODATA: the name exists)",
		records: map[string][]string{"example.com": {"v=DMARC1; p=reject; np=reject"}},
		extra:   []dns.RR{aRR("www.example.com")},
		domain:  "www.example.com", policyDomain: "example.com", org: "example.com", existence: Exists,
		queries: []string{"_dmarc.www.example.com", "_dmarc.example.com", "_dmarc.com"}, existQueries: []string{"MX www.example.com"}},
	{name: "np: an empty non-terminal exists", rule: "RFC 8020 §2 / RFC 9989 Appendix A.4",
		records: map[string][]string{"example.com": {"v=DMARC1; p=reject; np=reject"}},
		extra:   []dns.RR{aRR("x.ent.example.com")},
		domain:  "ent.example.com", policyDomain: "example.com", org: "example.com", existence: Exists,
		queries: []string{"_dmarc.ent.example.com", "_dmarc.example.com", "_dmarc.com"}, existQueries: []string{"MX ent.example.com"}},
	{name: "np absent: no existence test", rule: "RFC 9989 §4.7 np (absent → sp or p, existence irrelevant)",
		records: map[string][]string{"example.com": {"v=DMARC1; p=reject; sp=quarantine"}},
		domain:  "nosuch.example.com", policyDomain: "example.com", org: "example.com",
		queries: []string{"_dmarc.nosuch.example.com", "_dmarc.example.com", "_dmarc.com"}},
	{name: "np: SERVFAIL on MX is kept apart in ExistErr", rule: "RFC 9989 §5.3.6 (temperror only where it matters: Evaluate)",
		records: map[string][]string{"example.com": {"v=DMARC1; p=reject; np=reject"}},
		faults:  map[string]dnstest.Fault{"nosuch.example.com": dnstest.FaultServFail},
		domain:  "nosuch.example.com", policyDomain: "example.com", org: "example.com", existErr: true,
		queries: []string{"_dmarc.nosuch.example.com", "_dmarc.example.com", "_dmarc.com"}, existQueries: []string{"MX nosuch.example.com"}},
	{name: "SERVFAIL at the author", rule: "RFC 9989 §4.10.1 (transient error is not 'no record')",
		records: map[string][]string{"example.com": {"v=DMARC1; p=reject"}},
		faults:  map[string]dnstest.Fault{"_dmarc.mail.example.com": dnstest.FaultServFail},
		domain:  "mail.example.com", tempErr: true, queries: []string{"_dmarc.mail.example.com"}},
	{name: "REFUSED during the walk", rule: "RFC 9989 §5.3.6",
		records: map[string][]string{"example.com": {"v=DMARC1; p=reject"}},
		faults:  map[string]dnstest.Fault{"_dmarc.example.com": dnstest.FaultRefused},
		domain:  "mail.example.com", tempErr: true, queries: []string{"_dmarc.mail.example.com", "_dmarc.example.com"}},
	{name: "timeout during the walk", rule: "RFC 9989 §5.3.6",
		records: map[string][]string{"example.com": {"v=DMARC1; p=reject"}},
		faults:  map[string]dnstest.Fault{"_dmarc.com": dnstest.FaultDrop},
		domain:  "mail.example.com", tempErr: true, queries: []string{"_dmarc.mail.example.com", "_dmarc.example.com", "_dmarc.com"}},
	{name: "org walk failure after the author's record is kept apart", rule: "RFC 9989 §4.10.2 (needed only for relaxed alignment)",
		records: map[string][]string{"mail.example.com": {"v=DMARC1; p=reject"}},
		faults:  map[string]dnstest.Fault{"_dmarc.example.com": dnstest.FaultServFail},
		domain:  "mail.example.com", policyDomain: "mail.example.com", queries: []string{"_dmarc.mail.example.com"}},
	{name: "PSL: record at the author", rule: "RFC 7489 §6.6.3 step 1",
		records: map[string][]string{"mail.example.com": {"v=DMARC1; p=reject"}}, method: MethodPSL,
		domain: "mail.example.com", policyDomain: "mail.example.com", org: "example.com", queries: []string{"_dmarc.mail.example.com"}},
	{name: "PSL: fallback to the Organizational Domain", rule: "RFC 7489 §6.6.3 step 3",
		records: map[string][]string{"mail.example.com": {"v=spf1 -all"}, "example.com": {"v=DMARC1; p=reject"}}, method: MethodPSL,
		domain: "a.mail.example.com", policyDomain: "example.com", org: "example.com", queries: []string{"_dmarc.a.mail.example.com", "_dmarc.example.com"}},
	{name: "PSL: several records at the author end discovery", rule: "RFC 7489 §6.6.3 step 5",
		records: map[string][]string{"mail.example.com": {"v=DMARC1; p=none", "v=DMARC1; p=none"}, "example.com": {"v=DMARC1; p=reject"}}, method: MethodPSL,
		domain: "mail.example.com", org: "example.com", queries: []string{"_dmarc.mail.example.com"}},
	{name: "PSL: private-section suffix", rule: "RFC 7489 §3.2 (the full list)",
		records: map[string][]string{"foo.github.io": {"v=DMARC1; p=reject"}}, method: MethodPSL,
		domain: "a.foo.github.io", policyDomain: "foo.github.io", org: "foo.github.io", queries: []string{"_dmarc.a.foo.github.io", "_dmarc.foo.github.io"}},
}

func TestDiscover(t *testing.T) {
	for _, c := range discoverCases {
		t.Run(c.name, func(t *testing.T) {
			srv, res := newDNS(t, "")
			srv.Add(dmarcRRs(c.records)...)
			srv.Add(c.extra...)
			for n, f := range c.faults {
				srv.SetFault(n, f)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d := Discover(ctx, res, c.domain, Options{Method: c.method})
			wantMethod := c.method
			if wantMethod == "" {
				wantMethod = MethodTreeWalk
			}
			if got := errors.Is(d.Err, ErrTempFail); got != c.tempErr {
				t.Fatalf("%s: Err = %v, want temporary failure %v", c.rule, d.Err, c.tempErr)
			}
			if got := errors.Is(d.ExistErr, ErrTempFail); got != c.existErr || (d.ExistErr != nil && !got) {
				t.Fatalf("%s: ExistErr = %v, want temporary failure %v", c.rule, d.ExistErr, c.existErr)
			}
			got := []any{d.Method, d.PolicyDomain, d.OrgDomain, d.Existence, d.Queries, d.ExistQueries}
			want := []any{wantMethod, c.policyDomain, c.org, c.existence, c.queries, c.existQueries}
			if c.tempErr {
				got, want = got[:1], want[:1]
				if diff := cmp.Diff(c.queries, d.Queries); diff != "" {
					t.Errorf("%s: queries (-want +got):\n%s", c.rule, diff)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: (-want +got):\n%s", c.rule, diff)
			}
			if (c.policyDomain != "") != (d.Record != nil) && !c.tempErr {
				t.Errorf("%s: record %v for policy domain %q", c.rule, d.Record, c.policyDomain)
			}
		})
	}
}

func TestDiscoverOrgErrKeptApart(t *testing.T) {
	srv, res := newDNS(t, "")
	srv.Add(txtRR("_dmarc.mail.example.com", "v=DMARC1; p=reject"))
	srv.SetFault("_dmarc.example.com", dnstest.FaultServFail)
	d := Discover(context.Background(), res, "mail.example.com", Options{})
	if d.Err != nil || d.Record == nil || !errors.Is(d.OrgErr, ErrTempFail) {
		t.Fatalf("Err %v, Record %v, OrgErr %v: want a record and a temporary OrgErr", d.Err, d.Record, d.OrgErr)
	}
}

// TestDiscoverCached shows that a second discovery of the same domain is
// served by pkg/cache: the authoritative server sees no new query.
func TestDiscoverCached(t *testing.T) {
	srv, res := newDNS(t, "")
	srv.Add(txtRR("_dmarc.example.com", "v=DMARC1; p=reject; np=reject"))
	ctx := context.Background()
	first := Discover(ctx, res, "nosuch.example.com", Options{})
	n := srv.Queries()
	if n == 0 || first.Existence != NonExistent {
		t.Fatalf("first discovery: %d queries, existence %q", n, first.Existence)
	}
	second := Discover(ctx, res, "nosuch.example.com", Options{})
	if got := srv.Queries(); got != n {
		t.Errorf("second discovery asked the server %d more times, want 0 (cached)", got-n)
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("cached discovery differs (-first +second):\n%s", diff)
	}
}

func TestDiscoverBadDomain(t *testing.T) {
	d := Discover(context.Background(), nil, "bad domain", Options{})
	if !errors.Is(d.Err, ErrBadDomain) || errors.Is(d.Err, ErrTempFail) {
		t.Errorf("Err = %v, want ErrBadDomain", d.Err)
	}
}

func TestDiscoverContextCancelled(t *testing.T) {
	srv, res := newDNS(t, "")
	srv.SetDelay(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	d := Discover(ctx, res, "example.com", Options{})
	if !errors.Is(d.Err, ErrTempFail) {
		t.Errorf("Err = %v, want a temporary failure when the message's deadline passes", d.Err)
	}
}

// TestDiscoverLongAuthorDomain: "_dmarc." plus a valid 247-octet domain is
// too long to exist; the walk skips it instead of failing temporarily.
func TestDiscoverLongAuthorDomain(t *testing.T) {
	srv, res := newDNS(t, "")
	srv.Add(txtRR("_dmarc.example.com", "v=DMARC1; p=reject"))
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 52) + ".example.com"
	d := Discover(context.Background(), res, long, Options{})
	if d.Err != nil || d.PolicyDomain != "example.com" {
		t.Errorf("RFC 1035 §2.3.4: Err %v, policy domain %q; want example.com", d.Err, d.PolicyDomain)
	}
}
