package mailout

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// StartTLS says whether STARTTLS is required on an smtp:// relay.
type StartTLS string

// The STARTTLS policies.
const (
	// StartTLSOpportunistic (the default): use STARTTLS when the relay
	// offers it, as an MTA does; continue without TLS when it is not
	// offered or refused.
	StartTLSOpportunistic StartTLS = "opportunistic"
	// StartTLSRequired: do not send without TLS.
	StartTLSRequired StartTLS = "required"
)

// Verify says whether the relay's certificate is verified.
type Verify string

// The certificate verification policies.
const (
	// VerifyAuto (the default): verify for smtps://, for required
	// STARTTLS and whenever AUTH is used; not for opportunistic STARTTLS,
	// where an unverified TLS session is still better than plain text.
	VerifyAuto Verify = ""
	VerifyYes  Verify = "yes"
	VerifyNo   Verify = "no"
)

// Default timeouts: the client timeouts of RFC 5321 §4.5.3.2 (a relay may
// be slow under load); the caller's context bounds the whole session.
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultCommandTimeout = 5 * time.Minute  // RFC 5321 §4.5.3.2.1-3: greeting, MAIL, RCPT
	DefaultDataTimeout    = 10 * time.Minute // RFC 5321 §4.5.3.2.6: DATA termination
	DefaultRelay          = "smtp://localhost:25"
)

// ClientOptions configure a Client. They have the shape of the [report]
// settings; the zero value sends to the local MTA on port 25.
type ClientOptions struct {
	// Relay is "smtp://host[:port]" (port 25 by default; STARTTLS per
	// StartTLS) or "smtps://host[:port]" (implicit TLS, port 465 by
	// default). Empty: DefaultRelay. No user or password in the URL.
	Relay string
	// HeloName is the EHLO argument. Empty: the host name.
	HeloName string
	// StartTLS applies to smtp:// only. Empty: StartTLSOpportunistic.
	StartTLS StartTLS
	// TLSVerify: see Verify. Empty: VerifyAuto.
	TLSVerify Verify
	// CAFile is a PEM file of the certificates that verify the relay,
	// instead of the system's roots.
	CAFile string
	// Username enables AUTH PLAIN, over TLS only; PasswordFile holds the
	// password (first line) and must not be accessible to other users.
	Username     string
	PasswordFile string
	// Timeouts per step; zero means the default. Each step also ends with
	// the context given to Send.
	ConnectTimeout, CommandTimeout, DataTimeout time.Duration
}

// ErrConfig is wrapped by every error of NewClient.
var ErrConfig = errors.New("mailout: client configuration")

// Client sends messages to one relay. It is safe for concurrent use; each
// Send opens its own connection. The password is read once, by NewClient:
// make a new Client to pick up a changed password file.
type Client struct {
	addr        string // host:port
	host        string
	implicitTLS bool
	requireTLS  bool
	tls         *tls.Config
	helo        string
	username    string
	password    string
	connectTO   time.Duration
	commandTO   time.Duration
	dataTO      time.Duration
}

// NewClient checks opts and returns a Client. It reads the password and CA
// files now, so that a configuration error shows at start, not at the first
// report.
func NewClient(opts ClientOptions) (*Client, error) {
	c := &Client{
		username:  opts.Username,
		connectTO: orDefault(opts.ConnectTimeout, DefaultConnectTimeout),
		commandTO: orDefault(opts.CommandTimeout, DefaultCommandTimeout),
		dataTO:    orDefault(opts.DataTimeout, DefaultDataTimeout),
	}
	var err error
	if c.host, c.addr, c.implicitTLS, err = parseRelay(opts.Relay); err != nil {
		return nil, err
	}
	switch opts.StartTLS {
	case "", StartTLSOpportunistic:
	case StartTLSRequired:
		c.requireTLS = !c.implicitTLS
	default:
		return nil, fmt.Errorf("%w: starttls %q: want %q or %q", ErrConfig, opts.StartTLS, StartTLSOpportunistic, StartTLSRequired)
	}
	if c.helo, err = heloName(opts.HeloName); err != nil {
		return nil, err
	}
	if err := c.setAuth(opts); err != nil {
		return nil, err
	}
	if c.tls, err = c.tlsConfig(opts); err != nil {
		return nil, err
	}
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// parseRelay parses the relay URL.
func parseRelay(relay string) (host, addr string, implicitTLS bool, err error) {
	if relay == "" {
		relay = DefaultRelay
	}
	u, err := url.Parse(relay)
	if err != nil {
		return "", "", false, fmt.Errorf("%w: relay %q: %v", ErrConfig, relay, err)
	}
	port := "25"
	switch u.Scheme {
	case "smtp":
	case "smtps":
		implicitTLS, port = true, "465" // RFC 8314 §7.3: port 465 is "submissions", Implicit TLS
	default:
		return "", "", false, fmt.Errorf("%w: relay %q: scheme must be smtp or smtps", ErrConfig, relay)
	}
	if u.User != nil {
		return "", "", false, fmt.Errorf("%w: relay %q: no credentials in the URL (use username and password_file)", ErrConfig, relay)
	}
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Hostname() == "" {
		return "", "", false, fmt.Errorf("%w: relay %q: want %s://host[:port]", ErrConfig, relay, u.Scheme)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", "", false, fmt.Errorf("%w: relay %q: bad port", ErrConfig, relay)
		}
		port = p
	}
	return u.Hostname(), net.JoinHostPort(u.Hostname(), port), implicitTLS, nil
}

// heloName returns the EHLO argument: name, or the host name. RFC 5321
// §4.1.1.1: a domain name (or an address literal).
func heloName(name string) (string, error) {
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("%w: helo name: %v", ErrConfig, err)
		}
		name = h
	}
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") && net.ParseIP(strings.TrimPrefix(name[1:len(name)-1], "IPv6:")) != nil {
		return name, nil
	}
	n, err := policy.NormalizeDomain(name)
	if err != nil {
		return "", fmt.Errorf("%w: helo name %q is not a domain name or address literal", ErrConfig, name)
	}
	return n, nil
}

func (c *Client) setAuth(opts ClientOptions) error {
	if opts.Username == "" {
		if opts.PasswordFile != "" {
			return fmt.Errorf("%w: password_file without username", ErrConfig)
		}
		return nil
	}
	if strings.ContainsAny(opts.Username, "\x00\r\n") {
		return fmt.Errorf("%w: username with a control character", ErrConfig)
	}
	pw, err := readPasswordFile(opts.PasswordFile)
	if err != nil {
		return fmt.Errorf("%w: password_file: %w", ErrConfig, err)
	}
	c.password = pw
	return nil
}

// tlsConfig builds the TLS client configuration and decides whether the
// certificate is verified.
func (c *Client) tlsConfig(opts ClientOptions) (*tls.Config, error) {
	verify := c.implicitTLS || c.requireTLS || c.username != ""
	switch opts.TLSVerify {
	case VerifyAuto:
	case VerifyYes:
		verify = true
	case VerifyNo:
		verify = false
	default:
		return nil, fmt.Errorf("%w: tls_verify %q: want %q or %q", ErrConfig, opts.TLSVerify, VerifyYes, VerifyNo)
	}
	cfg := &tls.Config{ServerName: c.host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: !verify}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: ca_file: %v", ErrConfig, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: ca_file %s: no PEM certificate", ErrConfig, opts.CAFile)
		}
	}
	return cfg, nil
}

// Verifies reports whether the relay's certificate is verified.
func (c *Client) Verifies() bool { return !c.tls.InsecureSkipVerify }

// Addr is the relay's host:port.
func (c *Client) Addr() string { return c.addr }
