package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Postfix's milter timeouts (postconf(5), checked with `postconf -d` on
// Postfix 3.7.11): every wait of ours must end well before them.
const (
	postfixCommandTimeout = 30 * time.Second  // milter_command_timeout
	postfixContentTimeout = 300 * time.Second // milter_content_timeout
)

// Validate checks every field and normalises the lists (lowercase domains).
// The first problem found is returned as one precise message.
func (c *Config) Validate() error {
	checks := []func() error{
		c.validateBasics,
		c.Actions.validate,
		c.validateDomains,
		c.DNS.validate,
		c.validateLimits,
		c.Timeouts.validate,
		c.validateMetrics,
		c.Runtime.validate,
		c.validateStore,
		c.validateReport,
		c.Intake.validate,
		c.Web.validate,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateBasics() error {
	if _, _, err := ParseListen(c.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := c.Mode.Valid(); err != nil {
		return fmt.Errorf("mode: %w", err)
	}
	if err := oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error"); err != nil {
		return err
	}
	if err := oneOf("on_error", string(c.OnError), ErrorTempFail, ErrorAccept); err != nil {
		return err
	}
	if c.AuthservID != "" && !isToken(c.AuthservID) {
		return fmt.Errorf("authserv_id: %q is not an RFC 8601 token (no spaces, no ()<>@,;:\\\"/[]?=)", c.AuthservID)
	}
	if _, err := c.Socket.FileMode(); err != nil {
		return err
	}
	if err := c.DMARC.Discovery.Valid(); err != nil {
		return fmt.Errorf("dmarc.discovery: %w", err)
	}
	return nil
}

func (a *Actions) validate() error {
	if err := a.RejectPolicy.Valid(); err != nil {
		return fmt.Errorf("actions.reject_policy: %w", err)
	}
	if err := oneOf("actions.quarantine_method", string(a.QuarantineMethod), QuarantineHeader, QuarantineHold, QuarantineBoth); err != nil {
		return err
	}
	if err := a.TempError.Valid(); err != nil {
		return fmt.Errorf("actions.temperror: %w", err)
	}
	if err := a.IndirectFlow.Valid(); err != nil {
		return fmt.Errorf("actions.indirect_flow: %w", err)
	}
	if a.QuarantineHeader != "" && !isFieldName(a.QuarantineHeader) {
		return fmt.Errorf("actions.quarantine_header: %q is not a header field name", a.QuarantineHeader)
	}
	if strings.EqualFold(a.QuarantineHeader, "Authentication-Results") {
		return fmt.Errorf("actions.quarantine_header: must not be Authentication-Results")
	}
	for _, r := range []struct {
		key, v string
		class  byte
	}{
		{"actions.reject_reply", a.RejectReply, '5'},
		{"actions.tempfail_reply", a.TempFailReply, '4'},
		{"actions.error_reply", a.ErrorReply, '4'},
	} {
		if err := CheckReply(r.v, r.class); err != nil {
			return fmt.Errorf("%s: %w", r.key, err)
		}
	}
	return nil
}

func (c *Config) validateDomains() error {
	for key, list := range map[string][]string{
		"allowlist.from_domains":               c.Allowlist.FromDomains,
		"dmarc.trusted_forwarder_dkim_domains": c.DMARC.TrustedForwarderDKIMDomains,
		"dmarc.trusted_arc_sealers":            c.DMARC.TrustedARCSealers,
	} {
		for i, d := range list {
			d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
			if !isDomain(d) {
				return fmt.Errorf("%s: %q is not a domain name", key, list[i])
			}
			list[i] = d
		}
	}
	if err := c.DMARC.From.policy().Validate(); err != nil {
		return fmt.Errorf("dmarc.from.%w", err)
	}
	return nil
}

func (d *DNS) validate() error {
	for _, ns := range d.Nameservers {
		if _, err := NameserverAddr(ns); err != nil {
			return fmt.Errorf("dns.nameservers: %w", err)
		}
	}
	switch {
	case d.Timeout <= 0 || d.Timeout > postfixCommandTimeout:
		return fmt.Errorf("dns.timeout: %v must be above 0 and at most 30s", d.Timeout)
	case d.MinTTL < 0 || d.MaxTTL < d.MinTTL:
		return fmt.Errorf("dns.min_ttl/max_ttl: need 0 <= min_ttl (%v) <= max_ttl (%v)", d.MinTTL, d.MaxTTL)
	case d.Attempts < 1 || d.Attempts > 10:
		return fmt.Errorf("dns.attempts: %d is outside 1..10", d.Attempts)
	case d.ErrorTTL < 0:
		return fmt.Errorf("dns.error_ttl: %v is negative", d.ErrorTTL)
	case d.MaxNegativeTTL < 0:
		return fmt.Errorf("dns.max_negative_ttl: %v is negative", d.MaxNegativeTTL)
	case d.CacheSize < 1:
		return fmt.Errorf("dns.cache_size: %d must be at least 1", d.CacheSize)
	case d.ServeStale < 0:
		return fmt.Errorf("dns.serve_stale: %v is negative", d.ServeStale)
	}
	return nil
}

func (c *Config) validateLimits() error {
	switch {
	case c.SPF.LookupLimit < 1 || c.SPF.LookupLimit > 100:
		return fmt.Errorf("spf.lookup_limit: %d is outside 1..100", c.SPF.LookupLimit)
	case c.SPF.VoidLookupLimit < 1 || c.SPF.VoidLookupLimit > 100:
		return fmt.Errorf("spf.void_lookup_limit: %d is outside 1..100", c.SPF.VoidLookupLimit)
	case c.DKIM.MaxSignatures < 1 || c.DKIM.MaxSignatures > 100:
		return fmt.Errorf("dkim.max_signatures: %d is outside 1..100", c.DKIM.MaxSignatures)
	}
	return nil
}

func (t *Timeouts) validate() error {
	for _, s := range []struct {
		key string
		d   time.Duration
	}{{"timeouts.spf", t.SPF}, {"timeouts.dkim", t.DKIM}, {"timeouts.dmarc", t.DMARC}, {"timeouts.end_of_message", t.EndOfMessage}} {
		// milter_content_timeout covers the end-of-message wait; the
		// lookups started earlier are joined there too.
		if s.d <= 0 || s.d >= postfixContentTimeout {
			return fmt.Errorf("%s: %v must be above 0 and below Postfix's milter_content_timeout (300s)", s.key, s.d)
		}
	}
	if t.Idle < time.Second {
		return fmt.Errorf("timeouts.idle: %v must be at least 1s", t.Idle)
	}
	if t.Drain < 0 {
		return fmt.Errorf("timeouts.drain: %v is negative", t.Drain)
	}
	return nil
}

func (c *Config) validateMetrics() error {
	if c.Metrics.Listen == "" {
		if c.Metrics.Pprof {
			return fmt.Errorf("metrics.pprof: needs metrics.listen")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
		return fmt.Errorf("metrics.listen: %q: %v", c.Metrics.Listen, err)
	}
	return nil
}

// ParseListen turns a Postfix-style milter address into a network and an
// address for net.Listen: "inet:127.0.0.1:8894" → ("tcp4"…), "inet6:[::1]:8894"
// → ("tcp6"…), "unix:/run/x.sock" → ("unix", "/run/x.sock").
func ParseListen(s string) (network, addr string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("%q: want inet:HOST:PORT, inet6:[HOST]:PORT or unix:PATH", s)
	}
	switch kind {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return "", "", fmt.Errorf("%q: the unix socket path must be absolute", s)
		}
		return "unix", rest, nil
	case "inet", "inet6":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return "", "", fmt.Errorf("%q: %v", s, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return "", "", fmt.Errorf("%q: bad port %q", s, port)
		}
		network = "tcp4"
		if kind == "inet6" {
			network = "tcp6"
		}
		return network, net.JoinHostPort(host, port), nil
	}
	return "", "", fmt.Errorf("%q: unknown socket type %q (want inet, inet6 or unix)", s, kind)
}

// NameserverAddr turns "192.0.2.53" or "192.0.2.53:5353" or "[::1]:53" into
// host:port.
func NameserverAddr(s string) (string, error) {
	if net.ParseIP(strings.Trim(s, "[]")) != nil {
		return net.JoinHostPort(strings.Trim(s, "[]"), "53"), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "", fmt.Errorf("%q: want an address or host:port", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("%q: bad port", s)
	}
	return net.JoinHostPort(host, port), nil
}

// FileMode parses the octal socket mode.
func (s Socket) FileMode() (uint32, error) {
	m, err := strconv.ParseUint(s.Mode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("socket.mode: %q is not an octal mode between 0000 and 0777", s.Mode)
	}
	return uint32(m), nil
}

// CheckReply validates an SMTP reply template the way Postfix validates a
// milter reply (milter8.c SMFIR_REPLYCODE): a 3-digit code of the given
// class followed by a space, then an enhanced status code (RFC 3463) whose
// first digit is the same as the reply code's. Postfix treats anything else
// as a configuration error and applies milter_default_action.
func CheckReply(s string, class byte) error {
	if len(s) < 5 || s[0] != class || !isDigit(s[1]) || !isDigit(s[2]) || s[3] != ' ' {
		return fmt.Errorf("%q: want \"%cNN X.Y.Z text\"", s, class)
	}
	enh, text, _ := strings.Cut(s[4:], " ")
	parts := strings.Split(enh, ".")
	if len(parts) != 3 || parts[0] != string(class) || !digits(parts[1], 3) || !digits(parts[2], 3) {
		return fmt.Errorf("%q: the enhanced status code must be %c.Y.Z (its first digit must match the reply code)", s, class)
	}
	if strings.TrimSpace(text) == "" {
		return fmt.Errorf("%q: the reply needs a text", s)
	}
	for _, r := range s {
		if r < ' ' || r > '~' {
			return fmt.Errorf("%q: only printable ASCII is allowed", s)
		}
	}
	return nil
}

func oneOf[T ~string](key, v string, allowed ...T) error {
	names := make([]string, len(allowed))
	for i, a := range allowed {
		if string(a) == v {
			return nil
		}
		names[i] = string(a)
	}
	return fmt.Errorf("%s: unknown value %q (want %s)", key, v, strings.Join(names, ", "))
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func digits(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 2045 token (the authserv-id "value"
// of RFC 8601 §2.2 when not quoted).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?=`, r) {
			return false
		}
	}
	return true
}

// isFieldName reports whether s is an RFC 5322 §3.6.8 field name.
func isFieldName(s string) bool {
	for _, r := range s {
		if r <= ' ' || r > '~' || r == ':' {
			return false
		}
	}
	return s != ""
}

// isDomain is a loose LDH check for configured domain names.
func isDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || isDigit(byte(r)) && r < 0x80 || r >= 'a' && r <= 'z') {
				return false
			}
		}
	}
	return true
}

func (r Runtime) validate() error {
	if r.GCPercent != -1 && r.GCPercent < 10 {
		return fmt.Errorf("runtime.gc_percent: %d: must be -1 (off) or at least 10", r.GCPercent)
	}
	if r.MemoryLimitMB < 0 {
		return fmt.Errorf("runtime.memory_limit_mb: %d: must be 0 (no limit) or more", r.MemoryLimitMB)
	}
	if r.GCPercent == -1 && r.MemoryLimitMB == 0 {
		return errors.New("runtime: gc_percent = -1 needs a memory_limit_mb, or the heap grows without bound")
	}
	return nil
}
