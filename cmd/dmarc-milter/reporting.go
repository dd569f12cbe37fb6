package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/mailout"
	"github.com/dmarc-milter/dmarc-milter/internal/reporter"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// testNowEnv fixes the clock of serve and the report commands, for tests
// only (integration tests build "yesterday's" report without waiting a
// day). The value is an RFC 3339 time; the clock then runs on from it.
const testNowEnv = "DMARC_MILTER_TEST_NOW"

// clock returns the clock: time.Now, or the test clock of testNowEnv.
func clock() (func() time.Time, error) {
	v := os.Getenv(testNowEnv)
	if v == "" {
		return time.Now, nil
	}
	t0, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", testNowEnv, err)
	}
	start := time.Now()
	return func() time.Time { return t0.Add(time.Since(start)) }, nil
}

// storeOpener opens the report store once, on first use, and again after
// a failure: a store that is down at start is picked up when it answers.
type storeOpener struct {
	url string
	log *slog.Logger
	now func() time.Time

	mu sync.Mutex
	s  *store.Store
}

func (o *storeOpener) get(ctx context.Context) (*store.Store, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.s != nil {
		return o.s, nil
	}
	s, err := store.Open(ctx, o.url, store.Options{Logger: o.log, Now: o.now})
	if err != nil {
		return nil, fmt.Errorf("report store %s: %w", redactURL(o.url), err)
	}
	o.s = s
	return s, nil
}

func (o *storeOpener) sink(ctx context.Context) (reporter.Sink, error) {
	s, err := o.get(ctx)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (o *storeOpener) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.s != nil {
		o.s.Close()
		o.s = nil
	}
}

// redactURL hides a password in a PostgreSQL URL for logs.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if at := strings.LastIndex(u, "@"); at > i {
			if c := strings.Index(u[i+3:at], ":"); c >= 0 {
				return u[:i+3+c] + ":***" + u[at:]
			}
		}
	}
	return u
}

// recorderOptions maps [report] onto the recorder. Mail to or from our own
// reporting addresses (report.from, report.own_addresses and the intake
// mailboxes) is report traffic, not recorded.
func recorderOptions(cfg *config.Config, open *storeOpener, log *slog.Logger, m reporter.Metrics, now func() time.Time) reporter.RecorderOptions {
	own := append([]string{cfg.Report.From}, cfg.Report.OwnAddresses...)
	own = append(own, cfg.Intake.Addresses...)
	return reporter.RecorderOptions{
		Open: open.sink, Interval: cfg.Report.Interval, IncludeEnvelopeTo: cfg.Report.IncludeEnvelopeTo,
		OwnAddresses: own, QueueSize: cfg.Report.QueueSize, FlushInterval: cfg.Report.FlushInterval,
		Logger: log, Metrics: m, Now: now,
	}
}

// identity maps [report] onto the report's metadata.
func identity(r config.Report) reporter.Identity {
	id := reporter.Identity{OrgName: r.OrgName, Email: r.Email, ExtraContactInfo: r.ExtraContactInfo, From: r.From,
		Generator: "dmarc-milter/" + version,
		Limits:    report.WriteLimits{MaxBytes: r.MaxReportSize, MaxRecords: r.MaxReportRows}}
	if id.OrgName == "" {
		id.OrgName = r.FromDomain()
	}
	if id.Email == "" {
		id.Email = r.From
	}
	return id
}

// relayClient maps [report] onto the SMTP client.
func relayClient(r config.Report) (*mailout.Client, error) {
	v := mailout.Verify(r.TLSVerify)
	if r.TLSVerify == "auto" {
		v = mailout.VerifyAuto
	}
	return mailout.NewClient(mailout.ClientOptions{Relay: r.Relay, HeloName: r.HeloName, StartTLS: mailout.StartTLS(r.StartTLS),
		TLSVerify: v, CAFile: r.CAFile, Username: r.RelayUser, PasswordFile: r.PasswordFile})
}

// signer maps the DKIM settings; nil when none.
func signer(r config.Report) (*mailout.Signer, error) {
	if r.DKIMKeyFile == "" {
		return nil, nil
	}
	d := r.DKIMDomain
	if d == "" {
		d = r.FromDomain()
	}
	return mailout.NewSigner(mailout.SignerOptions{Domain: d, Selector: r.DKIMSelector, KeyFile: r.DKIMKeyFile})
}

// newSender builds the sender over st.
func newSender(cfg *config.Config, st *store.Store, res *cache.Resolver, log *slog.Logger, m reporter.Metrics, now func() time.Time, dryRun bool) (*reporter.Sender, error) {
	client, err := relayClient(cfg.Report)
	if err != nil {
		return nil, err
	}
	sig, err := signer(cfg.Report)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	r := cfg.Report
	return reporter.NewSender(reporter.SenderOptions{
		Store: st, Resolver: res, Method: cfg.DMARC.Discovery, Relay: client, Signer: sig, Identity: identity(r),
		Holder: fmt.Sprintf("%s/%d", host, os.Getpid()),
		Grace:  r.Grace, MaxAge: r.MaxAge, SendWindow: r.SendWindow,
		RetryInitial: r.RetryInitial, RetryFor: r.RetryFor, SuppressFor: r.SuppressFor,
		DoNotReport: r.DoNotReport,
		Retention:   store.Retention{Rows: r.KeepRows, Counters: r.KeepCounters, SentReports: r.KeepSentReports},
		DryRun:      dryRun, Logger: log, Metrics: m, Now: now,
	}), nil
}

// checkReporting builds what the report settings describe (relay client,
// DKIM signer), so that check-config finds a bad key file or relay at once.
func checkReporting(cfg *config.Config) error {
	if !cfg.Report.Enabled {
		return nil
	}
	if _, err := relayClient(cfg.Report); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if _, err := signer(cfg.Report); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
