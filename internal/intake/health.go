package intake

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/health"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// healthLookback is how far back the reports are read for the selectors
// and subdomains a health check looks at.
const healthLookback = 30 * 24 * time.Hour

// healthNamesLimit bounds the distinct rows read for those names.
const healthNamesLimit = 20000

// HealthRequest builds the health check of domain from what its received
// reports show: the DKIM selectors of signatures for domain itself (keys
// live at selector._domainkey.domain) and the subdomains of domain seen as
// header_from or envelope_from (each needs an SPF record of its own:
// SPF is not inherited, RFC 7208 §4.4,
// https://datatracker.ietf.org/doc/html/rfc7208#section-4.4).
func HealthRequest(ctx context.Context, st *store.Store, domain string, method policy.Method, now time.Time) (health.Request, error) {
	req := health.Request{Domain: domain, Method: method}
	names, err := st.SeenNamesOf(ctx, domain, now.Add(-healthLookback), healthNamesLimit)
	if err != nil {
		return req, err
	}
	for _, d := range names.DKIM {
		if d.Domain == domain && health.ValidSelector(d.Selector) && !slices.Contains(req.Selectors, d.Selector) {
			req.Selectors = append(req.Selectors, d.Selector)
		}
	}
	for _, n := range names.Domains {
		if strings.HasSuffix(n, "."+domain) && !slices.Contains(req.Subdomains, n) {
			req.Subdomains = append(req.Subdomains, n)
		}
	}
	slices.Sort(req.Selectors)
	slices.Sort(req.Subdomains)
	return req, nil
}

// CheckHealth runs the health check of domain (HealthRequest) through r and
// stores the result, so that the dashboard shows it without asking DNS.
func CheckHealth(ctx context.Context, st *store.Store, r health.Resolver, domain string, method policy.Method, now time.Time) (health.Report, error) {
	req, err := HealthRequest(ctx, st, domain, method, now)
	if err != nil {
		return health.Report{}, err
	}
	rep := health.Check(ctx, r, req)
	doc, err := json.Marshal(rep)
	if err != nil {
		return rep, fmt.Errorf("intake: health report: %w", err)
	}
	err = st.SaveHealth(ctx, store.HealthCheck{Domain: rep.Domain, Checked: rep.CheckedAt, Verdict: string(rep.Verdict), Report: doc})
	return rep, err
}

// HealthSchedule runs CheckHealth for every domain now and then every
// interval until ctx ends (the daemon's `serve` runs it in a goroutine when
// [intake] health_interval is set). Each check is bounded by timeout; a
// failure is logged and the next round goes on. It recovers its panics.
func HealthSchedule(ctx context.Context, st *store.Store, r health.Resolver, domains []string, method policy.Method,
	interval, timeout time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if p := recover(); p != nil {
			log.Error("intake: health schedule panic", "panic", p)
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, d := range domains {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			rep, err := CheckHealth(cctx, st, r, d, method, time.Now())
			cancel()
			if err != nil {
				log.Warn("intake: health check", "domain", d, "err", err)
				continue
			}
			log.Info("intake: health check", "domain", d, "verdict", rep.Verdict, "summary", rep.Summary)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
