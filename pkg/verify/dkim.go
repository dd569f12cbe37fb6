package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/pending"
)

// TXTResolver is the DNS that DKIM key lookups need. *net.Resolver and the
// project's caching resolver (pkg/cache) satisfy it. The error contract is
// the one of Resolver: bare *net.DNSError values, never wrapped.
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// DKIM defaults and limits.
const (
	// DefaultDKIMMaxSignatures is the number of DKIM-Signature fields
	// verified per message; later ones are ignored, which is not an error.
	DefaultDKIMMaxSignatures = 5
	// DefaultDKIMMaxHeaderBytes bounds the header block kept for
	// verification.
	DefaultDKIMMaxHeaderBytes = 1 << 20
	// BPrefixLen is the length of DKIMResult.BPrefix when that is enough to
	// tell the message's signatures apart (RFC 6008 §4: header.b holds at
	// least the first eight characters of b=).
	BPrefixLen = 8
)

// DKIMConfig holds the DKIM limits. The zero value gives the defaults.
type DKIMConfig struct {
	// MaxSignatures is the number of signatures verified per message.
	// Default (0): DefaultDKIMMaxSignatures.
	MaxSignatures int
	// MaxHeaderBytes bounds the size of the header block. A message whose
	// header is larger is not verified: each signature seen gives neutral.
	// Default (0): DefaultDKIMMaxHeaderBytes.
	MaxHeaderBytes int
}

// Errors of the DKIMVerifier.
var (
	// ErrDKIMOrder is returned when the methods are called out of order
	// (a header after EndOfHeaders, a body chunk before it, anything after
	// Finish or Abort).
	ErrDKIMOrder = errors.New("verify: DKIM verifier used out of order")
	// ErrDKIMAborted is the error of Write after Abort.
	ErrDKIMAborted = errors.New("verify: DKIM verification aborted")
	// ErrInternal is returned by Finish when the verification panicked
	// (in Header, Write, Finish or the key lookup goroutine): a bug of ours
	// or of a library, not a property of the message.
	ErrInternal = errors.New("verify: internal error")
)

type dkimState int

const (
	stateHeaders dkimState = iota
	stateBody
	stateDone
)

// DKIMVerifier verifies the DKIM signatures (RFC 6376, RFC 8301, RFC 8463)
// of one message while it streams through, in the order of the milter
// events:
//
//	v := verify.NewDKIMVerifier(resolver, cfg)
//	v.Header(name, value)       // each header field, in message order
//	v.EndOfHeaders(msgCtx)      // key lookups start now
//	v.Write(chunk)              // each body chunk
//	results, err := v.Finish(msgCtx)
//
// or Abort at any point. The body is never buffered: Write canonicalizes
// and hashes each chunk before it returns, once per body canonicalization in
// use (at most two hashes, whatever the number of signatures), and never
// waits for the network. The key lookups run meanwhile in one goroutine;
// Finish waits for them (at most until msgCtx ends) and checks the
// signatures. Memory per message is the header fields and a few hundred
// octets per signature; see DKIMConfig for the limits.
//
// A DKIMVerifier is for one message and one goroutine, except Abort, which
// may be called from any goroutine.
type DKIMVerifier struct {
	res TXTResolver
	cfg DKIMConfig

	state     dkimState
	fields    []hfield
	size      int // octets of the header block, fields rebuilt with CRLF
	sigs      []sigInfo
	extraSigs int  // signatures beyond MaxSignatures, not verified
	dropped   int  // malformed fields left out of the header block
	overflow  bool // header block over MaxHeaderBytes
	now       time.Time

	// Set by EndOfHeaders when there is something to verify.
	bodies   bodyFanout
	jobs     []keyJob           // owned by the lookup goroutine until keys is answered
	sigJob   []int              // index in jobs of each signature's key, or -1
	keys     pending.Check[any] // nil when the lookups finished, or a panic's value
	panicked any                // a panic recovered in Header or Write

	mu        sync.Mutex         // guards cancel, which Abort reads from any goroutine
	cancel    context.CancelFunc // ends the key lookups
	abortOnce sync.Once
	aborted   chan struct{}

	fieldArr [16]hfield // first fields, without another allocation
}

// NewDKIMVerifier returns a verifier for one message that fetches keys
// through r.
func NewDKIMVerifier(r TXTResolver, cfg DKIMConfig) *DKIMVerifier {
	if cfg.MaxSignatures <= 0 {
		cfg.MaxSignatures = DefaultDKIMMaxSignatures
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultDKIMMaxHeaderBytes
	}
	v := &DKIMVerifier{res: r, cfg: cfg, aborted: make(chan struct{})}
	v.fields = v.fieldArr[:0]
	return v
}

// Header adds one header field, in the order of the message. name is the
// field name; value is every octet after the colon, as received: with its
// leading space if there was one (Postfix sends it when the milter
// negotiates SMFIP_HDR_LEADSPC) and with folds as "\n" or "\r\n". The field
// is taken as name ":" value with CRLF line ends, so it is byte for byte
// the field the signer saw, which c=simple header canonicalization needs.
// The strings are kept until Finish.
//
// A field that could not have been in a valid message (a name with a colon
// or whitespace, a line break not followed by a space or tab) is left out.
func (v *DKIMVerifier) Header(name, value string) (err error) {
	if v.state != stateHeaders {
		return ErrDKIMOrder
	}
	defer v.recoverPanic()
	size, ok := checkField(name, value)
	if !ok {
		v.dropped++
		return nil
	}
	if v.overflow || v.size+size > v.cfg.MaxHeaderBytes {
		v.overflow = true
		return nil
	}
	v.size += size
	v.fields = append(v.fields, hfield{name, value})
	if strings.EqualFold(name, "DKIM-Signature") {
		if len(v.sigs) < v.cfg.MaxSignatures {
			if v.now.IsZero() {
				v.now = time.Now()
			}
			s := parseSignature(value, v.now)
			s.field = len(v.fields) - 1
			v.sigs = append(v.sigs, s)
		} else {
			v.extraSigs++
		}
	}
	return nil
}

// recoverPanic turns a panic of Header or Write into ErrInternal at Finish.
func (v *DKIMVerifier) recoverPanic() {
	if p := recover(); p != nil && v.panicked == nil {
		v.panicked = p
	}
}

// Signatures is the number of DKIM-Signature fields seen so far, including
// those beyond MaxSignatures.
func (v *DKIMVerifier) Signatures() int { return len(v.sigs) + v.extraSigs }

// EndOfHeaders ends the header block and starts the verification: the key
// lookups begin at once, under ctx (the message's context; its deadline
// bounds the lookups). Without a DKIM-Signature field nothing is started and
// the body is discarded.
func (v *DKIMVerifier) EndOfHeaders(ctx context.Context) error {
	if v.state != stateHeaders {
		return ErrDKIMOrder
	}
	v.state = stateBody
	if len(v.sigs) == 0 || v.overflow {
		return nil
	}
	select {
	case <-v.aborted:
		v.state = stateDone
		return ErrDKIMAborted
	default:
	}
	defer v.recoverPanic()
	v.sigJob = make([]int, len(v.sigs))
	for i := range v.sigs {
		s := &v.sigs[i]
		v.sigJob[i] = -1
		if !s.needsKey {
			continue
		}
		if s.hashesBody && v.bodies[s.bodyCan] == nil {
			v.bodies[s.bodyCan] = newBodyHasher(s.bodyCan == canonRelaxed)
		}
		// One lookup per distinct key name (names are compared as DNS
		// compares them: without regard to case).
		for j := range v.jobs {
			if strings.EqualFold(v.jobs[j].name, s.keyName) {
				v.sigJob[i] = j
				break
			}
		}
		if v.sigJob[i] < 0 {
			v.sigJob[i] = len(v.jobs)
			v.jobs = append(v.jobs, keyJob{name: s.keyName})
		}
	}
	// The keys are fetched by one goroutine while the body streams in.
	if len(v.jobs) > 0 {
		vctx, cancel := context.WithCancel(ctx)
		v.mu.Lock()
		v.cancel = cancel
		select {
		case <-v.aborted: // Abort ran since the check above: it saw no cancel
			cancel()
		default:
		}
		v.mu.Unlock()
		go fetchKeys(vctx, v.res, v.jobs, v.keys.Start())
	}
	return nil
}

// Write passes one body chunk to the verifier. The chunk is not kept.
func (v *DKIMVerifier) Write(p []byte) (int, error) {
	switch {
	case (v.state == stateBody || v.state == stateDone) && closed(v.aborted):
		return 0, ErrDKIMAborted
	case v.state != stateBody:
		return 0, ErrDKIMOrder
	}
	if v.panicked == nil {
		v.hashBody(p)
	}
	return len(p), nil
}

func (v *DKIMVerifier) hashBody(p []byte) {
	defer v.recoverPanic()
	v.bodies.write(p)
}

// Finish ends the body and returns one result per DKIM-Signature field, in
// header order, for at most MaxSignatures fields. A message without a
// signature gives an empty list (the caller reports dkim=none). If ctx ends
// before the key lookups do, the signatures still waiting for a key are
// temperror. The error is ErrInternal (wrapped) after a recovered panic,
// ErrDKIMOrder after Abort or a second Finish; it is never about the
// message.
func (v *DKIMVerifier) Finish(ctx context.Context) (res []DKIMResult, err error) {
	if v.state == stateHeaders {
		if err := v.EndOfHeaders(ctx); err != nil {
			return nil, err
		}
	}
	if v.state != stateBody {
		return nil, ErrDKIMOrder
	}
	v.state = stateDone
	select {
	case <-v.aborted:
		return nil, ErrDKIMOrder
	default:
	}
	defer func() {
		if p := recover(); p != nil {
			v.Abort()
			res, err = nil, fmt.Errorf("%w: DKIM verification panicked: %v", ErrInternal, p)
		}
	}()
	if v.panicked != nil {
		v.Abort()
		return nil, fmt.Errorf("%w: DKIM verification panicked: %v", ErrInternal, v.panicked)
	}
	if len(v.sigs) == 0 {
		return nil, nil
	}
	if v.overflow {
		return v.allResults(ResultNeutral, "header block over the size limit; not verified"), nil
	}
	var sums [numCanons][32]byte
	for c, b := range v.bodies {
		if b != nil {
			sums[c] = b.sum()
			b.release()
			v.bodies[c] = nil
		}
	}
	keysOK := true
	if v.keys.Started() {
		p, ok := v.keys.Wait(ctx.Done, v.abortedChan)
		if !ok {
			select {
			case <-v.aborted:
				return nil, ErrDKIMOrder
			default:
			}
			v.Abort() // the deadline passed: stop the lookups
			keysOK = false
		}
		v.cancel()
		if p != nil {
			return nil, fmt.Errorf("%w: DKIM key lookup panicked: %v", ErrInternal, p)
		}
	}
	var late string
	if !keysOK {
		late = "verification did not finish: " + ctx.Err().Error()
	}
	return v.results(&sums, late), nil
}

func (v *DKIMVerifier) abortedChan() <-chan struct{} { return v.aborted }

// Abort stops the verification and frees its goroutine; the results are
// dropped. It may be called at any time, from any goroutine, more than once.
func (v *DKIMVerifier) Abort() {
	v.abortOnce.Do(func() {
		v.mu.Lock()
		close(v.aborted)
		if v.cancel != nil {
			v.cancel()
		}
		v.mu.Unlock()
	})
}
