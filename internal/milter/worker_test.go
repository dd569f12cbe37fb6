package milter

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// workerGoroutines counts the goroutines of Server.worker, serving or
// idle.
func workerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "internal/milter.(*Server).worker(") {
			n++
		}
	}
	return n
}

// waitIdle waits until the server has no connection open.
func waitIdle(t *testing.T, h *harness) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); h.srv.ActiveConnections() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", h.srv.ActiveConnections())
		}
	}
}

// TestWorkersServeConnectionsInTurn: connections one after another are
// served by the same few workers, not a goroutine each; a connection kept
// from an earlier one carries nothing of it (client, HELO, MTA name, HELO
// SPF memo, macros); Shutdown ends the idle workers.
func TestWorkersServeConnectionsInTurn(t *testing.T) {
	// Not parallel: it counts the goroutines of every Server.
	h := newHarness(t, nil)
	base := workerGoroutines()
	for i := range 20 {
		r := dialRaw(t, h.addr)
		r.send('D', macroData('C', "j", "mx-"+string(rune('a'+i))+".example"))
		r.begin("192.0.2.10", "a@pass.example")
		for _, f := range strings.Split(strings.TrimSpace(message("pass.example")), "\n") {
			if name, value, ok := strings.Cut(f, ":"); ok {
				r.header(name, value)
			}
		}
		if _, code, _ := r.eom(); code != 'a' && code != 'c' {
			t.Fatalf("connection %d: end of message %q", i, code)
		}
		r.send('Q', nil)
		r.c.Close()
		waitIdle(t, h)
	}
	if n := workerGoroutines() - base; n < 1 || n > 2 {
		t.Errorf("%d workers for 20 connections in turn, want 1 or 2", n)
	}

	// A connection that sends neither HELO nor macros, on a kept one.
	h.logs.Reset()
	r := dialRaw(t, h.addr)
	r.want('C', append([]byte("unknown\x00"), 'U'), 'c')
	r.want('M', cstr("<a@pass.example>"), 'c')
	r.want('R', cstr("<bob@mx.test.example>"), 'c')
	r.header("From", " a@pass.example")
	r.eom() // the decision does not matter here, the log line does
	r.send('Q', nil)
	r.c.Close()
	waitIdle(t, h)
	line := h.logs.String()
	for _, stale := range []string{"192.0.2.10", "mail.client.example", "mx-", "RAWQ1"} {
		if strings.Contains(line, stale) {
			t.Errorf("the bare connection's verdict carries %q from an earlier connection:\n%s", stale, line)
		}
	}
	if !strings.Contains(line, "msg=verdict") {
		t.Fatalf("no verdict logged:\n%s", line)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := workerGoroutines(); n > base {
		t.Errorf("%d workers after Shutdown, %d before the test", n, base)
	}
}
