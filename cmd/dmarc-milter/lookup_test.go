package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
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
			"warn  spf       RFC 7208 §4.5",
			"summary:             mail.example.org: warn",
		}},
		{"example.org", exitOK, []string{
			"applies:             p (the domain's own record)",
			"spf:                 v=spf1 ip4:192.0.2.0/24 -all",
		}},
		// Two SPF records are a permerror (RFC 7208 §4.5): a failed check, exit 1.
		{"two.example", exitError, []string{"no DMARC policy", "spf:                 2 records: permerror",
			"fail  spf       RFC 7208 §4.5"}},
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

// healthZone holds what `lookup --json` must flag: an SPF tree of 11
// lookups through nested includes, three void includes, a subdomain without
// SPF, a 1024-bit and a testing DKIM key.
func healthZone(t *testing.T) string {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(der)
	return `$TTL 300
big.example.            IN TXT "v=spf1 include:a.big.example include:b.big.example mx -all"
big.example.            IN MX 10 mx.big.example.
mx.big.example.         IN A 192.0.2.25
a.big.example.          IN TXT "v=spf1 include:c.big.example a:h1.big.example -all"
c.big.example.          IN TXT "v=spf1 a:h1.big.example a:h2.big.example mx:big.example ~all"
b.big.example.          IN TXT "v=spf1 a:h1.big.example a:h2.big.example a:h3.big.example ~all"
h1.big.example.         IN A 192.0.2.1
h2.big.example.         IN A 192.0.2.2
h3.big.example.         IN A 192.0.2.3
_dmarc.big.example.     IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@big.example"
www.big.example.        IN A 192.0.2.80
s1024._domainkey.big.example. IN TXT "v=DKIM1; k=rsa; p=` + key + `"
test._domainkey.big.example.  IN TXT "v=DKIM1; t=y; p=` + key + `"
void.example.           IN TXT "v=spf1 include:nx1.void.example include:nx2.void.example include:nx3.void.example -all"
`
}

// lookupJSON is the part of the --json shape (docs/health.md, version 1)
// this test reads; unknown fields are ignored, as a consumer would.
type lookupJSON struct {
	Version int    `json:"version"`
	Domain  string `json:"domain"`
	Verdict string `json:"verdict"`
	SPF     struct {
		Verdict     string        `json:"verdict"`
		Lookups     int           `json:"lookups"`
		LookupLimit int           `json:"lookup_limit"`
		VoidLookups int           `json:"void_lookups"`
		Findings    []findingJSON `json:"findings"`
		Flatten     []struct {
			Term  string `json:"term"`
			Saves int    `json:"saves"`
		} `json:"flatten"`
		Tree struct {
			Domain   string `json:"domain"`
			Children []struct {
				Domain string `json:"domain"`
				Via    string `json:"via"`
			} `json:"children"`
		} `json:"tree"`
	} `json:"spf"`
	Subdomains []struct {
		Name     string        `json:"name"`
		Verdict  string        `json:"verdict"`
		Suggest  string        `json:"suggest"`
		DMARCTag string        `json:"dmarc_tag"`
		Findings []findingJSON `json:"findings"`
	} `json:"subdomains"`
	DKIM []struct {
		Selector string        `json:"selector"`
		Verdict  string        `json:"verdict"`
		Bits     int           `json:"bits"`
		Testing  bool          `json:"testing"`
		Findings []findingJSON `json:"findings"`
	} `json:"dkim"`
}

type findingJSON struct {
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Rule     string `json:"rule"`
}

func hasFinding(fs []findingJSON, code, sev, rule string) bool {
	for _, f := range fs {
		if f.Code == code && f.Severity == sev && f.Rule == rule {
			return true
		}
	}
	return false
}

func TestLookupJSON(t *testing.T) {
	t.Parallel()
	srv := dnstest.New(t, healthZone(t))
	var out, errb bytes.Buffer
	// Flags after the domain, as the synopsis writes them.
	code := run([]string{"lookup", "big.example", "--nameserver", srv.Addr, "--selector", "s1024", "--selector", "test",
		"--subdomain", "www", "--json"}, &out, &errb)
	if code != exitError {
		t.Errorf("exit %d, want %d (the SPF check fails): %s", code, exitError, errb.String())
	}
	var rep lookupJSON
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if rep.Version != 1 || rep.Domain != "big.example" || rep.Verdict != "fail" {
		t.Errorf("version %d domain %q verdict %q", rep.Version, rep.Domain, rep.Verdict)
	}
	s := rep.SPF
	if s.Lookups != 11 || s.LookupLimit != 10 || s.Verdict != "fail" || !hasFinding(s.Findings, "spf_lookup_limit", "fail", "RFC 7208 §4.6.4") {
		t.Errorf("spf: %d of %d lookups, verdict %s, findings %+v", s.Lookups, s.LookupLimit, s.Verdict, s.Findings)
	}
	if len(s.Flatten) != 1 || s.Flatten[0].Term != "include:a.big.example" || s.Flatten[0].Saves != 6 {
		t.Errorf("flatten: %+v", s.Flatten)
	}
	if len(s.Tree.Children) != 2 || s.Tree.Children[0].Domain != "a.big.example" || s.Tree.Children[0].Via != "include" {
		t.Errorf("tree: %+v", s.Tree)
	}
	if len(rep.Subdomains) != 1 {
		t.Fatalf("subdomains: %+v", rep.Subdomains)
	}
	sub := rep.Subdomains[0]
	if sub.Name != "www.big.example" || sub.Verdict != "warn" || sub.Suggest != "v=spf1 -all" || sub.DMARCTag != "sp" ||
		!hasFinding(sub.Findings, "subdomain_no_spf", "warn", "RFC 7208 §4.5") {
		t.Errorf("subdomain: %+v", sub)
	}
	if len(rep.DKIM) != 2 {
		t.Fatalf("dkim: %+v", rep.DKIM)
	}
	if k := rep.DKIM[0]; k.Selector != "s1024" || k.Bits != 1024 || k.Verdict != "warn" || !hasFinding(k.Findings, "dkim_rsa_weak", "warn", "RFC 8301 §3.2") {
		t.Errorf("s1024: %+v", k)
	}
	if k := rep.DKIM[1]; k.Selector != "test" || !k.Testing || !hasFinding(k.Findings, "dkim_testing", "warn", "RFC 6376 §3.6.1") {
		t.Errorf("test: %+v", k)
	}

	out.Reset()
	if code := run([]string{"lookup", "--json", "--nameserver", srv.Addr, "void.example"}, &out, &errb); code != exitError {
		t.Errorf("void.example: exit %d", code)
	}
	var v lookupJSON
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.SPF.VoidLookups != 3 || !hasFinding(v.SPF.Findings, "spf_void_limit", "fail", "RFC 7208 §4.6.4") ||
		!hasFinding(v.SPF.Findings, "spf_include_none", "fail", "RFC 7208 §5.2") {
		t.Errorf("void.example: %d void lookups, findings %+v", v.SPF.VoidLookups, v.SPF.Findings)
	}
}

// TestLookupText: the text form shows the verdict lines, the tree and the
// rules.
func TestLookupText(t *testing.T) {
	t.Parallel()
	srv := dnstest.New(t, healthZone(t))
	var out, errb bytes.Buffer
	code := run([]string{"lookup", "--nameserver", srv.Addr, "--selector", "s1024", "--subdomain", "www.big.example", "big.example"}, &out, &errb)
	if code != exitError {
		t.Errorf("exit %d", code)
	}
	for _, w := range []string{
		"spf                              fail   11 of 10 DNS lookups",
		"subdomain www.big.example        warn   no SPF record (suggest v=spf1 -all",
		"dkim s1024                       warn   rsa 1024 bits",
		"  big.example [3/11]: v=spf1 include:a.big.example",
		"    include a.big.example [2/5]:",
		"      include c.big.example [3/3]:",
		"fail  spf       RFC 7208 §4.6.4",
		"warn  dkim      RFC 8301 §3.2",
		"ok    dmarc     RFC 9989 §4.7      big.example: no sp and no np: subdomains of big.example, existing or not, inherit p=quarantine",
		"summary:             big.example: fail (4 checks",
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

// TestLookupUsage: usage errors exit 2 and take no DNS.
func TestLookupUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"lookup"},                           // no domain
		{"lookup", "a.example", "b.example"}, // two domains
		{"lookup", "--listen", "inet:1.2.3.4:1", "a.example"}, // a serve flag lookup does not use
		{"lookup", "--selector", "bad selector", "a.example"},
		{"lookup", "--selector", "-x", "a.example"},
		{"lookup", "--subdomain", "a..b", "a.example"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != exitConfig {
			t.Errorf("%q: exit %d, want %d", args, code, exitConfig)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"lookup", "-h"}, &out, &errb); code != exitOK || !strings.Contains(errb.String(), "--selector") {
		t.Errorf("-h: exit %d: %s", code, errb.String())
	}
}
