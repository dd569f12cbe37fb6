package milter

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// benchEngine is an engine over pkg/cache and the test zone, without a
// milter server: the Transaction benchmarks measure the per-message work
// (SPF, DKIM, discovery, evaluation, Authentication-Results) and nothing of
// the protocol layer.
func benchEngineT(b testing.TB) *Engine {
	b.Helper()
	srv, err := dnstest.Start(testZone())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Stop)
	cfg := config.Default()
	cfg.AuthservID = testAuthservID
	cfg.DNS.Nameservers = []string{srv.Addr}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	res, err := cache.New(cache.Config{Nameservers: cfg.DNS.Nameservers, Timeout: 500 * time.Millisecond, Attempts: 1})
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewEngine(cfg, res, nil)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// runTx runs one message through a Transaction as the session does.
func runTx(e *Engine, env Envelope, fields []HeaderField, body []byte) *Decision {
	return runTxMemo(e, env, nil, fields, body)
}

// runTxMemo is runTx with the connection's HELO SPF memo.
func runTxMemo(e *Engine, env Envelope, memo *HeloSPFMemo, fields []HeaderField, body []byte) *Decision {
	tx := Begin(context.Background(), e, env, memo)
	defer tx.Close()
	for _, f := range fields {
		tx.Header(f.Name, f.Value)
	}
	tx.EndOfHeaders()
	tx.BodyChunk(body)
	return tx.End()
}

// BenchmarkTransaction: one message per iteration through Begin … End with
// every DNS answer in the warm cache. "pass" is DKIM-signed (SPF, DKIM and
// DMARC pass, accepted with an A-R field); "reject" is unsigned from a
// domain whose SPF fails (DMARC fail, p=reject).
func BenchmarkTransaction(b *testing.B) {
	t := &testing.T{}
	e := benchEngineT(b)
	env := Envelope{ClientIP: netip.MustParseAddr("192.0.2.10"), ClientName: "client.example", Helo: "mail.client.example", MTAHost: testAuthservID}
	cases := []struct {
		name, mailFrom string
		raw            []byte
		want           policy.Action
	}{
		{"pass", "a@pass.example", signMessage(t, []byte(message("pass.example"))), policy.ActionAccept},
		{"reject", "a@reject.example", []byte(message("reject.example")), policy.ActionReject},
	}
	for _, c := range cases {
		fields, body := SplitMessage(c.raw)
		env := env
		env.MailFrom = c.mailFrom
		env.Rcpts = []string{"bob@mx.test.example"}
		b.Run(c.name, func(b *testing.B) {
			for range 3 { // warm the cache
				runTx(e, env, fields, body)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d := runTx(e, env, fields, body); d.Action != c.want {
					b.Fatalf("action %s, want %s (%s)", d.Action, c.want, d.Reason)
				}
			}
		})
	}
}
