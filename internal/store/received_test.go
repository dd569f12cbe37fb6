package store

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// received is a two-day report for domain from reporter with one row of 30
// messages from ip (10 on day0, 20 on the day after).
func received(domain, reporter, id, ip string) *ReceivedReport {
	return &ReceivedReport{
		OrgName: reporter, Email: "noreply@" + reporter, ReportID: id, Domain: domain,
		Begin: day0, End: day0.Add(48 * time.Hour), Policy: policy(domain), Origin: "test",
		Rows: []ReceivedRow{{
			SourceIP: netip.MustParseAddr(ip), Count: 30, Disposition: "none", DKIMAligned: "pass", SPFAligned: "fail",
			HeaderFrom: domain, EnvelopeFrom: "bounce.esp.example",
			DKIM: []DKIMResult{{Domain: domain, Selector: "s1", Result: "pass"}},
			SPF:  &SPFResult{Domain: "bounce.esp.example", Scope: "mfrom", Result: "pass"},
			Days: []DayCount{{Day: day0, Count: 10}, {Day: day0.Add(24 * time.Hour), Count: 20}},
		}},
	}
}

// TestStoreReceived: a report is stored once (the same key again is a
// duplicate that writes nothing; a reused report ID for another period is
// another report), its per-day counts answer range questions exactly, and
// its sources keep first/last seen and the PTR outcome.
func TestStoreReceived(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url, newClock(day0.Add(72*time.Hour)))
		rep := received("example.com", "receiver.example", "r1", "192.0.2.1")
		res, err := s.StoreReceived(ctx, rep)
		if err != nil {
			t.Fatal(err)
		}
		if res.Duplicate || res.Rows != 1 || res.Messages != 30 || len(res.Unresolved) != 1 {
			t.Fatalf("first store = %+v", res)
		}
		again, err := s.StoreReceived(ctx, rep)
		if err != nil || !again.Duplicate || again.ID != 0 {
			t.Fatalf("second store = %+v, %v; want a duplicate", again, err)
		}
		// The same report ID for the next period (Google and Mimecast reuse
		// IDs) is a new report.
		next := received("example.com", "receiver.example", "r1", "192.0.2.1")
		next.Begin, next.End = next.Begin.Add(48*time.Hour), next.End.Add(48*time.Hour)
		next.Rows[0].Days = []DayCount{{Day: next.Begin, Count: 30}}
		if res, err := s.StoreReceived(ctx, next); err != nil || res.Duplicate {
			t.Fatalf("next period = %+v, %v", res, err)
		}
		reports, rows, messages, err := s.ReceivedCount(ctx, "example.com")
		if err != nil || reports != 2 || rows != 2 || messages != 60 {
			t.Fatalf("ReceivedCount = %d, %d, %d, %v; want 2, 2, 60", reports, rows, messages, err)
		}

		// Day 1 alone holds 20 of the first report's messages.
		got, err := s.ReceivedIn(ctx, "example.com", day0.Add(24*time.Hour), day0.Add(48*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Messages != 20 || got[0].Count != 20 || got[0].EnvelopeFrom != "bounce.esp.example" {
			t.Fatalf("ReceivedIn(day 1) = %+v", got)
		}
		if diff := cmp.Diff(rep.Rows[0].DKIM, got[0].DKIM); diff != "" {
			t.Errorf("dkim (-want +got):\n%s", diff)
		}
		if got[0].SPF == nil || *got[0].SPF != *rep.Rows[0].SPF {
			t.Errorf("spf = %+v", got[0].SPF)
		}
		// Both reports tell of the same facts: one total.
		all, err := s.ReceivedIn(ctx, "example.com", day0, day0.Add(10*24*time.Hour))
		if err != nil || len(all) != 1 || all[0].Messages != 60 {
			t.Fatalf("ReceivedIn(all) = %+v, %v", all, err)
		}
		if other, _ := s.ReceivedIn(ctx, "example.org", day0, day0.Add(10*24*time.Hour)); len(other) != 0 {
			t.Errorf("another domain's rows: %+v", other)
		}

		ip := netip.MustParseAddr("192.0.2.1")
		pending, err := s.PendingSources(ctx, day0.Add(72*time.Hour), 10)
		if err != nil || len(pending) != 1 || pending[0] != ip {
			t.Fatalf("PendingSources = %v, %v", pending, err)
		}
		if err := s.SetSourcePTR(ctx, ip, PTRFound, "mta1.esp.example", "esp.example", day0.Add(72*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if pending, _ := s.PendingSources(ctx, day0.Add(96*time.Hour), 10); len(pending) != 0 {
			t.Errorf("still pending: %v", pending)
		}
		seen, err := s.SourcesOf(ctx, "example.com")
		if err != nil {
			t.Fatal(err)
		}
		src := seen[ip]
		if src.PTR != "mta1.esp.example" || src.PTROrg != "esp.example" || !src.DomainFirstSeen.Equal(day0) ||
			!src.DomainLastSeen.Equal(day0.Add(96*time.Hour)) || !src.LastSeen.Equal(day0.Add(96*time.Hour)) {
			t.Errorf("SourcesOf = %+v", src)
		}
		names, err := s.SeenNamesOf(ctx, "example.com", day0, 100)
		if err != nil || len(names.DKIM) != 1 || names.DKIM[0].Selector != "s1" || len(names.Domains) != 2 {
			t.Errorf("SeenNamesOf = %+v, %v", names, err)
		}
	})
}

// TestStoreReceivedInvalid: a report whose days do not add up to its count
// is refused before anything is written.
func TestStoreReceivedInvalid(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		s := open(t, url, nil)
		rep := received("example.com", "r.example", "x", "192.0.2.1")
		rep.Rows[0].Days[0].Count = 11
		if _, err := s.StoreReceived(context.Background(), rep); !errors.Is(err, ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
		if n, _, _, _ := s.ReceivedCount(context.Background(), ""); n != 0 {
			t.Errorf("%d reports stored", n)
		}
	})
}

// TestRefusalsHealthExpire: refusal counters add up per day and reason,
// health checks are read back latest first, and Expire's Received
// retention takes old reports (with their rows and days), sources,
// refusals and checks.
func TestRefusalsHealthExpire(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url, nil)
		for range 2 {
			if err := s.AddRefusals(ctx, day0.Add(time.Hour), map[string]int64{"not_our_domain": 2, "too_large": 1}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Refusals(ctx, day0, day0.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]int64{"not_our_domain": 4, "too_large": 2}, got); diff != "" {
			t.Errorf("Refusals (-want +got):\n%s", diff)
		}
		for i, v := range []string{"warn", "ok"} {
			if err := s.SaveHealth(ctx, HealthCheck{Domain: "example.com", Checked: day0.Add(time.Duration(i) * time.Hour),
				Verdict: v, Report: json.RawMessage(`{"version":1}`)}); err != nil {
				t.Fatal(err)
			}
		}
		h, err := s.LatestHealth(ctx, "example.com")
		if err != nil || h.Verdict != "ok" || string(h.Report) != `{"version":1}` {
			t.Fatalf("LatestHealth = %+v, %v", h, err)
		}
		if _, err := s.LatestHealth(ctx, "example.org"); !errors.Is(err, ErrNotFound) {
			t.Errorf("LatestHealth(unknown) err = %v", err)
		}
		if _, err := s.StoreReceived(ctx, received("example.com", "r.example", "old", "192.0.2.1")); err != nil {
			t.Fatal(err)
		}
		recent := received("example.com", "r.example", "new", "192.0.2.2")
		recent.Begin, recent.End = day0.Add(400*24*time.Hour), day0.Add(402*24*time.Hour)
		recent.Rows[0].Days = []DayCount{{Day: recent.Begin, Count: 30}}
		if _, err := s.StoreReceived(ctx, recent); err != nil {
			t.Fatal(err)
		}
		ex, err := s.Expire(ctx, day0.Add(403*24*time.Hour), Retention{Received: 365 * 24 * time.Hour})
		if err != nil || ex.Received != 1 {
			t.Fatalf("Expire = %+v, %v; want 1 received report", ex, err)
		}
		reports, rows, messages, _ := s.ReceivedCount(ctx, "")
		if reports != 1 || rows != 1 || messages != 30 {
			t.Errorf("after expiry: %d reports, %d rows, %d messages", reports, rows, messages)
		}
		var days int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM received_days`).Scan(&days); err != nil || days != 1 {
			t.Errorf("received_days = %d, %v; want the recent report's 1", days, err)
		}
		if _, err := s.GetSource(ctx, netip.MustParseAddr("192.0.2.1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("old source kept: %v", err)
		}
		if r, _ := s.Refusals(ctx, day0, day0.Add(24*time.Hour)); len(r) != 0 {
			t.Errorf("old refusals kept: %v", r)
		}
		if _, err := s.LatestHealth(ctx, "example.com"); !errors.Is(err, ErrNotFound) {
			t.Errorf("old health check kept: %v", err)
		}
	})
}

// TestStoreReceivedBatch: a batch stores its reports in one transaction; a
// report twice in the batch, or already stored, is a duplicate.
func TestStoreReceivedBatch(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url, nil)
		a := received("example.com", "r.example", "a", "192.0.2.1")
		b := received("example.com", "r.example", "b", "192.0.2.2")
		if _, err := s.StoreReceived(ctx, b); err != nil {
			t.Fatal(err)
		}
		res, err := s.StoreReceivedBatch(ctx, []*ReceivedReport{a, a, b})
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 3 || res[0].Duplicate || res[0].Rows != 1 || !res[1].Duplicate || !res[2].Duplicate {
			t.Errorf("batch = %+v", res)
		}
		if n, rows, msgs, _ := s.ReceivedCount(ctx, ""); n != 2 || rows != 2 || msgs != 60 {
			t.Errorf("stored %d reports, %d rows, %d messages", n, rows, msgs)
		}
	})
}
