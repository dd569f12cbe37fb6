package verify

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"gopkg.in/yaml.v3"
)

// The Mail::DKIM verifier corpus (testdata/mail-dkim-corpus, see SOURCE.md
// there): 79 messages from the RFC 4871 era with Mail::DKIM's verdicts. Its
// key records (FAKE_DNS.dat) are served by dnstest and read through
// pkg/cache.
//
// Mail::DKIM's "invalid" is any result that says the signature could not be
// evaluated: permerror, neutral, policy or temperror here. Our expectation is
// Mail::DKIM's, then RFC 6376 and RFC 8301 rules that postdate many of these
// messages: a signature without v=1 (drafts), with rsa-sha1 (RFC 8301 §3.1:
// verifiers "MUST NOT consider signatures using RSA SHA-1 … valid") or with
// an RSA key under 1024 bits (RFC 8301 §3.2) cannot pass: "invalid". An
// rsa-sha1 signature is refused before its key is fetched, so the two whose
// key lookup fails (badkey_14 timeout, badkey_15 SERVFAIL) are "invalid" as
// for Mail::DKIM, not temperror: no retry could make them pass.
// https://datatracker.ietf.org/doc/html/rfc8301#section-3.1

type corpusEntry struct {
	File       string   `yaml:"file"`
	Expect     string   `yaml:"expect"`
	Comment    string   `yaml:"comment"`
	Skipped    bool     `yaml:"skipped_upstream"`
	Signatures []string `yaml:"signatures"`
	Note       string   `yaml:"note"`
}

// corpusOverrides are the files where our verdict differs from the
// expectation computed above, and why.
var corpusOverrides = map[string]struct{ want, why string }{}

const corpusDir = "testdata/mail-dkim-corpus"

func TestMailDKIMCorpus(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(corpusDir, "expected.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var entries []corpusEntry
	if err := yaml.Unmarshal(raw, &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 79 {
		t.Fatalf("%d entries, want 79", len(entries))
	}
	srv := dnstest.New(t, "")
	loadFakeDNS(t, srv)
	r := newCache(t, srv, 200*time.Millisecond)
	signed := 0
	tally := map[string]int{}
	for _, e := range entries {
		if len(e.Signatures) > 0 {
			signed++
		}
		t.Run(strings.TrimSuffix(e.File, ".txt"), func(t *testing.T) {
			msg, err := os.ReadFile(filepath.Join(corpusDir, "corpus", e.File))
			if err != nil {
				t.Fatal(err)
			}
			m := strings.ReplaceAll(strings.ReplaceAll(string(msg), "\r\n", "\n"), "\n", "\r\n")
			got := verdict(verifyMessage(t, r, DKIMConfig{}, m, 1000))
			want, why := corpusWant(e)
			if o, ok := corpusOverrides[e.File]; ok {
				want, why = o.want, o.why
			}
			tally[got]++
			if got != want {
				t.Errorf("verdict %s, want %s (%s; Mail::DKIM: %s %s)", got, want, why, e.Expect, e.Comment)
			}
		})
	}
	t.Logf("verdicts: %v", tally)
	if signed != 62 {
		t.Errorf("%d DKIM-signed files, want 62", signed)
	}
}

// verdict sums up a message like Mail::DKIM: pass if a signature passed,
// else fail if one failed, else the class of the first ("none" without
// signatures).
func verdict(rs []DKIMResult) string {
	if len(rs) == 0 {
		return "none"
	}
	for _, want := range []Result{ResultPass, ResultFail} {
		for _, r := range rs {
			if r.Result == want {
				return string(want)
			}
		}
	}
	if rs[0].Result == ResultTempError {
		return "temperror"
	}
	return "invalid"
}

// corpusWant is the expected verdict of an entry and the reason.
func corpusWant(e corpusEntry) (string, string) {
	if len(e.Signatures) == 0 {
		return "none", "DomainKeys only, no DKIM-Signature"
	}
	if e.Expect == "invalid" {
		return "invalid", "Mail::DKIM"
	}
	for _, s := range e.Signatures {
		ok := strings.Contains(s, "v=1 ") && !strings.Contains(s, "a=rsa-sha1")
		for _, short := range []string{"key=512", "key=768"} {
			ok = ok && !strings.Contains(s, short)
		}
		if ok {
			return e.Expect, "Mail::DKIM"
		}
	}
	return "invalid", "no signature is acceptable under RFC 6376/8301 (v=, rsa-sha1, key size)"
}

// loadFakeDNS serves FAKE_DNS.dat: "name value" lines; NXDOMAIN is an absent
// name, ~~Query timed out~~ a dropped query, ~~SERVFAIL~~ a SERVFAIL.
func loadFakeDNS(t *testing.T, srv *dnstest.Server) {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDir, "FAKE_DNS.dat"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		name, val, _ := strings.Cut(line, " ")
		val = strings.TrimSpace(val)
		switch val {
		case "NXDOMAIN":
		case "~~Query timed out~~":
			srv.SetFault(name, dnstest.FaultDrop)
		case "~~SERVFAIL~~":
			srv.SetFault(name, dnstest.FaultServFail)
		case `""`:
			addTXT(srv, name, "")
		default:
			addTXT(srv, name, escapeTXT(val))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}
