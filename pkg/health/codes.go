package health

// Code names a kind of finding. The codes are part of the JSON shape
// (docs/health.md lists them) and stay stable within a Version.
type Code string

// CodeTruncated ends a list of findings that was cut at its bound.
const CodeTruncated Code = "truncated"

// DMARC findings.
const (
	CodeDMARCFound          Code = "dmarc_found"           // where the record was found and how
	CodeDMARCMissing        Code = "dmarc_missing"         // no record applies
	CodeDMARCTempError      Code = "dmarc_temperror"       // discovery did not complete
	CodeDMARCMultiple       Code = "dmarc_multiple"        // several records at one name: all discarded
	CodeDMARCIgnoredRecord  Code = "dmarc_ignored_record"  // a TXT record that looks like DMARC but is not one
	CodeDMARCNotApplicable  Code = "dmarc_not_applicable"  // invalid p/sp/np without rua: no DMARC processing
	CodeDMARCAsNone         Code = "dmarc_as_none"         // invalid p/sp/np with rua: acts as p=none
	CodeDMARCInvalidTag     Code = "dmarc_invalid_tag"     // a tag whose value is ignored
	CodeDMARCNoP            Code = "dmarc_no_p"            // no p tag: p=none
	CodeDMARCMonitoring     Code = "dmarc_monitoring"      // the policy for the domain is none
	CodeDMARCEnforced       Code = "dmarc_enforced"        // quarantine or reject
	CodeDMARCSubdomains     Code = "dmarc_subdomains"      // how sp/np cover subdomains
	CodeDMARCWeakSubdomains Code = "dmarc_weak_subdomains" // sp or np weaker than p
	CodeDMARCSPIgnored      Code = "dmarc_sp_ignored"      // sp on a record that is not the Organizational Domain's
	CodeDMARCTesting        Code = "dmarc_testing"         // t=y
	CodeDMARCPct            Code = "dmarc_pct"             // pct below 100 (RFC 7489)
	CodeDMARCNoRUA          Code = "dmarc_no_rua"          // no aggregate reports requested
	CodeDMARCReportURI      Code = "dmarc_report_uri"      // a rua/ruf destination and its authorization
	CodeDMARCFOWithoutRUF   Code = "dmarc_fo_without_ruf"  // fo is ignored without ruf
	CodeDMARCPSD            Code = "dmarc_psd"             // psd=y published for the checked domain
)

// SPF findings.
const (
	CodeSPFMissing          Code = "spf_missing"           // the domain has no SPF record
	CodeSPFTempError        Code = "spf_temperror"         // a lookup failed
	CodeSPFMultiple         Code = "spf_multiple"          // several SPF records: permerror
	CodeSPFSyntax           Code = "spf_syntax"            // a syntax error: permerror
	CodeSPFTooLong          Code = "spf_too_long"          // the answer does not fit 512 octets
	CodeSPFLookupLimit      Code = "spf_lookup_limit"      // more than 10 DNS-querying terms
	CodeSPFVoidLimit        Code = "spf_void_limit"        // more than 2 void lookups
	CodeSPFMXLimit          Code = "spf_mx_limit"          // an mx term with more than 10 MX names
	CodeSPFPtr              Code = "spf_ptr"               // ptr is discouraged
	CodeSPFPassAll          Code = "spf_pass_all"          // +all
	CodeSPFNeutralAll       Code = "spf_neutral_all"       // ?all
	CodeSPFAfterAll         Code = "spf_after_all"         // terms after all are never evaluated
	CodeSPFRedirectIgnored  Code = "spf_redirect_ignored"  // redirect with all
	CodeSPFIncludeNone      Code = "spf_include_none"      // include of a name without SPF: permerror
	CodeSPFRedirectNone     Code = "spf_redirect_none"     // redirect to a name without SPF: permerror
	CodeSPFDuplicateInclude Code = "spf_duplicate_include" // the same include twice in the tree
	CodeSPFLoop             Code = "spf_loop"              // include/redirect back to a name on the path
	CodeSPFTooDeep          Code = "spf_too_deep"          // the check's own bounds were reached
	CodeSPFFlatten          Code = "spf_flatten"           // which includes to flatten
)

// Subdomain findings.
const (
	CodeSubdomainNoSPF       Code = "subdomain_no_spf"      // an existing name without its own SPF record
	CodeSubdomainSPF         Code = "subdomain_spf"         // the name has one well-formed SPF record
	CodeSubdomainSPFBroken   Code = "subdomain_spf_broken"  // several records or a syntax error
	CodeSubdomainNonExistent Code = "subdomain_nonexistent" // NXDOMAIN: np applies
	CodeSubdomainDMARC       Code = "subdomain_dmarc"       // the DMARC policy that covers the name
	CodeSubdomainUnprotected Code = "subdomain_unprotected" // no SPF and a DMARC policy of none
	CodeSubdomainTempError   Code = "subdomain_temperror"   // a lookup failed
)

// DKIM findings.
const (
	CodeDKIMBadSelector Code = "dkim_bad_selector"  // the selector is not a valid name
	CodeDKIMNoKey       Code = "dkim_no_key"        // no key record
	CodeDKIMMultiple    Code = "dkim_multiple"      // several TXT records
	CodeDKIMTempError   Code = "dkim_temperror"     // the lookup failed
	CodeDKIMSyntax      Code = "dkim_syntax"        // the record or the key does not parse
	CodeDKIMRevoked     Code = "dkim_revoked"       // empty p=
	CodeDKIMKeyType     Code = "dkim_key_type"      // unknown k=
	CodeDKIMRSATooShort Code = "dkim_rsa_too_short" // RSA under 1024 bits
	CodeDKIMRSAWeak     Code = "dkim_rsa_weak"      // RSA 1024 to 2047 bits
	CodeDKIMKey         Code = "dkim_key"           // the key is fine: type and size
	CodeDKIMTesting     Code = "dkim_testing"       // t=y
	CodeDKIMStrict      Code = "dkim_strict"        // t=s
	CodeDKIMHashes      Code = "dkim_hashes"        // h= without sha256
	CodeDKIMService     Code = "dkim_service"       // s= without email
)
