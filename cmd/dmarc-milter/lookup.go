package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// cmdLookup shows how the daemon sees a domain's DMARC policy: which names
// policy discovery queried, the record that applies and its effective
// values, the Organizational Domain, and the domain's SPF record. It is the
// first thing to run when a domain owner asks why their mail was treated as
// it was. It uses the configuration's DNS settings and discovery method.
func cmdLookup(args []string, stdout, stderr io.Writer) int {
	var f commonFlags
	fs := flag.NewFlagSet("lookup", flag.ContinueOnError)
	f.register(fs)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "lookup: need one domain\n%s", usage)
		return exitConfig
	}
	cfg, err := loadConfig(&f)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	domain, err := policy.NormalizeDomain(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "lookup: %q: %v\n", fs.Arg(0), err)
		return exitConfig
	}
	res, err := cache.New(cacheConfig(cfg.DNS))
	if err != nil {
		fmt.Fprintf(stderr, "lookup: dns: %v\n", err)
		return exitConfig
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeouts.DMARC+cfg.Timeouts.SPF)
	defer cancel()
	d := policy.Discover(ctx, res, domain, policy.Options{Method: policy.Method(cfg.DMARC.Discovery)})
	printDiscovery(stdout, d)
	printSPF(ctx, stdout, res, domain)
	if d.Err != nil {
		return exitError
	}
	return exitOK
}

func printDiscovery(w io.Writer, d *policy.Discovery) {
	fmt.Fprintf(w, "domain:              %s\n", d.Domain)
	fmt.Fprintf(w, "discovery method:    %s\n", d.Method)
	fmt.Fprintf(w, "queried:             %s\n", strings.Join(d.Queries, ", "))
	if d.Err != nil {
		fmt.Fprintf(w, "result:              temporary failure: %v\n", d.Err)
		return
	}
	if d.Record == nil {
		fmt.Fprintf(w, "result:              no DMARC policy: DMARC does not apply to mail from this domain\n")
		fmt.Fprintf(w, "organizational:      %s\n", d.OrgDomain)
		return
	}
	r := d.Record
	fmt.Fprintf(w, "policy domain:       %s\n", d.PolicyDomain)
	fmt.Fprintf(w, "record:              %s\n", r)
	fmt.Fprintf(w, "organizational:      %s\n", d.OrgDomain)
	if len(d.OrgQueries) > 0 {
		fmt.Fprintf(w, "  also queried:      %s\n", strings.Join(d.OrgQueries, ", "))
	}
	applies := "p (the domain's own record)"
	if d.PolicyDomain != d.Domain {
		applies = "sp (a subdomain), or np if the domain does not exist"
	}
	fmt.Fprintf(w, "applies:             %s\n", applies)
	fmt.Fprintf(w, "effective:           p=%s sp=%s np=%s adkim=%s aspf=%s pct=%d testing=%t\n",
		r.Policy(), r.SubdomainPolicy(), r.NonExistentPolicy(), r.DKIMAlignment(), r.SPFAlignment(), r.Percent(), r.Testing)
	if len(r.Invalid) > 0 {
		fmt.Fprintf(w, "ignored tags:        %s (invalid values)\n", strings.Join(r.Invalid, ", "))
	}
	if d.OrgErr != nil {
		fmt.Fprintf(w, "warning:             organizational domain not certain: %v\n", d.OrgErr)
	}
}

// printSPF shows the domain's SPF record(s) as published (the daemon
// evaluates them per message, against the client address).
func printSPF(ctx context.Context, w io.Writer, r *cache.Resolver, domain string) {
	txts, err := r.LookupTXT(ctx, domain)
	if err != nil && !isNotFound(err) {
		fmt.Fprintf(w, "spf:                 temporary failure: %v\n", err)
		return
	}
	var spf []string
	for _, t := range txts {
		if strings.HasPrefix(strings.ToLower(t), "v=spf1") && (len(t) == 6 || t[6] == ' ') {
			spf = append(spf, t)
		}
	}
	switch len(spf) {
	case 0:
		fmt.Fprintf(w, "spf:                 none (no v=spf1 record)\n")
	case 1:
		fmt.Fprintf(w, "spf:                 %s\n", spf[0])
	default:
		// RFC 7208 §4.5: several SPF records are a permerror.
		fmt.Fprintf(w, "spf:                 %d records: permerror for every message\n", len(spf))
	}
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
