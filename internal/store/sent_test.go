package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// sentOn stores the report of domain for the day d: rows recorded rows,
// claimed, and unless claimOnly built with three destinations of which
// failed failed (the first temporarily, the second for good); the others
// were sent.
func sentOn(t *testing.T, s *Store, domain string, d time.Time, rows, failed int, claimOnly bool) {
	t.Helper()
	ctx := context.Background()
	var rs []Row
	for i := range rows {
		r := row(domain, fmt.Sprintf("192.0.2.%d", i+1), int64(10+i))
		r.Begin, r.End = d, d.Add(24*time.Hour)
		rs = append(rs, r)
	}
	record(t, s, rs...)
	cl, err := s.ClaimReport(ctx, Group{Policy: policy(domain), Begin: d, End: d.Add(24 * time.Hour)}, "h", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if claimOnly {
		return
	}
	dests := []string{"a@" + domain, "b@" + domain, "c@" + domain}
	var ds []Delivery
	for _, a := range dests {
		ds = append(ds, Delivery{Address: a, State: DeliveryPending})
	}
	if err := s.SaveBuilt(ctx, cl, Built{ReportID: domain + d.Format("-2006-01-02"), Filename: "f", Data: []byte("x"), Deliveries: ds}); err != nil {
		t.Fatal(err)
	}
	for i, a := range dests {
		switch {
		case i < failed:
			err = s.MarkFailed(ctx, cl, a, Failure{Temporary: i == 0, Err: "451 busy", Next: d.Add(48 * time.Hour)})
		default:
			err = s.MarkSent(ctx, cl, a)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func failedOf(r SentReport) int {
	n := 0
	for _, d := range r.Deliveries {
		if d.State == DeliveryFailedTemp || d.State == DeliveryFailedPerm {
			n++
		}
	}
	return n
}

// wantSentOrder sorts every report the way SentReportList documents:
// the key in the asked direction, then period begin, domain (ascending).
func wantSentOrder(all []SentReport, by SentSort, desc bool) []SentReport {
	out := slices.Clone(all)
	key := func(a, b SentReport) int {
		switch by {
		case SentByPeriod:
			return cmp.Or(a.End.Compare(b.End), a.Begin.Compare(b.Begin))
		case SentByDomain:
			return cmp.Compare(a.Domain, b.Domain)
		case SentByState:
			return cmp.Compare(a.State, b.State)
		case SentByRows:
			return cmp.Compare(a.Rows, b.Rows)
		case SentByFailed:
			return cmp.Compare(failedOf(a), failedOf(b))
		}
		panic(by)
	}
	slices.SortStableFunc(out, func(a, b SentReport) int {
		k := key(a, b)
		if desc {
			k = -k
		}
		return cmp.Or(k, a.Begin.Compare(b.Begin), cmp.Compare(a.Domain, b.Domain))
	})
	return out
}

// TestSentReportList: the reports page sorted and cut in SQL is the first
// reports of every report of the range (SentReports) sorted in Go, for
// each key and direction, on both engines, with the count of the range.
func TestSentReportList(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		s := open(t, url, newClock(day0.Add(72*time.Hour)))
		ctx := context.Background()
		days := []time.Time{day0.Add(-48 * time.Hour), day0.Add(-24 * time.Hour), day0}
		domains := []string{"c.example", "a.example", "b.example", "d.example"}
		for di, d := range days {
			for i, dom := range domains {
				sentOn(t, s, dom, d, (i*3+di)%4+1, (i+di)%3, dom == "d.example" && di == 2)
			}
		}
		since, until := days[0], day0.Add(24*time.Hour)
		all, err := s.SentReports(ctx, since, until)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 12 {
			t.Fatalf("SentReports: %d reports, want 12", len(all))
		}
		for _, by := range []SentSort{SentByPeriod, SentByDomain, SentByState, SentByRows, SentByFailed} {
			for _, desc := range []bool{false, true} {
				for _, limit := range []int{5, 100} {
					t.Run(fmt.Sprintf("%s-desc=%v-limit=%d", by, desc, limit), func(t *testing.T) {
						got, err := s.SentReportList(ctx, SentQuery{Since: since, Until: until, Sort: by, Desc: desc, Limit: limit})
						if err != nil {
							t.Fatal(err)
						}
						want := wantSentOrder(all, by, desc)
						want = want[:min(limit, len(want))]
						if got.Total != 12 {
							t.Errorf("Total %d, want 12", got.Total)
						}
						if len(got.Reports) != len(want) {
							t.Fatalf("%d reports, want %d", len(got.Reports), len(want))
						}
						for i := range want {
							g, w := got.Reports[i], want[i]
							if g.Domain != w.Domain || !g.Begin.Equal(w.Begin) || g.State != w.State || g.Rows != w.Rows ||
								g.ReportID != w.ReportID || len(g.Deliveries) != len(w.Deliveries) || failedOf(g) != failedOf(w) {
								t.Errorf("report %d: got %s %s %s rows %d failed %d, want %s %s %s rows %d failed %d", i,
									g.Domain, g.Begin.Format(time.DateOnly), g.State, g.Rows, failedOf(g),
									w.Domain, w.Begin.Format(time.DateOnly), w.State, w.Rows, failedOf(w))
							}
						}
					})
				}
			}
		}
		// Two failed destinations: b.example on the first day (the
		// earliest of those), then a.example on the second.
		got, err := s.SentReportList(ctx, SentQuery{Since: since, Until: until, Sort: SentByFailed, Desc: true, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Reports) != 2 || got.Reports[0].Domain != "b.example" || !got.Reports[0].Begin.Equal(days[0]) ||
			got.Reports[1].Domain != "a.example" || !got.Reports[1].Begin.Equal(days[1]) || failedOf(got.Reports[0]) != 2 {
			t.Errorf("most failed first: %+v", got.Reports)
		}
		// The newest first by default: day0's reports by domain, the one
		// only claimed among them with no destination yet.
		got, err = s.SentReportList(ctx, SentQuery{Since: since, Until: until, Sort: SentByPeriod, Desc: true, Limit: 4})
		if err != nil {
			t.Fatal(err)
		}
		var doms []string
		for _, r := range got.Reports {
			doms = append(doms, r.Domain)
			if !r.Begin.Equal(day0) {
				t.Errorf("%s of %s in the newest four", r.Domain, r.Begin)
			}
		}
		if !slices.Equal(doms, []string{"a.example", "b.example", "c.example", "d.example"}) || len(got.Reports[3].Deliveries) != 0 ||
			got.Reports[3].State != ReportBuilding {
			t.Errorf("newest four: %v, last %+v", doms, got.Reports[3])
		}
		// A range of one day counts and lists that day's reports only.
		one, err := s.SentReportList(ctx, SentQuery{Since: days[1], Until: days[2], Sort: SentByDomain, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		if one.Total != 4 || len(one.Reports) != 4 || one.Reports[0].Domain != "a.example" || !one.Reports[0].Begin.Equal(days[1]) {
			t.Errorf("one day: total %d, %+v", one.Total, one.Reports)
		}
		empty, err := s.SentReportList(ctx, SentQuery{Since: day0.Add(-240 * time.Hour), Until: days[0], Sort: SentByPeriod, Limit: 500})
		if err != nil || empty.Total != 0 || len(empty.Reports) != 0 {
			t.Errorf("empty range: %+v %v", empty, err)
		}
		for _, q := range []SentQuery{{Since: since, Until: until, Sort: "id; DROP TABLE reports", Limit: 5}, {Since: since, Until: until, Sort: SentByRows}} {
			if _, err := s.SentReportList(ctx, q); !errors.Is(err, ErrInvalid) {
				t.Errorf("%+v: %v, want ErrInvalid", q, err)
			}
		}
	})
}
