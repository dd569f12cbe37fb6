package cache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
)

// BenchmarkCacheHit is the hot path: a TXT answer served from the cache, by
// all cores at once.
func BenchmarkCacheHit(b *testing.B) {
	srv, err := dnstest.Start(zone)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	r, err := New(Config{Nameservers: []string{srv.Addr}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := r.LookupTXT(ctx, "example"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if txt, _ := r.LookupTXT(ctx, "example."); len(txt) != 1 {
				b.Fatal("miss")
			}
		}
	})
	if q := srv.Queries(); q != 1 {
		b.Fatalf("upstream queries = %d", q)
	}
}

// BenchmarkMapBaseline is the floor a cache hit is measured against: a read
// of a Go map under a read lock, with the same key shape, in parallel.
func BenchmarkMapBaseline(b *testing.B) {
	var mu sync.RWMutex
	m := map[key]*entry{{"example", 16}: {txt: []string{"v=spf1"}, expires: time.Now().Add(time.Hour)}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.RLock()
			e := m[key{"example", 16}]
			mu.RUnlock()
			if e == nil {
				b.Fatal("miss")
			}
		}
	})
}

// BenchmarkCacheMiss measures a full round trip to the loopback DNS server.
func BenchmarkCacheMiss(b *testing.B) {
	srv, err := dnstest.Start(zone)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	r, err := New(Config{Nameservers: []string{srv.Addr}, MaxTTL: time.Nanosecond, MinTTL: time.Nanosecond})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := r.LookupTXT(context.Background(), "example"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheHitIPAddr is the A+AAAA lookup of SPF's a and mx mechanisms,
// served from the cache.
func BenchmarkCacheHitIPAddr(b *testing.B) {
	srv, err := dnstest.Start(zone)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	r, _ := New(Config{Nameservers: []string{srv.Addr}})
	ctx := context.Background()
	r.LookupIPAddr(ctx, "mail.example")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ips, _ := r.LookupIPAddr(ctx, "mail.example"); len(ips) != 2 {
				b.Fatal("miss")
			}
		}
	})
}
