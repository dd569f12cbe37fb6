package health

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// The limits of RFC 7208 §4.6.4 (https://datatracker.ietf.org/doc/html/rfc7208#section-4.6.4).
const (
	// LookupLimit is the most DNS-querying terms one evaluation may use.
	LookupLimit = 10
	// VoidLimit is the most void lookups (NXDOMAIN or no answer) allowed.
	VoidLimit = 2
	// MXNameLimit is the most MX names one mx mechanism may look up.
	MXNameLimit = 10
)

// Bounds of the walk itself, so that a hostile or broken tree costs a
// bounded number of queries: nodes (records fetched) and depth.
const (
	maxSPFNodes = 64
	maxSPFDepth = 12
	// maxSPFProbes bounds the address and MX lookups made for a, mx and
	// exists terms (evaluation stops at 10; a record may list thousands).
	maxSPFProbes = 64
)

// udpAnswerLimit is the DNS message size that fits a plain UDP answer
// (RFC 1035 §2.3.4; RFC 7208 §3.4 asks SPF records to stay within it).
const udpAnswerLimit = 512

// NodeStatus is what was found at one name of the SPF tree.
type NodeStatus string

// The node states.
const (
	NodeOK          NodeStatus = "ok"           // one well-formed SPF record
	NodeNone        NodeStatus = "none"         // no SPF record (NXDOMAIN, no TXT, or no v=spf1)
	NodeMultiple    NodeStatus = "multiple"     // several SPF records: permerror
	NodeSyntax      NodeStatus = "syntax"       // a record with a syntax error: permerror
	NodeTempError   NodeStatus = "temperror"    // DNS did not answer
	NodeLoop        NodeStatus = "loop"         // the name is already on the path from the root
	NodeMacro       NodeStatus = "macro"        // the name holds macros: not looked up
	NodeNotExpanded NodeStatus = "not_expanded" // the walk's bounds were reached
)

// SPFNode is one record of the SPF tree: the root domain's, or one reached
// through include or redirect.
type SPFNode struct {
	Domain string `json:"domain"`
	// Via is "include" or "redirect"; empty for the root.
	Via    string     `json:"via,omitempty"`
	Status NodeStatus `json:"status"`
	// Record is the SPF record found (when exactly one); Records counts
	// the SPF records at the name.
	Record  string `json:"record,omitempty"`
	Records int    `json:"records"`
	// Error details a status other than ok.
	Error string `json:"error,omitempty"`
	// AnswerSize estimates the size in octets of the DNS answer holding
	// every TXT record of the name.
	AnswerSize int `json:"answer_size,omitempty"`
	// Lookups counts this record's DNS-querying terms; TotalLookups adds
	// those of its subtree. Void counts this record's void lookups,
	// TotalVoid those of the subtree.
	Lookups      int `json:"lookups"`
	TotalLookups int `json:"total_lookups"`
	Void         int `json:"void_lookups"`
	TotalVoid    int `json:"total_void_lookups"`
	// Static is false when the subtree holds terms whose result depends on
	// the message (macros, exists, ptr) or could not be read: it cannot be
	// replaced by a list of addresses.
	Static   bool       `json:"static"`
	Terms    []SPFTerm  `json:"terms,omitempty"`
	Children []*SPFNode `json:"children,omitempty"`

	voidName bool // the TXT query found nothing (NXDOMAIN or no TXT record)
}

// FlattenHint names an include that could be replaced by the ip4/ip6
// networks it stands for, and how many lookups that saves.
type FlattenHint struct {
	// In is the domain whose record holds the term.
	In   string `json:"in"`
	Term string `json:"term"`
	// Saves is the number of DNS-querying terms removed (the include and
	// its subtree).
	Saves int `json:"saves"`
}

// SPFResult is the SPF check of the domain.
type SPFResult struct {
	Verdict  Verdict   `json:"verdict"`
	Line     string    `json:"line"`
	Findings []Finding `json:"findings"`
	Domain   string    `json:"domain"`
	Tree     *SPFNode  `json:"tree"`
	// Lookups and VoidLookups are the totals over the tree (a worst case:
	// an address that matches no term reaches them all).
	Lookups     int `json:"lookups"`
	LookupLimit int `json:"lookup_limit"`
	VoidLookups int `json:"void_lookups"`
	VoidLimit   int `json:"void_limit"`
	// Flatten lists the includes to flatten to get under LookupLimit,
	// largest saving first; empty when under the limit.
	Flatten []FlattenHint `json:"flatten,omitempty"`
}

// spfWalk holds the state of one tree walk.
type spfWalk struct {
	r      Resolver
	f      *findings
	nodes  int
	probes int
	capped bool           // the bounds were reached (said once)
	seen   map[string]int // include targets met so far, for duplicates
}

// checkSPF draws the SPF tree of domain and judges it.
func checkSPF(ctx context.Context, r Resolver, domain string) SPFResult {
	f := newFindings()
	w := &spfWalk{r: r, f: f, seen: map[string]int{}}
	root := w.node(ctx, domain, "", nil)
	res := SPFResult{Domain: domain, Tree: root, Lookups: root.TotalLookups, LookupLimit: LookupLimit,
		VoidLookups: root.TotalVoid, VoidLimit: VoidLimit}
	w.judgeRoot(root)
	if res.Lookups > LookupLimit {
		// RFC 7208 §4.6.4: "SPF implementations MUST limit the total number of those terms to 10 ... If this limit is exceeded, the implementation MUST return permerror"
		f.add(CodeSPFLookupLimit, Fail, "RFC 7208 §4.6.4", domain,
			"%d DNS-querying terms (include, a, mx, ptr, exists, redirect) in the tree, over the limit of %d: mail from an address that matches none of the first terms gets permerror", res.Lookups, LookupLimit)
		res.Flatten = flattenHints(root, res.Lookups)
		w.adviseFlatten(domain, res.Flatten, res.Lookups)
	}
	if res.VoidLookups > VoidLimit {
		// RFC 7208 §4.6.4: void lookups SHOULD be limited to two; exceeding the limit produces permerror
		f.add(CodeSPFVoidLimit, Fail, "RFC 7208 §4.6.4", domain,
			"%d void lookups (names with no answer) in the tree, over the limit of %d: verifiers return permerror", res.VoidLookups, VoidLimit)
	}
	res.Verdict, res.Findings = f.verdict, f.list
	res.Line = spfLine(res)
	return res
}

// judgeRoot adds the findings about the root record itself (a failure to
// fetch it was reported by fetch).
func (w *spfWalk) judgeRoot(root *SPFNode) {
	if root.Status == NodeNone {
		w.f.add(CodeSPFMissing, Warn, "RFC 7208 §4.5", root.Domain,
			"no SPF record: SPF gives none for mail from this domain, so DMARC can pass only through DKIM; publish the servers that send for it, or \"v=spf1 -all\" if it sends no mail")
	}
}

// node fetches and analyses the record of domain; path holds the domains
// from the root to the caller, for loop detection and the depth bound.
func (w *spfWalk) node(ctx context.Context, domain, via string, path []string) *SPFNode {
	n := &SPFNode{Domain: domain, Via: via, Static: true}
	path = append(path[:len(path):len(path)], domain) // a copy: siblings must not share it
	switch {
	case hasMacro(domain):
		n.Status, n.Static, n.Error = NodeMacro, false, "the name holds macros: it depends on the message and is not looked up"
		return n
	case containsFold(path[:len(path)-1], domain):
		n.Status, n.Static = NodeLoop, false
		n.Error = "already on the path: " + strings.Join(path, " → ")
		// RFC 7208 §4.6.4: a loop repeats DNS-querying terms until the limit of 10 ends it in permerror
		w.f.add(CodeSPFLoop, Fail, "RFC 7208 §4.6.4", domain, "%s loops back to %s: evaluation ends in permerror when it reaches the lookup limit", via, strings.Join(path, " → "))
		return n
	case w.nodes >= maxSPFNodes || len(path) > maxSPFDepth:
		n.Status, n.Static = NodeNotExpanded, false
		n.Error = fmt.Sprintf("not followed: the check stops after %d records or %d levels", maxSPFNodes, maxSPFDepth)
		w.bounded(domain, n.Error)
		return n
	}
	w.nodes++
	n.voidName = w.fetch(ctx, n) // a void lookup is counted on the parent's term
	if n.Status != NodeOK && n.Status != NodeSyntax {
		return n
	}
	terms, _ := parseSPFTerms(n.Record) // n.Record is an SPF record: no error
	n.Terms = terms
	if n.Status == NodeSyntax {
		n.Static = false
		return n // RFC 7208 §4.6: the record gives permerror before any term is evaluated
	}
	w.terms(ctx, n, path)
	return n
}

// fetch looks up the TXT records of n.Domain and sets n.Status, n.Record
// and n.AnswerSize. It reports whether the query was void (NXDOMAIN or no
// TXT records at all).
func (w *spfWalk) fetch(ctx context.Context, n *SPFNode) bool {
	if !queryable(n.Domain) {
		n.Status, n.Static, n.Error = NodeNone, false, "not a valid domain name"
		return true
	}
	txts, err := w.r.LookupTXT(ctx, fqdn(n.Domain))
	switch classify(err) {
	case dnsFailed:
		n.Status, n.Static, n.Error = NodeTempError, false, err.Error()
		w.f.add(CodeSPFTempError, Error, "", n.Domain, "the SPF record could not be fetched: %v; the counts leave out its subtree", err)
		return false
	case dnsNotFound:
		n.Status, n.Error = NodeNone, "the name does not exist (NXDOMAIN)"
		return true
	}
	n.AnswerSize = txtAnswerSize(n.Domain, txts)
	var recs []string
	for _, t := range txts {
		if verify.IsSPFRecord(t) {
			recs = append(recs, t)
		}
	}
	n.Records = len(recs)
	switch len(recs) {
	case 0:
		n.Status, n.Error = NodeNone, "no v=spf1 record"
		return len(txts) == 0
	case 1:
		n.Status, n.Record = NodeOK, recs[0]
	default:
		n.Status, n.Static = NodeMultiple, false
		n.Error = fmt.Sprintf("%d SPF records", len(recs))
		// RFC 7208 §4.5: "If the resultant record set includes more than one record, check_host() produces the permerror result"
		w.f.add(CodeSPFMultiple, Fail, "RFC 7208 §4.5", n.Domain, "%d SPF records at one name: every evaluation gives permerror; merge them into one", len(recs))
		return false
	}
	if err := verify.CheckSPFSyntax(n.Record); err != nil {
		var se *verify.SPFSyntaxError
		msg := err.Error()
		if errors.As(err, &se) {
			se.Domain = n.Domain
			msg = se.Error()
		}
		n.Status, n.Error = NodeSyntax, msg
		// RFC 7208 §4.6: a syntax error anywhere in the record gives permerror
		w.f.add(CodeSPFSyntax, Fail, "RFC 7208 §4.6", n.Domain, "%s: every evaluation gives permerror", msg)
	}
	if n.AnswerSize > udpAnswerLimit {
		// RFC 7208 §3.4: the record SHOULD remain small enough that the answer fits within 512 octets
		w.f.add(CodeSPFTooLong, Warn, "RFC 7208 §3.4", n.Domain,
			"the TXT answer is about %d octets, more than fits a 512-octet UDP answer: resolvers must retry over TCP or EDNS, and some receivers then fail", n.AnswerSize)
	}
	return false
}

// txtAnswerSize estimates the DNS message that answers a TXT query for name
// with txts: header, question, and per record a compressed owner name, the
// fixed fields and the character-strings (at most 255 octets each, with a
// length octet).
func txtAnswerSize(name string, txts []string) int {
	size := 12 + len(fqdn(name)) + 1 + 4
	for _, t := range txts {
		strs := (len(t) + 254) / 255
		if strs == 0 {
			strs = 1
		}
		size += 2 + 10 + len(t) + strs
	}
	return size
}

// terms walks the terms of n's record in order, as evaluation would.
func (w *spfWalk) terms(ctx context.Context, n *SPFNode, path []string) {
	hasAll := false
	for _, t := range n.Terms {
		if t.Kind == Mechanism && t.Name == "all" {
			hasAll = true
		}
	}
	var redirect *SPFTerm
	afterAll := false
	for i := range n.Terms {
		t := &n.Terms[i]
		switch {
		case afterAll && t.Kind == Mechanism:
			t.Ignored = "after all"
			// RFC 7208 §5.1: "Mechanisms listed after "all" MUST be ignored"
			w.f.add(CodeSPFAfterAll, Warn, "RFC 7208 §5.1", n.Domain, "%q comes after \"all\" and is never evaluated", t.Raw)
			continue
		case t.Kind == Modifier && t.Name == "redirect" && hasAll:
			t.Ignored = "redirect with all"
			// RFC 7208 §6.1: redirect is ignored when the record has an "all" mechanism
			w.f.add(CodeSPFRedirectIgnored, Warn, "RFC 7208 §6.1", n.Domain, "%q is ignored because the record has an \"all\" mechanism", t.Raw)
			continue
		case t.Kind == Modifier && t.Name == "redirect":
			redirect = t // RFC 7208 §6.1: redirect takes effect after all mechanisms were evaluated
			continue
		}
		w.term(ctx, n, t, path)
		if t.Kind == Mechanism && t.Name == "all" {
			afterAll = true
		}
	}
	if redirect != nil {
		w.follow(ctx, n, redirect, path)
	}
	n.TotalLookups += n.Lookups
	n.TotalVoid += n.Void
}

// term analyses one evaluated term of n.
func (w *spfWalk) term(ctx context.Context, n *SPFNode, t *SPFTerm, path []string) {
	if t.Lookup {
		n.Lookups++
	}
	switch t.Name {
	case "all":
		w.judgeAll(n, t)
	case "include":
		w.follow(ctx, n, t, path)
	case "ptr":
		n.Static = false
		// RFC 7208 §5.5: the ptr mechanism SHOULD NOT be published (slow, unreliable, and it loads the DNS of the client's network)
		w.f.add(CodeSPFPtr, Warn, "RFC 7208 §5.5", n.Domain, "%q: ptr SHOULD NOT be used; list the networks with ip4/ip6 instead", t.Raw)
	case "exists":
		n.Static = false
		if !hasMacro(t.Target) {
			w.probeAddr(ctx, n, t)
		}
	case "a":
		w.probeAddr(ctx, n, t)
	case "mx":
		w.probeMX(ctx, n, t)
	}
}

// judgeAll flags an "all" that authorizes everyone or no one in particular.
func (w *spfWalk) judgeAll(n *SPFNode, t *SPFTerm) {
	switch t.Qualifier {
	case "+":
		// RFC 7208 §5.1: "all" always matches, so "+all" makes every host on the Internet pass
		w.f.add(CodeSPFPassAll, Fail, "RFC 7208 §5.1", n.Domain, "%q: every host on the Internet passes SPF for this domain; end the record with -all or ~all", t.Raw)
	case "?":
		// RFC 7208 §5.1: "?all" makes every unlisted host neutral, which is treated like none (RFC 7208 §2.6.2)
		w.f.add(CodeSPFNeutralAll, Warn, "RFC 7208 §5.1", n.Domain, "%q: unlisted hosts get neutral, as if there were no SPF record; end the record with -all or ~all", t.Raw)
	}
}

// target is the name a term queries: its domain-spec, or the record's own
// domain when the term has none (RFC 7208 §4.8).
func target(n *SPFNode, t *SPFTerm) string {
	if t.Target == "" {
		return n.Domain
	}
	return strings.ToLower(strings.TrimSuffix(t.Target, "."))
}

// follow walks an include or redirect into its target's record.
func (w *spfWalk) follow(ctx context.Context, n *SPFNode, t *SPFTerm, path []string) {
	if t.Name == "redirect" {
		n.Lookups++
	}
	name := target(n, t)
	if t.Name == "include" {
		if w.seen[name]++; w.seen[name] > 1 {
			// RFC 7208 §4.6.4: each include is evaluated, and counted, again
			w.f.add(CodeSPFDuplicateInclude, Warn, "RFC 7208 §4.6.4", n.Domain, "%q: %s is included more than once in the tree; every copy counts against the limit of %d", t.Raw, name, LookupLimit)
		}
	}
	c := w.node(ctx, name, t.Name, path)
	n.Children = append(n.Children, c)
	n.TotalLookups += c.TotalLookups
	n.TotalVoid += c.TotalVoid
	n.Static = n.Static && c.Static
	if c.voidName {
		w.void(n, t)
	}
	if c.Status == NodeNone {
		w.missingTarget(n, t, name)
	}
}

// missingTarget flags an include or redirect to a name without an SPF
// record.
func (w *spfWalk) missingTarget(n *SPFNode, t *SPFTerm, name string) {
	if t.Name == "include" {
		// RFC 7208 §5.2: an included domain with no SPF record ("none") makes the include return permerror
		w.f.add(CodeSPFIncludeNone, Fail, "RFC 7208 §5.2", n.Domain, "%q: %s has no SPF record, so the include gives permerror", t.Raw, name)
		return
	}
	// RFC 7208 §6.1: a redirect to a domain without an SPF record gives permerror
	w.f.add(CodeSPFRedirectNone, Fail, "RFC 7208 §6.1", n.Domain, "%q: %s has no SPF record, so the redirect gives permerror", t.Raw, name)
}

// bounded reports, once, that the walk's bounds were reached.
func (w *spfWalk) bounded(name, msg string) {
	if !w.capped {
		w.capped = true
		w.f.add(CodeSPFTooDeep, Warn, "", name, "%s; lookups and void lookups beyond are not counted", msg)
	}
}

// probe reports whether another a/mx/exists lookup is within the bound.
func (w *spfWalk) probe(name string) bool {
	if w.probes >= maxSPFProbes {
		w.bounded(name, fmt.Sprintf("not looked up: the check makes at most %d address and MX lookups", maxSPFProbes))
		return false
	}
	w.probes++
	return true
}

// probeTarget is the name a term makes the walk look up, and whether to
// look it up: not when it holds a macro (the tree is then not static), is
// not a queryable name (a void lookup) or the probe budget is spent.
func (w *spfWalk) probeTarget(n *SPFNode, t *SPFTerm) (string, bool) {
	name := target(n, t)
	if hasMacro(name) {
		n.Static = false
		return "", false
	}
	if !queryable(name) {
		w.void(n, t)
		return "", false
	}
	return name, w.probe(name)
}

// probeAddr looks up the addresses an a (or static exists) term names, to
// count a void lookup.
func (w *spfWalk) probeAddr(ctx context.Context, n *SPFNode, t *SPFTerm) {
	name, ok := w.probeTarget(n, t)
	if !ok {
		return
	}
	ips, err := w.r.LookupIPAddr(ctx, fqdn(name))
	switch o := classify(err); {
	case o == dnsFailed:
		n.Static = false
		w.f.add(CodeSPFTempError, Error, "", name, "%q: the address lookup failed: %v", t.Raw, err)
	case o == dnsNotFound || len(ips) == 0:
		w.void(n, t)
	}
}

// probeMX looks up the MX names an mx term names: a void lookup, or more
// than MXNameLimit names.
func (w *spfWalk) probeMX(ctx context.Context, n *SPFNode, t *SPFTerm) {
	name, ok := w.probeTarget(n, t)
	if !ok {
		return
	}
	mxs, err := w.r.LookupMX(ctx, fqdn(name))
	switch o := classify(err); {
	case o == dnsFailed:
		n.Static = false
		w.f.add(CodeSPFTempError, Error, "", name, "%q: the MX lookup failed: %v", t.Raw, err)
		return
	case o == dnsNotFound || len(mxs) == 0:
		w.void(n, t)
		return
	}
	t.MXNames = len(mxs)
	if t.MXNames > MXNameLimit {
		// RFC 7208 §4.6.4: the evaluation of each MX record MUST NOT query more than 10 address records; exceeding it is permerror
		w.f.add(CodeSPFMXLimit, Fail, "RFC 7208 §4.6.4", n.Domain, "%q: %s has %d MX names, more than the %d an mx mechanism may look up: permerror", t.Raw, name, t.MXNames, MXNameLimit)
	}
}

// void counts a void lookup on term t of n.
func (w *spfWalk) void(n *SPFNode, t *SPFTerm) {
	t.Void = true
	n.Void++
}

// flattenHints picks, largest saving first, the static includes of the
// evaluated chain (the root and the records it redirects to) whose
// replacement by address lists brings total under LookupLimit.
func flattenHints(root *SPFNode, total int) []FlattenHint {
	var cands []FlattenHint
	for n := root; n != nil; n = redirectChild(n) {
		for _, c := range n.Children {
			if c.Via == "include" && c.Static && c.Status == NodeOK {
				cands = append(cands, FlattenHint{In: n.Domain, Term: "include:" + c.Domain, Saves: 1 + c.TotalLookups})
			}
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].Saves > cands[j].Saves })
	var out []FlattenHint
	for _, c := range cands {
		if total <= LookupLimit {
			break
		}
		out = append(out, c)
		total -= c.Saves
	}
	return out
}

// redirectChild returns the record n redirects to, if it was followed.
func redirectChild(n *SPFNode) *SPFNode {
	for _, c := range n.Children {
		if c.Via == "redirect" && c.Status == NodeOK {
			return c
		}
	}
	return nil
}

// adviseFlatten says which includes to flatten.
func (w *spfWalk) adviseFlatten(domain string, hints []FlattenHint, total int) {
	saved := 0
	var terms []string
	for _, h := range hints {
		saved += h.Saves
		terms = append(terms, fmt.Sprintf("%s in %s (saves %d)", h.Term, h.In, h.Saves))
	}
	if len(hints) == 0 {
		w.f.add(CodeSPFFlatten, Warn, "RFC 7208 §4.6.4", domain, "no include can be flattened (each depends on macros, exists or ptr): remove senders or split them onto subdomains")
		return
	}
	left := total - saved
	msg := "replace " + strings.Join(terms, ", ") + " by the ip4/ip6 networks they list"
	if left > LookupLimit {
		msg += fmt.Sprintf("; that still leaves %d lookups, so some senders must move to a subdomain", left)
	} else {
		msg += fmt.Sprintf(" to get to %d lookups; flattened networks must be kept up to date by hand", left)
	}
	w.f.add(CodeSPFFlatten, Warn, "RFC 7208 §4.6.4", domain, "%s", msg)
}

// spfLine is the one-line verdict of the SPF check.
func spfLine(r SPFResult) string {
	switch r.Tree.Status {
	case NodeNone:
		return "no SPF record"
	case NodeTempError:
		return "SPF record not fetched: " + r.Tree.Error
	case NodeMultiple, NodeSyntax:
		return "permerror: " + r.Tree.Error
	}
	return fmt.Sprintf("%d of %d DNS lookups, %d of %d void lookups; %s", r.Lookups, r.LookupLimit, r.VoidLookups, r.VoidLimit, countSummary(r.Findings))
}

// countSummary says "no findings" or "N warnings, M failures".
func countSummary(fs []Finding) string {
	var warn, fail, errs int
	for _, f := range fs {
		switch f.Severity {
		case Warn:
			warn++
		case Fail:
			fail++
		case Error:
			errs++
		}
	}
	if warn+fail+errs == 0 {
		return "no problems"
	}
	var parts []string
	for _, p := range []struct {
		n    int
		name string
	}{{fail, "failure"}, {errs, "DNS error"}, {warn, "warning"}} {
		if p.n == 1 {
			parts = append(parts, "1 "+p.name)
		} else if p.n > 1 {
			parts = append(parts, fmt.Sprintf("%d %ss", p.n, p.name))
		}
	}
	return strings.Join(parts, ", ")
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
