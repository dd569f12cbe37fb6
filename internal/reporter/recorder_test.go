package reporter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/milter"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// faultySink wraps a store: it fails while down is set and blocks while
// block is held.
type faultySink struct {
	st    *store.Store
	down  atomic.Bool
	block sync.RWMutex
}

var errDown = errors.New("test: store down")

func (f *faultySink) RecordRows(ctx context.Context, rows []store.Row) (store.RecordResult, error) {
	f.block.RLock()
	defer f.block.RUnlock()
	if f.down.Load() {
		return store.RecordResult{}, errDown
	}
	return f.st.RecordRows(ctx, rows)
}

func (f *faultySink) AddCounters(ctx context.Context, cs []store.Counter) error {
	if f.down.Load() {
		return errDown
	}
	return f.st.AddCounters(ctx, cs)
}

func (f *faultySink) AddLosses(ctx context.Context, ls []store.Loss) error {
	if f.down.Load() {
		return errDown
	}
	return f.st.AddLosses(ctx, ls)
}

// fromIP is the golden set's first message from another source address
// (a distinct row).
func fromIP(t *testing.T, i int) *milter.Decision {
	e := goldenSet[0]
	e.ip = netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String()
	return e.decide(t)
}

// messagesIn sums the stored rows' counts and the dropped messages of the
// day the test records in.
func messagesIn(t *testing.T, st *store.Store) (recorded, dropped int64) {
	t.Helper()
	ss, err := st.Status(context.Background(), day(2026, 12, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		recorded += s.Messages
		dropped += s.DroppedMessages
	}
	return recorded, dropped
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestRecorderStoreDown: the store is unreachable at start, then fails
// mid-run. Recording goes on; rows are held up to queue_size, the rest is
// dropped, counted (in the store's loss counters once it answers) and
// logged once a minute; nothing held is lost.
func TestRecorderStoreDown(t *testing.T) {
	clk := &clock{t: day(2026, 12, 6, 10)}
	st := sqliteStore(t, clk.now)
	sink := &faultySink{st: st}
	var opens atomic.Int32
	var logs logBuf
	rec := NewRecorder(RecorderOptions{
		Open: func(context.Context) (Sink, error) {
			if opens.Add(1) <= 2 {
				return nil, errDown // unreachable at start
			}
			return sink, nil
		},
		Interval: 24 * time.Hour, QueueSize: 4, FlushInterval: time.Hour, Now: clk.now,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	defer rec.Close(context.Background())
	ctx := context.Background()
	for i := range 6 { // 6 distinct rows, room for 4
		rec.Record(fromIP(t, i))
		rec.Record(fromIP(t, i))
	}
	if rows, msgs := rec.Queued(); rows != 4 || msgs != 8 {
		t.Errorf("queued %d rows, %d messages; want 4, 8", rows, msgs)
	}
	if err := rec.Flush(ctx); err == nil {
		t.Fatal("flush with the store down succeeded")
	}
	if n := strings.Count(logs.String(), "report rows dropped"); n != 1 {
		t.Errorf("%d drop log lines, want 1 (once a minute)\n%s", n, logs.String())
	}
	if err := rec.Flush(ctx); err == nil {
		t.Fatal("second flush with the store down succeeded")
	}
	if err := rec.Flush(ctx); err != nil {
		t.Fatalf("store up: %v", err)
	}
	if got, dropped := messagesIn(t, st); got != 8 || dropped != 4 {
		t.Errorf("stored %d messages, %d dropped; want 8 and 4", got, dropped)
	}

	// Mid-run: the store fails; Record never waits, even while a write
	// hangs.
	sink.down.Store(true)
	rec.Record(fromIP(t, 1))
	if err := rec.Flush(ctx); err == nil {
		t.Fatal("flush succeeded with the store down")
	}
	sink.down.Store(false)
	sink.block.Lock()
	done := make(chan struct{})
	go func() { rec.Flush(ctx); close(done) }()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	for range 1000 {
		rec.Record(fromIP(t, 1))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("1000 Record calls took %v while the store hung", d)
	}
	sink.block.Unlock()
	<-done
	if err := rec.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := messagesIn(t, st); got != 8+1+1000 {
		t.Errorf("stored %d messages, want %d", got, 8+1+1000)
	}
}

// TestRecorderCloseDrains: Close (SIGTERM) writes everything queued; with
// the store down until its deadline it reports what is lost.
func TestRecorderCloseDrains(t *testing.T) {
	clk := &clock{t: day(2026, 12, 6, 10)}
	st := sqliteStore(t, clk.now)
	sink := &faultySink{st: st}
	rec := NewRecorder(RecorderOptions{Open: func(context.Context) (Sink, error) { return sink, nil },
		Interval: 24 * time.Hour, QueueSize: 1000, FlushInterval: time.Hour, Now: clk.now})
	for i := range 50 {
		rec.Record(fromIP(t, i))
	}
	sink.down.Store(true)
	go func() { time.Sleep(300 * time.Millisecond); sink.down.Store(false) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := messagesIn(t, st); got != 50 {
		t.Errorf("stored %d messages after Close, want 50", got)
	}

	rec2 := NewRecorder(RecorderOptions{Open: func(context.Context) (Sink, error) { return nil, errDown },
		Interval: 24 * time.Hour, QueueSize: 1000, FlushInterval: time.Hour, Now: clk.now})
	rec2.Record(fromIP(t, 1))
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if err := rec2.Close(ctx2); err == nil {
		t.Error("Close with the store down reported success")
	}
}

// TestRecorderCorruptStore: a corrupt SQLite file is a clear error
// (store.ErrCorrupt, logged), and recording goes on in memory.
func TestRecorderCorruptStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 500), 0o600); err != nil {
		t.Fatal(err)
	}
	var openErr error
	rec := NewRecorder(RecorderOptions{
		Open: func(ctx context.Context) (Sink, error) {
			st, err := store.Open(ctx, "sqlite:"+path, store.Options{})
			openErr = err
			if err != nil {
				return nil, err
			}
			return st, nil
		},
		Interval: 24 * time.Hour, QueueSize: 10, FlushInterval: time.Hour})
	rec.Record(fromIP(t, 1))
	err := rec.Flush(context.Background())
	if !errors.Is(err, store.ErrCorrupt) || !errors.Is(openErr, store.ErrCorrupt) {
		t.Errorf("flush error %v, want store.ErrCorrupt", err)
	}
	if rows, _ := rec.Queued(); rows != 1 {
		t.Errorf("%d rows queued, want 1", rows)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rec.Close(ctx)
}

// BenchmarkRecord is the recorder's cost on the reply path: one message's
// rows and counter into the queue (a row already queued, the usual case).
func BenchmarkRecord(b *testing.B) {
	t := &testing.T{}
	d := goldenSet[0].decide(t)
	rec := NewRecorder(RecorderOptions{Open: func(context.Context) (Sink, error) { return nil, errDown },
		Interval: 24 * time.Hour, QueueSize: 1000, FlushInterval: time.Hour})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		rec.Close(ctx)
	}()
	b.ReportAllocs()
	for b.Loop() {
		rec.Record(d)
	}
}
