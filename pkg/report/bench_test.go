package report

import (
	"strings"
	"testing"
)

// BenchmarkParse measures Parse on a report of 10 000 records (about
// 3.4 MB of XML).
func BenchmarkParse(b *testing.B) {
	doc := minimalReport(10_000, "")
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(strings.NewReader(doc), Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
