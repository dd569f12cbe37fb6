package intake

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// Cause is a kind of authentication failure seen in received reports.
type Cause string

// The causes, each with the fix in words (Fix).
const (
	// CauseSPFUnaligned: SPF passed, but for a MAIL FROM domain that is
	// not ours (a third party's own bounce domain), so it does not count
	// for DMARC (RFC 7489 §3.1,
	// https://datatracker.ietf.org/doc/html/rfc7489#section-3.1).
	CauseSPFUnaligned Cause = "spf_unaligned"
	// CauseSPFFail: the MAIL FROM domain is ours, but SPF did not pass:
	// the sending host is not in our SPF record.
	CauseSPFFail Cause = "spf_fail"
	// CauseDKIMSelectorFailing: a signature of ours with this selector
	// never passed in the range: key missing, revoked, or wrong.
	CauseDKIMSelectorFailing Cause = "dkim_selector_failing"
	// CauseDKIMUnaligned: DKIM passed, but for another domain only.
	CauseDKIMUnaligned Cause = "dkim_unaligned"
	// CauseForwarded: the reporter said so (forwarded, mailing_list,
	// trusted_forwarder), or our signature, whose selector passes
	// elsewhere, broke in transit: the message was changed by a
	// forwarder or a list.
	CauseForwarded Cause = "forwarded"
	// CauseUnauthenticated: neither SPF nor DKIM for our domain at all:
	// spoofing, or a service of ours not set up yet.
	CauseUnauthenticated Cause = "unauthenticated"
)

// Fix says in words what to do about c.
func (c Cause) Fix() string {
	switch c {
	case CauseSPFUnaligned:
		return "the sender uses its own bounce (MAIL FROM) domain: set up a custom return-path under your domain with the provider and include it in that name's SPF record, or have it sign with DKIM for your domain"
	case CauseSPFFail:
		return "the sending host is not in the SPF record of your MAIL FROM domain: if the host is yours or a service of yours, add it (ip4:/include:) and keep the count of DNS lookups under 10 (dmarc-milter lookup)"
	case CauseDKIMSelectorFailing:
		return "signatures with this selector never verify: publish the key at selector._domainkey.domain (or fix the one published: copy it again from the signer), or retire the selector"
	case CauseDKIMUnaligned:
		return "the sender signs with its own domain only: have it sign with d= your domain (publish its key under a selector of yours)"
	case CauseForwarded:
		return "the message was forwarded or changed by a mailing list after signing: nothing to fix in your DNS; keep DKIM signing on every message so that unchanged forwards still pass"
	case CauseUnauthenticated:
		return "no SPF or DKIM for your domain: if this sender is yours, authorize it (SPF include or DKIM key); if not, it is spoofing, which your p= policy handles"
	}
	return ""
}

// FailuresReport answers "what fails and why" for Domain over the UTC days
// of [Since, Until): one entry per (cause, sender, detail), most messages
// first. Its JSON form is documented in docs/intake.md.
type FailuresReport struct {
	Version int       `json:"version"`
	Domain  string    `json:"domain"`
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
	// Messages is every message of the range; DMARCFail those that passed
	// neither aligned SPF nor aligned DKIM.
	Messages  int64     `json:"messages"`
	DMARCFail int64     `json:"dmarc_fail"`
	Failures  []Failure `json:"failures"`
}

// Failure is one cause of failing authentication from one sender.
type Failure struct {
	Cause  Cause  `json:"cause"`
	Sender string `json:"sender"`
	// Detail names what failed: a MAIL FROM domain, a selector
	// ("s1._domainkey.example.com"), a signing domain.
	Detail string `json:"detail"`
	// Messages had this failure; DMARCFail of them failed DMARC (the
	// others passed through the other mechanism).
	Messages  int64    `json:"messages"`
	DMARCFail int64    `json:"dmarc_fail"`
	IPs       []string `json:"ips"`
	Fix       string   `json:"fix"`
}

// maxFailureIPs bounds the addresses listed per failure.
const maxFailureIPs = 10

// Failures answers what fails and why for domain in [since, until).
func Failures(ctx context.Context, st *store.Store, domain string, since, until time.Time) (FailuresReport, error) {
	rep := FailuresReport{Version: Version, Domain: domain, Since: since.UTC(), Until: until.UTC(), Failures: []Failure{}}
	rows, err := st.ReceivedIn(ctx, domain, since, until)
	if err != nil {
		return rep, err
	}
	sources, err := st.SourcesOf(ctx, domain)
	if err != nil {
		return rep, err
	}
	passing := passingSelectors(rows, domain)
	type key struct {
		cause          Cause
		sender, detail string
	}
	agg := map[key]*Failure{}
	seenIP := map[key]map[netip.Addr]bool{}
	for i := range rows {
		r := &rows[i]
		if r.Messages == 0 {
			continue
		}
		rep.Messages += r.Messages
		dmarcFail := r.SPFAligned != "pass" && r.DKIMAligned != "pass"
		if dmarcFail {
			rep.DMARCFail += r.Messages
		}
		sender, _ := senderOrg(r.SourceIP, sources[r.SourceIP].Source)
		for _, c := range Classify(r.ReceivedRow, domain, passing) {
			k := key{c.Cause, sender, c.Detail}
			f := agg[k]
			if f == nil {
				f = &Failure{Cause: c.Cause, Sender: sender, Detail: c.Detail, IPs: []string{}, Fix: c.Cause.Fix()}
				agg[k], seenIP[k] = f, map[netip.Addr]bool{}
			}
			f.Messages += r.Messages
			if dmarcFail {
				f.DMARCFail += r.Messages
			}
			if !seenIP[k][r.SourceIP] && len(f.IPs) < maxFailureIPs {
				seenIP[k][r.SourceIP] = true
				f.IPs = append(f.IPs, r.SourceIP.String())
			}
		}
	}
	for _, f := range agg {
		slices.Sort(f.IPs)
		rep.Failures = append(rep.Failures, *f)
	}
	slices.SortFunc(rep.Failures, func(a, b Failure) int {
		return cmp.Or(cmp.Compare(b.DMARCFail, a.DMARCFail), cmp.Compare(b.Messages, a.Messages),
			cmp.Compare(a.Cause, b.Cause), cmp.Compare(a.Sender, b.Sender), cmp.Compare(a.Detail, b.Detail))
	})
	return rep, nil
}

// Finding is one cause found in a row, with what it is about.
type Finding struct {
	Cause  Cause
	Detail string
}

// selectorKey names a DKIM key: selector and signing domain.
type selectorKey struct{ selector, domain string }

// passingSelectors are our (aligned) selectors that passed at least once in
// rows.
func passingSelectors(rows []store.ReceivedTotal, domain string) map[selectorKey]bool {
	out := map[selectorKey]bool{}
	for _, r := range rows {
		for _, d := range r.DKIM {
			if d.Result == "pass" && aligned(d.Domain, domain) {
				out[selectorKey{d.Selector, d.Domain}] = true
			}
		}
	}
	return out
}

// Classify says what failed in one received row for domain, and why.
// passing are our selectors known to pass (a failure of one of them is a
// message changed in transit, not a broken key). A row that passed both
// aligned SPF and DKIM has no finding.
func Classify(r store.ReceivedRow, domain string, passing map[selectorKey]bool) []Finding {
	var out []Finding
	add := func(c Cause, detail string) {
		f := Finding{Cause: c, Detail: detail}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	for _, x := range r.Reasons {
		switch x.Type {
		case "forwarded", "mailing_list", "trusted_forwarder":
			add(CauseForwarded, "reporter: "+x.Type)
		}
	}
	ownSPF, ownDKIM := false, false
	if r.SPFAligned != "pass" && r.SPF != nil {
		switch {
		case r.SPF.Result == "pass" && !aligned(r.SPF.Domain, domain):
			add(CauseSPFUnaligned, r.SPF.Domain)
		case aligned(r.SPF.Domain, domain) && r.SPF.Result != "pass":
			ownSPF = true
			add(CauseSPFFail, r.SPF.Domain)
		}
	}
	if r.DKIMAligned != "pass" {
		otherPass := ""
		for _, d := range r.DKIM {
			switch {
			case aligned(d.Domain, domain) && d.Result != "pass":
				ownDKIM = true
				if passing[selectorKey{d.Selector, d.Domain}] {
					add(CauseForwarded, fmt.Sprintf("%s._domainkey.%s broke in transit", d.Selector, d.Domain))
				} else {
					add(CauseDKIMSelectorFailing, fmt.Sprintf("%s._domainkey.%s", d.Selector, d.Domain))
				}
			case !aligned(d.Domain, domain) && d.Result == "pass" && otherPass == "":
				otherPass = d.Domain
			}
		}
		if otherPass != "" && !ownDKIM {
			add(CauseDKIMUnaligned, otherPass)
		}
	}
	if r.SPFAligned != "pass" && r.DKIMAligned != "pass" && !ownSPF && !ownDKIM && len(out) == 0 {
		add(CauseUnauthenticated, r.HeaderFrom)
	}
	return out
}

// aligned tells whether a and b share an organizational domain (relaxed
// alignment, RFC 7489 §3.1; PSL-based, which needs no DNS).
func aligned(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	oa, err1 := policy.OrgDomain(context.Background(), nil, a, policy.MethodPSL, nil)
	ob, err2 := policy.OrgDomain(context.Background(), nil, b, policy.MethodPSL, nil)
	return err1 == nil && err2 == nil && oa == ob
}
