package milter

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/intake"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// reportMail is a report message from pass.example whose body is a report
// of pkg/report's corpus for example.com (the XML inline, as some
// reporters send it).
func reportMail(t *testing.T) string {
	t.Helper()
	xml, err := os.ReadFile(filepath.Join("..", "..", "pkg", "report", "testdata", "incoming", "01-rfc9990-full.xml"))
	if err != nil {
		t.Fatal(err)
	}
	return "From: DMARC <noreply-dmarc@pass.example>\nTo: bob@mx.test.example\nSubject: Report Domain: example.com\n" +
		"Date: Mon, 1 Jan 2026 00:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/xml\n\n" + strings.ReplaceAll(string(xml), "\r\n", "\n")
}

// captureHarness is a milter whose intake mailbox is bob@mx.test.example
// (the harness's recipient), storing into a fresh SQLite store.
func captureHarness(t *testing.T, mod func(*intake.CaptureConfig)) (*harness, *store.Store, *intake.Capture) {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "s.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in := intake.New(st, intake.Config{Domains: []string{"example.com"},
		Now: func() time.Time { return time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC) }})
	cc := intake.CaptureConfig{Addresses: []string{"Bob@MX.test.example"}, MaxSize: 1 << 20}
	if mod != nil {
		mod(&cc)
	}
	c := intake.NewCapture(in, cc)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go c.Run(ctx)
	h := newHarness(t, func(*config.Config) {}, func(e *Engine) { e.SetCapturer(c) })
	return h, st, c
}

// waitReports waits until the store holds n received reports.
func waitReports(t *testing.T, st *store.Store, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _, _, err := st.ReceivedCount(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store holds %d received reports, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCaptureStoresAndDelivers: report mail to the intake mailbox that
// passes DMARC is accepted at once (delivered) and its report stored off
// the reply path; the same mail again is a duplicate.
func TestCaptureStoresAndDelivers(t *testing.T) {
	h, st, _ := captureHarness(t, nil)
	s := h.session("192.0.2.10")
	for range 2 {
		r := h.send(s, msg{mailFrom: "bounce@pass.example", raw: reportMail(t), sign: true})
		if r.act.Code != gomilter.ActAccept {
			t.Fatalf("action %c, want accept", r.act.Code)
		}
	}
	waitReports(t, st, 1)
	_, rows, msgs, _ := st.ReceivedCount(context.Background(), "")
	if rows != 2 || msgs != 818 {
		t.Errorf("stored %d rows, %d messages", rows, msgs)
	}
}

// TestCaptureDiscard: with discard, report mail whose every recipient is an
// intake mailbox is discarded once stored; without a report it is
// delivered.
func TestCaptureDiscard(t *testing.T) {
	h, st, _ := captureHarness(t, func(c *intake.CaptureConfig) { c.Discard = true })
	s := h.session("192.0.2.10")
	r := h.send(s, msg{mailFrom: "bounce@pass.example", raw: reportMail(t), sign: true})
	if r.act.Code != gomilter.ActDiscard {
		t.Fatalf("action %c, want discard", r.act.Code)
	}
	waitReports(t, st, 1)
	r = h.send(s, msg{mailFrom: "bounce@pass.example", raw: message("pass.example"), sign: true})
	if r.act.Code != gomilter.ActAccept {
		t.Errorf("mail without a report: action %c, want accept (delivered)", r.act.Code)
	}
}

// TestCaptureRefusesFailingDMARC: report mail that fails DMARC (p=none:
// delivered) is refused by default and counted as dmarc_fail; with
// accept_failing_dmarc it is stored.
func TestCaptureRefusesFailingDMARC(t *testing.T) {
	forged := strings.Replace(reportMail(t), "noreply-dmarc@pass.example", "noreply-dmarc@none.example", 1)
	h, st, _ := captureHarness(t, nil)
	s := h.session("192.0.2.10")
	if r := h.send(s, msg{mailFrom: "x@none.example", raw: forged}); r.act.Code != gomilter.ActAccept {
		t.Fatalf("action %c", r.act.Code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ref, err := st.Refusals(context.Background(), time.Time{}, time.Now().Add(48*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if ref["dmarc_fail"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refusals %v, want dmarc_fail 1", ref)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitReports(t, st, 0)

	h2, st2, _ := captureHarness(t, func(c *intake.CaptureConfig) { c.AcceptFailingDMARC = true })
	s2 := h2.session("192.0.2.10")
	h2.send(s2, msg{mailFrom: "x@none.example", raw: forged})
	waitReports(t, st2, 1)
}

// TestCaptureBounded: a message over MaxSize is not captured (and is
// delivered).
func TestCaptureBounded(t *testing.T) {
	h, st, _ := captureHarness(t, func(c *intake.CaptureConfig) { c.MaxSize = 1000; c.Discard = true })
	s := h.session("192.0.2.10")
	if r := h.send(s, msg{mailFrom: "bounce@pass.example", raw: reportMail(t), sign: true}); r.act.Code != gomilter.ActAccept {
		t.Fatalf("action %c, want accept", r.act.Code)
	}
	time.Sleep(100 * time.Millisecond)
	waitReports(t, st, 0)
}
