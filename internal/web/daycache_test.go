package web

import (
	"context"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/intake"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
	"github.com/google/go-cmp/cmp"
)

// TestDayCacheFollowsTheStore: the cached days equal a fresh sum after
// reports are added to cached days and to days not cached yet, for a
// narrower and a wider range, and after a reset.
func TestDayCacheFollowsTheStore(t *testing.T) {
	st := fixture(t, "")
	ctx := context.Background()
	c := newDayCache(st, func() time.Time { return testNow })
	check := func(what string, since, until time.Time) {
		t.Helper()
		got, err := c.get(ctx, since, until)
		if err != nil {
			t.Fatal(err)
		}
		_, high, _ := st.ReceivedIDs(ctx)
		want, err := st.ReceivedDays(ctx, since, until, high)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s (-fresh +cached):\n%s", what, d)
		}
	}
	check("first", dec(1), dec(4))
	in := intake.New(st, intake.Config{Domains: []string{"example.com", "example.org"}, Now: func() time.Time { return testNow }})
	outs := in.Reports(ctx, []*report.Feedback{
		feedback("Receiver Three", "r3-dec1", "example.com", dec(1),
			rec("192.0.2.10", 40, "example.com", report.DMARCPass, report.DMARCFail, nil, nil)),
		feedback("Receiver Three", "r3-dec3", "example.org", dec(3),
			rec("203.0.113.5", 3, "example.org", report.DMARCFail, report.DMARCFail, nil, nil)),
		feedback("Receiver Three", "r3-dec6", "example.com", dec(6),
			rec("192.0.2.10", 2, "example.com", report.DMARCPass, report.DMARCFail, nil, nil)),
	}, "test")
	for _, o := range outs {
		if o.Status != intake.StatusStored {
			t.Fatalf("import: %+v", o)
		}
	}
	check("after new reports on cached days", dec(1), dec(4))
	check("wider", dec(1), dec(8))
	check("narrower", dec(3), dec(4))
	c.maxAge = 0
	check("after a reset", dec(1), dec(8))
}
