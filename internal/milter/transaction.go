package milter

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// Bypass says why a message was not evaluated or not enforced.
type Bypass string

// The bypasses.
const (
	BypassNone          Bypass = ""
	BypassTrusted       Bypass = "trusted-network"   // not evaluated, nothing added or deleted
	BypassAuthenticated Bypass = "authenticated"     // not evaluated; forged A-R deleted
	BypassAllowNetwork  Bypass = "allowlist-network" // evaluated and marked, never enforced
	BypassAllowFrom     Bypass = "allowlist-from"    // evaluated and marked, never enforced
)

// Transaction is one message going through the checks. Its methods follow
// the milter events and must be called from one goroutine, in order:
// Header…, EndOfHeaders, BodyChunk…, End; Close at any time (it is safe to
// call from another goroutine and more than once).
type Transaction struct {
	e      *Engine
	env    Envelope
	ctx    context.Context
	cancel context.CancelFunc
	bypass Bypass

	spfMail, spfHelo spfCheck
	heloSPF          *verify.SPFResult

	// probe is the cache-only view the inline checks run through, one at a
	// time; probeSPF checks SPF through it. Made on first use.
	probe    *cache.CacheOnly
	probeSPF *verify.SPFChecker

	hyg        *hygiene // forged A-R and marker fields; nil before the first header
	listHeader bool     // a List-Id or List-Post field was seen
	fromFields []string
	from       policy.Author // ParseFrom of the first From field alone
	eoh        bool
	dkim       *verify.DKIMVerifier
	dkimCancel context.CancelFunc

	mu          sync.Mutex
	discoveries []*discovery // one per From: domain whose discovery was started
	internalErr error
	failed      chan struct{} // closed with the first internal error; made when first waited on
	tracing     bool          // record the steps (evaluate, log_level debug)
	trace       []string
}

// spfCheck is one SPF check of the message: its result when it was made
// inline, else the channel its goroutine answers on.
type spfCheck struct {
	made bool // the check was started
	done bool // res is the result (made inline)
	res  verify.SPFResult
	ch   chan verify.SPFResult
}

// discovery is the policy discovery of one Author Domain: its result when
// it was made inline (or has been received), else the channel its
// goroutine answers on.
type discovery struct {
	domain string
	res    *policy.Discovery
	ch     chan *policy.Discovery
}

// Bypassed reports whether the message needs nothing more (trusted network).
func (t *Transaction) Bypassed() bool { return t.bypass == BypassTrusted }

// Close cancels everything the message started.
func (t *Transaction) Close() {
	t.cancel()
	if t.dkim != nil {
		t.dkim.Abort()
	}
}

// tracef records one step for the evaluate subcommand and the debug log.
// It does nothing unless the Transaction traces; callers on the hot path
// test t.tracing first, so that the arguments are not even boxed.
func (t *Transaction) tracef(format string, args ...any) {
	if !t.tracing {
		return
	}
	t.mu.Lock()
	t.trace = append(t.trace, fmt.Sprintf(format, args...))
	t.mu.Unlock()
}

// goSafe runs f in a goroutine; a panic becomes the message's internal
// error (the on_error action) instead of killing the daemon.
func (t *Transaction) goSafe(what string, f func()) {
	go t.runSafe(what, f)
}

// runSafe runs f; a panic becomes the message's internal error.
func (t *Transaction) runSafe(what string, f func()) {
	defer func() {
		if v := recover(); v != nil {
			t.e.metrics.Panic(what)
			t.setInternalErr(fmt.Errorf("panic in %s: %v\n%s", what, v, debug.Stack()))
		}
	}()
	f()
}

func (t *Transaction) setInternalErr(err error) {
	t.mu.Lock()
	if t.internalErr == nil {
		t.internalErr = err
		if t.failed != nil {
			close(t.failed)
		}
	}
	t.mu.Unlock()
}

// failedChan returns the channel closed with the first internal error
// (made on first use: most messages never wait for anything).
func (t *Transaction) failedChan() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed == nil {
		t.failed = make(chan struct{})
		if t.internalErr != nil {
			close(t.failed)
		}
	}
	return t.failed
}

// fromCache runs check through a cache-only view of the resolver, here and
// now, and reports whether it could: false when the engine's resolver is
// not pkg/cache or when an answer the check needed was not cached (the
// caller then runs it again in the background). A check that did not miss
// had exactly the answers the resolver would have given, and saves a
// goroutine, its stack growth and a timer. A panic is the message's
// internal error, as in goSafe, and counts as done.
func (t *Transaction) fromCache(what string, check func(v *cache.CacheOnly)) (done bool) {
	if t.e.cache == nil {
		return false
	}
	if t.probe == nil {
		t.probe = t.e.cache.CacheOnly()
	} else {
		t.probe.Reset()
	}
	v := t.probe
	done = true
	t.runSafe(what, func() {
		check(v)
		done = !v.Missed()
	})
	return done
}

// spfThrough returns the SPF checker over the cache-only view v (always
// t.probe).
func (t *Transaction) spfThrough(v *cache.CacheOnly) *verify.SPFChecker {
	if t.probeSPF == nil {
		t.probeSPF = t.e.spf.WithResolver(v) // shares the record syntax memory
	}
	return t.probeSPF
}

// startSPF checks the MAIL FROM identity and, if configured, the HELO
// identity. A check whose DNS answers are all cached is made now; any other
// runs in its own goroutine under the SPF timeout, so that its lookups
// overlap the rest of the message. The HELO result of an earlier message of
// the connection is reused when the Envelope carries it (HeloSPFMemo).
func (t *Transaction) startSPF() {
	ip := net.IP(t.env.ClientIP.AsSlice())
	t.spfMail.made = true
	mailDone := t.fromCache("spf mfrom", func(v *cache.CacheOnly) {
		t.e.at("spf")
		r := t.spfThrough(v).CheckMailFrom(t.ctx, ip, t.env.Helo, t.env.MailFrom)
		t.spfMail.res, t.spfMail.done = r, !v.Missed()
	})
	heloDone := true
	if t.e.cfg.SPF.CheckHelo {
		t.spfHelo.made = true
		if r, ok := t.env.HeloSPF.get(t.e, t.env.ClientIP, t.env.Helo); ok {
			t.spfHelo.res, t.spfHelo.done = r, true
		} else {
			heloDone = t.fromCache("spf helo", func(v *cache.CacheOnly) {
				t.e.at("spf helo")
				r := t.spfThrough(v).CheckHelo(t.ctx, ip, t.env.Helo)
				t.spfHelo.res, t.spfHelo.done = r, !v.Missed()
			})
			if t.spfHelo.done {
				t.env.HeloSPF.put(t.e, t.env.ClientIP, t.env.Helo, t.spfHelo.res)
			}
		}
	}
	if mailDone && heloDone {
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.e.cfg.Timeouts.SPF)
	var wg sync.WaitGroup
	if !mailDone {
		ch := make(chan verify.SPFResult, 1)
		t.spfMail.ch = ch
		wg.Add(1)
		t.goSafe("spf mfrom", func() {
			defer wg.Done()
			t.e.at("spf")
			ch <- t.e.spf.CheckMailFrom(ctx, ip, t.env.Helo, t.env.MailFrom)
		})
	}
	if !heloDone {
		ch := make(chan verify.SPFResult, 1)
		t.spfHelo.ch = ch
		wg.Add(1)
		t.goSafe("spf helo", func() {
			defer wg.Done()
			t.e.at("spf helo")
			ch <- t.e.spf.CheckHelo(ctx, ip, t.env.Helo)
		})
	}
	go func() { wg.Wait(); cancel() }()
}

// HeloSPFMemo keeps the result of a connection's HELO identity check (RFC
// 7208 §2.3, https://datatracker.ietf.org/doc/html/rfc7208#section-2.3) for
// the next messages of the same connection. The check_host() inputs of that
// identity are the client address and the HELO name alone (the sender is
// postmaster@<HELO>), so for a given DNS its result is the same for every
// message of the connection: the memo saves the check of each message after
// the first.
//
// A result is kept only when every DNS answer it needed was in the cache
// (the check was made inline), when it is not temperror, and for at most
// heloSPFMaxAge. It is reused
// only for the same client address, HELO name and Engine (a reload may
// change the SPF limits).
//
// The zero value is empty. A session owns one per connection and puts its
// address in the Envelope of every message (Envelope.HeloSPF); it must not
// be shared between connections. Only Engine.Begin uses it, on the
// session's goroutine: it has no lock.
type HeloSPFMemo struct {
	e    *Engine // nil: empty
	ip   netip.Addr
	helo string
	at   time.Time
	res  verify.SPFResult
}

// heloSPFMaxAge bounds the reuse of a HELO result. It is pkg/cache's default
// shortest lifetime of an answer (MinTTL): within it a reused result is, by
// default, one the cached answers would give again, and a long connection
// does not keep a result after the DNS behind it has changed.
const heloSPFMaxAge = 30 * time.Second

// get returns the kept result for (e, ip, helo). A nil memo is empty.
func (m *HeloSPFMemo) get(e *Engine, ip netip.Addr, helo string) (verify.SPFResult, bool) {
	if m == nil || m.e != e || m.ip != ip || m.helo != helo || time.Since(m.at) > heloSPFMaxAge {
		return verify.SPFResult{}, false
	}
	return m.res, true
}

// put keeps r, the HELO result for (e, ip, helo), unless it is temperror
// (the next message asks the DNS again). A nil memo keeps nothing.
func (m *HeloSPFMemo) put(e *Engine, ip netip.Addr, helo string, r verify.SPFResult) {
	if m == nil || r.Result == verify.ResultTempError {
		return
	}
	*m = HeloSPFMemo{e: e, ip: ip, helo: helo, at: time.Now(), res: r}
}

// maxRcpts bounds the recipients remembered per message.
const maxRcpts = 100

// AddRcpt records an envelope recipient.
func (t *Transaction) AddRcpt(rcpt string) {
	t.e.at("rcpt")
	if len(t.env.Rcpts) < maxRcpts {
		t.env.Rcpts = append(t.env.Rcpts, rcpt)
	}
}

// Header takes one header field: name and value exactly as the MTA sent
// them (value with its leading space, folds as "\n").
func (t *Transaction) Header(name, value string) {
	if t.eoh || t.bypass == BypassTrusted {
		return
	}
	if t.e.hook != nil {
		t.e.at("header:" + name)
	}
	if t.hyg == nil {
		t.hyg = newHygiene(t.e.authservID(t.env.MTAHost), t.e.cfg.Actions.QuarantineHeader)
		if t.bypass != BypassAuthenticated {
			t.dkim = verify.NewDKIMVerifier(t.e.res, verify.DKIMConfig{MaxSignatures: t.e.cfg.DKIM.MaxSignatures})
		}
	}
	t.hyg.add(name, value)
	if t.bypass == BypassAuthenticated {
		return
	}
	ascii := isASCII(name)
	if sameNameASCII(name, ascii, "list-id", true) || sameNameASCII(name, ascii, "list-post", true) {
		t.listHeader = true
	}
	_ = t.dkim.Header(name, value) // only ErrDKIMOrder, impossible here
	if sameNameASCII(name, ascii, "from", true) {
		t.fromFields = append(t.fromFields, value)
		if len(t.fromFields) == 1 {
			// RFC 7489 §6.6.1 / RFC 9989 §5.3.1: the Author Domain is the
			// From: domain; start its policy discovery now.
			// https://datatracker.ietf.org/doc/html/rfc7489#section-6.6.1
			// https://datatracker.ietf.org/doc/html/rfc9989#section-5.3.1
			t.from = policy.ParseFrom(t.fromFields)
			for _, d := range t.from.Domains {
				t.startDiscovery(d)
			}
		}
	}
}

// startDiscovery looks up the DMARC policy of one Author Domain in the
// background, once.
func (t *Transaction) startDiscovery(domain string) {
	t.mu.Lock()
	// At most dmarc.from.max_domains lookups: a message with more domains
	// is handled as too_many_domains by Evaluate anyway.
	if t.discoveryOf(domain) != nil || len(t.discoveries) >= t.e.cfg.DMARC.From.MaxDomains {
		t.mu.Unlock()
		return
	}
	disc := &discovery{domain: domain}
	t.discoveries = append(t.discoveries, disc)
	t.mu.Unlock()
	opts := policy.Options{Method: t.e.discoveryMethod()}
	if t.fromCache("dmarc discovery", func(v *cache.CacheOnly) {
		t.e.at("dmarc")
		d := policy.Discover(t.ctx, v, domain, opts)
		if !v.Missed() {
			t.mu.Lock()
			disc.res = d
			t.mu.Unlock()
		}
	}) {
		return
	}
	ch := make(chan *policy.Discovery, 1)
	t.mu.Lock()
	disc.ch = ch
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(t.ctx, t.e.cfg.Timeouts.DMARC)
	t.goSafe("dmarc discovery", func() {
		defer cancel()
		t.e.at("dmarc")
		ch <- policy.Discover(ctx, t.e.res, domain, opts)
	})
}

// discoveryOf returns the discovery started for domain, or nil. t.mu is
// held.
func (t *Transaction) discoveryOf(domain string) *discovery {
	for _, d := range t.discoveries {
		if d.domain == domain {
			return d
		}
	}
	return nil
}

// EndOfHeaders starts DKIM verification: the key lookups begin now.
func (t *Transaction) EndOfHeaders() {
	if t.eoh || t.bypass == BypassTrusted {
		return
	}
	t.eoh = true
	t.e.at("eoh")
	if t.dkim == nil || t.bypass == BypassAuthenticated {
		return
	}
	if t.dkim.Signatures() == 0 {
		// Nothing to verify: no key lookups, so no deadline (timer) either.
		_ = t.dkim.EndOfHeaders(t.ctx)
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.e.cfg.Timeouts.DKIM)
	t.dkimCancel = cancel
	_ = t.dkim.EndOfHeaders(ctx)
}

// BodyChunk streams a body chunk into the DKIM verifier, which hashes it
// at once and keeps nothing of it; it never waits for the key lookups.
func (t *Transaction) BodyChunk(p []byte) {
	t.e.at("body")
	if !t.eoh || t.dkim == nil || t.bypass == BypassTrusted || t.bypass == BypassAuthenticated {
		return
	}
	_, _ = t.dkim.Write(p) // an error means verification stopped; Finish reports it
}

// forged returns the header references to delete: every incoming
// Authentication-Results carrying our authserv-id and every copy of the
// quarantine marker, highest index first (see hygiene).
func (t *Transaction) forged() []HeaderRef { return t.hyg.forged() }

// hasListHeaders reports signs of a mailing list (RFC 2369,
// https://datatracker.ietf.org/doc/html/rfc2369; RFC 2919, https://datatracker.ietf.org/doc/html/rfc2919), an
// indirect flow that breaks SPF and often DKIM.
func (t *Transaction) hasListHeaders() bool { return t.listHeader }
