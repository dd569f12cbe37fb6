package verify

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
)

// dkimKey is a parsed DKIM key record (RFC 6376 §3.6.1). A record that
// cannot be used has err set (permerror) and nothing else.
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.6.1
type dkimKey struct {
	err     error
	algo    string // "rsa" or "ed25519"
	rsa     *rsa.PublicKey
	ed      ed25519.PublicKey
	bits    int
	hashes  string // h=, "" when absent (all hash algorithms)
	hasH    bool
	email   bool // s= absent, or lists email or *
	testing bool // t=y
	strict  bool // t=s
}

// parseKey reads a key record. The error texts follow go-msgauth's.
func parseKey(rec string) *dkimKey {
	bad := func(msg string) *dkimKey { return &dkimKey{err: errors.New(msg)} }
	it := tagIter{rest: rec}
	var seen tagSeen
	tags := map[string]string{}
	first := true
	for {
		name, value, ok, err := it.next()
		if err == nil && ok {
			err = seen.add(name)
		}
		if err != nil {
			return bad("key record error: " + err.Error())
		}
		if !ok {
			break
		}
		if name == "v" && !first {
			// RFC 6376 §3.6.1 v=: "If specified, this tag MUST be set to
			// "DKIM1" ... This tag MUST be the first tag in the record."
			return bad("key record error: v= is not the first tag")
		}
		first = false
		tags[name] = value
	}
	if v, ok := tags["v"]; ok && v != "DKIM1" {
		// RFC 6376 §3.6.1: records with another v= "MUST be discarded".
		return bad("incompatible public key version")
	}
	p, ok := tags["p"]
	if !ok {
		return bad("key syntax error: missing public key data")
	}
	if p = stripFWS(p); p == "" {
		// RFC 6376 §3.6.1 p=: "An empty value means that this public key
		// has been revoked": PERMFAIL (§6.1.2).
		return bad("key revoked")
	}
	raw, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return bad("key syntax error: " + err.Error())
	}
	k := &dkimKey{email: true}
	switch kt := stripFWS(tags["k"]); {
	case kt == "" || strings.EqualFold(kt, "rsa"):
		pub, err := parseRSAKey(raw)
		if err != nil {
			return bad("key syntax error: " + err.Error())
		}
		k.algo, k.rsa, k.bits = "rsa", pub, pub.N.BitLen()
		if k.bits < 1024 {
			// RFC 8301 §3.2: "Verifiers MUST NOT consider signatures using
			// RSA keys of less than 1024 bits as valid signatures."
			// https://datatracker.ietf.org/doc/html/rfc8301#section-3.2
			return bad(fmt.Sprintf("key is too short: want 1024 bits, has %d bits", k.bits))
		}
	case strings.EqualFold(kt, "ed25519"):
		// RFC 8463 §4: the public key is the 32 octets themselves.
		// https://datatracker.ietf.org/doc/html/rfc8463#section-4
		if len(raw) != ed25519.PublicKeySize {
			return bad(fmt.Sprintf("invalid Ed25519 public key size: %d bytes", len(raw)))
		}
		k.algo, k.ed, k.bits = "ed25519", ed25519.PublicKey(raw), 256
	default:
		// RFC 6376 §6.1.2: an unknown k= makes the key unusable: PERMFAIL.
		return bad("unsupported key algorithm")
	}
	k.hashes, k.hasH = tags["h"]
	if s, ok := tags["s"]; ok {
		k.email = false
		listItems(s, func(svc string) bool {
			k.email = svc == "*" || strings.EqualFold(svc, "email")
			return !k.email
		})
	}
	listItems(tags["t"], func(f string) bool {
		switch f {
		case "y":
			k.testing = true
		case "s":
			k.strict = true
		}
		return true
	})
	return k
}

// parseRSAKey reads a SubjectPublicKeyInfo or, failing that, a PKCS#1 RSA
// public key (RFC 6376 erratum 3017 allows both).
func parseRSAKey(der []byte) (*rsa.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return x509.ParsePKCS1PublicKey(der)
	}
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("not an RSA public key")
	}
	return k, nil
}

// fits checks that the key may verify signature s (RFC 6376 §6.1.2, §3.6.1).
func (k *dkimKey) fits(s *sigInfo) error {
	if k.hasH {
		ok := false
		listItems(k.hashes, func(h string) bool {
			ok = strings.EqualFold(h, "sha256")
			return !ok
		})
		if !ok {
			// RFC 6376 §3.6.1 h=: the hash algorithm must be one listed.
			return errors.New("inappropriate hash algorithm")
		}
	}
	if k.algo != s.keyAlgo {
		// RFC 6376 §6.1.2: a key of another type than a= says: PERMFAIL.
		return errors.New("inappropriate key algorithm")
	}
	if !k.email {
		return errors.New("inappropriate service")
	}
	return nil
}

// dkimKeys keeps parsed keys by record text (parsing an RSA key costs
// microseconds and allocations): 1024 records of at most 4 KiB of text (an
// RSA-4096 key record is about 750 octets), so at most a few MB. A longer
// record is parsed every time.
const (
	maxCachedKeys   = 1024
	maxCachedKeyLen = 4 << 10
)

var dkimKeys = newTextMemo[*dkimKey](maxCachedKeys, maxCachedKeyLen)

// keyJob is the lookup of one key name for the signatures that use it.
type keyJob struct {
	name   string
	key    *dkimKey
	res    Result // "" when key is set; else temperror or permerror
	reason string
}

// fetchKeys looks up every job's key under ctx, one after the other, and
// sends nil on done when finished (or the value of a panic).
func fetchKeys(ctx context.Context, r TXTResolver, jobs []keyJob, done chan<- any) {
	defer func() { done <- recover() }()
	for i := range jobs {
		lookupKey(ctx, r, &jobs[i])
	}
}

var errInvalidKeyName = errors.New("invalid key name")

// lookupKey fetches and parses the key of j.name (RFC 6376 §6.1.2).
func lookupKey(ctx context.Context, r TXTResolver, j *keyJob) {
	if !queryableName(j.name) {
		j.setAnswer(nil, errInvalidKeyName)
		return
	}
	txts, err := r.LookupTXT(ctx, j.name)
	j.setAnswer(txts, err)
}

// setAnswer classifies the answer to the key query of j.
func (j *keyJob) setAnswer(txts []string, err error) {
	switch {
	case errors.Is(err, errInvalidKeyName):
		// RFC 6376 §6.1.2: a key that cannot be retrieved is PERMFAIL.
		j.res, j.reason = ResultPermError, "no key for signature: invalid key name"
	case err != nil && temporaryDNSError(err):
		// RFC 6376 §6.1.2: "If the query for the public key fails to
		// respond, the Verifier MAY seek a later verification attempt by
		// returning TEMPFAIL".
		j.res, j.reason = ResultTempError, "key unavailable: "+err.Error()
	case err != nil:
		j.res, j.reason = ResultPermError, "no key for signature: "+err.Error()
	case len(txts) == 0:
		j.res, j.reason = ResultPermError, "no valid key found"
	case len(txts) > 1:
		// RFC 6376 §3.6.2.2: several TXT records give undefined results;
		// none is chosen.
		j.res, j.reason = ResultPermError, "multiple TXT records found for key"
	default:
		j.key = dkimKeys.get(txts[0], parseKey)
		if j.key.err != nil {
			j.res, j.reason = ResultPermError, j.key.err.Error()
			j.key = nil
		}
	}
}

// temporaryDNSError: a timeout, a SERVFAIL (IsTemporary) or the end of the
// message's context. NXDOMAIN and other answers are permanent.
func temporaryDNSError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.IsTimeout || de.IsTemporary
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// queryableName reports whether name can be sent as a DNS query: at most 253
// octets, labels of 1 to 63 octets, no whitespace or control characters.
func queryableName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c == 0x7f {
			return false
		}
		if c == '.' {
			if label == 0 {
				return false
			}
			label = 0
			continue
		}
		if label++; label > 63 {
			return false
		}
	}
	return label > 0
}
