package milter

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
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

// rawPacket writes one milter packet.
func rawPacket(t *testing.T, c net.Conn, code byte, data []byte) {
	t.Helper()
	b := make([]byte, 5+len(data))
	binary.BigEndian.PutUint32(b, uint32(1+len(data)))
	b[4] = code
	copy(b[5:], data)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestMalformedPacketClosesOnlyItsSession: garbage on one connection closes
// that connection; a session open at the same time and new sessions work.
func TestMalformedPacketClosesOnlyItsSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	good := h.session("198.51.100.7")
	for _, bad := range [][]byte{
		{0, 0, 0, 0},             // zero-length packet
		{0xff, 0xff, 0xff, 0xff}, // over the 1 MiB cap
		nil,                      // a CONNECT without its family byte (below)
	} {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		if bad == nil {
			rawPacket(t, c, 'C', []byte("host\x00"))
		} else if _, err := c.Write(bad); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("malformed %x: connection not closed cleanly: %v", bad, err)
		}
		c.Close()
	}
	r := h.send(good, msg{mailFrom: "a@reject.example", raw: message("reject.example")})
	if r.act.Code != milter.ActReplyCode || r.act.SMTPCode != 550 {
		t.Fatalf("the other session broke: %+v", r.act)
	}
	r = h.send(h.session("198.51.100.7"), msg{mailFrom: "a@reject.example", raw: message("reject.example")})
	if r.act.Code != milter.ActReplyCode {
		t.Fatalf("a new session broke: %+v", r.act)
	}
}

// TestShutdownDrains: Shutdown closes idle connections at once, lets a
// message in flight finish with its reply, then returns.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	idle := h.session("198.51.100.7")
	busy := h.session("192.0.2.10")
	h.dns.SetDelay(300 * time.Millisecond) // every lookup of the busy message is slow

	must(t, busy.Macros(milter.CodeMail, "i", "Q1"))
	if _, err := busy.Mail("a@slow.example", nil); err != nil {
		t.Fatal(err)
	}
	fields, body := SplitMessage([]byte(message("slow.example")))
	for _, f := range fields {
		if _, err := busy.HeaderField(f.Name, f.Value); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := busy.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // Shutdown has started
	// The idle connection is closed.
	if _, err := idle.Mail("x@pass.example", nil); err == nil {
		t.Error("idle connection still open during drain")
	}
	// The message in flight completes.
	_, act, err := busy.BodyReadFrom(strings.NewReader(string(body)))
	if err != nil || act.Code != milter.ActAccept {
		t.Fatalf("message in flight: %+v %v", act, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v, want nil (drained in time)", err)
	}
	if n := h.srv.ActiveConnections(); n != 0 {
		t.Errorf("%d connections left", n)
	}
	// No new connections.
	if c, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
		c.Close()
		t.Error("still accepting after Shutdown")
	}
}

// TestShutdownDeadline: a message that does not finish in time is cut.
func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	busy := h.session("192.0.2.10")
	must(t, busy.Macros(milter.CodeMail, "i", "Q1"))
	if _, err := busy.Mail("a@pass.example", nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	if _, err := busy.HeaderField("From", " a@pass.example"); err == nil {
		if _, err := busy.HeaderEnd(); err == nil {
			t.Error("connection still usable after the drain deadline")
		}
	}
}
