package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"syscall"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/internal/web"
)

// defaultWebListen is the address of `dmarc-milter web` when neither
// --listen nor web.listen names one: loopback only.
const defaultWebListen = "127.0.0.1:8895"

const webUsage = `usage: dmarc-milter web [--config FILE] [--listen HOST:PORT] [--store URL]

Serves the read-only dashboard (docs/dashboard.md) over the report store,
without the milter: for a host that is not an MX, pointed at the shared
PostgreSQL store. --listen overrides web.listen (default ` + defaultWebListen + `);
--store overrides [store] url.
`

// webFlags are the flags of web.
type webFlags struct{ config, listen, store string }

func (f *webFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "configuration `file` (TOML); none: the built-in defaults")
	fs.StringVar(&f.listen, "listen", "", "dashboard address `host:port` (overrides web.listen)")
	fs.StringVar(&f.store, "store", "", "store `URL`: sqlite:PATH or a PostgreSQL URL (overrides [store] url)")
}

// cmdWeb runs the dashboard alone until SIGTERM or SIGINT.
func cmdWeb(args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("web", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(stderr, webUsage); fs.PrintDefaults() }
	var f webFlags
	f.register(fs)
	configPath, listen, storeURL := &f.config, &f.listen, &f.store
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dmarc-milter web: unexpected argument %q\n%s", fs.Arg(0), webUsage)
		return exitConfig
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	if *listen != "" {
		cfg.Web.Listen = *listen
	}
	if cfg.Web.Listen == "" {
		cfg.Web.Listen = defaultWebListen
	}
	if *storeURL != "" {
		cfg.Store.URL = *storeURL
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "config: %v\n", err)
		return exitConfig
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	dash, err := startWeb(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start the dashboard", "err", err)
		return exitError
	}
	err = dash.wait()
	if err != nil {
		log.Error("dashboard stopped", "err", err)
		return exitError
	}
	log.Info("stopped")
	return exitOK
}

// webStoreURL is the store the dashboard reads: the daemon's ([store] url,
// else the default file).
func webStoreURL(cfg *config.Config) (string, error) {
	return cfg.StoreURL(), nil
}

// dashboard is a running web listener with its store.
type dashboard struct {
	st   *store.Store
	done chan error
	// cancel stops it (serve only; web stops on its signal context).
	cancel context.CancelFunc
}

// startWeb opens the store and the listener of cfg.Web and serves the
// dashboard until ctx ends.
func startWeb(ctx context.Context, cfg *config.Config, log *slog.Logger) (*dashboard, error) {
	url, err := webStoreURL(cfg)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, url, store.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	srv, err := web.New(st, web.Options{User: cfg.Web.User, PasswordHash: cfg.Web.PasswordHash,
		ProxyHeader: cfg.Web.ProxyHeader, TrustedProxies: cfg.Web.Proxies(), Logger: log})
	if err != nil {
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Web.Listen)
	if err != nil {
		st.Close()
		return nil, err
	}
	if exposed(ln.Addr()) && !cfg.Web.Authenticated() {
		log.Warn("the dashboard listens beyond loopback without authentication: anyone who reaches it sees who sends mail as your domains; set web.password_hash or web.proxy_header",
			"addr", ln.Addr().String())
	}
	log.Info("dashboard started", "addr", ln.Addr().String(), "engine", st.Engine(), "authentication", cfg.Web.Authenticated())
	d := &dashboard{st: st, done: make(chan error, 1)}
	go func() {
		defer func() {
			if v := recover(); v != nil {
				d.done <- fmt.Errorf("dashboard panicked: %v", v)
			}
		}()
		err := srv.Serve(ctx, ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		st.Close()
		d.done <- err
	}()
	return d, nil
}

// wait waits for the dashboard to stop (its context ended, or it failed).
func (d *dashboard) wait() error { return <-d.done }

// exposed tells whether a listener is reachable from beyond this host.
func exposed(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return !ok || !tcp.IP.IsLoopback()
}

// startWeb starts the dashboard of serve when web.listen is set. It runs
// until stopWeb.
func (d *daemon) startWeb(cfg *config.Config) error {
	if cfg.Web.Listen == "" {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	dash, err := startWeb(ctx, cfg, d.log)
	if err != nil {
		cancel()
		return err
	}
	dash.cancel, d.web = cancel, dash
	return nil
}

// stopWeb stops the dashboard of serve, if any, and waits for it.
func (d *daemon) stopWeb() {
	if d.web == nil {
		return
	}
	d.web.cancel()
	if err := d.web.wait(); err != nil {
		d.log.Warn("dashboard stopped with an error", "err", err)
	}
}
