package intake

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/health"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

const healthZone = `
_dmarc.example.com. IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"
example.com. IN TXT "v=spf1 ip4:198.51.100.5 -all"
`

// TestCheckHealth: the stored health check of an intake domain checks the
// selectors of our signatures seen in reports and the subdomains seen as
// header_from, and is read back from the store without DNS.
func TestCheckHealth(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, "")
	in := newIntake(st, nil, "example.com")
	scenario(t, in)
	sub := rec("198.51.100.5", 1, report.DMARCPass, report.DMARCPass, nil, nil)
	sub.Identifiers.HeaderFrom = "News.Example.com"
	if o := in.Reports(ctx, []*report.Feedback{feedback("sub", dec1, sub)}, "test"); o[0].Status != StatusStored {
		t.Fatalf("%+v", o)
	}
	req, err := HealthRequest(ctx, st, "example.com", policy.MethodTreeWalk, testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := health.Request{Domain: "example.com", Method: policy.MethodTreeWalk,
		Selectors: []string{"crm", "s1"}, Subdomains: []string{"news.example.com"}}
	if diff := cmp.Diff(want, req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	srv := dnstest.New(t, healthZone)
	r, err := cache.New(cache.Config{Nameservers: []string{srv.Addr}, Timeout: 500 * time.Millisecond, Attempts: 1, ErrTTL: -1, StaleTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := CheckHealth(ctx, st, r, "example.com", policy.MethodTreeWalk, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.DKIM) != 2 || len(rep.Subdomains) != 1 || rep.Verdict != health.Fail {
		t.Errorf("report: %d keys, %d subdomains, verdict %s (%s)", len(rep.DKIM), len(rep.Subdomains), rep.Verdict, rep.Summary)
	}
	srv.Stop() // what follows needs no DNS
	h, err := st.LatestHealth(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	var back health.Report
	if err := json.Unmarshal(h.Report, &back); err != nil || back.Summary != rep.Summary || h.Verdict != string(rep.Verdict) {
		t.Errorf("stored %+v, %v", h, err)
	}
}
