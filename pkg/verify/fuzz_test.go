package verify

import (
	"context"
	"crypto/ed25519"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// mapTXT is an in-memory TXTResolver for the fuzz targets (no sockets:
// they must be fast). A missing name is NXDOMAIN.
type mapTXT map[string]string

func (m mapTXT) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := m[strings.ToLower(strings.TrimSuffix(name, "."))]; ok {
		return []string{v}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func FuzzSPFRecordSyntax(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all", "v=spf1 a:foo:bar/baz.example.com", "v=spf1 include:_spf.%{d2} -all",
		"v=spf1 ip6:2001:db8::/32 a//64 mx/24", "v=spf1 exp=%{c}.x", "v=spf1 %{", "v=spf1 redirect=",
		"v=spf1 ip4:1.2.3.4/32 moo=%{l1r+-}", "v=spf1 a:example.123", "v=spf1 \x80all",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rec string) {
		if checkSPFRecord(rec) != nil {
			return
		}
		for i := 0; i < len(rec); i++ {
			if rec[i] < 0x20 || rec[i] > 0x7e {
				t.Fatalf("accepted %q with octet %#x", rec, rec[i])
			}
		}
		if err := checkSPFRecord(rec + " -all"); err != nil {
			t.Fatalf("accepted %q but not with -all appended: %v", rec, err)
		}
	})
}

func FuzzParseTagList(f *testing.F) {
	for _, s := range []string{
		"v=1; a=rsa-sha256; d=example.com; s=sel;\r\n\th=from:to; bh=abc=; b=de\r\n f=",
		"v=DKIM1; k=ed25519; p=", "a=;", ";;", "x", "a=1; a=2", " v = 1 ; ", "1a=b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags, err := parseTagList(s)
		if err != nil {
			return
		}
		keys := make([]string, 0, len(tags))
		for k, v := range tags {
			if !isTagName(k) || v != strings.Trim(v, " \t\r\n") {
				t.Fatalf("%q: bad tag %q=%q", s, k, v)
			}
			if strings.Contains(v, ";") {
				t.Fatalf("%q: value with ';'", s)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k + "=" + tags[k] + ";")
		}
		again, err := parseTagList(b.String())
		if err != nil || len(again) != len(tags) {
			t.Fatalf("%q: round trip %q: %v", s, b.String(), err)
		}
		for k, v := range tags {
			if again[k] != v {
				t.Fatalf("%q: round trip changed %s", s, k)
			}
		}
	})
}

func FuzzRebuildField(f *testing.F) {
	f.Add("Subject", " a\n b")
	f.Add("From", "x\r\n\ty")
	f.Add("X", "a\nb")
	f.Fuzz(func(t *testing.T, name, value string) {
		out, ok := rebuildField(name, value)
		if !ok {
			return
		}
		if !strings.HasSuffix(out, "\r\n") || !strings.HasPrefix(out, name+":") {
			t.Fatalf("%q", out)
		}
		body := strings.TrimSuffix(out, "\r\n")
		for i := 0; i < len(body); i++ {
			switch body[i] {
			case '\r':
				if i+2 >= len(body) || body[i+1] != '\n' || (body[i+2] != ' ' && body[i+2] != '\t') {
					t.Fatalf("%q: CR not a fold", out)
				}
			case '\n':
				if body[i-1] != '\r' {
					t.Fatalf("%q: bare LF", out)
				}
			}
		}
	})
}

var fuzzKey = sync.OnceValue(func() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
})

// FuzzDKIMStream signs a message with an arbitrary body, then streams it
// through the verifier in chunks of an arbitrary size: it must pass. This
// checks the body filter (held blank lines, lone CRs, bare LFs) against
// go-msgauth's own canonicalization, for both canonicalizations.
func FuzzDKIMStream(f *testing.F) {
	for _, s := range []string{"", "a", "\r\n", "a\r\n\r\n\r\n", "a\r\r\n", "a\n\n", " \r\n \r\n", "x\r", "\r\r\r", "a \t\r\n\r\nb"} {
		f.Add([]byte(s), uint16(1), false)
		f.Add([]byte(s), uint16(3), true)
	}
	key := fuzzKey()
	res := mapTXT{"f._domainkey.example.com": keyRecord(f, key)}
	f.Fuzz(func(t *testing.T, body []byte, chunk uint16, relaxed bool) {
		if chunk == 0 {
			chunk = 1
		}
		c := dkim.CanonicalizationSimple
		if relaxed {
			c = dkim.CanonicalizationRelaxed
		}
		msg := sign(t, "From: a@example.com\r\nSubject: fuzz\r\n\r\n"+string(body), dkim.SignOptions{
			Domain: "example.com", Selector: "f", Signer: key,
			HeaderCanonicalization: c, BodyCanonicalization: c,
		})
		got := verifyMessage(t, res, DKIMConfig{}, msg, int(chunk))
		if len(got) != 1 || got[0].Result != ResultPass {
			t.Fatalf("body %q chunk %d %s: %+v", body, chunk, c, got)
		}
	})
}

// FuzzDKIMVerifier feeds arbitrary header fields and bodies: no panic, one
// result per DKIM-Signature field up to the maximum, valid result values.
func FuzzDKIMVerifier(f *testing.F) {
	f.Add("DKIM-Signature", " v=1; a=rsa-sha256; d=example.com; s=s; h=from; bh=; b=", []byte("body\r\n"))
	f.Add("DKIM-Signature", " l=1; v=1; a=ed25519-sha256; d=Example.COM.; s=f; h=from; bh=x; b=y", []byte("\r\n\r\n"))
	f.Add("DKIM-Signature", "v=1;;", []byte{})
	res := mapTXT{"f._domainkey.example.com": keyRecord(f, fuzzKey())}
	f.Fuzz(func(t *testing.T, name, value string, body []byte) {
		v := NewDKIMVerifier(res, DKIMConfig{MaxSignatures: 2})
		v.Header("From", " a@example.com")
		for range 3 {
			v.Header(name, value)
		}
		ctx := context.Background()
		v.EndOfHeaders(ctx)
		v.Write(body)
		got, err := v.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := min(v.Signatures(), 2)
		if len(got) != want {
			t.Fatalf("%d results, want %d", len(got), want)
		}
		for _, r := range got {
			switch r.Result {
			case ResultPass, ResultFail, ResultNeutral, ResultPolicy, ResultTempError, ResultPermError:
			default:
				t.Fatalf("result %q", r.Result)
			}
			if r.Domain != strings.ToLower(r.Domain) {
				t.Fatalf("domain %q not lowercased", r.Domain)
			}
		}
	})
}

// FuzzDKIMSignature parses arbitrary DKIM-Signature values: no panic; a
// signature without fault has everything its verification needs; emptying
// b= keeps every other tag and leaves b= empty.
func FuzzDKIMSignature(f *testing.F) {
	for _, s := range []string{
		" v=1; a=rsa-sha256; c=relaxed/simple; d=example.com; s=sel;\r\n\th=from:to; bh=AAAA; b=AA\r\n AA",
		"v=1; a=ed25519-sha256; d=x; s=y; h=From; bh=; b=; i=@x; t=1; x=2; q=dns/txt; l=0",
		"b = x ; bh=b=y; v=1", "v=1; a=rsa-sha1", ";;b=;", "x=99999999999999999999", "h=from:", "b=;b=",
	} {
		f.Add(s)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, value string) {
		s := parseSignature(value, now)
		if s.err == nil {
			if !s.needsKey || s.keyName == "" || s.headerCan >= numCanons || s.bodyCan >= numCanons ||
				(s.keyAlgo != "rsa" && s.keyAlgo != "ed25519") {
				t.Fatalf("%q: accepted but incomplete: %+v", value, s)
			}
		} else if s.needsKey || s.hashesBody {
			t.Fatalf("%q: error %v but verified", value, s.err)
		}
		before, after := removeBValue(value)
		tags, err := parseTagList(value)
		if err != nil {
			return
		}
		emptied, err := parseTagList(before + after)
		if err != nil || len(emptied) != len(tags) {
			t.Fatalf("%q: b= emptied: %q: %v", value, before+after, err)
		}
		for k, v := range tags {
			if k == "b" {
				v = ""
			}
			if emptied[k] != v {
				t.Fatalf("%q: b= emptied: %s=%q, want %q", value, k, emptied[k], v)
			}
		}
	})
}

// FuzzDKIMKeyRecord parses arbitrary key records: no panic; a usable key is
// an RSA key of at least 1024 bits or an Ed25519 key; the cache gives the
// same answer as a parse.
func FuzzDKIMKeyRecord(f *testing.F) {
	k := keysOnce()
	for _, s := range []string{
		keyRecord(f, k.rsa), keyRecord(f, k.ed), keyRecord(f, k.ed) + "; t=y:s; h=sha256; s=email",
		"v=DKIM1; p=", "k=ed25519; v=DKIM1; p=AAAA", "p=MA==", "v=DKIM1; k=rsa; p=MIIB", "p;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rec string) {
		key := parseKey(rec)
		if key.err != nil {
			return
		}
		switch key.algo {
		case "rsa":
			if key.rsa == nil || key.bits < 1024 || key.bits != key.rsa.N.BitLen() {
				t.Fatalf("%q: %+v", rec, key)
			}
		case "ed25519":
			if len(key.ed) != ed25519.PublicKeySize || key.bits != 256 {
				t.Fatalf("%q: %+v", rec, key)
			}
		default:
			t.Fatalf("%q: algorithm %q", rec, key.algo)
		}
		if c := dkimKeys.get(rec, parseKey); c.err != nil || c.algo != key.algo || c.bits != key.bits {
			t.Fatalf("%q: cached %+v, parsed %+v", rec, c, key)
		}
	})
}
