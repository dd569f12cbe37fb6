package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// Errors that Evaluate records in DomainVerdict.Err.
var (
	// ErrNotDiscovered: Input.Discoveries has no entry for an Author Domain
	// (a wiring mistake; see Prepare).
	ErrNotDiscovered = errors.New("policy: no discovery for the Author Domain")
	// ErrOrgDomainMissing: relaxed alignment needed an identifier's
	// Organizational Domain that Input.OrgDomains does not hold.
	ErrOrgDomainMissing = errors.New("policy: Organizational Domain of an identifier not looked up")
)

// Rand is the randomness of pct= sampling; *rand.Rand of math/rand/v2
// satisfies it. Tests inject a fixed one.
type Rand interface {
	IntN(n int) int
}

type globalRand struct{}

func (globalRand) IntN(n int) int { return rand.IntN(n) }

// OrgResult is the Organizational Domain of an authenticated identifier,
// or the error that prevented finding it.
type OrgResult struct {
	Domain string
	Err    error
}

// Input is everything Evaluate needs about one message. The milter fills
// the message facts; Discover (or Prepare) fills Discoveries and
// OrgDomains.
type Input struct {
	// SourceIP is the SMTP client's address.
	SourceIP netip.Addr
	// HELO is the HELO/EHLO name.
	HELO string
	// MailFrom is the RFC5321.MailFrom address without angle brackets; ""
	// for the null reverse-path.
	MailFrom string
	// RcptTo are the envelope recipients.
	RcptTo []string
	// From is ParseFrom of all the From field values.
	From Author
	// MailingList is set when the message has list headers: List-Id (RFC
	// 2919) or List-Post
	// (RFC 2369). It is a sign
	// of an indirect flow.
	MailingList bool
	// SPF is the SPF result of the MAIL FROM identity (for the null
	// reverse-path: postmaster@HELO, RFC 7208 §2.4).
	SPF verify.SPFResult
	// DKIM are the results of every DKIM-Signature verified.
	DKIM []verify.DKIMResult
	// ARC is the validation of the message's ARC chain; nil when the
	// message has no ARC field (cv none), so that such a message carries
	// nothing. It matters only with trusted ARC sealers
	// (LocalPolicy.Forwarders.ARCSealers).
	ARC *verify.ARCResult
	// Discoveries holds the Discover result of each Author Domain.
	Discoveries map[string]*Discovery
	// OrgDomains holds the tree-walk Organizational Domains of the SPF and
	// DKIM identifiers that relaxed alignment needs (see Prepare).
	OrgDomains map[string]OrgResult
	// Local is the receiver's local policy.
	Local LocalPolicy
	// Rand samples pct=; nil means math/rand/v2.
	Rand Rand
}

// Evaluate applies DMARC (RFC 9989 §5.3, RFC 7489 §6.6) and the local policy
// to one message. It is pure: all DNS answers come in through in.
func Evaluate(in Input) Verdict {
	lp := in.Local.WithDefaults()
	v := Verdict{
		Decisive:     -1,
		SourceIP:     in.SourceIP,
		EnvelopeFrom: mailFromDomain(in.MailFrom),
		EnvelopeTo:   recipientDomains(in.RcptTo),
		SPF:          in.SPF,
		DKIM:         in.DKIM,
		ARC:          in.ARC,
	}
	problem, outcome, domains := fromScope(in.From, lp.From)
	v.FromProblem = problem
	if len(domains) == 0 {
		v.Result, v.Err = ResultPermError, in.From.Err
		v.EnforceAction = outcomeAction(outcome)
	} else {
		evaluateDomains(&in, &lp, &v, domains)
	}
	if outcome == FromQuarantine && len(domains) > 0 {
		raiseToQuarantine(&v, problem)
	}
	v.Action = v.EnforceAction
	for i := range v.Domains {
		dv := &v.Domains[i]
		dv.EnforceDisposition, dv.EnforceAction = dv.Disposition, dv.Action
	}
	exemptIfLocal(&v, &lp)
	return v
}

// exemptIfLocal delivers an evaluated message without enforcing its
// verdict when the client is in an allowlisted network or the receiver
// runs in monitor mode.
func exemptIfLocal(v *Verdict, lp *LocalPolicy) {
	v.AllowNetwork, _ = lp.allowedNetwork(v.SourceIP)
	switch {
	case v.AllowNetwork.IsValid():
		exempt(v, ReasonAllowNetwork, "client in "+v.AllowNetwork.String())
	case lp.Mode == ModeMonitor:
		exempt(v, ReasonMonitorMode, "monitor mode")
	}
}

// raiseToQuarantine applies the quarantine outcome of an irregular From on
// top of the evaluation: the message and each domain evaluated are at
// least quarantined, with the From condition as a local_policy override.
func raiseToQuarantine(v *Verdict, problem FromProblem) {
	if rank(v.EnforceAction) < rank(ActionQuarantine) {
		v.EnforceAction, v.Decisive = ActionQuarantine, -1
	}
	for i := range v.Domains {
		dv := &v.Domains[i]
		if rank(dv.Action) < rank(ActionQuarantine) {
			dv.Disposition, dv.Action = DispositionQuarantine, ActionQuarantine
			dv.Overrides = append(dv.Overrides, Override{Reason: ReasonFromQuarantine, Comment: "From: " + string(problem)})
		}
	}
}

// exempt delivers a message that was evaluated but must not be enforced
// (monitor mode, an allowlisted client network): every domain whose action
// was not accept gets the override, and the applied disposition is none.
func exempt(v *Verdict, r Reason, comment string) {
	v.Exemption, v.Action = r, ActionAccept
	for i := range v.Domains {
		dv := &v.Domains[i]
		if dv.Action == ActionAccept {
			continue
		}
		dv.Overrides = append(dv.Overrides, Override{Reason: r, Comment: comment})
		dv.Disposition, dv.Action = DispositionNone, ActionAccept
	}
}

// fromOutcome finds the irregular From conditions of a and picks the
// strictest configured outcome among them (FromEvaluate for a regular
// From).
func fromOutcome(a Author, fp FromPolicy) (FromProblem, FromOutcome) {
	switch a.Problem {
	case FromMissing:
		return a.Problem, fp.Missing
	case FromNoMailbox:
		return a.Problem, fp.NoMailbox
	case FromUnparseable:
		return a.Problem, fp.Unparseable
	}
	problem, outcome := FromOK, FromEvaluate
	consider := func(p FromProblem, o FromOutcome) {
		if problem == FromOK || outcomeRank(o) > outcomeRank(outcome) {
			problem, outcome = p, o
		}
	}
	if a.Fields > 1 {
		consider(FromMultipleFields, fp.MultipleFields)
	}
	if len(a.Domains) > fp.MaxDomains {
		consider(FromTooManyDomains, fp.TooManyDomains) // RFC 9989 §11.5: limit the number of Author Domains processed
	} else if len(a.Domains) > 1 {
		consider(FromMultipleDomains, fp.MultipleDomains) // RFC 9989 §5.3.1: the receiver MAY go forward with DMARC anyway
	}
	return problem, outcome
}

// fromScope is fromOutcome plus the Author Domains DMARC is applied to:
// none when the outcome skips evaluation (reject, accept), else the first
// MaxDomains of them. With more Author Domains than that, the ones beyond
// the limit are not looked up (Prepare, and the milter's early discovery,
// stop there) and so must not be evaluated either: they would count as
// temperror and a tempfail would outrank the configured outcome.
func fromScope(a Author, fp FromPolicy) (FromProblem, FromOutcome, []string) {
	problem, outcome := fromOutcome(a, fp)
	if outcome != FromEvaluate && outcome != FromQuarantine {
		return problem, outcome, nil
	}
	return problem, outcome, a.Domains[:min(len(a.Domains), fp.MaxDomains)] // RFC 9989 §11.5: bounded work per message
}

// outcomeAction maps a From outcome that skips evaluation to an action;
// anything but an explicit accept or quarantine rejects.
func outcomeAction(o FromOutcome) Action {
	switch o {
	case FromAccept:
		return ActionAccept
	case FromQuarantine:
		return ActionQuarantine
	}
	return ActionReject
}

// evaluateDomains applies DMARC to each Author Domain and keeps the
// strictest action: RFC 7489 §6.6.1 and RFC 9989 §11.5, "apply the DMARC
// mechanism to each domain found in the RFC5322.From field as the Author
// Domain and apply the most strict policy selected among the checks that
// fail".
func evaluateDomains(in *Input, lp *LocalPolicy, v *Verdict, domains []string) {
	v.EnforceAction = ActionAccept
	for i, d := range domains {
		dv := evaluateDomain(in, lp, d)
		if dv.Result == ResultTempError {
			dv.TempErrorCause = TempErrorCauseOf(dv.Err)
		}
		v.Domains = append(v.Domains, dv)
		if i == 0 || resultRank(dv.Result) > resultRank(v.Result) {
			v.Result = dv.Result
		}
		if rank(dv.Action) > rank(v.EnforceAction) {
			v.EnforceAction, v.Decisive = dv.Action, i
		}
	}
}

func rank(a Action) int {
	switch a {
	case ActionQuarantine:
		return 1
	case ActionTempFail:
		return 2
	case ActionReject:
		return 3
	}
	return 0
}

// resultRank orders results so that the weakest authentication wins when
// several Author Domains are combined.
func resultRank(r Result) int {
	switch r {
	case ResultNone:
		return 1
	case ResultTempError:
		return 2
	case ResultFail:
		return 3
	case ResultPermError:
		return 4
	}
	return 0 // pass
}

// evaluateDomain is RFC 9989 §5.3.2-§5.3.6 for one Author Domain.
func evaluateDomain(in *Input, lp *LocalPolicy, author string) DomainVerdict {
	dv := DomainVerdict{HeaderFrom: author, Result: ResultNone, Action: ActionAccept, Disposition: DispositionNone}
	disc := in.Discoveries[author]
	if disc == nil {
		dv.Result, dv.Err = ResultTempError, ErrNotDiscovered
		dv.Action = tempErrorAction(lp, author, &dv)
		return dv
	}
	dv.Method, dv.PolicyDomain, dv.OrgDomain, dv.Record, dv.Existence = disc.Method, disc.PolicyDomain, disc.OrgDomain, disc.Record, disc.Existence
	if errors.Is(disc.Err, ErrBadDomain) {
		dv.Result, dv.Err, dv.Action = ResultPermError, disc.Err, outcomeAction(lp.From.Unparseable) // not a domain name: an unparseable From
		return dv
	}
	if disc.Err != nil {
		dv.Result, dv.Err = ResultTempError, disc.Err // RFC 9989 §5.3.6: a DNS error → neither pass nor fail
		dv.Action = tempErrorAction(lp, author, &dv)
		return dv
	}
	if disc.Record == nil {
		return dv // RFC 9989 §5.3.2: no DMARC Policy Record → the DMARC mechanism does not apply
	}
	if applies, _ := disc.Record.Applicable(); !applies {
		dv.Err = errors.New("policy: record has an invalid p, sp or np and no valid rua")
		return dv // RFC 9989 §4.10.1: otherwise, the Mail Receiver applies no DMARC processing
	}
	dv.PolicyTag, dv.Requested = applicablePolicy(disc)
	alignAll(in, disc, &dv)
	switch dv.Result {
	case ResultPass:
		return dv // a pass is a pass, whatever the existence test said
	case ResultTempError:
		dv.Action = tempErrorAction(lp, author, &dv)
		return dv
	}
	if existenceMatters(disc) {
		// RFC 9989 §5.3.6: a DNS error → neither pass nor fail, here only
		// because np= and sp/p disagree and existence decides between them.
		dv.Result, dv.Err = ResultTempError, disc.ExistErr
		dv.PolicyTag, dv.Requested = "", DispositionUnset // not known which applies
		dv.Action = tempErrorAction(lp, author, &dv)
		return dv
	}
	applyPolicy(in, lp, disc, &dv)
	return dv
}

// existenceMatters reports whether the failed np= existence test leaves the
// applicable policy open: RFC 9989 §4.10.1 takes np for a non-existent
// Author Domain and sp (else p) for an existing one, so when both give the
// same disposition the answer does not matter and sp/p applies.
func existenceMatters(d *Discovery) bool {
	if d.ExistErr == nil || d.PolicyDomain == d.Domain {
		return false
	}
	return d.Record.NonExistentPolicy() != d.Record.SubdomainPolicy() // RFC 9989 §4.7 np: absent → sp, else p
}

// applicablePolicy is RFC 9989 §4.10.1: p for a record at the Author
// Domain; for a record at its Organizational or Public Suffix Domain, sp if
// the Author Domain exists, np if it does not, p in their absence.
func applicablePolicy(d *Discovery) (Tag, Disposition) {
	r := d.Record
	switch {
	case d.PolicyDomain == d.Domain:
		return TagP, r.Policy() // RFC 9989 §4.10.1: the policy is taken from the "p" tag
	case d.Existence == NonExistent && r.NP != DispositionUnset:
		return TagNP, r.NonExistentPolicy() // RFC 9989 §4.10.1: "np" if the Author Domain does not exist
	case r.SP != DispositionUnset:
		return TagSP, r.SubdomainPolicy() // RFC 9989 §4.10.1: "sp" if the Author Domain exists
	}
	return TagP, r.Policy() // RFC 9989 §4.10.1: in the absence of applicable sp or np, the p tag policy is used
}

// tempErrorAction decides a temperror: accepted when the policy is known
// to be none or the domain is allowlisted, else the configured handling.
func tempErrorAction(lp *LocalPolicy, author string, dv *DomainVerdict) Action {
	if dv.Record != nil && dv.Requested == DispositionNone && dv.PolicyTag != "" {
		return ActionAccept // RFC 9989 §5.4: p=none MUST NOT modify existing mail handling
	}
	if a, ok := lp.allowlisted(author); ok {
		dv.Overrides = append(dv.Overrides, Override{Reason: ReasonAllowFrom, Comment: "allowlisted From domain " + a})
		return ActionAccept
	}
	if lp.OnTempError == TempErrorAccept {
		dv.Overrides = append(dv.Overrides, Override{Reason: ReasonTempErrorAccepted, Comment: "temperror accepted"})
		return ActionAccept
	}
	return ActionTempFail // RFC 9989 §7.2: defer with a 4xy reply when DMARC policy cannot be retrieved or applied
}

// applyPolicy turns a DMARC fail into a disposition and action: the
// published policy, lowered by t=y or pct= sampling, then the local policy.
func applyPolicy(in *Input, lp *LocalPolicy, disc *Discovery, dv *DomainVerdict) {
	disp := dv.Requested
	if disp == DispositionNone {
		dv.Action = ActionAccept // RFC 9989 §5.4: p=none MUST NOT modify existing mail handling processes
		return
	}
	rec := dv.Record
	switch {
	case rec.Testing:
		disp = lower(disp) // RFC 9989 §4.7 t=y: the policy applied is one level below the specified policy
		dv.Overrides = append(dv.Overrides, Override{Reason: ReasonTestMode, Comment: "t=y"})
	case rec.Percent() < 100 && !lp.IgnorePct:
		if !sampled(in.Rand, rec.Percent()) {
			disp = lower(disp) // RFC 7489 §6.6.4: not selected → reject acts as quarantine, quarantine as none
			dv.Overrides = append(dv.Overrides, Override{Reason: ReasonSampledOut, Comment: "pct=" + strconv.Itoa(rec.Percent())})
		}
	}
	disp = localOverrides(in, lp, disc, dv, disp)
	dv.Disposition = disp
	dv.Action = dispositionAction(disp)
}

// sampled reports whether the message is among the pct percent the policy
// applies to: IntN(100) is uniform in [0, 100), so "< pct" selects exactly
// pct values (pct=0 never, pct=100 always).
func sampled(r Rand, pct int) bool {
	if r == nil {
		r = globalRand{}
	}
	return r.IntN(100) < pct // RFC 7489 §6.6.4: MUST NOT enact the policy on more than the stated percent
}

// localOverrides applies the receiver's own policy to a failing message
// (RFC 9989 §5.4: final handling is a matter of local policy; deviations
// SHOULD be reported as PolicyOverride): the allowlist, then evidence of
// an indirect flow, handled as lp.Indirect says, then the reject handling.
func localOverrides(in *Input, lp *LocalPolicy, disc *Discovery, dv *DomainVerdict, disp Disposition) Disposition {
	if disp == DispositionNone {
		return disp
	}
	if a, ok := lp.allowlisted(dv.HeaderFrom); ok {
		dv.Overrides = append(dv.Overrides, Override{Reason: ReasonAllowFrom, Comment: "allowlisted From domain " + a})
		return DispositionNone
	}
	if o, ok := lp.indirectEvidence(in, disc, disp); ok {
		switch {
		case lp.Indirect == IndirectDeliver:
			dv.Overrides = append(dv.Overrides, o)
			return DispositionNone
		case disp == DispositionReject:
			// RFC 9989 §7.4: MUST NOT reject solely on the basis of p=reject
			dv.Overrides = append(dv.Overrides, o)
			return DispositionQuarantine
		}
		return disp // quarantined as requested: the evidence changes nothing
	}
	if disp == DispositionReject && lp.OnReject == RejectQuarantine {
		// RFC 9989 §7.4: in the absence of other knowledge, MUST treat such failing mail as p=quarantine
		dv.Overrides = append(dv.Overrides, Override{Reason: ReasonRejectAsQuarantine, Comment: "p=reject handled as quarantine"})
		return DispositionQuarantine
	}
	return disp
}

func lower(d Disposition) Disposition {
	if d == DispositionReject {
		return DispositionQuarantine
	}
	return DispositionNone
}

func dispositionAction(d Disposition) Action {
	switch d {
	case DispositionReject:
		return ActionReject
	case DispositionQuarantine:
		return ActionQuarantine
	}
	return ActionAccept
}

// alignAll decides the DMARC result from the authenticated identifiers
// (RFC 9989 §5.3.4-§5.3.5): pass if any aligns; temperror if none aligns
// but one whose check did not complete could have; fail otherwise.
func alignAll(in *Input, d *Discovery, dv *DomainVerdict) {
	var tempErr error
	note := func(err error) {
		if tempErr == nil {
			tempErr = err
		}
	}
	if dom, res, ok := spfIdentifier(in); ok {
		a, err := aligned(d, dom, d.Record.SPFAlignment(), in.OrgDomains)
		switch {
		case err != nil:
			note(err)
		case res == verify.ResultPass:
			dv.SPFDomain, dv.SPFAligned = dom, a // RFC 9989 §4.4.2: only the SPF-validated MAIL FROM identity
		case res == verify.ResultTempError && a:
			note(ErrSPFTempError)
		}
	}
	for _, s := range in.DKIM {
		if s.Result != verify.ResultPass && s.Result != verify.ResultTempError {
			continue // RFC 9989 §4.4.1: only a validated signature yields an Authenticated Identifier
		}
		dom := normalizeOrKeep(s.Domain)
		a, err := aligned(d, dom, d.Record.DKIMAlignment(), in.OrgDomains)
		switch {
		case err != nil:
			note(err)
		case s.Result == verify.ResultPass && a && !contains(dv.DKIMAligned, dom):
			dv.DKIMAligned = append(dv.DKIMAligned, dom) // RFC 9989 §4.4.1: any aligned DKIM identifier passes
		case s.Result == verify.ResultTempError && a:
			note(fmt.Errorf("%w d=%s", ErrDKIMTempError, dom))
		}
	}
	switch {
	case dv.SPFAligned || len(dv.DKIMAligned) > 0:
		dv.Result = ResultPass // RFC 9989 §5.3.5: one or more aligned identifiers → pass
	case tempErr != nil:
		dv.Result, dv.Err = ResultTempError, tempErr // RFC 9989 §5.3.6: cannot be considered to pass or fail
	default:
		dv.Result = ResultFail // RFC 9989 §5.3.5: none aligns → fail
	}
}

// spfIdentifier returns the SPF identifier DMARC uses and its result. RFC
// 9989 §3.2.4: DMARC relies solely on the MAIL FROM identity; for a null
// reverse-path that is postmaster@HELO (RFC 7208 §2.4), so a HELO-scope
// result counts only then.
func spfIdentifier(in *Input) (string, verify.Result, bool) {
	s := in.SPF
	switch s.Scope {
	case verify.ScopeMailFrom, "":
	case verify.ScopeHelo:
		if in.MailFrom != "" {
			return "", "", false
		}
	default:
		return "", "", false
	}
	dom := s.Domain
	if dom == "" {
		dom = mailFromDomain(in.MailFrom)
	}
	if dom == "" && in.MailFrom == "" {
		dom = in.HELO
	}
	if dom == "" || (s.Result != verify.ResultPass && s.Result != verify.ResultTempError) {
		return "", "", false
	}
	return normalizeOrKeep(dom), s.Result, true
}

// aligned is Identifier Alignment (RFC 9989 §3.2.10, §4.4): strict means the
// identifier equals the Author Domain; relaxed means both have the same
// Organizational Domain. An Organizational Domain is always the name itself
// or one of its parents, so an identifier outside the Author Domain's
// Organizational Domain cannot align and needs no lookup.
func aligned(d *Discovery, id string, mode AlignMode, orgs map[string]OrgResult) (bool, error) {
	if id == d.Domain {
		return true, nil // RFC 9989 §3.2.10.2: identical → strict (and relaxed) alignment
	}
	if mode == AlignStrict {
		return false, nil // RFC 9989 §4.10.2: strict alignment is a simple string comparison
	}
	if d.OrgErr != nil {
		return false, d.OrgErr
	}
	if !isSubdomainOrSelf(id, d.OrgDomain) {
		return false, nil
	}
	if d.Method == MethodPSL {
		return pslOrgDomain(id) == d.OrgDomain, nil // RFC 7489 §3.1: same Organizational Domain
	}
	o, ok := orgs[id]
	switch {
	case !ok:
		return false, ErrOrgDomainMissing
	case o.Err != nil:
		return false, o.Err
	}
	return o.Domain == d.OrgDomain, nil // RFC 9989 §3.2.10.1: same Organizational Domain → relaxed alignment
}

func mailFromDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return normalizeOrKeep(addr[i+1:])
}

func recipientDomains(rcpts []string) []string {
	var out []string
	for _, r := range rcpts {
		if d := mailFromDomain(strings.Trim(r, "<>")); d != "" && !contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}
