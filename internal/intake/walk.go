package intake

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/mbox"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// Summary counts what an import did.
type Summary struct {
	Files    int // files read (a Maildir message and an mbox file are one file each)
	Messages int // messages read (from .eml files, Maildirs and mbox files)
	Reports  int // reports read: stored, duplicate or refused after parsing
	Stored   int
	// Duplicates were already stored: nothing was written.
	Duplicates int
	// Refused counts refusals by reason (a file or message refused whole
	// counts once).
	Refused map[Reason]int
	// Failed counts reports the store did not take (an error, not a
	// refusal: importing again may work).
	Failed int
	// Rows and RowMessages are what was stored.
	Rows        int
	RowMessages int64
	// Skipped counts the files of a directory that are neither a report,
	// a message nor an mbox file (a README, a script): not read further.
	Skipped int
	Elapsed time.Duration
}

// RefusedTotal is the number of refusals of any reason.
func (s *Summary) RefusedTotal() int {
	n := 0
	for _, v := range s.Refused {
		n += v
	}
	return n
}

func (s *Summary) add(outs []Outcome) {
	for _, o := range outs {
		switch o.Status {
		case StatusStored:
			s.Reports++
			s.Stored++
			s.Rows += o.Rows
			s.RowMessages += o.Messages
		case StatusDuplicate:
			s.Reports++
			s.Duplicates++
		case StatusRefused:
			if o.ReportID != "" {
				s.Reports++
			}
			if s.Refused == nil {
				s.Refused = map[Reason]int{}
			}
			s.Refused[o.Reason]++
		case StatusFailed:
			s.Reports++
			s.Failed++
		}
	}
}

// Importer takes in report files, directories, Maildirs and mbox files.
type Importer struct {
	In *Intake
	// Progress, when set, is called after each file with the summary so
	// far (the caller rate-limits its display).
	Progress func(Summary)
	// OnOutcome, when set, is called for each outcome with the path it
	// came from (to list refusals).
	OnOutcome func(path string, o Outcome)
	// OnSkip, when set, is called for each file skipped in a directory.
	OnSkip func(path string)
	sum    Summary
	start  time.Time
	batch  *Batch
}

// Import takes in every path: a file by its kind, a directory recursively
// (a Maildir's cur/ and new/ as messages; symbolic links are not followed).
// It stops early only when ctx ends; unreadable files are counted as
// refused (read_error) and the import goes on.
func (im *Importer) Import(ctx context.Context, paths []string) (Summary, error) {
	im.start = time.Now()
	im.batch = im.In.NewBatch(im.record)
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			break
		}
		if err := im.path(ctx, p); err != nil {
			im.batch.Flush(ctx)
			return im.finish(), err
		}
	}
	im.batch.Flush(ctx)
	return im.finish(), ctx.Err()
}

func (im *Importer) finish() Summary {
	im.sum.Elapsed = time.Since(im.start)
	return im.sum
}

func (im *Importer) path(ctx context.Context, root string) error {
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	if !fi.IsDir() {
		im.file(ctx, root, kindOf(root), false)
		return nil
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			im.record(p, Outcome{Status: StatusRefused, Reason: Reason(report.RefusalRead), Detail: err.Error()})
			return nil
		}
		if d.IsDir() {
			if name := d.Name(); name == "tmp" && isMaildir(filepath.Dir(p)) {
				return filepath.SkipDir // RFC-less Maildir convention: tmp/ holds deliveries in progress
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		kind := kindOf(p)
		if isMaildir(filepath.Dir(filepath.Dir(p))) {
			switch filepath.Base(filepath.Dir(p)) {
			case "cur", "new":
				kind = kindMessage
			}
		}
		im.file(ctx, p, kind, true)
		return nil
	})
}

// isMaildir tells whether dir holds cur/ and new/.
func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

type fileKind int

const (
	kindSniff fileKind = iota
	kindReport
	kindMessage
	kindMbox
	kindOther // sniffed: none of the above
)

// kindOf tells a file's kind by its name; kindSniff when the name says
// nothing.
func kindOf(p string) fileKind {
	name := strings.ToLower(filepath.Base(p))
	switch {
	case strings.HasSuffix(name, ".eml"), strings.HasSuffix(name, ".msg"):
		return kindMessage
	case strings.HasSuffix(name, ".mbox"), strings.HasSuffix(name, ".mbx"):
		return kindMbox
	case strings.HasSuffix(name, ".xml"), strings.HasSuffix(name, ".gz"), strings.HasSuffix(name, ".zip"):
		return kindReport
	}
	return kindSniff
}

// file imports one file. In a directory walk (skip), a file whose name
// says nothing and whose content is neither a report, a message nor an
// mbox is skipped.
func (im *Importer) file(ctx context.Context, p string, kind fileKind, skip bool) {
	defer im.progress()
	f, err := os.Open(p)
	if err != nil {
		im.sum.Files++
		im.record(p, Outcome{Status: StatusRefused, Reason: Reason(report.RefusalRead), Detail: err.Error()})
		return
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	if kind == kindSniff {
		kind = sniff(br)
		if kind == kindOther && skip {
			im.sum.Skipped++
			if im.OnSkip != nil {
				im.OnSkip(p)
			}
			return
		}
	}
	im.sum.Files++
	switch kind {
	case kindMbox:
		err := mbox.Split(br, im.In.maxInput(), func(msg io.Reader, tooLarge bool) {
			im.sum.Messages++
			if tooLarge {
				im.record(p, im.In.Refuse(ctx, Reason(report.RefusalTooLarge), "an mbox message over the size bound", p))
				return
			}
			im.batch.Message(ctx, msg, "file:"+p, p)
		})
		if err != nil {
			im.record(p, im.In.Refuse(ctx, Reason(report.RefusalRead), err.Error(), p))
		}
	case kindMessage:
		im.sum.Messages++
		im.batch.Message(ctx, br, "file:"+p, p)
	default:
		im.batch.File(ctx, br, "file:"+p, p)
	}
}

// sniff tells a file's kind by its first bytes: an mbox starts with
// "From ", a report file is XML, gzip or zip, a message starts with a
// header field ("Name:"); anything else is kindOther.
func sniff(br *bufio.Reader) fileKind {
	head, _ := br.Peek(512)
	if bytes.HasPrefix(head, []byte("From ")) {
		return kindMbox
	}
	if _, ok := report.Detect(head); ok {
		return kindReport
	}
	if startsWithField(head) {
		return kindMessage
	}
	return kindOther
}

// startsWithField tells whether b begins with a header field name and its
// colon (RFC 5322 §3.6.8, https://datatracker.ietf.org/doc/html/rfc5322#section-3.6.8:
// printable ASCII but colon and space).
func startsWithField(b []byte) bool {
	for i, c := range b {
		switch {
		case c == ':':
			return i > 0
		case c <= ' ' || c > '~':
			return false
		}
	}
	return false
}

func (im *Importer) record(p string, o Outcome) {
	im.sum.add([]Outcome{o})
	if im.OnOutcome != nil {
		im.OnOutcome(p, o)
	}
}

func (im *Importer) progress() {
	if im.Progress != nil {
		im.sum.Elapsed = time.Since(im.start)
		im.Progress(im.sum)
	}
}

// maxInput is the bound of one message or file.
func (in *Intake) maxInput() int64 {
	if in.cfg.Limits.MaxInputBytes > 0 {
		return in.cfg.Limits.MaxInputBytes
	}
	return report.DefaultLimits().MaxInputBytes
}
