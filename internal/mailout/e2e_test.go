package mailout

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// TestReportDelivery runs the three parts as the reporter will: the
// destinations of a policy record, a signed report, one Send over
// required STARTTLS with AUTH; the relay receives exactly the signed bytes,
// for the destinations that may have them, and the signature verifies.
func TestReportDelivery(t *testing.T) {
	t.Parallel()
	keyFile, pub := testKey(t, "ed25519")
	srv := dnstest.New(t, txtRecord("rep._domainkey.receiver.example.", pub)+`
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.com,mailto:agg@consumer.example,mailto:x@stranger.example"
_dmarc.receiver.example. 300 IN TXT "v=DMARC1; p=reject"
*._report._dmarc.consumer.example. 300 IN TXT "v=DMARC1"
`)
	res := newResolver(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	txts, err := res.LookupTXT(ctx, "_dmarc.example.com.")
	if err != nil || len(txts) != 1 {
		t.Fatal(txts, err)
	}
	rec, err := policy.Parse(txts[0])
	if err != nil {
		t.Fatal(err)
	}
	var to []string
	for _, d := range Destinations(ctx, res, "example.com", strings.Join(rec.RUA, ","), policy.MethodTreeWalk) {
		if d.State == StateSend {
			to = append(to, d.Address)
		}
	}
	if len(to) != 2 || to[0] != "dmarc@example.com" || to[1] != "agg@consumer.example" {
		t.Fatalf("destinations %v", to)
	}

	s, err := NewSigner(SignerOptions{Domain: "receiver.example", Selector: "rep", KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.Sign(reportMessage("dmarc-reports@receiver.example"))
	if err != nil {
		t.Fatal(err)
	}

	r := newRelay(t, relayOptions{startTLS: true, user: "reporter", pass: "pw"})
	c := newTestClient(t, ClientOptions{Relay: "smtp://" + r.addr, StartTLS: StartTLSRequired, CAFile: r.caFile, Username: "reporter", PasswordFile: passwordFile(t, "pw\n", 0o600)})
	for _, rr := range c.Send(ctx, "dmarc-reports@receiver.example", to, msg) {
		if rr.Status != StatusAccepted {
			t.Fatalf("%+v", rr)
		}
	}
	got := r.messages()
	if len(got) != 1 || !got[0].tls || got[0].user != "reporter" || !bytes.Equal(got[0].data, msg) {
		t.Fatalf("relay received %+v", got)
	}
	if vr := verifyOurs(t, ctx, res, got[0].data); len(vr) != 1 || vr[0].Result != verify.ResultPass {
		t.Errorf("received message: %+v", vr)
	}
}
