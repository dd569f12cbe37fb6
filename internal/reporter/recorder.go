package reporter

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/milter"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// Sink is what the recorder writes to: *store.Store.
type Sink interface {
	RecordRows(ctx context.Context, rows []store.Row) (store.RecordResult, error)
	AddCounters(ctx context.Context, cs []store.Counter) error
	AddLosses(ctx context.Context, ls []store.Loss) error
}

// Metrics receives the recorder's and the sender's events; the daemon wires
// internal/metrics. Nil fields of Options take NopMetrics.
type Metrics interface {
	// RowsRecorded counts messages written into rows, RowsLate those of
	// them whose period was already reported, RowsDropped messages that
	// never reached the store.
	RowsRecorded(messages, late int64)
	RowsDropped(messages int64)
	// StoreError counts a failed store operation (op: record, open,
	// claim, ...).
	StoreError(op string)
	// Report counts a report by outcome: built, sent, failed (a
	// destination failed for good), retry, suppressed, skipped.
	Report(outcome string)
}

// NopMetrics counts nothing.
type NopMetrics struct{}

func (NopMetrics) RowsRecorded(int64, int64) {}
func (NopMetrics) RowsDropped(int64)         {}
func (NopMetrics) StoreError(string)         {}
func (NopMetrics) Report(string)             {}

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	// Open returns the store, opening it on first use; it is called
	// again after a failure, so that a store that is down at start (or
	// a corrupt file that the operator replaces) is picked up later.
	Open func(ctx context.Context) (Sink, error)
	// Interval is the reporting period (a divisor of 24 h).
	Interval time.Duration
	// IncludeEnvelopeTo keeps the recipient domains in the rows.
	IncludeEnvelopeTo bool
	// OwnAddresses: mail from or to them is not recorded (our reporting
	// address, the report intake). Lowercase.
	OwnAddresses []string
	// QueueSize bounds the distinct rows and counters held in memory.
	QueueSize int
	// FlushInterval is how often the queue is written.
	FlushInterval time.Duration
	Logger        *slog.Logger
	Metrics       Metrics
	// Now is the clock (tests fix it). Default time.Now.
	Now func() time.Time
}

// Recorder turns each message's decision into aggregate-report rows and
// outcome counters and writes them to the store off the reply path: Record
// only adds to a bounded queue in memory (equal rows are added up there), and
// a writer goroutine flushes the queue every FlushInterval in one
// transaction per batch. A slow or absent store never delays a message:
// while the store fails, the queue holds up to QueueSize distinct rows; what
// does not fit is counted as dropped (logged at most once a minute, and
// written to the store's loss counters once it answers). Close drains the
// queue.
type Recorder struct {
	o    RecorderOptions
	log  *slog.Logger
	met  Metrics
	own  map[string]bool
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	rows     map[string]*store.Row // by appendRowKey
	counters map[counterKey]int64
	losses   map[lossKey]int64
	dropped  int64 // messages dropped since the last log line
	lastLog  time.Time
	errLog   time.Time

	sinkMu sync.Mutex
	sink   Sink
}

type counterKey struct {
	begin, end                      int64
	domain, result, action, outcome string
}

type lossKey struct {
	begin, end int64
	domain     string
	kind       store.LossKind
}

// NewRecorder starts the writer goroutine.
func NewRecorder(o RecorderOptions) *Recorder {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NopMetrics{}
	}
	r := &Recorder{o: o, log: o.Logger, met: o.Metrics, own: map[string]bool{},
		stop: make(chan struct{}), done: make(chan struct{}),
		rows: map[string]*store.Row{}, counters: map[counterKey]int64{}, losses: map[lossKey]int64{}}
	for _, a := range o.OwnAddresses {
		r.own[strings.ToLower(a)] = true
	}
	go r.loop()
	return r
}

var _ milter.Recorder = (*Recorder)(nil)

// Record queues the rows and the outcome counter of one message. It never
// blocks on the store.
func (r *Recorder) Record(d *milter.Decision) {
	begin, end := Period(r.o.Now(), r.o.Interval)
	ck := counterKey{begin: begin.Unix(), end: end.Unix()}
	ck.domain, ck.result, ck.action, ck.outcome = outcomeOf(d)
	var rows []policy.ReportRow
	if d.Verdict != nil && d.Action != policy.ActionTempFail && !r.ours(d) {
		rows = d.Verdict.ReportRows()
	}
	var buf [512]byte
	var prev []byte
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.counters[ck]; ok || len(r.counters) < r.o.QueueSize {
		r.counters[ck]++
	}
	off := 0
	for i := range rows {
		k := appendRowKey(buf[off:off], &rows[i], ck.begin, r.o.IncludeEnvelopeTo)
		if len(k) <= len(buf)-off {
			off += len(k)
		}
		// Without envelope_to, the rows of one Author Domain for several
		// recipient domains (consecutive in ReportRows) are one row: a
		// count is a number of messages.
		if string(k) == string(prev) {
			continue
		}
		prev = k
		if q, ok := r.rows[string(k)]; ok {
			q.Count++
			continue
		}
		row := r.storeRowOf(&rows[i], begin, end)
		if len(r.rows) >= r.o.QueueSize {
			r.dropLocked(&row)
			continue
		}
		r.rows[string(k)] = &row
	}
}

// storeRowOf is the store's row of one report row.
func (r *Recorder) storeRowOf(pr *policy.ReportRow, begin, end time.Time) store.Row {
	row := storeRow(*pr, begin, end)
	if !r.o.IncludeEnvelopeTo {
		row.EnvelopeTo = ""
	}
	return row
}

// ours reports whether the message comes from or goes to one of our
// reporting addresses: report mail is not itself reported on.
func (r *Recorder) ours(d *milter.Decision) bool {
	if len(r.own) == 0 {
		return false
	}
	if r.own[strings.ToLower(d.Env.MailFrom)] {
		return true
	}
	for _, to := range d.Env.Rcpts {
		if r.own[strings.ToLower(to)] {
			return true
		}
	}
	return false
}

// outcomeOf names the counter of a decision: the domain (policy domain, else
// the From domain), the DMARC result, the action and the outcome.
func outcomeOf(d *milter.Decision) (domain, result, action, outcome string) {
	action = string(d.Action)
	switch {
	case d.Bypass == milter.BypassTrusted:
		return "", "", action, string(store.OutcomeBypassTrusted)
	case d.Bypass == milter.BypassAuthenticated:
		return "", "", action, string(store.OutcomeBypassAuth)
	case d.Verdict == nil:
		result = "error"
	default:
		result = string(d.Verdict.Result)
		if len(d.Verdict.Domains) > 0 {
			i := max(d.Verdict.Decisive, 0)
			dv := d.Verdict.Domains[i]
			domain = dv.PolicyDomain
			if domain == "" {
				domain = dv.HeaderFrom
			}
		}
	}
	switch {
	case d.Hold:
		outcome = string(store.OutcomeHold)
	case d.Action == policy.ActionTempFail:
		outcome = string(store.OutcomeTempfail)
	case d.Action == policy.ActionReject:
		outcome = string(store.OutcomeReject)
	case d.Action == policy.ActionQuarantine:
		outcome = string(store.OutcomeQuarantine)
	default:
		outcome = string(store.OutcomeAccept)
	}
	return strings.ToLower(domain), result, action, outcome
}

// dropLocked counts a row that found no room.
func (r *Recorder) dropLocked(row *store.Row) {
	k := lossKey{begin: row.Begin.Unix(), end: row.End.Unix(), domain: row.Policy.Domain, kind: store.LossDropped}
	if _, ok := r.losses[k]; !ok && len(r.losses) >= r.o.QueueSize {
		k.domain = "" // even the loss counters are full: count without a domain
	}
	r.losses[k] += row.Count
	r.dropped += row.Count
	r.met.RowsDropped(row.Count)
	if now := r.o.Now(); now.Sub(r.lastLog) >= time.Minute {
		r.log.Warn("report rows dropped: the store does not keep up or is down", "messages", r.dropped, "queue_size", r.o.QueueSize)
		r.dropped, r.lastLog = 0, now
	}
}

// loop flushes the queue every FlushInterval until Close.
func (r *Recorder) loop() {
	defer close(r.done)
	t := time.NewTicker(r.o.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), max(r.o.FlushInterval*5, 10*time.Second))
			r.flush(ctx)
			cancel()
		}
	}
}

// Flush writes the queue now. It returns the error of the first write
// that failed (the rows stay queued).
func (r *Recorder) Flush(ctx context.Context) error { return r.flush(ctx) }

// flush writes what is queued; on failure it puts it back (within the
// bound) for the next flush.
func (r *Recorder) flush(ctx context.Context) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("reporter: panic in flush: %v", v)
			r.log.Error("recorder panic", "err", err, "stack", string(debug.Stack()))
		}
	}()
	r.mu.Lock()
	rows, counters, losses := r.rows, r.counters, r.losses
	r.rows, r.counters, r.losses = map[string]*store.Row{}, map[counterKey]int64{}, map[lossKey]int64{}
	r.mu.Unlock()
	if len(rows)+len(counters)+len(losses) == 0 {
		return nil
	}
	sink, err := r.getSink(ctx)
	if err == nil {
		err = r.write(ctx, sink, rows, counters, losses)
	}
	if err != nil {
		r.requeue(rows, counters, losses)
		r.logStoreError(err)
	}
	return err
}

// write stores rows (in batches), counters and losses. Written parts are
// removed from the maps, so that a failure requeues only the rest.
func (r *Recorder) write(ctx context.Context, sink Sink, rows map[string]*store.Row, counters map[counterKey]int64, losses map[lossKey]int64) error {
	const batch = 2000
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.Sort(keys) // concurrent writers lock rows in one order
	for len(keys) > 0 {
		n := min(batch, len(keys))
		b := make([]store.Row, n)
		for i, k := range keys[:n] {
			b[i] = *rows[k]
		}
		res, err := sink.RecordRows(ctx, b)
		if err != nil {
			r.met.StoreError("record")
			return err
		}
		for _, k := range keys[:n] {
			delete(rows, k)
		}
		keys = keys[n:]
		r.met.RowsRecorded(res.Messages, res.LateMessages)
		if res.LateMessages > 0 {
			r.log.Warn("late report rows: their period was already reported; kept apart, not sent", "rows", res.LateRows, "messages", res.LateMessages)
		}
	}
	if len(counters) > 0 {
		cs := make([]store.Counter, 0, len(counters))
		for k, n := range counters {
			cs = append(cs, store.Counter{Begin: time.Unix(k.begin, 0).UTC(), End: time.Unix(k.end, 0).UTC(),
				Domain: k.domain, Result: k.result, Action: k.action, Outcome: store.Outcome(k.outcome), Count: n})
		}
		if err := sink.AddCounters(ctx, cs); err != nil {
			r.met.StoreError("counters")
			return err
		}
		clear(counters)
	}
	if len(losses) > 0 {
		ls := make([]store.Loss, 0, len(losses))
		for k, n := range losses {
			ls = append(ls, store.Loss{Begin: time.Unix(k.begin, 0).UTC(), End: time.Unix(k.end, 0).UTC(), Domain: k.domain, Kind: k.kind, Count: n})
		}
		if err := sink.AddLosses(ctx, ls); err != nil {
			r.met.StoreError("losses")
			return err
		}
		clear(losses)
	}
	return nil
}

// requeue puts back what a failed flush did not write, merging with what
// came in meanwhile; what does not fit is dropped and counted.
func (r *Recorder) requeue(rows map[string]*store.Row, counters map[counterKey]int64, losses map[lossKey]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, n := range losses {
		r.losses[k] += n
	}
	for k, n := range counters {
		if _, ok := r.counters[k]; ok || len(r.counters) < r.o.QueueSize {
			r.counters[k] += n
		}
	}
	for k, row := range rows {
		if q, ok := r.rows[k]; ok {
			q.Count += row.Count
			continue
		}
		if len(r.rows) >= r.o.QueueSize {
			r.dropLocked(row)
			continue
		}
		r.rows[k] = row
	}
}

// getSink opens the store on first use, and again after a failure.
func (r *Recorder) getSink(ctx context.Context) (Sink, error) {
	r.sinkMu.Lock()
	defer r.sinkMu.Unlock()
	if r.sink != nil {
		return r.sink, nil
	}
	s, err := r.o.Open(ctx)
	if err != nil {
		r.met.StoreError("open")
		return nil, err
	}
	r.sink = s
	return s, nil
}

// logStoreError logs a store failure at most once a minute.
func (r *Recorder) logStoreError(err error) {
	r.mu.Lock()
	now := r.o.Now()
	due := now.Sub(r.errLog) >= time.Minute
	if due {
		r.errLog = now
	}
	queued := len(r.rows)
	r.mu.Unlock()
	if due {
		r.log.Error("report store write failed; rows stay queued (mail is not affected)", "err", err.Error(), "queued_rows", queued)
	}
}

// Queued returns the distinct rows and the messages they count that wait
// in memory.
func (r *Recorder) Queued() (rows int, messages int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.rows {
		messages += q.Count
	}
	return len(r.rows), messages
}

// Close stops the writer and drains the queue, trying until ctx ends; what
// cannot be written by then is counted as dropped and logged.
func (r *Recorder) Close(ctx context.Context) error {
	close(r.stop)
	<-r.done
	for {
		err := r.flush(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			rows, msgs := r.Queued()
			r.met.RowsDropped(msgs)
			r.log.Error("report rows lost at shutdown: the store did not answer", "rows", rows, "messages", msgs, "err", err.Error())
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}
