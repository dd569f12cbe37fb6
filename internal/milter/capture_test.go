package milter

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/emersion/go-milter"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// reportMail is a report message from pass.example whose body is a report
// of pkg/report's corpus (the XML inline, as some reporters send it).
func reportMail(t *testing.T) string {
	t.Helper()
	xml, err := os.ReadFile(filepath.Join("..", "..", "pkg", "report", "testdata", "incoming", "01-rfc9990-full.xml"))
	if err != nil {
		t.Fatal(err)
	}
	return "From: DMARC <noreply-dmarc@pass.example>\nTo: bob@mx.test.example\nSubject: Report Domain: example.com\n" +
		"Date: Mon, 1 Jan 2026 00:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/xml\n\n" + strings.ReplaceAll(string(xml), "\r\n", "\n")
}

// takeCall is one call of Take.
type takeCall struct {
	msg             []byte
	pass, wait      bool
	reportsInIt     int
	deadlineWhenSet bool
}

// recordingCapturer is the intake seen from the milter: it records what it
// is given and parses it with pkg/report as the intake would (the intake's
// storing is tested in internal/intake and through Postfix in
// integration/; this package's tests do not link the store).
type recordingCapturer struct {
	mu      sync.Mutex
	addr    string
	max     int
	discard bool
	stored  bool // what a waited Take answers
	calls   []takeCall
}

func (c *recordingCapturer) Wants(rcpt string) bool { return strings.EqualFold(rcpt, c.addr) }
func (c *recordingCapturer) MaxSize() int           { return c.max }
func (c *recordingCapturer) Discard() bool          { return c.discard }
func (c *recordingCapturer) Take(ctx context.Context, msg []byte, pass, wait bool) bool {
	reps, _ := report.ParseMessage(bytes.NewReader(msg), report.Limits{})
	_, hasDeadline := ctx.Deadline()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, takeCall{msg: bytes.Clone(msg), pass: pass, wait: wait, reportsInIt: len(reps), deadlineWhenSet: hasDeadline})
	return wait && c.stored && len(reps) > 0
}

func (c *recordingCapturer) taken() []takeCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]takeCall(nil), c.calls...)
}

func captureHarness(t *testing.T, c *recordingCapturer) *harness {
	t.Helper()
	return newHarness(t, func(*config.Config) {}, func(e *Engine) { e.SetCapturer(c) })
}

// TestCaptureHandsOver: report mail to the intake mailbox (matched without
// regard to case) is accepted, and the whole message — header fields as
// received, then the body — is handed over after the decision, without
// waiting, with its DMARC result.
func TestCaptureHandsOver(t *testing.T) {
	c := &recordingCapturer{addr: "BOB@mx.test.example", max: 1 << 20}
	h := captureHarness(t, c)
	s := h.session("192.0.2.10")
	r := h.send(s, msg{mailFrom: "bounce@pass.example", raw: reportMail(t), sign: true})
	if r.act.Code != gomilter.ActAccept {
		t.Fatalf("action %c, want accept", r.act.Code)
	}
	calls := c.taken()
	if len(calls) != 1 {
		t.Fatalf("%d calls of Take", len(calls))
	}
	got := calls[0]
	if !got.pass || got.wait || got.reportsInIt != 1 {
		t.Errorf("Take(pass %v, wait %v) of a message holding %d reports", got.pass, got.wait, got.reportsInIt)
	}
	if !bytes.HasPrefix(got.msg, []byte("DKIM-Signature:")) || !bytes.Contains(got.msg, []byte("\r\nSubject: Report Domain: example.com\r\n")) ||
		!bytes.Contains(got.msg, []byte("\r\n\r\n<?xml")) {
		t.Errorf("captured message:\n%.300s", got.msg)
	}
	// A message that fails DMARC (p=none: delivered) is handed over with
	// pass false (the intake refuses it).
	forged := strings.Replace(reportMail(t), "noreply-dmarc@pass.example", "noreply-dmarc@none.example", 1)
	h.send(s, msg{mailFrom: "x@none.example", raw: forged})
	if calls := c.taken(); len(calls) != 2 || calls[1].pass {
		t.Errorf("forged report: %+v", calls)
	}
}

// TestCaptureDiscard: with discard, when every recipient is an intake
// mailbox, the milter waits (with a deadline) and discards the message once
// the report is stored; not stored, it is delivered.
func TestCaptureDiscard(t *testing.T) {
	c := &recordingCapturer{addr: "bob@mx.test.example", max: 1 << 20, discard: true, stored: true}
	h := captureHarness(t, c)
	s := h.session("192.0.2.10")
	if r := h.send(s, msg{mailFrom: "bounce@pass.example", raw: reportMail(t), sign: true}); r.act.Code != gomilter.ActDiscard {
		t.Fatalf("action %c, want discard", r.act.Code)
	}
	if calls := c.taken(); !calls[0].wait || !calls[0].deadlineWhenSet {
		t.Errorf("Take without wait or deadline: %+v", calls[0])
	}
	if r := h.send(s, msg{mailFrom: "bounce@pass.example", raw: message("pass.example"), sign: true}); r.act.Code != gomilter.ActAccept {
		t.Errorf("mail without a report: action %c, want accept (delivered)", r.act.Code)
	}
}

// TestCaptureOtherRecipients: mail to other mailboxes is not captured; a
// message over MaxSize is not handed over (and is delivered).
func TestCaptureOtherRecipients(t *testing.T) {
	c := &recordingCapturer{addr: "dmarc@mx.test.example", max: 1 << 20, discard: true, stored: true}
	h := captureHarness(t, c)
	s := h.session("192.0.2.10")
	if r := h.send(s, msg{mailFrom: "bounce@pass.example", raw: reportMail(t), sign: true}); r.act.Code != gomilter.ActAccept {
		t.Fatalf("action %c", r.act.Code)
	}
	c2 := &recordingCapturer{addr: "bob@mx.test.example", max: 1000, discard: true, stored: true}
	h2 := captureHarness(t, c2)
	s2 := h2.session("192.0.2.10")
	if r := h2.send(s2, msg{mailFrom: "bounce@pass.example", raw: reportMail(t), sign: true}); r.act.Code != gomilter.ActAccept {
		t.Fatalf("oversize: action %c, want accept", r.act.Code)
	}
	if len(c.taken())+len(c2.taken()) != 0 {
		t.Errorf("captured: %d, %d", len(c.taken()), len(c2.taken()))
	}
}
