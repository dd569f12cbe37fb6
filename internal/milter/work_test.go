package milter

import (
	"context"
	"maps"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// sameName must answer exactly as comparing strings.ToLower of both names
// (the test the milter made before), ASCII or not.
func TestSameName(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"From", "from", true},
		{"FROM", "from", true},
		{"Fro", "from", false},
		{"Authentication-Results", "authentication-results", true},
		{"Liſt-Id", "list-id", false},          // strings.EqualFold would say true
		{"\u212Aey", "key", true},              // Kelvin sign lower-cases to k
		{"X-Quarantine", "x-quarantinE", true}, // either side may have upper case
		{"", "", true},
	} {
		if got := sameName(c.a, c.b); got != c.want {
			t.Errorf("sameName(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func FuzzSameName(f *testing.F) {
	f.Add("From", "from")
	f.Add("Liſt-Id", "list-id")
	f.Add("\u212Aey", "key")
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := sameName(a, b), strings.ToLower(a) == strings.ToLower(b); got != want {
			t.Fatalf("sameName(%q, %q) = %v, strings.ToLower says %v", a, b, got, want)
		}
	})
}

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

// FuzzSameNameASCII: the variant with known ASCII-ness answers as
// strings.ToLower does too (İ lower-cases to i, the Kelvin sign to k).
func FuzzSameNameASCII(f *testing.F) {
	f.Add("L\u0130st-Id", "list-id")
	f.Add("\u212Aey", "key")
	f.Add("From", "FROM")
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := sameNameASCII(a, isASCII(a), b, isASCII(b)), strings.ToLower(a) == strings.ToLower(b); got != want {
			t.Fatalf("sameNameASCII(%q, %q) = %v, strings.ToLower says %v", a, b, got, want)
		}
	})
}

// TestTraceOnlyWhenWanted: the steps are recorded for log_level = "debug"
// (the session logs them) and for the evaluate subcommand, and not
// formatted at all otherwise.
func TestTraceOnlyWhenWanted(t *testing.T) {
	t.Parallel()
	e := benchEngineT(t)
	env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), Helo: "mail.client.example", MailFrom: "a@reject.example", MTAHost: testAuthservID}
	raw := []byte(message("reject.example"))
	fields, body := SplitMessage(raw)
	if d := runTx(e, env, fields, body); len(d.Trace) != 0 {
		t.Errorf("log_level info: %d trace lines, want none", len(d.Trace))
	}
	if d := EvaluateMessage(context.Background(), e, env, raw); len(d.Trace) == 0 {
		t.Error("evaluate: no trace")
	}
	debug := *e.cfg
	debug.LogLevel = "debug"
	de, err := NewEngine(&debug, e.res, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := runTx(de, env, fields, body)
	if !slices.ContainsFunc(d.Trace, func(l string) bool { return strings.HasPrefix(l, "spf mfrom: fail") }) {
		t.Errorf("log_level debug: trace %q has no SPF step", d.Trace)
	}
}
