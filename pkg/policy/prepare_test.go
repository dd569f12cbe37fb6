package policy

import (
	"context"
	"errors"
	"maps"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestPrepare(t *testing.T) {
	srv, res := newDNS(t, "")
	srv.Add(txtRR("_dmarc.example.com", "v=DMARC1; p=reject"))
	rec := &recorder{Resolver: res}
	in := Input{
		MailFrom: "b@bounce.example.com",
		From:     ParseFrom([]string{"a@example.com"}),
		SPF:      spfPass("bounce.example.com"),
		DKIM:     []verify.DKIMResult{dkim(verify.ResultPass, "esp.example.net"), dkim(verify.ResultPass, "example.com"), dkim(verify.ResultFail, "x.example.com")},
	}
	Prepare(context.Background(), rec, &in, Options{})
	want := map[string]OrgResult{"bounce.example.com": {Domain: "example.com"}}
	if diff := cmp.Diff(want, in.OrgDomains, cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) })); diff != "" {
		t.Errorf("RFC 9989 §4.10.2: org domains looked up (-want +got):\n%s", diff)
	}
	for _, q := range rec.txtQueries() {
		if q == "_dmarc.esp.example.net" || q == "_dmarc.x.example.com" {
			t.Errorf("needless tree walk for %s (unrelated or failed identifier)", q)
		}
	}
	if v := Evaluate(in); v.Result != ResultPass || !v.Domains[0].SPFAligned {
		t.Errorf("result %s, SPF aligned %v", v.Result, v.Domains[0].SPFAligned)
	}
}

func TestPrepareOrgWalkFailure(t *testing.T) {
	srv, res := newDNS(t, "")
	srv.Add(txtRR("_dmarc.example.com", "v=DMARC1; p=reject"))
	srv.SetFault("_dmarc.bounce.example.com", dnstest.FaultServFail)
	in := Input{MailFrom: "b@bounce.example.com", From: ParseFrom([]string{"a@example.com"}), SPF: spfPass("bounce.example.com")}
	Prepare(context.Background(), res, &in, Options{})
	v := Evaluate(in)
	if v.Result != ResultTempError || v.Action != ActionTempFail || !errors.Is(v.Domains[0].Err, ErrTempFail) {
		t.Errorf("RFC 9989 §5.3.6: result %s action %s err %v; want temperror, tempfail", v.Result, v.Action, v.Domains[0].Err)
	}
}

func TestPrepareKeepsEarlyDiscoveries(t *testing.T) {
	srv, res := newDNS(t, "")
	srv.Add(txtRR("_dmarc.example.com", "v=DMARC1; p=reject"))
	early := Discover(context.Background(), res, "example.com", Options{})
	srv.ResetCounts()
	in := Input{From: ParseFrom([]string{"a@example.com"}), Discoveries: map[string]*Discovery{"example.com": early}}
	Prepare(context.Background(), res, &in, Options{})
	if in.Discoveries["example.com"] != early || srv.Queries() != 0 {
		t.Errorf("Prepare redid the discovery (%d queries)", srv.Queries())
	}
}

func TestPrepareTooManyDomains(t *testing.T) {
	in := Input{From: ParseFrom([]string{"a@a.example, b@b.example"}), Local: LocalPolicy{From: FromPolicy{MaxDomains: 1}}}
	Prepare(context.Background(), nil, &in, Options{}) // a nil resolver would panic if used
	if len(in.Discoveries) != 0 {
		t.Errorf("RFC 9989 §11.5: %d discoveries beyond the limit", len(in.Discoveries))
	}
}

// TestPrepared: Prepared is false while Prepare has a discovery or an
// Organizational Domain to look up, and true once it has none; then Prepare
// leaves the input as it is (a nil resolver would panic if used).
func TestPrepared(t *testing.T) {
	srv, res := newDNS(t, "")
	srv.Add(txtRR("_dmarc.example.com", "v=DMARC1; p=reject"))
	srv.Add(txtRR("_dmarc.other.example", "v=DMARC1; p=none; aspf=s; adkim=s"))
	for _, in := range []Input{
		{MailFrom: "b@bounce.example.com", From: ParseFrom([]string{"a@example.com"}), SPF: spfPass("bounce.example.com"),
			DKIM: []verify.DKIMResult{dkim(verify.ResultPass, "sub.example.com")}},
		{MailFrom: "b@example.com", From: ParseFrom([]string{"a@example.com"}), SPF: spfPass("example.com")},
		{MailFrom: "b@bounce.other.example", From: ParseFrom([]string{"a@other.example"}), SPF: spfPass("bounce.other.example")},
		{From: ParseFrom([]string{"a@a.example, b@b.example"}), Local: LocalPolicy{From: FromPolicy{MaxDomains: 1}}},
		{From: ParseFrom(nil)},
	} {
		before := Prepared(&in)
		Prepare(context.Background(), res, &in, Options{})
		if !Prepared(&in) {
			t.Errorf("%v: not Prepared after Prepare", in.From.Domains)
		}
		if len(in.Discoveries) > 0 && before {
			t.Errorf("%v: Prepared before the discovery", in.From.Domains)
		}
		discs, orgs := maps.Clone(in.Discoveries), maps.Clone(in.OrgDomains)
		Prepare(context.Background(), nil, &in, Options{})
		if !maps.Equal(discs, in.Discoveries) {
			t.Errorf("%v: Prepare changed the discoveries of a Prepared input", in.From.Domains)
		}
		if d := cmp.Diff(orgs, in.OrgDomains, cmpopts.EquateErrors()); d != "" {
			t.Errorf("%v: Prepare changed the Organizational Domains of a Prepared input:\n%s", in.From.Domains, d)
		}
	}
}
