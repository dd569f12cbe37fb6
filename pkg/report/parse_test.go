package report

import (
	"strings"
	"testing"
)

// TestParseNamespaces: the same report in every namespace form a reporter
// may use; a foreign namespace is refused.
func TestParseNamespaces(t *testing.T) {
	t.Parallel()
	body := strings.TrimPrefix(strings.TrimSuffix(minimalReport(2, "<unknown_top_level>skipped</unknown_top_level>"), "</feedback>"), "<feedback>")
	prefixed := strings.NewReplacer("</", "</d:", "<", "<d:").Replace(body)
	cases := []struct {
		name string
		doc  string
		want RefusalReason // "" = parses
	}{
		{"RFC 9990", `<feedback xmlns="` + Namespace + `">` + body + `</feedback>`, ""},
		{"RFC 7489", `<feedback xmlns="` + NamespaceRFC7489 + `">` + body + `</feedback>`, ""},
		{"none", `<feedback>` + body + `</feedback>`, ""},
		{"prefixed RFC 9990", `<d:feedback xmlns:d="` + Namespace + `">` + prefixed + `</d:feedback>`, ""},
		{"prefixed root only", `<d:feedback xmlns:d="` + Namespace + `">` + body + `</d:feedback>`, ""},
		{"xsi attributes", `<feedback xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="x">` + body + `</feedback>`, ""},
		{"BOM and declaration", "\ufeff<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>" + body + `</feedback>`, ""},
		{"ascii declared", `<?xml version="1.0" encoding="US-ASCII"?><feedback>` + body + `</feedback>`, ""},
		{"foreign namespace", `<feedback xmlns="urn:other">` + body + `</feedback>`, RefusalNotFeedback},
		{"prefixed foreign", `<d:feedback xmlns:d="urn:other">` + prefixed + `</d:feedback>`, RefusalNotFeedback},
		{"undeclared prefix", `<d:feedback>` + body + `</d:feedback>`, RefusalNotFeedback},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := Parse(strings.NewReader(tc.doc), Limits{})
			if tc.want != "" {
				assertRefused(t, f, err, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Records) != 2 || f.Metadata.ReportID != "r" || f.PolicyPublished.Domain != "example.com" {
				t.Errorf("parsed %+v", f)
			}
		})
	}
}
