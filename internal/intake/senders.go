package intake

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// Version is the version of the JSON shapes of Senders, NewSenders and
// Failures (docs/intake.md). It changes only when a field changes meaning
// or goes away; new fields may be added within a version.
const Version = 1

// SendersReport answers "who sends as my domain": the senders seen in
// received reports for Domain over the UTC days of [Since, Until), most
// messages first. Its JSON form is documented in docs/intake.md.
type SendersReport struct {
	Version  int       `json:"version"`
	Domain   string    `json:"domain"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Messages int64     `json:"messages"`
	Senders  []Sender  `json:"senders"`
}

// Sender is the source addresses that share an organizational domain of
// their confirmed reverse DNS name, or one address whose name is not
// known (Identified false; Org is then the address).
type Sender struct {
	Org        string `json:"org"`
	Identified bool   `json:"identified"`
	// Authorized: at least one of its messages in the range passed
	// DMARC-aligned SPF or DKIM, which only a sender holding the domain's
	// SPF authorization or DKIM key can do (or a forwarder keeping the
	// DKIM signature intact).
	Authorized bool `json:"authorized"`
	// FirstSeen and LastSeen are over every stored report for the domain,
	// not only the range (the begin and end of the reports naming it).
	FirstSeen       time.Time        `json:"first_seen"`
	LastSeen        time.Time        `json:"last_seen"`
	Messages        int64            `json:"messages"`
	SPFAlignedPass  int64            `json:"spf_aligned_pass"`
	DKIMAlignedPass int64            `json:"dkim_aligned_pass"`
	Dispositions    map[string]int64 `json:"dispositions"`
	IPs             []SenderIP       `json:"ips"`
}

// SenderIP is one source address of a sender.
type SenderIP struct {
	IP string `json:"ip"`
	// PTR is its reverse DNS name ("" when none or not looked up yet);
	// PTRState says which (pending, found, none, unconfirmed).
	PTR        string `json:"ptr"`
	PTRState   string `json:"ptr_state"`
	Messages   int64  `json:"messages"`
	Authorized bool   `json:"authorized"`
	Country    string `json:"country,omitempty"`
	ASN        int64  `json:"asn,omitempty"`
}

// Senders answers who sent as domain in the UTC days of [since, until).
func Senders(ctx context.Context, st *store.Store, domain string, since, until time.Time) (SendersReport, error) {
	rep := SendersReport{Version: Version, Domain: domain, Since: since.UTC(), Until: until.UTC(), Senders: []Sender{}}
	rows, err := st.ReceivedIn(ctx, domain, since, until)
	if err != nil {
		return rep, err
	}
	sources, err := st.SourcesOf(ctx, domain)
	if err != nil {
		return rep, err
	}
	byOrg := map[string]*Sender{}
	ips := map[string]map[netip.Addr]*SenderIP{}
	for i := range rows {
		r := &rows[i]
		if r.Messages == 0 {
			continue
		}
		src := sources[r.SourceIP]
		org, identified := senderOrg(r.SourceIP, src.Source)
		s := byOrg[org]
		if s == nil {
			s = &Sender{Org: org, Identified: identified, Dispositions: map[string]int64{}, IPs: []SenderIP{},
				FirstSeen: src.DomainFirstSeen, LastSeen: src.DomainLastSeen}
			byOrg[org], ips[org] = s, map[netip.Addr]*SenderIP{}
		}
		addRow(s, ips[org], r, src.Source)
		rep.Messages += r.Messages
	}
	for org, s := range byOrg {
		for _, ip := range ips[org] {
			s.IPs = append(s.IPs, *ip)
			seen := sources[netip.MustParseAddr(ip.IP)]
			if seen.DomainFirstSeen.Before(s.FirstSeen) {
				s.FirstSeen = seen.DomainFirstSeen
			}
			if seen.DomainLastSeen.After(s.LastSeen) {
				s.LastSeen = seen.DomainLastSeen
			}
		}
		slices.SortFunc(s.IPs, func(a, b SenderIP) int {
			return cmp.Or(cmp.Compare(b.Messages, a.Messages), cmp.Compare(a.IP, b.IP))
		})
		rep.Senders = append(rep.Senders, *s)
	}
	slices.SortFunc(rep.Senders, func(a, b Sender) int {
		return cmp.Or(cmp.Compare(b.Messages, a.Messages), cmp.Compare(a.Org, b.Org))
	})
	return rep, nil
}

// senderOrg names the sender of ip: the organizational domain of its
// confirmed PTR name, else the address itself.
func senderOrg(ip netip.Addr, src store.Source) (string, bool) {
	if src.PTRState == store.PTRFound && src.PTROrg != "" {
		return src.PTROrg, true
	}
	return ip.String(), false
}

func addRow(s *Sender, ips map[netip.Addr]*SenderIP, r *store.ReceivedTotal, src store.Source) {
	authorized := r.SPFAligned == "pass" || r.DKIMAligned == "pass"
	s.Messages += r.Messages
	if r.SPFAligned == "pass" {
		s.SPFAlignedPass += r.Messages
	}
	if r.DKIMAligned == "pass" {
		s.DKIMAlignedPass += r.Messages
	}
	s.Dispositions[r.Disposition] += r.Messages
	s.Authorized = s.Authorized || authorized
	ip := ips[r.SourceIP]
	if ip == nil {
		ip = &SenderIP{IP: r.SourceIP.String(), PTR: src.PTR, PTRState: string(src.PTRState), Country: src.Country, ASN: src.ASN}
		if ip.PTRState == "" {
			ip.PTRState = string(store.PTRPending)
		}
		ips[r.SourceIP] = ip
	}
	ip.Messages += r.Messages
	ip.Authorized = ip.Authorized || authorized
}

// NewSenders answers which senders were first seen in [since, until): the
// senders of the range whose first report for domain began in it.
func NewSenders(ctx context.Context, st *store.Store, domain string, since, until time.Time) (SendersReport, error) {
	rep, err := Senders(ctx, st, domain, since, until)
	if err != nil {
		return rep, err
	}
	var fresh []Sender
	rep.Messages = 0
	for _, s := range rep.Senders {
		if !s.FirstSeen.Before(since) && s.FirstSeen.Before(until) {
			fresh = append(fresh, s)
			rep.Messages += s.Messages
		}
	}
	rep.Senders = append([]Sender{}, fresh...)
	return rep, nil
}
