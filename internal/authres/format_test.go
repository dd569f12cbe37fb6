package authres

import (
	"strings"
	"testing"
)

// TestFormatMatchesReference: the one-pass renderer writes exactly what the
// go-msgauth based one wrote, for the fields the milter writes and for
// hostile values.
func TestFormatMatchesReference(t *testing.T) {
	long := strings.Repeat("x", 300)
	cases := [][]Result{
		nil,
		{{Method: "spf", Value: "none"}},
		{{Method: "spf", Value: "pass", Props: map[string]string{"smtp.mailfrom": "bounce@example.com"}},
			{Method: "dkim", Value: "fail", Reason: "signature did not verify", Props: map[string]string{
				"header.d": "example.com", "header.s": "sel", "header.a": "rsa-sha256", "header.b": "AbCd+/12", "header.i": "@example.com"}},
			{Method: "dmarc", Value: "fail", Comment: "p=reject dis=reject", Reason: "would reject",
				Props: map[string]string{"header.from": "example.com", "policy.dmarc": "reject"}}},
		{{Method: "dmarc", Value: "fail", Comment: "a)b(c\\", Reason: "x\\\"y\r\nz", Props: map[string]string{"header.from": "ev il\"\\.example"}}},
		{{Method: "dkim", Value: "pass", Reason: long, Comment: long, Props: map[string]string{"header.d": long, "reason": "from props", "empty": ""}}},
		{{Method: "dkim", Value: "pass", Props: map[string]string{"header.d": "é.example", "header.b": "a=b", "x": "(c)", "y": "\xff\xfe"}}},
		{{Method: " spf ", Value: "pass ", Comment: "()"}, {Method: "m", Value: "v", Comment: "\u00a0c\u0085"}},
		{{Method: "arc", Value: "pass", Comment: "i=2 d=lists.example.org", Props: map[string]string{"smtp.remote-ip": "192.0.2.7", "header.oldest-pass": "0"}},
			{Method: "arc", Value: "fail", Reason: "ARC-Seal i=1: signature did not verify", Props: map[string]string{"smtp.remote-ip": "2001:db8::25"}},
			{Method: "arc", Value: "none"}},
	}
	for i, rs := range cases {
		want := referenceFormat("mx.example.org", rs)
		if got := Format("mx.example.org", rs); got != want {
			t.Errorf("case %d:\n got %q\nwant %q", i, got, want)
		}
		if got := Format("mx.example.org", asParams(rs)); got != want {
			t.Errorf("case %d with Params:\n got %q\nwant %q", i, got, want)
		}
	}
}

// TestFormatARC: the arc resinfo of RFC 8617 §6 reads back as written: the
// chain status, header.oldest-pass, and smtp.remote-ip, an IPv6 address
// (with its colons) in a quoted string.
func TestFormatARC(t *testing.T) {
	rs := []Result{
		{Method: "arc", Value: "pass", Comment: "i=3 d=lists.example.org", Params: []Param{{Name: "smtp.remote-ip", Value: "2001:db8::25"}, {Name: "header.oldest-pass", Value: "2"}}},
		{Method: "arc", Value: "fail", Reason: "ARC-Seal i=1: signature did not verify", Params: []Param{{Name: "smtp.remote-ip", Value: "192.0.2.7"}}},
		{Method: "arc", Value: "none"},
	}
	v := Format("mx.example.org", rs)
	if !strings.Contains(v, `smtp.remote-ip="2001:db8::25"`) || !strings.Contains(v, "header.oldest-pass=2") {
		t.Errorf("%q", v)
	}
	id, got, err := Parse(v)
	if err != nil || id != "mx.example.org" || len(got) != 3 {
		t.Fatalf("Parse(%q) = %q, %+v, %v", v, id, got, err)
	}
	want := []map[string]string{
		{"smtp.remote-ip": "2001:db8::25", "header.oldest-pass": "2"},
		{"smtp.remote-ip": "192.0.2.7"},
		nil,
	}
	for i, r := range got {
		if r.Method != "arc" || r.Value != rs[i].Value || r.Reason != rs[i].Reason {
			t.Errorf("result %d: %+v", i, r)
		}
		if len(r.Props) != len(want[i]) {
			t.Errorf("result %d props %v, want %v", i, r.Props, want[i])
		}
		for k, w := range want[i] {
			if r.Props[k] != w {
				t.Errorf("result %d %s=%q, want %q", i, k, r.Props[k], w)
			}
		}
	}
}

func FuzzFormatMatchesReference(f *testing.F) {
	f.Add("mx.example.org", "dmarc", "fail", "indirect flow", "example.com", "p=reject", "header.from")
	f.Add("mx", "spf", "pass", "", "a\\\"b@c", "", "reason")
	f.Add("m", "dkim", "temperror", "x\r\ny", "(", ")", "")
	f.Add("m", " a b", "c ", "\"q\"", "x y", "(((", "k")
	f.Fuzz(func(t *testing.T, id, method, value, reason, prop, comment, key string) {
		rs := []Result{
			{Method: method, Value: value, Reason: reason, Comment: comment, Props: map[string]string{key: prop, "header.d": prop + reason}},
			{Method: "spf", Value: value, Props: map[string]string{"smtp.mailfrom": prop}},
		}
		want := referenceFormat(id, rs)
		if got := Format(id, rs); got != want {
			t.Fatalf("\n got %q\nwant %q", got, want)
		}
		if got := Format(id, asParams(rs)); got != want {
			t.Fatalf("with Params:\n got %q\nwant %q", got, want)
		}
	})
}

// asParams moves the properties of each result from Props to Params.
func asParams(rs []Result) []Result {
	out := make([]Result, len(rs))
	for i, r := range rs {
		r.Params = nil
		for k, v := range r.Props {
			r.Params = append(r.Params, Param{Name: k, Value: v})
		}
		r.Props = nil
		out[i] = r
	}
	return out
}

// BenchmarkFormat: the A-R field of a DMARC pass with one DKIM signature,
// against the former go-msgauth based renderer.
func BenchmarkFormat(b *testing.B) {
	rs := []Result{
		{Method: "spf", Value: "pass", Props: map[string]string{"smtp.mailfrom": "bounce@example.com"}},
		{Method: "dkim", Value: "pass", Props: map[string]string{"header.d": "example.com", "header.s": "sel", "header.a": "rsa-sha256", "header.b": "AbCd+/12"}},
		{Method: "dmarc", Value: "pass", Comment: "p=reject dis=none", Props: map[string]string{"header.from": "example.com", "policy.dmarc": "none"}},
	}
	b.Run("onepass", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Format("mx.example.org", rs)
		}
	})
	ps := asParams(rs)
	b.Run("onepass-params", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Format("mx.example.org", ps)
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			referenceFormat("mx.example.org", rs)
		}
	})
}
