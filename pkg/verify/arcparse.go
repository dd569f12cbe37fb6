package verify

import (
	"errors"
	"strings"
	"time"
)

// The three ARC header fields (RFC 8617 §4.1). Names are compared without
// regard to case, as all header field names are.
// https://datatracker.ietf.org/doc/html/rfc8617#section-4.1
const (
	FieldARCSeal                  = "ARC-Seal"
	FieldARCMessageSignature      = "ARC-Message-Signature"
	FieldARCAuthenticationResults = "ARC-Authentication-Results"
)

// MaxARCInstance is the highest instance an ARC set may have (RFC 8617
// §4.2.1: "Instance tag values can range from 1-50 (inclusive)").
// https://datatracker.ietf.org/doc/html/rfc8617#section-4.2.1
const MaxARCInstance = 50

// arcKind tells the three ARC header fields apart.
type arcKind uint8

const (
	arcNone arcKind = iota
	arcAAR
	arcAMS
	arcAS
)

// arcFieldKind returns the kind of the header field called name, or arcNone.
func arcFieldKind(name string) arcKind {
	switch {
	case strings.EqualFold(name, FieldARCSeal):
		return arcAS
	case strings.EqualFold(name, FieldARCMessageSignature):
		return arcAMS
	case strings.EqualFold(name, FieldARCAuthenticationResults):
		return arcAAR
	}
	return arcNone
}

// Errors of the ARC field parsers. They end up as text in ARCResult.Reason;
// the chain result itself is typed (ARCFailure).
var (
	errARCInstance    = errors.New("malformed instance tag")
	errARCRange       = errors.New("instance out of range 1-50")
	errARCNoInstance  = errors.New("missing instance tag i=")
	errARCCV          = errors.New("malformed cv= value")
	errARCSealH       = errors.New("h= is not allowed in an ARC-Seal")
	errARCSignsSeal   = errors.New("ARC-Message-Signature signs ARC-Seal")
	errAARNoSemicolon = errors.New("missing ';' after the instance tag")
)

// parsePosition reads position = 1*2DIGIT (RFC 8617 §3.9), FWS around it
// already removed, and checks the range 1-50. An instance out of range comes
// back with its value and errARCRange.
// https://datatracker.ietf.org/doc/html/rfc8617#section-3.9
func parsePosition(s string) (int, error) {
	if len(s) < 1 || len(s) > 2 || !isDigit(s[0]) || (len(s) == 2 && !isDigit(s[1])) {
		return 0, errARCInstance
	}
	n := int(s[0] - '0')
	if len(s) == 2 {
		n = n*10 + int(s[1]-'0')
	}
	if n < 1 || n > MaxARCInstance {
		// RFC 8617 §4.2.1: instance values range from 1 to 50.
		return n, errARCRange
	}
	return n, nil
}

// parseAARInstance splits an ARC-Authentication-Results value into its
// instance and the authres-payload after the semicolon (RFC 8617 §4.1.1:
// arc-info = instance [CFWS] ";" authres-payload; RFC 8617 §3.9: instance =
// [CFWS] %s"i" [CFWS] "=" [CFWS] position).
// https://datatracker.ietf.org/doc/html/rfc8617#section-4.1.1
func parseAARInstance(value string) (instance int, payload string, err error) {
	s, err := skipCFWS(value)
	if err != nil {
		return 0, "", err
	}
	if !strings.HasPrefix(s, "i") { // %s"i": case-sensitive
		return 0, "", errARCNoInstance
	}
	if s, err = skipCFWS(s[1:]); err != nil {
		return 0, "", err
	}
	if !strings.HasPrefix(s, "=") {
		return 0, "", errARCNoInstance
	}
	if s, err = skipCFWS(s[1:]); err != nil {
		return 0, "", err
	}
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	if instance, err = parsePosition(s[:n]); err != nil {
		return instance, "", err
	}
	if s, err = skipCFWS(s[n:]); err != nil {
		return 0, "", err
	}
	if !strings.HasPrefix(s, ";") {
		return 0, "", errAARNoSemicolon
	}
	return instance, s[1:], nil
}

var errARCComment = errors.New("unterminated comment")

// skipCFWS skips folding white space and comments (RFC 5322 §3.2.2: nested
// parentheses, quoted-pairs inside) at the start of s.
// https://datatracker.ietf.org/doc/html/rfc5322#section-3.2.2
func skipCFWS(s string) (string, error) {
	for {
		s = trimFWSLeft(s)
		if !strings.HasPrefix(s, "(") {
			return s, nil
		}
		depth := 0
		i := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if depth != 0 || i >= len(s) {
			return "", errARCComment
		}
		s = s[i+1:]
	}
}

func trimFWSLeft(s string) string {
	i := 0
	for i < len(s) && isFWS(s[i]) {
		i++
	}
	return s[i:]
}

// arcTags is the tag list of an ARC-Message-Signature or ARC-Seal: the tags
// of RFC 6376 §3.5 that ARC takes, and the instance. present says which
// were there.
type arcTags struct {
	i, a, b, bh, c, cv, d, h, s, t, x string
	present                           uint16
}

const (
	atI = 1 << iota
	atA
	atB
	atBH
	atC
	atCV
	atD
	atH
	atS
	atT
	atX
	atL
)

// parseARCTags reads a tag-list (RFC 6376 §3.2, with its rules on syntax and
// duplicates) and keeps the tags ARC uses; others are ignored (RFC 6376
// §3.2: "Unrecognized tags MUST be ignored"; RFC 8617 §4.1.2: a v= in an
// ARC-Message-Signature "MUST be ignored").
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.2
func parseARCTags(value string) (arcTags, error) {
	var t arcTags
	if emptyTagSpec(value) {
		// RFC 6376 §3.2: tag-list = tag-spec *( ";" tag-spec ) [ ";" ]:
		// only the last semicolon may be followed by nothing. The DKIM
		// tag reader skips empty specs; for ARC the suite (and dkimpy)
		// refuse them.
		return t, errors.New("malformed tags: empty tag-spec")
	}
	it := tagIter{rest: value}
	var seen tagSeen
	for {
		name, val, ok, err := it.next()
		if err == nil && ok {
			err = seen.add(name)
		}
		if err != nil {
			return t, errors.New("malformed tags: " + err.Error())
		}
		if !ok {
			return t, nil
		}
		var dst *string
		var bit uint16
		switch name {
		case "i":
			dst, bit = &t.i, atI
		case "a":
			dst, bit = &t.a, atA
		case "b":
			dst, bit = &t.b, atB
		case "bh":
			dst, bit = &t.bh, atBH
		case "c":
			dst, bit = &t.c, atC
		case "cv":
			dst, bit = &t.cv, atCV
		case "d":
			dst, bit = &t.d, atD
		case "h":
			dst, bit = &t.h, atH
		case "s":
			dst, bit = &t.s, atS
		case "t":
			dst, bit = &t.t, atT
		case "x":
			dst, bit = &t.x, atX
		case "l":
			t.present |= atL
			continue
		default:
			continue
		}
		*dst = val
		t.present |= bit
	}
}

// emptyTagSpec reports whether the tag list has an empty tag-spec (only
// FWS) before its last semicolon, or at its start.
func emptyTagSpec(value string) bool {
	for {
		spec, rest, more := strings.Cut(value, ";")
		if !more {
			return false
		}
		if trimFWS(spec) == "" {
			return true
		}
		value = rest
	}
}

// instance reads the i= tag of an ARC-Message-Signature or ARC-Seal.
func (t *arcTags) instance() (int, error) {
	if t.present&atI == 0 {
		return 0, errARCNoInstance
	}
	return parsePosition(stripFWS(t.i))
}

// missing returns an error naming the first of the required tags (at*
// bits) that is absent, or nil.
func (t *arcTags) missing(required uint16) error {
	for i, n := range arcTagNames {
		if required&(1<<i) != 0 && t.present&(1<<i) == 0 {
			return errors.New("missing required tag " + n + "=")
		}
	}
	return nil
}

// The tag names in the order of the at* bits, for missing.
var arcTagNames = [...]string{"i", "a", "b", "bh", "c", "cv", "d", "h", "s", "t", "x", "l"}

// ChainValidation is the chain validation status of RFC 8617 §4.4: the cv=
// value of an ARC-Seal, and the result of validating a chain (the
// Authentication-Results method "arc", RFC 8617 §10.1).
// https://datatracker.ietf.org/doc/html/rfc8617#section-4.4
type ChainValidation string

// The chain validation statuses.
const (
	ChainNone ChainValidation = "none"
	ChainPass ChainValidation = "pass"
	ChainFail ChainValidation = "fail"
)

// parseCV reads a cv= value (RFC 8617 §3.9: chain-status = ("none" / "fail"
// / "pass")). It takes the lower-case forms only, as dkimpy does: ABNF
// strings would allow "Pass", which no sealer is known to write, and a
// chain that cannot be read fails, which is the safe side.
func parseCV(s string) (ChainValidation, error) {
	switch cv := ChainValidation(stripFWS(s)); cv {
	case ChainNone, ChainPass, ChainFail:
		return cv, nil
	}
	return "", errARCCV
}

// sealInfo is one ARC-Seal: what the chain check needs of it.
type sealInfo struct {
	cv        ChainValidation
	domain    string // d=, FWS removed
	selector  string // s=
	algorithm string // a=, lowercased
	keyAlgo   string // "rsa" or "ed25519"
	sig       []byte // b=, decoded
	keyName   string
	err       error // the seal cannot be verified (RFC 8617 §5.2 step 6: fail)
}

// parseSeal reads an ARC-Seal value (RFC 8617 §4.1.3) whose instance and
// cv= were read already.
// https://datatracker.ietf.org/doc/html/rfc8617#section-4.1.3
func parseSeal(t *arcTags) sealInfo {
	si := sealInfo{
		domain:    stripFWS(t.d),
		selector:  stripFWS(t.s),
		algorithm: strings.ToLower(stripFWS(t.a)),
	}
	si.err = si.check(t)
	if si.err == nil {
		si.keyName = si.selector + "._domainkey." + si.domain
	}
	return si
}

func (si *sealInfo) check(t *arcTags) error {
	// RFC 8617 §4.1.3: the tags of the seal are i, a, b, d, s, t and cv.
	if err := t.missing(atI | atA | atB | atCV | atD | atS); err != nil {
		return err
	}
	if t.present&atH != 0 {
		// RFC 8617 §4.1.3: "the DKIM "h" tag is NOT allowed and if found,
		// MUST result in a cv status of "fail"".
		return errARCSealH
	}
	if err := checkARCCommon(t, si.domain, si.selector); err != nil {
		return err
	}
	// The algorithm rules are DKIM's: rsa-sha256 or ed25519-sha256.
	s := sigInfo{algorithm: si.algorithm}
	if err := s.checkAlgorithm(); err != nil {
		return err
	}
	si.keyAlgo = s.keyAlgo
	var err error
	if si.sig, err = decodeB64(t.b); err != nil || len(si.sig) == 0 {
		return errors.New("malformed signature b=")
	}
	return nil
}

// checkARCCommon checks d=, s= and t= as RFC 6376 §3.5 defines them.
func checkARCCommon(t *arcTags, domain, selector string) error {
	if domain == "" || !queryableName(domain) {
		return errors.New("malformed d=")
	}
	if selector == "" || !queryableName(selector) {
		return errors.New("malformed s=")
	}
	if t.present&atT != 0 {
		if _, ok := parseTimestamp(t.t); !ok {
			return errors.New("malformed time: t=" + truncate(t.t, 20))
		}
	}
	return nil
}

// parseAMS reads an ARC-Message-Signature value (RFC 8617 §4.1.2: "the same
// syntax and semantics as the DKIM-Signature field", without v= and with
// the instance in i=) into a sigInfo, which the DKIM code hashes and
// checks: the body hash (dkimbody.go), the header hash (headerHash) and the
// key (dkimKey.fits). field is the index of the field in the header list.
// https://datatracker.ietf.org/doc/html/rfc8617#section-4.1.2
func parseAMS(t *arcTags, field int, now time.Time) sigInfo {
	s := sigInfo{
		domain:    stripFWS(t.d),
		selector:  stripFWS(t.s),
		algorithm: strings.ToLower(stripFWS(t.a)),
		b:         stripFWS(t.b),
		headers:   t.h,
		field:     field,
	}
	s.err = checkAMS(&s, t, now)
	s.needsKey = s.err == nil
	s.hashesBody = s.needsKey
	if s.needsKey {
		s.keyName = s.selector + "._domainkey." + s.domain
	}
	return s
}

func checkAMS(s *sigInfo, t *arcTags, now time.Time) error {
	// RFC 6376 §6.1.1 required tags, with i= for the instance (RFC 8617
	// §4.1.2).
	if err := t.missing(atI | atA | atB | atBH | atD | atH | atS); err != nil {
		return err
	}
	if err := checkARCCommon(t, s.domain, s.selector); err != nil {
		return err
	}
	signsSeal := false
	listItems(s.headers, func(n string) bool {
		signsSeal = strings.EqualFold(n, FieldARCSeal)
		return !signsSeal
	})
	if signsSeal {
		// RFC 8617 §4.1.2: ARC-related header fields "MUST NOT be included
		// in the list of header fields covered by the signature of the AMS
		// header field". An ARC-Seal in h= is refused: the seals of later
		// sets would break the signature, and dkimpy refuses it too. The
		// other two ARC fields are accepted (the ARC test suite signs the
		// ARC-Authentication-Results).
		return errARCSignsSeal
	}
	if t.present&atL != 0 {
		// RFC 6376 §8.2: l= lets anyone append to the body. The DKIM
		// verifier reports such a signature as "policy"; a chain cannot be
		// half valid, so an AMS with l= does not verify.
		return errors.New("body length limit l= not accepted")
	}
	if t.present&atX != 0 {
		xs, ok := parseTimestamp(t.x)
		if !ok {
			return errors.New("malformed expiration time: x=" + truncate(t.x, 20))
		}
		if now.Unix() > xs {
			// RFC 6376 §3.5 x=: signatures past x= may be considered invalid.
			return errSigExpired
		}
	}
	if err := s.checkAlgorithm(); err != nil {
		return err
	}
	if err := s.checkEncodings(t.c, t.bh, t.present&atC != 0); err != nil {
		return err
	}
	if len(s.sig) == 0 {
		return errors.New("malformed signature b=")
	}
	if len(s.bodyHash) == 0 {
		return errors.New("malformed body hash bh=")
	}
	return nil
}
