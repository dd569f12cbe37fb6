package milter

import (
	"strings"
	"testing"

	milter "github.com/emersion/go-milter"
	"github.com/miekg/dns"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
)

// threeDomains is a message From three Author Domains: none.example
// (p=none), quar.example (p=quarantine) and nodmarc.example (no record,
// NXDOMAIN).
const threeDomains = "From: a@none.example, b@quar.example, c@nodmarc.example\nTo: bob@mx.test.example\nSubject: three\nDate: Mon, 1 Jan 2026 00:00:00 +0000\n\nHello.\n"

// TestTooManyDomainsQuarantine: with dmarc.from.max_domains = 2 and
// too_many_domains = "quarantine", the third Author Domain is neither
// looked up nor evaluated, so it cannot turn the message into a 451
// temperror; the message is quarantined as configured (RFC 9989 §11.5).
func TestTooManyDomainsQuarantine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		method     config.QuarantineMethod
		hold, mark bool
	}{
		{config.QuarantineHeader, false, true},
		{config.QuarantineHold, true, false},
	}
	for _, tc := range cases {
		t.Run(string(tc.method), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(c *config.Config) {
				c.DMARC.From.MaxDomains = 2
				c.DMARC.From.TooManyDomains = "quarantine"
				c.Actions.QuarantineMethod = tc.method
			})
			s := h.session("198.51.100.7")
			r := h.send(s, msg{mailFrom: "x@none.example", raw: threeDomains})
			if r.act == nil || r.act.Code != milter.ActAccept {
				t.Fatalf("RFC 9989 §11.5: action %+v, want accept with quarantine (not 451)", r.act)
			}
			checkQuarantine(t, r, tc.hold, tc.mark)
			ar := r.inserted("Authentication-Results")
			if len(ar) != 1 {
				t.Fatalf("%d Authentication-Results inserted, want 1", len(ar))
			}
			for _, want := range []string{"header.from=none.example", "header.from=quar.example"} {
				if !strings.Contains(ar[0], want) {
					t.Errorf("A-R lacks %s: %s", want, ar[0])
				}
			}
			if strings.Contains(ar[0], "nodmarc.example") || strings.Contains(ar[0], "temperror") {
				t.Errorf("A-R evaluates the domain beyond max_domains: %s", ar[0])
			}
			if n := h.dns.QueriesFor("_dmarc.nodmarc.example.", dns.TypeTXT); n != 0 {
				t.Errorf("RFC 9989 §11.5: %d queries for the domain beyond max_domains", n)
			}
		})
	}
}

// TestTooManyDomainsReject: the default too_many_domains = "reject" still
// rejects such a message.
func TestTooManyDomainsReject(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *config.Config) { c.DMARC.From.MaxDomains = 2 })
	s := h.session("198.51.100.7")
	r := h.send(s, msg{mailFrom: "x@none.example", raw: threeDomains})
	if r.act == nil || r.act.Code != milter.ActReplyCode || r.act.SMTPCode != 550 {
		t.Fatalf("RFC 9989 §11.5: action %+v, want a 550 reject", r.act)
	}
}
