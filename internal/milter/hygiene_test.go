package milter

import (
	"strings"
	"testing"
)

// sameName must answer exactly as comparing strings.ToLower of both names
// (the test the milter made before), ASCII or not.
func TestSameName(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"From", "from", true},
		{"FROM", "from", true},
		{"Fro", "from", false},
		{"Authentication-Results", "authentication-results", true},
		{"Liſt-Id", "list-id", false},          // strings.EqualFold would say true
		{"\u212Aey", "key", true},              // Kelvin sign lower-cases to k
		{"X-Quarantine", "x-quarantinE", true}, // either side may have upper case
		{"", "", true},
	} {
		if got := sameName(c.a, c.b); got != c.want {
			t.Errorf("sameName(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func FuzzSameName(f *testing.F) {
	f.Add("From", "from")
	f.Add("Liſt-Id", "list-id")
	f.Add("\u212Aey", "key")
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := sameName(a, b), strings.ToLower(a) == strings.ToLower(b); got != want {
			t.Fatalf("sameName(%q, %q) = %v, strings.ToLower says %v", a, b, got, want)
		}
	})
}

// FuzzSameNameASCII: the variant with known ASCII-ness answers as
// strings.ToLower does too (İ lower-cases to i, the Kelvin sign to k).
func FuzzSameNameASCII(f *testing.F) {
	f.Add("L\u0130st-Id", "list-id")
	f.Add("\u212Aey", "key")
	f.Add("From", "FROM")
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := sameNameASCII(a, isASCII(a), b, isASCII(b)), strings.ToLower(a) == strings.ToLower(b); got != want {
			t.Fatalf("sameNameASCII(%q, %q) = %v, strings.ToLower says %v", a, b, got, want)
		}
	})
}

// sameName reports whether two header field names are equal once
// lower-cased (strings.ToLower), without allocating when both are ASCII,
// as they always are from Postfix. strings.EqualFold is not the same test:
// it also folds 'ſ' to 's' and would make "Liſt-Id" a List-Id.
func sameName(a, b string) bool {
	return sameNameASCII(a, isASCII(a), b, isASCII(b))
}
