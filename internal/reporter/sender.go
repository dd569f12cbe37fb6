package reporter

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/mailout"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// Relay sends one message: *mailout.Client.
type Relay interface {
	Send(ctx context.Context, from string, to []string, msg []byte) []mailout.RecipientResult
}

// SenderOptions configure a Sender.
type SenderOptions struct {
	Store    *store.Store
	Resolver policy.Resolver
	// Method finds Organizational Domains (external destinations) and
	// the policy record at send time.
	Method   policy.Method
	Relay    Relay
	Signer   *mailout.Signer // nil: unsigned
	Identity Identity
	Holder   string // who claims reports: host name and process id
	// Grace and MaxAge select the due periods (store.Window).
	Grace, MaxAge time.Duration
	// SendWindow spreads the sends of a period after end + grace.
	SendWindow time.Duration
	// RetryInitial doubles after each temporary failure; RetryFor bounds
	// the time a destination is retried.
	RetryInitial, RetryFor time.Duration
	// SuppressFor: a destination that refused permanently is suppressed
	// this long.
	SuppressFor time.Duration
	// DoNotReport: policy domains (and subdomains) that get no report.
	DoNotReport []string
	Retention   store.Retention
	// DryRun builds and shows but sends, claims and marks nothing.
	DryRun  bool
	Logger  *slog.Logger
	Metrics Metrics
	Now     func() time.Time
	Random  io.Reader // Report-IDs; nil: crypto/rand
}

// Sender builds and sends the reports of closed periods. Several Senders
// (in one process, several processes or several hosts on one PostgreSQL)
// may run at once: the store's claims give each report to exactly one.
type Sender struct {
	o   SenderOptions
	log *slog.Logger
	met Metrics
}

// Summary counts what one run did.
type Summary struct {
	Due, Built, Sent, Failed, Retry, Skipped, NotYet int
}

// lease is how long a claim lasts: longer than one report's build and
// send (the SMTP timeouts bound the send).
const lease = 30 * time.Minute

// NewSender returns a Sender.
func NewSender(o SenderOptions) *Sender {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NopMetrics{}
	}
	return &Sender{o: o, log: o.Logger, met: o.Metrics}
}

// Run sends due reports every tick until ctx ends.
func (s *Sender) Run(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if _, err := s.RunOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("report run failed", "err", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce builds and sends every report due now, then expires old data.
func (s *Sender) RunOnce(ctx context.Context) (sum Summary, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("reporter: panic: %v\n%s", v, debug.Stack())
		}
	}()
	groups, err := s.o.Store.DueGroups(ctx, store.Window{Grace: s.o.Grace, MaxAge: s.o.MaxAge})
	if err != nil {
		s.met.StoreError("due")
		return sum, err
	}
	now := s.o.Now()
	for _, g := range groups {
		if ctx.Err() != nil {
			return sum, ctx.Err()
		}
		if now.Before(s.sendAt(g)) {
			sum.NotYet++
			continue
		}
		sum.Due++
		if err := s.one(ctx, g, &sum); err != nil {
			s.log.Error("report failed", "domain", g.Policy.Domain, "begin", g.Begin.UTC().Format(time.RFC3339), "err", err.Error())
		}
	}
	if !s.o.DryRun {
		if _, err := s.o.Store.Expire(ctx, now, s.o.Retention); err != nil {
			s.met.StoreError("expire")
			return sum, err
		}
	}
	return sum, nil
}

// sendAt is when g's report is sent first: end + grace + a delay within
// the send window that is stable for the report (so that every host agrees)
// and spreads a period's reports evenly.
func (s *Sender) sendAt(g store.Group) time.Time {
	at := g.End.Add(s.o.Grace)
	if s.o.SendWindow <= 0 {
		return at
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%d", g.Policy.Domain, g.Begin.Unix())
	return at.Add(time.Duration(h.Sum64() % uint64(s.o.SendWindow)))
}

// one builds (if not yet built) and sends one report under a claim.
func (s *Sender) one(ctx context.Context, g store.Group, sum *Summary) error {
	if s.o.DryRun {
		return s.dryRun(ctx, g)
	}
	c, err := s.o.Store.ClaimReport(ctx, g, s.o.Holder, lease)
	if errors.Is(err, store.ErrNotClaimed) {
		return nil // another sender has it
	}
	if err != nil {
		s.met.StoreError("claim")
		return err
	}
	defer func() {
		if c.State != store.ReportDone {
			_ = s.o.Store.Release(context.WithoutCancel(ctx), c)
		}
	}()
	if c.Built == nil {
		ok, err := s.build(ctx, c, sum)
		if err != nil || !ok {
			return err
		}
	}
	return s.send(ctx, c, sum)
}

// build makes the report file and decides its destinations from the
// policy record as it stands now. ok is false when a DNS failure asks to
// try later.
func (s *Sender) build(ctx context.Context, c *store.Claim, sum *Summary) (ok bool, err error) {
	g := c.Group
	rows, err := s.o.Store.ReportRows(ctx, c)
	if err != nil {
		s.met.StoreError("rows")
		return false, err
	}
	f, err := BuildFile(&s.o.Identity, g, rows, s.o.Random)
	if err != nil {
		return false, err
	}
	if f.Omitted.Records > 0 {
		s.log.Warn("report too large: records left out (the report says so in its error element)", "domain", g.Policy.Domain,
			"report_id", f.ReportID, "records_left_out", f.Omitted.Records, "messages_left_out", f.Omitted.Messages)
	}
	dels, later, err := s.destinations(ctx, g.Policy.Domain)
	if err != nil {
		return false, err
	}
	if later {
		s.log.Info("report delayed: DNS failure deciding its destinations", "domain", g.Policy.Domain)
		return false, nil
	}
	if err := s.o.Store.SaveBuilt(ctx, c, store.Built{ReportID: f.ReportID, Filename: f.Filename, Data: f.Gzip, Deliveries: dels}); err != nil {
		s.met.StoreError("save")
		return false, err
	}
	sum.Built++
	s.met.Report("built")
	if len(dels) == 0 {
		sum.Skipped++
		s.met.Report("skipped")
		s.log.Info("report not sent: no destination", "domain", g.Policy.Domain, "report_id", f.ReportID)
	}
	return true, nil
}

// destinations are the report's recipients: the rua of the policy record
// at send time (RFC 9990 §3.5), external ones verified (RFC 9990 §4),
// suppressed addresses marked. None for a do_not_report domain.
func (s *Sender) destinations(ctx context.Context, domain string) (dels []store.Delivery, later bool, err error) {
	if s.doNotReport(domain) {
		return nil, false, nil
	}
	rua, later := s.rua(ctx, domain)
	if later || rua == "" {
		return nil, later, nil
	}
	for _, d := range mailout.Destinations(ctx, s.o.Resolver, domain, rua, s.o.Method) {
		switch {
		case d.State == mailout.StateTryLater:
			return nil, true, nil
		case d.State == mailout.StateSend:
			sup, on, err := s.o.Store.Suppressed(ctx, d.Address)
			if err != nil {
				return nil, false, err
			}
			if on {
				dels = append(dels, store.Delivery{Address: d.Address, State: store.DeliverySuppressed, Detail: sup.Reason})
				s.met.Report("suppressed")
				continue
			}
			dels = append(dels, store.Delivery{Address: d.Address, State: store.DeliveryPending})
		case d.External && d.Address != "":
			// RFC 9990 §4: an external destination that did not
			// authorize the reports MUST be ignored; it is recorded.
			dels = append(dels, store.Delivery{Address: d.Address, State: store.DeliverySkippedUnverified, Detail: string(d.Reason)})
			s.log.Info("report destination skipped", "domain", domain, "uri", d.URI, "reason", string(d.Reason))
		default:
			s.log.Debug("reporting URI not used", "domain", domain, "uri", d.URI, "reason", string(d.Reason))
		}
	}
	return dels, false, nil
}

// rua looks up the policy domain's record now (RFC 9990 §3.5: the rua of
// the record as it stands at send time), through the DNS cache.
func (s *Sender) rua(ctx context.Context, domain string) (string, bool) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d := policy.Discover(lctx, s.o.Resolver, domain, policy.Options{Method: s.o.Method})
	if d.Err != nil {
		return "", true
	}
	if d.Record == nil || !strings.EqualFold(d.PolicyDomain, domain) {
		return "", false // the record is gone: nobody asks for reports
	}
	return strings.Join(d.Record.RUA, ","), false
}

func (s *Sender) doNotReport(domain string) bool {
	domain = strings.ToLower(domain)
	for _, d := range s.o.DoNotReport {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	return false
}

// send sends the report to its due destinations and marks each.
func (s *Sender) send(ctx context.Context, c *store.Claim, sum *Summary) error {
	now := s.o.Now()
	var to []string
	attempts := map[string]int{}
	for _, d := range c.Deliveries {
		if d.State == store.DeliveryPending || d.State == store.DeliveryFailedTemp && !d.NextAttempt.After(now) {
			to = append(to, d.Address)
			attempts[d.Address] = d.Attempts
		}
	}
	if len(to) == 0 {
		return nil
	}
	b := c.Built
	m, err := Message(&s.o.Identity, b.Filename, b.Data, to, now)
	if err != nil {
		return err
	}
	msg := m.Message
	if s.o.Signer != nil {
		if msg, err = s.o.Signer.Sign(msg); err != nil {
			return err
		}
	}
	g := c.Group
	for _, r := range s.o.Relay.Send(ctx, s.o.Identity.From, to, msg) {
		if err := s.mark(ctx, c, r, attempts[r.Recipient], sum); err != nil {
			return err
		}
		if r.Status == mailout.StatusAccepted {
			s.log.Info("report sent", "domain", g.Policy.Domain, "to", r.Recipient, "report_id", b.ReportID,
				"begin", g.Begin.UTC().Format(time.RFC3339), "end", g.End.UTC().Format(time.RFC3339), "rows", c.Rows, "bytes", len(b.Data))
		}
	}
	return nil
}

// mark records one recipient's result: sent; a temporary failure retried
// with a doubling backoff until retry_for; a permanent refusal (5xx at
// RCPT or DATA) failed and suppressed for suppress_for.
func (s *Sender) mark(ctx context.Context, c *store.Claim, r mailout.RecipientResult, attempts int, sum *Summary) error {
	now := s.o.Now()
	var err error
	switch {
	case r.Status == mailout.StatusAccepted:
		err = s.o.Store.MarkSent(ctx, c, r.Recipient)
		sum.Sent++
		s.met.Report("sent")
	case r.Status == mailout.StatusPermanent && r.DestinationRefused():
		err = s.o.Store.MarkFailed(ctx, c, r.Recipient, store.Failure{Err: errText(r), SuppressUntil: now.Add(s.o.SuppressFor)})
		sum.Failed++
		s.met.Report("suppressed")
		s.log.Warn("report refused; destination suppressed", "domain", c.Group.Policy.Domain, "to", r.Recipient,
			"reply", errText(r), "until", now.Add(s.o.SuppressFor).UTC().Format(time.RFC3339))
	default:
		// A 4xx, a connection problem, or a refusal by our own relay
		// before the recipient (a set-up the operator can fix): retry.
		backoff := s.o.RetryInitial << min(attempts, 20)
		giveUp := s.o.RetryInitial*time.Duration((1<<min(attempts+1, 30))-1) > s.o.RetryFor
		f := store.Failure{Temporary: !giveUp, Err: errText(r), Next: now.Add(backoff)}
		err = s.o.Store.MarkFailed(ctx, c, r.Recipient, f)
		if giveUp {
			sum.Failed++
			s.met.Report("failed")
			s.log.Error("report not delivered: retries exhausted", "domain", c.Group.Policy.Domain, "to", r.Recipient, "reply", errText(r))
		} else {
			sum.Retry++
			s.met.Report("retry")
			s.log.Warn("report send failed; will retry", "domain", c.Group.Policy.Domain, "to", r.Recipient, "reply", errText(r),
				"next", f.Next.UTC().Format(time.RFC3339))
		}
	}
	if err != nil {
		s.met.StoreError("mark")
	}
	return err
}

func errText(r mailout.RecipientResult) string {
	if r.Err == nil {
		return ""
	}
	return r.Err.Error()
}

// dryRun shows what would be sent for g without claiming anything.
func (s *Sender) dryRun(ctx context.Context, g store.Group) error {
	rows, err := s.o.Store.GroupRows(ctx, g)
	if err != nil {
		return err
	}
	f, err := BuildFile(&s.o.Identity, g, rows, s.o.Random)
	if err != nil {
		return err
	}
	dels, later, err := s.destinations(ctx, g.Policy.Domain)
	if err != nil {
		return err
	}
	var to []string
	for _, d := range dels {
		to = append(to, d.Address+" ("+string(d.State)+")")
	}
	s.log.Info("dry run: would send", "domain", g.Policy.Domain, "begin", g.Begin.UTC().Format(time.RFC3339),
		"records", f.Records, "messages", f.Messages, "to", strings.Join(to, ", "), "dns_try_later", later)
	return nil
}

// PreviewDestinations are the addresses a report for domain would be sent
// to now (for `report build`): it needs only Resolver, Method and
// DoNotReport, and reads no store.
func (s *Sender) PreviewDestinations(ctx context.Context, domain string) []string {
	if s.doNotReport(domain) {
		return nil
	}
	rua, later := s.rua(ctx, domain)
	if later || rua == "" {
		return nil
	}
	var to []string
	for _, d := range mailout.Destinations(ctx, s.o.Resolver, domain, rua, s.o.Method) {
		if d.State == mailout.StateSend {
			to = append(to, d.Address)
		}
	}
	return to
}
