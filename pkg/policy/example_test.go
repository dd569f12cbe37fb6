package policy_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

func ExampleParse() {
	r, err := policy.Parse("v=DMARC1; P=Reject; sp=quarantine; rua=mailto:dmarc@example.com!10m; foo=bar")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Policy(), r.SubdomainPolicy(), r.NonExistentPolicy(), r.DKIMAlignment())
	fmt.Println(r)
	// Output:
	// reject quarantine quarantine r
	// v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@example.com
}

func ExampleParseFrom() {
	a := policy.ParseFrom([]string{`"Someone <x@junk.example>"@Victim.Example, "Doe, John" <john@example.org>`})
	fmt.Println(a.Problem == policy.FromOK, a.Domains)

	a = policy.ParseFrom([]string{"victim@bank.example>"})
	fmt.Println(a.Problem)
	// Output:
	// true [victim.example example.org]
	// unparseable
}

// Example_message shows the calls the milter makes for one message.
func Example_message() {
	srv, err := dnstest.Start(`_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"`)
	for i := 0; err != nil && i < 20; i++ { // the port pair can be taken on a busy machine
		srv, err = dnstest.Start(`_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"`)
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	res, _ := cache.New(cache.Config{Nameservers: []string{srv.Addr}})
	ctx := context.Background()

	// At the From: header: parse it and start discovery for its domains.
	from := policy.ParseFrom([]string{"Jane <jane@mail.example.com>"})
	discoveries := map[string]*policy.Discovery{}
	for _, d := range from.Domains {
		discoveries[d] = policy.Discover(ctx, res, d, policy.Options{})
	}

	// At end of message: finish the DNS work, then evaluate.
	in := policy.Input{
		SourceIP:    netip.MustParseAddr("192.0.2.7"),
		MailFrom:    "bounce@bounce.example.com",
		From:        from,
		SPF:         verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeMailFrom, Domain: "bounce.example.com"},
		Discoveries: discoveries,
	}
	policy.Prepare(ctx, res, &in, policy.Options{})
	v := policy.Evaluate(in)
	d := v.Domains[0]
	fmt.Println(v.Result, v.Action, d.PolicyDomain, d.OrgDomain, d.SPFAligned)

	// A forgery of the same domain is rejected (no list headers, no trusted forwarder).
	in.SPF = verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeMailFrom, Domain: "evil.example"}
	v = policy.Evaluate(in)
	fmt.Println(v.Result, v.Action, v.Domains[0].PolicyTag)
	// Output:
	// pass accept example.com example.com true
	// fail reject p
}

func ExampleEvaluate() {
	rec, _ := policy.Parse("v=DMARC1; p=reject; t=y")
	in := policy.Input{
		From: policy.ParseFrom([]string{"ceo@example.com"}),
		Discoveries: map[string]*policy.Discovery{"example.com": {
			Domain: "example.com", Method: policy.MethodTreeWalk,
			PolicyDomain: "example.com", OrgDomain: "example.com", Record: rec,
		}},
		Local: policy.LocalPolicy{Mode: policy.ModeMonitor},
	}
	v := policy.Evaluate(in)
	d := v.Domains[0]
	fmt.Println(v.Result, d.Requested, d.EnforceDisposition, d.Disposition, v.EnforceAction, v.Action)
	for _, o := range d.Overrides {
		fmt.Println(o.Type(), o.Reason, o.Comment)
	}
	// Output:
	// fail reject quarantine none quarantine accept
	// policy_test_mode test-mode t=y
	// local_policy monitor-mode monitor mode
}

func ExampleOrgDomain() {
	// The PSL method needs no DNS.
	org, _ := policy.OrgDomain(context.Background(), nil, "Mail.Example.CO.UK.", policy.MethodPSL, nil)
	fmt.Println(org)
	// Output: example.co.uk
}
