package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/authres"
)

// FuzzARCTags: the tag-list reader of ARC-Seal and ARC-Message-Signature
// never panics; what it accepts has no empty tag-spec before its last ';',
// an instance it reads is within 1-50, and the seal and signature checks
// built on it never panic and give a usable key name when they accept.
func FuzzARCTags(f *testing.F) {
	for _, s := range []string{
		" i=1; a=rsa-sha256; cv=none; d=example.org; s=dummy; t=12345;\r\n\tb=AAAA",
		" i=2; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s; h=from:to;\r\n bh=KWSe46TZKCcDbH4klJPo+tjk5LWJnVRlP5pvjXFZYLQ=; b=QsRz",
		"i=01; cv=pass", "i=0", "i=51", "i=; a=", "i=1;; t=1", ";i=1", "i = 7 ; I=8", "h=arc-seal; i=1", "i=1;l=5;x=1",
	} {
		f.Add(s)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, value string) {
		tags, err := parseARCTags(value)
		if err != nil {
			return
		}
		if emptyTagSpec(value) {
			t.Fatalf("accepted an empty tag-spec: %q", value)
		}
		if n, err := tags.instance(); err == nil && (n < 1 || n > MaxARCInstance) {
			t.Fatalf("instance %d accepted from %q", n, value)
		}
		if si := parseSeal(&tags); si.err == nil {
			if !queryableName(si.keyName) || len(si.sig) == 0 || (si.keyAlgo != "rsa" && si.keyAlgo != "ed25519") {
				t.Fatalf("seal accepted with key %q, %d-octet b=, %q: %q", si.keyName, len(si.sig), si.keyAlgo, value)
			}
		}
		if s := parseAMS(&tags, 0, now); s.err == nil {
			if !queryableName(s.keyName) || len(s.sig) == 0 || len(s.bodyHash) == 0 {
				t.Fatalf("AMS accepted with key %q: %q", s.keyName, value)
			}
		}
	})
}

// FuzzAAR: the ARC-Authentication-Results reader (the instance, then the
// RFC 8601 payload) never panics; an instance it reads is within 1-50 and
// is followed by ';', and the payload is the rest of the value.
func FuzzAAR(f *testing.F) {
	for _, s := range []string{
		" i=1; lists.example.org;\r\n spf=pass smtp.mfrom=jqd@d1.example;\r\n dkim=pass (1024-bit key) header.i=@d1.example;\r\n dmarc=pass",
		"i=50;mx; none", " i = 2 ; \"quoted id\" 1; arc=pass header.oldest-pass=0", "i=1 lists.example.org; none",
		"I=1; x; none", "i=0; x; none", "i=1;", "i=", "lists.example.org; i=1; none", "i=1; (comment; none",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		n, payload, err := parseAARInstance(value)
		if err != nil {
			return
		}
		if n < 1 || n > MaxARCInstance {
			t.Fatalf("instance %d from %q", n, value)
		}
		if !strings.HasSuffix(value, payload) || !strings.HasSuffix(strings.TrimRight(value[:len(value)-len(payload)], " \t\r\n"), ";") {
			t.Fatalf("payload %q is not what follows ';' in %q", payload, value)
		}
		id, _, err := authres.Parse(payload)
		if err == nil && id == "" {
			t.Fatalf("empty authserv-id accepted in %q", value)
		}
	})
}

// FuzzARCVerifier streams a message whose newest ARC set has arbitrary
// field values (seeded with a good chain) through the verifier: it never
// panics or errs, and its result is consistent: none only without ARC
// fields, a failure reason exactly when cv=fail, and for a pass one set and
// one sealer per instance and an oldest-pass within the chain.
func FuzzARCVerifier(f *testing.F) {
	key := fuzzKey()
	s1 := testSealer{domain: "a.example", selector: "f", key: key}
	s2 := testSealer{domain: "b.example", selector: "f", key: key}
	res := mapTXT{"f._domainkey.a.example": keyRecord(f, key), "f._domainkey.b.example": keyRecord(f, key)}
	good := s2.seal(f, s1.seal(f, testMessage, sealOpts{}), sealOpts{})
	if r := verifyARC(f, res, ARCConfig{}, good, 64); r.CV != ChainPass {
		f.Fatalf("the seed chain does not pass: %+v", r)
	}
	fields, body := splitRaw(good)
	var top [3]string // the newest set: seal, AMS, AAR
	for i := range top {
		top[i] = fields[i].value
	}
	rest := fields[3:]
	f.Add(top[0], top[1], top[2], []byte(body))
	f.Add(top[0], top[1], " i=2; b.example; arc=pass", []byte(body))
	f.Add(strings.Replace(top[0], "cv=pass", "cv=fail", 1), top[1], top[2], []byte(body))
	f.Add(" i=3; cv=pass", top[1], top[2], []byte("x"))
	f.Add("", "", "", []byte{})
	f.Fuzz(func(t *testing.T, as, ams, aar string, body []byte) {
		v := NewARCVerifier(res, ARCConfig{})
		v.Header(FieldARCSeal, as)
		v.Header(FieldARCMessageSignature, ams)
		v.Header(FieldARCAuthenticationResults, aar)
		for _, f := range rest {
			v.Header(f.name, f.value)
		}
		ctx := context.Background()
		if err := v.EndOfHeaders(ctx); err != nil {
			t.Fatal(err)
		}
		for p := body; len(p) > 0; {
			n := min(len(p), 13)
			v.Write(p[:n])
			p = p[n:]
		}
		r, err := v.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch r.CV {
		case ChainNone:
			t.Fatalf("none with ARC fields: %+v", r)
		case ChainFail:
			if r.Failure == ARCFailNone {
				t.Fatalf("fail without a reason: %+v", r)
			}
		case ChainPass:
			if r.Failure != ARCFailNone || len(r.Sets) == 0 || len(r.Sealers) != len(r.Sets) ||
				r.OldestPass < 0 || r.OldestPass > len(r.Sets) {
				t.Fatalf("inconsistent pass: %+v", r)
			}
			for i, s := range r.Sets {
				if s.Instance != i+1 || s.SealDomain != r.Sealers[i] {
					t.Fatalf("set %d: %+v", i+1, s)
				}
			}
		default:
			t.Fatalf("cv %q", r.CV)
		}
	})
}

// FuzzARCStream seals a message with an arbitrary body (CRLF text) with the
// test sealer, whose canonicalization works on whole strings, and streams
// it through the verifier in chunks of an arbitrary size: it must pass.
func FuzzARCStream(f *testing.F) {
	for _, s := range []string{"", "a", "\r\n", "a\r\n\r\n\r\n", " \r\n \r\n", "a \t b  \r\n\tc\r\n", "x"} {
		f.Add([]byte(s), uint16(1), false)
		f.Add([]byte(s), uint16(3), true)
	}
	key := fuzzKey()
	s := testSealer{domain: "a.example", selector: "f", key: key}
	res := mapTXT{"f._domainkey.a.example": keyRecord(f, key)}
	head := strings.SplitAfter(testMessage, "\r\n\r\n")[0]
	f.Fuzz(func(t *testing.T, body []byte, chunk uint16, relaxed bool) {
		b := string(body)
		if strings.Count(b, "\r") != strings.Count(b, "\n") || strings.Count(b, "\r\n") != strings.Count(b, "\n") {
			return // bare CR or LF: the streaming hasher reads them as go-msgauth does, the test sealer does not
		}
		bc := "simple"
		if relaxed {
			bc = "relaxed"
		}
		msg := s.seal(t, head+b, sealOpts{bodyC: bc})
		if r := verifyARC(t, res, ARCConfig{}, msg, max(1, int(chunk))); r.CV != ChainPass {
			t.Fatalf("body %q (%s, chunk %d): %+v", b, bc, chunk, r)
		}
	})
}
