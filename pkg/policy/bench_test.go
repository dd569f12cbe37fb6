package policy

import (
	"context"
	"net/mail"
	"net/netip"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
	"github.com/emersion/go-msgauth/dmarc"
)

const benchRecord = "v=DMARC1; p=reject; sp=quarantine; adkim=r; aspf=r; rua=mailto:dmarc@example.com,mailto:agg@report.example.net; ruf=mailto:f@example.com; fo=1; pct=100"

// BenchmarkParseRecord parses a typical record; BenchmarkParseRecordBaseline
// is go-msgauth's dmarc.Parse on the same text, measured in the same run.
func BenchmarkParseRecord(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(benchRecord); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRecordBaseline(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dmarc.Parse(benchRecord); err != nil {
			b.Fatal(err)
		}
	}
}

var benchFrom = []string{`"Doe, Jane (Accounts)" <jane.doe@mail.example.com>`}

// BenchmarkParseFrom parses a typical From field; the baseline is
// net/mail.ParseAddressList on the same value.
func BenchmarkParseFrom(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if a := ParseFrom(benchFrom); a.Problem != FromOK {
			b.Fatal(a.Err)
		}
	}
}

func BenchmarkParseFromBaseline(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mail.ParseAddressList(benchFrom[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// benchInput is a typical message: relaxed DKIM pass from a subdomain, SPF
// pass from a bounce subdomain, discovered through the tree walk.
func benchInput(b *testing.B, r Resolver) Input {
	ctx := context.Background()
	in := Input{
		SourceIP: netip.MustParseAddr("192.0.2.7"),
		MailFrom: "bounce+123@bounce.example.com",
		RcptTo:   []string{"user@receiver.example"},
		From:     ParseFrom(benchFrom),
		SPF:      verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeMailFrom, Domain: "bounce.example.com"},
		DKIM:     []verify.DKIMResult{{Result: verify.ResultPass, Domain: "example.com", Selector: "s1"}, {Result: verify.ResultFail, Domain: "esp.example.net", Selector: "s2"}},
	}
	Prepare(ctx, r, &in, Options{})
	if v := Evaluate(in); v.Result != ResultPass {
		b.Fatalf("bench message does not pass: %+v", v)
	}
	return in
}

func benchDNS(b *testing.B) Resolver {
	srv, res := newDNS(b, "")
	srv.Add(txtRR("_dmarc.example.com", benchRecord))
	return res
}

// BenchmarkEvaluate is the pure evaluation, with every DNS answer in the
// Input.
func BenchmarkEvaluate(b *testing.B) {
	in := benchInput(b, benchDNS(b))
	b.ReportAllocs()
	for b.Loop() {
		if v := Evaluate(in); v.Action != ActionAccept {
			b.Fatal(v.Action)
		}
	}
}

// BenchmarkEvaluateWarmCache is the whole per-message path of this package
// (ParseFrom, Discover, Prepare, Evaluate) against a warm pkg/cache, as the
// milter runs it for a sender seen before.
func BenchmarkEvaluateWarmCache(b *testing.B) {
	r := benchDNS(b)
	benchInput(b, r) // warms the cache
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		in := Input{
			SourceIP: netip.MustParseAddr("192.0.2.7"),
			MailFrom: "bounce+123@bounce.example.com",
			From:     ParseFrom(benchFrom),
			SPF:      verify.SPFResult{Result: verify.ResultPass, Scope: verify.ScopeMailFrom, Domain: "bounce.example.com"},
			DKIM:     []verify.DKIMResult{{Result: verify.ResultPass, Domain: "example.com", Selector: "s1"}},
		}
		Prepare(ctx, r, &in, Options{})
		if v := Evaluate(in); v.Result != ResultPass {
			b.Fatal(v.Result)
		}
	}
}

// BenchmarkWarmLookupTXTBaseline is one warm pkg/cache TXT lookup, the unit
// of cost the tree walk multiplies.
func BenchmarkWarmLookupTXTBaseline(b *testing.B) {
	r := benchDNS(b)
	ctx := context.Background()
	if _, err := r.LookupTXT(ctx, "_dmarc.example.com."); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.LookupTXT(ctx, "_dmarc.example.com."); err != nil {
			b.Fatal(err)
		}
	}
}
