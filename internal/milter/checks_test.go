package milter

import (
	"maps"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestInlineChecksMatchBackground: the decisions of messages whose SPF and
// DMARC answers come inline from the cache are those of the same messages
// checked in the background (an engine without the cache-only path), for
// every kind of outcome of the test zone, cold and then warm.
func TestInlineChecksMatchBackground(t *testing.T) {
	t.Parallel()
	inline := benchEngineT(t)
	background := benchEngineT(t)
	background.cache = nil
	env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), ClientName: "client.example", Helo: "mail.client.example", MTAHost: testAuthservID}
	cases := []struct{ mailFrom, raw string }{
		{"a@pass.example", string(signMessage(t, []byte(message("pass.example"))))},
		{"b@bounces.pass.example", message("pass.example")},
		{"a@reject.example", message("reject.example")},
		{"a@quar.example", message("quar.example")},
		{"a@none.example", message("none.example")},
		{"a@temp.example", message("temp.example")},
		{"", message("nodmarc.example")},
		{"a@nx.example", message("pass.example", "From: second@reject.example")},
	}
	for round := range 2 {
		for _, c := range cases {
			env := env
			env.MailFrom = c.mailFrom
			fields, body := SplitMessage([]byte(c.raw))
			a := runTx(inline, env, fields, body)
			b := runTx(background, env, fields, body)
			a.Duration, b.Duration = 0, 0
			if d := cmp.Diff(b, a, cmpopts.EquateErrors(), cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); d != "" {
				t.Errorf("round %d, %s: inline decision differs (-background +inline):\n%s", round, c.mailFrom, d)
			}
		}
	}
}

// TestChecksRunInlineWhenCached: with every answer cached, SPF and the
// DMARC discovery run on the goroutine that handles the message (no
// goroutine of their own); the first, cold message runs them in the
// background.
func TestChecksRunInlineWhenCached(t *testing.T) {
	t.Parallel()
	e := benchEngineT(t)
	var mu sync.Mutex
	ran := map[string]int64{}
	e.hook = func(p string) {
		if p == "spf" || p == "dmarc" {
			mu.Lock()
			ran[p] = goroutineID()
			mu.Unlock()
		}
	}
	env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), Helo: "mail.client.example", MailFrom: "a@pass.example", MTAHost: testAuthservID}
	fields, body := SplitMessage([]byte(message("pass.example")))
	runTx(e, env, fields, body) // cold: the hooks run inline first, then in the background
	mu.Lock()
	cold := maps.Clone(ran)
	mu.Unlock()
	me := goroutineID()
	if cold["spf"] == me || cold["dmarc"] == me {
		t.Errorf("cold message: checks ended on the calling goroutine (%v, caller %d)", cold, me)
	}
	if d := runTx(e, env, fields, body); d.Verdict == nil || d.Verdict.Result != policy.ResultPass {
		t.Fatalf("warm message: %+v", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if ran["spf"] != me || ran["dmarc"] != me {
		t.Errorf("warm message: checks ran on goroutines %v, not on the caller %d", ran, me)
	}
}

// goroutineID reads the current goroutine's number from its stack header.
func goroutineID() int64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := strings.Fields(string(buf))
	if len(f) < 2 {
		return -1
	}
	id, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return -1
	}
	return id
}
