package store_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// Example records a day's rows, then builds and sends its report once: the
// path of the recorder and of the reporter.
func Example() {
	dir, err := os.MkdirTemp("", "store-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	s, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "dmarc-milter.db"), store.Options{Now: func() time.Time { return now }})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// The recorder: one row per evaluated message; equal rows add up.
	day := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	row := store.Row{
		Begin: day, End: day.Add(24 * time.Hour),
		Policy:   store.Policy{Domain: "example.com", P: "reject", ADKIM: "r", ASPF: "r", Testing: "n", DiscoveryMethod: "treewalk"},
		SourceIP: netip.MustParseAddr("192.0.2.1"), HeaderFrom: "example.com", EnvelopeFrom: "example.com",
		Disposition: "none", DKIMAligned: "pass", SPFAligned: "fail",
		DKIM:  []store.DKIMResult{{Domain: "example.com", Selector: "s1", Result: "pass"}},
		SPF:   &store.SPFResult{Domain: "example.com", Scope: "mfrom", Result: "softfail"},
		Count: 1,
	}
	res, err := s.RecordRows(ctx, []store.Row{row, row, row})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("recorded %d messages in %d row\n", res.Messages, res.Rows)

	// The reporter: every closed group, claimed by exactly one host.
	groups, err := s.DueGroups(ctx, store.Window{Grace: time.Hour, MaxAge: 7 * 24 * time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	for _, g := range groups {
		c, err := s.ClaimReport(ctx, g, "mx1.example.net", 10*time.Minute)
		if err != nil {
			log.Fatal(err)
		}
		rows, err := s.ReportRows(ctx, c)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("report for %s: %d row of %d messages\n", g.Policy.Domain, len(rows), rows[0].Count)
		built := store.Built{ReportID: "x1", Filename: "mx.example.net!example.com!1796515200!1796601600!x1.xml.gz",
			Data: []byte("..."), Deliveries: []store.Delivery{{Address: "rua@example.com", State: store.DeliveryPending}}}
		if err := s.SaveBuilt(ctx, c, built); err != nil {
			log.Fatal(err)
		}
		if err := s.MarkSent(ctx, c, "rua@example.com"); err != nil {
			log.Fatal(err)
		}
		fmt.Println("report", c.State)
	}
	// Output:
	// recorded 3 messages in 1 row
	// report for example.com: 1 row of 3 messages
	// report done
}
