package policy

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
	"github.com/google/go-cmp/cmp"
)

// tooMany is a message From three Author Domains with max_domains = 2,
// the too_many_domains outcome o, and discoveries for the first two only
// (what the milter and Prepare look up); mod changes it.
func tooMany(o FromOutcome, mod func(*Input)) func() Input {
	return func() Input {
		in := msg("none.example", mkDisc("none.example", "none.example", "none.example", "v=DMARC1; p=none"))
		in.From = ParseFrom([]string{"a@none.example, b@quar.example, c@nodmarc.example"})
		in.Discoveries["quar.example"] = mkDisc("quar.example", "quar.example", "quar.example", "v=DMARC1; p=quarantine")
		in.Local.From.MaxDomains = 2
		in.Local.From.TooManyDomains = o
		if mod != nil {
			mod(&in)
		}
		return in
	}
}

// TestEvaluateTooManyDomains: more Author Domains than max_domains never
// make the domains beyond the limit temperror (they are not looked up);
// the configured outcome applies on top of the first max_domains (RFC 9989
// §11.5).
func TestEvaluateTooManyDomains(t *testing.T) {
	cases := []struct {
		evalCase
		evaluated []string // HeaderFrom of Verdict.Domains
	}{
		{evalCase{"quarantine: first two evaluated, quarantined", "RFC 9989 §11.5", tooMany(FromQuarantine, nil),
			summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Problem: FromTooManyDomains, Tag: TagP, Requested: DispositionQuarantine, Disposition: DispositionQuarantine}},
			[]string{"none.example", "quar.example"}},
		{evalCase{"quarantine: the evaluated domains pass, still quarantined", "RFC 9989 §11.5", tooMany(FromQuarantine, func(in *Input) {
			in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "none.example"), dkim(verify.ResultPass, "quar.example")}
		}), summary{Result: ResultPass, Action: ActionQuarantine, Enforce: ActionQuarantine, Problem: FromTooManyDomains, Tag: TagP, Requested: DispositionNone, Disposition: DispositionQuarantine, Overrides: []Reason{ReasonFromQuarantine}, DKIM: []string{"none.example"}}},
			[]string{"none.example", "quar.example"}},
		{evalCase{"quarantine: a stricter evaluated action wins", "RFC 7489 §6.6.1 (strictest)", tooMany(FromQuarantine, func(in *Input) {
			in.Discoveries["quar.example"] = mkDisc("quar.example", "quar.example", "quar.example", "v=DMARC1; p=reject")
			in.Local.OnReject = RejectReject
		}), summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Problem: FromTooManyDomains, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
			[]string{"none.example", "quar.example"}},
		{evalCase{"quarantine: a real temperror among the first two still tempfails", "RFC 9989 §5.3.6", tooMany(FromQuarantine, func(in *Input) {
			d := mkDisc("quar.example", "", "", "")
			d.Err = ErrTempFail
			in.Discoveries["quar.example"] = d
		}), summary{Result: ResultFail, Action: ActionTempFail, Enforce: ActionTempFail, Problem: FromTooManyDomains, Disposition: DispositionNone}}, // fail (none.example) outranks temperror in Result
			[]string{"none.example", "quar.example"}},
		{evalCase{"quarantine, monitor mode", "RFC 9989 §11.5", tooMany(FromQuarantine, func(in *Input) { in.Local.Mode = ModeMonitor }),
			summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionQuarantine, Problem: FromTooManyDomains, Tag: TagP, Requested: DispositionQuarantine, Disposition: DispositionNone, Overrides: []Reason{ReasonMonitorMode}}},
			[]string{"none.example", "quar.example"}},
		{evalCase{"reject (default): permerror, nothing evaluated", "RFC 9989 §11.5", tooMany("", nil),
			summary{Result: ResultPermError, Action: ActionReject, Enforce: ActionReject, Problem: FromTooManyDomains}},
			nil},
		{evalCase{"accept: permerror, delivered, nothing evaluated", "RFC 9989 §11.5", tooMany(FromAccept, nil),
			summary{Result: ResultPermError, Action: ActionAccept, Enforce: ActionAccept, Problem: FromTooManyDomains}},
			nil},
		{evalCase{"accept beside several fields (evaluate): bounded evaluation", "RFC 9989 §11.5, RFC 5322 §3.6", tooMany(FromAccept, func(in *Input) {
			in.From = ParseFrom([]string{"a@none.example, b@quar.example", "c@nodmarc.example"})
		}), summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Problem: FromMultipleFields, Tag: TagP, Requested: DispositionQuarantine, Disposition: DispositionQuarantine}},
			[]string{"none.example", "quar.example"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Evaluate(c.in())
			if diff := cmp.Diff(c.want, summarize(v)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", c.rule, diff)
			}
			var got []string
			for _, d := range v.Domains {
				got = append(got, d.HeaderFrom)
				if errors.Is(d.Err, ErrNotDiscovered) {
					t.Errorf("%s evaluated without a discovery", d.HeaderFrom)
				}
			}
			if diff := cmp.Diff(c.evaluated, got); diff != "" {
				t.Errorf("RFC 9989 §11.5: domains evaluated (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPrepareTooManyDomainsQuarantine: with too_many_domains = quarantine,
// Prepare looks up the first max_domains Author Domains and no other, and
// Evaluate then quarantines instead of tempfailing.
func TestPrepareTooManyDomainsQuarantine(t *testing.T) {
	srv, res := newDNS(t, "")
	srv.Add(txtRR("_dmarc.none.example", "v=DMARC1; p=none"), txtRR("_dmarc.quar.example", "v=DMARC1; p=quarantine"))
	rec := &recorder{Resolver: res}
	in := Input{
		From:  ParseFrom([]string{"a@none.example, b@quar.example, c@nodmarc.example"}),
		Local: LocalPolicy{From: FromPolicy{MaxDomains: 2, TooManyDomains: FromQuarantine}},
	}
	Prepare(context.Background(), rec, &in, Options{})
	if _, ok := in.Discoveries["nodmarc.example"]; ok || len(in.Discoveries) != 2 {
		t.Errorf("RFC 9989 §11.5: discoveries %v, want none.example and quar.example only", mapKeys(in.Discoveries))
	}
	if q := rec.txtQueries(); slices.Contains(q, "_dmarc.nodmarc.example") {
		t.Errorf("RFC 9989 §11.5: the third domain was queried: %v", q)
	}
	v := Evaluate(in)
	if v.Action != ActionQuarantine || v.Result != ResultFail || v.FromProblem != FromTooManyDomains {
		t.Errorf("result %s, action %s, problem %s; want fail, quarantine, too-many-domains", v.Result, v.Action, v.FromProblem)
	}
}

func mapKeys(m map[string]*Discovery) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
