package policy

import (
	"context"
	"maps"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

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
