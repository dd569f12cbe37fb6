package milter

import (
	"strings"
	"sync"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// Fault injection, DNS side (issue 8): every upstream misbehaviour, injected
// in the dnstest server behind pkg/cache, must give dmarc=temperror and the
// configured temperror action, never dmarc=fail and never a reject. The
// message is from reject.example (p=reject, SPF -all), which a healthy DNS
// rejects: so a fault that leaked into a "fail" would show as 550.

// dnsFaults are the upstream faults; delay > 0 makes every answer slower
// than the resolver's deadline instead.
var dnsFaults = []struct {
	name  string
	fault dnstest.Fault
	delay time.Duration
}{
	{"servfail", dnstest.FaultServFail, 0},
	{"refused", dnstest.FaultRefused, 0},
	{"timeout", dnstest.FaultDrop, 0},
	{"garbage", dnstest.FaultGarbage, 0},
	{"wrong id", dnstest.FaultWrongID, 0},
	{"wrong question", dnstest.FaultWrongQuestion, 0},
	{"formerr", dnstest.FaultFormErr, 0},
	{"slower than the deadline", dnstest.FaultNone, 900 * time.Millisecond},
}

// faultCache gives the resolver a short deadline, one attempt, and no
// failure caching, so that each fault is seen as such.
func faultCache(c *cache.Config) {
	c.Timeout = 300 * time.Millisecond
	c.Attempts = 1
	c.ErrTTL = -1
}

func TestFaultDNSGivesTempError(t *testing.T) {
	t.Parallel()
	for _, f := range dnsFaults {
		for _, action := range []policy.TempErrorHandling{policy.TempErrorTempFail, policy.TempErrorAccept} {
			t.Run(f.name+"/"+string(action), func(t *testing.T) {
				t.Parallel()
				h := newHarnessCache(t, func(c *config.Config) { c.Actions.TempError = action }, faultCache)
				h.dns.SetFaultAll(f.fault)
				h.dns.SetDelay(f.delay)
				s := h.session("198.51.100.7")
				r := h.send(s, msg{mailFrom: "x@reject.example", raw: message("reject.example")})
				if r.act == nil {
					t.Fatalf("no answer at end of message (MAIL answered %+v)", r.mailAct)
				}
				if r.act.Code == milter.ActReject || r.act.SMTPCode == 550 {
					t.Fatalf("DNS fault %s rejected the message: %+v", f.name, r.act)
				}
				switch action {
				case policy.TempErrorTempFail:
					if r.act.Code != milter.ActReplyCode || r.act.SMTPCode != 451 || !strings.HasPrefix(r.act.SMTPText, "4.7.5 ") {
						t.Fatalf("got %+v, want 451 4.7.5", r.act)
					}
				case policy.TempErrorAccept:
					if r.act.Code != milter.ActAccept {
						t.Fatalf("got %+v, want accept", r.act)
					}
					ar := onlyAR(t, r)
					if ar["dmarc"].Value != "temperror" || ar["spf"].Value != "temperror" {
						t.Errorf("A-R %+v, want spf and dmarc temperror", ar)
					}
				}
				if !strings.Contains(h.logs.String(), "dmarc=temperror") {
					t.Errorf("verdict line does not say temperror:\n%s", h.logs)
				}
			})
		}
	}
}

// TestFaultDNSTruncatedUsesTCP: a truncated UDP answer is not a failure;
// the resolver asks again over TCP and the verdict is the healthy one.
func TestFaultDNSTruncatedUsesTCP(t *testing.T) {
	t.Parallel()
	h := newHarnessCache(t, nil, faultCache)
	h.dns.SetFaultAll(dnstest.FaultTruncate)
	r := h.send(h.session("198.51.100.7"), msg{mailFrom: "x@reject.example", raw: message("reject.example")})
	if r.act == nil || r.act.SMTPCode != 550 {
		t.Fatalf("got %+v, want the DMARC reject", r.act)
	}
	if _, tcp := h.dns.TransportQueries(); tcp == 0 {
		t.Error("no query over TCP")
	}
}

// TestFaultDNSSlowerThanMilterDeadlines: when DNS is slower than the
// milter's own step deadlines (and the resolver would wait longer), the
// message is answered at timeouts.end_of_message with temperror. The time
// bound is generous (a multiple of the configured deadline, far below the
// DNS delay): it shows that we do not wait for the DNS.
func TestFaultDNSSlowerThanMilterDeadlines(t *testing.T) {
	t.Parallel()
	const dnsDelay = 4 * time.Second
	h := newHarnessCache(t, func(c *config.Config) {
		c.Timeouts.SPF, c.Timeouts.DKIM, c.Timeouts.DMARC = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
		c.Timeouts.EndOfMessage = 600 * time.Millisecond
	}, func(c *cache.Config) { c.Timeout = 20 * time.Second; c.Attempts = 1; c.ErrTTL = -1 })
	h.dns.SetDelay(dnsDelay)
	start := time.Now()
	r := h.send(h.session("198.51.100.7"), msg{mailFrom: "x@reject.example", raw: message("reject.example"), sign: true})
	took := time.Since(start)
	if r.act == nil || r.act.SMTPCode != 451 {
		t.Fatalf("got %+v, want 451 temperror", r.act)
	}
	if took > dnsDelay/2 {
		t.Errorf("message took %v: the milter waited for the DNS (delay %v)", took, dnsDelay)
	}
	t.Logf("answered in %v with DNS answers delayed %v", took, dnsDelay)
}

// fakeClock is the resolver's clock in tests that need cached answers to
// expire.
type fakeClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// TestFaultUpstreamDisappears: the DNS server goes away in the middle of a
// run. Domains already cached keep their verdict, also once their TTL has
// run out (serve-stale, RFC 8767); a domain never seen gets temperror and
// the tempfail action, never a reject.
func TestFaultUpstreamDisappears(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{}
	h := newHarnessCache(t, nil, func(c *cache.Config) {
		faultCache(c)
		c.StaleTTL = time.Hour
		c.Now = clk.now
	})
	s := h.session("198.51.100.7")
	send := func(dom string) *milter.Action {
		t.Helper()
		return h.send(s, msg{mailFrom: "x@" + dom, raw: message(dom)}).act
	}
	if a := send("reject.example"); a.SMTPCode != 550 {
		t.Fatalf("healthy DNS: %+v", a)
	}
	h.dns.Stop() // the upstream disappears
	if a := send("reject.example"); a.SMTPCode != 550 {
		t.Errorf("cached domain, fresh answers: %+v, want the same reject", a)
	}
	clk.advance(10 * time.Minute) // past every TTL of the zone (300s)
	if a := send("reject.example"); a.SMTPCode != 550 {
		t.Errorf("cached domain, expired answers: %+v, want the reject (serve-stale)", a)
	}
	if st := h.res.Stats(); st.StaleServes == 0 {
		t.Errorf("no stale serve counted: %+v", st)
	}
	if a := send("quar.example"); a.Code != milter.ActReplyCode || a.SMTPCode != 451 {
		t.Errorf("uncached domain with the upstream gone: %+v, want 451", a)
	}
}
