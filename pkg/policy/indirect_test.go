package policy

import (
	"strings"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/pkg/authres"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// arcSet is one ARC set sealed by sealer, whose AAR (authserv-id id) holds
// the results written in A-R syntax ("dmarc=pass header.from=example.com;
// spf=none").
func arcSet(t *testing.T, sealer, id, results string) verify.ARCSet {
	t.Helper()
	s := verify.ARCSet{CV: verify.ChainPass, SealDomain: sealer, SealSelector: "arc", AMSDomain: sealer, AMSSelector: "arc"}
	s.AuthservID, s.Results, s.AARErr = authres.Parse(id + "; " + results)
	if s.AARErr != nil {
		t.Fatalf("AAR %q: %v", results, s.AARErr)
	}
	return s
}

// chain is a passing chain of the sets given, oldest first.
func chain(sets ...verify.ARCSet) verify.ARCResult {
	r := verify.ARCResult{CV: verify.ChainPass}
	for i := range sets {
		sets[i].Instance = i + 1
		if i == 0 {
			sets[i].CV = verify.ChainNone
		}
		r.Sets = append(r.Sets, sets[i])
		r.Sealers = append(r.Sealers, sets[i].SealDomain)
	}
	return r
}

// TestTrustedARCSealer is the ARC override rule (RFC 8617 §7.2.1): a DMARC
// failure under p=reject or p=quarantine is overridden only when the chain
// passed, the newest sealers form an unbroken run of trusted sealers, and
// the AAR of the oldest set of that run, written by a trusted
// authserv-id, vouches for the Author Domain (example.com).
func TestTrustedARCSealer(t *testing.T) {
	const list, fwd, evil = "lists.example.org", "fwd.example.net", "evil.example"
	pass := func(t *testing.T) verify.ARCSet {
		return arcSet(t, list, "mx."+list, "arc=none; dkim=pass header.d=example.com; dmarc=pass header.from=example.com")
	}
	type tc struct {
		name     string
		disc     string // the DMARC record of example.com
		local    LocalPolicy
		arc      func(t *testing.T) verify.ARCResult
		orgs     map[string]OrgResult
		want     summary
		sealerIn string // the override's comment names this sealer
	}
	trusted := TrustedForwarders{ARCSealers: []string{"Lists.Example.ORG."}}
	deliver := LocalPolicy{Forwarders: trusted, Indirect: IndirectDeliver}
	failReject := summary{Result: ResultFail, Action: ActionReject, Enforce: ActionReject, Tag: TagP, Requested: DispositionReject, Disposition: DispositionReject}
	overridden := summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, Overrides: []Reason{ReasonTrustedARCSealer}}
	cases := []tc{
		{name: "trusted sealer, AAR dmarc=pass: delivered", local: deliver,
			arc: func(t *testing.T) verify.ARCResult { return chain(pass(t)) }, want: overridden, sealerIn: list},
		{name: "default handling: reject becomes quarantine", local: LocalPolicy{Forwarders: trusted},
			arc:  func(t *testing.T) verify.ARCResult { return chain(pass(t)) },
			want: summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Tag: TagP, Requested: DispositionReject, Disposition: DispositionQuarantine, Overrides: []Reason{ReasonTrustedARCSealer}}, sealerIn: list},
		{name: "default handling: p=quarantine stays quarantine", disc: "v=DMARC1; p=quarantine", local: LocalPolicy{Forwarders: trusted},
			arc:  func(t *testing.T) verify.ARCResult { return chain(pass(t)) },
			want: summary{Result: ResultFail, Action: ActionQuarantine, Enforce: ActionQuarantine, Tag: TagP, Requested: DispositionQuarantine, Disposition: DispositionQuarantine}},
		{name: "deliver: p=quarantine delivered", disc: "v=DMARC1; p=quarantine", local: deliver,
			arc:  func(t *testing.T) verify.ARCResult { return chain(pass(t)) },
			want: summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionQuarantine, Disposition: DispositionNone, Overrides: []Reason{ReasonTrustedARCSealer}}, sealerIn: list},
		{name: "p=none unaffected", disc: "v=DMARC1; p=none", local: deliver,
			arc:  func(t *testing.T) verify.ARCResult { return chain(pass(t)) },
			want: summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionNone, Disposition: DispositionNone}},
		{name: "no trusted sealer configured: ARC changes nothing", local: LocalPolicy{Indirect: IndirectDeliver},
			arc: func(t *testing.T) verify.ARCResult { return chain(pass(t)) }, want: failReject},
		{name: "chain failed", local: deliver, arc: func(t *testing.T) verify.ARCResult {
			r := chain(pass(t))
			r.CV, r.Failure = verify.ChainFail, verify.ARCFailAMS
			return r
		}, want: failReject},
		{name: "no chain", local: deliver, arc: func(t *testing.T) verify.ARCResult { return verify.ARCResult{CV: verify.ChainNone} }, want: failReject},
		{name: "trusted run of two: the older trusted set's AAR is read", local: LocalPolicy{Forwarders: TrustedForwarders{ARCSealers: []string{list, fwd}}, Indirect: IndirectDeliver},
			arc: func(t *testing.T) verify.ARCResult {
				return chain(pass(t), arcSet(t, fwd, fwd, "arc=pass; dmarc=fail header.from=example.com"))
			}, want: overridden, sealerIn: list},
		{name: "trusted run above an untrusted set: the run's oldest AAR is read", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, evil, evil, "dmarc=fail header.from=example.com"), pass(t))
			}, want: overridden, sealerIn: list},
		{name: "broken run: a trusted pass below an untrusted set is not believed", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(pass(t), arcSet(t, evil, evil, "arc=pass; dmarc=pass header.from=example.com"),
					arcSet(t, list, list, "arc=pass; spf=pass smtp.mailfrom=bounce@evil.example"))
			}, want: failReject},
		{name: "untrusted newest sealer", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(pass(t), arcSet(t, evil, evil, "arc=pass; dmarc=pass header.from=example.com"))
			}, want: failReject},
		{name: "sealers match exactly, not by parent domain", local: LocalPolicy{Forwarders: TrustedForwarders{ARCSealers: []string{"example.org"}}, Indirect: IndirectDeliver},
			arc: func(t *testing.T) verify.ARCResult { return chain(pass(t)) }, want: failReject},
		{name: "AAR dmarc=fail", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, list, "dmarc=fail header.from=example.com"))
			}, want: failReject},
		{name: "AAR dmarc=fail beside an aligned DKIM pass: the sealer's DMARC verdict stands", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, list, "dkim=pass header.d=example.com; dmarc=fail header.from=example.com"))
			}, want: failReject},
		{name: "AAR from an untrusted authserv-id", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, "mx.evil.example", "dmarc=pass header.from=example.com"))
			}, want: failReject},
		{name: "AAR authserv-id only ends like a trusted sealer", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, "evil-lists.example.org", "dmarc=pass header.from=example.com"))
			}, want: failReject},
		{name: "AAR header.from is another domain", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, list, "dmarc=pass header.from=example.net"))
			}, want: failReject},
		{name: "AAR dmarc=pass without header.from", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, list, "dmarc=pass"))
			}, want: failReject},
		{name: "AAR that did not parse", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				r := chain(pass(t))
				r.Sets[0].AARErr = authres.ErrSyntax
				return r
			}, want: failReject},
		{name: "AAR without dmarc: aligned DKIM pass (strict identity)", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, list, "dkim=pass header.d=EXAMPLE.com header.s=s1"))
			}, want: overridden, sealerIn: list},
		{name: "AAR without dmarc: aligned SPF pass", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, list, "spf=pass smtp.mailfrom=bounce@example.com"))
			}, want: overridden, sealerIn: list},
		{name: "AAR without dmarc: DKIM pass of another domain", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, list, "dkim=pass header.d=evil.example; spf=fail smtp.mailfrom=example.com"))
			}, want: failReject},
		{name: "AAR without dmarc: relaxed DKIM pass of a subdomain, Organizational Domain known", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, list, "dkim=pass header.d=news.example.com"))
			}, orgs: map[string]OrgResult{"news.example.com": {Domain: "example.com"}}, want: overridden, sealerIn: list},
		{name: "AAR without dmarc: relaxed DKIM pass of a subdomain, Organizational Domain not looked up", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, list, "dkim=pass header.d=news.example.com"))
			}, want: failReject},
		{name: "AAR without dmarc: strict DKIM alignment refuses a subdomain", disc: "v=DMARC1; p=reject; adkim=s", local: deliver,
			arc: func(t *testing.T) verify.ARCResult {
				return chain(arcSet(t, list, list, "dkim=pass header.d=news.example.com"))
			}, orgs: map[string]OrgResult{"news.example.com": {Domain: "example.com"}}, want: failReject},
		{name: "reject_policy reject: trusted ARC still counts", local: LocalPolicy{Forwarders: trusted, Indirect: IndirectDeliver, OnReject: RejectReject},
			arc: func(t *testing.T) verify.ARCResult { return chain(pass(t)) }, want: overridden, sealerIn: list},
		{name: "allowlist comes first", local: LocalPolicy{Forwarders: trusted, Indirect: IndirectDeliver, AllowFrom: []string{"example.com"}},
			arc:  func(t *testing.T) verify.ARCResult { return chain(pass(t)) },
			want: summary{Result: ResultFail, Action: ActionAccept, Enforce: ActionAccept, Tag: TagP, Requested: DispositionReject, Disposition: DispositionNone, Overrides: []Reason{ReasonAllowFrom}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := c.disc
			if rec == "" {
				rec = "v=DMARC1; p=reject"
			}
			in := msg("example.com", mkDisc("example.com", "example.com", "example.com", rec))
			in.SPF = verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeMailFrom, Domain: "lists.example.org"}
			in.DKIM = []verify.DKIMResult{dkim(verify.ResultFail, "example.com"), dkim(verify.ResultPass, list)}
			arc := c.arc(t)
			in.Local, in.ARC, in.OrgDomains = c.local, &arc, c.orgs
			v := Evaluate(in)
			if diff := cmp.Diff(c.want, summarize(v)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if v.ARC != in.ARC {
				t.Errorf("verdict ARC %p, input %p", v.ARC, in.ARC)
			}
			if c.sealerIn == "" {
				return
			}
			o := v.Domains[0].Overrides[0]
			if o.Type() != OverrideTrustedForwarder {
				t.Errorf("override type %s, want %s", o.Type(), OverrideTrustedForwarder)
			}
			if !strings.Contains(o.Comment, "trusted ARC sealer "+c.sealerIn+" ") || !strings.Contains(o.Comment, "arc=pass") {
				t.Errorf("comment %q does not name sealer %s and arc=pass", o.Comment, c.sealerIn)
			}
			// The report row carries it as RFC 9990's trusted_forwarder.
			if rows := v.ReportRows(); len(rows) != 1 || len(rows[0].Reasons) != 1 || rows[0].Reasons[0] != o || rows[0].Reasons[0].Type() != OverrideTrustedForwarder {
				t.Errorf("report rows %+v", rows)
			}
		})
	}
}

// TestTrustedARCMultipleAuthors: the AAR vouches per Author Domain; a
// message with two, only one of which the sealer saw pass, is still
// rejected for the other.
func TestTrustedARCMultipleAuthors(t *testing.T) {
	in := msg("example.com", mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject"))
	in.From = ParseFrom([]string{"a@example.com, b@example.net"})
	in.Discoveries["example.net"] = mkDisc("example.net", "example.net", "example.net", "v=DMARC1; p=reject")
	in.Local = LocalPolicy{Forwarders: TrustedForwarders{ARCSealers: []string{"lists.example.org"}}, Indirect: IndirectDeliver}
	arc := chain(arcSet(t, "lists.example.org", "lists.example.org", "dmarc=pass header.from=example.com"))
	in.ARC = &arc
	v := Evaluate(in)
	if v.Action != ActionReject {
		t.Fatalf("action %s, want reject", v.Action)
	}
	got := []Action{v.Domains[0].Action, v.Domains[1].Action}
	if diff := cmp.Diff([]Action{ActionAccept, ActionReject}, got); diff != "" {
		t.Errorf("per domain (-want +got):\n%s", diff)
	}
}

// TestARCLookupsNeeded: relaxed alignment of the believed AAR's identifiers
// asks Prepare for their Organizational Domains, and only with trusted
// sealers and a passing chain.
func TestARCLookupsNeeded(t *testing.T) {
	disc := mkDisc("example.com", "example.com", "example.com", "v=DMARC1; p=reject")
	in := msg("example.com", disc)
	arc := chain(arcSet(t, "lists.example.org", "lists.example.org", "dkim=pass header.i=@news.example.com; spf=pass smtp.mailfrom=b@bounce.example.com; dkim=fail header.d=x.example.com"))
	in.ARC = &arc
	if got := orgLookupsNeeded(&in, disc); len(got) != 0 {
		t.Errorf("without trusted sealers: %q, want none", got)
	}
	in.Local.Forwarders.ARCSealers = []string{"lists.example.org"}
	want := []string{"bounce.example.com", "news.example.com"}
	got := orgLookupsNeeded(&in, disc)
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	in.ARC.CV = verify.ChainFail
	if got := orgLookupsNeeded(&in, disc); len(got) != 0 {
		t.Errorf("failed chain: %q, want none", got)
	}
}

// TestTrustedARCSet: which set's assessment is read, or why none is.
func TestTrustedARCSet(t *testing.T) {
	const list, evil = "lists.example.org", "evil.example"
	lp := LocalPolicy{Forwarders: TrustedForwarders{ARCSealers: []string{list}}}.WithDefaults()
	ok := arcSet(t, list, list, "dmarc=pass header.from=example.com")
	cases := []struct {
		name   string
		lp     LocalPolicy
		arc    verify.ARCResult
		set    int // instance read; 0: none
		why    string
		nilARC bool
	}{
		{"read", lp, chain(arcSet(t, evil, evil, "dmarc=none"), ok), 2, "", false},
		{"none configured", LocalPolicy{}, chain(ok), 0, "no trusted ARC sealer configured", false},
		{"failed chain", lp, verify.ARCResult{CV: verify.ChainFail}, 0, "the chain did not pass", false},
		{"no chain", lp, verify.ARCResult{}, 0, "the message has no ARC chain", true},
		{"untrusted newest", lp, chain(ok, arcSet(t, evil, evil, "dmarc=none")), 0, "the newest sealer, evil.example, is not trusted", false},
		{"untrusted authserv-id", lp, chain(arcSet(t, list, "mx.evil.example", "dmarc=none")), 0, "the assessment of i=1 has the untrusted authserv-id mx.evil.example", false},
	}
	for _, c := range cases {
		set, why := c.lp.TrustedARCSet(&c.arc)
		if c.nilARC {
			set, why = c.lp.TrustedARCSet(nil)
		}
		got := 0
		if set != nil {
			got = set.Instance
		}
		if got != c.set || why != c.why {
			t.Errorf("%s: i=%d %q, want i=%d %q", c.name, got, why, c.set, c.why)
		}
	}
}
