package verify

// Result is an authentication result as written in an Authentication-Results
// header (RFC 8601 §2.7.1 for DKIM, §2.7.2 for SPF).
type Result string

// The result values of SPF (RFC 7208 §2.6) and DKIM (RFC 8601 §2.7.1).
const (
	ResultNone      Result = "none"
	ResultPass      Result = "pass"
	ResultFail      Result = "fail"
	ResultSoftFail  Result = "softfail"
	ResultNeutral   Result = "neutral"
	ResultPolicy    Result = "policy"
	ResultTempError Result = "temperror"
	ResultPermError Result = "permerror"
)

// Scope is the identity an SPF check was run on (RFC 7489 §4.1 / RFC 9990
// "scope" in aggregate reports).
type Scope string

// The SPF scopes.
const (
	ScopeMailFrom Scope = "mfrom"
	ScopeHelo     Scope = "helo"
)

// SPFResult is the outcome of one SPF check_host() evaluation.
type SPFResult struct {
	Result Result
	Scope  Scope
	// Domain is the domain that was checked: the MAIL FROM domain, or the
	// HELO name (for the helo scope and for a null reverse-path).
	Domain string
	// Sender is the identity as given to check_host (local@domain).
	Sender string
	// Reason is a short human-readable explanation for logs and A-R comments.
	Reason string
}

// DKIMResult is the outcome of verifying one DKIM-Signature field.
type DKIMResult struct {
	Result Result
	// Domain is the signing domain (d=), lowercased, without a trailing dot.
	Domain string
	// Selector is s=.
	Selector string
	// Algorithm is a= (e.g. "rsa-sha256", "ed25519-sha256").
	Algorithm string
	// Identifier is i= when present.
	Identifier string
	// BPrefix is the first bytes of b= for header.b (RFC 6008).
	BPrefix string
	// KeyBits is the public key size in bits when the key was fetched.
	KeyBits int
	// Testing is set when the key record has the t=y flag: the domain is
	// testing DKIM, and RFC 6376 §3.6.1 says verifiers "MUST NOT treat
	// messages from Signers in testing mode differently from unsigned email"
	// (so a pass should not be used to deliver or reject differently).
	Testing bool
	// Reason is a short human-readable explanation for logs.
	Reason string
}
