package verify

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeyRecord is a DKIM key record (RFC 6376 §3.6.1,
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.6.1) read tag by tag, for
// callers that inspect keys rather than verify signatures with them
// (pkg/health). Unlike the verifier's own reading it keeps what it found
// when the key is unusable, so that the reason can be shown: a revoked key,
// an unknown key type, a short RSA key are all facts, not parse errors.
type KeyRecord struct {
	// Version is v= ("" when absent, which means DKIM1).
	Version string
	// KeyType is k= as published, lower-cased; "" when absent (rsa).
	KeyType string
	// Hashes is h= split at ':' (nil when absent: every hash algorithm).
	Hashes []string
	// Services is s= split at ':' (nil when absent: "*").
	Services []string
	// Flags is t= split at ':' ("y" testing, "s" strict).
	Flags []string
	// Revoked is an empty p= (RFC 6376 §3.6.1 p=).
	Revoked bool
	// PublicKey is p= decoded from base64; nil when revoked.
	PublicKey []byte
}

// Errors of ParseKeyRecord; callers classify them with errors.Is.
var (
	// ErrKeySyntax: the record is not a valid tag-list, or p= is missing
	// or is not base64.
	ErrKeySyntax = errors.New("verify: key record syntax error")
	// ErrKeyVersion: v= is not the first tag or is not "DKIM1".
	ErrKeyVersion = errors.New("verify: key record version")
)

// ParseKeyRecord reads one DKIM key record (the strings of its TXT record
// joined). It fails for a record that a verifier must discard as a whole;
// everything else is returned for the caller to judge.
func ParseKeyRecord(rec string) (*KeyRecord, error) {
	tags, err := parseTagList(rec) // RFC 6376 §3.2: a duplicate tag invalidates the whole list
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeySyntax, err)
	}
	k := &KeyRecord{}
	if v, ok := tags["v"]; ok {
		if firstTag(rec) != "v" || v != "DKIM1" {
			// RFC 6376 §3.6.1 v=: MUST be "DKIM1" and the first tag; else the record MUST be discarded.
			return nil, fmt.Errorf("%w: v=%s", ErrKeyVersion, v)
		}
		k.Version = v
	}
	p, ok := tags["p"]
	if !ok {
		return nil, fmt.Errorf("%w: no p= tag", ErrKeySyntax)
	}
	k.KeyType = strings.ToLower(stripFWS(tags["k"]))
	k.Hashes = colonList(tags, "h")
	k.Services = colonList(tags, "s")
	k.Flags = colonList(tags, "t")
	if p = stripFWS(p); p == "" {
		k.Revoked = true // RFC 6376 §3.6.1 p=: an empty value means that this public key has been revoked
		return k, nil
	}
	if k.PublicKey, err = base64.StdEncoding.DecodeString(p); err != nil {
		return nil, fmt.Errorf("%w: p= is not base64: %v", ErrKeySyntax, err)
	}
	return k, nil
}

// firstTag returns the name of the first tag of a valid tag-list.
func firstTag(rec string) string {
	it := tagIter{rest: rec}
	name, _, _, _ := it.next()
	return name
}

// colonList splits a tag's value at ':' (RFC 6376 §3.6.1 h=, s=, t=),
// dropping white space; nil when the tag is absent.
func colonList(tags map[string]string, name string) []string {
	v, ok := tags[name]
	if !ok {
		return nil
	}
	out := []string{}
	for item := range strings.SplitSeq(v, ":") {
		if item = stripFWS(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// RSAKeyBits returns the modulus size of an RSA public key in the forms a
// key record may hold (SubjectPublicKeyInfo, or PKCS#1 per RFC 6376 erratum
// 3017), or an error when der is neither.
func RSAKeyBits(der []byte) (int, error) {
	pub, err := parseRSAKey(der)
	if err != nil {
		return 0, err
	}
	return pub.N.BitLen(), nil
}
