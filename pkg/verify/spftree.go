package verify

import "errors"

// Exported views of the SPF record syntax checks, for callers that inspect
// records without evaluating them (pkg/health draws a domain's SPF tree).

// IsSPFRecord reports whether a TXT string is an SPF record by the
// selection rule of RFC 7208 §4.5
// (https://datatracker.ietf.org/doc/html/rfc7208#section-4.5): "v=spf1" followed by a space or the end
// of the string, without regard to case.
func IsSPFRecord(txt string) bool { return isSPFRecord(txt) }

// CheckSPFSyntax checks an SPF record against the ABNF of RFC 7208 §12 and
// the rules of §6 and §7.1, as the evaluator does before it uses a record
// (RFC 7208 §4.6: a syntax error anywhere is a permerror). It returns nil
// for a well-formed record, else a *SPFSyntaxError naming the first bad
// term (its Domain is empty: the caller knows where the record came from).
func CheckSPFSyntax(rec string) error {
	err := checkSPFRecord(rec)
	var se *SPFSyntaxError
	if err != nil && !errors.As(err, &se) {
		return &SPFSyntaxError{Msg: err.Error()}
	}
	return err
}
