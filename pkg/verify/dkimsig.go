package verify

import (
	"encoding/base64"
	"errors"
	"strings"
	"time"
)

// canon is a canonicalization algorithm (RFC 6376 §3.4).
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.4
type canon uint8

const (
	canonSimple canon = iota
	canonRelaxed
	numCanons
)

// sigInfo is one DKIM-Signature field: what we report of it and what its
// verification needs. It is filled by parseSignature from the field value
// alone; err is set when the field cannot be verified whatever the key says
// (RFC 6376 §6.1.1: PERMFAIL), and then the other verification fields may be
// incomplete.
type sigInfo struct {
	domain    string // d=, as written (FWS removed)
	selector  string // s=
	algorithm string // a=, lowercased
	auid      string // i=
	b         string // b=, FWS removed
	hasL      bool   // l= present

	err error // a permanent error found in the field itself

	field      int    // index of the field in DKIMVerifier.fields
	value      string // the field value as received
	headers    string // h=, as written
	keyAlgo    string // "rsa" or "ed25519", from a=
	headerCan  canon
	bodyCan    canon
	bodyHash   []byte // bh=, decoded
	sig        []byte // b=, decoded
	keyName    string // selector._domainkey.domain
	needsKey   bool   // err == nil: the key decides
	hashesBody bool   // needsKey && !hasL: the body is hashed for it
}

// Static signature errors. The texts follow go-msgauth's where it had one,
// so that reasons in Authentication-Results do not change.
var (
	errSigVersion  = errors.New("incompatible signature version")
	errSigFrom     = errors.New("From field not signed")
	errSigDomain   = errors.New("domain mismatch: i= is not d= or a subdomain of it")
	errSigExpired  = errors.New("signature has expired")
	errSigXBeforeT = errors.New("signature expires (x=) before it was made (t=)")
	errSigQuery    = errors.New("unsupported public key query method")
	errSigAlgo     = errors.New("malformed algorithm name")
	errSigSHA1     = errors.New("hash algorithm too weak: sha1")
	errSigHash     = errors.New("unsupported hash algorithm")
	errSigKeyAlgo  = errors.New("unsupported key algorithm")
	errSigHeaderC  = errors.New("unsupported header canonicalization algorithm")
	errSigBodyC    = errors.New("unsupported body canonicalization algorithm")
)

// Known tags of the signature, as bits for the required-tag check.
const (
	tagV = 1 << iota
	tagA
	tagB
	tagBH
	tagD
	tagH
	tagS
	tagRequired = tagV | tagA | tagB | tagBH | tagD | tagH | tagS
)

var requiredTagNames = [...]string{"v", "a", "b", "bh", "d", "h", "s"}

// parseSignature reads a DKIM-Signature value (RFC 6376 §3.5) and applies
// every check that does not need the key, at time now.
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.5
func parseSignature(value string, now time.Time) sigInfo {
	s := sigInfo{value: value}
	var v, a, c, q, bh, t, x string
	var hasI, hasT, hasX, hasQ, hasC bool
	present := 0
	it := tagIter{rest: value}
	var seen tagSeen
	for {
		name, val, ok, err := it.next()
		if err == nil && ok {
			err = seen.add(name)
		}
		if err != nil {
			// RFC 6376 §6.1.1: a signature that does not parse is PERMFAIL.
			s.err = errors.New("malformed signature tags: " + err.Error())
			// Keep what was read for the report, as far as it went.
			return s
		}
		if !ok {
			break
		}
		switch name {
		case "v":
			v, present = val, present|tagV
		case "a":
			a, present = val, present|tagA
			s.algorithm = strings.ToLower(stripFWS(val))
		case "b":
			s.b, present = stripFWS(val), present|tagB
		case "bh":
			bh, present = val, present|tagBH
		case "c":
			c, hasC = val, true
		case "d":
			s.domain, present = stripFWS(val), present|tagD
		case "h":
			s.headers, present = val, present|tagH
		case "i":
			s.auid, hasI = stripFWS(val), true
		case "l":
			s.hasL = true
		case "q":
			q, hasQ = val, true
		case "s":
			s.selector, present = stripFWS(val), present|tagS
		case "t":
			t, hasT = val, true
		case "x":
			x, hasX = val, true
		}
	}
	s.err = s.check(present, v, a, c, q, bh, t, x, hasI, hasT, hasX, hasQ, hasC, now)
	s.needsKey = s.err == nil
	s.hashesBody = s.needsKey && !s.hasL
	if s.needsKey {
		s.keyName = s.selector + "._domainkey." + s.domain
	}
	return s
}

// check applies the checks of RFC 6376 §6.1.1 and RFC 8301 in go-msgauth's
// order, so that a field with several faults gets the same reason.
// https://datatracker.ietf.org/doc/html/rfc6376#section-6.1.1
// https://datatracker.ietf.org/doc/html/rfc8301
func (s *sigInfo) check(present int, v, a, c, q, bh, t, x string, hasI, hasT, hasX, hasQ, hasC bool, now time.Time) error {
	// RFC 6376 §6.1.1: a v= other than "1" is incompatible: PERMFAIL.
	if v != "1" {
		return errSigVersion
	}
	if present&tagRequired != tagRequired {
		for i, n := range requiredTagNames {
			if present&(1<<i) == 0 {
				// RFC 6376 §6.1.1: a required tag is missing: PERMFAIL.
				return errors.New("signature missing required tag " + n + "=")
			}
		}
	}
	if hasI && !auidWithin(s.auid, s.domain) {
		// RFC 6376 §6.1.1: the i= domain must be d= or a subdomain of it,
		// compared without regard to case (domain names).
		return errSigDomain
	}
	from := false
	listItems(s.headers, func(n string) bool {
		from = strings.EqualFold(n, "from")
		return !from
	})
	if !from {
		// RFC 6376 §6.1.1: "If the "h=" tag does not include the From header
		// field, the Verifier MUST ignore the DKIM-Signature header field".
		return errSigFrom
	}
	var ts, xs int64
	if hasT {
		var ok bool
		if ts, ok = parseTimestamp(t); !ok {
			return errors.New("malformed time: t=" + truncate(t, 20))
		}
	}
	if hasX {
		var ok bool
		if xs, ok = parseTimestamp(x); !ok {
			return errors.New("malformed expiration time: x=" + truncate(x, 20))
		}
		if now.Unix() > xs {
			// RFC 6376 §3.5 x=: "Signatures MAY be considered invalid if the
			// verification time at the Verifier is past the expiration date".
			return errSigExpired
		}
		if hasT && xs < ts {
			// RFC 6376 §3.5 x=: "the "x=" tag MUST be greater than the "t="
			// tag if both are present".
			return errSigXBeforeT
		}
	}
	if hasQ {
		dnsTXT := false
		listItems(q, func(m string) bool {
			dnsTXT = m == "dns/txt"
			return !dnsTXT
		})
		if !dnsTXT {
			// RFC 6376 §3.5 q=: dns/txt is the only method defined.
			return errSigQuery
		}
	}
	if err := s.checkAlgorithm(); err != nil {
		return err
	}
	return s.checkEncodings(c, bh, hasC)
}

// checkAlgorithm reads a= (RFC 6376 §3.5, RFC 8301, RFC 8463) into keyAlgo.
// Shared with the ARC signatures, which take a= from DKIM.
func (s *sigInfo) checkAlgorithm() error {
	keyAlgo, hashAlgo, ok := strings.Cut(s.algorithm, "-")
	if !ok {
		return errSigAlgo
	}
	switch hashAlgo {
	case "sha256":
	case "sha1":
		// RFC 8301 §3.1: verifiers "MUST NOT consider signatures using RSA
		// SHA-1 to be valid": PERMFAIL, the signature is not evaluated.
		// https://datatracker.ietf.org/doc/html/rfc8301#section-3.1
		return errSigSHA1
	default:
		return errSigHash
	}
	switch keyAlgo {
	case "rsa", "ed25519": // RFC 8463 §3: ed25519-sha256 (https://datatracker.ietf.org/doc/html/rfc8463#section-3)
		s.keyAlgo = keyAlgo
	default:
		return errSigKeyAlgo
	}
	return nil
}

// checkEncodings reads c=, bh= and b=. Shared with the ARC-Message-Signature,
// which takes these tags from DKIM.
func (s *sigInfo) checkEncodings(c, bh string, hasC bool) error {
	s.headerCan, s.bodyCan = canonSimple, canonSimple
	if hasC {
		hc, bc, hasBody := strings.Cut(stripFWS(c), "/")
		var ok bool
		if hc != "" {
			if s.headerCan, ok = parseCanon(hc); !ok {
				return errSigHeaderC
			}
		}
		if hasBody {
			if s.bodyCan, ok = parseCanon(bc); !ok {
				return errSigBodyC
			}
		}
	}
	var err error
	if s.bodyHash, err = decodeB64(bh); err != nil {
		return errors.New("malformed body hash: " + err.Error())
	}
	if s.sig, err = base64.StdEncoding.DecodeString(s.b); err != nil {
		return errors.New("malformed signature: " + err.Error())
	}
	return nil
}

func parseCanon(s string) (canon, bool) {
	switch {
	case strings.EqualFold(s, "simple"):
		return canonSimple, true
	case strings.EqualFold(s, "relaxed"):
		return canonRelaxed, true
	}
	return 0, false
}

// auidWithin reports whether the domain of i= (after its last "@") is d= or
// a subdomain of d=, ignoring case and a trailing dot.
func auidWithin(auid, d string) bool {
	at := strings.LastIndexByte(auid, '@')
	if at < 0 {
		return false // RFC 6376 §3.5 i=: [ Local-part ] "@" domain-name
	}
	dom := strings.TrimSuffix(auid[at+1:], ".")
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return false
	}
	if len(dom) == len(d) {
		return strings.EqualFold(dom, d)
	}
	return len(dom) > len(d) && dom[len(dom)-len(d)-1] == '.' && strings.EqualFold(dom[len(dom)-len(d):], d)
}

// parseTimestamp reads a t= or x= value: 1*12DIGIT (RFC 6376 §3.5), FWS
// removed.
func parseTimestamp(s string) (int64, bool) {
	s = stripFWS(s)
	if s == "" || len(s) > 12 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// decodeB64 decodes a base64 tag value with FWS removed.
func decodeB64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(stripFWS(s))
}

// removeBValue returns the signature field value with the value of its b=
// tag removed (RFC 6376 §3.7: "the value of the "b=" tag (including all
// surrounding whitespace) is deleted (i.e., treated as the empty string)").
// Everything else, folding included, is kept as received.
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.7
func removeBValue(value string) (before, after string) {
	pos := 0
	for pos <= len(value) {
		end := strings.IndexByte(value[pos:], ';')
		if end < 0 {
			end = len(value)
		} else {
			end += pos
		}
		spec := value[pos:end]
		if eq := strings.IndexByte(spec, '='); eq >= 0 && trimFWS(spec[:eq]) == "b" {
			return value[:pos+eq+1], value[end:]
		}
		pos = end + 1
	}
	return value, ""
}
