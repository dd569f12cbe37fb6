package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// summaryReports are random received reports over a few domains, reporters,
// sources and days: rows spread over one to three days, some with no
// messages, some with policy overrides, signatures of ours and others'.
func summaryReports(seed uint64, n int) []*ReceivedReport {
	rng := rand.New(rand.NewPCG(seed, 1))
	pick := func(ss ...string) string { return ss[rng.IntN(len(ss))] }
	var out []*ReceivedReport
	for i := range n {
		domain := pick("example.com", "example.org", "example.net")
		begin := day0.Add(time.Duration(rng.IntN(10)) * 24 * time.Hour)
		span := 1 + rng.IntN(3)
		rep := &ReceivedReport{OrgName: pick("google.com", "Yahoo", "<b>x</b>"), Email: "r@x.example", ReportID: fmt.Sprint("r", i),
			Domain: domain, Begin: begin, End: begin.Add(time.Duration(span) * 24 * time.Hour),
			Policy: Policy{Domain: domain, P: "reject"}, Origin: "test"}
		for range 1 + rng.IntN(4) {
			r := ReceivedRow{SourceIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + rng.IntN(6))}), Disposition: pick("none", "quarantine", "reject"),
				DKIMAligned: pick("pass", "fail"), SPFAligned: pick("pass", "fail"), HeaderFrom: domain, EnvelopeFrom: pick(domain, "bounce.esp.example"),
				EnvelopeTo: pick("", "rcpt.example"),
				DKIM:       []DKIMResult{{Domain: pick(domain, "esp.example"), Selector: pick("s1", "s2"), Result: pick("pass", "fail")}},
				SPF:        &SPFResult{Domain: pick(domain, "bounce.esp.example"), Scope: "mfrom", Result: pick("pass", "softfail")}}
			if rng.IntN(4) == 0 {
				r.Reasons = []Reason{{Type: pick("forwarded", "mailing_list"), Comment: pick("", "list-id")}}
			}
			if rng.IntN(8) > 0 {
				for d := range span {
					if c := int64(rng.IntN(5)); c > 0 {
						r.Days = append(r.Days, DayCount{Day: begin.Add(time.Duration(d) * 24 * time.Hour), Count: c})
						r.Count += c
					}
				}
			}
			rep.Rows = append(rep.Rows, r)
		}
		out = append(out, rep)
	}
	return out
}

// expected sums the reports the way the summaries should, independently of
// the store's code: days, facts (as text) and overrides per domain, and the
// span of each (domain, source).
type expected struct {
	days      []DomainDay
	facts     map[string]map[string]int64 // domain → facts → messages
	overrides map[string][]ReceivedOverride
	sources   map[string]map[netip.Addr][2]time.Time
}

func factText(r ReceivedRow) string {
	return fmt.Sprintf("%v|%s|%s|%s|%s|%s|%+v|%+v|%+v", r.SourceIP, r.Disposition, r.DKIMAligned, r.SPFAligned,
		r.HeaderFrom, r.EnvelopeFrom, r.Reasons, r.DKIM, *r.SPF)
}

func expect(reps []*ReceivedReport) expected {
	e := expected{facts: map[string]map[string]int64{}, overrides: map[string][]ReceivedOverride{},
		sources: map[string]map[netip.Addr][2]time.Time{}}
	days := map[DomainDay]*DomainDay{}
	ovr := map[string]map[ReceivedOverride]int64{}
	for _, rep := range reps {
		if e.facts[rep.Domain] == nil {
			e.facts[rep.Domain], ovr[rep.Domain] = map[string]int64{}, map[ReceivedOverride]int64{}
			e.sources[rep.Domain] = map[netip.Addr][2]time.Time{}
		}
		for _, r := range rep.Rows {
			sp, ok := e.sources[rep.Domain][r.SourceIP]
			if !ok || rep.Begin.Before(sp[0]) {
				sp[0] = rep.Begin
			}
			if !ok || rep.End.After(sp[1]) {
				sp[1] = rep.End
			}
			e.sources[rep.Domain][r.SourceIP] = sp
			for _, d := range r.Days {
				k := DomainDay{Domain: rep.Domain, Day: d.Day}
				if days[k] == nil {
					days[k] = &DomainDay{Domain: rep.Domain, Day: d.Day}
				}
				days[k].Messages += d.Count
				if r.DKIMAligned == "pass" || r.SPFAligned == "pass" {
					days[k].Pass += d.Count
				}
				e.facts[rep.Domain][factText(r)] += d.Count
				for _, x := range r.Reasons {
					ovr[rep.Domain][ReceivedOverride{Reporter: rep.OrgName, Reason: x}] += d.Count
				}
			}
		}
	}
	for _, d := range days {
		e.days = append(e.days, *d)
	}
	slices.SortFunc(e.days, func(a, b DomainDay) int {
		if c := strings.Compare(a.Domain, b.Domain); c != 0 {
			return c
		}
		return a.Day.Compare(b.Day)
	})
	for dom, m := range ovr {
		for o, n := range m {
			o.Messages = n
			e.overrides[dom] = append(e.overrides[dom], o)
		}
	}
	return e
}

func sortOverridesForTest(list []ReceivedOverride) {
	slices.SortFunc(list, func(a, b ReceivedOverride) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
}

// checkSummaries compares what the store's summaries answer with want.
func checkSummaries(t *testing.T, s *Store, want expected) {
	t.Helper()
	ctx := context.Background()
	since, until := day0.Add(-24*time.Hour), day0.Add(20*24*time.Hour)
	days, err := s.ReceivedDays(ctx, since, until)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.days, days); diff != "" {
		t.Errorf("ReceivedDays (-want +got):\n%s", diff)
	}
	for _, dom := range []string{"example.com", "example.org", "example.net"} {
		got, err := s.ReceivedIn(ctx, dom, since, until)
		if err != nil {
			t.Fatal(err)
		}
		facts := map[string]int64{}
		for _, r := range got {
			if r.SPF == nil {
				t.Fatalf("%s: a total without SPF: %+v", dom, r)
			}
			if _, dup := facts[factText(r.ReceivedRow)]; dup {
				t.Errorf("%s: facts listed twice: %s", dom, factText(r.ReceivedRow))
			}
			facts[factText(r.ReceivedRow)] = r.Messages
		}
		if len(facts) == 0 {
			facts = nil
		}
		if diff := cmp.Diff(want.facts[dom], facts); diff != "" {
			t.Errorf("ReceivedIn(%s) (-want +got):\n%s", dom, diff)
		}
		ovr, err := s.ReceivedOverrides(ctx, dom, since, until)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(ovr); i++ {
			if ovr[i].Messages > ovr[i-1].Messages {
				t.Errorf("ReceivedOverrides(%s) not most first: %+v", dom, ovr)
			}
		}
		wo := slices.Clone(want.overrides[dom])
		sortOverridesForTest(wo)
		sortOverridesForTest(ovr)
		if diff := cmp.Diff(wo, ovr); diff != "" {
			t.Errorf("ReceivedOverrides(%s) (-want +got):\n%s", dom, diff)
		}
		srcs, err := s.SourcesOf(ctx, dom)
		if err != nil {
			t.Fatal(err)
		}
		spans := map[netip.Addr][2]time.Time{}
		for ip, x := range srcs {
			spans[ip] = [2]time.Time{x.DomainFirstSeen, x.DomainLastSeen}
		}
		if len(spans) == 0 {
			spans = nil
		}
		if diff := cmp.Diff(want.sources[dom], spans); diff != "" {
			t.Errorf("SourcesOf(%s) (-want +got):\n%s", dom, diff)
		}
	}
	var zero int64
	for _, table := range []string{"received_domain_days", "received_facts", "received_overrides"} {
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE messages <= 0`).Scan(&zero); err != nil || zero != 0 {
			t.Errorf("%s: %d rows with no messages left (%v)", table, zero, err)
		}
	}
}

// summaryDump is every summary row as text, for comparing two stores.
func summaryDump(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT domain, day, messages, pass FROM received_domain_days ORDER BY domain, day`,
		`SELECT domain, day, fact_key, messages FROM received_facts ORDER BY domain, day, fact_key`,
		`SELECT domain, day, reporter, type, comment, messages FROM received_overrides ORDER BY domain, day, override_key`,
		`SELECT domain, source_ip, first_seen, last_seen FROM received_domain_sources ORDER BY domain, source_ip`,
	} {
		err := s.each(context.Background(), q, nil, func(rs *sql.Rows) error {
			cols, _ := rs.Columns()
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				return err
			}
			fmt.Fprintln(&b, vals...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// TestSummaries: the summaries always equal the sums over the stored
// reports: after single and batched stores (duplicates count once), when
// migration 3 builds them from reports stored before, and after expiry
// took reports out (rows that come down to zero are gone; a source's first
// and last seen stay).
func TestSummaries(t *testing.T) {
	n := receivedExpiryBatch
	t.Cleanup(func() { receivedExpiryBatch = n }) // after the parallel subtests
	receivedExpiryBatch = 7                       // several batches
	c := summaryChunk
	t.Cleanup(func() { summaryChunk = c })
	summaryChunk = 7 // several upsert statements per summary, the last one short
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url, newClock(day0.Add(30*24*time.Hour)))
		reps := summaryReports(7, 60)
		for _, r := range reps[:20] {
			if _, err := s.StoreReceived(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.StoreReceivedBatch(ctx, reps[15:]); err != nil { // 15..19 again: duplicates
			t.Fatal(err)
		}
		want := expect(reps)
		checkSummaries(t, s, want)
		before := summaryDump(t, s)

		// Back to schema version 2: migration 3 builds the summaries again
		// (and 5 the inbound ones, so those tables go too).
		for _, table := range []string{"received_domain_days", "received_facts", "received_overrides", "received_domain_sources",
			"inbound_days", "inbound_domain_days", "inbound_spoofed_days", "inbound_domain_months", "inbound_spoofed_months"} {
			if _, err := s.db.ExecContext(ctx, `DROP TABLE `+table); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE schema_version SET version = 2`); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = open(t, url, newClock(day0.Add(30*24*time.Hour)))
		if after := summaryDump(t, s); after != before {
			t.Errorf("migration 3 built other summaries:\n%s\nwant:\n%s", after, before)
		}
		checkSummaries(t, s, want)

		// Expire the reports that ended before day 6.
		cutoff := day0.Add(6 * 24 * time.Hour)
		ex, err := s.Expire(ctx, cutoff.Add(24*time.Hour), Retention{Received: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		var kept []*ReceivedReport
		for _, r := range reps {
			if !r.End.Before(cutoff) {
				kept = append(kept, r)
			}
		}
		if ex.Received != int64(len(reps)-len(kept)) || ex.Received == 0 || len(kept) == 0 {
			t.Fatalf("expired %d of %d reports, want %d", ex.Received, len(reps), len(reps)-len(kept))
		}
		after := expect(kept)
		// First and last seen do not narrow; entries not seen since the
		// cutoff go.
		after.sources = map[string]map[netip.Addr][2]time.Time{}
		for dom, m := range want.sources {
			for ip, sp := range m {
				if sp[1].Before(cutoff) {
					continue
				}
				if after.sources[dom] == nil {
					after.sources[dom] = map[netip.Addr][2]time.Time{}
				}
				after.sources[dom][ip] = sp
			}
		}
		checkSummaries(t, s, after)
	})
}

// TestSummariesConcurrent: hosts storing reports for the same domains and
// days at once (PostgreSQL's row locks, SQLite's write lock) lose no count.
func TestSummariesConcurrent(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		reps := summaryReports(11, 80)
		hosts := []*Store{open(t, url, nil), open(t, url, nil), open(t, url, nil), open(t, url, nil)}
		errc := make(chan error, len(hosts))
		for h, s := range hosts {
			go func() {
				var mine []*ReceivedReport
				for i := h; i < len(reps); i += len(hosts) {
					mine = append(mine, reps[i])
				}
				for len(mine) > 0 {
					n := min(len(mine), 5)
					if _, err := s.StoreReceivedBatch(ctx, mine[:n]); err != nil {
						errc <- err
						return
					}
					mine = mine[n:]
				}
				errc <- nil
			}()
		}
		for range hosts {
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
		checkSummaries(t, hosts[0], expect(reps))
	})
}
