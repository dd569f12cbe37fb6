package milter

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
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
