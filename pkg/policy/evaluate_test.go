package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
	"github.com/google/go-cmp/cmp"
)

// mkDisc builds a tree-walk Discovery by hand for the pure Evaluate tests.
func mkDisc(author, policyDomain, org, txt string) *Discovery {
	d := &Discovery{Domain: author, Method: MethodTreeWalk, PolicyDomain: policyDomain, OrgDomain: org}
	if txt != "" {
		r, err := Parse(txt)
		if err != nil {
			panic(err)
		}
		d.Record = r
	}
	return d
}

func spfPass(domain string) verify.SPFResult {
	return verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeMailFrom, Domain: domain}
}

func dkim(res verify.Result, domain string) verify.DKIMResult {
	return verify.DKIMResult{Result: res, Domain: domain, Selector: "sel"}
}

// msg is a message from author with the given discovery.
func msg(author string, d *Discovery) Input {
	return Input{
		SourceIP:    netip.MustParseAddr("192.0.2.7"),
		MailFrom:    "bounce@other.example",
		RcptTo:      []string{"rcpt@receiver.example"},
		From:        ParseFrom([]string{"Someone <someone@" + author + ">"}),
		Discoveries: map[string]*Discovery{author: d},
	}
}

// summary is the part of a Verdict the table compares.
type summary struct {
	Result      Result
	Action      Action
	Enforce     Action
	Problem     FromProblem
	Tag         Tag
	Requested   Disposition
	Disposition Disposition
	Overrides   []Reason
	SPFAligned  bool
	DKIM        []string
}

func summarize(v Verdict) summary {
	s := summary{Result: v.Result, Action: v.Action, Enforce: v.EnforceAction, Problem: v.FromProblem}
	i := v.Decisive
	if i < 0 {
		i = 0
	}
	if i < len(v.Domains) {
		d := v.Domains[i]
		s.Tag, s.Requested, s.Disposition, s.SPFAligned, s.DKIM = d.PolicyTag, d.Requested, d.Disposition, d.SPFAligned, d.DKIMAligned
		for _, o := range d.Overrides {
			s.Overrides = append(s.Overrides, o.Reason)
		}
	}
	return s
}

type evalCase struct {
	name, rule string
	in         func() Input
	want       summary
}

var exampleReject = mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject")

func rejectMsg(mod func(*Input)) func() Input {
	return func() Input {
		in := msg("example.com", exampleReject)
		if mod != nil {
			mod(&in)
		}
		return in
	}
}

var evalCases = []evalCase{
	// Alignment and result.
	{"SPF aligned, strict identity", "RFC 9989 §3.2.10.2, §4.4.2", rejectMsg(func(in *Input) { in.SPF = spfPass("example.com") }),
		summary{Result: ResultPass, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, SPFAligned: true}},
	{"DKIM aligned, strict identity", "RFC 9989 §4.4.1", rejectMsg(func(in *Input) { in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "EXAMPLE.com.")} }),
		summary{Result: ResultPass, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, DKIM: []string{"example.com"}}},
	{"DKIM relaxed alignment via tree walk", "RFC 9989 §3.2.10.1, §4.10.2", rejectMsg(func(in *Input) {
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "mail.example.com")}
		in.OrgDomains = map[string]OrgResult{"mail.example.com": {Domain: "example.com"}}
	}), summary{Result: ResultPass, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, DKIM: []string{"mail.example.com"}}},
	{"DKIM under psd=n subtree does not align", "RFC 9989 §4.10.2 rule 1", rejectMsg(func(in *Input) {
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "mail.dept.example.com")}
		in.OrgDomains = map[string]OrgResult{"mail.dept.example.com": {Domain: "dept.example.com"}}
	}), summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"strict DKIM alignment refuses a subdomain", "RFC 9989 §3.2.10.2", func() Input {
		in := msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject; adkim=s"))
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "mail.example.com")}
		in.OrgDomains = map[string]OrgResult{"mail.example.com": {Domain: "example.com"}}
		return in
	}, summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"strict SPF alignment refuses a subdomain", "RFC 9989 §3.2.10.2", func() Input {
		in := msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject; aspf=s"))
		in.SPF = spfPass("bounce.example.com")
		in.OrgDomains = map[string]OrgResult{"bounce.example.com": {Domain: "example.com"}}
		return in
	}, summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"unrelated domains never align", "RFC 9989 §4.4 Table 1", rejectMsg(func(in *Input) {
		in.SPF = spfPass("example.net")
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "example.org")}
	}), summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"failed DKIM signature is not an identifier", "RFC 9989 §4.4.1", rejectMsg(func(in *Input) { in.DKIM = []verify.DKIMResult{dkim(verify.ResultFail, "example.com")} }),
		summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"SPF softfail is not an identifier", "RFC 9989 §4.4.2", rejectMsg(func(in *Input) {
		in.SPF = verify.SPFResult{Result: verify.ResultSoftFail, Scope: verify.ScopeMailFrom, Domain: "example.com"}
	}), summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"HELO SPF pass does not count with a MAIL FROM", "RFC 9989 §3.2.4", rejectMsg(func(in *Input) {
		in.MailFrom = "x@other.example"
		in.SPF = verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeHelo, Domain: "example.com"}
	}), summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"null reverse-path: postmaster@HELO is the MAIL FROM identity", "RFC 9989 §3.2.4, RFC 7208 §2.4", rejectMsg(func(in *Input) {
		in.MailFrom, in.HELO = "", "example.com"
		in.SPF = verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeHelo, Domain: "example.com"}
	}), summary{Result: ResultPass, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, SPFAligned: true}},
	{"PSL method: relaxed alignment without DNS", "RFC 7489 §3.1", func() Input {
		d := mkDisc("example.co.uk", "example.co.uk", "example.co.uk", "v=DMARC1; p=reject")
		d.Method = MethodPSL
		in := msg("example.co.uk", d)
		in.SPF = spfPass("bounce.example.co.uk")
		return in
	}, summary{Result: ResultPass, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, SPFAligned: true}},
	{"PSL method: sibling registrations do not align", "RFC 7489 §3.2", func() Input {
		d := mkDisc("example.co.uk", "example.co.uk", "example.co.uk", "v=DMARC1; p=reject")
		d.Method = MethodPSL
		in := msg("example.co.uk", d)
		in.SPF = spfPass("other.co.uk")
		return in
	}, summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},

	// Policy selection.
	{"no record: none", "RFC 9989 §5.3.2", func() Input { return msg("example.com", mkDisc("example.com", "", "example.com", "")) },
		summary{Result: ResultNone, Action: ActionAccept, Enforce: ActionAccept, Disposition: DispositionNone}},
	{"invalid p without rua: no DMARC", "RFC 9989 §4.10.1", func() Input {
		return msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=bogus"))
	}, summary{Result: ResultNone, Action: ActionAccept, Enforce: ActionAccept, Disposition: DispositionNone}},
	{"invalid p with rua acts as p=none", "RFC 9989 §4.10.1", func() Input {
		return msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=bogus; rua=mailto:d@example.com"))
	}, summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionNone, Disposition: DispositionNone}},
	{"p=none fail changes nothing", "RFC 9989 §5.4", func() Input {
		return msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=none"))
	}, summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionNone, Disposition: DispositionNone}},
	{"sp for an existing subdomain", "RFC 9989 §4.10.1", func() Input {
		d := mkDisc("sub.example.com", "example.com", "example.com", "v=DMARC1; p=reject; sp=quarantine; np=none")
		d.Existence = Exists
		return msg("sub.example.com", d)
	}, summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Tag: TagSP, Requested: DispositionQuarantine, Disposition: DispositionQuarantine}},
	{"np for a non-existent subdomain", "RFC 9989 §4.10.1, §3.2.13", func() Input {
		d := mkDisc("nosuch.example.com", "example.com", "example.com", "v=DMARC1; p=none; sp=none; np=reject")
		d.Existence = NonExistent
		return msg("nosuch.example.com", d)
	}, summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagNP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"p for a subdomain without sp or np", "RFC 9989 §4.10.1", func() Input {
		return msg("sub.example.com", mkDisc("sub.example.com", "example.com", "example.com", "v=DMARC1; p=quarantine"))
	}, summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Tag: TagP, Requested: DispositionQuarantine, Disposition: DispositionQuarantine}},
	{"p at the author even with sp", "RFC 9989 §4.10.1", func() Input {
		return msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=quarantine; sp=reject"))
	}, summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Tag: TagP, Requested: DispositionQuarantine, Disposition: DispositionQuarantine}},

	// t= and pct=.
	{"t=y lowers reject to quarantine", "RFC 9989 §4.7 t", func() Input {
		return msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject; t=y"))
	}, summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Tag: TagP, Requested: DispositionReject, Disposition: DispositionQuarantine, Overrides: []Reason{ReasonTestMode}}},
	{"t=y lowers quarantine to none", "RFC 9989 §4.7 t", func() Input {
		return msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=quarantine; t=y"))
	}, summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionQuarantine, Disposition: DispositionNone, Overrides: []Reason{ReasonTestMode}}},
	{"pct=50, draw 49: selected", "RFC 7489 §6.6.4 (IntN(100) < pct)", func() Input {
		in := msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject; pct=50"))
		in.Rand = &fixedRand{n: 49}
		return in
	}, summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"pct=50, draw 50: sampled out", "RFC 7489 §6.6.4 (the off-by-one)", func() Input {
		in := msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject; pct=50"))
		in.Rand = &fixedRand{n: 50}
		return in
	}, summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Tag: TagP, Requested: DispositionReject, Disposition: DispositionQuarantine, Overrides: []Reason{ReasonSampledOut}}},
	{"pct=0, draw 0: sampled out", "RFC 7489 §6.6.4", func() Input {
		in := msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=quarantine; pct=0"))
		in.Rand = &fixedRand{n: 0}
		return in
	}, summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionQuarantine, Disposition: DispositionNone, Overrides: []Reason{ReasonSampledOut}}},
	{"pct ignored by local policy", "RFC 9989 Appendix A.6 (pct historic)", func() Input {
		in := msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject; pct=0"))
		in.Rand = &fixedRand{n: 99}
		in.Local.IgnorePct = true
		return in
	}, summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},

	// Local policy.
	{"reject handled as quarantine", "RFC 9989 §7.4", rejectMsg(func(in *Input) { in.Local.OnReject = RejectQuarantine }),
		summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Tag: TagP, Requested: DispositionReject, Disposition: DispositionQuarantine, Overrides: []Reason{ReasonRejectAsQuarantine}}},
	{"reject-unless-indirect: list headers quarantine", "RFC 9989 §7.4", rejectMsg(func(in *Input) { in.MailingList = true }),
		summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Tag: TagP, Requested: DispositionReject, Disposition: DispositionQuarantine, Overrides: []Reason{ReasonListHeaders}}},
	{"reject mode ignores list headers", "RFC 9989 §7.4 (operator's choice)", rejectMsg(func(in *Input) { in.MailingList, in.Local.OnReject = true, RejectReject }),
		summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"trusted forwarder by CIDR, default handling: quarantine", "RFC 9989 §7.4", rejectMsg(func(in *Input) {
		in.Local.Forwarders.Networks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28")}
	}), summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Tag: TagP, Requested: DispositionReject, Disposition: DispositionQuarantine, Overrides: []Reason{ReasonTrustedForwarderNetwork}}},
	{"deliver: list headers deliver too", "RFC 9989 §7.4 (one setting for all evidence)", rejectMsg(func(in *Input) { in.MailingList, in.Local.Indirect = true, IndirectDeliver }),
		summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, Overrides: []Reason{ReasonListHeaders}}},
	{"trusted forwarder by CIDR", "RFC 9989 §5.4 (trusted_forwarder)", rejectMsg(func(in *Input) {
		in.Local.Forwarders.Networks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28")}
		in.Local.Indirect = IndirectDeliver
	}), summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, Overrides: []Reason{ReasonTrustedForwarderNetwork}}},
	{"trusted forwarder by DKIM d=", "RFC 9989 §5.4 (trusted_forwarder)", rejectMsg(func(in *Input) {
		in.Local.Forwarders.DKIMDomains = []string{"Lists.Example.ORG"}
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "lists.example.org")}
		in.Local.Indirect = IndirectDeliver
	}), summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, Overrides: []Reason{ReasonTrustedForwarderDKIM}}},
	{"forwarder d= must verify", "RFC 9989 §4.4.1", rejectMsg(func(in *Input) {
		in.Local.Forwarders.DKIMDomains = []string{"lists.example.org"}
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultFail, "lists.example.org")}
	}), summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"allowlisted From domain", "RFC 9989 §5.4 (local_policy)", rejectMsg(func(in *Input) { in.Local.AllowFrom = []string{"example.com"} }),
		summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, Overrides: []Reason{ReasonAllowFrom}}},
	{"monitor mode never rejects", "DESIGN monitor mode", rejectMsg(func(in *Input) { in.Local.Mode = ModeMonitor }),
		summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, Overrides: []Reason{ReasonMonitorMode}}},
	{"allowlisted client network never enforces", "DESIGN allowlist", rejectMsg(func(in *Input) {
		in.Local.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	}), summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, Overrides: []Reason{ReasonAllowNetwork}}},

	// Temporary errors.
	{"discovery temperror → tempfail", "RFC 9989 §5.3.6, §7.2", func() Input {
		d := mkDisc("example.com", "", "", "")
		d.Err = fmt.Errorf("%w: x", ErrTempFail)
		return msg("example.com", d)
	}, summary{Result: ResultTempError, Action: ActionTempFail, Enforce: ActionTempFail, Disposition: DispositionNone}},
	{"discovery temperror → accept when configured", "RFC 9989 §4.10.1 (receiver's discretion)", func() Input {
		d := mkDisc("example.com", "", "", "")
		d.Err = fmt.Errorf("%w: x", ErrTempFail)
		in := msg("example.com", d)
		in.Local.OnTempError = TempErrorAccept
		return in
	}, summary{Result: ResultTempError, Action: ActionAccept, Enforce: ActionAccept, Disposition: DispositionNone, Overrides: []Reason{ReasonTempErrorAccepted}}},
	{"missing discovery is temperror, not fail", "failure is never a forgery", func() Input {
		in := msg("example.com", nil)
		in.Discoveries = nil
		return in
	}, summary{Result: ResultTempError, Action: ActionTempFail, Enforce: ActionTempFail, Disposition: DispositionNone}},
	{"SPF temperror on an aligned domain → temperror", "RFC 9989 §5.3.6", rejectMsg(func(in *Input) {
		in.SPF = verify.SPFResult{Result: verify.ResultTempError, Scope: verify.ScopeMailFrom, Domain: "example.com"}
	}), summary{Result: ResultTempError, Action: ActionTempFail, Enforce: ActionTempFail, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone}},
	{"SPF temperror on an unaligned domain → fail", "RFC 9989 §5.3.5", rejectMsg(func(in *Input) {
		in.SPF = verify.SPFResult{Result: verify.ResultTempError, Scope: verify.ScopeMailFrom, Domain: "example.net"}
	}), summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"DKIM temperror on an aligned d= → temperror", "RFC 9989 §5.3.6", rejectMsg(func(in *Input) {
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultTempError, "example.com")}
	}), summary{Result: ResultTempError, Action: ActionTempFail, Enforce: ActionTempFail, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone}},
	{"temperror elsewhere does not hide a pass", "RFC 9989 §5.3.5", rejectMsg(func(in *Input) {
		in.SPF = verify.SPFResult{Result: verify.ResultTempError, Scope: verify.ScopeMailFrom, Domain: "example.com"}
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "example.com")}
	}), summary{Result: ResultPass, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, DKIM: []string{"example.com"}}},
	{"org domain not looked up → temperror", "wiring guard (Prepare)", rejectMsg(func(in *Input) { in.SPF = spfPass("bounce.example.com") }),
		summary{Result: ResultTempError, Action: ActionTempFail, Enforce: ActionTempFail, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone}},
	{"org walk failure → temperror", "RFC 9989 §5.3.6", rejectMsg(func(in *Input) {
		in.SPF = spfPass("bounce.example.com")
		in.OrgDomains = map[string]OrgResult{"bounce.example.com": {Err: ErrTempFail}}
	}), summary{Result: ResultTempError, Action: ActionTempFail, Enforce: ActionTempFail, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone}},
	{"temperror with p=none is accepted", "RFC 9989 §5.4", func() Input {
		in := msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=none"))
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultTempError, "example.com")}
		return in
	}, summary{Result: ResultTempError, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionNone, Disposition: DispositionNone}},

	// From: as a security boundary.
	{"missing From → permerror, reject", "RFC 9989 §5.3.1 (default never skips)", func() Input {
		in := msg("example.com", exampleReject)
		in.From = ParseFrom(nil)
		return in
	}, summary{Result: ResultPermError, Action: ActionReject, Enforce: ActionReject, Problem: FromMissing}},
	{"unparseable From → permerror, reject", "RFC 9989 §4.4 (malformed From)", func() Input {
		in := msg("example.com", exampleReject)
		in.From = ParseFrom([]string{"victim@example.com>"})
		return in
	}, summary{Result: ResultPermError, Action: ActionReject, Enforce: ActionReject, Problem: FromUnparseable}},
	{"empty group → permerror, reject", "RFC 6854", func() Input {
		in := msg("example.com", exampleReject)
		in.From = ParseFrom([]string{"undisclosed-recipients:;"})
		return in
	}, summary{Result: ResultPermError, Action: ActionReject, Enforce: ActionReject, Problem: FromNoMailbox}},
	{"unparseable From accepted when configured", "explicit opt-out", func() Input {
		in := msg("example.com", exampleReject)
		in.From = ParseFrom([]string{"<<<"})
		in.Local.From.Unparseable = FromAccept
		return in
	}, summary{Result: ResultPermError, Action: ActionAccept, Enforce: ActionAccept, Problem: FromUnparseable}},
	{"several domains: strictest applies (CVE-2019-16378)", "RFC 9989 §11.5, RFC 7489 §6.6.1", func() Input {
		in := msg("example.com", exampleReject)
		in.From = ParseFrom([]string{"a@evil.example, b@example.com"})
		in.Discoveries["evil.example"] = mkDisc("evil.example", "evil.example", "evil.example", "v=DMARC1; p=none")
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "evil.example")}
		return in
	}, summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Problem: FromMultipleDomains, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}},
	{"several domains rejected when configured", "RFC 9989 §11.5", func() Input {
		in := msg("example.com", exampleReject)
		in.From = ParseFrom([]string{"a@evil.example, b@example.com"})
		in.Local.From.MultipleDomains = FromReject
		return in
	}, summary{Result: ResultPermError, Action: ActionReject, Enforce: ActionReject, Problem: FromMultipleDomains}},
	{"several From fields of one domain: evaluated", "RFC 5322 §3.6", func() Input {
		in := msg("example.com", exampleReject)
		in.From = ParseFrom([]string{"a@example.com", "b@example.com"})
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "example.com")}
		return in
	}, summary{Result: ResultPass, Action: ActionAccept, Enforce: ActionAccept, Problem: FromMultipleFields, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, DKIM: []string{"example.com"}}},
	{"several From fields quarantined when configured", "RFC 5322 §3.6", func() Input {
		in := msg("example.com", exampleReject)
		in.From = ParseFrom([]string{"a@example.com", "b@example.com"})
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "example.com")}
		in.Local.From.MultipleFields = FromQuarantine
		return in
	}, summary{Result: ResultPass, Action: ActionQuarantine, Enforce: ActionQuarantine, Problem: FromMultipleFields, Tag: TagP, Requested: DispositionReject, Disposition: DispositionQuarantine, Overrides: []Reason{ReasonFromQuarantine}, DKIM: []string{"example.com"}}},
	{"too many domains → reject", "RFC 9989 §11.5 (limit)", func() Input {
		in := msg("example.com", exampleReject)
		in.From = ParseFrom([]string{"a@a.example, b@b.example, c@c.example"})
		in.Local.From.MaxDomains = 2
		return in
	}, summary{Result: ResultPermError, Action: ActionReject, Enforce: ActionReject, Problem: FromTooManyDomains}},
	{"temperror of one domain, pass of the other: tempfail", "RFC 9989 §11.5 (strictest)", func() Input {
		in := msg("example.com", exampleReject)
		in.From = ParseFrom([]string{"a@example.com, b@slow.example"})
		d := mkDisc("slow.example", "", "", "")
		d.Err = ErrTempFail
		in.Discoveries["slow.example"] = d
		in.DKIM = []verify.DKIMResult{dkim(verify.ResultPass, "example.com")}
		return in
	}, summary{Result: ResultTempError, Action: ActionTempFail, Enforce: ActionTempFail, Problem: FromMultipleDomains, Disposition: DispositionNone}},
}

func TestEvaluate(t *testing.T) {
	for _, c := range evalCases {
		t.Run(c.name, func(t *testing.T) {
			v := Evaluate(c.in())
			if diff := cmp.Diff(c.want, summarize(v)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", c.rule, diff)
			}
		})
	}
}

func TestEvaluatePctNoDrawAt100(t *testing.T) {
	r := &fixedRand{n: 99}
	in := msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject; pct=100"))
	in.Rand = r
	if v := Evaluate(in); v.Action != ActionReject || r.draws != 0 {
		t.Errorf("pct=100: action %s after %d draws, want reject without drawing", v.Action, r.draws)
	}
}

// TestEvaluatePctRate checks with a real random source that pct=30 enforces
// about 30% of failing messages.
func TestEvaluatePctRate(t *testing.T) {
	in := msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject; pct=30"))
	n, rejects := 4000, 0
	for range n {
		if Evaluate(in).Action == ActionReject {
			rejects++
		}
	}
	if rate := float64(rejects) / float64(n); rate < 0.26 || rate > 0.34 {
		t.Errorf("pct=30 rejected %.3f of messages", rate)
	}
}

func TestEvaluateDecisiveAndErr(t *testing.T) {
	in := msg("example.com", exampleReject)
	in.From = ParseFrom([]string{"a@ok.example, b@example.com"})
	in.Discoveries["ok.example"] = mkDisc("ok.example", "", "ok.example", "")
	v := Evaluate(in)
	if v.Decisive != 1 || v.Domains[1].HeaderFrom != "example.com" || v.Result != ResultFail {
		t.Errorf("Decisive = %d, result %s; want 1 (example.com), fail", v.Decisive, v.Result)
	}
	in.From = ParseFrom([]string{"<<<"})
	if v := Evaluate(in); !errors.Is(v.Err, ErrFromSyntax) || v.Decisive != -1 {
		t.Errorf("unparseable From: Err %v, Decisive %d", v.Err, v.Decisive)
	}
}
