package milter

import (
	"sync"
	"testing"

	"github.com/emersion/go-milter"
)

// TestSessionReusesHeloSPF: the messages of one milter connection check
// the HELO identity until a check is made from the cache, then reuse it; a
// new connection checks again.
func TestSessionReusesHeloSPF(t *testing.T) {
	var mu sync.Mutex
	checks := 0
	h := newHarness(t, nil, func(e *Engine) {
		e.hook = func(p string) {
			if p == "spf helo" {
				mu.Lock()
				checks++
				mu.Unlock()
			}
		}
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return checks }
	s := h.session("192.0.2.10")
	for i := range 4 {
		r := h.send(s, msg{mailFrom: "a@pass.example", raw: message("pass.example")})
		if r.act == nil || r.act.Code != milter.ActAccept && r.act.Code != milter.ActContinue {
			t.Fatalf("message %d: %+v", i, r.act)
		}
	}
	// Cold, message 1 checks twice (inline, where the cache misses, then in
	// the background); message 2 checks inline and keeps the result;
	// messages 3 and 4 reuse it.
	if n := count(); n != 3 {
		t.Errorf("%d HELO checks for 4 messages of one connection, want 3", n)
	}
	s2 := h.session("192.0.2.10")
	h.send(s2, msg{mailFrom: "a@pass.example", raw: message("pass.example")})
	h.send(s2, msg{mailFrom: "a@pass.example", raw: message("pass.example")})
	if n := count(); n != 4 {
		t.Errorf("%d HELO checks after a second connection of 2 messages, want 4 (one new check)", n)
	}
}
