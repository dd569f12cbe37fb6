package policy

import "errors"

// TempErrorCause says what left a DMARC result temperror, for metrics and
// logs. TempErrorCauseOf derives it from DomainVerdict.Err.
type TempErrorCause string

// The temperror causes.
const (
	CauseNone TempErrorCause = "" // the result is not temperror
	// CauseSPF: the SPF check of an aligned MAIL FROM domain ended in
	// temperror.
	CauseSPF TempErrorCause = "spf"
	// CauseDKIM: the verification of an aligned signature ended in
	// temperror (its key lookup failed).
	CauseDKIM TempErrorCause = "dkim"
	// CauseDMARCDNS: a DNS query of policy discovery or of an
	// Organizational Domain failed.
	CauseDMARCDNS TempErrorCause = "dmarc-dns"
	// CauseTimeout: a check had not finished when the caller stopped
	// waiting (ErrTimeout).
	CauseTimeout TempErrorCause = "timeout"
)

// Causes of a temperror that Evaluate records in DomainVerdict.Err (wrapped,
// with detail); ErrTempFail and ErrTimeout are the others.
var (
	// ErrSPFTempError: SPF temperror on a MAIL FROM domain that would align.
	ErrSPFTempError = errors.New("policy: SPF temperror on an aligned MAIL FROM domain")
	// ErrDKIMTempError: DKIM temperror on a signature that would align.
	ErrDKIMTempError = errors.New("policy: DKIM temperror on an aligned signature")
	// ErrTimeout: a check was not finished in time. A caller that stops
	// waiting for a discovery reports it with an error wrapping ErrTimeout
	// and ErrTempFail.
	ErrTimeout = errors.New("policy: not finished in time")
)

// TempErrorCauseOf classifies the error of a temperror result: a timeout
// first (whatever the check was), then SPF, DKIM, and any other failure as
// DMARC DNS. A nil error has no cause.
func TempErrorCauseOf(err error) TempErrorCause {
	switch {
	case err == nil:
		return CauseNone
	case errors.Is(err, ErrTimeout):
		return CauseTimeout
	case errors.Is(err, ErrSPFTempError):
		return CauseSPF
	case errors.Is(err, ErrDKIMTempError):
		return CauseDKIM
	}
	return CauseDMARCDNS
}
