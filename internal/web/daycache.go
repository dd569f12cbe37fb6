package web

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// dayCache keeps the received messages per domain and UTC day that the
// domains page sums, so that a page view reads only what changed: the days
// of the range not summed yet, and the reports stored since (by report id,
// which only grows). Summing a month of a year's data takes seconds
// (docs/performance.md); the cached days of a hundred domains are a few
// hundred kilobytes.
//
// Reports deleted by the retention (their ids are the lowest) reset it;
// so does age (maxAge), which also covers a delete from the middle.
type dayCache struct {
	st     *store.Store
	maxAge time.Duration
	now    func() time.Time

	mu     sync.Mutex
	days   map[time.Time][]store.DomainDay // complete up to report id upto
	upto   int64
	low    int64
	filled time.Time
}

func newDayCache(st *store.Store, now func() time.Time) *dayCache {
	return &dayCache{st: st, maxAge: time.Hour, now: now, days: map[time.Time][]store.DomainDay{}}
}

// get returns the days of [since, until), ordered by domain and day.
func (c *dayCache) get(ctx context.Context, since, until time.Time) ([]store.DomainDay, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	low, high, err := c.st.ReceivedIDs(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case low != c.low || high < c.upto || c.now().Sub(c.filled) > c.maxAge:
		c.days, c.upto, c.low, c.filled = map[time.Time][]store.DomainDay{}, high, low, c.now()
	case high > c.upto:
		if err := c.addReports(ctx, high); err != nil {
			return nil, err
		}
	}
	if err := c.fill(ctx, since, until); err != nil {
		return nil, err
	}
	var out []store.DomainDay
	for d := since; d.Before(until); d = d.Add(day) {
		out = append(out, c.days[d]...)
	}
	slices.SortFunc(out, func(a, b store.DomainDay) int {
		return cmp.Or(cmp.Compare(a.Domain, b.Domain), a.Day.Compare(b.Day))
	})
	return out, nil
}

// addReports adds the reports stored since upto to the cached days (days
// not cached are summed whole when asked for).
func (c *dayCache) addReports(ctx context.Context, high int64) error {
	added, err := c.st.ReceivedDaysOf(ctx, c.upto, high)
	if err != nil {
		return err
	}
	for _, a := range added {
		list, ok := c.days[a.Day]
		if !ok {
			continue
		}
		i := slices.IndexFunc(list, func(d store.DomainDay) bool { return d.Domain == a.Domain })
		if i < 0 {
			c.days[a.Day] = append(list, a)
			continue
		}
		list[i].Messages += a.Messages
		list[i].Pass += a.Pass
	}
	c.upto = high
	return nil
}

// fill sums the days of [since, until) not cached, in one query from the
// first to the last of them.
func (c *dayCache) fill(ctx context.Context, since, until time.Time) error {
	var first, last time.Time
	for d := since; d.Before(until); d = d.Add(day) {
		if _, ok := c.days[d]; !ok {
			if first.IsZero() {
				first = d
			}
			last = d
		}
	}
	if first.IsZero() {
		return nil
	}
	sums, err := c.st.ReceivedDays(ctx, first, last.Add(day), c.upto)
	if err != nil {
		return err
	}
	for d := first; !d.After(last); d = d.Add(day) {
		c.days[d] = []store.DomainDay{}
	}
	for _, s := range sums {
		c.days[s.Day] = append(c.days[s.Day], s)
	}
	return nil
}
