package verify

import (
	"crypto"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// The differential tests check the verifier against go-msgauth, which it
// replaced and which stays as the test oracle: messages are signed at test
// time with go-msgauth's signer, then mutated, and both verifiers must give
// each signature the same class (pass, fail, permerror).

// oracleClass is go-msgauth's verdict on each signature of msg, as our
// Result values.
func oracleClass(t testing.TB, msg string, keys mapTXT) []Result {
	t.Helper()
	verifs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return keys.LookupTXT(t.Context(), name) },
	})
	if err != nil {
		t.Fatalf("go-msgauth: %v\n%q", err, msg)
	}
	var out []Result
	for _, v := range verifs {
		switch {
		case v.Err == nil:
			out = append(out, ResultPass)
		case dkim.IsPermFail(v.Err):
			out = append(out, ResultPermError)
		case dkim.IsTempFail(v.Err):
			out = append(out, ResultTempError)
		default:
			out = append(out, ResultFail)
		}
	}
	return out
}

// diffKeys are the published keys of the differential tests.
func diffKeys(t testing.TB) mapTXT {
	k := keysOnce()
	return mapTXT{
		"rsa._domainkey.example.com": keyRecord(t, k.rsa),
		"ed._domainkey.example.com":  keyRecord(t, k.ed),
	}
}

// compareWithOracle verifies msg with both, ours in chunks of chunk octets.
func compareWithOracle(t testing.TB, name, msg string, keys mapTXT, chunk int) {
	t.Helper()
	want := oracleClass(t, msg, keys)
	got := verifyMessage(t, keys, DKIMConfig{MaxSignatures: 50}, msg, chunk)
	if len(got) != len(want) {
		t.Fatalf("%s: %d results, go-msgauth %d", name, len(got), len(want))
	}
	for i, g := range got {
		if g.Result != want[i] {
			t.Errorf("%s: signature %d (%s, chunk %d): %s (%s), go-msgauth %s\n%q",
				name, i, g.Algorithm, chunk, g.Result, g.Reason, want[i], msg)
		}
	}
}

// Bodies that exercise the canonicalizations.
var diffBodies = []string{
	"",
	"\r\n",
	"Hello\r\n",
	"no final line end",
	"trailing blank lines\r\n\r\n\r\n\r\n",
	"whitespace  runs\t\tand \t mixes \r\n",
	"trailing WSP   \r\n\t\r\n",
	"lines of only WSP\r\n   \r\n\t\t\r\n \r\nend\r\n",
	"   \r\n \t \r\n",
	"bare\nLF\nlines\n\n\n",
	"mixed\r\nline\nends\r\n\n",
	"bare\rCR\r\n",
	"ends in CR\r",
	"CR CR LF\r\r\n\r\n",
	"WSP before bare CR \r and after\r \r\n",
	strings.Repeat("long line ", 2000) + "\r\n",
	strings.Repeat("x", 70_000) + "\r\n" + strings.Repeat("\r\n", 5000) + "after a run\r\n" + strings.Repeat(" \r\n", 3000),
	"\r\n\r\nleading blank lines\r\n",
	" leading space\r\n\tleading tab\r\n",
}

// diffMessage builds a message with the given body and some header fields
// of each kind: folded, with WSP runs, repeated names.
func diffMessage(rng *rand.Rand, body string) string {
	var b strings.Builder
	b.WriteString("Received: from a.example by b.example; Sat, 28 Nov 2026 12:00:00 +0000\r\n")
	b.WriteString("From: Alice <alice@example.com>\r\n")
	b.WriteString("To:  Bob  <bob@example.net> ,\r\n\tCarol <carol@example.net>\r\n")
	if rng.IntN(2) == 0 {
		b.WriteString("Subject:no space after the colon\t\r\n")
	} else {
		b.WriteString("Subject: folded\r\n  subject  with\tWSP \r\n")
	}
	b.WriteString("Received: from c.example by a.example; Sat, 28 Nov 2026 11:59:00 +0000\r\n")
	b.WriteString("Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n")
	b.WriteString("X-Trailing: value with trailing WSP \t\r\n")
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

// headerKeySets are h= lists: the signer's default, repeated names (more
// instances than the message has, which signs their absence), names missing
// from the message, different case.
var headerKeySets = [][]string{
	nil,
	{"From", "To", "Subject"},
	{"from", "received", "received", "received", "subject"},
	{"From", "X-Missing", "Date", "x-missing"},
	{"FROM", "x-trailing", "To", "Message-ID"},
}

// mutations change a signed message. Some break some signatures, some none.
var mutations = []struct {
	name string
	f    func(string) string
}{
	{"none", func(m string) string { return m }},
	{"body byte", func(m string) string {
		head, body, _ := strings.Cut(m, "\r\n\r\n")
		if i := strings.IndexAny(body, "abcdefghijklmnopqrstuvwxyz"); i >= 0 {
			body = body[:i] + "Q" + body[i+1:]
		} else {
			body += "Q"
		}
		return head + "\r\n\r\n" + body
	}},
	{"header WSP", func(m string) string { return strings.Replace(m, "Date: Sat,", "Date:  Sat,\t", 1) }},
	{"trailing lines", func(m string) string { return m + "\r\n\r\n\r\n" }},
	{"trailing WSP lines", func(m string) string { return m + " \r\n\t\r\n" }},
	{"body WSP", func(m string) string {
		head, body, _ := strings.Cut(m, "\r\n\r\n")
		return head + "\r\n\r\n" + strings.ReplaceAll(body, " ", "  ")
	}},
	{"body LF", func(m string) string {
		head, body, _ := strings.Cut(m, "\r\n\r\n")
		return head + "\r\n\r\n" + strings.ReplaceAll(body, "\r\n", "\n")
	}},
	{"reordered fields", func(m string) string {
		i := strings.Index(m, "\r\nDate: ")
		j := strings.Index(m, "\r\nX-Trailing: ")
		if i < 0 || j < i {
			return m
		}
		date := m[i+2 : j+2]
		rest := m[j+2:]
		k := strings.Index(rest, "\r\n") + 2
		return m[:i+2] + rest[:k] + date + rest[k:]
	}},
	{"name case", func(m string) string { return strings.Replace(m, "\r\nSubject:", "\r\nSUBJECT:", 1) }},
	{"added Received on top", func(m string) string { return "Received: from evil.example\r\n" + m }},
	{"added Subject at the bottom", func(m string) string {
		return strings.Replace(m, "\r\n\r\n", "\r\nSubject: injected\r\n\r\n", 1)
	}},
}

// TestDKIMDifferential: many messages, signed with RSA and Ed25519 under
// both canonicalizations, each mutated, verified by go-msgauth and by us.
func TestDKIMDifferential(t *testing.T) {
	k := keysOnce()
	keys := diffKeys(t)
	rng := rand.New(rand.NewPCG(6376, 8463))
	cans := []dkim.Canonicalization{dkim.CanonicalizationSimple, dkim.CanonicalizationRelaxed}
	cases, passes, fails := 0, 0, 0
	for bi, body := range diffBodies {
		for round := range 4 {
			msg := diffMessage(rng, body)
			// One or two signatures, of random kinds.
			for range 1 + rng.IntN(2) {
				o := dkim.SignOptions{Domain: "example.com", Selector: "ed", Signer: crypto.Signer(k.ed),
					HeaderCanonicalization: cans[rng.IntN(2)], BodyCanonicalization: cans[rng.IntN(2)],
					HeaderKeys: headerKeySets[rng.IntN(len(headerKeySets))]}
				if rng.IntN(3) == 0 {
					o.Selector, o.Signer = "rsa", k.rsa
				}
				msg = sign(t, msg, o)
			}
			for _, m := range mutations {
				mutated := m.f(msg)
				name := fmt.Sprintf("body %d round %d %s", bi, round, m.name)
				compareWithOracle(t, name, mutated, keys, []int{1, 3, 4096, 65535}[rng.IntN(4)])
				cases++
				for _, r := range oracleClass(t, mutated, keys) {
					switch r {
					case ResultPass:
						passes++
					case ResultFail:
						fails++
					}
				}
			}
		}
	}
	t.Logf("%d messages, %d signatures pass and %d fail in both", cases, passes, fails)
	if passes == 0 || fails == 0 {
		t.Errorf("the cases do not cover both outcomes: %d pass, %d fail", passes, fails)
	}
}

// FuzzDKIMDifferential signs a message with a fuzzed Subject and body, then
// mutates it in a fuzzed way, and compares our verdict with go-msgauth's.
func FuzzDKIMDifferential(f *testing.F) {
	for i, b := range diffBodies[:15] {
		f.Add("a subject", []byte(b), uint8(i), uint8(i*7), uint16(i*13+1))
	}
	f.Add(" folded\nsubject  ", []byte("a\r\n\r\n"), uint8(3), uint8(2), uint16(1))
	keys := mapTXT{"f._domainkey.example.com": keyRecord(f, fuzzKey())}
	f.Fuzz(func(t *testing.T, subject string, body []byte, flags, mutation uint8, chunk uint16) {
		// A valid field value: line breaks only as folds.
		subject = strings.ReplaceAll(strings.ReplaceAll(subject, "\r", ""), "\n", "\r\n\t")
		if chunk == 0 {
			chunk = 1
		}
		cans := []dkim.Canonicalization{dkim.CanonicalizationSimple, dkim.CanonicalizationRelaxed}
		msg := "From: a@example.com\r\nSubject:" + subject + "\r\nTo: b@example.net\r\n\r\n" + string(body)
		msg = sign(t, msg, dkim.SignOptions{Domain: "example.com", Selector: "f", Signer: fuzzKey(),
			HeaderCanonicalization: cans[flags&1], BodyCanonicalization: cans[flags>>1&1],
			HeaderKeys: headerKeySets[int(flags>>2)%len(headerKeySets)]})
		m := mutations[int(mutation)%len(mutations)]
		compareWithOracle(t, m.name, m.f(msg), keys, int(chunk))
	})
}
