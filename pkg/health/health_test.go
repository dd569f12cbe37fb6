package health

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// spfZone holds the SPF scenarios. over.example costs 11 lookups through
// nested includes: root 3 (include a, include b, mx), a 2 (include c, a),
// c 3 (a, a, mx), b 3 (a, a, a).
const spfZone = `$TTL 300
over.example.        IN TXT "v=spf1 include:a.over.example include:b.over.example mx -all"
over.example.        IN MX 10 mx.over.example.
mx.over.example.     IN A 192.0.2.25
a.over.example.      IN TXT "v=spf1 include:c.over.example a:h1.over.example -all"
c.over.example.      IN TXT "v=spf1 a:h1.over.example a:h2.over.example mx:over.example ~all"
b.over.example.      IN TXT "v=spf1 a:h1.over.example a:h2.over.example a:h3.over.example ~all"
h1.over.example.     IN A 192.0.2.1
h2.over.example.     IN A 192.0.2.2
h3.over.example.     IN A 192.0.2.3

void.example.        IN TXT "v=spf1 include:nx1.void.example include:nx2.void.example include:nx3.void.example -all"
missing.example.     IN TXT "v=spf1 ip4:192.0.2.0/24 include:gone.example -all"
multi.example.       IN TXT "v=spf1 ip4:192.0.2.1 -all"
multi.example.       IN TXT "v=spf1 ip4:192.0.2.2 -all"
loop.example.        IN TXT "v=spf1 ip4:192.0.2.1 redirect=loop2.example"
loop2.example.       IN TXT "v=spf1 ip4:192.0.2.2 redirect=loop.example"
open.example.        IN TXT "v=spf1 a:h1.over.example +all include:after.example"
neutral.example.     IN TXT "v=spf1 ptr ?all redirect=over.example"
dup.example.         IN TXT "v=spf1 include:b.over.example include:b.over.example -all"
syntax.example.      IN TXT "v=spf1 ip4:192.0.2.300 -all"
manymx.example.      IN TXT "v=spf1 mx -all"
`

func TestSPFTree(t *testing.T) {
	t.Parallel()
	zone := spfZone
	for i := range 11 {
		zone += "manymx.example. IN MX 10 mx" + string(rune('a'+i)) + ".manymx.example.\n"
	}
	zone += txt("long.example.", "v=spf1 "+strings.Repeat("ip4:192.0.2.1 ", 40)+"-all")
	_, r := newResolver(t, zone)
	cases := []struct {
		domain        string
		lookups, void int
		verdict       Verdict
		want          []struct {
			code Code
			sev  Verdict
			rule string
		}
	}{
		{"over.example", 11, 0, Fail, rules(CodeSPFLookupLimit, Fail, "RFC 7208 §4.6.4", CodeSPFFlatten, Warn, "RFC 7208 §4.6.4")},
		{"void.example", 3, 3, Fail, rules(CodeSPFVoidLimit, Fail, "RFC 7208 §4.6.4", CodeSPFIncludeNone, Fail, "RFC 7208 §5.2")},
		{"missing.example", 1, 1, Fail, rules(CodeSPFIncludeNone, Fail, "RFC 7208 §5.2")},
		{"multi.example", 0, 0, Fail, rules(CodeSPFMultiple, Fail, "RFC 7208 §4.5")},
		{"loop.example", 2, 0, Fail, rules(CodeSPFLoop, Fail, "RFC 7208 §4.6.4")},
		{"open.example", 1, 0, Fail, rules(CodeSPFPassAll, Fail, "RFC 7208 §5.1", CodeSPFAfterAll, Warn, "RFC 7208 §5.1")},
		{"neutral.example", 1, 0, Warn, rules(CodeSPFNeutralAll, Warn, "RFC 7208 §5.1", CodeSPFPtr, Warn, "RFC 7208 §5.5", CodeSPFRedirectIgnored, Warn, "RFC 7208 §6.1")},
		{"dup.example", 8, 0, Warn, rules(CodeSPFDuplicateInclude, Warn, "RFC 7208 §4.6.4")},
		{"syntax.example", 0, 0, Fail, rules(CodeSPFSyntax, Fail, "RFC 7208 §4.6")},
		{"manymx.example", 1, 0, Fail, rules(CodeSPFMXLimit, Fail, "RFC 7208 §4.6.4")},
		{"long.example", 0, 0, Warn, rules(CodeSPFTooLong, Warn, "RFC 7208 §3.4")},
		{"nothing.example", 0, 0, Warn, rules(CodeSPFMissing, Warn, "RFC 7208 §4.5")},
	}
	for _, tc := range cases {
		t.Run(tc.domain, func(t *testing.T) {
			res := checkSPF(ctx(t), r, tc.domain)
			t.Logf("%s: %s\n%s", tc.domain, res.Line, dump(res.Findings))
			if res.Lookups != tc.lookups || res.VoidLookups != tc.void {
				t.Errorf("lookups %d void %d, want %d and %d", res.Lookups, res.VoidLookups, tc.lookups, tc.void)
			}
			if res.Verdict != tc.verdict {
				t.Errorf("verdict %s, want %s", res.Verdict, tc.verdict)
			}
			for _, w := range tc.want {
				want(t, tc.domain, res.Findings, w.code, w.sev, w.rule)
			}
		})
	}
}

type ruleWant = struct {
	code Code
	sev  Verdict
	rule string
}

// rules builds expectations from (code, severity, rule) triples.
func rules(args ...any) []ruleWant {
	var out []ruleWant
	for i := 0; i+2 < len(args); i += 3 {
		out = append(out, ruleWant{code: args[i].(Code), sev: args[i+1].(Verdict), rule: args[i+2].(string)})
	}
	return out
}

// TestSPFTreeShape checks the tree of over.example node by node, and the
// flattening advice: flattening include:a.over.example (itself, a's two
// terms and c's three) saves 6 and brings 11 to 5.
func TestSPFTreeShape(t *testing.T) {
	t.Parallel()
	_, r := newResolver(t, spfZone)
	res := checkSPF(ctx(t), r, "over.example")
	root := res.Tree
	if root.Lookups != 3 || root.TotalLookups != 11 || len(root.Children) != 2 {
		t.Fatalf("root: lookups %d total %d children %d", root.Lookups, root.TotalLookups, len(root.Children))
	}
	a, b := root.Children[0], root.Children[1]
	if a.Domain != "a.over.example" || a.Via != "include" || a.Lookups != 2 || a.TotalLookups != 5 {
		t.Errorf("a: %+v", a)
	}
	if b.Domain != "b.over.example" || b.TotalLookups != 3 || !b.Static {
		t.Errorf("b: %+v", b)
	}
	if len(a.Children) != 1 || a.Children[0].Domain != "c.over.example" || a.Children[0].TotalLookups != 3 {
		t.Errorf("c: %+v", a.Children)
	}
	if mx := root.Terms[2]; mx.Name != "mx" || mx.MXNames != 1 || !mx.Lookup {
		t.Errorf("mx term: %+v", mx)
	}
	wantHints := []FlattenHint{{In: "over.example", Term: "include:a.over.example", Saves: 6}}
	if len(res.Flatten) != 1 || res.Flatten[0] != wantHints[0] {
		t.Errorf("flatten %+v, want %+v", res.Flatten, wantHints)
	}
}

// TestSPFVoidTerms: each include of a non-existent name is marked void on
// the term that made it, and counted once.
func TestSPFVoidTerms(t *testing.T) {
	t.Parallel()
	_, r := newResolver(t, spfZone)
	res := checkSPF(ctx(t), r, "void.example")
	voids := 0
	for _, tm := range res.Tree.Terms {
		if tm.Void {
			voids++
		}
	}
	if voids != 3 || res.Tree.Void != 3 {
		t.Errorf("void terms %d, node void %d; want 3", voids, res.Tree.Void)
	}
	if n := len(find(res.Findings, CodeSPFIncludeNone)); n != 3 {
		t.Errorf("%d include_none findings, want 3", n)
	}
	for _, c := range res.Tree.Children {
		if c.Status != NodeNone {
			t.Errorf("%s: status %s", c.Domain, c.Status)
		}
	}
}

// TestSPFTempError: a SERVFAIL is an error verdict, never a verdict on the
// domain.
func TestSPFTempError(t *testing.T) {
	t.Parallel()
	srv, r := newResolver(t, spfZone)
	srv.SetFault("down.example", dnstest.FaultServFail)
	res := checkSPF(ctx(t), r, "down.example")
	if res.Verdict != Error || res.Tree.Status != NodeTempError {
		t.Errorf("verdict %s status %s", res.Verdict, res.Tree.Status)
	}
	want(t, "down", res.Findings, CodeSPFTempError, Error, "")

	// A failure inside the tree makes the check incomplete too.
	srv.SetFault("b.over.example", dnstest.FaultServFail)
	res = checkSPF(ctx(t), r, "over.example")
	if res.Verdict != Error || res.Tree.Children[1].Status != NodeTempError || res.Lookups != 8 {
		t.Errorf("over.example with b down: verdict %s, b %s, %d lookups", res.Verdict, res.Tree.Children[1].Status, res.Lookups)
	}
	want(t, "b down", res.Findings, CodeSPFTempError, Error, "")
}

const mainZone = `$TTL 300
health.example.                     IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
health.example.                     IN MX 10 mail.health.example.
_dmarc.health.example.              IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@health.example"
www.health.example.                 IN A 192.0.2.10
mail.health.example.                IN A 192.0.2.11
mail.health.example.                IN TXT "v=spf1 a -all"
two.health.example.                 IN TXT "v=spf1 -all"
two.health.example.                 IN TXT "v=spf1 a -all"

mon.example.                        IN TXT "v=spf1 -all"
_dmarc.mon.example.                 IN TXT "v=DMARC1; p=none; pct=50; t=y; fo=1; rua=mailto:r@reports.example,mailto:x@auth.example"
mon.example._report._dmarc.auth.example. IN TXT "v=DMARC1"
www.mon.example.                    IN A 192.0.2.12

weak.example.                       IN TXT "v=spf1 -all"
_dmarc.weak.example.                IN TXT "v=DMARC1; p=reject; sp=none; rua=mailto:d@weak.example"
sub.weak.example.                   IN A 192.0.2.13
twodmarc.example.                   IN TXT "v=spf1 -all"
_dmarc.twodmarc.example.            IN TXT "v=DMARC1; p=reject"
_dmarc.twodmarc.example.            IN TXT "v=DMARC1; p=none"
typo.example.                       IN TXT "v=spf1 -all"
_dmarc.typo.example.                IN TXT "v=DMARC1 p=reject"
bad.example.                        IN TXT "v=spf1 -all"
_dmarc.bad.example.                 IN TXT "v=DMARC1; p=block"
_dmarc.asnone.example.              IN TXT "v=DMARC1; p=reject; sp=bogus; rua=mailto:d@asnone.example"
`

func TestDMARC(t *testing.T) {
	t.Parallel()
	_, r := newResolver(t, mainZone)
	cases := []struct {
		domain  string
		verdict Verdict
		policy  policy.Disposition
		want    []ruleWant
		not     []Code
	}{
		{"health.example", OK, policy.DispositionReject,
			rules(CodeDMARCFound, OK, "RFC 9989 §4.10.1", CodeDMARCSubdomains, OK, "RFC 9989 §4.7", CodeDMARCEnforced, OK, "RFC 9989 §4.7"),
			[]Code{CodeDMARCNoRUA, CodeDMARCMonitoring}},
		{"www.health.example", OK, policy.DispositionReject, rules(CodeDMARCEnforced, OK, "RFC 9989 §4.7"), nil},
		{"mon.example", Warn, policy.DispositionNone,
			rules(CodeDMARCMonitoring, Warn, "RFC 9989 §3.2.12", CodeDMARCPct, Warn, "RFC 7489 §6.3", CodeDMARCTesting, Warn, "RFC 9989 §4.7",
				CodeDMARCReportURI, Warn, "RFC 9990 §4", CodeDMARCReportURI, OK, "RFC 9990 §4", CodeDMARCFOWithoutRUF, Warn, "RFC 9989 §4.7"), nil},
		{"weak.example", Warn, policy.DispositionReject, rules(CodeDMARCWeakSubdomains, Warn, "RFC 9989 §4.7"), nil},
		{"twodmarc.example", Fail, "", rules(CodeDMARCMultiple, Fail, "RFC 9989 §4.10", CodeDMARCMissing, Fail, "RFC 9989 §4.10.1"), nil},
		{"typo.example", Fail, "", rules(CodeDMARCIgnoredRecord, Fail, "RFC 9989 §4.7", CodeDMARCMissing, Fail, "RFC 9989 §4.10.1"), nil},
		{"bad.example", Fail, "", rules(CodeDMARCNotApplicable, Fail, "RFC 9989 §4.10.1", CodeDMARCInvalidTag, Warn, "RFC 9989 §4.8"), []Code{CodeDMARCMonitoring}},
		{"asnone.example", Warn, policy.DispositionNone, rules(CodeDMARCAsNone, Warn, "RFC 9989 §4.10.1", CodeDMARCMonitoring, Warn, "RFC 9989 §3.2.12"), nil},
		{"over.example", Fail, "", rules(CodeDMARCMissing, Fail, "RFC 9989 §4.10.1"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.domain, func(t *testing.T) {
			res := checkDMARC(ctx(t), r, tc.domain, policy.MethodTreeWalk)
			t.Logf("%s: %s\n%s", tc.domain, res.Line, dump(res.Findings))
			if res.Verdict != tc.verdict || res.Policy != tc.policy {
				t.Errorf("verdict %s policy %q, want %s %q", res.Verdict, res.Policy, tc.verdict, tc.policy)
			}
			for _, w := range tc.want {
				want(t, tc.domain, res.Findings, w.code, w.sev, w.rule)
			}
			for _, c := range tc.not {
				wantNo(t, tc.domain, res.Findings, c)
			}
		})
	}
}

// TestDMARCReportURIs: the destination inside the domain needs no
// authorization, the external ones are looked up at
// <domain>._report._dmarc.<host>.
func TestDMARCReportURIs(t *testing.T) {
	t.Parallel()
	_, r := newResolver(t, mainZone)
	res := checkDMARC(ctx(t), r, "mon.example", policy.MethodTreeWalk)
	got := map[string]Authorization{}
	for _, u := range res.Reports {
		got[u.URI] = u.Authorization
	}
	wantAuth := map[string]Authorization{"mailto:r@reports.example": AuthMissing, "mailto:x@auth.example": AuthAuthorized}
	for u, a := range wantAuth {
		if got[u] != a {
			t.Errorf("%s: %s, want %s", u, got[u], a)
		}
	}
	if res.Reports[0].Query != "mon.example._report._dmarc.reports.example" {
		t.Errorf("query %q", res.Reports[0].Query)
	}
	own := checkDMARC(ctx(t), r, "health.example", policy.MethodTreeWalk)
	if len(own.Reports) != 1 || own.Reports[0].Authorization != AuthNotNeeded || own.Reports[0].External {
		t.Errorf("own rua: %+v", own.Reports)
	}
}

func TestSubdomains(t *testing.T) {
	t.Parallel()
	_, r := newResolver(t, mainZone+strings.ReplaceAll(spfZone, "over.example", "big.health.example"))
	rep := Check(ctx(t), r, Request{Domain: "health.example", Subdomains: []string{"www", "mail.health.example", "ghost", "two", "WWW.health.example."}})
	if len(rep.Subdomains) != 4 {
		t.Fatalf("%d subdomain results, want 4 (www given twice): %+v", len(rep.Subdomains), rep.Subdomains)
	}
	by := map[string]SubdomainResult{}
	for _, s := range rep.Subdomains {
		by[s.Name] = s
		t.Logf("%s: %s: %s\n%s", s.Name, s.Verdict, s.Line, dump(s.Findings))
	}
	www := by["www.health.example"]
	if www.Verdict != Warn || www.Suggest != SuggestNoMail || www.DMARCTag != policy.TagSP || www.DMARCPolicy != policy.DispositionReject {
		t.Errorf("www: %+v", www)
	}
	want(t, "www", www.Findings, CodeSubdomainNoSPF, Warn, "RFC 7208 §4.5")
	if m := by["mail.health.example"]; m.Verdict != OK || m.SPF != "v=spf1 a -all" || m.SPFLookups != 1 {
		t.Errorf("mail: %+v", m)
	}
	if g := by["ghost.health.example"]; g.Exists || g.DMARCTag != policy.TagNP || g.Verdict != OK {
		t.Errorf("ghost: %+v", g)
	}
	want(t, "two", by["two.health.example"].Findings, CodeSubdomainSPFBroken, Fail, "RFC 7208 §4.5")

	// A subdomain's own SPF tree is checked like the domain's.
	over := Check(ctx(t), r, Request{Domain: "health.example", Subdomains: []string{"big"}})
	if s := over.Subdomains[0]; s.SPFLookups != 11 || s.Verdict != Fail {
		t.Errorf("big: %d lookups, verdict %s", s.SPFLookups, s.Verdict)
	}
	want(t, "big", over.Subdomains[0].Findings, CodeSPFLookupLimit, Fail, "RFC 7208 §4.6.4")

	mon := Check(ctx(t), r, Request{Domain: "mon.example", Subdomains: []string{"www"}})
	want(t, "www.mon", mon.Subdomains[0].Findings, CodeSubdomainUnprotected, Warn, "RFC 9989 §4.7")
}

func TestDKIM(t *testing.T) {
	t.Parallel()
	k1024, k2048 := rsaKeys(t)
	zone := mainZone +
		txt("rsa2048._domainkey.health.example.", "v=DKIM1; k=rsa; p="+k2048) +
		txt("rsa1024._domainkey.health.example.", "v=DKIM1; p="+k1024) +
		txt("rsa512._domainkey.health.example.", "v=DKIM1; k=rsa; p="+rsaShort(t)) +
		txt("ed._domainkey.health.example.", "v=DKIM1; k=ed25519; p="+ed25519Pub(t)) +
		txt("test._domainkey.health.example.", "v=DKIM1; t=y; p="+k2048) +
		txt("strict._domainkey.health.example.", "v=DKIM1; t=s; p="+k2048) +
		txt("revoked._domainkey.health.example.", "v=DKIM1; k=rsa; p=") +
		txt("sha1._domainkey.health.example.", "v=DKIM1; h=sha1; p="+k2048) +
		txt("dsa._domainkey.health.example.", "v=DKIM1; k=dsa; p="+k2048) +
		txt("garbage._domainkey.health.example.", "v=DKIM1; p=!!!notbase64") +
		txt("v2._domainkey.health.example.", "v=DKIM2; p="+k2048) +
		txt("web._domainkey.health.example.", "s=web; p="+k2048)
	_, r := newResolver(t, zone)
	cases := []struct {
		sel     string
		verdict Verdict
		bits    int
		want    []ruleWant
	}{
		{"rsa2048", OK, 2048, rules(CodeDKIMKey, OK, "RFC 8301 §3.2")},
		{"rsa1024", Warn, 1024, rules(CodeDKIMRSAWeak, Warn, "RFC 8301 §3.2")},
		{"rsa512", Fail, 512, rules(CodeDKIMRSATooShort, Fail, "RFC 8301 §3.2")},
		{"ed", OK, 256, rules(CodeDKIMKey, OK, "RFC 8463 §4")},
		{"test", Warn, 2048, rules(CodeDKIMTesting, Warn, "RFC 6376 §3.6.1")},
		{"strict", OK, 2048, rules(CodeDKIMStrict, OK, "RFC 6376 §3.6.1")},
		{"revoked", Fail, 0, rules(CodeDKIMRevoked, Fail, "RFC 6376 §3.6.1")},
		{"sha1", Fail, 2048, rules(CodeDKIMHashes, Fail, "RFC 8301 §3.1")},
		{"dsa", Fail, 0, rules(CodeDKIMKeyType, Fail, "RFC 6376 §3.6.1")},
		{"garbage", Fail, 0, rules(CodeDKIMSyntax, Fail, "RFC 6376 §3.2")},
		{"v2", Fail, 0, rules(CodeDKIMSyntax, Fail, "RFC 6376 §3.6.1")},
		{"web", Fail, 2048, rules(CodeDKIMService, Fail, "RFC 6376 §3.6.1")},
		{"absent", Fail, 0, rules(CodeDKIMNoKey, Fail, "RFC 6376 §6.1.2")},
		{"bad_sel", Fail, 0, rules(CodeDKIMBadSelector, Fail, "RFC 6376 §3.1")},
	}
	for _, tc := range cases {
		t.Run(tc.sel, func(t *testing.T) {
			res := checkDKIM(ctx(t), r, "health.example", tc.sel)
			t.Logf("%s: %s: %s\n%s", tc.sel, res.Verdict, res.Line, dump(res.Findings))
			if res.Verdict != tc.verdict || res.Bits != tc.bits {
				t.Errorf("verdict %s bits %d, want %s %d", res.Verdict, res.Bits, tc.verdict, tc.bits)
			}
			for _, w := range tc.want {
				want(t, tc.sel, res.Findings, w.code, w.sev, w.rule)
			}
		})
	}
}

// TestCheckJSON runs the whole check and reads its JSON back: version 1,
// the overall verdict the worst of the checks, the counts adding up.
func TestCheckJSON(t *testing.T) {
	t.Parallel()
	k1024, _ := rsaKeys(t)
	zone := mainZone + txt("s1._domainkey.health.example.", "v=DKIM1; p="+k1024)
	_, r := newResolver(t, zone)
	rep := Check(ctx(t), r, Request{Domain: "Health.Example.", Selectors: []string{"s1", "s1"}, Subdomains: []string{"www"}})
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back["version"] != float64(1) || back["domain"] != "health.example" || back["verdict"] != "warn" {
		t.Errorf("head: version %v domain %v verdict %v", back["version"], back["domain"], back["verdict"])
	}
	c := rep.Counts
	if c.OK+c.Warn+c.Fail+c.Error != 4 || c.Warn != 2 || rep.Verdict != Warn {
		t.Errorf("counts %+v verdict %s (dmarc %s, spf %s, www, s1)", c, rep.Verdict, rep.DMARC.Verdict, rep.SPF.Verdict)
	}
	if !strings.HasPrefix(rep.Summary, "health.example: warn (4 checks") {
		t.Errorf("summary %q", rep.Summary)
	}
	bad := Check(ctx(t), r, Request{Domain: "not a domain"})
	if bad.Verdict != Error || !strings.Contains(bad.Error, ErrBadDomain.Error()) {
		t.Errorf("bad domain: %+v", bad)
	}
}

// TestSPFHostile: a record with hundreds of DNS-querying terms, and a tree
// wider than the walk's bounds, cost a bounded number of queries and
// findings, and are still judged over the limit.
func TestSPFHostile(t *testing.T) {
	t.Parallel()
	var many, wide strings.Builder
	many.WriteString("v=spf1")
	wide.WriteString("v=spf1")
	zone := "$TTL 300\n"
	for i := range 200 {
		fmt.Fprintf(&many, " a:h%d.many.example", i)
	}
	for i := range 100 {
		fmt.Fprintf(&wide, " include:i%d.wide.example", i)
		zone += txt(fmt.Sprintf("i%d.wide.example.", i), fmt.Sprintf("v=spf1 a:h%d.wide.example -all", i))
	}
	for i := range 20 {
		zone += txt(fmt.Sprintf("d%d.chain.example.", i), fmt.Sprintf("v=spf1 include:d%d.chain.example -all", i+1))
	}
	zone += txt("many.example.", many.String()+" -all") + txt("wide.example.", wide.String()+" -all")
	srv, r := newResolver(t, zone)
	for _, tc := range []struct {
		domain  string
		lookups int
	}{
		{"many.example", 200},
		{"wide.example", 100 + maxSPFNodes - 1}, // the root is one of the nodes
		{"d0.chain.example", maxSPFDepth},       // each level's include; the 13th level is not fetched
	} {
		srv.ResetCounts()
		res := checkSPF(ctx(t), r, tc.domain)
		if q := srv.Queries(); q > 1+maxSPFNodes+2*maxSPFProbes {
			t.Errorf("%s: %d queries", tc.domain, q)
		}
		if res.Lookups != tc.lookups || res.Verdict != Fail || len(res.Findings) > maxFindings+1 {
			t.Errorf("%s: %d lookups (want %d), verdict %s, %d findings", tc.domain, res.Lookups, tc.lookups, res.Verdict, len(res.Findings))
		}
		want(t, tc.domain, res.Findings, CodeSPFLookupLimit, Fail, "RFC 7208 §4.6.4")
		want(t, tc.domain, res.Findings, CodeSPFTooDeep, Warn, "")
	}
}
