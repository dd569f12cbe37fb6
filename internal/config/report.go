package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The values of report.schedule.
const (
	ScheduleDaemon   = "daemon"
	ScheduleExternal = "external"
)

// DefaultStoreFile is the SQLite file's name in the state directory, and
// DefaultStateDir the state directory when systemd gives none.
const (
	DefaultStoreFile = "dmarc-milter.db"
	DefaultStateDir  = "/var/lib/dmarc-milter"
)

// reportIntervals are the periods a report may cover: divisors of a day, so
// that every period is aligned to 00:00 UTC (RFC 9990 §3.1.1.4 expects
// reports to cover one UTC day, and DMARCbis asks for at least one a day).
var reportIntervals = []time.Duration{1, 2, 3, 4, 6, 8, 12, 24}

// NeedsStore reports whether a setting needs the report store. Without
// one the daemon opens nothing on disk.
func (c *Config) NeedsStore() bool { return c.Report.Enabled }

// StoreURL is the store's URL: store.url, or the SQLite file in
// $STATE_DIRECTORY (its first entry: systemd lists several separated by
// colons), else in DefaultStateDir.
func (c *Config) StoreURL() string {
	if c.Store.URL != "" {
		return c.Store.URL
	}
	dir := DefaultStateDir
	if sd := os.Getenv("STATE_DIRECTORY"); sd != "" {
		dir, _, _ = strings.Cut(sd, ":")
	}
	return "sqlite:" + filepath.Join(dir, DefaultStoreFile)
}

// FromDomain is the domain of report.from ("" when unset).
func (r *Report) FromDomain() string {
	_, d, _ := strings.Cut(r.From, "@")
	return d
}

func (c *Config) validateStore() error {
	u := c.Store.URL
	switch {
	case u == "":
	case strings.HasPrefix(u, "sqlite:"):
		if strings.TrimPrefix(u, "sqlite:") == "" {
			return errors.New("store.url: sqlite: needs a file path (sqlite:/var/lib/dmarc-milter/dmarc-milter.db)")
		}
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"), strings.Contains(u, "="):
	default:
		return fmt.Errorf("store.url: %q: want sqlite:PATH or postgres://…", u)
	}
	return nil
}

func (c *Config) validateReport() error {
	r := &c.Report
	if err := r.validateValues(); err != nil {
		return err
	}
	for i, a := range r.OwnAddresses {
		a, err := normalAddress(a)
		if err != nil {
			return fmt.Errorf("report.own_addresses: %w", err)
		}
		r.OwnAddresses[i] = a
	}
	for i, d := range r.DoNotReport {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if !isDomain(d) {
			return fmt.Errorf("report.do_not_report: %q is not a domain name", r.DoNotReport[i])
		}
		r.DoNotReport[i] = d
	}
	if r.From != "" {
		a, err := normalAddress(r.From)
		if err != nil {
			return fmt.Errorf("report.from: %w", err)
		}
		r.From = a
	}
	if r.Email != "" {
		if _, err := normalAddress(r.Email); err != nil {
			return fmt.Errorf("report.email: %w", err)
		}
	}
	if r.DKIMDomain != "" {
		r.DKIMDomain = strings.TrimSuffix(strings.ToLower(r.DKIMDomain), ".")
		if !isDomain(r.DKIMDomain) {
			return fmt.Errorf("report.dkim_domain: %q is not a domain name", r.DKIMDomain)
		}
	}
	if (r.DKIMKeyFile == "") != (r.DKIMSelector == "") {
		return errors.New("report.dkim_key_file and report.dkim_selector go together")
	}
	if r.Enabled && r.From == "" {
		return errors.New("report.from: required when report.enabled is true (the address reports are sent from)")
	}
	return nil
}

// validateValues checks the enumerations, durations and bounds.
func (r *Report) validateValues() error {
	ok := false
	for _, h := range reportIntervals {
		ok = ok || r.Interval == h*time.Hour
	}
	if !ok {
		return fmt.Errorf("report.interval: %s: want one of 1h, 2h, 3h, 4h, 6h, 8h, 12h, 24h (periods aligned to 00:00 UTC)", r.Interval)
	}
	if err := oneOf("report.schedule", r.Schedule, ScheduleDaemon, ScheduleExternal); err != nil {
		return err
	}
	if err := oneOf("report.starttls", r.StartTLS, "opportunistic", "required"); err != nil {
		return err
	}
	if err := oneOf("report.tls_verify", r.TLSVerify, "auto", "yes", "no"); err != nil {
		return err
	}
	if !strings.HasPrefix(r.Relay, "smtp://") && !strings.HasPrefix(r.Relay, "smtps://") {
		return fmt.Errorf("report.relay: %q: want smtp://HOST[:PORT] or smtps://HOST[:PORT]", r.Relay)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"grace", r.Grace}, {"max_age", r.MaxAge}, {"send_window", r.SendWindow}, {"retry_for", r.RetryFor},
		{"suppress_for", r.SuppressFor}, {"keep_rows", r.KeepRows}, {"keep_counters", r.KeepCounters},
		{"keep_sent_reports", r.KeepSentReports}} {
		if d.v < 0 {
			return fmt.Errorf("report.%s: %s: must not be negative", d.key, d.v)
		}
	}
	if r.RetryInitial <= 0 || r.FlushInterval <= 0 {
		return errors.New("report.retry_initial and report.flush_interval must be positive")
	}
	if r.Grace < r.FlushInterval {
		return fmt.Errorf("report.grace: %s is shorter than report.flush_interval %s: rows still queued would come too late", r.Grace, r.FlushInterval)
	}
	if r.QueueSize < 1 || r.MaxReportRows < 1 || r.MaxReportSize < 4096 {
		return errors.New("report: queue_size and max_report_rows must be at least 1, max_report_size at least 4096")
	}
	return nil
}

// normalAddress checks local@domain loosely and lowercases the domain.
func normalAddress(a string) (string, error) {
	a = strings.TrimSpace(a)
	local, domain, ok := strings.Cut(a, "@")
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if !ok || local == "" || strings.ContainsAny(local, " <>\"\\@,;") || !isDomain(domain) {
		return "", fmt.Errorf("%q is not an address (local@domain)", a)
	}
	return local + "@" + domain, nil
}
