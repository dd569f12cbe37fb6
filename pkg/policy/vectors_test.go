package policy

import (
	"bufio"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/publicsuffix"
	"gopkg.in/yaml.v3"
)

type vectorFile struct {
	Cases []vectorCase `yaml:"cases"`
}

type vectorCase struct {
	ID              string              `yaml:"id"`
	Source          string              `yaml:"source"`
	Derived         bool                `yaml:"derived"`
	DMARCRecords    map[string][]string `yaml:"dmarc_records"`
	ExistingDomains []string            `yaml:"existing_domains"`
	Input           struct {
		AuthorDomain string   `yaml:"author_domain"`
		SPFDomain    string   `yaml:"spf_domain"`
		DKIMDomains  []string `yaml:"dkim_domains"`
		ADKIM        string   `yaml:"adkim"`
		ASPF         string   `yaml:"aspf"`
	} `yaml:"input"`
	Expect struct {
		DiscoveryQueries []string                     `yaml:"discovery_queries"`
		PolicyDomain     yaml.Node                    `yaml:"policy_domain"`
		DMARCApplies     *bool                        `yaml:"dmarc_applies"`
		Policy           *struct{ Tag, Value string } `yaml:"policy"`
		OrgDomain        map[string]string            `yaml:"org_domain"`
		SPFAligned       *bool                        `yaml:"spf_aligned"`
		DKIMAligned      *bool                        `yaml:"dkim_aligned"`
	} `yaml:"expect"`
}

// TestTreeWalkVectors runs testdata/dmarcbis/treewalk-vectors.yaml: each
// case's records are served by the dnstest server and resolved through
// pkg/cache. Cases marked derived run under "derived/".
func TestTreeWalkVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/dmarcbis/treewalk-vectors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := yaml.Unmarshal(raw, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Cases) != 27 {
		t.Fatalf("%d cases in the vector file, want 27", len(vf.Cases))
	}
	checks := 0
	for _, c := range vf.Cases {
		name := c.ID
		if c.Derived {
			name = "derived/" + c.ID
		}
		t.Run(name, func(t *testing.T) { checks += runVector(t, c) })
	}
	t.Logf("%d cases, %d expectations checked", len(vf.Cases), checks)
}

func runVector(t *testing.T, c vectorCase) int {
	srv, res := newDNS(t, "")
	srv.Add(dmarcRRs(c.DMARCRecords)...)
	for _, d := range c.ExistingDomains {
		srv.Add(aRR(d))
	}
	rec := &recorder{Resolver: res}
	ctx := context.Background()
	author := c.Input.AuthorDomain
	disc := Discover(ctx, rec, author, Options{})
	if disc.Err != nil {
		t.Fatalf("%s: Discover: %v", c.Source, disc.Err)
	}
	n := 0
	if q := c.Expect.DiscoveryQueries; q != nil {
		n++
		if diff := cmp.Diff(q, disc.Queries); diff != "" {
			t.Errorf("%s: discovery queries (-want +got):\n%s", c.Source, diff)
		}
		if got := rec.txtQueries(); len(got) < len(q) || !cmp.Equal(q, got[:len(q)]) {
			t.Errorf("%s: DNS saw TXT queries %q, want them to start with %q", c.Source, got, q)
		}
	}
	if pd := c.Expect.PolicyDomain; pd.Kind != 0 {
		n++
		want := ""
		if pd.Tag != "!!null" {
			want = pd.Value
		}
		if disc.PolicyDomain != want {
			t.Errorf("%s: policy domain = %q, want %q", c.Source, disc.PolicyDomain, want)
		}
	}
	v := evaluateVector(ctx, rec, c, disc)
	if len(v.Domains) != 1 {
		t.Fatalf("verdict has %d domains", len(v.Domains))
	}
	dv := v.Domains[0]
	if a := c.Expect.DMARCApplies; a != nil {
		n++
		if applies := dv.Result != ResultNone; applies != *a {
			t.Errorf("%s: DMARC applies = %v (result %s, err %v), want %v", c.Source, applies, dv.Result, dv.Err, *a)
		}
	}
	if p := c.Expect.Policy; p != nil {
		n++
		if string(dv.PolicyTag) != p.Tag || string(dv.Requested) != p.Value {
			t.Errorf("%s: policy %s=%s, want %s=%s", c.Source, dv.PolicyTag, dv.Requested, p.Tag, p.Value)
		}
	}
	for d, want := range c.Expect.OrgDomain {
		n++
		got, err := OrgDomain(ctx, rec, d, MethodTreeWalk, nil)
		if err != nil || got != want {
			t.Errorf("%s: OrgDomain(%s) = %q, %v; want %q", c.Source, d, got, err, want)
		}
	}
	if a := c.Expect.SPFAligned; a != nil {
		n++
		if dv.SPFAligned != *a {
			t.Errorf("%s: SPF aligned = %v, want %v (verdict %+v)", c.Source, dv.SPFAligned, *a, dv)
		}
	}
	if a := c.Expect.DKIMAligned; a != nil {
		n++
		if got := len(dv.DKIMAligned) > 0; got != *a {
			t.Errorf("%s: DKIM aligned = %v (%q), want %v", c.Source, got, dv.DKIMAligned, *a)
		}
	}
	return n
}

// evaluateVector evaluates a message from the vector's author with SPF and
// DKIM passing for its identifiers.
func evaluateVector(ctx context.Context, r Resolver, c vectorCase, disc *Discovery) Verdict {
	in := Input{
		From:        ParseFrom([]string{"someone@" + c.Input.AuthorDomain}),
		Discoveries: map[string]*Discovery{disc.Domain: disc},
	}
	if d := c.Input.SPFDomain; d != "" {
		in.MailFrom = "bounce@" + d
		in.SPF = verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeMailFrom, Domain: d}
	}
	for _, d := range c.Input.DKIMDomains {
		in.DKIM = append(in.DKIM, verify.DKIMResult{Result: verify.ResultPass, Domain: d, Selector: "s"})
	}
	Prepare(ctx, r, &in, Options{})
	return Evaluate(in)
}

// TestPublicSuffixVectors runs the PSL test vectors against the RFC 7489
// §3.2 method: "null" means the name has no registrable domain, and then
// our Organizational Domain is the name itself (a public suffix, or not a
// valid name at all).
func TestPublicSuffixVectors(t *testing.T) {
	for _, file := range []string{"tests.txt", "test_psl.txt"} {
		cases := readPSLCases(t, "testdata/publicsuffix/"+file)
		if len(cases) != 78 {
			t.Fatalf("%s: %d cases, want 78", file, len(cases))
		}
		pass := 0
		for _, c := range cases {
			if checkPSL(t, file, c) {
				pass++
			}
		}
		t.Logf("%s: %d/%d passed", file, pass, len(cases))
	}
}

type pslCase struct {
	line    int
	in, out string // "" for null
}

func readPSLCases(t *testing.T, path string) []pslCase {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []pslCase
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		var in, want string
		if rest, ok := strings.CutPrefix(line, "checkPublicSuffix("); ok {
			rest = strings.TrimSuffix(rest, ");")
			in, want, _ = strings.Cut(rest, ", ")
			in, want = strings.Trim(in, "'"), strings.Trim(want, "'")
		} else {
			in, want, _ = strings.Cut(line, " ")
		}
		if in == "null" {
			in = ""
		}
		if want == "null" {
			want = ""
		}
		out = append(out, pslCase{n, in, want})
	}
	return out
}

func checkPSL(t *testing.T, file string, c pslCase) bool {
	t.Helper()
	norm, err := NormalizeDomain(c.in)
	if c.out == "" {
		if err != nil {
			return true // not a valid name (null input, leading dot): no Organizational Domain
		}
		org, _ := OrgDomain(context.Background(), nil, c.in, MethodPSL, nil)
		if suffix, _ := publicsuffix.PublicSuffix(norm); org != norm || suffix != norm {
			t.Errorf("%s:%d: %q: Organizational Domain %q, want the name itself as a public suffix (suffix %q)", file, c.line, c.in, org, suffix)
			return false
		}
		return true
	}
	want, werr := NormalizeDomain(c.out)
	org, oerr := OrgDomain(context.Background(), nil, c.in, MethodPSL, nil)
	if err != nil || werr != nil || oerr != nil || org != want {
		t.Errorf("%s:%d: OrgDomain(%q) = %q (%v), want %q", file, c.line, c.in, org, oerr, want)
		return false
	}
	return true
}
