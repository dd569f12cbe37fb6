package verify_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

func ExampleSPFChecker_CheckMailFrom() {
	srv, _ := dnstest.Start(`example.com. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
mail.example.com. 300 IN TXT "v=spf1 a -all"
mail.example.com. 300 IN A 192.0.2.25`)
	defer srv.Stop()
	res, _ := cache.New(cache.Config{Nameservers: []string{srv.Addr}})
	c := verify.NewSPFChecker(res, verify.SPFConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	ip := net.ParseIP("192.0.2.25")
	r := c.CheckMailFrom(ctx, ip, "mail.example.com", "alice@example.com")
	fmt.Println(r.Scope, r.Domain, r.Result)
	r = c.CheckMailFrom(ctx, ip, "mail.example.com", "") // a bounce: postmaster@HELO
	fmt.Println(r.Scope, r.Sender, r.Result)
	r = c.CheckHelo(ctx, ip, "mail.example.com")
	fmt.Println(r.Scope, r.Domain, r.Result)
	r = c.CheckHelo(ctx, ip, "[192.0.2.25]")
	fmt.Println(r.Scope, r.Result)
	// Output:
	// mfrom example.com pass
	// mfrom postmaster@mail.example.com pass
	// helo mail.example.com pass
	// helo none
}

func ExampleDKIMVerifier() {
	// The RFC 8463 Appendix A key (selector brisbane) and the RFC 6376
	// sample message signed with it, as in testdata/dkimpy (c=simple/simple:
	// the header fields must arrive byte for byte, trailing spaces included).
	srv, _ := dnstest.Start(`brisbane._domainkey.football.example.com. 300 IN TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`)
	defer srv.Stop()
	res, _ := cache.New(cache.Config{Nameservers: []string{srv.Addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	v := verify.NewDKIMVerifier(res, verify.DKIMConfig{})
	defer v.Abort() // frees the verification if we return early
	// As Postfix sends them with SMFIP_HDR_LEADSPC: every octet after the
	// colon, folds as "\n".
	v.Header("DKIM-Signature", " v=1; a=ed25519-sha256; c=simple/simple; \n"+
		" d=football.example.com; i=@football.example.com; \n"+
		" q=dns/txt; s=brisbane; t=1518460054; h=from : to : \n"+
		" subject : date : message-id : from : subject : date; \n"+
		" bh=4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=; \n"+
		" b=9/dsDChY0YMTtD5Eyw3wx7x22BlSJP7M5ECbJ7GWrR45nXlTCGb8l0YB\n"+
		" o0wBLR++X5LqmsxXaOYLLJe46l10AQ==")
	v.Header("From", " Joe SixPack <joe@football.example.com>")
	v.Header("To", " Suzie Q <suzie@shopping.example.net>")
	v.Header("Subject", " Is dinner ready?")
	v.Header("Date", " Fri, 11 Jul 2003 21:00:37 -0700 (PDT)")
	v.Header("Message-ID", " <20030712040037.46341.5F8J@football.example.com>")
	v.EndOfHeaders(ctx) // the key lookup starts here
	v.Write([]byte("Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n"))
	results, err := v.Finish(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range results {
		fmt.Println(r.Result, r.Domain, r.Selector, r.Algorithm, r.KeyBits, r.BPrefix)
	}
	// Output:
	// pass football.example.com brisbane ed25519-sha256 256 9/dsDChY
}
