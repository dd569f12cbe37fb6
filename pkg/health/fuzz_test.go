package health

import (
	"strings"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// FuzzSPFTerms checks the term tokenizer of the SPF tree: it never panics,
// fails exactly for text that is not an SPF record, keeps every term
// verbatim and in order, marks as DNS-querying only the six terms of RFC
// 7208 §4.6.4, and on a record the evaluator accepts finds only known
// mechanisms with their domain-spec where the grammar requires one.
func FuzzSPFTerms(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all",
		"v=spf1",
		"V=SPF1 include:_spf.example.com ~all",
		"v=spf1  a:mail.example.com/24//64 mx/28 ptr ?all",
		"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all",
		"v=spf1 redirect=_spf.example.org exp=explain.%{d}",
		"v=spf1 ip6:2001:db8::/32 ip4:192.0.2.0/24 +all",
		"v=spf1 foo=bar =x :y / +",
		"v=spf10 -all",
		"spf1 -all",
		"v=spf1 \x00 \xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rec string) {
		terms, err := parseSPFTerms(rec)
		if err != nil {
			if verify.IsSPFRecord(rec) {
				t.Fatalf("%q: an SPF record refused: %v", rec, err)
			}
			if terms != nil {
				t.Fatalf("%q: error with terms", rec)
			}
			return
		}
		if !verify.IsSPFRecord(rec) {
			t.Fatalf("%q: not an SPF record, yet parsed", rec)
		}
		var raws []string
		for _, tm := range terms {
			if tm.Raw == "" || strings.Contains(tm.Raw, " ") {
				t.Fatalf("%q: bad term %q", rec, tm.Raw)
			}
			raws = append(raws, tm.Raw)
			lookup := tm.Name == "include" || tm.Name == "a" || tm.Name == "mx" || tm.Name == "ptr" || tm.Name == "exists"
			if tm.Kind == Modifier {
				lookup = tm.Name == "redirect"
			}
			if tm.Lookup != lookup {
				t.Fatalf("%q: term %q lookup=%t", rec, tm.Raw, tm.Lookup)
			}
		}
		// Every octet other than a space belongs to exactly one term, in order.
		rest, n := rec[6:], 0
		for _, raw := range raws {
			i := strings.Index(rest, raw)
			if i < 0 || strings.Trim(rest[:i], " ") != "" {
				t.Fatalf("%q: term %q not next in %q", rec, raw, rest)
			}
			rest, n = rest[i+len(raw):], n+len(raw)
		}
		if strings.Trim(rest, " ") != "" || n != len(rec[6:])-strings.Count(rec[6:], " ") {
			t.Fatalf("%q: terms %q do not cover the record", rec, raws)
		}
		if verify.CheckSPFSyntax(rec) != nil {
			return
		}
		for _, tm := range terms {
			switch {
			case tm.Kind == Mechanism && !strings.Contains(" all include a mx ptr ip4 ip6 exists ", " "+tm.Name+" "):
				t.Fatalf("%q: valid record with unknown mechanism %q", rec, tm.Name)
			case tm.Target == "" && (tm.Kind == Mechanism && strings.Contains(" include exists ip4 ip6 ", " "+tm.Name+" ") || tm.Kind == Modifier && tm.Name == "redirect"):
				t.Fatalf("%q: %q without target", rec, tm.Raw)
			}
		}
	})
}

// FuzzURIHost checks the destination-host reader of rua/ruf URIs: no
// panic, a lower-case scheme, and a host that is either empty or a
// normalized domain name (it is queried, prefixed, in DNS).
func FuzzURIHost(f *testing.F) {
	for _, s := range []string{"mailto:dmarc@example.com", "MAILTO:a%40b@Example.COM.?subject=x", "https://reports.example/x", "mailto:", "mailto:@", ":", "mailto:a@b@c..d", "mailto:x@%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		scheme, host := uriHost(uri)
		if scheme != strings.ToLower(scheme) {
			t.Fatalf("%q: scheme %q", uri, scheme)
		}
		if host == "" {
			return
		}
		if n, err := policy.NormalizeDomain(host); err != nil || n != host {
			t.Fatalf("%q: host %q is not a normalized domain (%q, %v)", uri, host, n, err)
		}
	})
}
