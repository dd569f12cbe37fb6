package milter

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	milter "github.com/emersion/go-milter"
)

// panicAt makes the engine panic at the named hook point when the message
// carries the header "X-Panic: <point>".
func panicAt(points ...string) func(*Engine) {
	return func(e *Engine) {
		e.hook = func(p string) {
			for _, want := range points {
				if p == want {
					panic("test panic at " + p)
				}
			}
		}
	}
}

// TestSessionPanicRecovery: a panic in a callback or in a goroutine we
// started gives the on_error answer for that message, and the same
// connection then carries the next message normally.
func TestSessionPanicRecovery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		onError config.ErrorAction
		point   string
		raw     string
		want    milter.ActionCode
	}{
		{"callback tempfail", config.ErrorTempFail, "header:X-Panic", message("pass.example", "X-Panic: now"), milter.ActReplyCode},
		{"callback accept", config.ErrorAccept, "header:X-Panic", message("pass.example", "X-Panic: now"), milter.ActAccept},
		{"goroutine tempfail", config.ErrorTempFail, "spf", message("pass.example"), milter.ActReplyCode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(c *config.Config) { c.OnError = tc.onError }, panicAt(tc.point))
			s := h.session("192.0.2.10")
			r := h.send(s, msg{ip: "192.0.2.10", mailFrom: "a@pass.example", raw: tc.raw})
			if r.act == nil || r.act.Code != tc.want {
				t.Fatalf("got %+v, want %c", r.act, tc.want)
			}
			if tc.want == milter.ActReplyCode && (r.act.SMTPCode != 451 || !strings.HasPrefix(r.act.SMTPText, "4.3.0 ")) {
				t.Errorf("reply %d %q, want the error_reply", r.act.SMTPCode, r.act.SMTPText)
			}
			if tc.point == "spf" {
				return // every message panics in SPF
			}
			// The connection survives and the next message is evaluated.
			r = h.send(s, msg{mailFrom: "a@reject.example", raw: message("reject.example")})
			if r.act.Code != milter.ActReplyCode || r.act.SMTPCode != 550 {
				t.Fatalf("next message: %+v", r.act)
			}
			if !strings.Contains(h.logs.String(), "panic in milter callback") {
				t.Errorf("panic not logged:\n%s", h.logs)
			}
		})
	}
}

// panicOnce arms a panic at the named hook point for the next message
// that reaches it.
func panicOnce(point string, armed *atomic.Bool) func(*Engine) {
	return func(e *Engine) {
		e.hook = func(p string) {
			if p == point && armed.CompareAndSwap(true, false) {
				panic("test panic at " + p)
			}
		}
	}
}

// panicHarness is a harness with on_error set to onErr whose engine panics
// once at point; armed is false once the panic has been triggered.
func panicHarness(t *testing.T, point string, onErr config.ErrorAction) (h *harness, armed *atomic.Bool) {
	armed = new(atomic.Bool)
	armed.Store(true)
	return newHarness(t, func(c *config.Config) { c.OnError = onErr }, panicOnce(point, armed)), armed
}

// TestPanicAtEveryStage: a panic injected at each stage of a message, in a
// callback or in a goroutine of ours, gives the on_error action for that
// message only; the same connection then carries the next message to its
// normal verdict. With on_error = "accept" the forged Authentication-Results
// of the failed message are still deleted.
func TestPanicAtEveryStage(t *testing.T) {
	t.Parallel()
	points := []string{"mail", "rcpt", "header:Subject", "eoh", "body", "eom", "spf", "dmarc"}
	for _, point := range points {
		for _, onErr := range []config.ErrorAction{config.ErrorTempFail, config.ErrorAccept} {
			t.Run(point+"/"+string(onErr), func(t *testing.T) {
				t.Parallel()
				h, armed := panicHarness(t, point, onErr)
				s := h.session("192.0.2.10")
				r := h.send(s, msg{ip: "192.0.2.10", mailFrom: "a@pass.example", raw: forgedRaw})
				act := r.act
				if act == nil {
					act = r.mailAct
				}
				if armed.Load() {
					t.Fatalf("the panic at %s was never triggered", point)
				}
				switch onErr {
				case config.ErrorTempFail:
					if act.Code != milter.ActReplyCode || act.SMTPCode != 451 || !strings.HasPrefix(act.SMTPText, "4.3.0 ") {
						t.Fatalf("got %+v, want the error_reply", act)
					}
				case config.ErrorAccept:
					if act.Code != milter.ActAccept {
						t.Fatalf("got %+v, want accept", act)
					}
					var deleted []int
					for _, m := range r.mods {
						if m.Code == milter.ActChangeHeader && m.HeaderValue == "" {
							deleted = append(deleted, int(m.HeaderIndex))
						}
					}
					if fmt.Sprint(deleted) != "[3 1]" {
						t.Errorf("forged A-R deleted %v, want [3 1] (mods %+v)", deleted, r.mods)
					}
				}
				// Still serving, on the same connection.
				r = h.send(s, msg{mailFrom: "a@reject.example", raw: message("reject.example")})
				if r.act == nil || r.act.SMTPCode != 550 {
					t.Fatalf("next message: %+v", r.act)
				}
				logs := h.logs.String()
				if !strings.Contains(logs, "panic") {
					t.Errorf("panic not logged:\n%s", logs)
				}
			})
		}
	}
}
