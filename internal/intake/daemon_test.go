package intake

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// TestStartDaemon: the daemon's intake takes captured report mail (with
// wait: stored at once), runs the first health check at start and stores
// it, and stops.
func TestStartDaemon(t *testing.T) {
	st := openStore(t, "")
	srv := dnstest.New(t, healthZone)
	r, err := cache.New(cache.Config{Nameservers: []string{srv.Addr}, Timeout: 500 * time.Millisecond, Attempts: 1, ErrTTL: -1, StaleTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Intake
	if d, err := StartDaemon(st, r, cfg, policy.MethodTreeWalk, nil, nil); d != nil || err != nil {
		t.Fatalf("a daemon without intake domains: %v", err)
	}
	cfg.Domains, cfg.Addresses = []string{"example.com"}, []string{"dmarc@example.com"}
	// A report older than the retention (two years here: the corpus's
	// report below is a year old): expired at start.
	cfg.Retention = 2 * 365 * 24 * time.Hour
	old := feedback("old", time.Now().AddDate(-3, 0, 0).UTC().Truncate(24*time.Hour),
		rec("192.0.2.1", 1, "pass", "pass", nil, nil))
	if o := newIntake(st, nil, "example.com").Reports(context.Background(), []*report.Feedback{old}, "test"); o[0].Status != StatusStored {
		t.Fatalf("%+v", o[0])
	}
	d, err := StartDaemon(st, r, cfg, policy.MethodTreeWalk, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := os.ReadFile(filepath.Join(corpusDir, "11-message-gzip.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Capture.Wants("DMARC@example.com") || d.Capture.Wants("other@example.com") {
		t.Error("Wants")
	}
	if !d.Capture.Take(context.Background(), msg, true, true) {
		t.Error("the report was not stored")
	}
	waitFor(t, func() bool {
		n, _, _, _ := st.ReceivedCount(context.Background(), "")
		return n == 1 // the old one expired, the captured one stored
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := st.LatestHealth(context.Background(), "example.com")
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("no health check stored: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.Stop(ctx)
}
