package policy

import (
	"context"
	"fmt"
	"sync"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// Prepare does the DNS work Evaluate needs and stores the answers in in:
// it runs Discover for each Author Domain of in.From that Evaluate will
// evaluate (the first FromPolicy.MaxDomains, none when the From outcome
// skips evaluation) and that has no entry in in.Discoveries yet (the milter
// normally started those at the From: header), then looks up the
// Organizational Domain of each SPF or DKIM identifier that relaxed
// alignment under the tree walk needs (RFC 9989 §4.10.2: "It may be necessary to perform multiple DNS Tree Walks"). All
// queries go through r under ctx; failures are recorded, not returned, and
// make Evaluate give temperror where they matter.
func Prepare(ctx context.Context, r Resolver, in *Input, opts Options) {
	lp := in.Local.WithDefaults()
	// RFC 9989 §11.5: only the Author Domains Evaluate will evaluate (at
	// most MaxDomains; none when the From outcome skips evaluation).
	_, _, domains := fromScope(in.From, lp.From)
	if len(domains) == 0 {
		return
	}
	if in.Discoveries == nil {
		in.Discoveries = make(map[string]*Discovery, len(domains))
	}
	for _, d := range domains {
		if in.Discoveries[d] == nil {
			in.Discoveries[d] = Discover(ctx, r, d, opts)
		}
	}
	var ids []string
	for _, d := range domains {
		for _, id := range orgLookupsNeeded(in, in.Discoveries[d]) {
			if _, done := in.OrgDomains[id]; !done && !contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return
	}
	if in.OrgDomains == nil {
		in.OrgDomains = make(map[string]OrgResult, len(ids))
	}
	// The walks are independent and mostly answered by the cache that
	// discovery warmed: run them side by side, the first one on this
	// goroutine (most messages need one walk at most).
	results := make([]OrgResult, len(ids))
	walk := func(i int) {
		defer func() {
			if v := recover(); v != nil {
				results[i] = OrgResult{Err: fmt.Errorf("%w: internal error in the walk for %s: %v", ErrTempFail, ids[i], v)}
			}
		}()
		org, err := OrgDomain(ctx, r, ids[i], MethodTreeWalk, nil)
		results[i] = OrgResult{Domain: org, Err: err}
	}
	var wg sync.WaitGroup
	for i := 1; i < len(ids); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			walk(i)
		}()
	}
	walk(0)
	wg.Wait()
	for i, id := range ids {
		in.OrgDomains[id] = results[i]
	}
}

// Prepared reports whether Prepare has nothing to look up for in: every
// Author Domain Evaluate will evaluate has its discovery in in.Discoveries,
// and every Organizational Domain relaxed alignment needs is in
// in.OrgDomains. A caller can then skip Prepare (and the deadline it would
// give it); Prepare itself would leave in unchanged.
func Prepared(in *Input) bool {
	lp := in.Local.WithDefaults()
	_, _, domains := fromScope(in.From, lp.From)
	for _, d := range domains {
		disc := in.Discoveries[d]
		if disc == nil {
			return false
		}
		for _, id := range orgLookupsNeeded(in, disc) {
			if _, done := in.OrgDomains[id]; !done {
				return false
			}
		}
	}
	return true
}

// orgLookupsNeeded lists the identifiers whose Organizational Domain
// relaxed alignment with disc's Author Domain needs from DNS: tree walk
// only, relaxed mode, not the Author Domain itself, and inside the Author
// Domain's Organizational Domain (see aligned).
func orgLookupsNeeded(in *Input, disc *Discovery) []string {
	if disc == nil || disc.Err != nil || disc.Record == nil || disc.OrgErr != nil || disc.Method != MethodTreeWalk {
		return nil
	}
	var out []string
	need := func(id string, mode AlignMode) {
		if mode == AlignRelaxed && id != disc.Domain && isSubdomainOrSelf(id, disc.OrgDomain) && !contains(out, id) {
			out = append(out, id)
		}
	}
	if dom, _, ok := spfIdentifier(in); ok {
		need(dom, disc.Record.SPFAlignment())
	}
	for _, s := range in.DKIM {
		if s.Result == verify.ResultPass || s.Result == verify.ResultTempError {
			need(normalizeOrKeep(s.Domain), disc.Record.DKIMAlignment())
		}
	}
	if len(in.Local.Forwarders.ARCSealers) > 0 {
		lp := in.Local.WithDefaults()
		arcLookupsNeeded(in, &lp, disc, need)
	}
	return out
}
