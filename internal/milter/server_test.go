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
)

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

// TestNoReplyDrainInFlight: Shutdown while messages are in flight on
// connections that read no reply before the end of message (NR flags): the
// MTA streams the rest of each message without waiting, each gets its
// verdict at its end (the one bypassed at MAIL FROM too), then its
// connection closes and Shutdown returns without cutting anything.
func TestNoReplyDrainInFlight(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	start := func(ip, from string) *rawClient {
		r := dialRawProto(t, h.addr, postfixProtocol)
		r.want('C', connectData("client.example", ip), 'c')
		r.want('H', cstr("mail.client.example"), 'c')
		r.send('D', macroData('M', "{client_addr}", ip, "j", testAuthservID))
		r.want('M', cstr("<"+from+">"), 'c')
		r.want('R', cstr("<bob@mx.test.example>"), 'c')
		return r
	}
	evaluated := start("198.51.100.7", "a@reject.example")
	bypassed := start("127.0.0.1", "b@reject.example")
	idle := dialRawProto(t, h.addr, postfixProtocol)
	idle.want('C', connectData("client.example", "198.51.100.8"), 'c')

	waitConns := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); h.srv.ActiveConnections() != n; {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections, want %d", h.srv.ActiveConnections(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitConns(3)
	// The MTA does not wait for MAIL to be read: wait until both messages
	// are in flight on our side (a drain before that closes the connection,
	// as between messages).
	for deadline := time.Now().Add(5 * time.Second); ; {
		n := 0
		h.srv.mu.Lock()
		for c := range h.srv.conns {
			if c.ps.InMessage() {
				n++
			}
		}
		h.srv.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages in flight, want 2", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	if !idle.closedByServer(5 * time.Second) {
		t.Fatal("the idle connection was not closed by the drain")
	}
	waitConns(2)

	for _, c := range []struct {
		r      *rawClient
		code   byte
		prefix string
	}{{evaluated, 'y', "550 5.7.1"}, {bypassed, 'a', ""}} {
		body := sendHeaders(c.r, []byte(message("reject.example")))
		c.r.want('N', nil, 'c')
		c.r.want('B', body, 'c')
		_, code, data := c.r.eom()
		if code != c.code || !strings.HasPrefix(data, c.prefix) {
			t.Errorf("message in flight during the drain: %q %q, want %q %q", code, data, c.code, c.prefix)
		}
		if !c.r.closedByServer(5 * time.Second) {
			t.Error("connection still open after its message ended during the drain")
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v, want nil (drained)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}
