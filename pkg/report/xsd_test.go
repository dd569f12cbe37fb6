package report

import (
	"encoding/xml"
	"os"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEnumsMatchXSD reads the enumerations of the RFC 9990 XSD and checks
// that the Known methods accept exactly those values.
func TestEnumsMatchXSD(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(xsdRFC9990)
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		SimpleTypes []struct {
			Name   string `xml:"name,attr"`
			Values []struct {
				Value string `xml:"value,attr"`
			} `xml:"restriction>enumeration"`
		} `xml:"simpleType"`
	}
	if err := xml.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	known := map[string]func(string) bool{
		"AlignmentType":         func(v string) bool { return Alignment(v).Known() },
		"DispositionType":       func(v string) bool { return Disposition(v).Known() },
		"ActionDispositionType": func(v string) bool { return ActionDisposition(v).Known() },
		"DiscoveryType":         func(v string) bool { return DiscoveryMethod(v).Known() },
		"TestingType":           func(v string) bool { return Testing(v).Known() },
		"DMARCResultType":       func(v string) bool { return DMARCResult(v).Known() },
		"PolicyOverrideType":    func(v string) bool { return ReasonType(v).Known() },
		"DKIMResultType":        func(v string) bool { return DKIMResult(v).Known() },
		"SPFDomainScope":        func(v string) bool { return SPFScope(v).Known() },
		"SPFResultType":         func(v string) bool { return SPFResult(v).Known() },
	}
	// Every value a Known method might accept: the XSD's values, RFC 7489's
	// and a few that no schema has.
	candidates := []string{"", "unknown", "sampled_out", "forwarded", "helo", "error", "softfail", "pass", "fail", "none",
		"quarantine", "reject", "r", "s", "y", "n", "psl", "treewalk", "policy", "neutral", "temperror", "permerror",
		"local_policy", "mailing_list", "other", "policy_test_mode", "trusted_forwarder", "mfrom", "Pass"}
	seen := 0
	for _, st := range schema.SimpleTypes {
		isKnown, ok := known[st.Name]
		if !ok {
			t.Errorf("XSD simple type %s has no type here", st.Name)
			continue
		}
		seen++
		var want, got []string
		for _, v := range st.Values {
			want = append(want, v.Value)
		}
		for _, c := range append(candidates, want...) {
			if isKnown(c) && !slices.Contains(got, c) {
				got = append(got, c)
			}
		}
		sort.Strings(want)
		sort.Strings(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: values Known accepts (-XSD +ours):\n%s", st.Name, diff)
		}
	}
	if seen != len(known) {
		t.Errorf("%d enumerations in the XSD, %d here", seen, len(known))
	}
}
