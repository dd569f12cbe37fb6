package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAddCounters is one recorder flush of counters into SQLite: 300
// distinct counters (100 sending domains × 3 results) of the current hour
// added to a store that already holds 30 days of hourly counters for them
// (216 000 rows, so that the indexes have their working size):
//
//	go test -run '^$' -bench BenchmarkAddCounters ./internal/store
func BenchmarkAddCounters(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite:"+filepath.Join(b.TempDir(), "c.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	flush := func(hour int) []Counter {
		begin := start.Add(time.Duration(hour) * time.Hour)
		out := make([]Counter, 0, 300)
		for d := range 100 {
			for i, res := range []string{"pass", "fail", "none"} {
				out = append(out, Counter{Begin: begin, End: begin.Add(time.Hour), Domain: fmt.Sprintf("s%d.example", d),
					Result: res, Action: []string{"accept", "reject", "accept"}[i], Outcome: OutcomeEvaluated, Count: 1})
			}
		}
		return out
	}
	for h := range 30 * 24 {
		if err := s.AddCounters(ctx, flush(h)); err != nil {
			b.Fatal(err)
		}
	}
	now := flush(30 * 24)
	b.ResetTimer()
	for b.Loop() {
		if err := s.AddCounters(ctx, now); err != nil {
			b.Fatal(err)
		}
	}
}
