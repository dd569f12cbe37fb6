package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestClaimExactlyOnce: two claimers, each with its own Store on one
// database, race for the same many reports; every report is claimed by
// exactly one of them.
func TestClaimExactlyOnce(t *testing.T) {
	const keys = 60
	forEngines(t, func(t *testing.T, url string) {
		clk := newClock(day0.Add(25 * time.Hour))
		setup := open(t, url, clk)
		var rows []Row
		for i := range keys {
			rows = append(rows, row(fmt.Sprintf("d%02d.example", i), "192.0.2.1", 1))
		}
		record(t, setup, rows...)
		groups, err := setup.DueGroups(context.Background(), Window{Grace: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if len(groups) != keys {
			t.Fatalf("%d due groups, want %d", len(groups), keys)
		}
		claimers := []*Store{open(t, url, clk), open(t, url, clk)}
		var mu sync.Mutex
		wins := map[string][]string{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, s := range claimers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				holder := fmt.Sprintf("mx%d", i)
				for j := range groups {
					// One claimer goes forwards, the other backwards,
					// so that they meet in the middle.
					g := groups[j]
					if i == 1 {
						g = groups[len(groups)-1-j]
					}
					_, err := s.ClaimReport(context.Background(), g, holder, time.Hour)
					if errors.Is(err, ErrNotClaimed) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					wins[g.Policy.Domain] = append(wins[g.Policy.Domain], holder)
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
		perHolder := map[string]int{}
		for _, g := range groups {
			if w := wins[g.Policy.Domain]; len(w) != 1 {
				t.Errorf("%s claimed by %v, want exactly one", g.Policy.Domain, w)
			} else {
				perHolder[w[0]]++
			}
		}
		t.Logf("claims per holder: %v", perHolder)
		// Nothing is due while the leases run.
		if due, err := setup.DueGroups(context.Background(), Window{Grace: time.Hour}); err != nil || len(due) != 0 {
			t.Errorf("due while claimed: %v, %v", due, err)
		}
	})
}

// TestLateRows: rows that arrive after their period's report was claimed
// are kept and counted as late, never added to the report or reported again.
func TestLateRows(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		clk := newClock(day0.Add(25 * time.Hour))
		s := open(t, url, clk)
		record(t, s, row("example.com", "192.0.2.1", 5), row("example.com", "192.0.2.2", 1))
		c, err := s.ClaimReport(ctx, group("example.com"), "mx1", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if c.Rows != 2 {
			t.Errorf("claim sealed %d rows, want 2", c.Rows)
		}
		// The same row again, and a new one: both late.
		res := record(t, s, row("example.com", "192.0.2.1", 3), row("example.com", "192.0.2.3", 1),
			row("other.example", "192.0.2.1", 1))
		if res.LateRows != 2 || res.LateMessages != 4 || res.Messages != 5 {
			t.Errorf("RecordRows = %+v, want 2 late rows of 4 messages out of 5", res)
		}
		got, err := s.ReportRows(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int64{}
		for _, r := range got {
			counts[r.SourceIP.String()] += r.Count
		}
		if want := map[string]int64{"192.0.2.1": 5, "192.0.2.2": 1}; !cmp.Equal(counts, want) {
			t.Errorf("report rows: counts by IP %v, want %v (unchanged by late rows)", counts, want)
		}
		all, err := s.GroupRows(ctx, group("example.com"))
		if err != nil {
			t.Fatal(err)
		}
		var late, onTime int64
		for _, r := range all {
			if r.Late {
				late += r.Count
			} else {
				onTime += r.Count
			}
		}
		if late != 4 || onTime != 6 {
			t.Errorf("group rows: %d late, %d on time; want 4 and 6", late, onTime)
		}
		// Late again: the late rows aggregate among themselves.
		record(t, s, row("example.com", "192.0.2.1", 1))
		if all, _ := s.GroupRows(ctx, group("example.com")); len(all) != 4 {
			t.Errorf("%d rows in the group, want 4 (2 sealed, 2 late)", len(all))
		}
		// After the claim is released and the lease is over, the group
		// is not due again for its late rows (only other.example is).
		if err := s.Release(ctx, c); err != nil {
			t.Fatal(err)
		}
		clk.Add(2 * time.Hour)
		due, err := s.DueGroups(ctx, Window{Grace: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range due {
			if g.Policy.Domain == "example.com" {
				// It is due as an unbuilt report; the claim must
				// not seal the late rows into it.
				c2, err := s.ClaimReport(ctx, g, "mx2", time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				if rows, _ := s.ReportRows(ctx, c2); len(rows) != 2 || c2.Rows != 2 {
					t.Errorf("re-claim has %d rows (claim says %d), want the 2 sealed", len(rows), c2.Rows)
				}
			}
		}
		st, err := s.Status(ctx, day0)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 2 || st[0].Domain != "example.com" || st[0].LateMessages != 5 {
			t.Errorf("status = %+v, want example.com with 5 late messages", st)
		}
	})
}

// TestReportLifecycle: due groups, claim, build, deliveries, retries, lease
// takeover with the same report, suppression, done.
func TestReportLifecycle(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		clk := newClock(day0.Add(24*time.Hour + 30*time.Minute))
		s := open(t, url, clk)
		other := open(t, url, clk)
		record(t, s, row("example.com", "192.0.2.1", 2))
		w := Window{Grace: time.Hour, MaxAge: 72 * time.Hour}

		// Within the grace time: not due.
		mustDue(t, s, w)
		clk.Set(day0.Add(25 * time.Hour))
		mustDue(t, s, w, "example.com")

		c, err := s.ClaimReport(ctx, group("example.com"), "mx1", 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if c.State != ReportBuilding || c.Built != nil {
			t.Fatalf("new claim: state %s, built %v", c.State, c.Built)
		}
		if _, err := other.ClaimReport(ctx, group("example.com"), "mx2", time.Minute); !errors.Is(err, ErrNotClaimed) {
			t.Fatalf("second claim: %v, want ErrNotClaimed", err)
		}
		built := Built{ReportID: "r1", Filename: "rcv!example.com!1!2!r1.xml.gz", Data: []byte{0x1f, 0x8b, 0, 1, 2},
			Deliveries: []Delivery{
				{Address: "a@example.com", State: DeliveryPending},
				{Address: "b@example.com", State: DeliveryPending},
				{Address: "c@elsewhere.example", State: DeliverySkippedUnverified, Detail: "no _report._dmarc record"},
				{Address: "d@example.com", State: DeliverySuppressed, Detail: "suppressed until ..."},
			}}
		if err := s.SaveBuilt(ctx, c, built); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveBuilt(ctx, c, built); !errors.Is(err, ErrInvalid) {
			t.Errorf("second SaveBuilt: %v, want ErrInvalid", err)
		}
		if err := s.MarkSent(ctx, c, "a@example.com"); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkSent(ctx, c, "a@example.com"); !errors.Is(err, ErrNotFound) {
			t.Errorf("sent twice: %v, want ErrNotFound", err)
		}
		next := clk.Now().Add(30 * time.Minute)
		if err := s.MarkFailed(ctx, c, "b@example.com", Failure{Temporary: true, Err: "451 try later", Next: next}); err != nil {
			t.Fatal(err)
		}
		if err := s.Release(ctx, c); err != nil {
			t.Fatal(err)
		}
		mustDue(t, s, w) // b's next attempt has not come
		clk.Set(next)
		mustDue(t, s, w, "example.com")

		// Another host takes it over: the same report, not a new one.
		c2, err := other.ClaimReport(ctx, group("example.com"), "mx2", 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if c2.Built == nil || c2.Built.ReportID != "r1" || c2.Built.Filename != built.Filename ||
			!cmp.Equal(c2.Built.Data, built.Data) || c2.State != ReportBuilt {
			t.Fatalf("takeover sees %+v, want the built report r1", c2.Built)
		}
		if err := s.MarkSent(ctx, c, "b@example.com"); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("old claim after takeover: %v, want ErrLeaseLost", err)
		}
		until := clk.Now().Add(7 * 24 * time.Hour)
		if err := other.MarkFailed(ctx, c2, "b@example.com", Failure{Err: "550 no such user", SuppressUntil: until}); err != nil {
			t.Fatal(err)
		}
		if c2.State != ReportDone {
			t.Errorf("after the last destination: state %s, want done", c2.State)
		}
		wantDeliveries := []Delivery{
			{Address: "a@example.com", State: DeliverySent, Attempts: 1, Sent: day0.Add(25 * time.Hour)},
			{Address: "b@example.com", State: DeliveryFailedPerm, Attempts: 2, Detail: "550 no such user"},
			{Address: "c@elsewhere.example", State: DeliverySkippedUnverified, Detail: "no _report._dmarc record"},
			{Address: "d@example.com", State: DeliverySuppressed, Detail: "suppressed until ..."},
		}
		if diff := cmp.Diff(wantDeliveries, c2.Deliveries); diff != "" {
			t.Errorf("deliveries (-want +got):\n%s", diff)
		}
		sup, ok, err := s.Suppressed(ctx, "b@example.com")
		if err != nil || !ok || !sup.Until.Equal(until) || sup.Reason != "550 no such user" {
			t.Errorf("Suppressed = %+v, %v, %v", sup, ok, err)
		}
		mustDue(t, s, w)
		if _, err := s.ClaimReport(ctx, group("example.com"), "mx3", time.Minute); !errors.Is(err, ErrNotClaimed) {
			t.Errorf("claim of a done report: %v, want ErrNotClaimed", err)
		}

		st, err := s.Status(ctx, day0)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus := []DomainStatus{{Domain: "example.com", Rows: 1, Messages: 2, Reports: 1,
			LastSent: day0.Add(25 * time.Hour), Failures: 1,
			Suppressed: []Suppression{{Address: "b@example.com", Until: until, Reason: "550 no such user", Created: next}}}}
		if diff := cmp.Diff(wantStatus, st); diff != "" {
			t.Errorf("status (-want +got):\n%s", diff)
		}
		reps, err := s.Reports(ctx, "example.com", day0)
		if err != nil || len(reps) != 1 || reps[0].ReportID != "r1" || reps[0].State != ReportDone ||
			reps[0].Holder != "mx2" || len(reps[0].Deliveries) != 4 || reps[0].Rows != 1 {
			t.Errorf("Reports = %+v, %v", reps, err)
		}
		// Too old: a period beyond MaxAge is never due.
		clk.Set(day0.Add(5 * 24 * time.Hour))
		record(t, s, row("late.example", "192.0.2.9", 1))
		mustDue(t, s, w)
	})
}

// mustDue checks the domains of the due groups.
func mustDue(t *testing.T, s *Store, w Window, domains ...string) {
	t.Helper()
	due, err := s.DueGroups(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range due {
		got = append(got, g.Policy.Domain)
	}
	if !cmp.Equal(got, domains, cmpEmpty) {
		t.Errorf("at %v due %v, want %v", s.now(), got, domains)
	}
}

var cmpEmpty = cmp.Comparer(func(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
})

// TestRecordWhileClaiming: recorders keep writing into a group while its
// report is claimed. No message is lost (the sealed rows and the late rows add
// up to what was recorded) and the report's rows do not change after the
// claim.
func TestRecordWhileClaiming(t *testing.T) {
	const recorders, batches = 2, 30
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		clk := newClock(day0.Add(25 * time.Hour))
		claimer := open(t, url, clk)
		record(t, claimer, row("example.com", "192.0.2.250", 1))
		var wg sync.WaitGroup
		var total sync.Map
		for w := range recorders {
			s := open(t, url, clk)
			wg.Add(1)
			go func() {
				defer wg.Done()
				var n int64
				for b := range batches {
					var rows []Row
					for i := range 20 {
						rows = append(rows, row("example.com", fmt.Sprintf("192.0.2.%d", (i*7+b+w)%40), 1))
					}
					if _, err := s.RecordRows(ctx, rows); err != nil {
						t.Error(err)
						return
					}
					n += int64(len(rows))
				}
				total.Store(w, n)
			}()
		}
		time.Sleep(20 * time.Millisecond)
		c, err := claimer.ClaimReport(ctx, group("example.com"), "mx", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		sum := func(rows []Row, err error) (n int64) {
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				n += r.Count
			}
			return n
		}
		atClaim := sum(claimer.ReportRows(ctx, c))
		wg.Wait()
		want := int64(1)
		total.Range(func(_, v any) bool { want += v.(int64); return true })
		if got := sum(claimer.GroupRows(ctx, group("example.com"))); got != want {
			t.Errorf("group holds %d messages, %d recorded", got, want)
		}
		if after := sum(claimer.ReportRows(ctx, c)); after != atClaim {
			t.Errorf("report rows changed after the claim: %d messages, then %d", atClaim, after)
		}
		t.Logf("%d of %d messages in the report, the rest late", atClaim, want)
	})
}
