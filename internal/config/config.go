// Package config holds the daemon's settings: one TOML file decoded strictly
// into Config, with every default defined in code (Default) so that the daemon
// runs with no file at all.
//
// Loading goes parse → validate. An unknown key is an error that names the key
// and its line, so a typo never silently falls back to a default. Each field's
// doc comment carries its default; docs/config.md and deploy/dmarc-milter.toml
// are generated from these comments (go generate ./internal/config), and a
// test fails when either is stale or when a comment's "Default:" disagrees
// with Default().
//
// The local policy keys (mode, actions.reject_policy, actions.temperror,
// dmarc.discovery, dmarc.from) use pkg/policy's types, which parse and
// validate their own values; LocalPolicy maps the file onto
// policy.LocalPolicy, whose defaults Default takes.
package config

//go:generate go test -run TestGeneratedFiles -update .

import (
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// Config is the whole configuration file.
type Config struct {
	// Listen is the milter socket: "inet:HOST:PORT", "inet6:[HOST]:PORT"
	// or "unix:PATH" (the Postfix smtpd_milters syntax).
	// Default: "inet:127.0.0.1:8894"
	Listen string `toml:"listen"`

	// AuthservID is the authserv-id written into our Authentication-Results
	// header and matched (case-insensitively) to delete forged ones. Empty
	// means the MTA's host name from the milter macro j, or the host name of
	// this machine when the MTA does not send j.
	// Default: ""
	AuthservID string `toml:"authserv_id"`

	// Mode is "enforce" (apply the actions below) or "monitor" (evaluate,
	// write Authentication-Results, log and count what would have been done,
	// never reject, hold or tempfail because of DMARC).
	// Default: "enforce"
	Mode policy.Mode `toml:"mode"`

	// LogLevel is the minimum level logged: "debug", "info", "warn" or
	// "error". One INFO "verdict" line is logged per message.
	// Default: "info"
	LogLevel string `toml:"log_level"`

	// OnError is what happens to a message when the milter itself fails (a
	// recovered panic): "tempfail" or "accept".
	// Default: "tempfail"
	OnError ErrorAction `toml:"on_error"`

	// TrustedNetworks are client networks (CIDR or single address) whose mail
	// passes untouched: not evaluated, no Authentication-Results added and
	// none deleted (so mail re-injected by a local content filter keeps ours).
	// Default: ["127.0.0.0/8", "::1/128"]
	TrustedNetworks []Network `toml:"trusted_networks"`

	// Socket holds the permissions of a unix: listen socket.
	Socket Socket `toml:"socket"`

	// Actions maps DMARC outcomes to what the milter does.
	Actions Actions `toml:"actions"`

	// DMARC holds the policy discovery settings and the indirect-flow hints.
	DMARC DMARC `toml:"dmarc"`

	// Allowlist exempts mail from DMARC enforcement (it is still evaluated
	// and gets an Authentication-Results header).
	Allowlist Allowlist `toml:"allowlist"`

	// DNS configures the caching resolver used for every lookup.
	DNS DNS `toml:"dns"`

	// SPF holds the SPF evaluation limits.
	SPF SPF `toml:"spf"`

	// DKIM holds the DKIM verification limits.
	DKIM DKIM `toml:"dkim"`

	// Timeouts bound every step. They must stay well below Postfix's
	// milter_command_timeout (30s) and milter_content_timeout (300s).
	Timeouts Timeouts `toml:"timeouts"`

	// Metrics configures the Prometheus listener.
	Metrics Metrics `toml:"metrics"`

	// Runtime tunes the Go runtime's memory management.
	Runtime Runtime `toml:"runtime"`

	// Intake takes in the aggregate reports other receivers send about our
	// domains (docs/intake.md).
	Intake Intake `toml:"intake"`

	// Web is the read-only dashboard (docs/dashboard.md).
	Web Web `toml:"web"`
}

// Runtime tunes the Go garbage collector. The environment variables GOGC and
// GOMEMLIMIT, when set, take precedence over these settings.
type Runtime struct {
	// GCPercent is the garbage collector's target (GOGC): the heap may grow
	// by this percentage over the live heap before a collection. The
	// daemon's live heap is small (a few MB), so a higher target trades a
	// few MB of memory for much less collection work per message (see
	// docs/performance.md). -1 disables the percentage target, leaving only
	// memory_limit_mb to trigger collections.
	// Default: 400
	GCPercent int `toml:"gc_percent"`

	// MemoryLimitMB is the soft memory limit (GOMEMLIMIT) in MiB: near it the
	// collector works harder, whatever gc_percent says. 0 means no limit.
	// Default: 512
	MemoryLimitMB int `toml:"memory_limit_mb"`
}

// Socket holds the permissions of a unix-domain listen socket.
type Socket struct {
	// Mode is the octal file mode of the socket.
	// Default: "0660"
	Mode string `toml:"mode"`

	// Group is the group the socket is given (for Postfix, usually
	// "postfix"). Empty keeps the daemon's group.
	// Default: ""
	Group string `toml:"group"`
}

// Actions maps DMARC outcomes to milter actions.
type Actions struct {
	// RejectPolicy is how a DMARC failure under p=reject is handled:
	// "reject", "quarantine", or "reject-unless-indirect" (reject, but
	// quarantine when the message shows signs of an indirect flow: mailing
	// list headers or a trusted forwarder), following RFC 9989's advice not to
	// reject solely because of p=reject.
	// Default: "reject-unless-indirect"
	RejectPolicy policy.RejectHandling `toml:"reject_policy"`

	// QuarantineMethod is how p=quarantine (or a downgraded reject) is
	// applied: "header" (deliver with the marker header and the A-R result
	// for a Sieve rule), "hold" (the Postfix hold queue), or "both".
	// Default: "header"
	QuarantineMethod QuarantineMethod `toml:"quarantine_method"`

	// QuarantineHeader is the marker header added (with value "yes") to
	// quarantined mail when QuarantineMethod is "header" or "both"; incoming
	// copies of it are always deleted. Empty disables the marker (the
	// Authentication-Results policy.dmarc=quarantine remains).
	// Default: "X-DMARC-Quarantine"
	QuarantineHeader string `toml:"quarantine_header"`

	// TempError is what happens when a temporary DNS failure leaves the
	// outcome open and the published policy would matter: "tempfail" or
	// "accept" (with dmarc=temperror in Authentication-Results).
	// Default: "tempfail"
	TempError policy.TempErrorHandling `toml:"temperror"`

	// RejectReply is the SMTP reply for a DMARC reject. "{domain}" is
	// replaced by the From: domain. The enhanced status code's first digit
	// must match the reply code (Postfix checks it).
	// Default: "550 5.7.1 Email rejected per DMARC policy for {domain}"
	RejectReply string `toml:"reject_reply"`

	// TempFailReply is the SMTP reply for a DMARC temperror tempfail.
	// Default: "451 4.7.5 Temporary DMARC evaluation failure for {domain}, try again later"
	TempFailReply string `toml:"tempfail_reply"`

	// ErrorReply is the SMTP reply when OnError is "tempfail".
	// Default: "451 4.3.0 Temporary local error, try again later"
	ErrorReply string `toml:"error_reply"`
}

// DMARC holds policy discovery settings.
type DMARC struct {
	// Discovery is how the policy and organizational domain are found:
	// "treewalk" (RFC 9989 DNS tree walk) or "psl" (RFC 7489 Public Suffix
	// List).
	// Default: "treewalk"
	Discovery policy.Method `toml:"discovery"`

	// TrustedForwarders are client networks (CIDR or address) of hosts that
	// forward mail to us (a list server, an alias host). Their mail is
	// delivered even when it fails DMARC (reported as the trusted_forwarder
	// override).
	// Default: []
	TrustedForwarders []Network `toml:"trusted_forwarders"`

	// TrustedForwarderDKIMDomains are DKIM signing domains (d=) of trusted
	// forwarders: a passing signature with exactly this d= has the same
	// effect as a trusted forwarder's address.
	// Default: []
	TrustedForwarderDKIMDomains []string `toml:"trusted_forwarder_dkim_domains"`

	// IgnorePct disables pct= sampling (RFC 9989 made pct historic; RFC
	// 7489 §6.6.4 honours it).
	// Default: false
	IgnorePct bool `toml:"ignore_pct"`

	// From sets the handling of irregular From: header fields.
	From FromHandling `toml:"from"`
}

// FromHandling maps irregular From: fields to outcomes. "evaluate" applies
// DMARC to every Author Domain and keeps the strictest result; "reject",
// "quarantine" and "accept" decide without evaluation (accept and reject
// with dmarc=permerror).
type FromHandling struct {
	// MultipleFields is the outcome for more than one From: field:
	// "evaluate", "reject", "quarantine" or "accept".
	// Default: "evaluate"
	MultipleFields policy.FromOutcome `toml:"multiple_fields"`

	// MultipleDomains is the outcome for mailboxes of several domains:
	// "evaluate", "reject", "quarantine" or "accept".
	// Default: "evaluate"
	MultipleDomains policy.FromOutcome `toml:"multiple_domains"`

	// TooManyDomains is the outcome for more than max_domains domains:
	// "reject" (no DMARC evaluation), "quarantine" (the first max_domains
	// domains are evaluated, and the message is quarantined at least) or
	// "accept" (no DMARC evaluation; delivered).
	// Default: "reject"
	TooManyDomains policy.FromOutcome `toml:"too_many_domains"`

	// NoMailbox is the outcome for From: fields without any mailbox (an
	// empty group): "reject", "quarantine" or "accept".
	// Default: "reject"
	NoMailbox policy.FromOutcome `toml:"no_mailbox"`

	// Missing is the outcome for a message without From: (Postfix normally
	// adds one from the envelope): "reject", "quarantine" or "accept".
	// Default: "reject"
	Missing policy.FromOutcome `toml:"missing"`

	// Unparseable is the outcome for a From: field that is not RFC 5322
	// syntax: "reject", "quarantine" or "accept".
	// Default: "reject"
	Unparseable policy.FromOutcome `toml:"unparseable"`

	// MaxDomains bounds the Author Domains looked up and evaluated per
	// message (RFC 9989 §11.5: bounded work on hostile input).
	// Default: 5
	MaxDomains int `toml:"max_domains"`
}

// Allowlist exempts mail from DMARC enforcement.
type Allowlist struct {
	// Networks are client networks (CIDR or address) whose mail is never
	// rejected, held or tempfailed for DMARC; it is still evaluated and gets
	// an Authentication-Results header.
	// Default: []
	Networks []Network `toml:"networks"`

	// FromDomains are From: domains (and their subdomains) whose failing
	// mail is delivered (reported as the local_policy override). The From:
	// header is chosen by the sender, so this lets forgeries of these
	// domains through.
	// Default: []
	FromDomains []string `toml:"from_domains"`
}

// DNS configures the caching resolver.
type DNS struct {
	// Nameservers are "host:port" (or "host", port 53) recursive resolvers.
	// Empty means the nameservers of /etc/resolv.conf.
	// Default: []
	Nameservers []string `toml:"nameservers"`

	// Timeout is the time allowed for one query to one nameserver.
	// Default: "2s"
	Timeout time.Duration `toml:"timeout"`

	// Attempts is the number of tries of one query, rotating across the
	// nameservers.
	// Default: 2
	Attempts int `toml:"attempts"`

	// MinTTL is the minimum time an answer is cached.
	// Default: "30s"
	MinTTL time.Duration `toml:"min_ttl"`

	// MaxTTL is the maximum time a positive answer is cached.
	// Default: "1h0m0s"
	MaxTTL time.Duration `toml:"max_ttl"`

	// MaxNegativeTTL is the maximum time a negative answer (NXDOMAIN, no
	// data) is cached (RFC 2308).
	// Default: "15m0s"
	MaxNegativeTTL time.Duration `toml:"max_negative_ttl"`

	// ErrorTTL is how long a temporary failure (SERVFAIL, timeout) is
	// remembered, to spare the nameservers during bursts. Zero disables.
	// Default: "1s"
	ErrorTTL time.Duration `toml:"error_ttl"`

	// CacheSize is the maximum number of cached answers.
	// Default: 50000
	CacheSize int `toml:"cache_size"`

	// ServeStale is how long past its expiry an answer may still be served
	// while the nameservers fail (RFC 8767). Zero disables serve-stale.
	// Default: "1h0m0s"
	ServeStale time.Duration `toml:"serve_stale"`
}

// SPF holds the SPF limits.
type SPF struct {
	// LookupLimit is the maximum number of DNS-querying terms (RFC 7208
	// §4.6.4).
	// Default: 10
	LookupLimit int `toml:"lookup_limit"`

	// VoidLookupLimit is the maximum number of lookups that return no
	// answer (RFC 7208 §4.6.4).
	// Default: 2
	VoidLookupLimit int `toml:"void_lookup_limit"`

	// CheckHelo also checks the HELO identity (RFC 7208 §2.3), reported as
	// a separate spf result with smtp.helo.
	// Default: true
	CheckHelo bool `toml:"check_helo"`
}

// DKIM holds the DKIM limits.
type DKIM struct {
	// MaxSignatures is the maximum number of DKIM-Signature fields verified
	// per message; later ones are ignored.
	// Default: 5
	MaxSignatures int `toml:"max_signatures"`
}

// Timeouts bound every step of a message.
type Timeouts struct {
	// SPF bounds the SPF checks (started at MAIL FROM).
	// Default: "10s"
	SPF time.Duration `toml:"spf"`

	// DKIM bounds the DKIM key lookups (started at the end of the header).
	// Default: "10s"
	DKIM time.Duration `toml:"dkim"`

	// DMARC bounds policy discovery (started at the From: header).
	// Default: "10s"
	DMARC time.Duration `toml:"dmarc"`

	// EndOfMessage is the longest the milter waits at end of message for
	// the checks still running; what is unfinished then is a temperror.
	// Must be below Postfix's milter_content_timeout (300s).
	// Default: "20s"
	EndOfMessage time.Duration `toml:"end_of_message"`

	// Idle closes a milter connection on which the MTA sent nothing for
	// this long.
	// Default: "10m0s"
	Idle time.Duration `toml:"idle"`

	// Drain is how long SIGTERM waits for messages in flight before closing
	// the remaining connections.
	// Default: "30s"
	Drain time.Duration `toml:"drain"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is "host:port" for the HTTP listener serving /metrics. Empty
	// disables it.
	// Default: ""
	Listen string `toml:"listen"`

	// Pprof also serves /debug/pprof/ on the metrics listener.
	// Default: false
	Pprof bool `toml:"pprof"`
}
