package report

import (
	"math/bits"
	"sort"
	"time"
)

// DayCount is a number of messages attributed to one UTC day (Day is its
// 00:00 UTC).
type DayCount struct {
	Day   time.Time
	Count uint64
}

// SpreadDays spreads count messages of a report covering dr over the UTC
// days the range covers, in proportion to the time of each day within
// [Begin, End), so that per-day views of multi-day reports are fair. The
// counts add up to count exactly: each day gets the integer part of its
// share, and the messages left over go one each to the days with the
// largest remainders (the earlier day on a tie). Days that get no message
// are left out; the result is in day order.
//
// A range that is empty, reversed, or longer than MaxReportSpan (Validate
// refuses those) is attributed entirely to the day of Begin.
func SpreadDays(dr DateRange, count uint64) []DayCount {
	begin, end := dr.Begin.UTC(), dr.End.UTC()
	first := begin.Truncate(24 * time.Hour)
	if count == 0 {
		return nil
	}
	total := uint64(end.Unix() - begin.Unix())
	if !begin.Before(end) || end.Sub(begin) > MaxReportSpan {
		return []DayCount{{Day: first, Count: count}}
	}
	type share struct {
		day          time.Time
		n, remainder uint64
	}
	var shares []share
	var given uint64
	for d := first; d.Before(end); d = d.Add(24 * time.Hour) {
		from, to := maxTime(d, begin), minTime(d.Add(24*time.Hour), end)
		secs := uint64(to.Unix() - from.Unix())
		// count*secs/total in 128 bits: count may be any uint64.
		hi, lo := bits.Mul64(count, secs)
		q, r := bits.Div64(hi, lo, total) // hi < total since secs <= total
		shares = append(shares, share{day: d, n: q, remainder: r})
		given += q
	}
	order := make([]int, len(shares))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return shares[order[a]].remainder > shares[order[b]].remainder })
	for _, i := range order[:count-given] {
		shares[i].n++
	}
	var out []DayCount
	for _, s := range shares {
		if s.n > 0 {
			out = append(out, DayCount{Day: s.day, Count: s.n})
		}
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
