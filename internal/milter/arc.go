package milter

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/dmarc-milter/dmarc-milter/internal/authres"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// maxHeld bounds the header fields held before the first ARC field: a
// header with more starts the ARC verifier anyway, which keeps them under
// its own size bound (and reports cv=fail for a header block over it, ARC
// fields or not). Dropping fields instead would be wrong: a signature
// that over-signs a field (h=from:from) fails when a second one is on top,
// and would pass without it.
const maxHeld = 1024

// arcState is the ARC work of one message: until the first ARC field, the
// fields held (references to the strings the DKIM verifier keeps anyway),
// so that the verifier, made at that field, can be given the whole header;
// then the verifier and the cancel of its lookups' deadline. A message
// without ARC fields makes no verifier and hands its arcState back to the
// pool at the end of its header.
type arcState struct {
	held   []HeaderField
	v      *verify.ARCVerifier
	cancel context.CancelFunc
}

var arcPool = sync.Pool{New: func() any { return &arcState{held: make([]HeaderField, 0, 32)} }}

// arcHeader gives one header field to the ARC verifier, made at the first
// ARC field (RFC 8617 §4.1: ARC-Seal, ARC-Message-Signature,
// ARC-Authentication-Results, names without regard to case) with the
// fields held before it. Until then the field is only held.
// https://datatracker.ietf.org/doc/html/rfc8617#section-4.1
func (t *Transaction) arcHeader(name, value string, ascii bool) {
	if t.arc == nil {
		t.arc = arcPool.Get().(*arcState)
	}
	a := t.arc
	if a.v != nil {
		_ = a.v.Header(name, value) // only ErrDKIMOrder, impossible here
		return
	}
	if !isARCField(name, ascii) && len(a.held) < maxHeld {
		a.held = append(a.held, HeaderField{Name: name, Value: value})
		return
	}
	a.v = verify.NewARCVerifier(t.e.res, verify.ARCConfig{})
	for _, f := range a.held {
		_ = a.v.Header(f.Name, f.Value)
	}
	a.held = nil // this arcState stays with the message
	_ = a.v.Header(name, value)
}

// releaseARC hands back the arcState of a message without ARC fields,
// cleared so that the pool keeps no message's strings alive (a slice grown
// very large is dropped).
func (t *Transaction) releaseARC() {
	a := t.arc
	if a == nil || a.v != nil {
		return
	}
	t.arc = nil
	if cap(a.held) > 128 {
		return
	}
	clear(a.held)
	a.held = a.held[:0]
	arcPool.Put(a)
}

// isARCField reports whether name is one of the three ARC header fields.
func isARCField(name string, ascii bool) bool {
	if len(name) < 8 || name[3] != '-' || name[0]|0x20 != 'a' || name[1]|0x20 != 'r' || name[2]|0x20 != 'c' {
		return false
	}
	return sameNameASCII(name, ascii, verify.FieldARCSeal, true) ||
		sameNameASCII(name, ascii, verify.FieldARCMessageSignature, true) ||
		sameNameASCII(name, ascii, verify.FieldARCAuthenticationResults, true)
}

// startARC ends the ARC verifier's header: its key lookups start, under
// the DKIM timeout (ARC keys are DKIM keys, RFC 8617 §4.1.2, §4.1.3).
func (t *Transaction) startARC() {
	t.releaseARC()
	if t.arc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.e.cfg.Timeouts.DKIM)
	t.arc.cancel = cancel
	_ = t.arc.v.EndOfHeaders(ctx) // only ErrDKIMOrder or ErrDKIMAborted; Finish reports them
}

// finishARC ends the body and returns the chain's result: nil without ARC
// fields (cv none). An error of ours is the message's internal error; the
// chain then counts as failed (RFC 8617 §5.2.1).
func (t *Transaction) finishARC(dl *eomDeadline) *verify.ARCResult {
	if t.arc == nil || t.arc.v == nil {
		return nil
	}
	res, err := t.arc.v.Finish(dl.context())
	if t.arc.cancel != nil {
		t.arc.cancel()
	}
	if err != nil {
		if errors.Is(err, verify.ErrInternal) {
			t.setErr(err)
		}
		res = verify.ARCResult{CV: verify.ChainFail, Reason: err.Error()}
	}
	if t.tracing {
		t.traceARC(&res)
	}
	return &res
}

// traceARC records the chain for the evaluate subcommand: its status, and
// each set with its seal and its assessment, newest first.
func (t *Transaction) traceARC(r *verify.ARCResult) {
	t.tracef("arc: cv=%s (%s)", r.CV, r.Reason)
	if r.CV == verify.ChainPass {
		t.tracef("  oldest passing ARC-Message-Signature: i=%d (0: all of them verify)", r.OldestPass)
	}
	if r.Failure != verify.ARCFailNone {
		t.tracef("  failure: %s at i=%d", r.Failure, r.FailedInstance)
	}
	if len(t.e.local.Forwarders.ARCSealers) > 0 {
		if set, why := t.e.local.TrustedARCSet(r); set != nil {
			t.tracef("  trusted sealers: the assessment of i=%d (%s) is read", set.Instance, set.SealDomain)
		} else {
			t.tracef("  trusted sealers: no assessment is read: %s", why)
		}
	}
	for i := len(r.Sets) - 1; i >= 0; i-- {
		s := &r.Sets[i]
		t.tracef("  i=%d sealer d=%s s=%s a=%s cv=%s; AMS d=%s s=%s", s.Instance, s.SealDomain, s.SealSelector, s.SealAlgorithm, s.CV, s.AMSDomain, s.AMSSelector)
		if s.AARErr != nil {
			t.tracef("    assessment does not parse: %v", s.AARErr)
			continue
		}
		t.tracef("    assessment by %s: %s", s.AuthservID, resultsLine(s.Results))
	}
}

// resultsLine writes results on one line, "method=value ptype.prop=value",
// properties in name order.
func resultsLine(rs []authres.Result) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		p := r.Method + "=" + r.Value
		for _, k := range slices.Sorted(maps.Keys(r.Props)) {
			p += " " + k + "=" + r.Props[k]
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// arcResult is the arc resinfo of RFC 8617 §6: the chain validation
// status, and for a chain that was there the client that handed the
// message to us (smtp.remote-ip) and, when it passed, the oldest
// ARC-Message-Signature that still verifies (header.oldest-pass, 0 when
// all do), with the newest sealer in a comment.
// https://datatracker.ietf.org/doc/html/rfc8617#section-6
func arcResult(d *Decision) authres.Result {
	a := d.Verdict.ARC
	if a == nil || a.CV == "" || a.CV == verify.ChainNone {
		return authres.Result{Method: "arc", Value: string(verify.ChainNone)}
	}
	cv := a.CV
	r := authres.Result{Method: "arc", Value: string(cv)}
	// RFC 8617 §6: smtp.remote-ip and header.oldest-pass SHOULD be recorded
	if ip := d.Env.ClientIP; ip.IsValid() {
		r.Params = append(r.Params, authres.Param{Name: "smtp.remote-ip", Value: ip.Unmap().String()})
	}
	if cv == verify.ChainPass {
		r.Params = append(r.Params, authres.Param{Name: "header.oldest-pass", Value: strconv.Itoa(a.OldestPass)})
		if n := len(a.Sets); n > 0 {
			r.Comment = "i=" + strconv.Itoa(n) + " d=" + a.Sets[n-1].SealDomain
		}
		return r
	}
	r.Reason = a.Reason
	return r
}
