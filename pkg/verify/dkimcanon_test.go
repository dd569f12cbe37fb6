package verify

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
	"time"
)

// canonBody runs body through a bodyHasher cut at the given points and
// returns the hash.
func canonBody(body string, relaxed bool, cuts ...int) [32]byte {
	b := newBodyHasher(relaxed)
	defer b.release()
	prev := 0
	for _, c := range append(cuts, len(body)) {
		b.write([]byte(body[prev:c]))
		prev = c
	}
	return b.sum()
}

// checkBody compares the body hash of body, cut at every point and at every
// pair of points, with the SHA-256 of want.
func checkBody(t *testing.T, name, body string, relaxed bool, want string) {
	t.Helper()
	sum := sha256.Sum256([]byte(want))
	if got := canonBody(body, relaxed); got != sum {
		t.Errorf("%s: %q (relaxed %v): hash is not that of %q", name, body, relaxed, want)
		return
	}
	for i := 0; i <= len(body); i++ {
		for j := i; j <= len(body) && j < i+8; j++ {
			if got := canonBody(body, relaxed, i, j); got != sum {
				t.Errorf("%s: %q (relaxed %v) cut at %d and %d: hash differs", name, body, relaxed, i, j)
				return
			}
		}
	}
}

// TestDKIMCanonRFC6376Example is the example of RFC 6376 §3.4.5.
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.4.5
func TestDKIMCanonRFC6376Example(t *testing.T) {
	// Header fields as Header receives them: the name, and every octet
	// after the colon.
	fields := []hfield{{"A", " X"}, {"B ", " Y\t\r\n\tZ  "}}
	var relaxed, simple []byte
	for _, f := range fields {
		relaxed = appendField(relaxed, f, canonRelaxed)
		simple = appendField(simple, f, canonSimple)
	}
	if got, want := string(relaxed), "a:X\r\nb:Y Z\r\n"; got != want {
		t.Errorf("relaxed header: %q, want %q", got, want)
	}
	if got, want := string(simple), "A: X\r\nB : Y\t\r\n\tZ  \r\n"; got != want {
		t.Errorf("simple header: %q, want %q", got, want)
	}
	body := " C \r\nD \t E\r\n\r\n\r\n"
	checkBody(t, "RFC 6376 §3.4.5", body, true, " C\r\nD E\r\n")
	checkBody(t, "RFC 6376 §3.4.5", body, false, " C \r\nD \t E\r\n")
}

// TestDKIMCanonBody: the rules of RFC 6376 §3.4.3 and §3.4.4, with the
// empty body of each (erratum 1384: relaxed gives the empty string, simple
// one CRLF), and go-msgauth's reading of bare CR and LF, which the verifier
// keeps so that results do not change: a bare LF is a line end, a bare CR is
// content.
func TestDKIMCanonBody(t *testing.T) {
	for _, tc := range []struct {
		name, body, simple, relaxed string
	}{
		{"empty", "", "\r\n", ""},
		{"one CRLF", "\r\n", "\r\n", ""},
		{"blank lines only", "\r\n\r\n\r\n", "\r\n", ""},
		{"WSP only", " \t \r\n  \r\n", " \t \r\n  \r\n", ""},
		{"no final CRLF", "abc", "abc\r\n", "abc\r\n"},
		{"trailing WSP, no CRLF", "abc  \t", "abc  \t\r\n", "abc\r\n"},
		{"trailing blank lines", "a\r\n\r\n\r\n", "a\r\n", "a\r\n"},
		{"trailing WSP lines", "a\r\n \r\n\t\r\n", "a\r\n \r\n\t\r\n", "a\r\n"},
		{"inner blank lines", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n"},
		{"WSP runs", "a  b\t\tc \t d\r\n", "a  b\t\tc \t d\r\n", "a b c d\r\n"},
		{"leading WSP", "  a\r\n\tb\r\n", "  a\r\n\tb\r\n", " a\r\n b\r\n"},
		{"WSP before CRLF", "a \r\nb\t\r\n", "a \r\nb\t\r\n", "a\r\nb\r\n"},
		{"WSP-only line inside", "a\r\n   \r\nb\r\n", "a\r\n   \r\nb\r\n", "a\r\n\r\nb\r\n"},
		{"bare LF", "a\nb\n\n", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"bare LF after WSP", "a \nb", "a \r\nb\r\n", "a\r\nb\r\n"},
		{"bare CR inside", "a\rb\r\n", "a\rb\r\n", "a\rb\r\n"},
		{"bare CR at the end", "a\r", "a\r\r\n", "a\r\n"},
		{"CR after blank lines at the end", "a\r\n\r\n\r", "a\r\n\r\n\r\r\n", "a\r\n"},
		{"CR CRLF", "a\r\r\nb", "a\r\r\nb\r\n", "a\r\r\nb\r\n"},
		{"WSP around bare CR", "a \r b\r\n", "a \r b\r\n", "a\r b\r\n"},
		{"CR WSP CRLF then content", "a\r \r\nb", "a\r \r\nb\r\n", "a\r\r\nb\r\n"},
		{"CR CR at the end", "a\r\r", "a\r\r\r\n", "a\r\n"},
		{"mixed run kept", "a\r\n\r \n\r\r\n b", "a\r\n\r \r\n\r\r\n b\r\n", "a\r\n\r\r\n\r\r\n b\r\n"},
		{"mixed run dropped", "a\r\n\r \n\r\r\n \t", "a\r\n\r \r\n\r\r\n \t\r\n", "a\r\n"},
		{"LF CR LF", "a\n\r\nb", "a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n"},
		{"flowed lines", "a \r\nb  \r\nc\t \r\nd", "a \r\nb  \r\nc\t \r\nd\r\n", "a\r\nb\r\nc\r\nd\r\n"},
		{"SP before bare CR and LF", "a \rb \nc  \r\r\nd", "a \rb \r\nc  \r\r\nd\r\n", "a\rb\r\nc\r\r\nd\r\n"},
	} {
		checkBody(t, tc.name, tc.body, false, tc.simple)
		checkBody(t, tc.name, tc.body, true, tc.relaxed)
	}
}

// TestDKIMCanonLongRuns: runs of blank lines far longer than any buffer,
// inside the body and at its end, in chunks of odd sizes.
func TestDKIMCanonLongRuns(t *testing.T) {
	run := strings.Repeat("\r\n", 300_000)
	body := "a" + run + "b" + run
	for _, relaxed := range []bool{false, true} {
		want := sha256.Sum256([]byte("a" + run + "b\r\n"))
		var cuts []int
		for c := 7; c < len(body); c += 4093 {
			cuts = append(cuts, c)
		}
		if got := canonBody(body, relaxed, cuts...); got != want {
			t.Errorf("relaxed %v: hash differs", relaxed)
		}
	}
}

// TestDKIMHeaderPick: h= takes the fields from the bottom up, a repeated
// name the next instance up, a missing name nothing (RFC 6376 §5.4.2).
func TestDKIMHeaderPick(t *testing.T) {
	fields := []hfield{{"Received", " 1"}, {"From", " a"}, {"received", " 2"}, {"Subject", " s"}, {"RECEIVED", " 3"}}
	for _, large := range []bool{false, true} {
		p := newPicker(fields, "")
		if large {
			p = newPicker(fields, strings.Repeat(":", pickerSmallH))
		}
		var got []string
		for _, n := range []string{"received", "from", "Received", "x-missing", "received", "received", "subject"} {
			if i := p.pick(n); i >= 0 {
				got = append(got, fields[i].value)
			} else {
				got = append(got, "-")
			}
		}
		if g, want := strings.Join(got, ","), " 3, a, 2,-, 1,-, s"; g != want {
			t.Errorf("large %v: %q, want %q", large, g, want)
		}
	}
}

// TestDKIMRemoveB: the b= value is emptied with its surrounding whitespace;
// other tags, bh= among them, are kept as they are.
func TestDKIMRemoveB(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{" v=1; bh=abc; b=xyz", " v=1; bh=abc; b="},
		{" v=1; b=xy\r\n\tz; d=x", " v=1; b=; d=x"},
		{" b = xyz ; d=x", " b =; d=x"},
		{" v=1; bh=abc", " v=1; bh=abc"},
		{"b=", "b="},
	} {
		before, after := removeBValue(tc.in)
		if got := before + after; got != tc.want {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestDKIMSignatureChecks: the faults of a signature field that make it
// permerror before any key is fetched.
func TestDKIMSignatureChecks(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	good := "v=1; a=rsa-sha256; d=example.com; s=sel; h=From:To; bh=AAAA; b=AAAA"
	if s := parseSignature(good, now); s.err != nil || !s.needsKey || s.keyName != "sel._domainkey.example.com" {
		t.Fatalf("good: %+v", s)
	}
	for _, tc := range []struct{ value, reason string }{
		{"v=2; a=rsa-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "version"},
		{"a=rsa-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "version"},
		{"v=1; a=rsa-sha256; d=example.com; s=sel; h=From; bh=AAAA", "required tag b="},
		{"v=1; a=rsa-sha256; d=example.com; h=From; bh=AAAA; b=AAAA", "required tag s="},
		{"v=1; a=rsa-sha256; d=example.com; s=sel; h=To; bh=AAAA; b=AAAA", "From field not signed"},
		{"v=1; a=rsa-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA; i=@other.com", "domain mismatch"},
		{"v=1; a=rsa-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA; i=@badexample.com", "domain mismatch"},
		{"v=1; a=rsa-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA; i=example.com", "domain mismatch"},
		{"v=1; a=rsa-sha1; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "too weak"},
		{"v=1; a=rsa-md5; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "unsupported hash"},
		{"v=1; a=dsa-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "unsupported key algorithm"},
		{"v=1; a=rsasha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "malformed algorithm"},
		{"v=1; a=rsa-sha256; c=fancy; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "header canonicalization"},
		{"v=1; a=rsa-sha256; c=simple/; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "body canonicalization"},
		{"v=1; a=rsa-sha256; q=http; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "query method"},
		{"v=1; a=rsa-sha256; x=1700000000; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "expired"},
		{"v=1; a=rsa-sha256; t=1900000000; x=1899999999; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "before it was made"},
		{"v=1; a=rsa-sha256; t=-5; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "malformed time"},
		{"v=1; a=rsa-sha256; d=example.com; s=sel; h=From; bh=A!AA; b=AAAA", "malformed body hash"},
		{"v=1; a=rsa-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAA", "malformed signature"},
		{"v=1; v=1; a=rsa-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", "duplicate"},
		{"v=1; a=rsa-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA; 9x=1", "malformed signature tags"},
	} {
		s := parseSignature(tc.value, now)
		if s.err == nil || s.needsKey || !strings.Contains(s.err.Error(), tc.reason) {
			t.Errorf("%q: err %v, want one with %q", tc.value, s.err, tc.reason)
		}
	}
	for _, ok := range []string{
		"v=1; a=ED25519-SHA256; c=Relaxed/SIMPLE; d=Example.COM; s=sel; h=from; bh=AAAA; b=AAAA; i=a@Sub.EXAMPLE.com.",
		"v=1; a=rsa-sha256; c=relaxed; q=dns/txt; t=1700000000; x=1900000000; d=example.com; s=sel; h=x:FROM; bh=AAAA; b=AA\r\n AA",
		"v=1; a=rsa-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA; l=5; z=a|b; foo=bar",
	} {
		if s := parseSignature(ok, now); s.err != nil {
			t.Errorf("%q: %v", ok, s.err)
		}
	}
}

// TestDKIMKeyRecords: RFC 6376 §3.6.1 key records that cannot be used.
func TestDKIMKeyRecords(t *testing.T) {
	k := keysOnce()
	rsaRec := keyRecord(t, k.rsa)
	edRec := keyRecord(t, k.ed)
	p := rsaRec[strings.Index(rsaRec, "p="):]
	for _, tc := range []struct{ rec, reason string }{
		{"v=DKIM2; " + p, "version"},
		{"k=rsa; v=DKIM1; " + p, "first tag"},
		{"v=DKIM1; k=rsa", "missing public key"},
		{"v=DKIM1; k=rsa; p=", "revoked"},
		{"v=DKIM1; k=rsa; p=!!", "syntax"},
		{"v=DKIM1; k=dsa; " + p, "unsupported key algorithm"},
		{"v=DKIM1; k=ed25519; p=AAAA", "Ed25519 public key size"},
		{"v=DKIM1; k=ed25519; " + p, "Ed25519 public key size"},
		{"v=DKIM1; p=1; p=2", "duplicate"},
	} {
		if key := parseKey(tc.rec); key.err == nil || !strings.Contains(key.err.Error(), tc.reason) {
			t.Errorf("%q: %v, want an error with %q", truncate(tc.rec, 40), key.err, tc.reason)
		}
	}
	sig := parseSignature("v=1; a=rsa-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA", time.Now())
	for _, tc := range []struct{ rec, reason string }{
		{rsaRec, ""},
		{rsaRec + "; h=sha1:sha256", ""},
		{rsaRec + "; h=sha1", "inappropriate hash"},
		{rsaRec + "; s=email", ""},
		{rsaRec + "; s=*", ""},
		{rsaRec + "; s=other", "inappropriate service"},
		{edRec, "inappropriate key algorithm"},
	} {
		key := parseKey(tc.rec)
		if key.err != nil {
			t.Fatalf("%q: %v", truncate(tc.rec, 40), key.err)
		}
		err := key.fits(&sig)
		if (err == nil) != (tc.reason == "") || err != nil && !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%q: %v, want %q", tc.rec[len(tc.rec)-20:], err, tc.reason)
		}
	}
	if key := parseKey(rsaRec + "; t=y:s"); key.err != nil || !key.testing || !key.strict || key.bits != 2048 {
		t.Errorf("flags: %+v", key)
	}
}

// TestDKIMKeyCache: parsed keys are shared by record text, the cache stays
// within its bound, and records too long to keep are parsed each time.
func TestDKIMKeyCache(t *testing.T) {
	k := keysOnce()
	c := newTextMemo[*dkimKey](3, maxCachedKeyLen)
	rec := keyRecord(t, k.ed)
	if a, b := c.get(rec, parseKey), c.get(rec, parseKey); a != b || a.err != nil {
		t.Errorf("same record: %p %p %v", a, b, a.err)
	}
	for i := range 10 {
		c.get(rec+strings.Repeat(";", i+1), parseKey)
	}
	if len(c.m) > 3 {
		t.Errorf("%d entries, bound 3", len(c.m))
	}
	long := rec + "; n=" + strings.Repeat("x", maxCachedKeyLen)
	if a, b := c.get(long, parseKey), c.get(long, parseKey); a == b || a.err != nil || a.algo != "ed25519" {
		t.Errorf("long record: cached (%p %p) or wrong: %+v", a, b, a)
	}
}

func TestStripFWS(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "abc": "abc", " a b ": "ab", "a\r\n\tb": "ab", "\r\n ": "", "ab \t": "ab", " \tab": "ab", "a  b\tc\r\n d": "abcd",
	} {
		if got := stripFWS(in); got != want {
			t.Errorf("stripFWS(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestIndexTwoSP compares indexTwoSP with bytes.Index at every length and
// place, around the 64-octet windows.
func TestIndexTwoSP(t *testing.T) {
	base := []byte(strings.Repeat("ab cd efg ", 30))
	for n := 0; n <= len(base); n++ {
		for at := -1; at < n-1; at++ {
			p := append([]byte(nil), base[:n]...)
			if at >= 0 {
				p[at], p[at+1] = ' ', ' '
			}
			if got, want := indexTwoSP(p), bytes.Index(p, twoSP); got != want {
				t.Fatalf("len %d, pair at %d: %d, want %d", n, at, got, want)
			}
		}
	}
}
