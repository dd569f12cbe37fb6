package milter

import (
	"fmt"
	"strings"
	"testing"

	milter "github.com/emersion/go-milter"
	"github.com/miekg/dns"
	"golang.org/x/net/idna"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// forgedRaw carries two Authentication-Results claiming our authserv-id
// around one of another host.
var forgedRaw = message("pass.example",
	"Authentication-Results: "+testAuthservID+"; dmarc=pass header.from=reject.example",
	"Authentication-Results: other.example; spf=pass",
	"Authentication-Results: (x) MX.Test.Example.; dkim=pass")

// TestForgedARVariantsNeverSurvive: every spelling of our authserv-id that
// RFC 8601 and DNS allow (case, trailing dot, comments, folding white space,
// quoted string, a token glued to a tspecial) is deleted, whatever the
// outcome (pass, quarantine, authenticated submission, monitor mode);
// look-alikes that are not our id are kept.
func TestForgedARVariantsNeverSurvive(t *testing.T) {
	t.Parallel()
	ours := []string{
		testAuthservID + "; dmarc=pass",
		"MX.TEST.EXAMPLE; dmarc=pass",
		"mx.test.example.; dkim=pass",
		"(comment) mx.test.example; spf=pass",
		"\n\t(folded\n\t comment) mx.Test.example\n\t; dmarc=pass",
		"\"mx.test.example\"; dmarc=pass",
		"\t mx.test.example(c); dmarc=pass",
		"mx.test.example/1; dmarc=pass",
		"mx.test.example 1; dmarc=pass",
		"mx.test.example;dmarc=pass",
		"mx.test.example",
		"((nested) comment)mx.test.example; none",
		strings.Repeat("(", 40) + "x" + strings.Repeat(")", 40) + " mx.test.example; dmarc=pass", // deeper than any limit a parser might have
		"(unterminated mx.test.example; dmarc=pass",                                              // unreadable id that contains ours: deleted
	}
	theirs := []string{
		"mx.test.example.evil; dmarc=pass",
		"evil-mx.test.example; dmarc=pass",
		"x.mx.test.example; dmarc=pass",
		"\"mx.test.example \"; dmarc=pass",
		"other.example; dmarc=pass header.from=mx.test.example",
	}
	var extra []string
	var wantDeleted []int
	for i, v := range ours {
		extra = append(extra, "Authentication-Results: "+v)
		wantDeleted = append([]int{i + 1}, wantDeleted...)
	}
	for _, v := range theirs {
		extra = append(extra, "Authentication-Results: "+v)
	}
	for _, tc := range []struct {
		name string
		mod  func(*config.Config)
		m    msg
	}{
		{"pass", nil, msg{ip: "192.0.2.10", mailFrom: "a@pass.example", raw: message("pass.example", extra...)}},
		{"quarantine", nil, msg{ip: "198.51.100.7", mailFrom: "a@quar.example", raw: message("quar.example", extra...)}},
		{"authenticated", nil, msg{ip: "198.51.100.7", mailFrom: "a@reject.example", auth: "alice", raw: message("reject.example", extra...)}},
		{"monitor", func(c *config.Config) { c.Mode = policy.ModeMonitor }, msg{ip: "198.51.100.7", mailFrom: "a@reject.example", raw: message("reject.example", extra...)}},
		{"temperror accepted", func(c *config.Config) { c.Actions.TempError = policy.TempErrorAccept }, msg{ip: "198.51.100.7", mailFrom: "a@temp.example", raw: message("temp.example", extra...)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.mod)
			r := h.send(h.session(tc.m.ip), tc.m)
			if r.act == nil || r.act.Code != milter.ActAccept {
				t.Fatalf("got %+v, want accept", r.act)
			}
			var deleted []int
			for _, m := range r.mods {
				if m.Code == milter.ActChangeHeader && strings.EqualFold(m.HeaderName, "Authentication-Results") {
					if m.HeaderValue != "" {
						t.Errorf("changed instead of deleted: %+v", m)
					}
					deleted = append(deleted, int(m.HeaderIndex))
				}
			}
			if fmt.Sprint(deleted) != fmt.Sprint(wantDeleted) {
				t.Errorf("deleted %v, want %v", deleted, wantDeleted)
			}
		})
	}
}

// TestFromBypassRegressions replays the From: tricks that bypassed DMARC
// in other implementations (peers.md, complaint 1) against a p=reject
// domain, sent from an address and with a MAIL FROM that pass SPF for
// pass.example: a parser that took pass.example as the Author Domain would
// accept the message. Every one must be rejected.
func TestFromBypassRegressions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	s := h.session("192.0.2.10")
	for _, tc := range []struct{ name, from string }{
		{"quoted mailbox as local part (OpenDMARC #243)", `"Someone <someone@pass.example>"@reject.example`},
		{"second mailbox (CVE-2019-16378)", `a@pass.example, b@reject.example`},
		{"second mailbox first", `b@reject.example, a@pass.example`},
		{"unbalanced > (OpenDMARC #113)", `<a@reject.example>>`},
		{"quoted comma in display name (OpenDMARC #72)", `"pass.example, x" <a@reject.example>`},
		{"display name looks like an address", `a@pass.example <a@reject.example>`},
		{"trailing space (rspamd #3812)", "a@reject.example "},
		{"trailing dot", "a@reject.example."},
		{"upper case", "A@REJECT.EXAMPLE"},
		{"comment inside the domain", "a@(pass.example)reject.example"},
		{"comment after the address", "a@reject.example (a@pass.example)"},
		{"encoded word display name", "=?utf-8?q?a@pass.example?= <a@reject.example>"},
		{"two angle addresses", "<a@pass.example> <a@reject.example>"},
		{"two at signs", "a@pass.example@reject.example"},
		{"obsolete route", "<@pass.example:a@reject.example>"},
		{"group", "g: a@reject.example;"},
		{"group with a second mailbox", "g: a@pass.example, b@reject.example;"},
		{"empty group", "undisclosed-recipients:;"},
		{"folded", "Alice\n\t<a@reject.example>"},
		{"escaped quote in display name", `"a\" <a@pass.example>" <a@reject.example>`},
		{"address literal", "a@[192.0.2.10]"},
		{"empty", ""},
	} {
		raw := "From: " + tc.from + "\nTo: bob@mx.test.example\nSubject: x\n\nbody\n"
		r := h.send(s, msg{ip: "192.0.2.10", mailFrom: "x@pass.example", raw: raw})
		if r.act == nil || r.act.Code != milter.ActReplyCode || r.act.SMTPCode != 550 {
			t.Errorf("%s: From: %q got %+v, want the 550 reject", tc.name, tc.from, r.act)
		}
	}
	// A look-alike IDN is another domain (no DMARC record here), not
	// reject.example folded to ASCII.
	r0 := h.send(s, msg{ip: "192.0.2.10", mailFrom: "x@pass.example", raw: "From: a@rejéct.example\nSubject: x\n\nbody\n"})
	if ar := onlyAR(t, r0); ar["dmarc"].Value != "none" || ar["dmarc"].Props["header.from"] != idnaASCII(t, "rejéct.example") {
		t.Errorf("IDN look-alike: A-R %+v", ar)
	}
	// Two From fields.
	r := h.send(s, msg{ip: "192.0.2.10", mailFrom: "x@pass.example", raw: "From: a@pass.example\nFrom: b@reject.example\nSubject: x\n\nbody\n"})
	if r.act == nil || r.act.SMTPCode != 550 {
		t.Errorf("two From fields: %+v", r.act)
	}
}

func idnaASCII(t *testing.T, s string) string {
	a, err := idna.Lookup.ToASCII(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestDNSWorkPerMessageBounded: a hostile sender's zone cannot make one
// message cost more DNS queries than the limits allow: an SPF include chain
// of 30, an mx of 40 hosts, void lookups, a redirect loop, a From domain 20
// labels deep (the tree walk asks at most 8 names, RFC 9989 §4.10), and
// DKIM signatures of 50 domains (dkim.max_signatures verified). The bound
// is the sum of those limits; the message is also sent twice to show the
// cache answers the second.
func TestDNSWorkPerMessageBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	var zone []string
	for i := range 30 {
		zone = append(zone, fmt.Sprintf("inc%d.evil.example. 300 IN TXT \"v=spf1 include:inc%d.evil.example -all\"", i, i+1))
	}
	mx := "mx.evil.example. 300 IN TXT \"v=spf1 mx:mxs.evil.example a:void1.evil.example a:void2.evil.example a:void3.evil.example -all\""
	zone = append(zone, mx, "loop.evil.example. 300 IN TXT \"v=spf1 redirect=loop.evil.example\"")
	for i := range 40 {
		zone = append(zone, fmt.Sprintf("mxs.evil.example. 300 IN MX %d h%d.evil.example.", i, i),
			fmt.Sprintf("h%d.evil.example. 300 IN A 203.0.113.%d", i, i))
	}
	deep := "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.evil.example"
	zone = append(zone, "_dmarc.evil.example. 300 IN TXT \"v=DMARC1; p=reject\"")
	h.dns.MustAdd(zone...)
	var sigs []string
	for i := range 50 {
		sigs = append(sigs, fmt.Sprintf("DKIM-Signature: v=1; a=rsa-sha256; d=k%d.evil.example; s=s; h=from; bh=AAAA; b=AAAA", i))
	}
	lookupLimit := h.eng.cfg.SPF.LookupLimit
	for _, tc := range []struct {
		name, mailFrom, helo string
		bound                int
	}{
		// SPF: the record, at most lookup_limit terms (each an A+AAAA
		// pair at worst) and for mx at most 10 hosts (A+AAAA each), for
		// MAIL FROM and for HELO; DMARC: 8 tree-walk names plus as many
		// organizational-domain names; DKIM: max_signatures keys.
		{"include chain", "x@inc0.evil.example", "inc0.evil.example", 2 * (1 + 2*lookupLimit)},
		{"mx and void lookups", "x@mx.evil.example", "mx.evil.example", 2 * (1 + 2*lookupLimit + 2*10)},
		{"redirect loop", "x@loop.evil.example", "loop.evil.example", 2 * (1 + 2*lookupLimit)},
	} {
		raw := strings.Join(sigs, "\n") + "\nFrom: a@" + tc.name[:3] + "." + deep + "\nSubject: x\n\nbody\n"
		bound := tc.bound + 16 + h.eng.cfg.DKIM.MaxSignatures
		h.dns.ResetCounts()
		h.t = t
		s := h.session("198.51.100.7")
		r := h.send(s, msg{ip: "198.51.100.7", mailFrom: tc.mailFrom, raw: raw})
		if r.act == nil || r.act.SMTPCode != 550 {
			t.Errorf("%s: got %+v, want the reject of evil.example", tc.name, r.act)
		}
		q := h.dns.Queries()
		if q > bound {
			t.Errorf("%s: %d DNS queries for one message, bound %d", tc.name, q, bound)
		}
		if n := h.dns.QueriesFor("inc12.evil.example", dns.TypeTXT); n != 0 {
			t.Errorf("%s: include chain followed past the lookup limit (%d queries for inc12)", tc.name, n)
		}
		h.dns.ResetCounts()
		h.send(s, msg{ip: "198.51.100.7", mailFrom: tc.mailFrom, raw: raw})
		t.Logf("figures: %s: %d queries cold (bound %d), %d warm", tc.name, q, bound, h.dns.Queries())
	}
}
