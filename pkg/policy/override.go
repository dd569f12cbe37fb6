package policy

// OverrideType is RFC 9990's PolicyOverrideType: the reason, in the
// report's vocabulary, why the disposition applied differs from the one the
// policy requested.
type OverrideType string

// The override types of the RFC 9990 schema (RFC 9990 §3.1.6).
const (
	OverrideLocalPolicy      OverrideType = "local_policy"
	OverrideMailingList      OverrideType = "mailing_list"
	OverrideOther            OverrideType = "other"
	OverridePolicyTestMode   OverrideType = "policy_test_mode"
	OverrideTrustedForwarder OverrideType = "trusted_forwarder"
)

// Reason is our own, finer reason for an override: the one logs, metrics
// and Authentication-Results comments name. Its OverrideType method maps
// it onto the RFC 9990 vocabulary for reports.
type Reason string

// The override reasons.
const (
	// ReasonTestMode: t=y lowered the policy one step (RFC 9989 §4.7).
	ReasonTestMode Reason = "test-mode"
	// ReasonSampledOut: the message was not among the pct= percent the
	// policy applies to (RFC 7489 §6.6.4).
	ReasonSampledOut Reason = "sampled-out"
	// ReasonAllowFrom: the Author Domain is in the local allowlist.
	ReasonAllowFrom Reason = "allowlist-from"
	// ReasonAllowNetwork: the client is in an allowlisted network: the
	// message is evaluated but never enforced.
	ReasonAllowNetwork Reason = "allowlist-network"
	// ReasonMonitorMode: the receiver runs in monitor mode and enforces
	// nothing.
	ReasonMonitorMode Reason = "monitor-mode"
	// ReasonTrustedForwarderNetwork: the client is a trusted forwarder.
	ReasonTrustedForwarderNetwork Reason = "trusted-forwarder-network"
	// ReasonTrustedForwarderDKIM: a trusted forwarder's signature passed.
	ReasonTrustedForwarderDKIM Reason = "trusted-forwarder-dkim"
	// ReasonTrustedARCSealer: the ARC chain passed and a trusted sealer's
	// assessment shows the message passed DMARC where it entered the
	// sealer (RFC 8617 §7.2.1).
	ReasonTrustedARCSealer Reason = "trusted-arc-sealer"
	// ReasonListHeaders: the message has list headers, a sign of an
	// indirect flow (RFC 9989 §7.4), under p=reject and
	// RejectUnlessIndirect.
	ReasonListHeaders Reason = "list-headers"
	// ReasonRejectAsQuarantine: p=reject handled as quarantine because the
	// local policy says so (RFC 9989 §7.4, LocalPolicy.OnReject).
	ReasonRejectAsQuarantine Reason = "reject-as-quarantine"
	// ReasonTempErrorAccepted: the result is temperror and the local policy
	// delivers such mail (LocalPolicy.OnTempError) although the policy
	// would matter.
	ReasonTempErrorAccepted Reason = "temperror-accepted"
	// ReasonFromQuarantine: an irregular From field is quarantined by the
	// local policy (FromPolicy) on top of what DMARC decided.
	ReasonFromQuarantine Reason = "from-quarantine"
)

// OverrideType maps our reason onto RFC 9990's PolicyOverrideType (RFC
// 9990 §3.1.6). It is the only place that does: the schema has no value
// for sampling (RFC 7489's sampled_out is gone with pct), so a sampled-out
// message is "other" with its comment; everything the receiver decided on
// its own is "local_policy".
func (r Reason) OverrideType() OverrideType {
	switch r {
	case ReasonTestMode:
		return OverridePolicyTestMode
	case ReasonTrustedForwarderNetwork, ReasonTrustedForwarderDKIM, ReasonTrustedARCSealer:
		return OverrideTrustedForwarder
	case ReasonListHeaders:
		return OverrideMailingList
	case ReasonAllowFrom, ReasonAllowNetwork, ReasonMonitorMode, ReasonRejectAsQuarantine,
		ReasonTempErrorAccepted, ReasonFromQuarantine:
		return OverrideLocalPolicy
	}
	return OverrideOther // ReasonSampledOut and any reason without its own type
}

// Override is one reason why the disposition applied differs from the one
// requested: RFC 9990's PolicyOverrideReason, with our finer Reason kept
// apart from the RFC type (Type maps it).
type Override struct {
	Reason Reason
	// Comment is the detail for the report's comment element and the log:
	// which allowlist entry, network or signature, the pct value.
	Comment string
}

// Type is the RFC 9990 override type of o.
func (o Override) Type() OverrideType { return o.Reason.OverrideType() }

// hasReason reports whether one of os has reason r.
func hasReason(os []Override, r Reason) bool {
	for _, o := range os {
		if o.Reason == r {
			return true
		}
	}
	return false
}
