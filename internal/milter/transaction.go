package milter

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/pending"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// Transaction is one message, from MAIL FROM to its decision: it owns all
// of the message's state, its checks, its failure and its bypass. Its
// methods follow the milter events and are called from one goroutine, in
// order: Start, AddRcpt…, Header…, EndOfHeaders, BodyChunk…, End. Close
// may come at any time, from any goroutine, more than once.
type Transaction struct {
	e        *Engine
	env      Envelope
	ctx      context.Context
	cancel   context.CancelFunc
	heloMemo *HeloSPFMemo // the connection's; nil when there is none
	started  time.Time
	queueID  string

	bypass Bypass
	// stopped is set when a callback of the message failed: the message
	// goes on unevaluated to its end, where the on_error decision is given
	// (with its forged Authentication-Results still deleted).
	stopped bool
	// decided is the decision End returned; a second End returns it again
	// (a message bypassed at MAIL FROM whose reply waits for its end).
	decided *Decision

	hyg        *hygiene // forged A-R and marker fields; nil before the first header
	listHeader bool     // a List-Id or List-Post field was seen
	fromFields []string
	from       policy.Author // ParseFrom of the first From field alone
	eoh        bool
	dkim       *verify.DKIMVerifier
	dkimCancel context.CancelFunc
	// arc is the message's ARC work (pooled): the fields held until the
	// first ARC field, then the ARC verifier. One word, so that the
	// Transaction stays in its allocation size class.
	arc *arcState

	spfMail, spfHelo pending.Check[verify.SPFResult]
	discoveries      []discovery // one per Author Domain whose discovery was started

	// probe is the cache-only view the inline checks run through, one at a
	// time; probeSPF checks SPF through it. Made on first use.
	probe    *cache.CacheOnly
	probeSPF *verify.SPFChecker

	mu      sync.Mutex // guards err, failed and trace, written by the check goroutines
	err     error      // the first internal error
	failed  chan struct{}
	tracing bool // record the steps (evaluate, log_level debug)
	trace   []string

	// capture keeps report mail to the intake mailboxes (capture.go).
	capture            *capture
	rcptsBeforeCapture int
}

// discovery is the policy discovery of one Author Domain.
type discovery struct {
	domain string
	check  pending.Check[*policy.Discovery]
}

// maxRcpts bounds the recipients remembered per message.
const maxRcpts = 100

// Begin starts a message: NewTransaction, then Start. memo is the
// connection's memory of its HELO SPF result (nil: none).
func Begin(ctx context.Context, e *Engine, env Envelope, memo *HeloSPFMemo) *Transaction {
	t := NewTransaction(ctx, e, env, memo)
	t.Start()
	return t
}

// NewTransaction makes the message's state; nothing is checked before
// Start. ctx is the connection's context; the message's derives from it.
func NewTransaction(ctx context.Context, e *Engine, env Envelope, memo *HeloSPFMemo) *Transaction {
	ctx, cancel := context.WithCancel(ctx)
	return &Transaction{e: e, env: env, ctx: ctx, cancel: cancel, heloMemo: memo, started: time.Now(), tracing: e.tracing}
}

// Start decides the bypasses known at MAIL FROM and starts the SPF checks.
func (t *Transaction) Start() {
	t.e.at("mail")
	switch {
	case t.e.trusted.Contains(t.env.ClientIP):
		t.bypass = BypassTrusted
	case t.env.AuthUser != "":
		t.bypass = BypassAuthenticated
	default:
		t.startSPF()
	}
}

// Bypassed reports whether the message needs nothing more (trusted network).
func (t *Transaction) Bypassed() bool { return t.bypass == BypassTrusted }

// Fail stops the message after a failure of ours (a recovered panic): its
// checks are cancelled, only its hygiene goes on, and End gives the
// on_error decision.
func (t *Transaction) Fail(err error) {
	t.setErr(err)
	t.stopped = true
	t.Close()
}

// Close cancels everything the message started.
func (t *Transaction) Close() {
	t.cancel()
	if t.dkim != nil {
		t.dkim.Abort()
	}
	if a := t.arc; a != nil && a.v != nil {
		a.v.Abort()
	}
}

// SetQueueID records the MTA's queue id (macro i), which Postfix assigns at
// the first accepted RCPT.
func (t *Transaction) SetQueueID(id []byte) {
	if string(id) != t.queueID {
		t.queueID = string(id)
	}
}

// AddRcpt records an envelope recipient.
func (t *Transaction) AddRcpt(rcpt string) {
	if t.stopped || t.bypass == BypassTrusted {
		return
	}
	t.e.at("rcpt")
	t.noteRcpt(rcpt)
	if len(t.env.Rcpts) < maxRcpts {
		t.env.Rcpts = append(t.env.Rcpts, rcpt)
	}
}

// Header takes one header field: name and value exactly as the MTA sent
// them (value with its leading space, folds as "\n").
func (t *Transaction) Header(name, value string) {
	if t.bypass == BypassTrusted {
		return
	}
	if t.hyg == nil {
		t.hyg = newHygiene(t.e.AuthservID(t.env.MTAHost), t.e.cfg.Actions.QuarantineHeader)
	}
	t.hyg.add(name, value) // first: forged fields go even if the rest fails
	if t.stopped || t.eoh {
		return
	}
	t.captureHeader(name, value)
	if t.e.hook != nil {
		t.e.at("header:" + name)
	}
	if t.bypass == BypassAuthenticated {
		return
	}
	if t.dkim == nil {
		t.dkim = verify.NewDKIMVerifier(t.e.res, verify.DKIMConfig{MaxSignatures: t.e.cfg.DKIM.MaxSignatures})
	}
	ascii := isASCII(name)
	if sameNameASCII(name, ascii, "list-id", true) || sameNameASCII(name, ascii, "list-post", true) {
		t.listHeader = true // RFC 2919, RFC 2369: a mailing list, an indirect flow
	}
	_ = t.dkim.Header(name, value) // only ErrDKIMOrder, impossible here
	t.arcHeader(name, value, ascii)
	if sameNameASCII(name, ascii, "from", true) {
		t.fromFields = append(t.fromFields, value)
		if len(t.fromFields) == 1 {
			// RFC 9989 §5.3.1: the Author Domain is the From domain.
			t.from = policy.ParseFrom(t.fromFields)
			for _, d := range t.from.Domains {
				t.startDiscovery(d)
			}
		}
	}
}

// EndOfHeaders starts DKIM verification: the key lookups begin now.
func (t *Transaction) EndOfHeaders() {
	if t.eoh || t.stopped || t.bypass == BypassTrusted {
		return
	}
	t.eoh = true
	t.e.at("eoh")
	if t.capture != nil {
		t.capture.keep(t.e.capture.MaxSize(), "\r\n")
	}
	if t.dkim == nil || t.bypass == BypassAuthenticated {
		return
	}
	t.startARC()
	if t.dkim.Signatures() == 0 {
		_ = t.dkim.EndOfHeaders(t.ctx) // no key lookups: no deadline needed
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.e.cfg.Timeouts.DKIM)
	t.dkimCancel = cancel
	_ = t.dkim.EndOfHeaders(ctx)
}

// BodyChunk streams a body chunk into the DKIM verifier, which hashes it
// at once and keeps nothing of it.
func (t *Transaction) BodyChunk(p []byte) {
	if t.stopped || t.bypass == BypassTrusted {
		return
	}
	t.e.at("body")
	if t.capture != nil {
		t.capture.keep(t.e.capture.MaxSize(), string(p))
	}
	if !t.eoh || t.dkim == nil || t.bypass == BypassAuthenticated {
		return
	}
	_, _ = t.dkim.Write(p) // an error means verification stopped; Finish reports it
	if a := t.arc; a != nil && a.v != nil {
		_, _ = a.v.Write(p) // likewise
	}
}

// tracef records one step for the evaluate subcommand and the debug log.
// Callers on the hot path test t.tracing first, so that the arguments are
// not boxed.
func (t *Transaction) tracef(format string, args ...any) {
	if !t.tracing {
		return
	}
	t.mu.Lock()
	t.trace = append(t.trace, fmt.Sprintf(format, args...))
	t.mu.Unlock()
}

func (t *Transaction) traceCopy() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.trace...)
}

// recoverCheck, deferred by a check, turns its panic into the message's
// internal error (the on_error decision) instead of killing the daemon.
func (t *Transaction) recoverCheck(what string) {
	if v := recover(); v != nil {
		t.e.metrics.Panic(what)
		t.setErr(fmt.Errorf("panic in %s: %v\n%s", what, v, debug.Stack()))
	}
}

// setErr records the first internal error and ends every wait for the
// checks (failedChan).
func (t *Transaction) setErr(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
		if t.failed != nil {
			close(t.failed)
		}
	}
	t.mu.Unlock()
}

// internalErr is the first internal error, nil when none.
func (t *Transaction) internalErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// failedChan returns the channel closed with the first internal error,
// made on first use: most messages never wait for anything.
func (t *Transaction) failedChan() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed == nil {
		t.failed = make(chan struct{})
		if t.err != nil {
			close(t.failed)
		}
	}
	return t.failed
}
