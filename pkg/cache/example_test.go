package cache_test

import (
	"context"
	"fmt"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

func Example() {
	srv, _ := dnstest.Start(`_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject"`)
	defer srv.Stop()

	r, _ := cache.New(cache.Config{Nameservers: []string{srv.Addr}})
	for i := 0; i < 3; i++ {
		txt, err := r.LookupTXT(context.Background(), "_dmarc.example.org")
		fmt.Println(txt, err)
	}
	s := r.Stats()
	fmt.Println("upstream queries:", s.UpstreamQueries, "hits:", s.Hits)
	// Output:
	// [v=DMARC1; p=reject] <nil>
	// [v=DMARC1; p=reject] <nil>
	// [v=DMARC1; p=reject] <nil>
	// upstream queries: 1 hits: 2
}
