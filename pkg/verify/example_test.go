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

func ExampleARCVerifier() {
	// A message sealed once by lists.example.org (the ARC test suite's
	// cv_pass_i1_1, key selector "dummy"; testdata/arc).
	srv, _ := dnstest.Start(`dummy._domainkey.example.org. 300 IN TXT "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"`)
	defer srv.Stop()
	res, _ := cache.New(cache.Config{Nameservers: []string{srv.Addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	v := verify.NewARCVerifier(res, verify.ARCConfig{})
	defer v.Abort() // frees the verification if we return early
	v.Header("MIME-Version", " 1.0")
	v.Header("ARC-Seal", " a=rsa-sha256;\n"+
		"    b=dOdFEyhrk/tw5wl3vMIogoxhaVsKJkrkEhnAcq2XqOLSQhPpGzhGBJzR7k1sWGokon3TmQ\n"+
		"    7TX9zQLO6ikRpwd/pUswiRW5DBupy58fefuclXJAhErsrebfvfiueGyhHXV7C1LyJTztywzn\n"+
		"    QGG4SCciU/FTlsJ0QANrnLRoadfps=; cv=none; d=example.org; i=1; s=dummy;\n"+
		"    t=12345")
	v.Header("ARC-Message-Signature", " a=rsa-sha256;\n"+
		"    b=QsRzR/UqwRfVLBc1TnoQomlVw5qi6jp08q8lHpBSl4RehWyHQtY3uOIAGdghDk/mO+/Xpm\n"+
		"    9JA5UVrPyDV0f+2q/YAHuwvP11iCkBQkocmFvgTSxN8H+DwFFPrVVUudQYZV7UDDycXoM6UE\n"+
		"    cdfzLLzVNPOAHEDIi/uzoV4sUqZ18=;\n"+
		"    bh=KWSe46TZKCcDbH4klJPo+tjk5LWJnVRlP5pvjXFZYLQ=; c=relaxed/relaxed;\n"+
		"    d=example.org; h=from:to:date:subject:mime-version:arc-authentication-results;\n"+
		"    i=1; s=dummy; t=12345")
	v.Header("ARC-Authentication-Results", " i=1; lists.example.org;\n"+
		"    spf=pass smtp.mfrom=jqd@d1.example;\n"+
		"    dkim=pass (1024-bit key) header.i=@d1.example;\n"+
		"    dmarc=pass")
	v.Header("Date", " Thu, 14 Jan 2015 15:00:01 -0800")
	v.Header("From", " John Q Doe <jqd@d1.example.org>")
	v.Header("To", " arc@dmarc.org")
	v.Header("Subject", " Example 1")
	v.EndOfHeaders(ctx) // the structure is checked and the key lookups start here
	v.Write([]byte("Hey gang,\r\nThis is a test message.\r\n--J.\r\n"))
	r, err := v.Finish(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("arc="+r.CV, "sealers:", r.Sealers, "oldest-pass:", r.OldestPass)
	for _, set := range r.Sets {
		fmt.Print("i=", set.Instance, " ", set.AuthservID, ":")
		for _, res := range set.Results {
			fmt.Print(" ", res.Method, "=", res.Value)
		}
		fmt.Println()
	}
	// Output:
	// arc=pass sealers: [example.org] oldest-pass: 0
	// i=1 lists.example.org: spf=pass dkim=pass dmarc=pass
}
