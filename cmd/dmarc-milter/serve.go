package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"reflect"
	"strconv"
	"syscall"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/metrics"
	"github.com/dmarc-milter/dmarc-milter/internal/milter"
	"github.com/dmarc-milter/dmarc-milter/internal/reporter"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

// daemon is the running service: what a reload may replace.
type daemon struct {
	flags   commonFlags
	log     *slog.Logger
	level   *slog.LevelVar
	cfg     *config.Config
	res     *cache.Resolver
	metrics *metrics.Metrics
	srv     *milter.Server
	intake  *intakeRun // serve_intake.go; nil when off
	// failed receives the error that ended the milter listener.
	failed chan error
	// Reporting (nil when report.enabled is false): the store, the
	// recorder fed by the milter, and the sender's run.
	now          func() time.Time
	opener       *storeOpener
	rec          *reporter.Recorder
	senderCancel context.CancelFunc
	senderDone   chan struct{}
	// web is the dashboard listener (web.listen), nil when off.
	web *dashboard
}

func cmdServe(args []string, stderr io.Writer) int {
	d := &daemon{level: new(slog.LevelVar)}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	d.flags.register(fs)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	d.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: d.level}))
	// Libraries that log through the standard logger go to our handler
	// too.
	slog.SetDefault(d.log)
	cfg, err := loadConfig(&d.flags)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	// Catch the signals before announcing readiness: an early SIGHUP must
	// not kill the daemon.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	if err := d.start(cfg); err != nil {
		d.log.Error("cannot start", "err", err)
		return exitError
	}
	return d.loop(sigs)
}

// start builds the engine, opens the sockets and starts serving.
func (d *daemon) start(cfg *config.Config) error {
	d.level.Set(logLevel(cfg.LogLevel))
	warnPermissions(d.log, d.flags.config)
	applyRuntime(d.log, cfg.Runtime)
	res, err := cache.New(cacheConfig(cfg.DNS))
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	d.cfg, d.res = cfg, res
	d.metrics = metrics.New(version)
	d.metrics.SetDNSStats(res.Stats)
	eng, err := milter.NewEngine(cfg, res, d.metrics)
	if err != nil {
		return err
	}
	if err := d.startReporting(cfg, eng); err != nil {
		return err
	}
	if err := d.startIntake(cfg, eng); err != nil {
		return err
	}
	d.srv = milter.NewServer(eng, d.log)
	d.metrics.SetConnections(d.srv.ActiveConnections)
	ln, err := listen(d.log, cfg)
	if err != nil {
		return err
	}
	if cfg.Metrics.Listen != "" {
		if err := d.metrics.Serve(cfg.Metrics.Listen, cfg.Metrics.Pprof, d.log); err != nil {
			ln.Close()
			return fmt.Errorf("metrics: %w", err)
		}
	}
	if err := d.startWeb(cfg); err != nil {
		ln.Close()
		return fmt.Errorf("web: %w", err)
	}
	d.failed = make(chan error, 1)
	go func() {
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, milter.ErrServerClosed) {
			d.failed <- err
		}
	}()
	id := cfg.AuthservID
	if id == "" {
		id = "macro j, else " + eng.AuthservID("")
	}
	d.log.Info("dmarc-milter started", "version", version, "listen", cfg.Listen, "addr", ln.Addr().String(), "mode", cfg.Mode,
		"authserv_id", id, "nameservers", res.Nameservers(), "metrics", cfg.Metrics.Listen)
	notify("READY=1")
	return nil
}

// loop handles signals until SIGTERM/SIGINT, then drains. If the listener
// fails, it drains too and exits with status 1: a daemon that no longer
// accepts connections must not look alive to its supervisor (systemd
// restarts it; Postfix tempfails meanwhile).
func (d *daemon) loop(sigs <-chan os.Signal) int {
	code := exitOK
wait:
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.reload()
				continue
			}
			break wait
		case err := <-d.failed:
			d.log.Error("milter listener failed: exiting", "err", err)
			code = exitError
			break wait
		}
	}
	notify("STOPPING=1")
	d.log.Info("shutting down: draining messages in flight", "deadline", d.cfg.Timeouts.Drain)
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Timeouts.Drain)
	defer cancel()
	if err := d.srv.Shutdown(ctx); err != nil {
		d.log.Warn("drain deadline passed; remaining connections closed")
	}
	d.stopReporting(ctx)
	d.stopIntake(ctx)
	d.metrics.Close()
	d.stopWeb()
	d.log.Info("stopped")
	return code
}

// reload re-reads the configuration; an invalid one keeps the old.
func (d *daemon) reload() {
	notify("RELOADING=1")
	defer notify("READY=1")
	cfg, err := loadConfig(&d.flags)
	if err != nil {
		d.log.Error("reload refused: keeping the running configuration", "err", err)
		d.metrics.Reload(false)
		return
	}
	res := d.res
	if !reflect.DeepEqual(cfg.DNS, d.cfg.DNS) {
		if res, err = cache.New(cacheConfig(cfg.DNS)); err != nil {
			d.log.Error("reload refused: keeping the running configuration", "err", err)
			d.metrics.Reload(false)
			return
		}
		d.metrics.SetDNSStats(res.Stats)
	}
	eng, err := milter.NewEngine(cfg, res, d.metrics)
	if err != nil {
		d.log.Error("reload refused: keeping the running configuration", "err", err)
		d.metrics.Reload(false)
		return
	}
	for _, k := range restartOnly(d.cfg, cfg) {
		d.log.Warn("setting changed; it takes effect at the next restart", "key", k)
	}
	if d.rec != nil {
		eng.SetRecorder(d.rec)
		if !reflect.DeepEqual(cfg.Report, d.cfg.Report) && cfg.Report.Enabled {
			d.stopSender()
			if cfg.Report.Schedule == config.ScheduleDaemon {
				d.startSender(cfg, res)
			}
			d.log.Info("report settings applied", "schedule", cfg.Report.Schedule)
		}
	}
	d.attachIntake(eng)
	d.srv.SetEngine(eng)
	d.cfg, d.res = cfg, res
	d.level.Set(logLevel(cfg.LogLevel))
	warnPermissions(d.log, d.flags.config)
	applyRuntime(d.log, cfg.Runtime)
	d.metrics.Reload(true)
	d.log.Info("configuration reloaded", "mode", cfg.Mode)
}

// restartOnly lists the changed settings that a reload cannot apply.
func restartOnly(old, cur *config.Config) []string {
	var keys []string
	if old.Listen != cur.Listen {
		keys = append(keys, "listen")
	}
	if old.Socket != cur.Socket {
		keys = append(keys, "socket")
	}
	if old.Metrics != cur.Metrics {
		keys = append(keys, "metrics")
	}
	// The store and the recorder's queue are made at start.
	if old.Store != cur.Store {
		keys = append(keys, "store.url")
	}
	o, c := old.Report, cur.Report
	for _, k := range []struct {
		name    string
		changed bool
	}{
		{"report.enabled", o.Enabled != c.Enabled},
		{"report.interval", o.Interval != c.Interval},
		{"report.include_envelope_to", o.IncludeEnvelopeTo != c.IncludeEnvelopeTo},
		{"report.own_addresses", !reflect.DeepEqual(o.OwnAddresses, c.OwnAddresses) || o.From != c.From},
		{"report.queue_size", o.QueueSize != c.QueueSize},
		{"report.flush_interval", o.FlushInterval != c.FlushInterval},
	} {
		if k.changed {
			keys = append(keys, k.name)
		}
	}
	if !reflect.DeepEqual(old.Intake, cur.Intake) {
		keys = append(keys, "intake")
	}
	if !reflect.DeepEqual(old.Web, cur.Web) {
		keys = append(keys, "web")
	}
	return keys
}

// listen opens the milter socket. A unix socket gets the configured mode
// and group; a stale socket file left by a crash is replaced.
func listen(log *slog.Logger, cfg *config.Config) (net.Listener, error) {
	network, addr, err := config.ParseListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	if network != "unix" {
		return net.Listen(network, addr)
	}
	if st, err := os.Lstat(addr); err == nil && st.Mode()&os.ModeSocket != 0 {
		os.Remove(addr)
	}
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	mode, _ := cfg.Socket.FileMode()
	if err := os.Chmod(addr, os.FileMode(mode)); err != nil {
		ln.Close()
		return nil, err
	}
	if cfg.Socket.Group != "" {
		if err := chgrp(addr, cfg.Socket.Group); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if mode&0o002 != 0 {
		log.Warn("milter socket is world-writable: any local user can talk to the milter", "path", addr, "mode", fmt.Sprintf("%04o", mode))
	}
	return ln, nil
}

func chgrp(path, group string) error {
	g, err := user.LookupGroup(group)
	if err != nil {
		return fmt.Errorf("socket.group: %w", err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return fmt.Errorf("socket.group: %w", err)
	}
	return os.Chown(path, -1, gid)
}

// notify sends a systemd sd_notify(3) message when NOTIFY_SOCKET is set
// (Type=notify units).
func notify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte(state))
}

// startReporting starts the recorder (and, with schedule "daemon", the
// sender) when report.enabled; otherwise nothing touches the disk.
func (d *daemon) startReporting(cfg *config.Config, eng *milter.Engine) error {
	now, err := clock()
	if err != nil {
		return err
	}
	d.now = now
	if !cfg.NeedsStore() {
		return nil
	}
	d.opener = &storeOpener{url: cfg.StoreURL(), log: d.log, now: now}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.opener.get(ctx); err != nil {
		// Mail must flow: the recorder queues and retries.
		d.log.Error("report store not available; rows are queued in memory until it answers", "err", err.Error())
	}
	d.rec = reporter.NewRecorder(recorderOptions(cfg, d.opener, d.log, d.metrics, now))
	eng.SetRecorder(d.rec)
	if cfg.Report.Schedule == config.ScheduleDaemon {
		d.startSender(cfg, d.res)
	}
	d.log.Info("aggregate reports enabled", "store", redactURL(cfg.StoreURL()), "schedule", cfg.Report.Schedule,
		"interval", cfg.Report.Interval, "from", cfg.Report.From)
	return nil
}

// senderTick is how often the daemon looks for reports due.
const senderTick = time.Minute

// startSender runs the sender until stopSender.
func (d *daemon) startSender(cfg *config.Config, res *cache.Resolver) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d.senderCancel, d.senderDone = cancel, done
	go func() {
		defer close(done)
		defer func() {
			if v := recover(); v != nil {
				d.log.Error("report sender panic; reports stop until restart", "panic", fmt.Sprint(v))
			}
		}()
		for ctx.Err() == nil {
			st, err := d.opener.get(ctx)
			if err == nil {
				var s *reporter.Sender
				if s, err = newSender(cfg, st, res, d.log, d.metrics, d.now, false); err == nil {
					s.Run(ctx, senderTick)
					return
				}
			}
			d.log.Error("report sender cannot start; retrying in a minute", "err", err.Error())
			select {
			case <-ctx.Done():
			case <-time.After(senderTick):
			}
		}
	}()
}

func (d *daemon) stopSender() {
	if d.senderCancel != nil {
		d.senderCancel()
		<-d.senderDone
		d.senderCancel, d.senderDone = nil, nil
	}
}

// stopReporting stops the sender and drains the recorder's queue into the
// store (SIGTERM loses nothing that the store accepts before ctx ends).
func (d *daemon) stopReporting(ctx context.Context) {
	d.stopSender()
	if d.rec == nil {
		return
	}
	rows, msgs := d.rec.Queued()
	if err := d.rec.Close(ctx); err == nil {
		d.log.Info("report rows written", "rows", rows, "messages", msgs)
	}
	d.opener.close()
}
