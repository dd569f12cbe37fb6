package intake

import (
	"context"
	"io"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// Bounds of a Batch: it is stored once it holds this many reports or rows.
const (
	batchReports = 100
	batchRows    = 20000
)

// Batch takes in reports as Message and File do, but stores them in
// transactions of up to batchReports reports (an import of thousands of
// small reports is bound by commits otherwise). Outcomes are given to emit
// with the tag they came with, when their batch is stored (refusals at
// once). Flush stores what is pending; call it at the end. A Batch is not
// safe for concurrent use.
type Batch struct {
	in   *Intake
	emit func(tag string, o Outcome)
	pend []pendingReport
	rows int
}

type pendingReport struct {
	tag, origin string
	o           Outcome
	rec         *store.ReceivedReport
}

// NewBatch returns a Batch that reports each outcome to emit.
func (in *Intake) NewBatch(emit func(tag string, o Outcome)) *Batch {
	return &Batch{in: in, emit: emit}
}

// Message takes in a report message.
func (b *Batch) Message(ctx context.Context, r io.Reader, origin, tag string) {
	reps, err := report.ParseMessage(r, b.in.cfg.Limits)
	if err != nil {
		b.emit(tag, b.in.refuseParse(ctx, err, origin))
		return
	}
	b.add(ctx, reps, origin, tag)
}

// File takes in a report file.
func (b *Batch) File(ctx context.Context, r io.Reader, origin, tag string) {
	rep, err := report.ParseFile(r, b.in.cfg.Limits)
	if err != nil {
		b.emit(tag, b.in.refuseParse(ctx, err, origin))
		return
	}
	b.add(ctx, []*report.Feedback{rep}, origin, tag)
}

func (b *Batch) add(ctx context.Context, reps []*report.Feedback, origin, tag string) {
	for _, f := range reps {
		o, rec := b.in.prepare(ctx, f, origin)
		if rec == nil {
			b.emit(tag, o)
			continue
		}
		b.pend = append(b.pend, pendingReport{tag: tag, origin: origin, o: o, rec: rec})
		b.rows += len(rec.Rows)
		if len(b.pend) >= batchReports || b.rows >= batchRows {
			b.Flush(ctx)
		}
	}
}

// Flush stores the pending reports in one transaction. When that fails,
// each is tried alone, so that one report the store refuses does not fail
// the others.
func (b *Batch) Flush(ctx context.Context) {
	if len(b.pend) == 0 {
		return
	}
	pend := b.pend
	b.pend, b.rows = nil, 0
	recs := make([]*store.ReceivedReport, len(pend))
	for i := range pend {
		recs[i] = pend[i].rec
	}
	results, err := b.in.st.StoreReceivedBatch(ctx, recs)
	for i, p := range pend {
		if err != nil {
			res, err1 := b.in.st.StoreReceived(ctx, p.rec)
			b.emit(p.tag, b.in.finish(p.o, p.rec, res, err1, p.origin))
			continue
		}
		b.emit(p.tag, b.in.finish(p.o, p.rec, results[i], nil, p.origin))
	}
}
