package intake

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/health"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// DaemonResolver is the DNS the daemon's intake needs: reverse lookups for
// the enricher and TXT lookups for the health checks (pkg/cache's Resolver).
type DaemonResolver interface {
	Resolver
	health.Resolver
}

// Daemon is the intake as `serve` runs it: the capture of report mail, the
// enrichment of new sources, and the scheduled health checks.
type Daemon struct {
	// Capture is given to the milter engine (Engine.SetCapturer), after
	// every reload too.
	Capture *Capture
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	geo     *Geo
}

// StartDaemon starts the intake's background work over st for cfg (nil
// when [intake] domains is empty: there is nothing to do). method is the
// DMARC discovery method of the health checks; m may be nil. Stop ends it.
// It fails only when a geoip file cannot be opened.
func StartDaemon(st *store.Store, r DaemonResolver, cfg config.Intake, method policy.Method, log *slog.Logger, m Metrics) (*Daemon, error) {
	if len(cfg.Domains) == 0 {
		return nil, nil
	}
	geo, err := OpenGeo(cfg.GeoIPFiles)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{cancel: cancel, geo: geo}
	enr := NewEnricher(st, r, EnrichConfig{Logger: log, Geo: geo})
	in := New(st, Config{Domains: cfg.Domains, Enricher: enr, Logger: log, Metrics: m,
		Limits: LimitsOf(cfg)})
	d.Capture = NewCapture(in, CaptureConfig{Addresses: cfg.Addresses, MaxSize: cfg.MaxReportSize,
		Discard: cfg.Discard, AcceptFailingDMARC: cfg.AcceptFailingDMARC, Logger: log})
	d.wg.Go(func() { enr.Run(ctx) })
	d.wg.Go(func() { d.Capture.Run(ctx) })
	if cfg.Retention > 0 {
		d.wg.Go(func() { expireLoop(ctx, st, cfg.Retention, log) })
	}
	if cfg.HealthInterval > 0 {
		d.wg.Go(func() {
			HealthSchedule(ctx, st, r, cfg.Domains, method, cfg.HealthInterval, time.Minute, log)
		})
	}
	return d, nil
}

// Stop ends the background work and stores the captured mail still
// queued, within ctx.
func (d *Daemon) Stop(ctx context.Context) {
	if d == nil {
		return
	}
	d.cancel()
	d.wg.Wait()
	d.Capture.Drain(ctx)
	d.geo.Close()
}

// LimitsOf are pkg/report's limits with [intake] max_report_size.
func LimitsOf(cfg config.Intake) (l report.Limits) {
	l.MaxInputBytes = int64(cfg.MaxReportSize)
	l.MaxXMLBytes = 2 * int64(cfg.MaxReportSize)
	return l
}

// expireEvery is how often the received reports past their retention are
// deleted (and once at start).
const expireEvery = 6 * time.Hour

// expireLoop deletes what the intake keeps past keep ([intake] retention),
// now and every expireEvery, until ctx ends. Only the intake's part of the
// store is touched (the other retentions are zero here).
func expireLoop(ctx context.Context, st *store.Store, keep time.Duration, log *slog.Logger) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("intake: expiry panic", "panic", p)
		}
	}()
	t := time.NewTicker(expireEvery)
	defer t.Stop()
	for {
		ex, err := st.Expire(ctx, time.Now(), store.Retention{Received: keep})
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("intake: expiry", "err", err)
		case ex.Received > 0:
			log.Info("intake: received reports expired", "reports", ex.Received, "retention", keep)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
