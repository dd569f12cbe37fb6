package milter

import (
	"context"
	"fmt"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/authres"
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

// hygieneField is an incoming Authentication-Results or quarantine marker
// field, with its 1-based index among the fields of its name.
type hygieneField struct {
	name  string // as received
	index int
	value string
}

// Transaction is one message going through the checks. Its methods follow
// the milter events and must be called from one goroutine, in order:
// Header…, EndOfHeaders, BodyChunk…, End; Close at any time (it is safe to
// call from another goroutine and more than once).
type Transaction struct {
	e      *Engine
	env    Envelope
	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time
	bypass Bypass

	spfMail, spfHelo chan verify.SPFResult
	heloSPF          *verify.SPFResult

	hygiene    []hygieneField
	nameCount  map[string]int // lower-case name → occurrences
	fromFields []string
	eoh        bool
	dkim       *verify.DKIMVerifier
	dkimCancel context.CancelFunc

	mu          sync.Mutex
	started     map[string]bool // From: domains whose discovery was started
	discoveries map[string]chan *policy.Discovery
	internalErr error
	failed      chan struct{} // closed with the first internal error
	trace       []string
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

// tracef records one step for the evaluate subcommand.
func (t *Transaction) tracef(format string, args ...any) {
	t.mu.Lock()
	t.trace = append(t.trace, fmt.Sprintf(format, args...))
	t.mu.Unlock()
}

// goSafe runs f in a goroutine; a panic becomes the message's internal
// error (the on_error action) instead of killing the daemon.
func (t *Transaction) goSafe(what string, f func()) {
	go func() {
		defer func() {
			if v := recover(); v != nil {
				t.setInternalErr(fmt.Errorf("panic in %s: %v\n%s", what, v, debug.Stack()))
			}
		}()
		f()
	}()
}

func (t *Transaction) setInternalErr(err error) {
	t.mu.Lock()
	if t.internalErr == nil {
		t.internalErr = err
		close(t.failed)
	}
	t.mu.Unlock()
}

// startSPF checks the MAIL FROM identity and, if configured, the HELO
// identity, each in its own goroutine under the SPF timeout.
func (t *Transaction) startSPF() {
	ip := net.IP(t.env.ClientIP.AsSlice())
	t.spfMail = make(chan verify.SPFResult, 1)
	ctx, cancel := context.WithTimeout(t.ctx, t.e.cfg.Timeouts.SPF)
	var wg sync.WaitGroup
	wg.Add(1)
	t.goSafe("spf mfrom", func() {
		defer wg.Done()
		t.e.at("spf")
		t.spfMail <- t.e.spf.CheckMailFrom(ctx, ip, t.env.Helo, t.env.MailFrom)
	})
	if t.e.cfg.SPF.CheckHelo {
		t.spfHelo = make(chan verify.SPFResult, 1)
		wg.Add(1)
		t.goSafe("spf helo", func() {
			defer wg.Done()
			t.spfHelo <- t.e.spf.CheckHelo(ctx, ip, t.env.Helo)
		})
	}
	go func() { wg.Wait(); cancel() }()
}

// maxRcpts bounds the recipients remembered per message.
const maxRcpts = 100

// AddRcpt records an envelope recipient.
func (t *Transaction) AddRcpt(rcpt string) {
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
	t.e.at("header:" + name)
	lname := strings.ToLower(name)
	if t.nameCount == nil {
		t.nameCount = map[string]int{}
		if t.bypass != BypassAuthenticated {
			t.dkim = verify.NewDKIMVerifier(t.e.res, verify.DKIMConfig{MaxSignatures: t.e.cfg.DKIM.MaxSignatures})
		}
	}
	t.nameCount[lname]++
	if lname == "authentication-results" || lname == t.marker() {
		t.hygiene = append(t.hygiene, hygieneField{name, t.nameCount[lname], value})
	}
	if t.bypass == BypassAuthenticated {
		return
	}
	_ = t.dkim.Header(name, value) // only ErrDKIMOrder, impossible here
	if lname == "from" {
		t.fromFields = append(t.fromFields, value)
		if len(t.fromFields) == 1 {
			// RFC 7489 §6.6.1 / RFC 9989 §5.3.1: the Author Domain is the
			// From: domain; start its policy discovery now.
			// https://datatracker.ietf.org/doc/html/rfc7489#section-6.6.1
			// https://datatracker.ietf.org/doc/html/rfc9989#section-5.3.1
			for _, d := range policy.ParseFrom([]string{value}).Domains {
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
	if t.started[domain] || len(t.started) >= t.e.cfg.DMARC.From.MaxDomains {
		t.mu.Unlock()
		return
	}
	t.started[domain] = true
	if t.discoveries == nil {
		t.discoveries = map[string]chan *policy.Discovery{}
	}
	ch := make(chan *policy.Discovery, 1)
	t.discoveries[domain] = ch
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(t.ctx, t.e.cfg.Timeouts.DMARC)
	t.goSafe("dmarc discovery", func() {
		defer cancel()
		ch <- policy.Discover(ctx, t.e.res, domain, policy.Options{Method: t.e.discoveryMethod()})
	})
}

// EndOfHeaders starts DKIM verification: the key lookups begin now.
func (t *Transaction) EndOfHeaders() {
	if t.eoh || t.bypass == BypassTrusted {
		return
	}
	t.eoh = true
	if t.dkim == nil || t.bypass == BypassAuthenticated {
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.e.cfg.Timeouts.DKIM)
	t.dkimCancel = cancel
	_ = t.dkim.EndOfHeaders(ctx)
}

// BodyChunk streams a body chunk into the DKIM verifier. It may block
// until the key lookups are answered (bounded by the DKIM timeout).
func (t *Transaction) BodyChunk(p []byte) {
	if !t.eoh || t.dkim == nil || t.bypass == BypassTrusted || t.bypass == BypassAuthenticated {
		return
	}
	_, _ = t.dkim.Write(p) // an error means verification stopped; Finish reports it
}

// forged returns the header references to delete: every incoming
// Authentication-Results carrying our authserv-id (RFC 8601 §5,
// https://datatracker.ietf.org/doc/html/rfc8601#section-5) and every
// copy of the quarantine marker, as 1-based indexes per header name
// (milter protocol SMFIR_CHGHEADER; Postfix compares names
// case-insensitively), highest index first so that deleting one does not
// shift the next.
func (t *Transaction) forged(id string) []HeaderRef {
	var out []HeaderRef
	for _, f := range t.hygiene {
		if strings.EqualFold(f.name, authres.FieldName) && !authres.IsOurs(f.value, id) {
			continue
		}
		out = append(out, HeaderRef{Name: f.name, Index: f.index})
	}
	// Highest index first within each name.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// marker is the lower-case quarantine marker field name ("" when disabled).
func (t *Transaction) marker() string {
	m := strings.ToLower(t.e.cfg.Actions.QuarantineHeader)
	if m == "" {
		return "\x00" // matches no field name
	}
	return m
}

// hasListHeaders reports signs of a mailing list (RFC 2369,
// https://datatracker.ietf.org/doc/html/rfc2369; RFC 2919, https://datatracker.ietf.org/doc/html/rfc2919), an
// indirect flow that breaks SPF and often DKIM.
func (t *Transaction) hasListHeaders() bool {
	for _, n := range []string{"list-id", "list-post"} {
		if t.nameCount[n] > 0 {
			return true
		}
	}
	return false
}
