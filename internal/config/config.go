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

//go:generate go test -run TestGeneratedFiles|TestManPageAndPackagedConfig -update .

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

	// Store is the database that keeps the aggregate-report rows, the
	// outcome counters and the state of the reports sent. It is opened only
	// when a setting needs it (report.enabled); otherwise the daemon writes
	// nothing to disk.
	Store Store `toml:"store"`

	// Report configures DMARC aggregate reports (RFC 9990): recording every
	// evaluated message and sending the daily reports to the domain owners.
	// See docs/reports.md.
	Report Report `toml:"report"`

	// Intake takes in the aggregate reports other receivers send about our
	// domains (docs/intake.md).
	Intake Intake `toml:"intake"`

	// Web is the read-only dashboard (docs/dashboard.md).
	Web Web `toml:"web"`
}

// Store names the report store.
type Store struct {
	// URL is "sqlite:PATH" (one file, for a single host) or
	// "postgres://USER@HOST/DB" (a PostgreSQL database that several MX hosts
	// share; key=value connection strings work too). Empty means the SQLite
	// file dmarc-milter.db in $STATE_DIRECTORY (set by systemd's
	// StateDirectory=), else /var/lib/dmarc-milter/dmarc-milter.db.
	// Default: ""
	URL string `toml:"url"`
}

// Report configures aggregate reporting.
type Report struct {
	// Enabled records every evaluated message into the store and (with
	// schedule "daemon") sends the reports. Changing it needs a restart.
	// Default: false
	Enabled bool `toml:"enabled"`

	// OrgName is the report's org_name: the name of the organization
	// sending the reports. Empty means the domain of from.
	// Default: ""
	OrgName string `toml:"org_name"`

	// Email is the report's email element: where a domain owner can write
	// about the reports. Empty means from.
	// Default: ""
	Email string `toml:"email"`

	// ExtraContactInfo is the report's optional extra_contact_info (a URL
	// or a phone number, for example).
	// Default: ""
	ExtraContactInfo string `toml:"extra_contact_info"`

	// From is the address the reports are sent from (header From and
	// envelope sender); its domain is the report's receiver in the file
	// name and Subject. Required when enabled. Mail to this address is not
	// recorded.
	// Default: ""
	From string `toml:"from"`

	// OwnAddresses are further addresses of ours that receive report mail
	// (the report intake, the bounce address of from): mail to them, and
	// mail from them, is not recorded.
	// Default: []
	OwnAddresses []string `toml:"own_addresses"`

	// Interval is the reporting period, aligned to 00:00 UTC: "1h", "2h",
	// "3h", "4h", "6h", "8h", "12h" or "24h".
	// Default: "24h0m0s"
	Interval time.Duration `toml:"interval"`

	// Grace is how long after a period's end its reports wait: at least
	// the flush interval of every host recording into the store, plus the
	// clock skew between them.
	// Default: "15m0s"
	Grace time.Duration `toml:"grace"`

	// MaxAge: periods that ended longer ago than this are never reported
	// (a reporter switched on after a long pause sends no old data).
	// Default: "72h0m0s"
	MaxAge time.Duration `toml:"max_age"`

	// Schedule says who sends the reports: "daemon" (serve sends them) or
	// "external" (a timer runs `dmarc-milter report send`; serve only
	// records).
	// Default: "daemon"
	Schedule string `toml:"schedule"`

	// SendWindow spreads the sends of one period over this time after it
	// closes (end + grace), so that a large receiver does not burst
	// thousands of messages into its relay at once. Each report gets a
	// stable delay within the window.
	// Default: "4h0m0s"
	SendWindow time.Duration `toml:"send_window"`

	// IncludeEnvelopeTo reports the recipient domains (envelope_to), which
	// tells third parties which of our domains receive mail.
	// Default: false
	IncludeEnvelopeTo bool `toml:"include_envelope_to"`

	// MaxReportSize bounds the XML of one report in bytes; records beyond
	// it (the lowest counts) are left out, and the report says so in its
	// error element.
	// Default: 10485760
	MaxReportSize int `toml:"max_report_size"`

	// MaxReportRows bounds the records of one report, in the same way.
	// Default: 50000
	MaxReportRows int `toml:"max_report_rows"`

	// DoNotReport are policy domains (and their subdomains) that get no
	// reports; their rows are still recorded.
	// Default: []
	DoNotReport []string `toml:"do_not_report"`

	// Relay is where reports are sent: "smtp://HOST[:PORT]" (port 25,
	// STARTTLS when offered) or "smtps://HOST[:PORT]" (implicit TLS, port
	// 465).
	// Default: "smtp://localhost:25"
	Relay string `toml:"relay"`

	// RelayUser enables SMTP AUTH PLAIN (over TLS only) with this user
	// name; the password is read from password_file.
	// Default: ""
	RelayUser string `toml:"relay_user"`

	// PasswordFile holds the relay password (first line). It must not be
	// readable by other users; the password never goes into this file.
	// Default: ""
	PasswordFile string `toml:"password_file"`

	// StartTLS is "opportunistic" (use STARTTLS when the relay offers it)
	// or "required" (never send without TLS) for smtp:// relays.
	// Default: "opportunistic"
	StartTLS string `toml:"starttls"`

	// TLSVerify is "auto" (verify the relay's certificate for smtps://,
	// required STARTTLS and AUTH), "yes" or "no".
	// Default: "auto"
	TLSVerify string `toml:"tls_verify"`

	// CAFile is a PEM file of the certificates that verify the relay,
	// instead of the system's roots.
	// Default: ""
	CAFile string `toml:"ca_file"`

	// HeloName is the EHLO name given to the relay. Empty means the host
	// name.
	// Default: ""
	HeloName string `toml:"helo_name"`

	// DKIMKeyFile is a PEM private key (RSA of 1024 bits or more, or
	// Ed25519) that signs the report messages, so that they pass DMARC at
	// their receivers (RFC 9990 §3.5.2). Empty sends them unsigned (the
	// relay may sign them).
	// Default: ""
	DKIMKeyFile string `toml:"dkim_key_file"`

	// DKIMSelector is the selector (s=) of the key, published at
	// SELECTOR._domainkey.DOMAIN.
	// Default: ""
	DKIMSelector string `toml:"dkim_selector"`

	// DKIMDomain is the signing domain (d=). Empty means the domain of
	// from; it must be in from's Organizational Domain.
	// Default: ""
	DKIMDomain string `toml:"dkim_domain"`

	// RetryFor is how long temporary send failures (4xx, connection
	// errors) are retried, with a backoff that doubles from retry_initial;
	// after it the destination has failed for good.
	// Default: "24h0m0s"
	RetryFor time.Duration `toml:"retry_for"`

	// RetryInitial is the first retry delay.
	// Default: "5m0s"
	RetryInitial time.Duration `toml:"retry_initial"`

	// SuppressFor puts a destination that refused a report permanently
	// (5xx) on the suppression list for this long.
	// Default: "168h0m0s"
	SuppressFor time.Duration `toml:"suppress_for"`

	// KeepRows is how long the aggregate rows are kept after their
	// period ended. 0 keeps them for ever.
	// Default: "720h0m0s"
	KeepRows time.Duration `toml:"keep_rows"`

	// KeepCounters is how long the outcome and loss counters are kept.
	// Default: "8760h0m0s"
	KeepCounters time.Duration `toml:"keep_counters"`

	// KeepSentReports is how long the records of finished reports (their
	// identity and delivery state) are kept.
	// Default: "2160h0m0s"
	KeepSentReports time.Duration `toml:"keep_sent_reports"`

	// QueueSize bounds the distinct rows waiting in memory for the store
	// (under 1 KB each); when it is full (the store slow or down), further
	// rows are counted as dropped. Changing it needs a restart.
	// Default: 100000
	QueueSize int `toml:"queue_size"`

	// FlushInterval is how often the recorder writes its queue to the
	// store; a crash (kill -9) loses at most this much recording.
	// Default: "2s"
	FlushInterval time.Duration `toml:"flush_interval"`
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
	// "reject", "quarantine", or "reject-unless-indirect" (reject, unless
	// the message shows signs of an indirect flow: mailing list headers
	// count as one only under this setting), following RFC 9989's advice
	// not to reject solely because of p=reject. What an indirect flow
	// changes is indirect_flow.
	// Default: "reject-unless-indirect"
	RejectPolicy policy.RejectHandling `toml:"reject_policy"`

	// IndirectFlow is what evidence of an indirect flow does to a message
	// that fails DMARC under p=reject or p=quarantine: "quarantine"
	// (p=reject is handled as quarantine; p=quarantine stays quarantine) or
	// "deliver" (delivered as if the policy were none). The evidence is,
	// in this order: a client in dmarc.trusted_forwarders, a passing DKIM
	// signature by one of dmarc.trusted_forwarder_dkim_domains, a valid ARC
	// chain from dmarc.trusted_arc_sealers, and, under reject_policy =
	// "reject-unless-indirect" and p=reject only, mailing list headers
	// (List-Id, List-Post). List headers are written by the sender: with
	// "deliver", a forged List-Id delivers a forged p=reject message, so
	// pair "deliver" with reject_policy = "reject" or "quarantine" unless
	// that is acceptable. The override is logged in the verdict line's
	// reason (trusted-forwarder-network, trusted-forwarder-dkim,
	// trusted-arc-sealer, list-headers) and reported as trusted_forwarder
	// or mailing_list.
	// Default: "quarantine"
	IndirectFlow policy.IndirectHandling `toml:"indirect_flow"`

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
	// forward mail to us (a list server, an alias host). Their mail, when it
	// fails DMARC, is handled as actions.indirect_flow says (reported as the
	// trusted_forwarder override).
	// Default: []
	TrustedForwarders []Network `toml:"trusted_forwarders"`

	// TrustedForwarderDKIMDomains are DKIM signing domains (d=) of trusted
	// forwarders: a passing signature with exactly this d= has the same
	// effect as a trusted forwarder's address.
	// Default: []
	TrustedForwarderDKIMDomains []string `toml:"trusted_forwarder_dkim_domains"`

	// TrustedARCSealers are ARC sealing domains (the d= of ARC-Seal,
	// matched exactly) whose assessment is believed (RFC 8617 §7.2.1). A
	// message failing DMARC is handled as actions.indirect_flow says when
	// its ARC chain passes, its newest sealers are all in this list, and
	// the ARC-Authentication-Results of the oldest of them (with an
	// authserv-id that is one of these domains or a name under one) shows
	// dmarc=pass for the From: domain, or, without a dmarc result, an SPF
	// or DKIM pass aligned with it. Empty: ARC is verified and reported in
	// Authentication-Results (arc=) and changes nothing.
	// Default: []
	TrustedARCSealers []string `toml:"trusted_arc_sealers"`

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
