package health

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// RSA key sizes (RFC 8301 §3.2, https://datatracker.ietf.org/doc/html/rfc8301#section-3.2).
const (
	// RSAMinBits: verifiers MUST NOT accept shorter keys.
	RSAMinBits = 1024
	// RSAGoodBits: signers SHOULD use at least this size.
	RSAGoodBits = 2048
)

// DKIMResult is the check of one selector's key record (RFC 6376 §3.6.1,
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.6.1).
type DKIMResult struct {
	Verdict  Verdict   `json:"verdict"`
	Line     string    `json:"line"`
	Findings []Finding `json:"findings"`
	Selector string    `json:"selector"`
	// Name is <selector>._domainkey.<domain>.
	Name   string `json:"name"`
	Record string `json:"record,omitempty"`
	// KeyType is "rsa", "ed25519", or the unknown k= value.
	KeyType string `json:"key_type,omitempty"`
	// Bits is the RSA modulus size (256 for Ed25519).
	Bits     int      `json:"bits,omitempty"`
	Testing  bool     `json:"testing"`
	Strict   bool     `json:"strict"`
	Revoked  bool     `json:"revoked"`
	Hashes   []string `json:"hashes,omitempty"`
	Services []string `json:"services,omitempty"`
}

// checkDKIM fetches and judges the key record of one selector.
func checkDKIM(ctx context.Context, r Resolver, domain, selector string) DKIMResult {
	f := newFindings()
	res := DKIMResult{Selector: selector, Name: selector + "._domainkey." + domain}
	if !ValidSelector(selector) || !queryable(res.Name) {
		// RFC 6376 §3.1: a selector is one or more dot-separated sub-domain labels
		f.add(CodeDKIMBadSelector, Fail, "RFC 6376 §3.1", res.Name, "%q is not a valid selector", selector)
		res.Line = "invalid selector"
		res.Verdict, res.Findings = f.verdict, f.list
		return res
	}
	rec, ok := fetchKey(ctx, r, res.Name, f)
	if !ok {
		res.Line = f.list[len(f.list)-1].Message
		res.Verdict, res.Findings = f.verdict, f.list
		return res
	}
	res.Record = rec
	judgeKey(&res, f)
	res.Verdict, res.Findings = f.verdict, f.list
	res.Line = dkimLine(res)
	return res
}

// fetchKey returns the single TXT record at name.
func fetchKey(ctx context.Context, r Resolver, name string, f *findings) (string, bool) {
	txts, err := r.LookupTXT(ctx, fqdn(name))
	switch o := classify(err); {
	case o == dnsFailed:
		// RFC 6376 §6.1.2: a key query that does not answer gives TEMPFAIL
		f.add(CodeDKIMTempError, Error, "RFC 6376 §6.1.2", name, "the key lookup failed: %v", err)
		return "", false
	case o == dnsNotFound || len(txts) == 0:
		// RFC 6376 §6.1.2: no key record: signatures with this selector fail (PERMFAIL)
		f.add(CodeDKIMNoKey, Fail, "RFC 6376 §6.1.2", name, "no key record at %s: signatures with this selector fail", name)
		return "", false
	case len(txts) > 1:
		// RFC 6376 §3.6.2.2: several TXT records at a key name give undefined results
		f.add(CodeDKIMMultiple, Fail, "RFC 6376 §3.6.2.2", name, "%d TXT records at %s: verifiers may pick any, ours fails; keep one", len(txts), name)
		return "", false
	}
	return txts[0], true
}

// judgeKey reads the record and adds the findings about the key.
func judgeKey(res *DKIMResult, f *findings) {
	k, err := verify.ParseKeyRecord(res.Record)
	if err != nil {
		rule := "RFC 6376 §3.6.1"
		if !errors.Is(err, verify.ErrKeyVersion) {
			rule = "RFC 6376 §3.2" // the tag-list syntax, or p= that is not base64
		}
		f.add(CodeDKIMSyntax, Fail, rule, res.Name, "the key record is unusable: %v", err)
		return
	}
	res.Hashes, res.Services, res.Revoked = k.Hashes, k.Services, k.Revoked
	judgeFlags(res, k, f)
	if k.Revoked {
		// RFC 6376 §3.6.1 p=: an empty value means the key has been revoked
		f.add(CodeDKIMRevoked, Fail, "RFC 6376 §3.6.1", res.Name, "the key is revoked (empty p=): signatures with this selector fail; stop using the selector or publish a key")
		return
	}
	switch res.KeyType = k.KeyType; res.KeyType {
	case "", "rsa":
		res.KeyType = "rsa"
		judgeRSA(res, k.PublicKey, f)
	case "ed25519":
		res.Bits = 256
		if len(k.PublicKey) != ed25519.PublicKeySize {
			// RFC 8463 §4: the Ed25519 public key is the 32 octets themselves
			f.add(CodeDKIMSyntax, Fail, "RFC 8463 §4", res.Name, "an Ed25519 key must be 32 octets, this one has %d", len(k.PublicKey))
			return
		}
		// RFC 8463 §4: k=ed25519 keys; verifiers that predate RFC 8463 ignore such signatures
		f.add(CodeDKIMKey, OK, "RFC 8463 §4", res.Name, "Ed25519 key; verifiers without RFC 8463 support ignore its signatures, so sign with an RSA key as well")
	default:
		// RFC 6376 §6.1.2: a key of an unknown type cannot verify: PERMFAIL
		f.add(CodeDKIMKeyType, Fail, "RFC 6376 §3.6.1", res.Name, "unknown key type k=%s: no verifier can use it", res.KeyType)
	}
}

// judgeRSA checks the size of an RSA key.
func judgeRSA(res *DKIMResult, der []byte, f *findings) {
	bits, err := verify.RSAKeyBits(der)
	if err != nil {
		f.add(CodeDKIMSyntax, Fail, "RFC 6376 §3.6.1", res.Name, "p= is not an RSA public key: %v", err)
		return
	}
	res.Bits = bits
	switch {
	case bits < RSAMinBits:
		// RFC 8301 §3.2: verifiers MUST NOT consider signatures using RSA keys of less than 1024 bits as valid
		f.add(CodeDKIMRSATooShort, Fail, "RFC 8301 §3.2", res.Name, "RSA key of %d bits: under %d bits, signatures are not valid; publish a %d-bit key", bits, RSAMinBits, RSAGoodBits)
	case bits < RSAGoodBits:
		// RFC 8301 §3.2: signers SHOULD use RSA keys of at least 2048 bits
		f.add(CodeDKIMRSAWeak, Warn, "RFC 8301 §3.2", res.Name, "RSA key of %d bits: weak; move to a %d-bit key", bits, RSAGoodBits)
	default:
		f.add(CodeDKIMKey, OK, "RFC 8301 §3.2", res.Name, "RSA key of %d bits", bits)
	}
}

// judgeFlags checks t=, h= and s=.
func judgeFlags(res *DKIMResult, k *verify.KeyRecord, f *findings) {
	for _, fl := range k.Flags {
		switch fl {
		case "y":
			res.Testing = true
			// RFC 6376 §3.6.1 t=y: the domain is testing DKIM; verifiers MUST NOT treat its mail differently from unsigned mail
			f.add(CodeDKIMTesting, Warn, "RFC 6376 §3.6.1", res.Name, "t=y (testing): verifiers treat signed mail as unsigned; remove t=y once signing works")
		case "s":
			res.Strict = true
			// RFC 6376 §3.6.1 t=s: the i= domain must equal d= exactly
			f.add(CodeDKIMStrict, OK, "RFC 6376 §3.6.1", res.Name, "t=s: signatures must not use a subdomain in i=")
		}
	}
	if k.Hashes != nil && !containsFold(k.Hashes, "sha256") {
		// RFC 8301 §3.1: rsa-sha1 MUST NOT be used; a key restricted to other hashes cannot verify sha256 signatures
		f.add(CodeDKIMHashes, Fail, "RFC 8301 §3.1", res.Name, "h=%s does not allow sha256: signatures verifiers accept cannot use this key", strings.Join(k.Hashes, ":"))
	}
	if k.Services != nil && !containsFold(k.Services, "email") && !containsFold(k.Services, "*") {
		// RFC 6376 §3.6.1 s=: a key whose service types do not include email cannot verify mail
		f.add(CodeDKIMService, Fail, "RFC 6376 §3.6.1", res.Name, "s=%s does not include email: the key cannot verify mail", strings.Join(k.Services, ":"))
	}
}

// ValidSelector reports whether s is a DKIM selector: labels of letters,
// digits and hyphens, separated by dots (RFC 6376 §3.1 selector =
// sub-domain *( "." sub-domain )).
func ValidSelector(s string) bool {
	if s == "" {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !isLetter(c) && !(c >= '0' && c <= '9') && c != '-' {
				return false
			}
		}
	}
	return true
}

// dkimLine is the one-line verdict.
func dkimLine(res DKIMResult) string {
	switch {
	case res.Revoked:
		return "revoked key"
	case res.KeyType == "":
		return "unusable key record"
	}
	key := res.KeyType
	if res.Bits > 0 {
		key = fmt.Sprintf("%s %d bits", res.KeyType, res.Bits)
	}
	if res.Testing {
		key += ", testing (t=y)"
	}
	return key + "; " + countSummary(res.Findings)
}
