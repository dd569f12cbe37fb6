package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRecordAggregates: equal rows add their counts; a row differing in any
// one fact is a row of its own; everything reads back as written.
func TestRecordAggregates(t *testing.T) {
	base := row("example.com", "192.0.2.1", 1)
	variants := []struct {
		name string
		mod  func(r *Row)
	}{
		{"ipv6 source", func(r *Row) { r.SourceIP = netip.MustParseAddr("2001:db8::1") }},
		{"null sender", func(r *Row) { r.EnvelopeFrom = "" }},
		{"envelope to", func(r *Row) { r.EnvelopeTo = "rcpt.example" }},
		{"header from", func(r *Row) { r.HeaderFrom = "sub.example.com" }},
		{"disposition", func(r *Row) { r.Disposition = "quarantine" }},
		{"dkim aligned", func(r *Row) { r.DKIMAligned = "fail" }},
		{"spf aligned", func(r *Row) { r.SPFAligned = "fail" }},
		{"reasons", func(r *Row) {
			r.Reasons = []Reason{{Type: "local_policy", Comment: "monitor mode"}, {Type: "sampled_out"}}
		}},
		{"two dkim signatures", func(r *Row) {
			r.DKIM = append(r.DKIM, DKIMResult{Domain: "esp.example", Selector: "k", Result: "fail", HumanResult: "bad sig"})
		}},
		{"no dkim", func(r *Row) { r.DKIM = nil }},
		{"no spf", func(r *Row) { r.SPF = nil }},
		{"spf result", func(r *Row) { r.SPF = &SPFResult{Domain: "example.com", Scope: "mfrom", Result: "softfail"} }},
		{"policy p", func(r *Row) { r.Policy.P = "none" }},
		{"policy np", func(r *Row) { r.Policy.NP = "reject" }},
		{"policy testing", func(r *Row) { r.Policy.Testing = "y" }},
		{"period", func(r *Row) { r.Begin, r.End = r.Begin.Add(24*time.Hour), r.End.Add(24*time.Hour) }},
	}
	forEngines(t, func(t *testing.T, url string) {
		s := open(t, url, nil)
		ctx := context.Background()
		// base three times (twice in one batch, once in another), each
		// variant once.
		res := record(t, s, base, base)
		if res.Rows != 1 || res.Messages != 2 || res.LateRows != 0 {
			t.Errorf("first batch: %+v, want 1 row, 2 messages", res)
		}
		var batch []Row
		want := map[string]Row{}
		b := base
		b.Count = 3
		want["base"] = b
		for _, v := range variants {
			r := base
			r.DKIM = append([]DKIMResult(nil), base.DKIM...)
			v.mod(&r)
			batch = append(batch, r)
			want[v.name] = r
		}
		batch = append(batch, base)
		record(t, s, batch...)

		got := map[string]Row{}
		seen := map[Group]bool{}
		for _, r := range want {
			g := Group{Policy: r.Policy, Begin: r.Begin, End: r.End}
			if seen[g] {
				continue
			}
			seen[g] = true
			rows, err := s.GroupRows(ctx, g)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				got[nameOf(want, r)] = r
			}
		}
		if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
			t.Errorf("rows read back (-want +got):\n%s", diff)
		}
	})
}

// nameOf finds the name of r among want (by every fact but the count).
func nameOf(want map[string]Row, r Row) string {
	for name, w := range want {
		pk := w.Policy.key()
		if w.key(pk) == r.key(r.Policy.key()) {
			return name
		}
	}
	return fmt.Sprintf("unexpected %+v", r)
}

// TestRecordInvalid: a bad row fails its whole batch, clearly.
func TestRecordInvalid(t *testing.T) {
	s := open(t, "sqlite:"+t.TempDir()+"/x.db", nil)
	good := row("example.com", "192.0.2.1", 1)
	cases := []struct {
		name string
		mod  func(r *Row)
	}{
		{"no period", func(r *Row) { r.Begin = time.Time{} }},
		{"end before begin", func(r *Row) { r.End = r.Begin.Add(-time.Hour) }},
		{"no policy domain", func(r *Row) { r.Policy.Domain = "" }},
		{"no source ip", func(r *Row) { r.SourceIP = netip.Addr{} }},
		{"zero count", func(r *Row) { r.Count = 0 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := good
			tc.mod(&bad)
			_, err := s.RecordRows(context.Background(), []Row{good, bad})
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
	if res, err := s.RecordRows(context.Background(), nil); err != nil || res != (RecordResult{}) {
		t.Errorf("empty batch: %+v, %v", res, err)
	}
	rows, err := s.GroupRows(context.Background(), group("example.com"))
	if err != nil || len(rows) != 0 {
		t.Errorf("after failed batches: %d rows, %v; want none", len(rows), err)
	}
}

// TestRecordConcurrent: two recorders with their own Store on one database
// (two MX hosts, or the daemon and a command) record the same rows at once;
// every message is counted once.
func TestRecordConcurrent(t *testing.T) {
	const workers, batches, perBatch = 2, 40, 25
	forEngines(t, func(t *testing.T, url string) {
		stores := []*Store{open(t, url, nil), open(t, url, nil)}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range batches {
					var rows []Row
					for i := range perBatch {
						// Ten distinct rows shared by both workers, in
						// an order that differs between them.
						rows = append(rows, row(fmt.Sprintf("d%d.example", (i+b+w)%5), fmt.Sprintf("192.0.2.%d", i%2), 1))
					}
					if _, err := stores[w].RecordRows(context.Background(), rows); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		st, err := stores[0].Status(context.Background(), day0)
		if err != nil {
			t.Fatal(err)
		}
		var rows, msgs int64
		for _, d := range st {
			rows += d.Rows
			msgs += d.Messages
		}
		if rows != 10 || msgs != workers*batches*perBatch {
			t.Errorf("%d rows, %d messages; want 10 rows, %d messages", rows, msgs, workers*batches*perBatch)
		}
	})
}

// cmpAddr compares netip.Addr values (their fields are unexported).
var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// TestRecordLargeBatch: a batch of more distinct rows than one statement
// carries, recorded twice.
func TestRecordLargeBatch(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		s := open(t, url, nil)
		var rows []Row
		for i := range 2*upsertChunk + 37 {
			rows = append(rows, row("example.com", fmt.Sprintf("10.0.%d.%d", i/256, i%256), int64(i+1)))
		}
		for range 2 {
			if res := record(t, s, rows...); res.Rows != len(rows) {
				t.Fatalf("RecordRows: %+v", res)
			}
		}
		got, err := s.GroupRows(context.Background(), group("example.com"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(rows) {
			t.Fatalf("%d rows, want %d", len(got), len(rows))
		}
		byIP := map[netip.Addr]int64{}
		for _, r := range got {
			byIP[r.SourceIP] = r.Count
		}
		for _, r := range rows {
			if byIP[r.SourceIP] != 2*r.Count {
				t.Errorf("%s: count %d, want %d", r.SourceIP, byIP[r.SourceIP], 2*r.Count)
			}
		}
	})
}

// TestGroups: the groups of a range, one per policy configuration and
// period.
func TestGroups(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		s := open(t, url, nil)
		next := row("b.example", "192.0.2.1", 1)
		next.Begin, next.End = next.Begin.Add(24*time.Hour), next.End.Add(24*time.Hour)
		monitor := row("b.example", "192.0.2.1", 1)
		monitor.Policy.P = "none"
		record(t, s, row("b.example", "192.0.2.1", 1), row("b.example", "192.0.2.2", 1), monitor,
			row("a.example", "192.0.2.1", 1), next)
		got, err := s.Groups(context.Background(), day0, day0.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := []Group{group("a.example"), {Policy: monitor.Policy, Begin: monitor.Begin, End: monitor.End}, group("b.example")}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("groups (-want +got):\n%s", diff)
		}
		if got, _ := s.Groups(context.Background(), day0, day0.Add(48*time.Hour)); len(got) != 4 {
			t.Errorf("two days: %d groups, want 4", len(got))
		}
	})
}
