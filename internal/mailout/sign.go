package mailout

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/textproto"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// SignerOptions configure a Signer: the [report] DKIM settings.
type SignerOptions struct {
	// Domain is the signing domain (d=). It must align with the domain of
	// the report's From address (the same Organizational Domain).
	Domain string
	// Selector is s=: the key is published at
	// <selector>._domainkey.<domain>.
	Selector string
	// KeyFile is a PEM file with the private key: RSA ("RSA PRIVATE KEY",
	// PKCS #1, or "PRIVATE KEY", PKCS #8) of at least 1024 bits, or Ed25519
	// (PKCS #8). It must not be accessible to other users.
	KeyFile string
}

// Errors of the Signer.
var (
	// ErrSignerConfig is wrapped by every error of NewSigner.
	ErrSignerConfig = errors.New("mailout: DKIM signer configuration")
	// ErrNotAligned: the message's From domain does not align with the
	// signing domain, so the signature could not make it pass DMARC.
	ErrNotAligned = errors.New("mailout: From domain not aligned with the DKIM signing domain")
	// ErrMessage: the message has no header, or not exactly one From
	// field with one address.
	ErrMessage = errors.New("mailout: message cannot be signed")
)

// minRSABits is the smallest RSA key accepted: RFC 8301 §3.2 "Signers MUST
// use RSA keys of at least 1024 bits".
const minRSABits = 1024

// signedHeaders are the fields the signature covers: those RFC 9990 §3.5.2
// makes part of a report message, and the MIME fields that say how to read
// it. From is listed twice and the others once more than a report has them
// (RFC 6376 §5.4.2: a name listed beyond its instances signs their
// absence), so that no second From, Subject, To... can be added in transit
// without breaking the signature.
var signedHeaders = []string{
	"From", "From",
	"To", "To",
	"Cc", "Cc",
	"Reply-To", "Reply-To",
	"Subject", "Subject",
	"Date", "Date",
	"Message-ID", "Message-ID",
	"MIME-Version", "MIME-Version",
	"Content-Type", "Content-Type",
	"Content-Transfer-Encoding", "Content-Transfer-Encoding",
	"Content-Disposition", "Content-Disposition",
}

// Signer adds a DKIM signature to report messages. It is safe for
// concurrent use.
type Signer struct {
	domain, selector string
	key              crypto.Signer
	org              string // the Organizational Domain of domain (PSL)
}

// NewSigner reads the key and checks the options.
func NewSigner(opts SignerOptions) (*Signer, error) {
	domain, err := policy.NormalizeDomain(opts.Domain)
	if err != nil {
		return nil, fmt.Errorf("%w: domain %q: %v", ErrSignerConfig, opts.Domain, err)
	}
	if opts.Selector == "" || strings.ContainsAny(opts.Selector, "; \t\r\n=") {
		return nil, fmt.Errorf("%w: selector %q", ErrSignerConfig, opts.Selector)
	}
	if _, err := policy.NormalizeDomain(opts.Selector + "._domainkey." + domain); err != nil {
		return nil, fmt.Errorf("%w: selector %q: %v", ErrSignerConfig, opts.Selector, err)
	}
	pemBytes, err := readSecretFile(opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: key_file: %w", ErrSignerConfig, err)
	}
	key, err := parsePrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: key_file %s: %w", ErrSignerConfig, opts.KeyFile, err)
	}
	org, _ := policy.OrgDomain(context.Background(), nil, domain, policy.MethodPSL, nil) // PSL: no DNS, no error for a valid name
	return &Signer{domain: domain, selector: opts.Selector, key: key, org: org}, nil
}

// parsePrivateKey accepts the first PEM block: PKCS #1 RSA or PKCS #8 RSA
// or Ed25519.
func parsePrivateKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch blk.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q: want RSA PRIVATE KEY or PRIVATE KEY", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if n := k.N.BitLen(); n < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, RFC 8301 §3.2 requires %d or more", n, minRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil // RFC 8463 §3: ed25519-sha256
	}
	return nil, fmt.Errorf("key type %T: want RSA or Ed25519", key)
}

// Domain is d=; Selector is s=.
func (s *Signer) Domain() string   { return s.domain }
func (s *Signer) Selector() string { return s.selector }

// Sign returns msg with a DKIM-Signature field first (go-msgauth's
// dkim.Sign, relaxed/relaxed, sha256). Line ends are made CRLF first, so
// the bytes returned are the bytes to send. The message must have exactly
// one From field with one address whose domain aligns with the signing
// domain (same Organizational Domain by the Public Suffix List): RFC 9990
// §3.5.2 requires the report message to pass DMARC, which needs an aligned
// signature; a receiver using the DNS tree walk may disagree for domains
// under a private registry, so use the From domain itself as d= to be safe.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	msg = toCRLF(msg)
	from, err := fromDomain(msg)
	if err != nil {
		return nil, err
	}
	if org, _ := policy.OrgDomain(context.Background(), nil, from, policy.MethodPSL, nil); org != s.org {
		return nil, fmt.Errorf("%w: From domain %s, d=%s", ErrNotAligned, from, s.domain) // RFC 9990 §3.5.2: the report MUST pass DMARC
	}
	var out bytes.Buffer
	out.Grow(len(msg) + 1024)
	err = dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{
		Domain:                 s.domain,
		Selector:               s.selector,
		Signer:                 s.key,
		Hash:                   crypto.SHA256, // RFC 8301 §3.1: sha256 (rsa-sha1 MUST NOT be used)
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             signedHeaders,
	})
	if err != nil {
		return nil, fmt.Errorf("mailout: DKIM signing: %w", err)
	}
	return out.Bytes(), nil
}

// fromDomain returns the domain of the single address of the single From
// field.
func fromDomain(msg []byte) (string, error) {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		return "", fmt.Errorf("%w: no end of header", ErrMessage)
	}
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg[:end+4]))).ReadMIMEHeader()
	if err != nil {
		return "", fmt.Errorf("%w: header: %v", ErrMessage, err)
	}
	a := policy.ParseFrom(h.Values("From"))
	if a.Problem != policy.FromOK || a.Fields != 1 || len(a.Mailboxes) != 1 {
		return "", fmt.Errorf("%w: want one From field with one address (%d fields, %d addresses, %v)", ErrMessage, a.Fields, len(a.Mailboxes), a.Err)
	}
	return a.Mailboxes[0].Domain, nil
}

// toCRLF turns bare LF and bare CR line ends into CRLF.
func toCRLF(b []byte) []byte {
	if !bytes.ContainsAny(b, "\r\n") || (bytes.Count(b, []byte("\r\n")) == bytes.Count(b, []byte("\n")) && bytes.Count(b, []byte("\r\n")) == bytes.Count(b, []byte("\r"))) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/32)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}
