package intake

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
)

// CaptureConfig configures a Capture ([intake] addresses, max_report_size,
// discard, accept_failing_dmarc).
type CaptureConfig struct {
	Addresses          []string
	MaxSize            int
	Discard            bool
	AcceptFailingDMARC bool
	// Queue bounds the messages waiting to be stored. Default 64.
	Queue  int
	Logger *slog.Logger
}

// Capture takes the report messages the milter captures for the intake
// mailboxes (it implements milter.Capturer). Messages are stored by Run,
// off the reply path; when the queue is full a message is not stored (it
// is still delivered, and can be imported later) and Dropped counts it.
type Capture struct {
	in      *Intake
	cfg     CaptureConfig
	addrs   map[string]bool
	queue   chan captured
	dropped atomic.Int64
}

type captured struct {
	msg  []byte
	pass bool
}

// NewCapture returns a Capture storing through in; Run stores what it is
// given.
func NewCapture(in *Intake, cfg CaptureConfig) *Capture {
	if cfg.Queue <= 0 {
		cfg.Queue = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Capture{in: in, cfg: cfg, addrs: map[string]bool{}, queue: make(chan captured, cfg.Queue)}
	for _, a := range cfg.Addresses {
		c.addrs[strings.ToLower(a)] = true
	}
	return c
}

// Wants tells whether rcpt (an envelope address) is an intake mailbox,
// compared without regard to case.
func (c *Capture) Wants(rcpt string) bool { return c.addrs[strings.ToLower(rcpt)] }

// MaxSize is the bound of a captured message.
func (c *Capture) MaxSize() int { return c.cfg.MaxSize }

// Discard tells whether stored report mail may be discarded.
func (c *Capture) Discard() bool { return c.cfg.Discard }

// Dropped counts the messages not stored because the queue was full.
func (c *Capture) Dropped() int64 { return c.dropped.Load() }

// Take is given a captured message. A message that failed DMARC is refused
// unless AcceptFailingDMARC (RFC 9990 §3.5.2: a report message MUST pass
// DMARC; anyone can mail a forged report to a published rua address).
// Without wait, the message is queued for Run and Take returns at once;
// with wait, it is stored now and Take says whether every report in it is
// in the store (stored or a duplicate).
func (c *Capture) Take(ctx context.Context, msg []byte, dmarcPass, wait bool) bool {
	if !wait {
		job := captured{msg: bytes.Clone(msg), pass: dmarcPass}
		select {
		case c.queue <- job:
		default:
			c.dropped.Add(1)
			c.cfg.Logger.Warn("intake: capture queue full, report mail delivered but not stored")
		}
		return false
	}
	return c.store(ctx, captured{msg: msg, pass: dmarcPass})
}

// Run stores the queued messages until ctx ends. It recovers its panics
// and goes on with the next message.
func (c *Capture) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-c.queue:
			c.safeStore(ctx, job)
		}
	}
}

func (c *Capture) safeStore(ctx context.Context, job captured) {
	defer func() {
		if p := recover(); p != nil {
			c.cfg.Logger.Error("intake: capture panic", "panic", p)
		}
	}()
	c.store(ctx, job)
}

func (c *Capture) store(ctx context.Context, job captured) bool {
	if !job.pass && !c.cfg.AcceptFailingDMARC {
		c.in.Refuse(ctx, ReasonDMARCFail, "the report message failed DMARC", "milter")
		return false
	}
	outs := c.in.Message(ctx, bytes.NewReader(job.msg), "milter")
	for _, o := range outs {
		if o.Status != StatusStored && o.Status != StatusDuplicate {
			return false
		}
	}
	return len(outs) > 0
}

// Drain stores what is queued, until the queue is empty or ctx ends (at
// shutdown, after the milter stopped taking messages).
func (c *Capture) Drain(ctx context.Context) {
	for {
		select {
		case job := <-c.queue:
			c.safeStore(ctx, job)
		default:
			return
		}
	}
}
