package policy

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
	"github.com/google/go-cmp/cmp"
)

// existFailed is a Discovery of news.example.com (no record of its own)
// under example.com's txt, whose np= existence test failed.
func existFailed(txt string) *Discovery {
	d := mkDisc("news.example.com", "example.com", "example.com", txt)
	d.ExistErr = fmt.Errorf("%w: MX news.example.com: SERVFAIL", ErrTempFail)
	return d
}

// existMsg is a message from news.example.com with existFailed(txt),
// changed by mod.
func existMsg(txt string, mod func(*Input)) func() Input {
	return func() Input {
		in := msg("news.example.com", existFailed(txt))
		if mod != nil {
			mod(&in)
		}
		return in
	}
}

// TestEvaluateExistenceFailure: a failed np= existence test makes temperror
// only when DMARC fails and np= names another policy than sp/p (RFC 9989
// §5.3.6, §4.10.1); a pass stays a pass and an equal np= changes nothing.
func TestEvaluateExistenceFailure(t *testing.T) {
	alignedDKIM := func(in *Input) { in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "news.example.com")} }
	cases := []evalCase{
		{"pass despite SERVFAIL (strict identity)", "RFC 9989 §5.3.5", existMsg("v=DMARC1; p=reject; np=reject", alignedDKIM),
			summary{Result: ResultPass, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, DKIM: []string{"news.example.com"}}},
		{"pass despite SERVFAIL (relaxed, np differs from sp)", "RFC 9989 §5.3.5, §3.2.10.1", existMsg("v=DMARC1; p=reject; sp=none; np=reject", func(in *Input) {
			in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "example.com")}
			in.OrgDomains = map[string]OrgResult{"example.com": {Domain: "example.com"}}
		}), summary{Result: ResultPass, Action: ActionAccept, Enforce: ActionAccept, Tag: TagSP, Requested: DispositionNone, Disposition: DispositionNone, DKIM: []string{"example.com"}}},
		{"p=none, np=none: fail is accepted, not tempfailed", "RFC 9989 §5.4", existMsg("v=DMARC1; p=none; np=none", nil),
			summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionNone, Disposition: DispositionNone}},
		{"np equals sp: sp's disposition", "RFC 9989 §4.10.1", existMsg("v=DMARC1; p=reject; sp=quarantine; np=quarantine", nil),
			summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Tag: TagSP, Requested: DispositionQuarantine, Disposition: DispositionQuarantine}},
		{"np equals p (no sp): p's disposition", "RFC 9989 §4.7 sp, §4.10.1", existMsg("v=DMARC1; p=reject; np=reject", nil),
			summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
		{"np stricter than sp: temperror, tempfail", "RFC 9989 §5.3.6", existMsg("v=DMARC1; p=reject; sp=none; np=reject", nil),
			summary{Result: ResultTempError, Action: ActionTempFail, Enforce: ActionTempFail, Disposition: DispositionNone}},
		{"np stricter than p=none: p=none does not save it", "RFC 9989 §5.3.6, §5.4", existMsg("v=DMARC1; p=none; np=reject", nil),
			summary{Result: ResultTempError, Action: ActionTempFail, Enforce: ActionTempFail, Disposition: DispositionNone}},
		{"np=none under p=reject: temperror, tempfail", "RFC 9989 §5.3.6", existMsg("v=DMARC1; p=reject; np=none", nil),
			summary{Result: ResultTempError, Action: ActionTempFail, Enforce: ActionTempFail, Disposition: DispositionNone}},
		{"np differs, local temperror handling accept", "RFC 9989 §5.3.6, §5.4", existMsg("v=DMARC1; p=reject; sp=none; np=reject", func(in *Input) { in.Local.OnTempError = TempErrorAccept }),
			summary{Result: ResultTempError, Action: ActionAccept, Enforce: ActionAccept, Disposition: DispositionNone, Overrides: []Reason{ReasonTempErrorAccepted}}},
		{"np differs, allowlisted From domain", "RFC 9989 §5.4", existMsg("v=DMARC1; p=reject; sp=none; np=reject", func(in *Input) { in.Local.AllowFrom = []string{"example.com"} }),
			summary{Result: ResultTempError, Action: ActionAccept, Enforce: ActionAccept, Disposition: DispositionNone, Overrides: []Reason{ReasonAllowFrom}}},
		{"np differs, monitor mode", "RFC 9989 §5.3.6", existMsg("v=DMARC1; p=reject; sp=none; np=reject", func(in *Input) { in.Local.Mode = ModeMonitor }),
			summary{Result: ResultTempError, Action: ActionAccept, Enforce: ActionTempFail, Disposition: DispositionNone, Overrides: []Reason{ReasonMonitorMode}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Evaluate(c.in())
			if diff := cmp.Diff(c.want, summarize(v)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", c.rule, diff)
			}
			dv := v.Domains[0]
			if wantErr := c.want.Result == ResultTempError; errors.Is(dv.Err, ErrTempFail) != wantErr {
				t.Errorf("DomainVerdict.Err = %v, want the existence failure: %v", dv.Err, wantErr)
			}
			if dv.Existence != ExistenceUnknown {
				t.Errorf("Existence = %q after a failed test", dv.Existence)
			}
			// A temperror from the existence test leaves the policy open:
			// no aggregate-report row; every other outcome has one.
			if rows := v.ReportRows(); (len(rows) == 0) != (c.want.Result == ResultTempError) {
				t.Errorf("%d report rows for result %s", len(rows), v.Result)
			}
		})
	}
}

// TestExistenceServFailThroughDNS is the reviewer's repro against the
// dnstest server: the MX query for the Author Domain fails, discovery does
// not, and Evaluate gives pass, accept or temperror as the record asks.
func TestExistenceServFailThroughDNS(t *testing.T) {
	cases := []struct {
		name, record string
		dkimDomain   string
		want         Result
		action       Action
	}{
		{"aligned DKIM pass under np=reject", "v=DMARC1; p=reject; np=reject", "news.example.com", ResultPass, ActionAccept},
		{"nothing aligned under p=none, np=none", "v=DMARC1; p=none; np=none", "", ResultFail, ActionAccept},
		{"nothing aligned, np=reject equals p", "v=DMARC1; p=reject; np=reject", "", ResultFail, ActionReject},
		{"nothing aligned, np=reject beside sp=none", "v=DMARC1; p=reject; sp=none; np=reject", "", ResultTempError, ActionTempFail},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, res := newDNS(t, "")
			srv.Add(txtRR("_dmarc.example.com", c.record))
			srv.SetFault("news.example.com", dnstest.FaultServFail)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			in := Input{From: ParseFrom([]string{"n@news.example.com"}), MailFrom: "b@other.example"}
			if c.dkimDomain != "" {
				in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, c.dkimDomain)}
			}
			Prepare(ctx, res, &in, Options{})
			d := in.Discoveries["news.example.com"]
			if d.Err != nil || !errors.Is(d.ExistErr, ErrTempFail) {
				t.Fatalf("discovery Err %v, ExistErr %v: want only the existence test to fail", d.Err, d.ExistErr)
			}
			v := Evaluate(in)
			if v.Result != c.want || v.Action != c.action {
				t.Errorf("RFC 9989 §5.3.6: result %s, action %s; want %s, %s (err %v)", v.Result, v.Action, c.want, c.action, v.Domains[0].Err)
			}
		})
	}
}
