package milter

import (
	"bytes"
	"context"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// Capturer takes the report mail sent to our intake mailboxes (the rua
// addresses of our domains): internal/intake's Capture in the daemon.
type Capturer interface {
	// Wants tells whether rcpt is an intake mailbox.
	Wants(rcpt string) bool
	// MaxSize bounds the message kept, in bytes: a longer one is not
	// captured (and is delivered as usual).
	MaxSize() int
	// Take is given the whole message (header fields as received, the
	// body) once its decision is made, with whether it passed DMARC. When
	// wait is false it must return at once, leaving the work off the reply
	// path; when wait is true it stores the report within ctx and says
	// whether every report of the message was stored.
	Take(ctx context.Context, msg []byte, dmarcPass, wait bool) (stored bool)
	// Discard tells whether captured mail may be discarded once stored
	// ([intake] discard).
	Discard() bool
}

// captureWait bounds the wait for the store when captured mail is to be
// discarded: past it, the message is delivered.
const captureWait = 5 * time.Second

// SetCapturer makes the engine capture report mail for c. Call it before
// the engine is used.
func (e *Engine) SetCapturer(c Capturer) { e.capture = c }

// capture is the message being kept for the intake.
type capture struct {
	buf        bytes.Buffer
	over       bool // longer than MaxSize: not captured
	rcpts      int  // recipients seen
	intakeRcpt int  // of which intake mailboxes
}

// noteRcpt starts capturing when rcpt is an intake mailbox.
func (t *Transaction) noteRcpt(rcpt string) {
	if t.e.capture == nil || t.bypass != BypassNone {
		return
	}
	if t.capture == nil {
		if !t.e.capture.Wants(rcpt) {
			t.rcptsBeforeCapture++
			return
		}
		t.capture = &capture{rcpts: t.rcptsBeforeCapture}
	}
	t.capture.rcpts++
	if t.e.capture.Wants(rcpt) {
		t.capture.intakeRcpt++
	}
}

// keep appends to the captured message within its bound.
func (c *capture) keep(max int, parts ...string) {
	if c == nil || c.over {
		return
	}
	for _, p := range parts {
		if c.buf.Len()+len(p) > max {
			c.over, c.buf = true, bytes.Buffer{}
			return
		}
		c.buf.WriteString(p)
	}
}

// captureHeader keeps one header field as the MTA sent it (folds as
// "\n", written back as CRLF).
func (t *Transaction) captureHeader(name, value string) {
	if t.capture != nil {
		t.capture.keep(t.e.capture.MaxSize(), name, ":", strings.ReplaceAll(value, "\n", "\r\n"), "\r\n")
	}
}

// HandOver gives a captured report message to the intake once d is
// decided: delivered mail only. With [intake] discard, when every
// recipient is an intake mailbox and the report was stored in time, d is
// changed to discard the message.
func (t *Transaction) HandOver(d *Decision) {
	c := t.capture
	if c == nil || c.over || d.Action != policy.ActionAccept && d.Action != policy.ActionQuarantine {
		return
	}
	pass := d.Verdict != nil && d.Verdict.Result == policy.ResultPass
	wait := t.e.capture.Discard() && c.intakeRcpt == c.rcpts && d.Action == policy.ActionAccept
	if !wait {
		t.e.capture.Take(t.ctx, c.buf.Bytes(), pass, false)
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, captureWait)
	defer cancel()
	if t.e.capture.Take(ctx, c.buf.Bytes(), pass, true) {
		d.Discard = true
	}
}
