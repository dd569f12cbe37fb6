package verify

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"net"
	"strings"
	"sync"
)

// keyInfo is what we learn from a DKIM key record (RFC 6376 §3.6.1) beyond
// what go-msgauth reports: the key size and the t= flags.
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.6.1
type keyInfo struct {
	bits    int
	testing bool // t=y
	strict  bool // t=s
}

// parseKeyInfo reads a key record. It returns ok=false when the record does
// not parse; go-msgauth then reports the error itself.
func parseKeyInfo(rec string) (keyInfo, bool) {
	tags, err := parseTagList(rec)
	if err != nil {
		return keyInfo{}, false
	}
	var ki keyInfo
	for _, f := range strings.Split(tags["t"], ":") {
		switch strings.TrimSpace(f) {
		case "y":
			ki.testing = true
		case "s":
			ki.strict = true
		}
	}
	raw, err := base64.StdEncoding.DecodeString(stripFWS(tags["p"]))
	if err != nil || len(raw) == 0 {
		return ki, true
	}
	switch strings.ToLower(stripFWS(tags["k"])) {
	case "", "rsa":
		ki.bits = rsaBits(raw)
	case "ed25519":
		if len(raw) == ed25519.PublicKeySize {
			ki.bits = 256 // RFC 8463 §3: a 32-octet public key
		}
	}
	return ki, true
}

// rsaBits is the modulus size of a SubjectPublicKeyInfo or PKCS#1 RSA key
// (go-msgauth accepts both, RFC 6376 erratum 3017), 0 if neither parses.
func rsaBits(der []byte) int {
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		if k, ok := pub.(*rsa.PublicKey); ok {
			return k.N.BitLen()
		}
		return 0
	}
	if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return k.N.BitLen()
	}
	return 0
}

// keyRecorder is the LookupTXT hook given to go-msgauth: it binds the
// lookups to the message's context, refuses names that cannot be queried,
// and keeps the answers so that the key of each signature can be examined
// after verification. go-msgauth calls it from one goroutine per signature.
type keyRecorder struct {
	ctx context.Context
	r   TXTResolver

	mu      sync.Mutex
	answers map[string][]string // lowercased name → TXT records
}

// lookup is the go-msgauth VerifyOptions.LookupTXT hook. Errors are returned
// unwrapped: go-msgauth classifies them with a type assertion to net.Error.
func (k *keyRecorder) lookup(name string) ([]string, error) {
	if !queryableName(name) {
		// RFC 6376 §6.1.2: a key that cannot be retrieved is PERMFAIL.
		return nil, &net.DNSError{Err: "invalid key name", Name: name, IsNotFound: true}
	}
	txts, err := k.r.LookupTXT(k.ctx, name)
	if err == nil {
		k.mu.Lock()
		if k.answers == nil {
			k.answers = map[string][]string{}
		}
		k.answers[strings.ToLower(strings.TrimSuffix(name, "."))] = txts
		k.mu.Unlock()
	}
	return txts, err
}

// key returns what the key record of selector s at domain d says, when
// exactly one record was fetched and it parses.
func (k *keyRecorder) key(s, d string) (keyInfo, bool) {
	k.mu.Lock()
	// Keyed as lookup stored it: lowercase, without a trailing dot (d= may
	// carry one).
	txts, ok := k.answers[strings.ToLower(strings.TrimSuffix(s+"._domainkey."+d, "."))]
	k.mu.Unlock()
	if !ok || len(txts) != 1 {
		return keyInfo{}, false
	}
	return parseKeyInfo(txts[0])
}

// queryableName reports whether name can be sent as a DNS query: at most 253
// octets, labels of 1 to 63 octets, no whitespace or control characters.
func queryableName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] == 0x7f {
			return false
		}
	}
	return true
}
