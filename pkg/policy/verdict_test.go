package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestReasonOverrideType: every reason maps onto one RFC 9990 override
// type, and every type of the schema is reached by some reason.
func TestReasonOverrideType(t *testing.T) {
	want := map[Reason]OverrideType{
		ReasonTestMode:                OverridePolicyTestMode,
		ReasonSampledOut:              OverrideOther,
		ReasonAllowFrom:               OverrideLocalPolicy,
		ReasonAllowNetwork:            OverrideLocalPolicy,
		ReasonMonitorMode:             OverrideLocalPolicy,
		ReasonTrustedForwarderNetwork: OverrideTrustedForwarder,
		ReasonTrustedForwarderDKIM:    OverrideTrustedForwarder,
		ReasonTrustedARCSealer:        OverrideTrustedForwarder,
		ReasonListHeaders:             OverrideMailingList,
		ReasonRejectAsQuarantine:      OverrideLocalPolicy,
		ReasonTempErrorAccepted:       OverrideLocalPolicy,
		ReasonFromQuarantine:          OverrideLocalPolicy,
	}
	reached := map[OverrideType]bool{}
	for r, typ := range want {
		if got := r.OverrideType(); got != typ {
			t.Errorf("%s: %s, want %s", r, got, typ)
		}
		if got := (Override{Reason: r}).Type(); got != typ {
			t.Errorf("Override{%s}.Type() = %s, want %s", r, got, typ)
		}
		reached[typ] = true
	}
	for _, typ := range []OverrideType{OverrideLocalPolicy, OverrideMailingList, OverrideOther, OverridePolicyTestMode, OverrideTrustedForwarder} {
		if !reached[typ] {
			t.Errorf("RFC 9990 type %s is reached by no reason", typ)
		}
	}
	if got := Reason("unknown").OverrideType(); got != OverrideOther {
		t.Errorf("unknown reason: %s, want other", got)
	}
}

// TestVerdictAppliedDisposition: the verdict states the disposition
// actually applied. An exempted message (monitor mode, allowlisted network)
// is delivered, so no domain says reject or quarantine, and its report row
// says none with a local_policy reason; what enforce mode would have done
// is kept apart.
func TestVerdictAppliedDisposition(t *testing.T) {
	cases := []struct {
		name   string
		local  LocalPolicy
		reason Reason
	}{
		{"monitor mode", LocalPolicy{Mode: ModeMonitor}, ReasonMonitorMode},
		{"allowlisted network", LocalPolicy{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, ReasonAllowNetwork},
		{"both: the network is named", LocalPolicy{Mode: ModeMonitor, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}}, ReasonAllowNetwork},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := msg("example.com", exampleReject)
			in.Local = c.local
			in.Local.OnReject = RejectReject
			v := Evaluate(in)
			if v.Action != ActionAccept || v.EnforceAction != ActionReject || v.Exemption != c.reason {
				t.Fatalf("action %s enforce %s exemption %q", v.Action, v.EnforceAction, v.Exemption)
			}
			if c.reason == ReasonAllowNetwork && !v.AllowNetwork.IsValid() {
				t.Errorf("AllowNetwork not set")
			}
			dv := v.Domains[0]
			if dv.Disposition != DispositionNone || dv.Action != ActionAccept || dv.EnforceDisposition != DispositionReject || dv.EnforceAction != ActionReject {
				t.Errorf("domain: disposition %s action %s, enforce %s %s", dv.Disposition, dv.Action, dv.EnforceDisposition, dv.EnforceAction)
			}
			rows := v.ReportRows()
			if len(rows) != 1 {
				t.Fatalf("%d rows", len(rows))
			}
			r := rows[0]
			if r.Disposition != ReportNone || len(r.Reasons) != 1 || r.Reasons[0].Reason != c.reason || r.Reasons[0].Type() != OverrideLocalPolicy {
				t.Errorf("row disposition %s reasons %+v", r.Disposition, r.Reasons)
			}
		})
	}
	// Not in the network, enforce mode: rejected, and the row says so.
	in := msg("example.com", exampleReject)
	in.Local = LocalPolicy{OnReject: RejectReject, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	v := Evaluate(in)
	if v.Action != ActionReject || v.Exemption != "" || v.AllowNetwork.IsValid() {
		t.Fatalf("action %s exemption %q network %v", v.Action, v.Exemption, v.AllowNetwork)
	}
	if r := v.ReportRows()[0]; r.Disposition != ReportReject || len(r.Reasons) != 0 {
		t.Errorf("row %s %+v", r.Disposition, r.Reasons)
	}
}

// TestVerdictTempErrorCause: each temperror carries a typed cause, found
// with errors.Is, never from the text.
func TestVerdictTempErrorCause(t *testing.T) {
	timeout := fmt.Errorf("milter: discovery: %w: %w", ErrTimeout, ErrTempFail)
	cases := []struct {
		name string
		mod  func(*Input)
		want TempErrorCause
		is   error
	}{
		{"SPF", func(in *Input) {
			in.SPF = verify.SPFResult{Result: verify.ResultTempError, Scope: verify.ScopeMailFrom, Domain: "example.com"}
		}, CauseSPF, ErrSPFTempError},
		{"DKIM", func(in *Input) { in.DKIM = []verify.DKIMResult{dkim(verify.ResultTempError, "example.com")} }, CauseDKIM, ErrDKIMTempError},
		{"DMARC DNS", func(in *Input) {
			d := mkDisc("example.com", "", "", "")
			d.Err = fmt.Errorf("%w: TXT _dmarc.example.com: SERVFAIL", ErrTempFail)
			in.Discoveries["example.com"] = d
		}, CauseDMARCDNS, ErrTempFail},
		{"not discovered", func(in *Input) { in.Discoveries = nil }, CauseDMARCDNS, ErrNotDiscovered},
		{"timeout", func(in *Input) {
			d := mkDisc("example.com", "", "", "")
			d.Err = timeout
			in.Discoveries["example.com"] = d
		}, CauseTimeout, ErrTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := msg("example.com", exampleReject)
			in.Discoveries = map[string]*Discovery{"example.com": exampleReject}
			c.mod(&in)
			v := Evaluate(in)
			if v.Result != ResultTempError {
				t.Fatalf("result %s", v.Result)
			}
			if got := v.TempErrorCause(); got != c.want {
				t.Errorf("cause %q, want %q", got, c.want)
			}
			if !errors.Is(v.Domains[0].Err, c.is) {
				t.Errorf("Err %v does not wrap %v", v.Domains[0].Err, c.is)
			}
			if rows := v.ReportRows(); len(rows) != 0 {
				t.Errorf("a tempfailed message gave %d report rows", len(rows))
			}
		})
	}
	in := msg("example.com", exampleReject)
	in.SPF = spfPass("example.com")
	if v := Evaluate(in); v.TempErrorCause() != CauseNone {
		t.Errorf("pass has cause %q", v.TempErrorCause())
	}
	if TempErrorCauseOf(nil) != CauseNone {
		t.Error("nil error has a cause")
	}
}

// TestReportRowIdentifiers: the null sender has an empty envelope_from and
// its SPF row is the HELO check in the mfrom scope; every DKIM signature
// tried is listed, aligned or not; the reasons carry their RFC type.
func TestReportRowIdentifiers(t *testing.T) {
	in := msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=s; fo=d"))
	in.SourceIP = netip.MustParseAddr("2001:db8::25")
	in.MailFrom, in.HELO = "", "mx.other.example"
	in.RcptTo = nil
	in.MailingList = true
	in.SPF = verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeHelo, Domain: "mx.other.example"}
	in.DKIM = []verify.DKIMResult{dkim(verify.ResultFail, "example.com"), dkim(verify.ResultPass, "list.example"), dkim(verify.ResultTempError, "third.example")}
	v := Evaluate(in)
	rows := v.ReportRows()
	if len(rows) != 1 {
		t.Fatalf("%d rows", len(rows))
	}
	r := rows[0]
	if r.EnvelopeFrom != "" || r.EnvelopeTo != "" || r.HeaderFrom != "example.com" || r.SourceIP != in.SourceIP {
		t.Errorf("identifiers %q %q %q %v", r.EnvelopeFrom, r.EnvelopeTo, r.HeaderFrom, r.SourceIP)
	}
	if r.SPFResult == nil || r.SPFResult.Domain != "mx.other.example" || r.SPFResult.Scope != verify.ScopeMailFrom || r.SPFResult.Result != verify.ResultPass {
		t.Errorf("spf %+v", r.SPFResult)
	}
	if len(r.DKIMResults) != 3 || r.DKIMResults[1].Domain != "list.example" || r.DKIMResults[2].Result != verify.ResultTempError {
		t.Errorf("dkim %+v", r.DKIMResults)
	}
	pp := r.PolicyPublished
	if pp.P != DispositionReject || pp.SP != DispositionQuarantine || pp.NP != DispositionUnset || pp.ADKIM != AlignStrict || pp.ASPF != AlignStrict || pp.FO != "d" || pp.Testing || pp.DiscoveryMethod != MethodTreeWalk {
		t.Errorf("policy_published %+v", pp)
	}
	// list headers under reject-unless-indirect: quarantine, mailing_list.
	if r.Disposition != ReportQuarantine || r.DKIM != AlignedFail || r.SPF != AlignedFail {
		t.Errorf("policy_evaluated %s dkim %s spf %s", r.Disposition, r.DKIM, r.SPF)
	}
	if len(r.Reasons) != 1 || r.Reasons[0].Type() != OverrideMailingList || r.Reasons[0].Reason != ReasonListHeaders {
		t.Errorf("reasons %+v", r.Reasons)
	}
}

func TestReportRows(t *testing.T) {
	d := mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject; np=quarantine; t=y; fo=1")
	in := msg("example.com", d)
	in.RcptTo = []string{"<a@Receiver.example>", "b@receiver.example", "c@other.example"}
	in.SPF = verify.SPFResult{Result: verify.ResultFail, Scope: verify.ScopeMailFrom, Domain: "other.example", Reason: "not permitted"}
	in.DKIM = []verify.DKIMResult{dkim(verify.ResultFail, "example.com")}
	rows := Evaluate(in).ReportRows()
	want := ReportRow{
		PolicyPublished: PolicyPublished{Domain: "example.com", P: DispositionReject, NP: DispositionQuarantine, ADKIM: AlignRelaxed, ASPF: AlignRelaxed,
			DiscoveryMethod: MethodTreeWalk, FO: "1", Testing: true},
		SourceIP: netip.MustParseAddr("192.0.2.7"), Disposition: "quarantine", DKIM: "fail", SPF: "fail",
		Reasons:    []Override{{Reason: ReasonTestMode, Comment: "t=y"}},
		HeaderFrom: "example.com", EnvelopeFrom: "other.example", EnvelopeTo: "receiver.example",
		DKIMResults: []DKIMAuth{{Domain: "example.com", Selector: "sel", Result: verify.ResultFail}},
		SPFResult:   &SPFAuth{Domain: "other.example", Scope: verify.ScopeMailFrom, Result: verify.ResultFail, HumanResult: "not permitted"},
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2 (one per recipient domain)", len(rows))
	}
	if diff := cmp.Diff(want, rows[0], cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("row (-want +got):\n%s", diff)
	}
	if rows[1].EnvelopeTo != "other.example" {
		t.Errorf("second row envelope_to %q", rows[1].EnvelopeTo)
	}
	// A pass under an enforcing policy is reported as "pass".
	in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "example.com")}
	if got := Evaluate(in).ReportRows()[0]; got.Disposition != "pass" || got.DKIM != "pass" {
		t.Errorf("pass row: disposition %q dkim %q", got.Disposition, got.DKIM)
	}
	// No policy, no row.
	in.Discoveries["example.com"] = mkDisc("example.com", "", "example.com", "")
	if rows := Evaluate(in).ReportRows(); len(rows) != 0 {
		t.Errorf("%d rows without a policy", len(rows))
	}
}
