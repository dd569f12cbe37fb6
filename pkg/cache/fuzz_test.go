package cache

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzAnswer feeds arbitrary bytes, as an upstream answer to a TXT question,
// through the answer handling: unpacking, validation, the CNAME chase and the
// building of cache entries. Properties: no panic; a validated answer yields
// only records of the asked type; every cache lifetime is within the clamps.
func FuzzAnswer(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("example.", dns.TypeTXT)
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ok := new(dns.Msg)
	ok.SetReply(q)
	ok.Answer = append(ok.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{"a", "b"}})
	seed(ok)
	cn := new(dns.Msg)
	cn.SetReply(q)
	cn.Answer = append(cn.Answer,
		&dns.CNAME{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 5}, Target: "t.example."},
		&dns.CNAME{Hdr: dns.RR_Header{Name: "t.example.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 5}, Target: "example."})
	seed(cn)
	nx := new(dns.Msg)
	nx.SetRcode(q, dns.RcodeNameError)
	nx.Ns = append(nx.Ns, &dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 1 << 31}, Minttl: 1 << 30})
	seed(nx)
	f.Add([]byte{0xde, 0xad, 0xbe, 0xef})

	r, err := New(Config{Nameservers: []string{"127.0.0.1:53"}, MinTTL: time.Second, MaxTTL: time.Hour, MaxNegTTL: time.Minute, StaleTTL: -1})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	r.cfg.Now = func() time.Time { return now }
	f.Fuzz(func(t *testing.T, b []byte) {
		in := new(dns.Msg)
		if err := in.Unpack(b); err != nil {
			return
		}
		in.Id = q.Id
		if validate(q, in) != nil {
			return
		}
		rrs, _, ttl := chase(in, "example", dns.TypeTXT)
		for _, rr := range rrs {
			if rr.Header().Rrtype != dns.TypeTXT {
				t.Fatalf("chase returned a %s record", dns.TypeToString[rr.Header().Rrtype])
			}
		}
		k := key{"example", dns.TypeTXT}
		var e *entry
		if len(rrs) > 0 {
			e = r.positive(k, rrs, ttl, in.AuthenticatedData)
			if d := e.expires.Sub(now); d < time.Second || d > time.Hour {
				t.Fatalf("positive lifetime %v outside [1s, 1h]", d)
			}
			if len(e.txt) != len(rrs) {
				t.Fatalf("%d TXT strings for %d records", len(e.txt), len(rrs))
			}
		} else {
			e = r.negative(k, in, ttl, in.AuthenticatedData)
			if d := e.expires.Sub(now); !e.expires.IsZero() && (d < time.Second || d > time.Minute) {
				t.Fatalf("negative lifetime %v outside [1s, 1m]", d)
			}
			if (in.Rcode == dns.RcodeNameError) != (e.err != nil && e.err.IsNotFound) {
				t.Fatalf("rcode %d gave error %v", in.Rcode, e.err)
			}
		}
	})
}
