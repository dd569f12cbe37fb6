package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/health"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

const lookupUsage = `usage: dmarc-milter lookup DOMAIN [--selector S]... [--subdomain NAME]... [--json] [--config FILE] [--nameserver HOST[:PORT]]...

Checks how DOMAIN publishes DMARC, SPF and DKIM, the way receivers see it:
the DMARC record that applies and how it was found, the SPF record as a
tree of includes and redirects with its DNS lookups counted against the
limits of RFC 7208, the SPF records of the given subdomains, and the DKIM
keys of the given selectors. Exit status: 0 when no check fails, 1 when one
fails or DNS did not answer, 2 for usage or configuration errors.
--json prints the report in the shape documented in docs/health.md.

`

// lookupFlags are the flags of lookup: the DNS settings (from the
// configuration file, or --nameserver) and what to check.
type lookupFlags struct {
	config      string
	nameservers stringList
	selectors   stringList
	subdomains  stringList
	json        bool
}

func (f *lookupFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "configuration `file` (TOML) for the DNS settings and discovery method; none: the built-in defaults")
	fs.Var(&f.nameservers, "nameserver", "DNS server `host[:port]`, repeatable (overrides dns.nameservers)")
	fs.Var(&f.selectors, "selector", "DKIM `selector` whose key to check, repeatable")
	fs.Var(&f.subdomains, "subdomain", "`name` under DOMAIN whose own SPF record to check (\"www\" or \"www.DOMAIN\"), repeatable")
	fs.BoolVar(&f.json, "json", false, "print the report as JSON (docs/health.md)")
}

// cmdLookup checks a domain's mail authentication records as receivers see
// them: the DMARC policy (which names discovery queried, the record that
// applies and its effective values, the Organizational Domain), the SPF
// record and its tree, subdomains' SPF records and DKIM keys. It is the
// first thing to run when a domain owner asks why their mail was treated
// as it was. It uses the configuration's DNS settings and discovery method.
func cmdLookup(args []string, stdout, stderr io.Writer) int {
	var f lookupFlags
	domainArg, code, ok := parseLookupArgs(&f, args, stderr)
	if !ok {
		return code
	}
	cfg, err := loadConfig(&commonFlags{config: f.config, nameservers: f.nameservers})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	req, err := lookupRequest(domainArg, &f, policy.Method(cfg.DMARC.Discovery))
	if err != nil {
		fmt.Fprintf(stderr, "lookup: %v\n", err)
		return exitConfig
	}
	res, err := cache.New(cacheConfig(cfg.DNS))
	if err != nil {
		fmt.Fprintf(stderr, "lookup: dns: %v\n", err)
		return exitConfig
	}
	// The whole check gets the budget of one message's DNS work; each
	// query is bounded by dns.timeout as well.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeouts.DMARC+cfg.Timeouts.SPF+cfg.Timeouts.DKIM)
	defer cancel()
	rep := health.Check(ctx, res, req)
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "lookup: %v\n", err)
			return exitError
		}
	} else {
		printReport(stdout, &rep)
	}
	if rep.Verdict == health.Fail || rep.Verdict == health.Error {
		return exitError
	}
	return exitOK
}

// parseLookupArgs parses flags before and after the domain (flag stops at
// the first argument that is not a flag, and the synopsis puts the domain
// first).
func parseLookupArgs(f *lookupFlags, args []string, stderr io.Writer) (string, int, bool) {
	fs := flag.NewFlagSet("lookup", flag.ContinueOnError)
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), lookupUsage)
		fs.PrintDefaults()
	}
	var pos []string
	for {
		if code, ok := parseFlags(fs, args, stderr); !ok {
			return "", code, false
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "lookup: need one domain\n%s", lookupUsage)
		return "", exitConfig, false
	}
	return pos[0], exitOK, true
}

// lookupRequest validates the domain, selectors and subdomains.
func lookupRequest(domainArg string, f *lookupFlags, method policy.Method) (health.Request, error) {
	domain, err := policy.NormalizeDomain(domainArg)
	if err != nil {
		return health.Request{}, fmt.Errorf("%q: %w", domainArg, err)
	}
	for _, s := range f.selectors {
		if !health.ValidSelector(s) {
			return health.Request{}, fmt.Errorf("selector %q: %w", s, errBadSelector)
		}
	}
	for _, s := range f.subdomains {
		name := strings.TrimSuffix(s, ".")
		if !strings.HasSuffix(strings.ToLower(name), "."+domain) && !strings.EqualFold(name, domain) {
			name += "." + domain
		}
		if _, err := policy.NormalizeDomain(name); err != nil {
			return health.Request{}, fmt.Errorf("subdomain %q: %w", s, err)
		}
	}
	return health.Request{Domain: domain, Selectors: f.selectors, Subdomains: f.subdomains, Method: method}, nil
}

var errBadSelector = errors.New("not a valid selector (dot-separated labels of letters, digits and hyphens)")

// printReport writes the report as text: first the DMARC discovery and the
// SPF record in the form lookup has always printed, then one line per
// check, the SPF tree, and every finding with its rule.
func printReport(w io.Writer, rep *health.Report) {
	printDiscovery(w, rep.Domain, rep.DMARC)
	printSPF(w, rep.SPF)
	fmt.Fprintf(w, "\nchecks:\n")
	fmt.Fprintf(w, "  %-32s %-6s %s\n", "dmarc", rep.DMARC.Verdict, rep.DMARC.Line)
	fmt.Fprintf(w, "  %-32s %-6s %s\n", "spf", rep.SPF.Verdict, rep.SPF.Line)
	for _, s := range rep.Subdomains {
		fmt.Fprintf(w, "  %-32s %-6s %s\n", "subdomain "+s.Name, s.Verdict, s.Line)
	}
	for _, k := range rep.DKIM {
		fmt.Fprintf(w, "  %-32s %-6s %s\n", "dkim "+k.Selector, k.Verdict, k.Line)
	}
	if t := rep.SPF.Tree; t != nil && t.Status == health.NodeOK {
		fmt.Fprintf(w, "\nspf tree (DNS lookups: the record's own / with its subtree):\n")
		printNode(w, t, 1)
	}
	fmt.Fprintf(w, "\nfindings:\n")
	printFindings(w, "dmarc", rep.DMARC.Findings)
	printFindings(w, "spf", rep.SPF.Findings)
	for _, s := range rep.Subdomains {
		printFindings(w, "subdomain", s.Findings)
	}
	for _, k := range rep.DKIM {
		printFindings(w, "dkim", k.Findings)
	}
	fmt.Fprintf(w, "\nsummary:             %s\n", rep.Summary)
}

// printNode writes one node of the SPF tree and its children, indented.
func printNode(w io.Writer, n *health.SPFNode, depth int) {
	ind := strings.Repeat("  ", depth)
	head := n.Domain
	if n.Via != "" {
		head = n.Via + " " + n.Domain
	}
	switch n.Status {
	case health.NodeOK:
		fmt.Fprintf(w, "%s%s [%d/%d]: %s\n", ind, head, n.Lookups, n.TotalLookups, n.Record)
	default:
		fmt.Fprintf(w, "%s%s [%s]: %s\n", ind, head, n.Status, n.Error)
	}
	for _, t := range n.Terms {
		var notes []string
		if t.Void {
			notes = append(notes, "void lookup")
		}
		if t.MXNames > 0 {
			notes = append(notes, fmt.Sprintf("MX names: %d", t.MXNames))
		}
		if t.Ignored != "" {
			notes = append(notes, "ignored: "+t.Ignored)
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "%s  %s: %s\n", ind, t.Raw, strings.Join(notes, ", "))
		}
	}
	for _, c := range n.Children {
		printNode(w, c, depth+1)
	}
}

func printFindings(w io.Writer, check string, fs []health.Finding) {
	for _, f := range fs {
		rule := f.Rule
		if rule == "" {
			rule = "-"
		}
		fmt.Fprintf(w, "  %-5s %-9s %-18s %s: %s\n", f.Severity, check, rule, f.Name, f.Message)
	}
}

// printDiscovery writes the DMARC discovery lines.
func printDiscovery(w io.Writer, domain string, d *health.DMARCResult) {
	fmt.Fprintf(w, "domain:              %s\n", domain)
	fmt.Fprintf(w, "discovery method:    %s\n", d.Method)
	fmt.Fprintf(w, "queried:             %s\n", strings.Join(d.Queries, ", "))
	if d.Error != "" {
		fmt.Fprintf(w, "result:              temporary failure: %s\n", d.Error)
		return
	}
	if d.Record == "" {
		fmt.Fprintf(w, "result:              no DMARC policy: DMARC does not apply to mail from this domain\n")
		fmt.Fprintf(w, "organizational:      %s\n", d.OrgDomain)
		return
	}
	fmt.Fprintf(w, "policy domain:       %s\n", d.PolicyDomain)
	fmt.Fprintf(w, "record:              %s\n", d.Record)
	fmt.Fprintf(w, "organizational:      %s\n", d.OrgDomain)
	if len(d.OrgQueries) > 0 {
		fmt.Fprintf(w, "  also queried:      %s\n", strings.Join(d.OrgQueries, ", "))
	}
	applies := "p (the domain's own record)"
	if d.PolicyDomain != domain {
		applies = "sp (a subdomain), or np if the domain does not exist"
	}
	fmt.Fprintf(w, "applies:             %s\n", applies)
	if e := d.Effective; e != nil {
		fmt.Fprintf(w, "effective:           p=%s sp=%s np=%s adkim=%s aspf=%s pct=%d testing=%t\n",
			e.P, e.SP, e.NP, e.ADKIM, e.ASPF, e.Pct, e.Testing)
	} else {
		fmt.Fprintf(w, "effective:           none: the record has an invalid policy tag and no rua, so DMARC does not apply\n")
	}
	if len(d.InvalidTags) > 0 {
		fmt.Fprintf(w, "ignored tags:        %s (invalid values)\n", strings.Join(d.InvalidTags, ", "))
	}
	if d.OrgError != "" {
		fmt.Fprintf(w, "warning:             organizational domain not certain: %s\n", d.OrgError)
	}
}

// printSPF writes the domain's SPF record as published (the daemon
// evaluates it per message, against the client address).
func printSPF(w io.Writer, s *health.SPFResult) {
	t := s.Tree
	switch {
	case t.Status == health.NodeTempError:
		fmt.Fprintf(w, "spf:                 temporary failure: %s\n", t.Error)
	case t.Records == 0:
		fmt.Fprintf(w, "spf:                 none (no v=spf1 record)\n")
	case t.Records == 1:
		fmt.Fprintf(w, "spf:                 %s\n", t.Record)
	default:
		// RFC 7208 §4.5: several SPF records are a permerror.
		fmt.Fprintf(w, "spf:                 %d records: permerror for every message\n", t.Records)
	}
}
