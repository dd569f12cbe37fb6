package mailout_test

import (
	"context"
	"fmt"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/internal/mailout"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

func ExampleParseRUA() {
	for _, u := range mailout.ParseRUA("mailto:dmarc@example.com!10m, https://x.example/, mailto:a@b.example%2Cc@d.example") {
		fmt.Printf("%q %q %q\n", u.Raw, u.Address, u.Reason)
	}
	// Output:
	// "mailto:dmarc@example.com!10m" "dmarc@example.com" ""
	// "https://x.example/" "" "unsupported-scheme"
	// "mailto:a@b.example%2Cc@d.example" "" "multiple-addresses"
}

func ExampleDestinations() {
	srv, err := dnstest.Start(`
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"
*._report._dmarc.reports.example.net. 300 IN TXT "v=DMARC1"`)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	r, _ := cache.New(cache.Config{Nameservers: []string{srv.Addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// The rua of _dmarc.example.com as it stands at send time.
	rua := "mailto:dmarc@example.com,mailto:agg@reports.example.net,mailto:x@unauthorized.example"
	for _, d := range mailout.Destinations(ctx, r, "example.com", rua, policy.MethodTreeWalk) {
		fmt.Printf("%s %s external=%v %q\n", d.Address, d.State, d.External, d.Reason)
	}
	// Output:
	// dmarc@example.com send external=false ""
	// agg@reports.example.net send external=true ""
	// x@unauthorized.example skip external=true "external-not-authorized"
}
