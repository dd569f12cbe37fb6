package verify

import (
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

// newCache returns the project's caching resolver pointed at srv, with a
// short per-attempt timeout so that dropped queries (dnstest.FaultDrop) turn
// into temporary errors quickly.
func newCache(t testing.TB, srv *dnstest.Server, timeout time.Duration) *cache.Resolver {
	t.Helper()
	r, err := cache.New(cache.Config{
		Nameservers: []string{srv.Addr},
		Timeout:     timeout,
		Attempts:    1,
		ErrTTL:      -1, // do not remember failures between test cases
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
