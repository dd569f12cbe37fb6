package cache_test

import (
	"context"
	"encoding/binary"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

// wireServer answers every UDP query with the bytes in reply, made to
// look like an answer to that query: the query's ID, the QR bit, and (when
// the first fuzz byte is odd) the query's question section in place of the
// bytes at its position.
type wireServer struct {
	pc    net.PacketConn
	reply atomic.Pointer[[]byte]
}

func startWireServer(f *testing.F) *wireServer {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	s := &wireServer{pc: pc}
	f.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if p := s.reply.Load(); p != nil && n >= 12 {
				pc.WriteTo(shape(*p, buf[:n]), addr)
			}
		}
	}()
	return s
}

// shape turns fuzz bytes into an answer to query q.
func shape(in, q []byte) []byte {
	if len(in) == 0 {
		return nil
	}
	mode, out := in[0], append([]byte(nil), in[1:]...)
	if len(out) < 12 {
		return out
	}
	copy(out[0:2], q[0:2]) // the ID
	out[2] |= 0x80         // QR: a response
	if mode&1 == 1 {
		// The question of the query (it ends at the first zero label,
		// then type and class).
		qend := 12
		for qend < len(q) && q[qend] != 0 {
			qend += int(q[qend]) + 1
		}
		qend += 5
		if qend <= len(q) {
			binary.BigEndian.PutUint16(out[4:6], 1)
			need := 12 + qend - 12
			if len(out) < need {
				out = append(out, make([]byte, need-len(out))...)
			}
			copy(out[12:], q[12:qend])
		}
	}
	return out
}

// FuzzWireAnswer serves fuzzed bytes as the upstream's answer over a real
// UDP socket and looks names up through the public API with a fresh cache.
// Properties: no panic; the error is nil or a bare *net.DNSError (the
// libraries use a type assertion) that says either not-found or temporary;
// each lookup ends within its deadline budget; and it allocates a bounded
// amount whatever the answer holds (a UDP answer is at most 64 KiB).
func FuzzWireAnswer(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("example.", dns.TypeTXT)
	seed := func(mode byte, m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte{mode}, b...))
	}
	ok := new(dns.Msg)
	ok.SetReply(q)
	ok.Answer = append(ok.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{"v=spf1 -all"}})
	seed(0, ok)
	nx := new(dns.Msg)
	nx.SetRcode(q, dns.RcodeNameError)
	seed(1, nx)
	cn := new(dns.Msg)
	cn.SetReply(q)
	for i := range 20 {
		cn.Answer = append(cn.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: dns.Fqdn(string(rune('a'+i)) + ".example"), Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 5}, Target: dns.Fqdn(string(rune('b'+i)) + ".example")})
	}
	seed(1, cn)
	f.Add([]byte{1, 0, 0, 0x81, 0x80, 0, 1, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{0, 0xde, 0xad})

	srv := startWireServer(f)
	const timeout = 100 * time.Millisecond
	f.Fuzz(func(t *testing.T, reply []byte) {
		srv.reply.Store(&reply)
		r, err := cache.New(cache.Config{Nameservers: []string{srv.pc.LocalAddr().String()}, Timeout: timeout, Attempts: 1, ErrTTL: -1, StaleTTL: -1})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		_, errTXT := r.LookupTXT(ctx, "example")
		_, errMX := r.LookupMX(ctx, "example")
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		for _, err := range []error{errTXT, errMX} {
			if err == nil {
				continue
			}
			de, ok := err.(*net.DNSError) // a type assertion on purpose: the libraries use one
			if !ok {
				t.Fatalf("error %v (%T) is not a bare *net.DNSError", err, err)
			}
			if de.IsNotFound == de.IsTemporary {
				t.Fatalf("error %+v is neither (or both) not-found and temporary", de)
			}
		}
		// Two lookups, each at most the resolver's budget (one attempt,
		// UDP then TCP on truncation, CNAME hops): generous.
		if took > 40*timeout {
			t.Fatalf("lookups took %v", took)
		}
		if a := after.TotalAlloc - before.TotalAlloc; a > 8<<20 {
			t.Fatalf("lookups allocated %d bytes", a)
		}
	})
}
