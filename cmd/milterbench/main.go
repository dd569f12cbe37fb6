// Command milterbench is a milter load generator: it drives any milter (or
// a chain of milters, as Postfix's smtpd_milters does) over the milter
// protocol exactly as Postfix does, with a generated corpus whose DNS
// records it serves itself, and reports throughput, latency, the milters'
// CPU time and peak memory, DNS queries per message and verdict counts.
//
// Usage:
//
//	milterbench run  --milter unix:/run/a.sock [--milter unix:/run/b.sock] [flags]
//	milterbench dns  --listen 127.0.0.53:53 [--zone-out FILE] [flags]
//	milterbench zone [corpus flags]   # print the zone and the corpus summary
//	milterbench table < results       # median table and targets of RESULT lines
//	milterbench probe --milter ADDR   # what a milter negotiates with Postfix 3.7
//
// See docs/performance.md for the comparison with OpenDKIM + OpenDMARC.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(ctx, os.Args[2:], os.Stdout)
	case "dns":
		err = cmdDNS(ctx, os.Args[2:], os.Stdout)
	case "zone":
		err = cmdZone(os.Args[2:], os.Stdout)
	case "table":
		err = cmdTable(os.Stdin, os.Stdout)
	case "probe":
		err = cmdProbe(os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		usage(os.Stdout)
		return
	default:
		usage(os.Stderr)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "milterbench:", err)
		os.Exit(1)
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage: milterbench run|dns|zone|table|probe [flags]   (milterbench CMD -h for flags)`)
}

// multiFlag collects a repeated string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// intsFlag collects a repeated int flag.
type intsFlag []int

func (m *intsFlag) String() string { return fmt.Sprint(*m) }
func (m *intsFlag) Set(s string) error {
	var v int
	if _, err := fmt.Sscan(s, &v); err != nil {
		return err
	}
	*m = append(*m, v)
	return nil
}

func corpusFlags(fs *flag.FlagSet) *corpusConfig {
	c := &corpusConfig{}
	fs.Uint64Var(&c.Seed, "seed", 7, "corpus seed")
	fs.IntVar(&c.Sessions, "corpus-sessions", 0, "distinct SMTP sessions in the corpus, cycled (0: enough for 480 messages)")
	fs.IntVar(&c.PerSession, "per-session", 4, "messages per SMTP session, and per milter connection (Postfix opens one per session; inbound MX traffic is mostly 1)")
	fs.IntVar(&c.BodyMin, "body-min", 2<<10, "smallest body (bytes)")
	fs.IntVar(&c.BodyMax, "body-max", 50<<10, "largest body (bytes)")
	return c
}

func cmdZone(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("zone", flag.ContinueOnError)
	cc := corpusFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := newCorpus(*cc)
	if err != nil {
		return err
	}
	fmt.Fprint(out, c.Zone)
	fmt.Fprintf(out, "; %d sessions, %d messages; expected %s\n", len(c.Sessions), c.messages(), fmtCounts(expectedRange(c, 0, len(c.Sessions))))
	return nil
}

func cmdDNS(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	cc := corpusFlags(fs)
	listen := fs.String("listen", "127.0.0.53:53", "address to answer on (UDP and TCP)")
	zoneOut := fs.String("zone-out", "", "also write the zone to this file")
	delay := fs.Duration("delay", 0, "delay of every answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := newCorpus(*cc)
	if err != nil {
		return err
	}
	if *zoneOut != "" {
		if err := os.WriteFile(*zoneOut, []byte(c.Zone), 0o644); err != nil {
			return err
		}
	}
	srv, err := startDNS(c.Zone, *listen)
	if err != nil {
		return err
	}
	defer srv.stop()
	srv.SetDelay(*delay)
	fmt.Fprintf(out, "serving the corpus zone on %s (delay %s); Ctrl-C to stop\n", srv.addr, *delay)
	<-ctx.Done()
	fmt.Fprintf(out, "%d queries\n", srv.Queries())
	return nil
}

// runFlags are the flags of the run subcommand.
type runFlags struct {
	corpus      *corpusConfig
	milters     multiFlag
	pids        intsFlag
	label       string
	concurrency int
	count       int
	duration    time.Duration
	warmup      int
	timeout     time.Duration
	dnsListen   string
	dnsDelay    time.Duration
	earlyQID    bool
	waitMilter  time.Duration
	rate        float64
}

func parseRunFlags(args []string) (*runFlags, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	f := &runFlags{corpus: corpusFlags(fs)}
	fs.Var(&f.milters, "milter", "milter address (unix:PATH or inet:HOST:PORT); repeat for a chain, in smtpd_milters order")
	fs.Var(&f.pids, "pid", "PID of a milter process (repeat; default: the owner of each --milter socket)")
	fs.StringVar(&f.label, "label", "run", "label of this run in the report")
	fs.IntVar(&f.concurrency, "concurrency", 8, "concurrent SMTP sessions")
	fs.IntVar(&f.count, "count", 2000, "messages to measure (rounded up to whole sessions; 0 with --duration: no bound)")
	fs.DurationVar(&f.duration, "duration", 0, "bound of the measured phase (0: none)")
	fs.IntVar(&f.warmup, "warmup", 200, "messages sent before measuring (fill caches)")
	fs.DurationVar(&f.timeout, "timeout", 60*time.Second, "per-event milter timeout")
	fs.StringVar(&f.dnsListen, "dns-listen", "", "also serve the corpus zone on this address (e.g. 127.0.0.53:53); the milters must be configured to query it")
	fs.DurationVar(&f.dnsDelay, "dns-delay", 0, "delay of every DNS answer")
	fs.BoolVar(&f.earlyQID, "early-queue-id", false, "define macro i from MAIL on (smtpd_delay_open_until_valid_rcpt = no)")
	fs.DurationVar(&f.waitMilter, "wait", 10*time.Second, "wait this long for the milter sockets to accept connections")
	fs.Float64Var(&f.rate, "rate", 0, "start messages at this many per second, evenly spaced, in the measured phase (0: as fast as the sessions go); latency below saturation")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if len(f.milters) == 0 {
		return nil, fmt.Errorf("run: at least one --milter")
	}
	if f.concurrency < 1 || (f.count <= 0 && f.duration <= 0) {
		return nil, fmt.Errorf("run: need --concurrency ≥ 1 and --count or --duration")
	}
	return f, nil
}

func cmdRun(ctx context.Context, args []string, out io.Writer) error {
	f, err := parseRunFlags(args)
	if err != nil {
		return err
	}
	c, err := newCorpus(*f.corpus)
	if err != nil {
		return err
	}
	srv, err := startDNS(c.Zone, f.dnsListen)
	if err != nil {
		return err
	}
	defer srv.stop()
	slog.Info("milterbench: DNS", "addr", srv.addr, "delay", f.dnsDelay)
	for _, m := range f.milters {
		if err := waitMilter(m, f.waitMilter); err != nil {
			return err
		}
	}
	r, err := measure(ctx, c, srv, f)
	if err != nil {
		return err
	}
	r.print(out)
	return nil
}

// waitMilter waits until a milter answers option negotiation.
func waitMilter(addr string, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		m, err := dialMilter(addr, 5*time.Second)
		if err == nil {
			m.close()
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("milter %s: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// measure runs the warm-up then the measured phase and gathers the figures.
func measure(ctx context.Context, c *corpus, srv *dnsServer, f *runFlags) (*report, error) {
	per := f.corpus.PerSession
	cfg := loadConfig{Milters: f.milters, Concurrency: f.concurrency, Timeout: f.timeout, EarlyQueueID: f.earlyQID}
	srv.SetDelay(f.dnsDelay)
	if f.warmup > 0 {
		w := cfg
		w.Sessions = (f.warmup + per - 1) / per
		runPhase(ctx, c, w, 0)
	}
	first := (f.warmup + per - 1) / per
	pids := []int(f.pids)
	if len(pids) == 0 {
		for _, m := range f.milters {
			pid, err := pidOfMilter(m)
			if err != nil {
				slog.Warn("milterbench: no PID, CPU and memory not reported", "milter", m, "err", err)
				pids = nil
				break
			}
			pids = append(pids, pid)
		}
	}
	for _, p := range pids {
		// VmHWM then covers the measured phase only.
		if err := resetPeakRSS(p); err != nil {
			slog.Warn("milterbench: cannot reset peak RSS; VmHWM is since process start", "pid", p, "err", err)
		}
	}
	before := snapshot(pids)
	cfg.Sessions = (f.count + per - 1) / per
	cfg.Duration = f.duration
	cfg.Pace = newPacer(f.rate)
	srv.ResetCounts()
	rec, elapsed := runPhase(ctx, c, cfg, first)
	after := snapshot(pids)
	r := &report{Label: f.label, Milters: f.milters, PIDs: pids, Concurrency: f.concurrency, PerSession: per, Rate: f.rate,
		DNSDelayMS: ms(f.dnsDelay), Messages: rec.messages, Sessions: rec.sessions, Seconds: elapsed.Seconds(),
		Verdicts: rec.verdicts, Mismatches: rec.mismatches, Samples: rec.samples, Errors: rec.errors,
		ErrSamples: rec.errSamples, DNSQueries: srv.Queries()}
	r.Expected = expectedRange(c, first, rec.sessions)
	if rec.messages > 0 {
		r.MsgPerSec = float64(rec.messages) / elapsed.Seconds()
		r.DNSPerMsg = float64(r.DNSQueries) / float64(rec.messages)
	}
	r.fillLatency(rec)
	fillProc(r, before, after, rec.messages)
	return r, nil
}

// expectedRange counts the wanted outcomes of n sessions from first.
func expectedRange(c *corpus, first, n int) map[string]int {
	out := map[string]int{}
	for i := first; i < first+n; i++ {
		for _, m := range c.Sessions[i%len(c.Sessions)].Msgs {
			out[m.Want.Action]++
			if m.Want.Action != "reject" {
				out["dmarc="+m.Want.DMARC]++
			}
		}
	}
	return out
}

// procSnap is the state of the measured processes at one instant.
type procSnap struct {
	pids      []int
	cpu       []time.Duration
	self      time.Duration
	busy, all int64
}

func snapshot(pids []int) procSnap {
	s := procSnap{pids: pids, self: selfCPU()}
	s.busy, s.all = machineCPU()
	for _, p := range pids {
		c, _ := procCPU(p)
		s.cpu = append(s.cpu, c)
	}
	return s
}

func fillProc(r *report, before, after procSnap, msgs int) {
	r.CPUPer1000, r.PeakRSSMB = -1, -1
	if msgs == 0 {
		return
	}
	per1000 := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(msgs) }
	r.GenPer1000 = per1000(after.self - before.self)
	if after.all > before.all {
		r.MachineBusy = 100 * float64(after.busy-before.busy) / float64(after.all-before.all)
	}
	if len(after.pids) == 0 {
		return
	}
	r.CPUPer1000, r.PeakRSSMB = 0, 0
	for i, p := range after.pids {
		c := per1000(after.cpu[i] - before.cpu[i])
		r.CPUByPID = append(r.CPUByPID, c)
		r.CPUPer1000 += c
		hwm, _, err := procMem(p)
		if err != nil {
			continue
		}
		mb := float64(hwm) / (1 << 20)
		r.RSSByPID = append(r.RSSByPID, mb)
		r.PeakRSSMB += mb
	}
}

// cmdProbe prints what a milter answers to Postfix 3.7's option negotiation.
func cmdProbe(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	var milters multiFlag
	fs.Var(&milters, "milter", "milter address (repeat)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, a := range milters {
		m, err := dialMilter(a, 10*time.Second)
		if err != nil {
			return err
		}
		m.close()
		fmt.Fprintf(out, "%s: %s\n", a, m.describe())
	}
	return nil
}
