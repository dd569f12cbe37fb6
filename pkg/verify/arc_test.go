package verify

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/authres"
	"github.com/google/go-cmp/cmp"
)

// arcWorld is a DNS server with the keys of three sealers: two RSA-2048
// (the same key under two names) and one Ed25519.
type arcWorld struct {
	srv              *dnstest.Server
	r                TXTResolver
	list, fwd, relay testSealer
}

func newARCWorld(t testing.TB) arcWorld {
	t.Helper()
	k := keysOnce()
	srv := dnstest.New(t, "")
	w := arcWorld{
		srv:   srv,
		r:     newCache(t, srv, time.Second),
		list:  testSealer{domain: "lists.example.org", selector: "arc", key: k.rsa},
		fwd:   testSealer{domain: "forwarder.example.net", selector: "ed", key: k.ed},
		relay: testSealer{domain: "relay.example.com", selector: "s1", key: k.rsa},
	}
	for _, s := range []testSealer{w.list, w.fwd, w.relay} {
		addTXT(srv, s.selector+"._domainkey."+s.domain, keyRecord(t, s.key))
	}
	return w
}

// chain seals testMessage by the sealers in order.
func (w arcWorld) chain(t testing.TB, sealers ...testSealer) string {
	msg := testMessage
	for _, s := range sealers {
		msg = s.seal(t, msg, sealOpts{})
	}
	return msg
}

func TestARCPass(t *testing.T) {
	t.Parallel()
	w := newARCWorld(t)
	msg := w.chain(t, w.list, w.fwd, w.relay)
	for _, chunk := range []int{1, 7, 65535} {
		res := verifyARC(t, w.r, ARCConfig{}, msg, chunk)
		if res.CV != ChainPass || res.Failure != ARCFailNone || res.OldestPass != 0 {
			t.Fatalf("chunk %d: %+v", chunk, res)
		}
		if d := cmp.Diff([]string{"lists.example.org", "forwarder.example.net", "relay.example.com"}, res.Sealers); d != "" {
			t.Errorf("Sealers (-want +got):\n%s", d)
		}
		for i, s := range res.Sets {
			want := ARCSet{
				Instance: i + 1, CV: ChainPass, SealDomain: res.Sealers[i], AMSDomain: res.Sealers[i],
				AuthservID: res.Sealers[i],
				Results:    []authres.Result{{Method: "dmarc", Value: "pass", Props: map[string]string{"header.from": "example.com"}}},
			}
			if i == 0 {
				want.CV = ChainNone
			}
			s.SealSelector, s.SealAlgorithm, s.AMSSelector = "", "", ""
			if d := cmp.Diff(want, s); d != "" {
				t.Errorf("set %d (-want +got):\n%s", i+1, d)
			}
		}
	}
}

// TestARCOneSetEachAlgorithm: a single set, RSA and Ed25519, each body
// canonicalization, and the AMS without c= (simple/simple).
func TestARCOneSetEachAlgorithm(t *testing.T) {
	t.Parallel()
	w := newARCWorld(t)
	for _, s := range []testSealer{w.list, w.fwd} {
		for _, o := range []sealOpts{{bodyC: "relaxed"}, {bodyC: "simple"}} {
			msg := s.seal(t, testMessage, o)
			if res := verifyARC(t, w.r, ARCConfig{}, msg, 3); res.CV != ChainPass {
				t.Errorf("%s %s: %+v", algoOf(s.key), o.bodyC, res)
			}
		}
	}
}

func TestARCOldestPass(t *testing.T) {
	t.Parallel()
	w := newARCWorld(t)
	// The forwarder changes the body after the list sealed it, then seals:
	// the list's AMS no longer verifies, the forwarder's does.
	msg := w.list.seal(t, testMessage, sealOpts{})
	msg = strings.Replace(msg, "Hello Bob", "Hello Bob [list footer]", 1)
	msg = w.fwd.seal(t, msg, sealOpts{})
	msg = w.relay.seal(t, msg, sealOpts{})
	cases := []struct {
		depth int
		want  int
	}{
		{depth: 0, want: 2},  // default depth: set 1 fails, so 2 is the oldest passing
		{depth: 1, want: 2},  // set 2 verified only
		{depth: -1, want: 3}, // no older AMS verified: the newest
	}
	for _, tc := range cases {
		res := verifyARC(t, w.r, ARCConfig{OldestPassDepth: tc.depth}, msg, 64)
		if res.CV != ChainPass || res.OldestPass != tc.want {
			t.Errorf("depth %d: cv=%s oldest-pass=%d, want pass %d (%s)", tc.depth, res.CV, res.OldestPass, tc.want, res.Reason)
		}
	}
	// All pass: 0, unless the depth stops the walk before instance 1.
	all := w.chain(t, w.list, w.fwd, w.relay)
	if res := verifyARC(t, w.r, ARCConfig{}, all, 64); res.OldestPass != 0 {
		t.Errorf("all pass: oldest-pass %d", res.OldestPass)
	}
	if res := verifyARC(t, w.r, ARCConfig{OldestPassDepth: 1}, all, 64); res.OldestPass != 2 {
		t.Errorf("all pass, depth 1: oldest-pass %d, want 2", res.OldestPass)
	}
}

// replaceField replaces the value of the n-th (0-based, from the top) field
// called name.
func replaceField(t *testing.T, msg, name string, n int, f func(string) string) string {
	t.Helper()
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	fields := rawFields(head + "\r\n")
	var out []string
	for _, fl := range fields {
		if strings.EqualFold(fl.name, name) {
			if n == 0 {
				fl.text = f(fl.text)
			}
			n--
		}
		out = append(out, fl.text)
	}
	if n >= 0 {
		t.Fatalf("no field %s", name)
	}
	return strings.Join(out, "\r\n") + "\r\n\r\n" + body
}

// breakSig changes the first octet of the b= value of a field.
func breakSig(text string) string {
	i := strings.LastIndex(text, "b=") + 2
	c := byte('A')
	if text[i] == 'A' {
		c = 'B'
	}
	return text[:i] + string(c) + text[i+1:]
}

func TestARCFailures(t *testing.T) {
	t.Parallel()
	w := newARCWorld(t)
	k := keysOnce()
	// A 512-bit RSA key (from the ARC test suite's txt-records) published
	// for a sealer that signs with another key: the size check comes first.
	weak := testSealer{domain: "weak.example", selector: "s", key: k.rsa}
	addTXT(w.srv, "s._domainkey.weak.example", "v=DKIM1; k=rsa; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAIWmlgix/84GJ+dfgjm7LTc9EPdfk"+
		"ftlgiPpCq4/kbDAZmU0VvYKDljjleJ1dfvS+CGy9U/kk1tG3EeEvb82xAcCAwEAAQ==")
	missing := testSealer{domain: "nokey.example", selector: "s", key: k.rsa}
	two := w.chain(t, w.list, w.fwd)
	three := w.chain(t, w.list, w.fwd, w.relay)
	cases := []struct {
		name     string
		msg      string
		failure  ARCFailure
		instance int
		reason   string // a part of Reason, when it matters
	}{
		{name: "header changed after sealing",
			msg:     strings.Replace(three, "Subject: the quarterly", "Subject: the yearly", 1),
			failure: ARCFailAMS, instance: 3},
		{name: "body changed after sealing",
			msg:     strings.Replace(three, "the numbers", "the figures", 1),
			failure: ARCFailAMS, instance: 3},
		{name: "seal changed in the middle",
			msg:     replaceField(t, three, FieldARCSeal, 1, func(s string) string { return strings.Replace(s, "cv=pass", "cv=pass ", 1) }),
			failure: ARCFailSeal, instance: 3},
		{name: "broken seal in the middle, sealed over as pass",
			msg:     w.relay.seal(t, replaceField(t, two, FieldARCSeal, 0, breakSig), sealOpts{}),
			failure: ARCFailSeal, instance: 2},
		{name: "AAR changed in the middle",
			msg:     replaceField(t, three, FieldARCAuthenticationResults, 1, func(s string) string { return s + " (edited)" }),
			failure: ARCFailSeal, instance: 3},
		{name: "instance gap",
			msg:     w.relay.seal(t, w.fwd.seal(t, w.list.seal(t, testMessage, sealOpts{}), sealOpts{instance: 3}), sealOpts{}),
			failure: ARCFailStructure, instance: 2},
		{name: "duplicate instance",
			msg:     w.fwd.seal(t, w.list.seal(t, testMessage, sealOpts{}), sealOpts{instance: 1}),
			failure: ARCFailStructure, instance: 1},
		{name: "cv=none at i=2",
			msg:     w.fwd.seal(t, w.list.seal(t, testMessage, sealOpts{}), sealOpts{cv: "none"}),
			failure: ARCFailCV, instance: 2},
		{name: "cv=pass at i=1",
			msg:     w.list.seal(t, testMessage, sealOpts{cv: "pass"}),
			failure: ARCFailCV, instance: 1},
		{name: "newest seal says cv=fail",
			msg:     w.fwd.seal(t, two, sealOpts{cv: "fail"}),
			failure: ARCFailNewestCV, instance: 3},
		{name: "older seal says cv=fail",
			msg:     w.relay.seal(t, w.fwd.seal(t, two, sealOpts{cv: "fail"}), sealOpts{}),
			failure: ARCFailCV, instance: 3},
		{name: "instance 51",
			msg:     w.list.seal(t, testMessage, sealOpts{instance: 51}),
			failure: ARCFailTooManySets, instance: 51},
		{name: "AMS signs the ARC-Seal",
			msg:     w.fwd.seal(t, w.list.seal(t, testMessage, sealOpts{}), sealOpts{headers: "from:to:subject:arc-seal"}),
			failure: ARCFailAMS, instance: 2, reason: "signs ARC-Seal"},
		{name: "AMS with l=",
			msg:     w.list.seal(t, testMessage, sealOpts{extraAMS: "l=10; "}),
			failure: ARCFailAMS, instance: 1, reason: "l="},
		{name: "RSA key of 512 bits",
			msg:     weak.seal(t, testMessage, sealOpts{}),
			failure: ARCFailAMS, instance: 1, reason: "key is too short"},
		{name: "no key in DNS",
			msg:     missing.seal(t, testMessage, sealOpts{}),
			failure: ARCFailAMS, instance: 1, reason: "no key for signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := verifyARC(t, w.r, ARCConfig{}, tc.msg, 64)
			if res.CV != ChainFail || res.Failure != tc.failure || res.FailedInstance != tc.instance {
				t.Errorf("cv=%s failure %s at i=%d, want fail %s at i=%d (%s)",
					res.CV, res.Failure, res.FailedInstance, tc.failure, tc.instance, res.Reason)
			}
			if !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", res.Reason, tc.reason)
			}
			if res.OldestPass != 0 {
				t.Errorf("OldestPass %d on a failed chain", res.OldestPass)
			}
		})
	}
}

func TestARCNone(t *testing.T) {
	t.Parallel()
	w := newARCWorld(t)
	res := verifyARC(t, w.r, ARCConfig{}, testMessage, 64)
	if res.CV != ChainNone || res.Failure != ARCFailNone || res.Sets != nil {
		t.Errorf("%+v", res)
	}
	// A header block over the limit with ARC fields in it fails; without
	// any ARC field seen it fails too (the fields may be past the limit).
	msg := w.chain(t, w.list)
	for _, m := range []string{msg, "X-Big: " + strings.Repeat("x", 2000) + "\r\n" + msg} {
		res = verifyARC(t, w.r, ARCConfig{MaxHeaderBytes: 1000}, m, 64)
		if res.CV != ChainFail || res.Failure != ARCFailHeaderLimit {
			t.Errorf("over the limit: %+v", res)
		}
	}
}

// TestARCKeyTemporary: a SERVFAIL for a seal's key fails the chain (RFC 8617
// §5.2.1) with the temporary reason.
func TestARCKeyTemporary(t *testing.T) {
	t.Parallel()
	w := newARCWorld(t)
	msg := w.chain(t, w.list, w.fwd)
	w.srv.SetFault("arc._domainkey.lists.example.org.", dnstest.FaultServFail)
	res := verifyARC(t, w.r, ARCConfig{}, msg, 64)
	if res.CV != ChainFail || res.Failure != ARCFailKeyTemporary || res.FailedInstance != 1 {
		t.Errorf("%+v", res)
	}
	// The message's deadline ends while a key is still being fetched.
	w.srv.SetFault("arc._domainkey.lists.example.org.", dnstest.FaultNone)
	w.srv.SetDelay(500 * time.Millisecond)
	fields, body := splitRaw(msg)
	v := NewARCVerifier(newCache(t, w.srv, 5*time.Second), ARCConfig{})
	for _, f := range fields {
		v.Header(f.name, f.value)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	v.EndOfHeaders(ctx)
	v.Write([]byte(body))
	res, err := v.Finish(ctx)
	if err != nil || res.CV != ChainFail || res.Failure != ARCFailKeyTemporary {
		t.Errorf("deadline: %+v %v", res, err)
	}
}

func TestARCAbortAndOrder(t *testing.T) {
	w := newARCWorld(t)
	msg := w.chain(t, w.list, w.fwd, w.relay)
	fields, body := splitRaw(msg)
	base := runtime.NumGoroutine()
	w.srv.SetDelay(200 * time.Millisecond)
	v := NewARCVerifier(w.r, ARCConfig{})
	for _, f := range fields {
		v.Header(f.name, f.value)
	}
	ctx := context.Background()
	if err := v.EndOfHeaders(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Header("X", "y"); !errors.Is(err, ErrDKIMOrder) {
		t.Errorf("Header after EndOfHeaders: %v", err)
	}
	v.Write([]byte(body))
	v.Abort()
	v.Abort()
	if _, err := v.Write([]byte("x")); !errors.Is(err, ErrDKIMAborted) {
		t.Errorf("Write after Abort: %v", err)
	}
	if _, err := v.Finish(ctx); !errors.Is(err, ErrDKIMOrder) {
		t.Errorf("Finish after Abort: %v", err)
	}
	checkNoLeak(t, base)
	w.srv.SetDelay(0)
	// Finish without EndOfHeaders runs it; a second Finish is an error.
	v = NewARCVerifier(w.r, ARCConfig{})
	for _, f := range fields {
		v.Header(f.name, f.value)
	}
	if _, err := v.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Finish(ctx); !errors.Is(err, ErrDKIMOrder) {
		t.Errorf("second Finish: %v", err)
	}
}

// TestARCFailureNames: every failure has a name.
func TestARCFailureNames(t *testing.T) {
	for f := ARCFailNone; f <= ARCFailKeyTemporary; f++ {
		if s := f.String(); s == "" || strings.HasPrefix(s, "ARCFailure(") {
			t.Errorf("%d has no name", f)
		}
	}
	if s := ARCFailure(200).String(); s != "ARCFailure(200)" {
		t.Errorf("unknown: %q", s)
	}
}

// TestARCBounded50Sets100MB: a chain of 50 sets (the most RFC 8617 allows)
// by 50 sealers over a body of 100 MB, generated and written in chunks of
// 64 KiB as the milter receives it. The body is hashed as it arrives and
// never kept: the writes allocate nothing, and the verification passes.
func TestARCBounded50Sets100MB(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB body: not in -short")
	}
	// Not parallel: TotalAlloc counts every goroutine's allocations, and
	// parallel tests do not run beside a sequential one.
	k := keysOnce()
	srv := dnstest.New(t, "")
	r := newCache(t, srv, time.Second)
	line := strings.Repeat("0123456789", 7) + "\r\n"
	chunk := []byte(strings.Repeat(line, 65536/len(line)))
	const total = 100 << 20
	chunks := total / len(chunk)
	h := sha256.New()
	for range chunks {
		h.Write(chunk)
	}
	bh := base64.StdEncoding.EncodeToString(h.Sum(nil))
	msg := strings.SplitAfter(testMessage, "\r\n\r\n")[0]
	var sealers []string
	for i := 1; i <= MaxARCInstance; i++ {
		s := testSealer{domain: fmt.Sprintf("sealer%d.example", i), selector: "s", key: k.ed}
		if i%10 == 0 {
			s.key = k.rsa
		}
		addTXT(srv, "s._domainkey."+s.domain, keyRecord(t, s.key))
		msg = s.seal(t, msg, sealOpts{bodyHash: bh})
		sealers = append(sealers, s.domain)
	}
	fields, _ := splitRaw(msg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v := NewARCVerifier(r, ARCConfig{})
	for _, f := range fields {
		if err := v.Header(f.name, f.value); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.EndOfHeaders(ctx); err != nil {
		t.Fatal(err)
	}
	v.Write(chunk) // the first write sets up the hasher's scratch space
	// Let the key lookups finish first: their allocations are not the
	// body's (keysDone is buffered; the value goes back for Finish).
	v.keysDone <- <-v.keysDone
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range chunks - 1 {
		if _, err := v.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
		t.Errorf("writing %d MB allocated %d bytes", total>>20, d)
	}
	res, err := v.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// OldestPass: the default depth verifies 8 AMSes below the newest, all
	// good, so the walk stops at instance 42.
	if res.CV != ChainPass || res.OldestPass != 50-DefaultARCOldestPassDepth {
		t.Fatalf("cv=%s oldest-pass=%d: %s", res.CV, res.OldestPass, res.Reason)
	}
	if d := cmp.Diff(sealers, res.Sealers); d != "" {
		t.Errorf("Sealers (-want +got):\n%s", d)
	}
	t.Logf("50 sets, %d MB: %d bytes allocated by the writes; heap in use %d KB", total>>20,
		after.TotalAlloc-before.TotalAlloc, after.HeapInuse>>10)
}

func TestParseAARInstance(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in       string
		instance int
		payload  string
		err      error
	}{
		{in: " i=1; lists.example.org; dmarc=pass", instance: 1, payload: " lists.example.org; dmarc=pass"},
		{in: "i = 12 ;x; none", instance: 12, payload: "x; none"},
		{in: "\r\n\t(hop (two)) i (x) = (y) 3 (z) ; x; none", instance: 3, payload: " x; none"},
		{in: " i=01; x; none", instance: 1, payload: " x; none"}, // 1*2DIGIT: a leading zero is allowed
		{in: " i=50; x; none", instance: 50, payload: " x; none"},
		{in: " i=51; x; none", instance: 51, err: errARCRange},          // above 50: kept for the too-many check
		{in: " i=0; x; none", err: errARCRange},                         // instances start at 1
		{in: " i=123; x; none", err: errARCInstance},                    // three digits
		{in: " I=1; x; none", err: errARCNoInstance},                    // %s"i": lower case only
		{in: " x; i=1; none", err: errARCNoInstance},                    // not first
		{in: " i=1 x; none", err: errAARNoSemicolon},                    // no ';' after the instance
		{in: " i=; x; none", err: errARCInstance},                       // no digits
		{in: " (unterminated i=1; x; none", err: errARCComment},         // comment without its ')'
		{in: " i=1", err: errAARNoSemicolon},                            // nothing after
		{in: " i=\\(1); x; none", err: errARCInstance},                  // quoted-pair outside a comment
		{in: " (a\\)b) i=2; x; none", instance: 2, payload: " x; none"}, // quoted ')' inside a comment
	}
	for _, tc := range cases {
		n, payload, err := parseAARInstance(tc.in)
		if !errors.Is(err, tc.err) || n != tc.instance && tc.instance != 0 || err == nil && payload != tc.payload {
			t.Errorf("parseAARInstance(%q) = %d, %q, %v; want %d, %q, %v", tc.in, n, payload, err, tc.instance, tc.payload, tc.err)
		}
	}
}

func TestParseARCTags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in       string
		instance int
		bad      bool
	}{
		{in: " i=1; a=rsa-sha256; b=x; cv=none", instance: 1},
		{in: "i=2;", instance: 2},              // a trailing ';' is allowed
		{in: "v=1; i=3; x_new=y", instance: 3}, // v= and unknown tags ignored
		{in: "i=1;; a=b", bad: true},           // empty tag-spec in the middle
		{in: "; i=1", bad: true},               // empty tag-spec first
		{in: "i=1; i=2", bad: true},            // duplicate
		{in: "i=1; ==", bad: true},             // malformed tag-spec
		{in: "I=1", instance: 0},               // no i= (tag names are case-sensitive)
	}
	for _, tc := range cases {
		tags, err := parseARCTags(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("parseARCTags(%q): %v", tc.in, err)
			continue
		}
		if err != nil {
			continue
		}
		n, err := tags.instance()
		if n != tc.instance || (err != nil) != (tc.instance == 0) {
			t.Errorf("parseARCTags(%q).instance() = %d, %v; want %d", tc.in, n, err, tc.instance)
		}
	}
}

// TestARCConcoctedChainFewQueries: a chain of 50 sets bearing 50 domains
// whose newest seal does not verify costs a handful of key lookups, not
// 100 (RFC 8617 §9.2: a validator queries the domains "until a failure is
// discovered"). The same chain with a good newest seal queries every
// sealer.
func TestARCConcoctedChainFewQueries(t *testing.T) {
	t.Parallel()
	k := keysOnce()
	srv := dnstest.New(t, "")
	msg := testMessage
	for i := 1; i <= MaxARCInstance; i++ {
		s := testSealer{domain: fmt.Sprintf("victim%d.example", i), selector: "s", key: k.ed}
		addTXT(srv, "s._domainkey."+s.domain, keyRecord(t, s.key))
		msg = s.seal(t, msg, sealOpts{})
	}
	broken := replaceField(t, msg, FieldARCSeal, 0, breakSig)
	srv.ResetCounts()
	res := verifyARC(t, newCache(t, srv, time.Second), ARCConfig{}, broken, 4096)
	if res.CV != ChainFail || res.Failure != ARCFailSeal || res.FailedInstance != 50 {
		t.Fatalf("%+v", res)
	}
	q := srv.Queries()
	if q > arcKeyWorkers+2 {
		t.Errorf("%d DNS queries for a chain whose newest seal fails", q)
	}
	t.Logf("50 sets, newest seal broken: %d DNS queries", q)
	srv.ResetCounts()
	res = verifyARC(t, newCache(t, srv, time.Second), ARCConfig{}, msg, 4096)
	if res.CV != ChainPass {
		t.Fatalf("%+v", res)
	}
	if q := srv.Queries(); q < MaxARCInstance {
		t.Errorf("%d DNS queries for a good chain of 50 sealers", q)
	} else {
		t.Logf("50 sets, good: %d DNS queries", q)
	}
}
