package report

import (
	"net/netip"
	"time"
)

// XML namespaces of the aggregate report schemas.
const (
	// Namespace is RFC 9990's (https://datatracker.ietf.org/doc/html/rfc9990)
	// namespace, the one Marshal writes (RFC 9990 §6.1).
	Namespace = "urn:ietf:params:xml:ns:dmarc-2.0"
	// NamespaceRFC7489 is the namespace of RFC 7489 Appendix C's schema.
	// Parse reads it; most RFC 7489-era reports carry no namespace at all.
	NamespaceRFC7489 = "http://dmarc.org/dmarc-xml/0.1"
	// Version is the value of the version element Marshal writes
	// (RFC 9990 §3.1.1.2: it MUST be 1.0).
	Version = "1.0"
)

// Feedback is one aggregate report: the root element feedback of
// RFC 9990 §3.1.1.1 with its children. A report covers one DMARC Policy
// Domain and one policy configuration (RFC 9990 §3.1).
type Feedback struct {
	// Version is the version element as read ("" when absent). Marshal
	// always writes Version.
	Version         string
	Metadata        Metadata
	PolicyPublished PolicyPublished
	// Records are the record elements; a report has at least one
	// (RFC 9990 §3.1.1.2).
	Records []Record
}

// Metadata is report_metadata (RFC 9990 §3.1.1.3).
type Metadata struct {
	OrgName          string
	Email            string
	ExtraContactInfo string
	// ReportID is the Report-ID (RFC 9990 §3.5.1). Reports we build use
	// NewReportID's alphanumeric form, so that it can also be the
	// filename's unique-id (RFC 9990 §3.1.4).
	ReportID  string
	DateRange DateRange
	// Errors are the error elements. RFC 7489's schema allows several,
	// RFC 9990's one: Marshal writes them joined by "; " in one element.
	Errors    []string
	Generator string
}

// DateRange is the reporting period (RFC 9990 §3.1.1.4), in UTC, held
// with a one-second resolution as in the XML (seconds since the epoch).
// Reports we build use a half-open [Begin, End); many reporters write an
// inclusive End (23:59:59).
type DateRange struct {
	Begin, End time.Time
}

// PolicyPublished is policy_published (RFC 9990 §3.1.1.5): the DMARC
// Policy Record the receiver applied. Empty optional fields are absent.
type PolicyPublished struct {
	Domain          string
	P               Disposition
	SP              Disposition
	NP              Disposition
	ADKIM           Alignment
	ASPF            Alignment
	DiscoveryMethod DiscoveryMethod
	FO              string
	Testing         Testing
}

// Record is one record element (RFC 9990 §3.1.1.7): one combination of
// source IP, results and identifiers, with its message count.
type Record struct {
	Row         Row
	Identifiers Identifiers
	AuthResults AuthResults
}

// Row is row (RFC 9990 §3.1.1.8).
type Row struct {
	SourceIP        netip.Addr
	Count           uint64
	PolicyEvaluated PolicyEvaluated
}

// PolicyEvaluated is policy_evaluated (RFC 9990 §3.1.1.9).
type PolicyEvaluated struct {
	// Disposition is the action actually applied.
	Disposition ActionDisposition
	// DKIM and SPF are the DMARC-aligned results.
	DKIM, SPF DMARCResult
	// Reasons say why the disposition differs from the published policy
	// (RFC 9990 §3.1.6).
	Reasons []Reason
}

// Reason is one policy override reason (RFC 9990 §3.1.1.14, §3.1.6).
type Reason struct {
	Type    ReasonType
	Comment string
}

// Identifiers is identifiers (RFC 9990 §3.1.1.10): domains, not addresses.
type Identifiers struct {
	HeaderFrom string
	// EnvelopeFrom is the RFC5321.MailFrom domain; empty for the null
	// reverse-path. Marshal always writes the element (empty for the null
	// sender, RFC 9990 §3.1.1.10); Parse reads an absent one as "".
	EnvelopeFrom string
	// EnvelopeTo is the RFC5321.RcptTo domain; "" = absent.
	EnvelopeTo string
}

// AuthResults is auth_results (RFC 9990 §3.1.1.11): the SPF and DKIM
// results, uninterpreted with respect to DMARC.
type AuthResults struct {
	// DKIM holds every signature tried, best first (RFC 9990 §3.1.3).
	DKIM []DKIMAuth
	// SPF is nil when no SPF result is reported. RFC 7489 documents may
	// carry several spf elements: Parse keeps the first with scope mfrom,
	// else the first.
	SPF *SPFAuth
}

// DKIMAuth is one dkim element of auth_results (RFC 9990 §3.1.1.12).
type DKIMAuth struct {
	Domain      string
	Selector    string
	Result      DKIMResult
	HumanResult string
}

// SPFAuth is the spf element of auth_results (RFC 9990 §3.1.1.13).
type SPFAuth struct {
	Domain      string
	Scope       SPFScope // "" = absent
	Result      SPFResult
	HumanResult string
}

// Disposition is a published policy: p, sp, np (DispositionType).
type Disposition string

// The DispositionType values.
const (
	DispositionNone       Disposition = "none"
	DispositionQuarantine Disposition = "quarantine"
	DispositionReject     Disposition = "reject"
)

// Known tells whether d is a value of RFC 9990's DispositionType.
func (d Disposition) Known() bool {
	switch d {
	case DispositionNone, DispositionQuarantine, DispositionReject:
		return true
	}
	return false
}

// ActionDisposition is the applied action of policy_evaluated
// (ActionDispositionType).
type ActionDisposition string

// The ActionDispositionType values.
const (
	ActionNone       ActionDisposition = "none"
	ActionPass       ActionDisposition = "pass" // no action: passed DMARC under an enforcing policy
	ActionQuarantine ActionDisposition = "quarantine"
	ActionReject     ActionDisposition = "reject"
)

// Known tells whether a is a value of RFC 9990's ActionDispositionType.
func (a ActionDisposition) Known() bool {
	switch a {
	case ActionNone, ActionPass, ActionQuarantine, ActionReject:
		return true
	}
	return false
}

// Alignment is adkim or aspf (AlignmentType).
type Alignment string

// The AlignmentType values.
const (
	AlignmentRelaxed Alignment = "r"
	AlignmentStrict  Alignment = "s"
)

// Known tells whether a is a value of AlignmentType.
func (a Alignment) Known() bool { return a == AlignmentRelaxed || a == AlignmentStrict }

// DiscoveryMethod is discovery_method (DiscoveryType).
type DiscoveryMethod string

// The DiscoveryType values.
const (
	DiscoveryPSL      DiscoveryMethod = "psl"
	DiscoveryTreeWalk DiscoveryMethod = "treewalk"
)

// Known tells whether m is a value of DiscoveryType.
func (m DiscoveryMethod) Known() bool { return m == DiscoveryPSL || m == DiscoveryTreeWalk }

// Testing is the testing element, the record's t tag (TestingType).
type Testing string

// The TestingType values.
const (
	TestingNo  Testing = "n"
	TestingYes Testing = "y"
)

// Known tells whether t is a value of TestingType.
func (t Testing) Known() bool { return t == TestingNo || t == TestingYes }

// DMARCResult is an aligned result of policy_evaluated (DMARCResultType).
type DMARCResult string

// The DMARCResultType values.
const (
	DMARCPass DMARCResult = "pass"
	DMARCFail DMARCResult = "fail"
)

// Known tells whether r is a value of DMARCResultType.
func (r DMARCResult) Known() bool { return r == DMARCPass || r == DMARCFail }

// ReasonType is a policy override type (PolicyOverrideType, RFC 9990
// §3.1.6).
type ReasonType string

// The PolicyOverrideType values of RFC 9990, then RFC 7489's two that
// RFC 9990 dropped (Parse keeps them; Marshal refuses them: RFC 9990 has
// no pct sampling, and a report of ours states a sampled-out message with
// ReasonOther and a comment).
const (
	ReasonLocalPolicy      ReasonType = "local_policy"
	ReasonMailingList      ReasonType = "mailing_list"
	ReasonOther            ReasonType = "other"
	ReasonPolicyTestMode   ReasonType = "policy_test_mode"
	ReasonTrustedForwarder ReasonType = "trusted_forwarder"

	ReasonForwarded  ReasonType = "forwarded"   // RFC 7489 only
	ReasonSampledOut ReasonType = "sampled_out" // RFC 7489 only
)

// Known tells whether t is a value of RFC 9990's PolicyOverrideType.
func (t ReasonType) Known() bool {
	switch t {
	case ReasonLocalPolicy, ReasonMailingList, ReasonOther, ReasonPolicyTestMode, ReasonTrustedForwarder:
		return true
	}
	return false
}

// KnownRFC7489 tells whether t is a value of RFC 7489's
// PolicyOverrideType.
func (t ReasonType) KnownRFC7489() bool {
	switch t {
	case ReasonForwarded, ReasonSampledOut, ReasonTrustedForwarder, ReasonMailingList, ReasonLocalPolicy, ReasonOther:
		return true
	}
	return false
}

// DKIMResult is a DKIM verification result (DKIMResultType, the
// RFC 8601 §2.7.1 (https://datatracker.ietf.org/doc/html/rfc8601#section-2.7.1) values).
type DKIMResult string

// The DKIMResultType values.
const (
	DKIMNone      DKIMResult = "none"
	DKIMPass      DKIMResult = "pass"
	DKIMFail      DKIMResult = "fail"
	DKIMPolicy    DKIMResult = "policy"
	DKIMNeutral   DKIMResult = "neutral"
	DKIMTempError DKIMResult = "temperror"
	DKIMPermError DKIMResult = "permerror"
)

// Known tells whether r is a value of DKIMResultType.
func (r DKIMResult) Known() bool {
	switch r {
	case DKIMNone, DKIMPass, DKIMFail, DKIMPolicy, DKIMNeutral, DKIMTempError, DKIMPermError:
		return true
	}
	return false
}

// SPFResult is an SPF result (SPFResultType, the RFC 8601 §2.7.2 values).
type SPFResult string

// The SPFResultType values.
const (
	SPFNone      SPFResult = "none"
	SPFPass      SPFResult = "pass"
	SPFFail      SPFResult = "fail"
	SPFSoftFail  SPFResult = "softfail"
	SPFPolicy    SPFResult = "policy"
	SPFNeutral   SPFResult = "neutral"
	SPFTempError SPFResult = "temperror"
	SPFPermError SPFResult = "permerror"
)

// Known tells whether r is a value of SPFResultType.
func (r SPFResult) Known() bool {
	switch r {
	case SPFNone, SPFPass, SPFFail, SPFSoftFail, SPFPolicy, SPFNeutral, SPFTempError, SPFPermError:
		return true
	}
	return false
}

// SPFScope is the scope of the SPF result (SPFDomainScope).
type SPFScope string

// The SPFDomainScope values: RFC 9990 knows only mfrom; RFC 7489 also had
// helo.
const (
	SPFScopeMailFrom SPFScope = "mfrom"
	SPFScopeHELO     SPFScope = "helo" // RFC 7489 only
)

// Known tells whether s is a value of RFC 9990's SPFDomainScope.
func (s SPFScope) Known() bool { return s == SPFScopeMailFrom }

// RFC9990 returns r as RFC 9990 can state it: RFC 7489's forwarded and
// sampled_out, which RFC 9990 §3.1.6 dropped, become "other" with the old
// type leading the comment (a pct-sampled message: "sampled_out: pct=50").
func (r Reason) RFC9990() Reason {
	if r.Type.Known() || !r.Type.KnownRFC7489() {
		return r
	}
	c := string(r.Type)
	if r.Comment != "" {
		c += ": " + r.Comment
	}
	return Reason{Type: ReasonOther, Comment: c}
}
