package report

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSpreadDays(t *testing.T) {
	t.Parallel()
	d1, d2, d3 := day(2025, 12, 1), day(2025, 12, 2), day(2025, 12, 3)
	h := time.Hour
	cases := []struct {
		name  string
		dr    DateRange
		count uint64
		want  []DayCount
	}{
		{"one day, half-open", DateRange{Begin: d1, End: d2}, 10, []DayCount{{Day: d1, Count: 10}}},
		{"one day, inclusive end 23:59:59", DateRange{Begin: d1, End: d2.Add(-time.Second)}, 10, []DayCount{{Day: d1, Count: 10}}},
		{"hours within a day", DateRange{Begin: d1.Add(6 * h), End: d1.Add(7 * h)}, 3, []DayCount{{Day: d1, Count: 3}}},
		{"two halves", DateRange{Begin: d1.Add(12 * h), End: d2.Add(12 * h)}, 10, []DayCount{{Day: d1, Count: 5}, {Day: d2, Count: 5}}},
		{"odd count, tie to the earlier day", DateRange{Begin: d1.Add(12 * h), End: d2.Add(12 * h)}, 11, []DayCount{{Day: d1, Count: 6}, {Day: d2, Count: 5}}},
		{"exact shares", DateRange{Begin: d1.Add(16 * h), End: d2.Add(24 * h)}, 4, []DayCount{{Day: d1, Count: 1}, {Day: d2, Count: 3}}},    // 8h/32h → 1.0, 24h/32h → 3.0
		{"exact shares over two days", DateRange{Begin: d1.Add(18 * h), End: d3}, 10, []DayCount{{Day: d1, Count: 2}, {Day: d2, Count: 8}}}, // 6/30 → 2.0, 24/30 → 8.0
		{"largest remainder wins", DateRange{Begin: d1.Add(20 * h), End: d3}, 10, []DayCount{{Day: d1, Count: 1}, {Day: d2, Count: 9}}},     // 4/28 → 1.43, 24/28 → 8.57
		{"one message over three days", DateRange{Begin: d1.Add(20 * h), End: d3.Add(4 * h)}, 1, []DayCount{{Day: d2, Count: 1}}},           // the day with the largest share
		{"zero", DateRange{Begin: d1, End: d2}, 0, nil},
		{"empty range", DateRange{Begin: d1, End: d1}, 5, []DayCount{{Day: d1, Count: 5}}},
		{"reversed range", DateRange{Begin: d2.Add(h), End: d1}, 5, []DayCount{{Day: d2, Count: 5}}},
		{"absurd range", DateRange{Begin: d1, End: d1.Add(400 * 24 * h)}, 5, []DayCount{{Day: d1, Count: 5}}},
		{"huge count", DateRange{Begin: d1.Add(12 * h), End: d2.Add(12 * h)}, math.MaxUint64, []DayCount{{Day: d1, Count: math.MaxUint64/2 + 1}, {Day: d2, Count: math.MaxUint64 / 2}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, SpreadDays(tc.dr, tc.count)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestSpreadDaysProperties: for random ranges and counts, the days are
// distinct UTC midnights in order within the range, the counts add up
// exactly, and each day's count is within one of its exact share.
func TestSpreadDaysProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	base := day(2025, 1, 1).Unix()
	for i := range 20000 {
		begin := base + rng.Int64N(400*86400)
		end := begin + 1 + rng.Int64N(int64(MaxReportSpan/time.Second))
		count := rng.Uint64N(1_000_000)
		if i%10 == 0 {
			count = rng.Uint64()
		}
		dr := DateRange{Begin: time.Unix(begin, 0), End: time.Unix(end, 0)}
		got := SpreadDays(dr, count)
		var sum uint64
		for j, d := range got {
			sum += d.Count
			if d.Day.Location() != time.UTC || d.Day.Unix()%86400 != 0 {
				t.Fatalf("%+v: day %v is not a UTC midnight", dr, d.Day)
			}
			if j > 0 && !got[j-1].Day.Before(d.Day) {
				t.Fatalf("%+v: days out of order: %v", dr, got)
			}
			if d.Day.Unix()+86400 <= begin || d.Day.Unix() >= end {
				t.Fatalf("%+v: day %v outside the range", dr, d.Day)
			}
			from, to := max(d.Day.Unix(), begin), min(d.Day.Unix()+86400, end)
			exact := float64(count) * float64(to-from) / float64(end-begin)
			if math.Abs(float64(d.Count)-exact) > 1+exact*1e-12 {
				t.Fatalf("%+v count %d: day %v got %d, exact share %.3f", dr, count, d.Day, d.Count, exact)
			}
		}
		if sum != count {
			t.Fatalf("%+v: counts add up to %d, want %d", dr, sum, count)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	d := day(2026, 12, 6)
	cases := []struct {
		name       string
		begin, end time.Time
		want       RefusalReason // "" = valid
	}{
		{"yesterday", d, d.Add(24 * time.Hour), ""},
		{"yesterday inclusive", d, d.Add(24*time.Hour - time.Second), ""},
		{"a month", d.Add(-30 * 24 * time.Hour), d, ""},
		{"ends within the clock skew", d.Add(24 * time.Hour), now.Add(time.Hour), ""},
		{"begin == end", d, d, RefusalBadDateRange},
		{"begin after end", d.Add(time.Hour), d, RefusalBadDateRange},
		{"ends in the future", d, now.Add(3 * time.Hour), RefusalFutureDateRange},
		{"far future", d.AddDate(10, 0, 0), d.AddDate(10, 0, 1), RefusalFutureDateRange},
		{"longer than a month", d.Add(-40 * 24 * time.Hour), d, RefusalAbsurdDateRange},
		{"epoch", time.Unix(0, 0), time.Unix(86400, 0), RefusalAbsurdDateRange},
		{"negative", time.Unix(-86400, 0), time.Unix(0, 0), RefusalAbsurdDateRange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &Feedback{Metadata: Metadata{DateRange: DateRange{Begin: tc.begin, End: tc.end}}}
			err := f.Validate(now)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if r, ok := ReasonOf(err); !ok || r != tc.want {
				t.Fatalf("Validate = %v, want %s", err, tc.want)
			}
		})
	}
}
