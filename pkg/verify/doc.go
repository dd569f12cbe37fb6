// Package verify checks the two sender authentication methods that DMARC
// builds on, SPF and DKIM, and the ARC chains of forwarded mail, and reports
// their results as plain structs (SPFResult, DKIMResult, ARCResult) with the
// values of RFC 8601.
//
// SPF (RFC 7208) asks the domain of an envelope identity which IP addresses
// may send its mail: the domain publishes a TXT record such as
// "v=spf1 ip4:192.0.2.0/24 include:_spf.example.net -all", and the check
// walks it for the connecting IP. Two identities are checked separately:
// the MAIL FROM address (for a bounce, whose MAIL FROM is empty,
// postmaster@ the HELO name stands in) and the HELO name itself. DMARC uses
// the first; the second goes into the Authentication-Results header. The
// check is done by blitiri.com.ar/go/spf; this package adds the rules of
// RFC 7208 that it does not apply (syntax errors anywhere in a record,
// malformed domains, the HELO rules, long names) and the limits of §4.6.4.
//
// DKIM (RFC 6376) lets a domain sign a message: a DKIM-Signature header
// field holds a signature over chosen header fields and a hash of the body,
// made with a private key whose public half is published in DNS at
// <selector>._domainkey.<domain>. Verifying needs the header fields exactly
// as the signer saw them and the whole body. DKIMVerifier takes them as a
// milter receives them — header fields one by one, then the body in chunks —
// and starts fetching keys as soon as the header ends, so that by the end
// of the message only the final computation is left. The verification is
// this package's own: the tag lists, the checks of the signature field, the
// header and body canonicalizations (the body is canonicalized and hashed
// chunk by chunk, once per canonicalization whatever the number of
// signatures, and never buffered), the key records (parsed keys are cached
// by record text); the cryptography is the standard library's. RSA keys of
// at least 1024 bits with SHA-256, and Ed25519 (RFC 8463); rsa-sha1 is
// refused (RFC 8301). A signature that covers only part of the body (the l=
// tag) gives "policy". The tests check its verdicts against those of
// github.com/emersion/go-msgauth, the verifier it replaced (dkimdiff_test.go).
//
// ARC (RFC 8617) lets intermediaries that change mail, such as mailing
// lists, record how it was authenticated when it reached them: each one adds
// an ARC set, an ARC-Authentication-Results field with its assessment, an
// ARC-Message-Signature over the message (a DKIM signature with an instance
// number) and an ARC-Seal over the sets so far. ARCVerifier validates the
// chain of sets as the message streams through, like DKIMVerifier and with
// its canonicalization, body hashing and keys, and reports the chain status
// (none, pass, fail), the sealers and each set's assessment, which a local
// policy may take as evidence of an indirect flow when it trusts the
// sealers. The tests run the ValiMail ARC suite and compare with dkimpy's
// ARC implementation on chains it seals. This package verifies; it never
// seals.
//
// All DNS goes through a small interface (Resolver, TXTResolver) that the
// project's caching resolver (pkg/cache) and *net.Resolver satisfy, under the
// context of the message, whose deadline bounds every lookup. A temporary
// DNS failure gives temperror, never fail.
package verify
