package milter

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
)

// Fault injection, milter peer side (issue 8). The MTA end of a connection
// misbehaves in every way we can think of; each time the server must end
// that session without leaving a goroutine behind, return its memory, and
// keep serving the session that stays open next to it.
//
// These tests count goroutines, so they do not run in parallel with others
// of this package (Go runs the parallel tests after the sequential ones).

// peerFault drives one misbehaving connection. slow is true when DNS
// answers take long enough for the message's lookups to be in flight when
// the fault happens.
type peerFault struct {
	name string
	run  func(t *testing.T, h *harness, other func(t *testing.T))
}

// signedRaw is a message with a DKIM signature of pass.example, so that the
// verifier goroutine runs.
func signedRaw(t *testing.T) []byte {
	return signMessage(t, []byte(message("pass.example")))
}

func sendHeaders(r *rawClient, raw []byte) (body []byte) {
	fields, body := SplitMessage(raw)
	for _, f := range fields {
		r.header(f.Name, f.Value)
	}
	return body
}

var peerFaults = []peerFault{
	{"drop after connect", func(t *testing.T, h *harness, other func(t *testing.T)) {
		r := dialRaw(t, h.addr)
		r.want('C', connectData("client.example", "198.51.100.7"), 'c')
		r.c.Close()
	}},
	{"drop after MAIL (SPF in flight)", func(t *testing.T, h *harness, other func(t *testing.T)) {
		r := dialRaw(t, h.addr)
		r.begin("198.51.100.7", "x@slow.example")
		r.c.Close()
	}},
	{"drop mid-header (discovery in flight)", func(t *testing.T, h *harness, other func(t *testing.T)) {
		r := dialRaw(t, h.addr)
		r.begin("192.0.2.10", "x@slow.example")
		r.header("From", " a@slow.example")
		// Half a header packet, then nothing.
		b := make([]byte, 4)
		binary.BigEndian.PutUint32(b, 200)
		r.c.Write(append(b, "LSubject\x00 cut"...))
		r.c.Close()
	}},
	{"drop after end of header (DKIM verifier running)", func(t *testing.T, h *harness, other func(t *testing.T)) {
		r := dialRaw(t, h.addr)
		r.begin("192.0.2.10", "x@pass.example")
		sendHeaders(r, signedRaw(t))
		r.want('N', nil, 'c')
		r.c.Close()
	}},
	{"drop mid-body", func(t *testing.T, h *harness, other func(t *testing.T)) {
		r := dialRaw(t, h.addr)
		r.begin("192.0.2.10", "x@pass.example")
		sendHeaders(r, signedRaw(t))
		r.want('N', nil, 'c')
		r.want('B', []byte(strings.Repeat("body line\r\n", 4000)), 'c')
		b := make([]byte, 4)
		binary.BigEndian.PutUint32(b, 65536)
		r.c.Write(append(b, "Bpartial body"...))
		r.c.Close()
	}},
	{"packet over the size limit", func(t *testing.T, h *harness, other func(t *testing.T)) {
		r := dialRaw(t, h.addr)
		r.begin("192.0.2.10", "x@pass.example")
		b := make([]byte, 4)
		binary.BigEndian.PutUint32(b, 2<<20) // 2 MiB, over the 1 MiB packet limit
		r.c.Write(append(b, 'L'))
		if !r.closedByServer(10 * time.Second) {
			t.Error("oversized packet: connection not closed")
		}
	}},
	{"unknown SMTP command (SMFIC_UNKNOWN) answered, the message goes on", func(t *testing.T, h *harness, other func(t *testing.T)) {
		r := dialRaw(t, h.addr)
		r.begin("192.0.2.10", "x@reject.example")
		r.want('U', cstr("XYZZY"), 'c')
		sendHeaders(r, []byte(message("reject.example")))
		if _, code, data := r.eom(); code != 'y' || !strings.HasPrefix(data, "550 ") {
			t.Fatalf("message after SMFIC_UNKNOWN: %q %q, want the DMARC reject", code, data)
		}
		r.send('Q', nil)
	}},
	{"command the protocol does not have", func(t *testing.T, h *harness, other func(t *testing.T)) {
		r := dialRaw(t, h.addr)
		r.begin("192.0.2.10", "x@pass.example")
		r.send('Z', cstr("XYZZY"))
		if !r.closedByServer(10 * time.Second) {
			t.Error("unknown command: connection not closed")
		}
	}},
	{"never sends end of message (idle timeout)", func(t *testing.T, h *harness, other func(t *testing.T)) {
		r := dialRaw(t, h.addr)
		r.begin("192.0.2.10", "x@pass.example")
		sendHeaders(r, signedRaw(t))
		r.want('N', nil, 'c')
		r.want('B', []byte("some body\r\n"), 'c')
		// Silence: the server must close after timeouts.idle, while the
		// other session, busy meanwhile, stays open.
		start := time.Now()
		closed := make(chan bool, 1)
		go func() { closed <- r.closedByServer(20 * time.Second) }()
		for {
			select {
			case ok := <-closed:
				if !ok {
					t.Fatal("silent client: connection still open after 20s")
				}
			case <-time.After(200 * time.Millisecond):
				other(t)
				continue
			}
			break
		}
		t.Logf("silent client closed after %v (idle timeout %v)", time.Since(start).Round(time.Millisecond), h.eng.cfg.Timeouts.Idle)
	}},
	{"abort at every stage, then a message on the same connection", func(t *testing.T, h *harness, other func(t *testing.T)) {
		r := dialRaw(t, h.addr)
		r.want('C', connectData("client.example", "198.51.100.7"), 'c')
		r.want('H', cstr("mail.client.example"), 'c')
		stages := []func(){
			func() {},
			func() { r.want('M', cstr("<x@slow.example>"), 'c') },
			func() { r.want('R', cstr("<bob@mx.test.example>"), 'c') },
			func() { r.header("From", " a@slow.example") },
			func() { sendHeaders(r, signedRaw(t)); r.want('N', nil, 'c') },
			func() { r.want('B', []byte("chunk\r\n"), 'c') },
		}
		for i := range stages {
			r.want('M', cstr("<x@slow.example>"), 'c')
			for _, s := range stages[:i+1] {
				s()
			}
			r.send('A', nil) // no reply to ABORT
		}
		r.want('M', cstr("<x@reject.example>"), 'c')
		r.want('R', cstr("<bob@mx.test.example>"), 'c')
		sendHeaders(r, []byte(message("reject.example")))
		r.want('N', nil, 'c')
		if _, code, data := r.eom(); code != 'y' || !strings.HasPrefix(data, "550 ") {
			t.Fatalf("message after the aborts: %q %q, want the DMARC reject", code, data)
		}
		r.send('Q', nil)
	}},
}

func TestFaultPeerLeavesNothingBehind(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.Timeouts.Idle = time.Second })
	// Lookups for slow.example take long enough to be in flight when the
	// peer goes away.
	h.dns.MustAdd("slow.example. 300 IN MX 10 mx.slow.example.")
	other := h.session("198.51.100.7")
	check := func(t *testing.T) {
		t.Helper()
		h.t = t
		r := h.send(other, msg{mailFrom: "x@reject.example", raw: message("reject.example")})
		if r.act.Code != milter.ActReplyCode || r.act.SMTPCode != 550 {
			t.Fatalf("the other session broke: %+v", r.act)
		}
	}
	check(t)
	base, _ := sessionGoroutines()
	heap0 := heapAfterGC()
	for _, f := range peerFaults {
		t.Run(f.name, func(t *testing.T) {
			h.dns.SetDelay(150 * time.Millisecond)
			f.run(t, h, check)
			h.dns.SetDelay(0)
			waitGoroutines(t, base, f.name)
			check(t)
		})
	}
	// Memory: what the faulty sessions held is returned.
	for range 3 { // settle: a few collections for the pools
		heapAfterGC()
	}
	if grew := int64(heapAfterGC()) - int64(heap0); grew > 4<<20 {
		t.Errorf("live heap grew by %d KiB over the faulty sessions", grew/1024)
	}
	if n := h.srv.ActiveConnections(); n != 1 {
		t.Errorf("%d connections open, want 1 (the other session)", n)
	}
	if strings.Contains(h.logs.String(), "panic") {
		t.Errorf("panic logged:\n%s", h.logs)
	}
}

// TestFaultPeerManySessionsDropped: 200 connections dropped at random
// stages while messages are in flight leave no goroutine behind.
func TestFaultPeerManySessionsDropped(t *testing.T) {
	h := newHarness(t, nil)
	base, _ := sessionGoroutines()
	h.dns.SetDelay(50 * time.Millisecond)
	raw := signedRaw(t)
	// The count must see open sessions, or the check below proves nothing.
	open := dialRaw(t, h.addr)
	open.begin("192.0.2.10", "x@pass.example")
	if n, _ := sessionGoroutines(); n <= base {
		t.Fatalf("%d session goroutines with a session open, base %d: the count sees nothing", n, base)
	}
	open.c.Close()
	for i := range 200 {
		r := dialRaw(t, h.addr)
		r.begin("192.0.2.10", fmt.Sprintf("x%d@pass.example", i))
		fields, _ := SplitMessage(raw)
		for _, f := range fields[:i%(len(fields)+1)] {
			r.header(f.Name, f.Value)
		}
		if i%3 == 0 {
			r.want('N', nil, 'c')
			r.want('B', []byte("x\r\n"), 'c')
		}
		r.c.Close()
	}
	h.dns.SetDelay(0)
	waitGoroutines(t, base, "200 dropped sessions")
}
