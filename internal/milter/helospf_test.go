package milter

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// heloResult runs one message with env through e and returns its HELO
// result.
func heloResult(t *testing.T, e *Engine, env Envelope, memo *HeloSPFMemo) verify.SPFResult {
	t.Helper()
	fields, body := SplitMessage([]byte(message("pass.example")))
	d := runTxMemo(e, env, memo, fields, body)
	if d.HeloSPF == nil {
		t.Fatalf("no HELO result: %+v", d)
	}
	return *d.HeloSPF
}

// TestHeloSPFMemoDecisions: the messages of a connection that reuse the
// HELO result get the decisions of messages checked afresh, cold and warm,
// for every kind of SPF outcome of the test zone, and the memo holds the
// HELO result once the answers are cached.
func TestHeloSPFMemoDecisions(t *testing.T) {
	t.Parallel()
	e := benchEngineT(t)
	if !e.cfg.SPF.CheckHelo {
		t.Fatal("spf.check_helo is off by default: nothing to reuse")
	}
	var memo HeloSPFMemo
	env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), ClientName: "client.example", Helo: "mail.client.example", MTAHost: testAuthservID}
	cases := []struct{ mailFrom, raw string }{
		{"a@pass.example", string(signMessage(t, []byte(message("pass.example"))))},
		{"a@reject.example", message("reject.example")},
		{"", message("nodmarc.example")},
		{"a@nx.example", message("pass.example", "From: second@reject.example")},
	}
	for round := range 3 {
		for _, c := range cases {
			env := env
			env.MailFrom = c.mailFrom
			fields, body := SplitMessage([]byte(c.raw))
			fresh := runTx(e, env, fields, body)
			reused := runTxMemo(e, env, &memo, fields, body)
			fresh.Duration, reused.Duration = 0, 0
			if d := cmp.Diff(fresh, reused, cmpopts.EquateErrors(), cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); d != "" {
				t.Errorf("round %d, %q: decision with the memo differs (-fresh +memo):\n%s", round, c.mailFrom, d)
			}
		}
	}
	got, ok := memo.get(e, env.ClientIP, env.Helo)
	if !ok || got.Result != verify.ResultPass || got.Scope != verify.ScopeHelo || got.Domain != "mail.client.example" {
		t.Errorf("memo after warm messages: %+v, %v; want the HELO pass", got, ok)
	}
}

// TestHeloSPFMemoReuse: a kept result is used for the same engine, client
// address and HELO name within its age, by the connection that checked it
// and by later connections (the engine's cache), and not otherwise;
// temperror is never kept.
func TestHeloSPFMemoReuse(t *testing.T) {
	t.Parallel()
	e := benchEngineT(t)
	other := benchEngineT(t)
	ip := netip.MustParseAddr("192.0.2.10")
	env := Envelope{ClientIP: ip, Helo: "mail.client.example", MailFrom: "a@pass.example", MTAHost: testAuthservID}
	real := heloResult(t, e, env, nil) // warms the cache
	if real.Result != verify.ResultPass {
		t.Fatalf("HELO check: %+v, want pass", real)
	}
	// A marked result stands in for a kept one: it can only come from the
	// memo or the engine's cache.
	marked := verify.SPFResult{Result: verify.ResultNeutral, Scope: verify.ScopeHelo, Domain: "mail.client.example", Reason: "from the memo"}
	cases := []struct {
		name   string
		change func(m **HeloSPFMemo, env *Envelope)
		reused bool
	}{
		{"same connection", func(**HeloSPFMemo, *Envelope) {}, true},
		{"next connection", func(m **HeloSPFMemo, _ *Envelope) { *m = &HeloSPFMemo{} }, true},
		{"other client address", func(_ **HeloSPFMemo, env *Envelope) { env.ClientIP = netip.MustParseAddr("192.0.2.11") }, false},
		{"next connection, other client address", func(m **HeloSPFMemo, env *Envelope) {
			*m = &HeloSPFMemo{}
			env.ClientIP = netip.MustParseAddr("192.0.2.11")
		}, false},
		{"other HELO name", func(_ **HeloSPFMemo, env *Envelope) { env.Helo = "MAIL.client.example" }, false},
		{"other engine (reload)", func(m **HeloSPFMemo, _ *Envelope) {
			clearHeloCache(e)
			(*m).put(other, ip, "mail.client.example", marked)
		}, false},
		{"too old", func(m **HeloSPFMemo, _ *Envelope) {
			(*m).at = (*m).at.Add(-heloSPFMaxAge - time.Second)
			ageHeloCache(e, heloSPFMaxAge+time.Second)
		}, false},
		{"next connection, too old", func(m **HeloSPFMemo, _ *Envelope) {
			*m = &HeloSPFMemo{}
			ageHeloCache(e, heloSPFMaxAge+time.Second)
		}, false},
		{"no memo", func(m **HeloSPFMemo, _ *Envelope) { *m = nil }, false},
	}
	for _, tc := range cases {
		clearHeloCache(e)
		var memo HeloSPFMemo
		memo.put(e, ip, "mail.client.example", marked)
		env := env
		mp := &memo
		tc.change(&mp, &env)
		got := heloResult(t, e, env, mp)
		if reused := got.Reason == marked.Reason; reused != tc.reused {
			t.Errorf("%s: HELO result %+v, reused=%v, want %v", tc.name, got, reused, tc.reused)
		}
		if !tc.reused && mp != nil {
			// The fresh (cached) check replaced the stale entry, for this
			// connection and the next ones.
			if m, ok := mp.get(e, env.ClientIP, env.Helo); !ok || m.Result != verify.ResultPass {
				t.Errorf("%s: memo after a fresh check: %+v, %v", tc.name, m, ok)
			}
			if m, ok := (&HeloSPFMemo{}).get(e, env.ClientIP, env.Helo); !ok || m.Result != verify.ResultPass {
				t.Errorf("%s: engine cache after a fresh check: %+v, %v", tc.name, m, ok)
			}
		}
	}

	clearHeloCache(e)
	var memo HeloSPFMemo
	memo.put(e, ip, "mail.client.example", verify.SPFResult{Result: verify.ResultTempError})
	if _, ok := memo.get(e, ip, "mail.client.example"); ok {
		t.Error("a temperror was kept")
	}
	if n := e.heloSPF.len(); n != 0 {
		t.Errorf("a temperror is in the engine's cache (%d entries)", n)
	}
	var nilMemo *HeloSPFMemo
	nilMemo.put(e, ip, "x", real)
	if _, ok := nilMemo.get(e, ip, "x"); ok {
		t.Error("a nil memo returned a result")
	}
}

// clearHeloCache empties e's HELO SPF cache.
func clearHeloCache(e *Engine) {
	e.heloSPF.mu.Lock()
	defer e.heloSPF.mu.Unlock()
	e.heloSPF.cur, e.heloSPF.old = nil, nil
}

// ageHeloCache makes every entry of e's HELO SPF cache older by d.
func ageHeloCache(e *Engine, d time.Duration) {
	e.heloSPF.mu.Lock()
	defer e.heloSPF.mu.Unlock()
	for _, m := range []map[heloKey]heloEntry{e.heloSPF.cur, e.heloSPF.old} {
		for k, v := range m {
			v.at = v.at.Add(-d)
			m[k] = v
		}
	}
}

// TestHeloSPFCacheBounds: the engine's cache holds at most
// heloSPFCacheSize entries however many clients come, keeps the most
// recent ones, and refuses what it must not keep.
func TestHeloSPFCacheBounds(t *testing.T) {
	t.Parallel()
	var c heloSPFCache
	now := time.Now()
	pass := verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeHelo}
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	n := 3*heloSPFCacheSize + 17
	for i := range n {
		c.put(addr(i), "mail.example", now, pass)
		if l := c.len(); l > heloSPFCacheSize {
			t.Fatalf("after %d clients: %d entries, bound %d", i+1, l, heloSPFCacheSize)
		}
	}
	for i := n - heloSPFCacheSize/2; i < n; i++ {
		if _, _, ok := c.get(addr(i), "mail.example"); !ok {
			t.Fatalf("client %d of the last %d is gone", i, heloSPFCacheSize/2)
		}
	}
	if _, _, ok := c.get(addr(0), "mail.example"); ok {
		t.Error("the first client is still kept")
	}
	// Putting a kept client again keeps it without growing the cache.
	l := c.len()
	c.put(addr(n-1), "mail.example", now, pass)
	if c.len() != l {
		t.Errorf("a second put of the same key grew the cache: %d -> %d", l, c.len())
	}

	refused := []struct {
		name string
		ip   netip.Addr
		helo string
		r    verify.SPFResult
	}{
		{"temperror", addr(1), "t.example", verify.SPFResult{Result: verify.ResultTempError}}, // RFC 7208 §2.6: a transient error
		{"no client address", netip.Addr{}, "t.example", pass},                                // nothing to key on
		{"HELO longer than a domain name", addr(1), strings.Repeat("a", maxHeloLen+1), pass},  // bounded memory
	}
	for _, tc := range refused {
		c.put(tc.ip, tc.helo, now, tc.r)
		if _, _, ok := c.get(tc.ip, tc.helo); ok {
			t.Errorf("%s: kept", tc.name)
		}
	}
	c.put(addr(2), "old.example", now.Add(-heloSPFMaxAge-time.Second), pass)
	if _, _, ok := c.get(addr(2), "old.example"); ok {
		t.Error("an entry older than heloSPFMaxAge was returned")
	}
}

// TestHeloSPFMemoCold: a HELO check that had to ask the DNS (run in the
// background) is not kept; the next message, with the answers cached,
// checks inline and keeps its result.
func TestHeloSPFMemoCold(t *testing.T) {
	t.Parallel()
	e := benchEngineT(t)
	var memo HeloSPFMemo
	env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), Helo: "mail.client.example", MailFrom: "a@pass.example", MTAHost: testAuthservID}
	if r := heloResult(t, e, env, &memo); r.Result != verify.ResultPass {
		t.Fatalf("cold HELO check: %+v", r)
	}
	if _, ok := memo.get(e, env.ClientIP, env.Helo); ok {
		t.Error("a result checked in the background was kept")
	}
	heloResult(t, e, env, &memo)
	if r, ok := memo.get(e, env.ClientIP, env.Helo); !ok || r.Result != verify.ResultPass {
		t.Errorf("warm HELO check not kept: %+v, %v", r, ok)
	}
}

// TestHeloSPFMemoChecksOnce: over the messages of one connection, the HELO
// identity is checked until a check is made from the cache, then no more;
// without the memo it is checked for every message.
func TestHeloSPFMemoChecksOnce(t *testing.T) {
	t.Parallel()
	for _, withMemo := range []bool{false, true} {
		e := benchEngineT(t)
		var mu sync.Mutex
		checks := 0
		e.hook = func(p string) {
			if p == "spf helo" {
				mu.Lock()
				checks++
				mu.Unlock()
			}
		}
		var memo HeloSPFMemo
		env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), Helo: "mail.client.example", MailFrom: "a@pass.example", MTAHost: testAuthservID}
		var mp *HeloSPFMemo
		if withMemo {
			mp = &memo
		}
		for range 5 {
			if r := heloResult(t, e, env, mp); r.Result != verify.ResultPass {
				t.Fatalf("memo=%v: HELO %+v", withMemo, r)
			}
		}
		mu.Lock()
		// Cold, the first message checks twice: inline (where the cache
		// misses) and again in the background, whose answers fill the
		// cache. The second checks inline and keeps its result.
		want := 6
		if withMemo {
			want = 3
		}
		if checks != want {
			t.Errorf("memo=%v: %d HELO checks for 5 messages, want %d", withMemo, checks, want)
		}
		mu.Unlock()
	}
}

// BenchmarkConnection4Messages: the four messages of one connection
// (the benchmark corpus's sessions), warm cache, with the connection's
// HELO memo ("memo") and without ("fresh"). The messages are unsigned (SPF
// pass, DMARC pass through SPF), so that DKIM hashing does not drown the
// difference.
func BenchmarkConnection4Messages(b *testing.B) {
	e := benchEngineT(b)
	fields, body := SplitMessage([]byte(message("pass.example")))
	for _, withMemo := range []bool{false, true} {
		name := "fresh"
		if withMemo {
			name = "memo"
		}
		b.Run(name, func(b *testing.B) {
			env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), Helo: "mail.client.example", MailFrom: "a@pass.example", MTAHost: testAuthservID}
			runTx(e, env, fields, body) // warm
			b.ReportAllocs()
			for b.Loop() {
				var memo HeloSPFMemo
				var mp *HeloSPFMemo
				if withMemo {
					mp = &memo
				}
				for range 4 {
					tx := Begin(context.Background(), e, env, mp)
					for _, f := range fields {
						tx.Header(f.Name, f.Value)
					}
					tx.EndOfHeaders()
					tx.BodyChunk(body)
					if d := tx.End(); d.Action != "accept" {
						b.Fatalf("%+v", d)
					}
					tx.Close()
				}
			}
		})
	}
}

// TestSessionReusesHeloSPF: the messages of one milter connection check
// the HELO identity until a check is made from the cache, then reuse it;
// so do later connections from the same client address with the same HELO
// name, while another address or HELO name is checked on its own.
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
	s.Close()
	s2 := h.session("192.0.2.10")
	r := h.send(s2, msg{mailFrom: "a@pass.example", raw: message("pass.example")})
	h.send(s2, msg{mailFrom: "a@pass.example", raw: message("pass.example")})
	if n := count(); n != 3 {
		t.Errorf("%d HELO checks after a second connection from the same client, want 3 (none new)", n)
	}
	if got := r.inserted("Authentication-Results"); len(got) != 1 || !strings.Contains(got[0], "spf=pass smtp.helo=mail.client.example") {
		t.Errorf("second connection's A-R: %q, want the reused HELO pass", got)
	}
	s3 := h.session("192.0.2.11") // same HELO name, another address
	h.send(s3, msg{ip: "192.0.2.11", mailFrom: "a@pass.example", raw: message("pass.example")})
	if n := count(); n != 4 {
		t.Errorf("%d HELO checks after a connection from another address, want 4 (its own)", n)
	}
	s4 := h.session("192.0.2.11")
	h.send(s4, msg{ip: "192.0.2.11", mailFrom: "a@pass.example", raw: message("pass.example")})
	if n := count(); n != 4 {
		t.Errorf("%d HELO checks after a second connection from that address, want 4", n)
	}
}

// TestSessionHeloSPFTempErrorNotShared: a HELO check that ends in
// temperror is made again by the next connection from the same client,
// also when the DNS failure is remembered by the cache (dns.error_ttl) and
// the check is therefore made inline, from the cache.
func TestSessionHeloSPFTempErrorNotShared(t *testing.T) {
	var mu sync.Mutex
	checks := 0
	h := newHarnessCache(t, nil, func(c *cache.Config) { c.ErrTTL = time.Minute }, func(e *Engine) {
		e.hook = func(p string) {
			if p == "spf helo" {
				mu.Lock()
				checks++
				mu.Unlock()
			}
		}
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return checks }
	h.dns.SetFault("mail.client.example.", dnstest.FaultServFail)
	// The first connection checks inline (the cache misses) then in the
	// background, whose failure the cache remembers; every later one
	// checks inline, from the remembered failure.
	want := []int{2, 3, 4}
	for i := range want {
		s := h.session("192.0.2.10")
		r := h.send(s, msg{mailFrom: "a@pass.example", raw: message("pass.example")})
		if got := r.inserted("Authentication-Results"); len(got) != 1 || !strings.Contains(got[0], "spf=temperror smtp.helo=mail.client.example") {
			t.Fatalf("connection %d: A-R %q, want the HELO temperror", i, got)
		}
		s.Close()
		if n := count(); n != want[i] {
			t.Errorf("after connection %d: %d HELO checks, want %d", i, n, want[i])
		}
	}
}

// TestHeloSPFCacheConcurrent: connections on several workers read and
// write the engine's cache at once (run with -race); every result read is
// one that was put for its key.
func TestHeloSPFCacheConcurrent(t *testing.T) {
	t.Parallel()
	var c heloSPFCache
	now := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				k := (i*7 + w) % 6000 // more keys than a generation holds
				ip := netip.AddrFrom4([4]byte{10, 0, byte(k >> 8), byte(k)})
				helo := fmt.Sprintf("mail%d.example", k%3)
				if _, r, ok := c.get(ip, helo); ok && r.Domain != helo {
					t.Errorf("%s %s: got the result of %s", ip, helo, r.Domain)
					return
				}
				c.put(ip, helo, now, verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeHelo, Domain: helo})
			}
		})
	}
	wg.Wait()
	if n := c.len(); n > heloSPFCacheSize {
		t.Errorf("%d entries, bound %d", n, heloSPFCacheSize)
	}
}
