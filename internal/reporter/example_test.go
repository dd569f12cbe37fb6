package reporter_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/reporter"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

func ExamplePeriod() {
	t := time.Date(2026, 12, 6, 14, 30, 0, 0, time.FixedZone("CET", 3600))
	for _, iv := range []time.Duration{24 * time.Hour, 6 * time.Hour} {
		begin, end := reporter.Period(t, iv)
		fmt.Println(begin.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	// Output:
	// 2026-12-06T00:00:00Z 2026-12-07T00:00:00Z
	// 2026-12-06T12:00:00Z 2026-12-06T18:00:00Z
}

func ExampleBuildFile() {
	begin := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	g := store.Group{Begin: begin, End: begin.Add(24 * time.Hour),
		Policy: store.Policy{Domain: "example.com", P: "reject", ADKIM: "r", ASPF: "r", Testing: "n", DiscoveryMethod: "treewalk"}}
	rows := []store.Row{{Begin: g.Begin, End: g.End, Policy: g.Policy, SourceIP: netip.MustParseAddr("192.0.2.1"),
		HeaderFrom: "example.com", EnvelopeFrom: "example.com", Disposition: "pass", DKIMAligned: "pass", SPFAligned: "pass",
		SPF: &store.SPFResult{Domain: "example.com", Scope: "mfrom", Result: "pass"}, Count: 42}}
	id := &reporter.Identity{OrgName: "Example Org", Email: "dmarc@example.org", From: "dmarc@example.org"}
	f, err := reporter.BuildFile(id, g, rows, bytes.NewReader(make([]byte, 64)))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(f.Filename)
	fmt.Println(f.Records, "record,", f.Messages, "messages")
	// Output:
	// example.org!example.com!1796515200!1796601600!20261206aaaaaaaaaaaaaaaaaaaaaaaa.xml.gz
	// 1 record, 42 messages
}
