package mailout

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// destZone: example.com publishes DMARC; the report consumers example.net
// (explicit authorization), example.org (wildcard), override.example
// (overrides), and others that do not authorize.
const destZone = `
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"
_dmarc.example.net. 300 IN TXT "v=DMARC1; p=none"
example.com._report._dmarc.rcpt.example.net. 300 IN TXT "v=DMARC1"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=none"
*._report._dmarc.wild.example.org. 300 IN TXT "v=DMARC1;"
example.com._report._dmarc.same.override.example. 300 IN TXT "v=DMARC1; rua=mailto:new@same.override.example,mailto:dmarc@example.com"
example.com._report._dmarc.other.override.example. 300 IN TXT "v=DMARC1; rua=mailto:new@other.override.example,mailto:x@elsewhere.example"
example.com._report._dmarc.notdmarc.example. 300 IN TXT "v=spf1 -all"
example.com._report._dmarc.notfirst.example. 300 IN TXT "p=none; v=DMARC1"
example.com._report._dmarc.mixed.example. 300 IN TXT "v=spf1 -all"
example.com._report._dmarc.mixed.example. 300 IN TXT "v=DMARC1"
example.com._report._dmarc.fails.example. 300 IN TXT "v=DMARC1"
`

// pkg/cache's resolver is the one the daemon passes to Destinations.
var _ Resolver = (*cache.Resolver)(nil)

func newResolver(t *testing.T, srv *dnstest.Server) *cache.Resolver {
	t.Helper()
	r, err := cache.New(cache.Config{Nameservers: []string{srv.Addr}, Timeout: 300 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type dest struct {
	Address  string
	State    State
	Reason   Reason
	External bool
	Override string
}

func summarize(t *testing.T, ds []Destination) []dest {
	t.Helper()
	var out []dest
	for _, d := range ds {
		out = append(out, dest{d.Address, d.State, d.Reason, d.External, d.Override})
		if (d.State == StateSend) != (d.Err == nil) || d.Err != nil && !errors.Is(d.Err, ErrURI) {
			t.Errorf("%s: state %s with error %v", d.URI, d.State, d.Err)
		}
	}
	return out
}

func TestDestinations(t *testing.T) {
	t.Parallel()
	srv := dnstest.New(t, destZone)
	srv.SetFault("example.com._report._dmarc.fails.example", dnstest.FaultServFail)
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + ".example"
	for _, tc := range []struct {
		name         string
		policyDomain string
		rua          string
		want         []dest
	}{
		{"internal", "example.com", "mailto:dmarc@example.com", []dest{{"dmarc@example.com", StateSend, "", false, ""}}},
		{"internal subdomain of the Organizational Domain", "sub.example.com", "mailto:d@reports.example.com", []dest{{"d@reports.example.com", StateSend, "", false, ""}}},
		{"external authorized", "example.com", "mailto:r@rcpt.example.net", []dest{{"r@rcpt.example.net", StateSend, "", true, ""}}},
		{"external authorized by a wildcard", "example.com", "mailto:r@wild.example.org", []dest{{"r@wild.example.org", StateSend, "", true, ""}}},
		{"wildcard for any policy domain", "example.net", "mailto:r@wild.example.org", []dest{{"r@wild.example.org", StateSend, "", true, ""}}},
		{"external without record", "example.com", "mailto:r@nothing.example", []dest{{"r@nothing.example", StateSkip, ReasonNotAuthorized, true, ""}}},
		{"authorization for another policy domain only", "example.net", "mailto:r@rcpt.example.net", []dest{{"r@rcpt.example.net", StateSend, "", false, ""}}},
		{"record that is not DMARC", "example.com", "mailto:r@notdmarc.example", []dest{{"r@notdmarc.example", StateSkip, ReasonNotAuthorized, true, ""}}},
		{"v=DMARC1 not first", "example.com", "mailto:r@notfirst.example", []dest{{"r@notfirst.example", StateSkip, ReasonNotAuthorized, true, ""}}},
		{"one DMARC record among others", "example.com", "mailto:r@mixed.example", []dest{{"r@mixed.example", StateSend, "", true, ""}}},
		{"temporary DNS failure", "example.com", "mailto:r@fails.example", []dest{{"r@fails.example", StateTryLater, ReasonTryLater, true, ""}}},
		// One overriding URI is on the destination host, the other (an
		// address of the policy domain itself) is not: RFC 9990 §4 step 9
		// forbids both.
		{"override with one URI on another host", "example.com", "mailto:old@same.override.example", []dest{{"old@same.override.example", StateSkip, ReasonOverrideHost, true, ""}}},
		{"override naming another host", "example.com", "mailto:old@other.override.example", []dest{{"old@other.override.example", StateSkip, ReasonOverrideHost, true, ""}}},
		{"name too long", long, "mailto:r@" + long[:len(long)-len(".example")] + ".net", []dest{{"r@" + long[:len(long)-len(".example")] + ".net", StateSkip, ReasonNameTooLong, true, ""}}},
		{"bad policy domain", "exa mple.com", "mailto:dmarc@example.com", []dest{{"dmarc@example.com", StateSkip, ReasonPolicyDomain, false, ""}}},
		{"order kept, malformed and duplicates skipped", "example.com",
			"mailto:dmarc@example.com, https://x.example/, mailto:r@rcpt.example.net!5m, mailto:dmarc@example.com, mailto:r@nothing.example", []dest{
				{"dmarc@example.com", StateSend, "", false, ""},
				{"", StateSkip, ReasonScheme, false, ""},
				{"r@rcpt.example.net", StateSend, "", true, ""},
				{"", StateSkip, ReasonDuplicate, false, ""},
				{"r@nothing.example", StateSkip, ReasonNotAuthorized, true, ""},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got := summarize(t, Destinations(ctx, newResolver(t, srv), tc.policyDomain, tc.rua, policy.MethodTreeWalk))
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// TestDestinationsOverride: the authorization record replaces the URI with
// its own rua on the same host (RFC 9990 §4 step 9).
func TestDestinationsOverride(t *testing.T) {
	t.Parallel()
	srv := dnstest.New(t, `
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"
example.com._report._dmarc.consumer.example. 300 IN TXT "v=DMARC1; rua=mailto:new@consumer.example,mailto:old@consumer.example!1m, https://consumer.example/"
`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := summarize(t, Destinations(ctx, newResolver(t, srv), "example.com", "mailto:old@consumer.example,mailto:dmarc@example.com", policy.MethodTreeWalk))
	want := []dest{
		{"old@consumer.example", StateSkip, ReasonOverridden, true, ""},
		{"new@consumer.example", StateSend, "", true, "mailto:old@consumer.example"},
		{"old@consumer.example", StateSend, "", true, "mailto:old@consumer.example"},
		{"", StateSkip, ReasonScheme, true, "mailto:old@consumer.example"},
		{"dmarc@example.com", StateSend, "", false, ""},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// TestDestinationsQueries counts the DNS work: one authorization lookup per
// host however many URIs name it, none for internal destinations, and none
// at all for the Organizational Domains with the PSL method.
func TestDestinationsQueries(t *testing.T) {
	t.Parallel()
	srv := dnstest.New(t, destZone)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rua := "mailto:a@rcpt.example.net,mailto:b@rcpt.example.net,mailto:c@example.com,mailto:d@x.example.com"
	got := summarize(t, Destinations(ctx, newResolver(t, srv), "example.com", rua, policy.MethodPSL))
	want := []dest{
		{"a@rcpt.example.net", StateSend, "", true, ""},
		{"b@rcpt.example.net", StateSend, "", true, ""},
		{"c@example.com", StateSend, "", false, ""},
		{"d@x.example.com", StateSend, "", false, ""},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if n := srv.QueriesFor("example.com._report._dmarc.rcpt.example.net", dns.TypeTXT); n != 1 {
		t.Errorf("%d authorization queries, want 1", n)
	}
	if n := srv.Queries(); n != 1 {
		t.Errorf("%d queries in all, want 1 (PSL needs no DNS)", n)
	}
}

// TestDestinationsPolicyDomainFailure: when the policy domain's own
// Organizational Domain cannot be found (tree walk, SERVFAIL), nothing can be
// decided: every usable URI is "try later", malformed ones stay skipped.
func TestDestinationsPolicyDomainFailure(t *testing.T) {
	t.Parallel()
	srv := dnstest.New(t, destZone)
	srv.SetFault("_dmarc.example.com", dnstest.FaultServFail)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := summarize(t, Destinations(ctx, newResolver(t, srv), "example.com", "mailto:dmarc@example.com,mailto:x", policy.MethodTreeWalk))
	want := []dest{
		{"dmarc@example.com", StateTryLater, ReasonTryLater, false, ""},
		{"", StateSkip, ReasonAddress, false, ""},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// TestDestinationsTimeout: a DNS server that does not answer gives "try
// later" within the context's deadline.
func TestDestinationsTimeout(t *testing.T) {
	t.Parallel()
	srv := dnstest.New(t, destZone)
	srv.SetFault("example.com._report._dmarc.rcpt.example.net", dnstest.FaultDrop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	got := summarize(t, Destinations(ctx, newResolver(t, srv), "example.com", "mailto:r@rcpt.example.net", policy.MethodTreeWalk))
	if len(got) != 1 || got[0].State != StateTryLater {
		t.Errorf("got %+v, want try-later", got)
	}
	if el := time.Since(start); el > 2500*time.Millisecond {
		t.Errorf("took %v", el)
	}
}

// TestDestinationsNoUsableURI: a rua without a usable URI costs no DNS query.
func TestDestinationsNoUsableURI(t *testing.T) {
	t.Parallel()
	srv := dnstest.New(t, destZone)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := summarize(t, Destinations(ctx, newResolver(t, srv), "example.com", "https://x.example/,mailto:", policy.MethodTreeWalk))
	if len(got) != 2 || got[0].State != StateSkip || got[1].State != StateSkip {
		t.Errorf("%+v", got)
	}
	if n := srv.Queries(); n != 0 {
		t.Errorf("%d DNS queries, want 0", n)
	}
}
