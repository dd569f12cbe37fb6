package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
)

func TestLookup(t *testing.T) {
	t.Parallel()
	srv := dnstest.New(t, `$TTL 300
example.org.         IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
example.org.         IN TXT "google-site-verification=x"
_dmarc.example.org.  IN TXT "v=DMARC1; p=reject; sp=quarantine; adkim=s; pct=50; fo=bogus"
two.example.         IN TXT "v=spf1 -all"
two.example.         IN TXT "v=spf1 +all"
`)
	cases := []struct {
		domain string
		code   int
		want   []string
	}{
		{"Mail.Example.ORG", exitOK, []string{
			"queried:             _dmarc.mail.example.org, _dmarc.example.org",
			"policy domain:       example.org",
			"applies:             sp (a subdomain)",
			"effective:           p=reject sp=quarantine np=quarantine adkim=s aspf=r pct=50 testing=false",
			"spf:                 none",
		}},
		{"example.org", exitOK, []string{
			"applies:             p (the domain's own record)",
			"spf:                 v=spf1 ip4:192.0.2.0/24 -all",
		}},
		{"two.example", exitOK, []string{"no DMARC policy", "spf:                 2 records: permerror"}},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := run([]string{"lookup", "--nameserver", srv.Addr, tc.domain}, &out, &errb)
		t.Logf("lookup %s:\n%s", tc.domain, out.String())
		if code != tc.code {
			t.Errorf("lookup %s: exit %d, want %d: %s", tc.domain, code, tc.code, errb.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("lookup %s: output lacks %q:\n%s", tc.domain, w, out.String())
			}
		}
	}
	srv.SetFault("_dmarc.down.example", dnstest.FaultServFail)
	var out, errb bytes.Buffer
	if code := run([]string{"lookup", "--nameserver", srv.Addr, "down.example"}, &out, &errb); code != exitError || !strings.Contains(out.String(), "temporary failure") {
		t.Errorf("SERVFAIL: exit %d, output:\n%s", code, out.String())
	}
	if code := run([]string{"lookup", "--nameserver", srv.Addr, "not a domain"}, &out, &errb); code != exitConfig {
		t.Errorf("bad domain: exit %d", code)
	}
}
