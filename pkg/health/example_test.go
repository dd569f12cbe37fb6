package health_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/health"
)

const exampleZone = `$TTL 300
example.com.         IN TXT "v=spf1 include:_spf.example.net -all"
_spf.example.net.    IN TXT "v=spf1 ip4:192.0.2.0/24 ~all"
_dmarc.example.com.  IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.com"
www.example.com.     IN A 192.0.2.80
`

// ExampleCheck runs the checks the way `dmarc-milter lookup` and a
// scheduled job would, and reads the verdicts.
func ExampleCheck() {
	srv, err := dnstest.Start(exampleZone)
	for i := 0; err != nil && i < 20; i++ { // the port pair can be taken on a busy machine
		srv, err = dnstest.Start(exampleZone)
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	res, _ := cache.New(cache.Config{Nameservers: []string{srv.Addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rep := health.Check(ctx, res, health.Request{Domain: "example.com", Subdomains: []string{"www"}})
	fmt.Println("dmarc:", rep.DMARC.Verdict, rep.DMARC.Line)
	fmt.Println("spf:  ", rep.SPF.Verdict, rep.SPF.Line)
	for _, s := range rep.Subdomains {
		fmt.Println("sub:  ", s.Verdict, s.Name, s.Suggest)
	}
	fmt.Println(rep.Summary)

	// The report is stored or sent as JSON; version says which shape.
	b, _ := json.Marshal(rep)
	var back struct {
		Version int            `json:"version"`
		Verdict health.Verdict `json:"verdict"`
	}
	_ = json.Unmarshal(b, &back)
	fmt.Println(back.Version, back.Verdict)
	// Output:
	// dmarc: warn p=none from example.com; subdomains sp=none, np=none; 1 warning
	// spf:   ok 1 of 10 DNS lookups, 0 of 2 void lookups; no problems
	// sub:   warn www.example.com v=spf1 -all
	// example.com: warn (3 checks: 1 ok, 2 warn, 0 fail, 0 error)
	// 1 warn
}
