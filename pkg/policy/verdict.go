package policy

import (
	"net/netip"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// Result is the DMARC result as written in Authentication-Results (RFC 8601
// §2.7, RFC 7489 §11.2 registry values).
type Result string

// The DMARC results.
const (
	ResultPass      Result = "pass"
	ResultFail      Result = "fail"
	ResultNone      Result = "none"
	ResultTempError Result = "temperror"
	ResultPermError Result = "permerror"
)

// Action is the final local action for the message.
type Action string

// The actions, from the most lenient to the strictest.
const (
	ActionAccept     Action = "accept"
	ActionQuarantine Action = "quarantine"
	ActionTempFail   Action = "tempfail"
	ActionReject     Action = "reject"
)

// DomainVerdict is the DMARC evaluation of one Author Domain: everything an
// RFC 9990 aggregate-report row about it needs.
type DomainVerdict struct {
	// HeaderFrom is the Author Domain.
	HeaderFrom string
	Result     Result
	// Err says why the result is temperror (it wraps ErrTempFail,
	// ErrTimeout, ErrSPFTempError, ErrDKIMTempError, ErrNotDiscovered or
	// ErrOrgDomainMissing) or why there is no policy.
	Err error
	// TempErrorCause classifies Err when Result is temperror.
	TempErrorCause TempErrorCause
	// Method, PolicyDomain, OrgDomain, Record and Existence come from
	// discovery.
	Method       Method
	PolicyDomain string
	OrgDomain    string
	Record       *Record
	Existence    Existence
	// PolicyTag is the tag whose policy applies (p, sp or np); Requested is
	// its effective value. When the np= existence test failed
	// (Discovery.ExistErr) they are those of an existing domain (sp or p),
	// except for a temperror caused by that failure, where both are unset:
	// which policy applies is not known.
	PolicyTag Tag
	Requested Disposition
	// Disposition is the disposition actually applied: the policy after
	// test mode, sampling and every local override, monitor mode and the
	// allowlisted network included (none when the message passed, unless
	// an irregular From is quarantined: ReasonFromQuarantine).
	Disposition Disposition
	// Action is the local action actually taken for this domain.
	Action Action
	// EnforceDisposition and EnforceAction are what enforce mode would
	// have applied: they differ from Disposition and Action only when the
	// message was exempted (Verdict.Exemption).
	EnforceDisposition Disposition
	EnforceAction      Action
	// Overrides are the reasons Disposition differs from Requested.
	Overrides []Override
	// SPFDomain is the SPF-authenticated identifier considered ("" when SPF
	// did not pass); SPFAligned says whether it aligned.
	SPFDomain  string
	SPFAligned bool
	// DKIMAligned are the d= of the passing signatures that aligned.
	DKIMAligned []string
}

// Verdict is the outcome of Evaluate for a message.
type Verdict struct {
	// Result is the message's DMARC result: the weakest over its Author
	// Domains (permerror, fail, temperror, none, pass in that order).
	Result Result
	// Action is the final local action actually taken (accept when the
	// message was exempted).
	Action Action
	// EnforceAction is the action enforce mode takes; it differs from
	// Action only for an exempted message ("would reject").
	EnforceAction Action
	// Exemption is ReasonMonitorMode or ReasonAllowNetwork when the
	// message was evaluated but not enforced, "" otherwise.
	Exemption Reason
	// AllowNetwork is the allowlisted network the client is in (the
	// zero Prefix when it is in none).
	AllowNetwork netip.Prefix
	// FromProblem is the irregular From condition that decided the
	// handling, FromOK when none.
	FromProblem FromProblem
	// Err details a permerror (the From parse error).
	Err error
	// Domains are the evaluations of each Author Domain, in From order;
	// with more than FromPolicy.MaxDomains of them, only the first
	// MaxDomains (RFC 9989 §11.5).
	Domains []DomainVerdict
	// Decisive is the index in Domains of the evaluation that set Action,
	// -1 when none did.
	Decisive int
	// The message's identifiers and authentication results, for reports.
	SourceIP     netip.Addr
	EnvelopeFrom string   // RFC5321.MailFrom domain, "" for the null path
	EnvelopeTo   []string // distinct recipient domains
	SPF          verify.SPFResult
	DKIM         []verify.DKIMResult
	ARC          *verify.ARCResult // nil: no ARC field (cv none)
}

// More From conditions (besides the FromProblem values of ParseFrom) that a
// Verdict can name.
const (
	FromMultipleFields  FromProblem = "multiple-fields"
	FromMultipleDomains FromProblem = "multiple-domains"
	FromTooManyDomains  FromProblem = "too-many-domains"
)

// TempErrorCause is the cause of the message's temperror: that of its first
// Author Domain whose result is temperror (CauseNone when the result is
// not temperror).
func (v *Verdict) TempErrorCause() TempErrorCause {
	if v.Result != ResultTempError {
		return CauseNone
	}
	for _, dv := range v.Domains {
		if dv.Result == ResultTempError {
			return dv.TempErrorCause
		}
	}
	return CauseNone
}

// HasReason reports whether reason r applied to one of the message's
// Author Domains (for example ReasonAllowFrom).
func (v *Verdict) HasReason(r Reason) bool {
	for _, dv := range v.Domains {
		if hasReason(dv.Overrides, r) {
			return true
		}
	}
	return false
}
