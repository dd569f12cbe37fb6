package verify

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"strings"
)

// results checks each signature and returns one result per signature, in
// header order. sums are the body hashes by canonicalization; late, when
// set, is the reason given to the signatures whose key did not come back in
// time.
func (v *DKIMVerifier) results(sums *[numCanons][32]byte, late string) []DKIMResult {
	out := make([]DKIMResult, len(v.sigs))
	// Scratch space for the header hash input: the fields of h= and the
	// signature field, each at most once, so at most the header block.
	var buf []byte
	for i := range v.sigs {
		if v.sigs[i].hashesBody && buf == nil {
			buf = make([]byte, 0, v.size)
		}
		s := &v.sigs[i]
		r := v.baseResult(i, s)
		var key *dkimKey
		switch {
		case s.err != nil:
			r.Result, r.Reason = ResultPermError, s.err.Error()
		case late != "":
			r.Result, r.Reason = ResultTempError, late
		default:
			j := &v.jobs[v.sigJob[i]]
			key = j.key
			if j.res != "" {
				r.Result, r.Reason = j.res, j.reason
				break
			}
			r.Result, r.Reason, buf = v.check(s, key, sums, buf)
		}
		if key != nil && (r.Result == ResultPass || r.Result == ResultFail || r.Result == ResultPolicy) {
			applyKey(&r, s, key)
		}
		out[i] = r
	}
	return out
}

// check verifies one signature whose field and key are usable.
func (v *DKIMVerifier) check(s *sigInfo, key *dkimKey, sums *[numCanons][32]byte, buf []byte) (Result, string, []byte) {
	if err := key.fits(s); err != nil {
		return ResultPermError, err.Error(), buf
	}
	if s.hasL {
		// RFC 6376 §8.2 warns that l= lets anyone append content and says
		// assessors "might wish to ignore signatures that use the tag";
		// RFC 8601 §2.7.1 "policy" is the result for a signature that is
		// "not acceptable to the ADMD". Such a signature is not hashed.
		// https://datatracker.ietf.org/doc/html/rfc6376#section-8.2
		// https://datatracker.ietf.org/doc/html/rfc8601#section-2.7.1
		return ResultPolicy, "signature has a body length limit (l=); not accepted (RFC 6376 §8.2)", buf
	}
	// RFC 6376 §6.1.3: the body hash must match bh= before the signature
	// is checked.
	// https://datatracker.ietf.org/doc/html/rfc6376#section-6.1.3
	if !bytes.Equal(sums[s.bodyCan][:], s.bodyHash) {
		return ResultFail, "body hash did not verify", buf
	}
	var digest [32]byte
	digest, buf = headerHash(v.fields, s, buf)
	switch key.algo {
	case "rsa":
		// RFC 6376 §3.3.1: RSASSA-PKCS1-v1_5 over the SHA-256 hash.
		if err := rsa.VerifyPKCS1v15(key.rsa, crypto.SHA256, digest[:], s.sig); err != nil {
			return ResultFail, "signature did not verify: " + err.Error(), buf
		}
	case "ed25519":
		// RFC 8463 §3: PureEdDSA over the SHA-256 hash of the header
		// hash input.
		// https://datatracker.ietf.org/doc/html/rfc8463#section-3
		if !ed25519.Verify(key.ed, digest[:], s.sig) {
			return ResultFail, "signature did not verify: invalid Ed25519 signature", buf
		}
	}
	return ResultPass, "good signature", buf
}

// applyKey adds what the key record says: the key size, the testing flag,
// and the t=s rule.
func applyKey(r *DKIMResult, s *sigInfo, k *dkimKey) {
	r.KeyBits = k.bits
	r.Testing = k.testing
	if k.strict && r.Result == ResultPass && s.auid != "" {
		at := strings.LastIndexByte(s.auid, '@')
		if !strings.EqualFold(strings.TrimSuffix(s.auid[at+1:], "."), r.Domain) {
			// RFC 6376 §3.6.1 t=s: "the "i=" domain MUST NOT be a subdomain of "d="".
			// https://datatracker.ietf.org/doc/html/rfc6376#section-3.6.1
			r.Result = ResultPermError
			r.Reason = "key has t=s but i= is a subdomain of d="
		}
	}
}

// allResults gives every signature the same result.
func (v *DKIMVerifier) allResults(res Result, reason string) []DKIMResult {
	out := make([]DKIMResult, len(v.sigs))
	for i := range v.sigs {
		out[i] = v.baseResult(i, &v.sigs[i])
		out[i].Result, out[i].Reason = res, reason
	}
	return out
}

// baseResult fills the fields that come from the signature itself.
func (v *DKIMVerifier) baseResult(i int, s *sigInfo) DKIMResult {
	return DKIMResult{
		Domain:     strings.ToLower(strings.TrimSuffix(s.domain, ".")),
		Selector:   s.selector,
		Algorithm:  s.algorithm,
		Identifier: s.auid,
		BPrefix:    bPrefix(v.sigs, i),
	}
}

// bPrefix is the shortest prefix of b=, at least BPrefixLen characters, that
// no other signature of the message shares (RFC 6008 §4).
// https://datatracker.ietf.org/doc/html/rfc6008#section-4
func bPrefix(sigs []sigInfo, i int) string {
	b := sigs[i].b
	n := min(BPrefixLen, len(b))
	for ; n < len(b); n++ {
		unique := true
		for j := range sigs {
			if j != i && strings.HasPrefix(sigs[j].b, b[:n]) {
				unique = false
				break
			}
		}
		if unique {
			break
		}
	}
	return b[:n]
}
