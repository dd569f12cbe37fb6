package verify

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// results turns go-msgauth's verifications into DKIMResults, one per
// signature we recorded, in the same (header) order.
func (v *DKIMVerifier) results(out dkimOutcome) []DKIMResult {
	res := make([]DKIMResult, len(v.sigs))
	for i, s := range v.sigs {
		r := v.baseResult(i, s)
		var err error
		switch {
		case i < len(out.verifs) && out.verifs[i] != nil:
			err = out.verifs[i].Err
			if err == nil && !sameDomain(out.verifs[i].Domain, s.domain) {
				// go-msgauth's verification i is not of our signature i:
				// never let one signature's pass stand for another's.
				err = fmt.Errorf("verified d=%s where this signature has d=%s", out.verifs[i].Domain, s.domain)
			}
		case out.err != nil && !errors.Is(out.err, dkim.ErrTooManySignatures):
			// go-msgauth returns no verifications at all when reading the
			// message failed (Abort, the body limit): one error for all.
			err = out.err
		default:
			err = errors.New("signature not verified")
		}
		r.Result, r.Reason = v.classify(s, err)
		if r.Result == ResultPass || r.Result == ResultFail || r.Result == ResultPolicy {
			v.applyKey(&r, s)
		}
		res[i] = r
	}
	return res
}

func sameDomain(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// classify maps a go-msgauth verification error to an RFC 8601 result.
func (v *DKIMVerifier) classify(s sigInfo, err error) (Result, string) {
	switch {
	case err == nil:
		return ResultPass, "good signature"
	case dkim.IsTempFail(err):
		return ResultTempError, reasonOf(err)
	case dkim.IsPermFail(err):
		return ResultPermError, reasonOf(err)
	case s.hasL:
		// go-msgauth refuses every signature with l= before hashing
		// (verify.go: "message contains an insecure body length tag"), so we
		// do not know whether it would verify. RFC 6376 §8.2 warns that l=
		// lets anyone append content and says assessors "might wish to
		// ignore signatures that use the tag"; RFC 8601 §2.7.1 "policy" is
		// the result for a signature that is "not acceptable to the ADMD".
		// https://datatracker.ietf.org/doc/html/rfc6376#section-8.2
		// https://datatracker.ietf.org/doc/html/rfc8601#section-2.7.1
		return ResultPolicy, "signature has a body length limit (l=); not accepted (RFC 6376 §8.2)"
	case isLibraryFail(err):
		return ResultFail, reasonOf(err)
	default:
		// An I/O error on the stream: we could not process the signature.
		return ResultNeutral, reasonOf(err)
	}
}

// isLibraryFail reports whether err is go-msgauth's (unexported) signature
// failure: a body hash or signature that does not verify. Temporary and
// permanent failures are tested before; the errors of the stream itself
// (ours) do not carry the library's "dkim: " prefix.
func isLibraryFail(err error) bool {
	return strings.HasPrefix(err.Error(), "dkim: ")
}

func reasonOf(err error) string {
	return strings.TrimPrefix(err.Error(), "dkim: ")
}

// applyKey adds what the key record says: the key size, the testing flag,
// and the t=s rule that go-msgauth does not enforce.
func (v *DKIMVerifier) applyKey(r *DKIMResult, s sigInfo) {
	ki, ok := v.keys.key(s.selector, s.domain)
	if !ok {
		return
	}
	r.KeyBits = ki.bits
	r.Testing = ki.testing
	if ki.strict && r.Result == ResultPass && s.auid != "" {
		at := strings.LastIndexByte(s.auid, '@')
		if !strings.EqualFold(strings.TrimSuffix(s.auid[at+1:], "."), r.Domain) {
			// RFC 6376 §3.6.1 t=s: "the "i=" domain MUST NOT be a subdomain of "d="".
			// https://datatracker.ietf.org/doc/html/rfc6376#section-3.6.1
			r.Result = ResultPermError
			r.Reason = "key has t=s but i= is a subdomain of d="
		}
	}
}
