package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
)

// TestEvaluateARC: evaluate traces the ARC chain of a message sealed by a
// list, says whether the trusted sealers' assessment is read, and shows the
// override in the verdict. testdata/arc-list.eml was sealed by
// internal/milter's test sealer (arc_test.go, arcSeal; Ed25519 signatures
// are deterministic) with the key of seed 7 published below.
func TestEvaluateARC(t *testing.T) {
	t.Parallel()
	srv := dnstest.New(t, `$TTL 300
reject.example. IN TXT "v=spf1 -all"
_dmarc.reject.example. IN TXT "v=DMARC1; p=reject"
arc._domainkey.lists.test.example. IN TXT "v=DKIM1; k=ed25519; p=6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw="
`)
	cases := []struct {
		name   string
		config string
		want   []string
	}{
		{"untrusted", "", []string{
			"arc=pass (i=1 d=lists.test.example) header.oldest-pass=0",
			"smtp.remote-ip=198.51.100.1",
			"reason=mailing_list", // the list's List-Id, under reject-unless-indirect
			"disposition: action=quarantine",
			"  arc: cv=pass (chain of 1 sets verified)",
			"    i=1 sealer d=lists.test.example s=arc a=ed25519-sha256 cv=none; AMS d=lists.test.example s=arc",
			"      assessment by lists.test.example: dkim=pass header.d=reject.example; dmarc=pass header.from=reject.example",
		}},
		{"trusted", "[actions]\nindirect_flow = \"deliver\"\n[dmarc]\ntrusted_arc_sealers = [\"lists.test.example\"]\n", []string{
			"dmarc=fail (p=reject dis=none) reason=trusted_forwarder",
			"disposition: action=accept",
			"reason: trusted-arc-sealer: trusted ARC sealer lists.test.example (i=1) saw dmarc=pass header.from=reject.example; arc=pass as[1].d=lists.test.example as[1].s=arc",
			"    trusted sealers: the assessment of i=1 (lists.test.example) is read",
		}},
		{"another sealer trusted", "[actions]\nreject_policy = \"reject\"\n[dmarc]\ntrusted_arc_sealers = [\"other.example\"]\n", []string{
			"disposition: action=reject",
			"    trusted sealers: no assessment is read: the newest sealer, lists.test.example, is not trusted",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"evaluate", "--nameserver", srv.Addr, "--authserv-id", "mx.example.org",
				"--ip", "198.51.100.1", "--helo", "h.example", "--mail-from", "dev-bounces@lists.test.example"}
			if c.config != "" {
				args = append(args, "--config", writeTemp(t, c.config))
			}
			var out, errb bytes.Buffer
			if code := run(append(args, "testdata/arc-list.eml"), &out, &errb); code != exitOK {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			o := out.String()
			flat := strings.Join(strings.Fields(o), " ")
			for _, w := range c.want {
				if !strings.Contains(o, w) && !strings.Contains(flat, w) {
					t.Errorf("output lacks %q:\n%s", w, o)
				}
			}
		})
	}
}

// writeTemp writes a configuration file for one test.
func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dmarc-milter.toml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
