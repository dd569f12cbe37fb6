package reporter

import (
	"bytes"
	"context"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/internal/mailout"
	"github.com/dmarc-milter/dmarc-milter/internal/pgtest"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// senderZone: example.com asks for reports at four addresses: one that
// accepts, one that answers 4xx, one 5xx, and an external one that did not
// authorize the reports (RFC 9990 §4).
const senderZone = `
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:ok@example.com,mailto:soft@example.com,mailto:hard@example.com,mailto:x@external.example"
_dmarc.external.example. 300 IN TXT "v=DMARC1; p=none"
_dmarc.monitor.example. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:d@monitor.example"
`

type senderBed struct {
	clk  *clock
	st   *store.Store
	sink *sink
	res  *cache.Resolver
	rec  *Recorder
}

func newSenderBed(t *testing.T, url string) *senderBed {
	t.Helper()
	b := &senderBed{clk: &clock{t: day(2026, 12, 6, 10)}, sink: newSink(t)}
	var err error
	if url == "" {
		b.st = sqliteStore(t, b.clk.now)
	} else {
		if b.st, err = store.Open(context.Background(), url, store.Options{Now: b.clk.now}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.st.Close() })
	}
	dns := dnstest.New(t, senderZone)
	if b.res, err = cache.New(cache.Config{Nameservers: []string{dns.Addr}, Timeout: time.Second, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	b.rec = NewRecorder(RecorderOptions{Open: func(context.Context) (Sink, error) { return b.st, nil },
		Interval: 24 * time.Hour, QueueSize: 1000, FlushInterval: time.Hour, Now: b.clk.now})
	t.Cleanup(func() { b.rec.Close(context.Background()) })
	return b
}

func (b *senderBed) sender(t *testing.T, holder string) *Sender {
	t.Helper()
	c, err := mailout.NewClient(mailout.ClientOptions{Relay: "smtp://" + b.sink.addr, HeloName: "reporter.test"})
	if err != nil {
		t.Fatal(err)
	}
	return NewSender(SenderOptions{Store: b.st, Resolver: b.res, Method: policy.MethodTreeWalk, Relay: c,
		Identity: Identity{OrgName: "Ours", Email: "dmarc@ours.example", From: "dmarc@ours.example", Generator: "dmarc-milter/test"},
		Holder:   holder, Grace: 15 * time.Minute, RetryInitial: 10 * time.Minute, RetryFor: time.Hour,
		SuppressFor: 7 * 24 * time.Hour, Now: b.clk.now})
}

// record records the golden set's example.com messages and flushes.
func (b *senderBed) record(t *testing.T, n int) {
	t.Helper()
	for range n {
		b.rec.Record(goldenSet[0].decide(t))
	}
	if err := b.rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestSenderDeliveries: a closed day's report goes once to each usable
// destination; a 4xx is retried with backoff (same file, same Report-ID)
// until accepted; a 5xx suppresses the destination; the unauthorized
// external destination is skipped and recorded; a late row is counted and
// never sent.
func TestSenderDeliveries(t *testing.T) {
	b := newSenderBed(t, "")
	b.record(t, 5)
	b.sink.setRefuse("soft@example.com", tempRefusal)
	b.sink.setRefuse("hard@example.com", permRefusal)
	s := b.sender(t, "a")
	ctx := context.Background()

	// Still open (before end + grace): nothing.
	b.clk.set(day(2026, 12, 7, 0).Add(10 * time.Minute))
	if sum, err := s.RunOnce(ctx); err != nil || sum.Due != 0 {
		t.Fatalf("before the grace: %+v %v", sum, err)
	}
	b.clk.set(day(2026, 12, 7, 1))
	sum, err := s.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Built != 1 || sum.Sent != 1 || sum.Retry != 1 || sum.Failed != 1 {
		t.Errorf("first run: %+v, want built 1, sent 1, retry 1, failed 1", sum)
	}
	first := b.sink.messages("ok@example.com")
	if len(first) != 1 {
		t.Fatalf("ok@ got %d messages", len(first))
	}
	subj, fname := checkReportMessage(t, first[0], 5)
	if _, on, _ := b.st.Suppressed(ctx, "hard@example.com"); !on {
		t.Error("hard@example.com (550) is not suppressed")
	}
	infos, err := b.st.Reports(ctx, "example.com", day(2026, 12, 6, 0))
	if err != nil || len(infos) != 1 {
		t.Fatalf("reports: %v %v", infos, err)
	}
	states := map[string]store.DeliveryState{}
	for _, d := range infos[0].Deliveries {
		states[d.Address] = d.State
	}
	if states["x@external.example"] != store.DeliverySkippedUnverified || states["soft@example.com"] != store.DeliveryFailedTemp {
		t.Errorf("delivery states %v", states)
	}

	// Again at once: the retry is not due yet.
	if sum, _ := s.RunOnce(ctx); sum.Sent+sum.Retry != 0 {
		t.Errorf("retry before its time: %+v", sum)
	}
	// After the backoff, still 4xx; then the mailbox accepts.
	b.clk.add(11 * time.Minute)
	if sum, _ := s.RunOnce(ctx); sum.Retry != 1 {
		t.Errorf("second attempt: %+v", sum)
	}
	b.sink.setRefuse("soft@example.com", nil)
	b.clk.add(21 * time.Minute)
	if sum, _ := s.RunOnce(ctx); sum.Sent != 1 {
		t.Errorf("third attempt: %+v", sum)
	}
	soft := b.sink.messages("soft@example.com")
	if len(soft) != 1 {
		t.Fatalf("soft@ got %d messages", len(soft))
	}
	if s2, f2 := checkReportMessage(t, soft[0], 5); s2 != subj || f2 != fname {
		t.Errorf("the resend differs: %q %q, first %q %q", s2, f2, subj, fname)
	}
	if n := len(b.sink.messages("ok@example.com")); n != 1 {
		t.Errorf("ok@ got %d messages, want exactly 1", n)
	}

	// A late row: kept apart and counted, never sent.
	b.clk.set(day(2026, 12, 6, 23))
	b.record(t, 2)
	b.clk.set(day(2026, 12, 7, 6))
	if sum, _ := s.RunOnce(ctx); sum.Sent != 0 || sum.Built != 0 {
		t.Errorf("after the late row: %+v", sum)
	}
	st, err := b.st.Status(ctx, day(2026, 12, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range st {
		if d.Domain == "example.com" && d.LateMessages != 2 {
			t.Errorf("late messages %d, want 2", d.LateMessages)
		}
	}
	if b.sink.total() != 2 {
		t.Errorf("%d deliveries in all, want 2", b.sink.total())
	}
}

// checkReportMessage parses a delivered report message back and checks it
// against RFC 9990 §3.5.2; it returns its Subject and file name.
func checkReportMessage(t *testing.T, msg []byte, messages uint64) (subject, filename string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := report.ParseMessage(bytes.NewReader(msg), report.Limits{})
	if err != nil || len(fs) != 1 {
		t.Fatalf("ParseMessage: %v (%d reports)", err, len(fs))
	}
	f := fs[0]
	id := f.Metadata.ReportID
	subject = m.Header.Get("Subject")
	if want := report.Subject("example.com", "ours.example", id); subject != want {
		t.Errorf("Subject %q, want %q", subject, want)
	}
	i := bytes.Index(msg, []byte(`filename="`))
	if i < 0 {
		t.Fatal("no filename")
	}
	filename, _, _ = strings.Cut(string(msg[i+len(`filename="`):]), `"`)
	if want := "ours.example!example.com!1796515200!1796601600!" + id + ".xml.gz"; filename != want {
		t.Errorf("filename %q, want %q", filename, want)
	}
	var n uint64
	for _, r := range f.Records {
		n += r.Row.Count
	}
	if n != messages {
		t.Errorf("report counts %d messages, want %d", n, messages)
	}
	return subject, filename
}

// TestSendersExactlyOnce: several senders on one store, at once, send each
// report exactly once (SQLite; PostgreSQL below).
func TestSendersExactlyOnce(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { exactlyOnce(t, "") })
	t.Run("postgresql", func(t *testing.T) { exactlyOnce(t, pgtest.Database(t)) })
}

func exactlyOnce(t *testing.T, url string) {
	b := newSenderBed(t, url)
	b.record(t, 3)
	for range 2 {
		b.rec.Record(goldenSet[5].decide(t)) // monitor.example
	}
	if err := b.rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.sink.setRefuse("hard@example.com", permRefusal)
	b.clk.set(day(2026, 12, 7, 1))
	var wg sync.WaitGroup
	for i := range 4 {
		s := b.sender(t, string(rune('a'+i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.RunOnce(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, a := range []string{"ok@example.com", "soft@example.com", "d@monitor.example"} {
		if n := len(b.sink.messages(a)); n != 1 {
			t.Errorf("%s got %d reports, want 1", a, n)
		}
	}
}

// TestSenderDoNotReport: a domain on do_not_report gets no report; its
// report is made (the rows are sealed, nothing is due again) with no
// destination, and its subdomains are covered too.
func TestSenderDoNotReport(t *testing.T) {
	b := newSenderBed(t, "")
	b.record(t, 2)
	b.clk.set(day(2026, 12, 7, 1))
	s := b.sender(t, "a")
	s.o.DoNotReport = []string{"com"}
	sum, err := s.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Built != 1 || sum.Skipped != 1 || sum.Sent != 0 || b.sink.total() != 0 {
		t.Errorf("%+v, %d sent; want the report built and sent nowhere", sum, b.sink.total())
	}
	if sum, _ := s.RunOnce(context.Background()); sum.Due != 0 {
		t.Errorf("due again: %+v", sum)
	}
}
