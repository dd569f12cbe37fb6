package config

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// Intake configures the reports other receivers send us about our domains
// (the rua mailboxes of our DMARC records): which domains we accept reports
// for, which mailboxes the milter captures, and how long they are kept.
type Intake struct {
	// Domains are the domains whose aggregate reports we accept (their
	// subdomains included). A report for any other policy domain is
	// refused (not_our_domain). Empty: the intake is off.
	// Default: []
	Domains []string `toml:"domains"`

	// Addresses are the intake mailboxes (the rua= addresses of our
	// domains' DMARC records). Mail to them has its report taken from the
	// message at end of message and stored off the reply path; the message
	// is delivered as usual unless discard is set.
	// Default: []
	Addresses []string `toml:"addresses"`

	// Discard drops captured report mail instead of delivering it, but
	// only when every recipient is an intake address and the report was
	// stored.
	// Default: false
	Discard bool `toml:"discard"`

	// AcceptFailingDMARC stores reports whose message failed DMARC. By
	// default they are refused (dmarc_fail): anyone can mail a forged
	// report to a published rua address. Only the milter path knows the
	// message's DMARC result.
	// Default: false
	AcceptFailingDMARC bool `toml:"accept_failing_dmarc"`

	// MaxReportSize bounds one report message or file in bytes (the
	// milter keeps at most this much of a captured message; import refuses
	// larger files as too_large). The XML inside may decompress to twice
	// this.
	// Default: 16777216
	MaxReportSize int `toml:"max_report_size"`

	// Retention is how long received reports (with their rows, sources,
	// refusal counts and stored health checks) are kept after their period
	// ended. Zero keeps them for ever.
	// Default: "8760h0m0s"
	Retention time.Duration `toml:"retention"`

	// PTRBudget bounds the time one import spends waiting for reverse DNS
	// names of new sources once its reports are stored; names not found in
	// time are looked up later.
	// Default: "30s"
	PTRBudget time.Duration `toml:"ptr_budget"`

	// GeoIPFiles are MMDB files (MaxMind GeoLite2/GeoIP2 Country and ASN,
	// IPinfo country and ASN) that add the country and autonomous system
	// of each new source address. Empty: none.
	// Default: []
	GeoIPFiles []string `toml:"geoip_files"`

	// HealthInterval is how often the daemon runs the domain health check
	// (DMARC, SPF, DKIM keys of the selectors seen in reports) for each
	// intake domain and stores the result. Zero disables.
	// Default: "24h0m0s"
	HealthInterval time.Duration `toml:"health_interval"`
}

func defaultIntake() Intake {
	return Intake{
		Domains:        []string{},
		Addresses:      []string{},
		GeoIPFiles:     []string{},
		MaxReportSize:  16 << 20,
		Retention:      365 * 24 * time.Hour,
		PTRBudget:      30 * time.Second,
		HealthInterval: 24 * time.Hour,
	}
}

// validate normalizes the domains (lower case, no final dot) and addresses
// (lower case) and checks the bounds.
func (in *Intake) validate() error {
	for i, d := range in.Domains {
		n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if !isDomain(n) {
			return fmt.Errorf("intake.domains: %q is not a domain name", d)
		}
		in.Domains[i] = n
	}
	for i, a := range in.Addresses {
		addr, err := mail.ParseAddress(a)
		if err != nil || addr.Name != "" || !strings.Contains(addr.Address, "@") {
			return fmt.Errorf("intake.addresses: %q is not a mailbox (local@domain)", a)
		}
		in.Addresses[i] = strings.ToLower(addr.Address)
	}
	switch {
	case in.MaxReportSize < 1<<10 || in.MaxReportSize > 1<<30:
		return fmt.Errorf("intake.max_report_size: %d: must be between 1 KiB and 1 GiB", in.MaxReportSize)
	case in.Retention < 0 || in.PTRBudget < 0 || in.HealthInterval < 0:
		return fmt.Errorf("intake: retention, ptr_budget and health_interval must not be negative")
	case in.HealthInterval > 0 && in.HealthInterval < time.Minute:
		return fmt.Errorf("intake.health_interval: %s: at least 1m (or 0 to disable)", in.HealthInterval)
	case len(in.Addresses) > 0 && len(in.Domains) == 0:
		return fmt.Errorf("intake.addresses: set, but intake.domains is empty: every captured report would be refused")
	}
	return nil
}
