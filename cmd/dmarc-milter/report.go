package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/reporter"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

// reportBuildFlags are the flags of report build.
type reportBuildFlags struct{ config, out, since, until string }

func (f *reportBuildFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "configuration `file` (TOML)")
	fs.StringVar(&f.out, "out", "", "output `directory` (created if missing)")
	fs.StringVar(&f.since, "since", "", "first period: periods beginning at or after `T` (default: the current period)")
	fs.StringVar(&f.until, "until", "", "periods beginning before `T` (default: the end of the current period)")
}

// reportSendFlags are the flags of report send.
type reportSendFlags struct {
	config string
	dryRun bool
}

func (f *reportSendFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "configuration `file` (TOML)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "show what would be sent; send, claim and mark nothing")
}

// reportStatusFlags are the flags of report status.
type reportStatusFlags struct {
	config string
	json   bool
	days   int
}

func (f *reportStatusFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "configuration `file` (TOML)")
	fs.BoolVar(&f.json, "json", false, "JSON output")
	fs.IntVar(&f.days, "days", 7, "look back this many `days`")
}

// cmdReportRebuild builds the store's summaries again (report
// rebuild-summaries); it takes --config and --store like the questions.
func cmdReportRebuild(args []string, stdout, stderr io.Writer) int {
	var f intakeFlags
	fs := flag.NewFlagSet("report rebuild-summaries", flag.ContinueOnError)
	f.register(fs)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "report rebuild-summaries: unexpected argument %q\n", fs.Arg(0))
		return exitConfig
	}
	ctx := context.Background()
	_, st, err := openIntakeStore(ctx, &f)
	if err != nil {
		fmt.Fprintf(stderr, "report rebuild-summaries: %v\n", err)
		return exitConfig
	}
	defer st.Close()
	start := time.Now()
	if err := st.RebuildSummaries(ctx); err != nil {
		fmt.Fprintf(stderr, "report rebuild-summaries: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "summaries rebuilt in %s\n", time.Since(start).Round(time.Millisecond))
	return exitOK
}

// reportEnv is what every report subcommand needs: the configuration, the
// clock and the store.
type reportEnv struct {
	cfg *config.Config
	now func() time.Time
	log *slog.Logger
	st  *store.Store
}

// openReportEnv loads the configuration (the file of serve; the report
// commands take no milter flags) and opens the store.
func openReportEnv(path string, stderr io.Writer) (*reportEnv, int) {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, exitConfig
	}
	now, err := clock()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, exitConfig
	}
	if cfg.Report.From == "" {
		fmt.Fprintln(stderr, "config: report.from is not set: reports need a sender address")
		return nil, exitConfig
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel(cfg.LogLevel)}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, cfg.StoreURL(), store.Options{Logger: log, Now: now})
	if err != nil {
		fmt.Fprintf(stderr, "report store %s: %v\n", redactURL(cfg.StoreURL()), err)
		return nil, exitError
	}
	return &reportEnv{cfg: cfg, now: now, log: log, st: st}, exitOK
}

// parseTime reads an RFC 3339 time or a YYYY-MM-DD date (00:00 UTC).
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-12-06T00:00:00Z) or YYYY-MM-DD", s)
	}
	return t.UTC(), nil
}

// cmdReportBuild writes the reports of the periods that begin in
// [since, until) into DIR, as they would be sent (the .xml.gz file and the
// whole message, .eml), without sending or marking anything, also for a
// period still open.
func cmdReportBuild(args []string, stdout, stderr io.Writer) int {
	var f reportBuildFlags
	fs := flag.NewFlagSet("report build", flag.ContinueOnError)
	f.register(fs)
	cfgPath, out, since, until := &f.config, &f.out, &f.since, &f.until
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *out == "" {
		fmt.Fprintln(stderr, "report build: --out DIR is required")
		return exitConfig
	}
	env, code := openReportEnv(*cfgPath, stderr)
	if env == nil {
		return code
	}
	defer env.st.Close()
	begin, end := reporter.Period(env.now(), env.cfg.Report.Interval)
	var err error
	if *since != "" {
		if begin, err = parseTime(*since); err != nil {
			fmt.Fprintln(stderr, "report build: --since:", err)
			return exitConfig
		}
	}
	if *until != "" {
		if end, err = parseTime(*until); err != nil {
			fmt.Fprintln(stderr, "report build: --until:", err)
			return exitConfig
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	ctx := context.Background()
	groups, err := env.st.Groups(ctx, begin, end)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	res, err := cache.New(cacheConfig(env.cfg.DNS))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	id := identity(env.cfg.Report)
	for _, g := range groups {
		if err := buildOne(ctx, env, res, &id, g, *out, stdout); err != nil {
			fmt.Fprintf(stderr, "report build: %s %s: %v\n", g.Policy.Domain, g.Begin.Format(time.RFC3339), err)
			return exitError
		}
	}
	fmt.Fprintf(stdout, "%d report(s) in %s\n", len(groups), *out)
	return exitOK
}

// buildOne writes one group's report file and message.
func buildOne(ctx context.Context, env *reportEnv, res *cache.Resolver, id *reporter.Identity, g store.Group, dir string, stdout io.Writer) error {
	rows, err := env.st.GroupRows(ctx, g)
	if err != nil {
		return err
	}
	f, err := reporter.BuildFile(id, g, rows, nil)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, f.Filename), f.Gzip, 0o644); err != nil {
		return err
	}
	to := previewRecipients(ctx, env.cfg, res, g.Policy.Domain)
	note := "no rua destination now"
	if len(to) > 0 {
		m, err := reporter.Message(id, f.Filename, f.Gzip, to, env.now())
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(f.Filename, ".xml.gz") + ".eml"
		if err := os.WriteFile(filepath.Join(dir, name), m.Message, 0o644); err != nil {
			return err
		}
		note = "to " + strings.Join(to, ", ")
	}
	fmt.Fprintf(stdout, "%s: %d records, %d messages, %s\n", f.Filename, f.Records, f.Messages, note)
	return nil
}

// previewRecipients are the destinations the report would go to now (the
// DNS as it is), for the preview's message.
func previewRecipients(ctx context.Context, cfg *config.Config, res *cache.Resolver, domain string) []string {
	s := reporter.NewSender(reporter.SenderOptions{Resolver: res, Method: cfg.DMARC.Discovery, DoNotReport: cfg.Report.DoNotReport})
	return s.PreviewDestinations(ctx, domain)
}

// cmdReportSend sends every report due now, once (for schedule =
// "external": a systemd timer or cron runs it).
func cmdReportSend(args []string, stdout, stderr io.Writer) int {
	var f reportSendFlags
	fs := flag.NewFlagSet("report send", flag.ContinueOnError)
	f.register(fs)
	cfgPath, dry := &f.config, &f.dryRun
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	env, code := openReportEnv(*cfgPath, stderr)
	if env == nil {
		return code
	}
	defer env.st.Close()
	res, err := cache.New(cacheConfig(env.cfg.DNS))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	s, err := newSender(env.cfg, env.st, res, env.log, nil, env.now, *dry)
	if err != nil {
		fmt.Fprintln(stderr, "report send:", err)
		return exitConfig
	}
	sum, err := s.RunOnce(context.Background())
	fmt.Fprintf(stdout, "due %d, built %d, sent %d, retry %d, failed %d, no destination %d, not yet (send window) %d\n",
		sum.Due, sum.Built, sum.Sent, sum.Retry, sum.Failed, sum.Skipped, sum.NotYet)
	if err != nil {
		fmt.Fprintln(stderr, "report send:", err)
		return exitError
	}
	return exitOK
}

// cmdReportStatus shows, per policy domain, the rows, the last report sent,
// failures and suppressions.
func cmdReportStatus(args []string, stdout, stderr io.Writer) int {
	var f reportStatusFlags
	fs := flag.NewFlagSet("report status", flag.ContinueOnError)
	f.register(fs)
	cfgPath, asJSON, days := &f.config, &f.json, &f.days
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	env, code := openReportEnv(*cfgPath, stderr)
	if env == nil {
		return code
	}
	defer env.st.Close()
	st, err := env.st.Status(context.Background(), env.now().AddDate(0, 0, -*days))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(statusJSON(st)); err != nil {
			return exitError
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tROWS\tMESSAGES\tLATE\tDROPPED\tREPORTS\tLAST SENT\tPENDING\tFAILURES\tSUPPRESSED")
	for _, d := range st {
		last := "never"
		if !d.LastSent.IsZero() {
			last = d.LastSent.UTC().Format(time.RFC3339)
		}
		var sup []string
		for _, s := range d.Suppressed {
			sup = append(sup, s.Address+" until "+s.Until.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%s\n", d.Domain, d.Rows, d.Messages, d.LateMessages, d.DroppedMessages,
			d.Reports, last, d.Pending, d.Failures, strings.Join(sup, ", "))
	}
	return exitOKIf(tw.Flush())
}

func exitOKIf(err error) int {
	if err != nil {
		return exitError
	}
	return exitOK
}

// domainStatusJSON is one line of `report status --json`.
type domainStatusJSON struct {
	Domain          string            `json:"domain"`
	Rows            int64             `json:"rows"`
	Messages        int64             `json:"messages"`
	LateMessages    int64             `json:"late_messages"`
	DroppedMessages int64             `json:"dropped_messages"`
	Reports         int64             `json:"reports"`
	LastSent        *time.Time        `json:"last_sent,omitempty"`
	Pending         int64             `json:"pending"`
	Failures        int64             `json:"failures"`
	Suppressed      []suppressionJSON `json:"suppressed"`
}

type suppressionJSON struct {
	Address string    `json:"address"`
	Until   time.Time `json:"until"`
	Reason  string    `json:"reason"`
}

func statusJSON(st []store.DomainStatus) []domainStatusJSON {
	out := make([]domainStatusJSON, 0, len(st))
	for _, d := range st {
		j := domainStatusJSON{Domain: d.Domain, Rows: d.Rows, Messages: d.Messages, LateMessages: d.LateMessages,
			DroppedMessages: d.DroppedMessages, Reports: d.Reports, Pending: d.Pending, Failures: d.Failures,
			Suppressed: []suppressionJSON{}}
		if !d.LastSent.IsZero() {
			t := d.LastSent.UTC()
			j.LastSent = &t
		}
		for _, s := range d.Suppressed {
			j.Suppressed = append(j.Suppressed, suppressionJSON{Address: s.Address, Until: s.Until.UTC(), Reason: s.Reason})
		}
		out = append(out, j)
	}
	return out
}
