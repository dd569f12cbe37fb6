package verify

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/google/go-cmp/cmp"
)

// dkimFixture is a DNS server publishing the test keys of example.com
// (selectors rsa and ed) and the verifier's resolver (pkg/cache).
func dkimFixture(t *testing.T) (*dnstest.Server, TXTResolver, testKeys) {
	t.Helper()
	k := keysOnce()
	srv := dnstest.New(t, "")
	addTXT(srv, "rsa._domainkey.example.com", keyRecord(t, k.rsa))
	addTXT(srv, "ed._domainkey.example.com", keyRecord(t, k.ed))
	return srv, newCache(t, srv, 300*time.Millisecond), k
}

func rsaOpts(k testKeys, c dkim.Canonicalization) dkim.SignOptions {
	return dkim.SignOptions{Domain: "example.com", Selector: "rsa", Signer: k.rsa,
		HeaderCanonicalization: c, BodyCanonicalization: c}
}

func edOpts(k testKeys, c dkim.Canonicalization) dkim.SignOptions {
	return dkim.SignOptions{Domain: "example.com", Selector: "ed", Signer: k.ed,
		HeaderCanonicalization: c, BodyCanonicalization: c}
}

// TestDKIMGolden signs messages at test time and checks the verdicts.
func TestDKIMGolden(t *testing.T) {
	srv, r, k := dkimFixture(t)
	srv.SetFault("broken._domainkey.example.com", dnstest.FaultServFail)
	cases := []struct {
		name string
		msg  func() string
		want []string
		bits []int
	}{
		{"rsa-2048 relaxed", func() string { return sign(t, testMessage, rsaOpts(k, dkim.CanonicalizationRelaxed)) },
			[]string{"pass example.com rsa"}, []int{2048}},
		{"rsa-2048 simple", func() string { return sign(t, testMessage, rsaOpts(k, dkim.CanonicalizationSimple)) },
			[]string{"pass example.com rsa"}, []int{2048}},
		{"ed25519 relaxed", func() string { return sign(t, testMessage, edOpts(k, dkim.CanonicalizationRelaxed)) },
			[]string{"pass example.com ed"}, []int{256}},
		{"ed25519 simple", func() string { return sign(t, testMessage, edOpts(k, dkim.CanonicalizationSimple)) },
			[]string{"pass example.com ed"}, []int{256}},
		{"two signatures", func() string {
			m := sign(t, testMessage, rsaOpts(k, dkim.CanonicalizationRelaxed))
			return sign(t, m, edOpts(k, dkim.CanonicalizationSimple))
		}, []string{"pass example.com ed", "pass example.com rsa"}, []int{256, 2048}},
		{"body changed", func() string {
			m := sign(t, testMessage, rsaOpts(k, dkim.CanonicalizationRelaxed))
			return strings.Replace(m, "numbers", "figures", 1)
		}, []string{"fail example.com rsa"}, []int{2048}},
		{"header changed", func() string {
			m := sign(t, testMessage, edOpts(k, dkim.CanonicalizationSimple))
			return strings.Replace(m, "Subject: the quarterly", "Subject: the monthly", 1)
		}, []string{"fail example.com ed"}, []int{256}},
		{"one of two broken by the body", func() string {
			m := sign(t, testMessage, rsaOpts(k, dkim.CanonicalizationRelaxed))
			m = sign(t, m, edOpts(k, dkim.CanonicalizationSimple))
			// Inner whitespace: relaxed body canonicalization ignores it, simple does not.
			return strings.Replace(m, "numbers  are", "numbers are", 1)
		}, []string{"fail example.com ed", "pass example.com rsa"}, []int{256, 2048}},
		{"key lookup SERVFAIL", func() string {
			o := rsaOpts(k, dkim.CanonicalizationRelaxed)
			o.Selector = "broken"
			return sign(t, testMessage, o)
		}, []string{"temperror example.com broken"}, []int{0}},
		{"key NXDOMAIN", func() string {
			o := rsaOpts(k, dkim.CanonicalizationRelaxed)
			o.Selector = "missing"
			return sign(t, testMessage, o)
		}, []string{"permerror example.com missing"}, []int{0}},
		{"d= in upper case", func() string {
			m := sign(t, testMessage, rsaOpts(k, dkim.CanonicalizationRelaxed))
			return strings.Replace(m, "d=example.com", "d=Example.COM", 1)
		}, []string{"fail example.com rsa"}, []int{2048}}, // d= is signed: changing it breaks the signature
		{"unsigned", func() string { return testMessage }, []string{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.msg()
			for _, chunk := range []int{1, 7, 65535} {
				got := verifyMessage(t, r, DKIMConfig{}, msg, chunk)
				if d := cmp.Diff(tc.want, results(got)); d != "" {
					t.Fatalf("chunk %d: (-want +got)\n%s\n%+v", chunk, d, got)
				}
				for i, g := range got {
					if g.KeyBits != tc.bits[i] {
						t.Errorf("result %d: KeyBits %d, want %d", i, g.KeyBits, tc.bits[i])
					}
					if g.Reason == "" || len(g.BPrefix) != BPrefixLen || g.Algorithm == "" {
						t.Errorf("result %d incomplete: %+v", i, g)
					}
				}
			}
		})
	}
}

// TestDKIMSimpleHeaderSpace checks that c=simple header fields written with
// and without a space after the colon verify when given as Postfix sends
// them with SMFIP_HDR_LEADSPC (every octet after the colon), and that adding
// the space that Postfix strips without that option breaks them.
func TestDKIMSimpleHeaderSpace(t *testing.T) {
	_, r, k := dkimFixture(t)
	msg := "From:alice@example.com\r\n" + // no space
		"To:  bob@example.net\r\n" + // two spaces
		"Subject:\tTabbed\r\n" +
		"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n" +
		"\r\n" +
		"body\r\n"
	for _, o := range []dkim.SignOptions{edOpts(k, dkim.CanonicalizationSimple), rsaOpts(k, dkim.CanonicalizationSimple)} {
		signed := sign(t, msg, o)
		got := verifyMessage(t, r, DKIMConfig{}, signed, 4096)
		if len(got) != 1 || got[0].Result != ResultPass {
			t.Errorf("%s: as received: %+v, want pass", o.Selector, got)
		}
		// What a milter without SMFIP_HDR_LEADSPC would rebuild: ": " + value
		// with its first space removed. The no-space From: then gains one.
		mangled := strings.Replace(signed, "From:alice", "From: alice", 1)
		got = verifyMessage(t, r, DKIMConfig{}, mangled, 4096)
		if len(got) != 1 || got[0].Result != ResultFail {
			t.Errorf("%s: with a space added: %+v, want fail", o.Selector, got)
		}
	}
}

// TestDKIMBodyLength shows what a signature with l= gives: policy (see
// classify). The l= tag is added to a valid signature; go-msgauth rejects l=
// before it hashes, so the added tag (which breaks the signature) is not
// what decides.
func TestDKIMBodyLength(t *testing.T) {
	_, r, k := dkimFixture(t)
	signed := sign(t, testMessage, rsaOpts(k, dkim.CanonicalizationRelaxed))
	withL := strings.Replace(signed, "DKIM-Signature: ", "DKIM-Signature: l=10; ", 1)
	got := verifyMessage(t, r, DKIMConfig{}, withL, 4096)
	if len(got) != 1 || got[0].Result != ResultPolicy || !strings.Contains(got[0].Reason, "l=") {
		t.Fatalf("got %+v, want policy", got)
	}
	// The same tag on a signature whose key is missing: the key error wins.
	o := rsaOpts(k, dkim.CanonicalizationRelaxed)
	o.Selector = "missing"
	withL = strings.Replace(sign(t, testMessage, o), "DKIM-Signature: ", "DKIM-Signature: l=10; ", 1)
	if got := verifyMessage(t, r, DKIMConfig{}, withL, 4096); len(got) != 1 || got[0].Result != ResultPermError {
		t.Fatalf("missing key with l=: got %+v, want permerror", got)
	}
}

func TestDKIMMaxSignatures(t *testing.T) {
	_, r, k := dkimFixture(t)
	m := testMessage
	for range 7 {
		m = sign(t, m, edOpts(k, dkim.CanonicalizationRelaxed))
	}
	for _, max := range []int{0, 2, 7} {
		want := max
		if max == 0 {
			want = DefaultDKIMMaxSignatures
		}
		got := verifyMessage(t, r, DKIMConfig{MaxSignatures: max}, m, 4096)
		if len(got) != want {
			t.Fatalf("max %d: %d results, want %d", max, len(got), want)
		}
		seen := map[string]bool{}
		for _, g := range got {
			if g.Result != ResultPass || seen[g.BPrefix] {
				t.Errorf("max %d: %+v (BPrefix must be unique)", max, g)
			}
			seen[g.BPrefix] = true
		}
	}
}

// TestDKIMCacheErrors: through pkg/cache, a SERVFAIL for the key is
// temperror and NXDOMAIN is permerror; a timeout is temperror too.
func TestDKIMCacheErrors(t *testing.T) {
	srv, r, k := dkimFixture(t)
	msg := sign(t, testMessage, rsaOpts(k, dkim.CanonicalizationRelaxed))
	for _, tc := range []struct {
		fault dnstest.Fault
		want  Result
	}{
		{dnstest.FaultNone, ResultPass},
		{dnstest.FaultServFail, ResultTempError},
		{dnstest.FaultDrop, ResultTempError},
		{dnstest.FaultRefused, ResultTempError},
	} {
		srv.SetFault("rsa._domainkey.example.com", tc.fault)
		got := verifyMessage(t, newCache(t, srv, 200*time.Millisecond), DKIMConfig{}, msg, 4096)
		if len(got) != 1 || got[0].Result != tc.want {
			t.Errorf("fault %v: %+v, want %s", tc.fault, got, tc.want)
		}
	}
	srv.SetFault("rsa._domainkey.example.com", dnstest.FaultNone)
	srv.Remove("rsa._domainkey.example.com")
	got := verifyMessage(t, r, DKIMConfig{}, msg, 4096)
	if len(got) != 1 || got[0].Result != ResultPermError {
		t.Errorf("NXDOMAIN: %+v, want permerror", got)
	}
}

// TestDKIMKeyFlags: t=s forbids an i= in a subdomain of d= (RFC 6376 §3.6.1),
// which go-msgauth does not check; t=y is reported.
func TestDKIMKeyFlags(t *testing.T) {
	srv, r, k := dkimFixture(t)
	addTXT(srv, "strict._domainkey.example.com", keyRecord(t, k.ed)+"; t=s")
	addTXT(srv, "testing._domainkey.example.com", keyRecord(t, k.ed)+"; t=y")
	o := edOpts(k, dkim.CanonicalizationRelaxed)
	o.Selector, o.Identifier = "strict", "alice@sub.example.com"
	if got := verifyMessage(t, r, DKIMConfig{}, sign(t, testMessage, o), 4096); got[0].Result != ResultPermError {
		t.Errorf("t=s with i= in a subdomain: %+v, want permerror", got)
	}
	o.Identifier = "alice@example.com"
	if got := verifyMessage(t, r, DKIMConfig{}, sign(t, testMessage, o), 4096); got[0].Result != ResultPass || got[0].Identifier != "alice@example.com" {
		t.Errorf("t=s with i= at d=: %+v, want pass", got)
	}
	o.Selector = "testing"
	if got := verifyMessage(t, r, DKIMConfig{}, sign(t, testMessage, o), 4096); got[0].Result != ResultPass || !got[0].Testing {
		t.Errorf("t=y: %+v, want pass with Testing", got)
	}
	// The same with d= written as an absolute name: the flags still apply.
	o.Selector, o.Domain, o.Identifier = "strict", "example.com.", "alice@sub.example.com."
	if got := verifyMessage(t, r, DKIMConfig{}, sign(t, testMessage, o), 4096); got[0].Result != ResultPermError {
		t.Errorf("t=s, d= with a trailing dot: %+v, want permerror", got)
	}
}

// TestDKIMTrailingBlankLines: a body ending in a million empty lines
// verifies, and so does one with a hundred thousand empty lines inside it
// (runs of blank lines are counted, not held), in chunks that cut the runs
// anywhere; blank lines added inside the body break it.
func TestDKIMTrailingBlankLines(t *testing.T) {
	_, r, k := dkimFixture(t)
	for _, c := range []dkim.Canonicalization{dkim.CanonicalizationSimple, dkim.CanonicalizationRelaxed} {
		signed := sign(t, testMessage, rsaOpts(k, c))
		long := signed + strings.Repeat("\r\n", 1_000_000)
		if got := verifyMessage(t, r, DKIMConfig{}, long, 65535); got[0].Result != ResultPass {
			t.Errorf("%s: trailing run: %+v, want pass", c, got)
		}
		innerBody := strings.Replace(testMessage, "Hello Bob,\r\n", "Hello Bob,\r\n"+strings.Repeat("\r\n", 100_000), 1)
		for _, chunk := range []int{100, 65535} {
			got := verifyMessage(t, r, DKIMConfig{}, sign(t, innerBody, rsaOpts(k, c)), chunk)
			if got[0].Result != ResultPass {
				t.Errorf("%s: signed inner run, chunk %d: %+v, want pass", c, chunk, got)
			}
		}
		inner := strings.Replace(signed, "Hello Bob,\r\n", "Hello Bob,\r\n"+strings.Repeat("\r\n", 1000), 1)
		if got := verifyMessage(t, r, DKIMConfig{}, inner, 100); got[0].Result != ResultFail {
			t.Errorf("%s: inner run added: %+v, want fail (body changed)", c, got)
		}
	}
}

// TestDKIMAbort: aborting at any step leaves no goroutine behind, including
// while the key lookup hangs.
func TestDKIMAbort(t *testing.T) {
	srv, r, k := dkimFixture(t)
	msg := sign(t, testMessage, rsaOpts(k, dkim.CanonicalizationRelaxed))
	msg = sign(t, msg, edOpts(k, dkim.CanonicalizationRelaxed))
	fields, body := splitMessage(t, msg)
	srv.SetDelay(300 * time.Millisecond)
	base := runtime.NumGoroutine()
	for step := range 4 {
		v := NewDKIMVerifier(r, DKIMConfig{})
		for _, f := range fields {
			v.Header(f.name, f.value)
		}
		if step > 0 {
			v.EndOfHeaders(context.Background())
		}
		if step > 1 {
			go func() { time.Sleep(50 * time.Millisecond); v.Abort() }() // while Write waits for the keys
			if _, err := v.Write([]byte(body)); err != nil && !errors.Is(err, ErrDKIMAborted) {
				t.Fatal(err)
			}
		}
		v.Abort()
		v.Abort()
		if _, err := v.Write([]byte("x")); err == nil {
			t.Errorf("step %d: Write after Abort: no error", step)
		}
		if _, err := v.Finish(context.Background()); !errors.Is(err, ErrDKIMOrder) && !errors.Is(err, ErrDKIMAborted) {
			t.Errorf("step %d: Finish after Abort: %v", step, err)
		}
	}
	checkNoLeak(t, base)
}

// TestDKIMFinishDeadline: a key lookup slower than the message's deadline
// gives temperror, not fail, and no goroutine is left.
func TestDKIMFinishDeadline(t *testing.T) {
	srv, _, k := dkimFixture(t)
	r := newCache(t, srv, 2*time.Second)
	msg := sign(t, testMessage, rsaOpts(k, dkim.CanonicalizationRelaxed))
	fields, body := splitMessage(t, msg)
	srv.SetDelay(time.Second)
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	v := NewDKIMVerifier(r, DKIMConfig{})
	for _, f := range fields {
		v.Header(f.name, f.value)
	}
	v.EndOfHeaders(ctx)
	v.Write([]byte(body))
	got, err := v.Finish(ctx)
	if err != nil || len(got) != 1 || got[0].Result != ResultTempError {
		t.Fatalf("got %+v, %v; want temperror", got, err)
	}
	checkNoLeak(t, base)
}

func TestDKIMOrder(t *testing.T) {
	v := NewDKIMVerifier(nil, DKIMConfig{})
	if _, err := v.Write([]byte("x")); !errors.Is(err, ErrDKIMOrder) {
		t.Errorf("Write before EndOfHeaders: %v", err)
	}
	v.Header("Subject", " x")
	v.EndOfHeaders(context.Background())
	if err := v.Header("X", " y"); !errors.Is(err, ErrDKIMOrder) {
		t.Errorf("Header after EndOfHeaders: %v", err)
	}
	if res, err := v.Finish(context.Background()); res != nil || err != nil {
		t.Errorf("unsigned: %v, %v", res, err)
	}
	if _, err := v.Finish(context.Background()); !errors.Is(err, ErrDKIMOrder) {
		t.Errorf("second Finish: %v", err)
	}
}

func TestRebuildField(t *testing.T) {
	for _, tc := range []struct {
		name, value, want string
	}{
		{"Subject", " hi", "Subject: hi\r\n"},
		{"Subject", "hi", "Subject:hi\r\n"},
		{"Subject", " a\n\tb", "Subject: a\r\n\tb\r\n"},
		{"Subject", " a\r\n b", "Subject: a\r\n b\r\n"},
		{"Subject", " a\nb", ""}, // a line break without WSP: not a fold
		{"Subject", " a\n", ""},  // ends in a line break
		{"Subject", " a\rb", ""}, // bare CR
		{"Sub ject", " a", ""},   // space in the name
		{"Subject:", " a", ""},   // colon in the name
		{"", " a", ""},           // no name
		{"DKIM-Signature", "", "DKIM-Signature:\r\n"},
	} {
		got, ok := rebuildField(tc.name, tc.value)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("rebuildField(%q, %q) = %q, %v; want %q", tc.name, tc.value, got, ok, tc.want)
		}
	}
}

// panicTXT is a resolver that panics.
type panicTXT struct{}

func (panicTXT) LookupTXT(context.Context, string) ([]string, error) { panic("resolver bug") }

// TestDKIMPanic: a panic in the key lookup goroutine is ErrInternal from
// Finish, not a crash, and leaves no goroutine.
func TestDKIMPanic(t *testing.T) {
	k := keysOnce()
	msg := sign(t, testMessage, edOpts(k, dkim.CanonicalizationRelaxed))
	fields, body := splitMessage(t, msg)
	base := runtime.NumGoroutine()
	for _, r := range []TXTResolver{panicTXT{}} {
		v := NewDKIMVerifier(r, DKIMConfig{})
		for _, f := range fields {
			v.Header(f.name, f.value)
		}
		v.EndOfHeaders(context.Background())
		v.Write([]byte(body))
		if res, err := v.Finish(context.Background()); !errors.Is(err, ErrInternal) || res != nil {
			t.Errorf("%T: %+v, %v; want ErrInternal", r, res, err)
		}
	}
	checkNoLeak(t, base)
}

// blockTXT answers nothing until the context ends.
type blockTXT struct{}

func (blockTXT) LookupTXT(ctx context.Context, name string) ([]string, error) {
	<-ctx.Done()
	return nil, &net.DNSError{Err: ctx.Err().Error(), Name: name, IsTimeout: true}
}

// TestDKIMAbortRace: Abort from another goroutine at any moment around
// EndOfHeaders stops the key lookup, even one that would never answer.
func TestDKIMAbortRace(t *testing.T) {
	k := keysOnce()
	fields, body := splitMessage(t, sign(t, testMessage, edOpts(k, dkim.CanonicalizationRelaxed)))
	base := runtime.NumGoroutine()
	for i := range 200 {
		v := NewDKIMVerifier(blockTXT{}, DKIMConfig{})
		for _, f := range fields {
			v.Header(f.name, f.value)
		}
		done := make(chan struct{})
		go func() {
			if i%2 == 0 {
				runtime.Gosched()
			}
			v.Abort()
			close(done)
		}()
		v.EndOfHeaders(context.Background())
		v.Write([]byte(body))
		<-done
		if _, err := v.Finish(context.Background()); !errors.Is(err, ErrDKIMOrder) && !errors.Is(err, ErrDKIMAborted) {
			t.Fatalf("Finish after Abort: %v", err)
		}
	}
	checkNoLeak(t, base)
}
