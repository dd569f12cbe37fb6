package intake

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCapture: a captured message is stored by Run off the caller's path;
// one failing DMARC is refused (dmarc_fail) unless AcceptFailingDMARC;
// with wait, Take says whether the report is in the store (a duplicate
// is); a full queue drops (counted) instead of blocking.
func TestCapture(t *testing.T) {
	ctx := context.Background()
	msg, err := os.ReadFile(filepath.Join(corpusDir, "11-message-gzip.eml"))
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, "")
	m := &countingMetrics{}
	in := newIntake(st, m, "example.com")
	c := NewCapture(in, CaptureConfig{Addresses: []string{"dmarc@example.com"}, MaxSize: 1 << 20, Queue: 1})
	if c.Take(ctx, msg, true, false) {
		t.Error("Take without wait says stored")
	}
	if c.Take(ctx, msg, true, false); c.Dropped() != 1 {
		t.Errorf("dropped %d, want 1 (queue of 1, not running)", c.Dropped())
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.Run(rctx); close(done) }()
	waitFor(t, func() bool { n, _, _, _ := st.ReceivedCount(ctx, ""); return n == 1 })
	cancel()
	<-done

	if !c.Take(ctx, msg, true, true) {
		t.Error("a duplicate is in the store: Take(wait) should say stored")
	}
	if c.Take(ctx, msg, false, true) {
		t.Error("failing DMARC: Take(wait) says stored")
	}
	if m.refused[ReasonDMARCFail] != 1 {
		t.Errorf("refusals %v", m.refused)
	}
	lax := NewCapture(in, CaptureConfig{MaxSize: 1 << 20, AcceptFailingDMARC: true})
	if !lax.Take(ctx, msg, false, true) {
		t.Error("accept_failing_dmarc: not stored")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
