package milter

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// TestTraceOnlyWhenWanted: the steps are recorded for log_level = "debug"
// (the session logs them) and for the evaluate subcommand, and not
// formatted at all otherwise.
func TestTraceOnlyWhenWanted(t *testing.T) {
	t.Parallel()
	e := benchEngineT(t)
	env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), Helo: "mail.client.example", MailFrom: "a@reject.example", MTAHost: testAuthservID}
	raw := []byte(message("reject.example"))
	fields, body := SplitMessage(raw)
	if d := runTx(e, env, fields, body); len(d.Trace) != 0 {
		t.Errorf("log_level info: %d trace lines, want none", len(d.Trace))
	}
	if d := EvaluateMessage(context.Background(), e, env, raw); len(d.Trace) == 0 {
		t.Error("evaluate: no trace")
	}
	debug := *e.cfg
	debug.LogLevel = "debug"
	de, err := NewEngine(&debug, e.res, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := runTx(de, env, fields, body)
	if !slices.ContainsFunc(d.Trace, func(l string) bool { return strings.HasPrefix(l, "spf mfrom: fail") }) {
		t.Errorf("log_level debug: trace %q has no SPF step", d.Trace)
	}
}

// txEngine is an engine over pkg/cache and its own test DNS, with the
// configuration changed by mod.
func txEngine(t *testing.T, mod func(*config.Config)) (*Engine, *dnstest.Server) {
	t.Helper()
	srv, err := dnstest.Start(testZone())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	cfg := config.Default()
	cfg.AuthservID = testAuthservID
	cfg.DNS.Nameservers = []string{srv.Addr}
	if mod != nil {
		mod(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	res, err := cache.New(cache.Config{Nameservers: cfg.DNS.Nameservers, Timeout: 500 * time.Millisecond, Attempts: 1, ErrTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(cfg, res, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e, srv
}

// TestTransactionAppliedDisposition: through a whole Transaction, a message
// that is delivered never has a verdict or report row saying reject: monitor
// mode and an allowlisted client network are stated as local_policy
// overrides, and what enforce mode would have done is the decision's Would.
func TestTransactionAppliedDisposition(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mod    func(*config.Config)
		action policy.Action
		bypass Bypass
		reason policy.Reason
		row    policy.ReportDisposition
	}{
		{"enforce", nil, policy.ActionReject, BypassNone, "", policy.ReportReject},
		{"monitor", func(c *config.Config) { c.Mode = policy.ModeMonitor }, policy.ActionAccept, BypassNone, policy.ReasonMonitorMode, policy.ReportNone},
		{"allowlisted network", func(c *config.Config) {
			n, _ := config.ParseNetwork("198.51.100.0/24")
			c.Allowlist.Networks = []config.Network{n}
		}, policy.ActionAccept, BypassAllowNetwork, policy.ReasonAllowNetwork, policy.ReportNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e, _ := txEngine(t, func(cfg *config.Config) {
				cfg.Actions.RejectPolicy = policy.RejectReject
				if c.mod != nil {
					c.mod(cfg)
				}
			})
			env := Envelope{ClientIP: netip.MustParseAddr("198.51.100.7"), Helo: "mail.client.example", MailFrom: "x@reject.example",
				MTAHost: testAuthservID, Rcpts: []string{"bob@mx.test.example"}}
			fields, body := SplitMessage([]byte(message("reject.example")))
			d := runTx(e, env, fields, body)
			if d.Action != c.action || d.Bypass != c.bypass || d.Verdict == nil || d.Verdict.Action != c.action {
				t.Fatalf("action %s bypass %q verdict %+v", d.Action, d.Bypass, d.Verdict)
			}
			if c.action == policy.ActionAccept && d.Would != policy.ActionReject {
				t.Errorf("would %q, want reject", d.Would)
			}
			rows := d.Verdict.ReportRows()
			if len(rows) != 1 || rows[0].Disposition != c.row || rows[0].EnvelopeTo != "mx.test.example" {
				t.Fatalf("rows %+v", rows)
			}
			if c.reason != "" {
				if rs := rows[0].Reasons; len(rs) != 1 || rs[0].Reason != c.reason || rs[0].Type() != policy.OverrideLocalPolicy {
					t.Errorf("reasons %+v", rs)
				}
				if !strings.Contains(d.AuthResults, "policy.dmarc=none") {
					t.Errorf("A-R %q does not say policy.dmarc=none", d.AuthResults)
				}
			}
		})
	}
}

// TestTransactionTempErrorCause: the cause of a temperror reaches the
// decision as a typed value: a DNS failure of discovery, and a discovery
// still running at the end-of-message deadline. A tempfailed message gives
// no report row (it comes back).
func TestTransactionTempErrorCause(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		fault dnstest.Fault
		eom   time.Duration
		want  policy.TempErrorCause
		is    error
	}{
		{"SERVFAIL", dnstest.FaultServFail, 0, policy.CauseDMARCDNS, policy.ErrTempFail},
		{"no answer by the end of message", dnstest.FaultDrop, 200 * time.Millisecond, policy.CauseTimeout, policy.ErrTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e, srv := txEngine(t, func(cfg *config.Config) {
				if c.eom > 0 {
					cfg.Timeouts.EndOfMessage = c.eom
				}
			})
			srv.SetFault("_dmarc.reject.example.", c.fault)
			env := Envelope{ClientIP: netip.MustParseAddr("198.51.100.7"), Helo: "mail.client.example", MailFrom: "x@reject.example", MTAHost: testAuthservID}
			fields, body := SplitMessage([]byte(message("reject.example")))
			d := runTx(e, env, fields, body)
			if d.Action != policy.ActionTempFail || d.TempErrCause != c.want {
				t.Fatalf("action %s cause %q, want tempfail %q", d.Action, d.TempErrCause, c.want)
			}
			if err := d.Verdict.Domains[0].Err; !errors.Is(err, c.is) {
				t.Errorf("err %v does not wrap %v", err, c.is)
			}
			if rows := d.Verdict.ReportRows(); len(rows) != 0 {
				t.Errorf("%d report rows for a tempfailed message", len(rows))
			}
		})
	}
}
