package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/daterange"
	"github.com/dmarc-milter/dmarc-milter/internal/intake"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// intakeFlags are the flags every intake subcommand takes.
type intakeFlags struct {
	config string
	store  string
}

func (f *intakeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "configuration `file` (TOML): [intake] domains, the DNS settings; none: the built-in defaults")
	fs.StringVar(&f.store, "store", "", "store `url` (sqlite:PATH or postgres://...); default: [store] url, else the daemon's store file")
}

// openIntakeStore loads the configuration and opens the store: --store,
// else [store] url, else the default file (config.StoreURL).
func openIntakeStore(ctx context.Context, f *intakeFlags) (*config.Config, *store.Store, error) {
	cfg, err := loadConfig(&commonFlags{config: f.config})
	if err != nil {
		return nil, nil, err
	}
	url := f.store
	if url == "" {
		url = cfg.StoreURL()
	}
	st, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	return cfg, st, nil
}

// parseIntakeArgs parses flags before and after the positional arguments.
func parseIntakeArgs(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, int, bool) {
	var pos []string
	for {
		if code, ok := parseFlags(fs, args, stderr); !ok {
			return nil, code, false
		}
		if fs.NArg() == 0 {
			return pos, exitOK, true
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

const importUsage = `usage: dmarc-milter report import --config FILE [--store URL] [--no-ptr] [--strict] [--quiet] PATH...

Takes in the DMARC aggregate reports other receivers sent about the domains
of [intake] domains: report files (.xml, .xml.gz, .zip), report messages
(.eml), directories (recursively), Maildirs (cur/ and new/) and mbox files.
A report already stored is counted as a duplicate and not stored again, so
importing twice is harmless. On a terminal, progress is shown on stderr.
Exit status: 0 when every report was stored, a duplicate or refused; 1 when
a report could not be stored or a path not read (or, with --strict, when
any was refused); 2 for usage or configuration errors.

`

// importFlags are the flags of report import.
type importFlags struct {
	intakeFlags
	noPTR, strict, quiet bool
}

func (f *importFlags) register(fs *flag.FlagSet) {
	f.intakeFlags.register(fs)
	fs.BoolVar(&f.noPTR, "no-ptr", false, "do not look up the reverse DNS names of new sources now (they are looked up later)")
	fs.BoolVar(&f.strict, "strict", false, "exit 1 when any report, file or message was refused")
	fs.BoolVar(&f.quiet, "quiet", false, "list no refusals, only the summary")
}

// cmdReportImport is `report import`.
func cmdReportImport(args []string, stdout, stderr io.Writer) int {
	var imp importFlags
	fs := flag.NewFlagSet("report import", flag.ContinueOnError)
	imp.register(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), importUsage); fs.PrintDefaults() }
	paths, code, ok := parseIntakeArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if len(paths) == 0 {
		fmt.Fprintf(stderr, "report import: no path given\n%s", importUsage)
		return exitConfig
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, st, err := openIntakeStore(ctx, &imp.intakeFlags)
	if err != nil {
		fmt.Fprintf(stderr, "report import: %v\n", err)
		return exitConfig
	}
	defer st.Close()
	if len(cfg.Intake.Domains) == 0 {
		fmt.Fprintln(stderr, "report import: [intake] domains is empty: every report would be refused")
		return exitConfig
	}
	sum, err := runImport(ctx, cfg, st, paths, importOptions{noPTR: imp.noPTR, quiet: imp.quiet, stdout: stdout, stderr: stderr})
	printSummary(stdout, &sum)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "report import: %v\n", err)
		return exitError
	case sum.Failed > 0 || imp.strict && sum.RefusedTotal() > 0:
		return exitError
	}
	return exitOK
}

type importOptions struct {
	noPTR, quiet   bool
	stdout, stderr io.Writer
}

// runImport imports paths with the enricher running beside it, then gives
// the enricher [intake] ptr_budget to finish.
func runImport(ctx context.Context, cfg *config.Config, st *store.Store, paths []string, o importOptions) (intake.Summary, error) {
	var enr *intake.Enricher
	ectx, ecancel := context.WithCancel(ctx)
	defer ecancel()
	if !o.noPTR && cfg.Intake.PTRBudget > 0 {
		res, err := cache.New(cacheConfig(cfg.DNS))
		if err != nil {
			return intake.Summary{}, fmt.Errorf("dns: %w", err)
		}
		geo, err := intake.OpenGeo(cfg.Intake.GeoIPFiles)
		if err != nil {
			return intake.Summary{}, err
		}
		defer geo.Close()
		enr = intake.NewEnricher(st, res, intake.EnrichConfig{Geo: geo})
		go enr.Run(ectx)
	}
	in := intake.New(st, intake.Config{
		Domains:  cfg.Intake.Domains,
		Limits:   intake.LimitsOf(cfg.Intake),
		Enricher: enr,
		Logger:   slog.New(slog.DiscardHandler),
	})
	im := &intake.Importer{In: in}
	if !o.quiet {
		im.OnOutcome = func(path string, out intake.Outcome) {
			if out.Status == intake.StatusRefused || out.Status == intake.StatusFailed {
				fmt.Fprintf(o.stdout, "%s: %s %s: %s\n", clean(path), out.Status, out.Reason, clean(out.Detail))
			}
		}
		im.OnSkip = func(path string) {
			fmt.Fprintf(o.stdout, "%s: skipped: neither a report, a message nor an mbox file\n", clean(path))
		}
	}
	p := newProgress(o.stderr)
	im.Progress = p.show
	sum, err := im.Import(ctx, paths)
	p.done()
	if enr != nil {
		if !enr.Drain(cfg.Intake.PTRBudget, ecancel) {
			fmt.Fprintf(o.stderr, "report import: reverse DNS not finished within ptr_budget %s: the rest is looked up later\n", cfg.Intake.PTRBudget)
		}
	}
	return sum, err
}

func printSummary(w io.Writer, s *intake.Summary) {
	secs := max(s.Elapsed.Seconds(), 1e-3)
	fmt.Fprintf(w, "%d files, %d messages, %d reports: %d stored (%d rows, %d messages), %d duplicates, %d refused, %d failed in %.1fs (%.0f reports/s, %.0f rows/s)\n",
		s.Files, s.Messages, s.Reports, s.Stored, s.Rows, s.RowMessages, s.Duplicates, s.RefusedTotal(), s.Failed,
		s.Elapsed.Seconds(), float64(s.Reports)/secs, float64(s.Rows)/secs)
	if s.Skipped > 0 {
		fmt.Fprintf(w, "  skipped %d files that are neither reports, messages nor mbox files\n", s.Skipped)
	}
	for _, r := range slices.Sorted(maps.Keys(s.Refused)) {
		fmt.Fprintf(w, "  refused %s: %d\n", r, s.Refused[r])
	}
}

// progress shows the import's progress on a terminal, at most five times a
// second, on one line.
type progress struct {
	w    io.Writer
	tty  bool
	last time.Time
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	tty := false
	if ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty}
}

func (p *progress) show(s intake.Summary) {
	if !p.tty || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	secs := max(s.Elapsed.Seconds(), 1e-3)
	fmt.Fprintf(p.w, "\r%d files, %d reports, %d rows, %d duplicates, %d refused, %.0f reports/s ",
		s.Files, s.Reports, s.Rows, s.Duplicates, s.RefusedTotal(), float64(s.Reports)/secs)
}

func (p *progress) done() {
	if p.tty && !p.last.IsZero() {
		fmt.Fprintln(p.w)
	}
}

// clean makes text from reports and file names safe for a terminal:
// control and other non-printable characters are shown escaped.
func clean(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// timeRange is the range of the questions (internal/daterange).
type timeRange struct{ f daterange.Flags }

func (r *timeRange) register(fs *flag.FlagSet) {
	fs.StringVar(&r.f.Since, "since", "", "start of the range, `T` (RFC 3339 or YYYY-MM-DD, UTC), included")
	fs.StringVar(&r.f.Until, "until", "", "end of the range, `T`, excluded (default: the end of today, UTC)")
	fs.IntVar(&r.f.Days, "days", 0, "the last `N` UTC days, today included (default 7 when --since is not given)")
}

// question is what the three question commands share.
type question struct {
	name  string
	usage string
	// ask answers for domain in [since, until) and prints in text.
	ask func(ctx context.Context, st *store.Store, domain string, since, until time.Time) (any, error)
	txt func(w io.Writer, v any)
}

func cmdReportSenders(args []string, stdout, stderr io.Writer) int {
	return runQuestion(question{name: "senders", usage: "who sends as DOMAIN: senders grouped by the organizational domain of their reverse DNS name",
		ask: func(ctx context.Context, st *store.Store, d string, s, u time.Time) (any, error) {
			return intake.Senders(ctx, st, d, s, u)
		},
		txt: func(w io.Writer, v any) { printSenders(w, v.(intake.SendersReport), "senders") },
	}, args, stdout, stderr)
}

func cmdReportNew(args []string, stdout, stderr io.Writer) int {
	return runQuestion(question{name: "new", usage: "the senders of DOMAIN first seen in the range",
		ask: func(ctx context.Context, st *store.Store, d string, s, u time.Time) (any, error) {
			return intake.NewSenders(ctx, st, d, s, u)
		},
		txt: func(w io.Writer, v any) { printSenders(w, v.(intake.SendersReport), "new senders") },
	}, args, stdout, stderr)
}

func cmdReportFailures(args []string, stdout, stderr io.Writer) int {
	return runQuestion(question{name: "failures", usage: "what fails for DOMAIN and why, with the fix in words",
		ask: func(ctx context.Context, st *store.Store, d string, s, u time.Time) (any, error) {
			return intake.Failures(ctx, st, d, s, u)
		},
		txt: func(w io.Writer, v any) { printFailures(w, v.(intake.FailuresReport)) },
	}, args, stdout, stderr)
}

// questionFlags are the flags of report senders, failures and new.
type questionFlags struct {
	intakeFlags
	rng    timeRange
	asJSON bool
}

func (f *questionFlags) register(fs *flag.FlagSet) {
	f.intakeFlags.register(fs)
	f.rng.register(fs)
	fs.BoolVar(&f.asJSON, "json", false, "print the answer as JSON (docs/intake.md)")
}

func runQuestion(q question, args []string, stdout, stderr io.Writer) int {
	var qf questionFlags
	fs := flag.NewFlagSet("report "+q.name, flag.ContinueOnError)
	qf.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: dmarc-milter report %s --config FILE [--since T] [--until T] [--days N] [--json] DOMAIN\n\n%s.\n\n", q.name, q.usage)
		fs.PrintDefaults()
	}
	pos, code, ok := parseIntakeArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "report %s: need one domain\n", q.name)
		return exitConfig
	}
	domain, err := policy.NormalizeDomain(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "report %s: %q: %v\n", q.name, pos[0], err)
		return exitConfig
	}
	since, until, err := qf.rng.f.Resolve(time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "report %s: %v\n", q.name, err)
		return exitConfig
	}
	ctx := context.Background()
	_, st, err := openIntakeStore(ctx, &qf.intakeFlags)
	if err != nil {
		fmt.Fprintf(stderr, "report %s: %v\n", q.name, err)
		return exitConfig
	}
	defer st.Close()
	v, err := q.ask(ctx, st, domain, since, until)
	if err != nil {
		fmt.Fprintf(stderr, "report %s: %v\n", q.name, err)
		return exitError
	}
	if qf.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			fmt.Fprintf(stderr, "report %s: %v\n", q.name, err)
			return exitError
		}
		return exitOK
	}
	q.txt(stdout, v)
	return exitOK
}

func rangeText(since, until time.Time) string {
	return fmt.Sprintf("%s to %s (UTC, end excluded)", since.Format(time.RFC3339), until.Format(time.RFC3339))
}

func printSenders(w io.Writer, rep intake.SendersReport, what string) {
	fmt.Fprintf(w, "%s of %s, %s: %d messages from %d senders\n", what, rep.Domain, rangeText(rep.Since, rep.Until),
		rep.Messages, len(rep.Senders))
	for _, s := range rep.Senders {
		auth := "NOT authorized"
		if s.Authorized {
			auth = "authorized"
		}
		fmt.Fprintf(w, "\n%s  %s  %d messages (SPF aligned pass %d, DKIM aligned pass %d)  seen %s to %s\n",
			clean(s.Org), auth, s.Messages, s.SPFAlignedPass, s.DKIMAlignedPass,
			s.FirstSeen.Format(time.DateOnly), s.LastSeen.Format(time.DateOnly))
		var disp []string
		for _, k := range slices.Sorted(maps.Keys(s.Dispositions)) {
			disp = append(disp, fmt.Sprintf("%s %d", clean(k), s.Dispositions[k]))
		}
		fmt.Fprintf(w, "  dispositions: %s\n", strings.Join(disp, ", "))
		for _, ip := range s.IPs {
			ptr := ip.PTR
			if ptr == "" {
				ptr = "(" + ip.PTRState + ")"
			} else if ip.PTRState != "found" {
				ptr += " (" + ip.PTRState + ")"
			}
			fmt.Fprintf(w, "  %-39s %-40s %d\n", ip.IP, clean(ptr), ip.Messages)
		}
	}
}

func printFailures(w io.Writer, rep intake.FailuresReport) {
	fmt.Fprintf(w, "failures of %s, %s: %d of %d messages failed DMARC\n", rep.Domain, rangeText(rep.Since, rep.Until),
		rep.DMARCFail, rep.Messages)
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "\n%s: %s from %s: %d messages (%d failed DMARC)\n", f.Cause, clean(f.Detail), clean(f.Sender), f.Messages, f.DMARCFail)
		fmt.Fprintf(w, "  addresses: %s\n", strings.Join(f.IPs, " "))
		fmt.Fprintf(w, "  fix: %s\n", f.Fix)
	}
}
