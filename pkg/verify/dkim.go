package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-msgauth/dkim"
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
	// DefaultDKIMMaxLineBreakRun bounds a run of CR and LF octets (blank
	// lines) inside the body that the verifier lets through; see
	// DKIMConfig.MaxLineBreakRun.
	DefaultDKIMMaxLineBreakRun = 256 << 10
	// BPrefixLen is the length of DKIMResult.BPrefix when that is enough to
	// tell the message's signatures apart (RFC 6008 §4: header.b holds at
	// least the first eight characters of b=).
	// https://datatracker.ietf.org/doc/html/rfc6008#section-4
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
	// MaxLineBreakRun bounds a run of blank lines inside the body, counted
	// in CR and LF octets. go-msgauth holds such a run in memory until the
	// next visible character (its canonicalizers must know whether the run
	// ends the body), so the run is the one thing a body can make it
	// buffer. A run at the very end of the body is not limited: the
	// verifier counts it instead of passing it on. A longer run inside the
	// body that spans body chunks stops verification and gives neutral; a
	// run inside one chunk is at most 64 KiB (longer chunks are cut).
	// Default (0): DefaultDKIMMaxLineBreakRun.
	MaxLineBreakRun int
}

// Errors of the DKIMVerifier.
var (
	// ErrDKIMOrder is returned when the methods are called out of order
	// (a header after EndOfHeaders, a body chunk before it, anything after
	// Finish or Abort).
	ErrDKIMOrder = errors.New("verify: DKIM verifier used out of order")
	// ErrDKIMAborted is the error of Write after Abort.
	ErrDKIMAborted = errors.New("verify: DKIM verification aborted")
	// ErrInternal is returned by Finish when the verification goroutine
	// panicked: a bug of ours or of a library, not a property of the
	// message.
	ErrInternal = errors.New("verify: internal error")
)

var (
	errBodyLimit = errors.New("body has a run of blank lines over the limit")
	errStopped   = errors.New("verification stopped")
)

// The stream goes through an io.Pipe; see Finish for why it is always closed
// without an error.

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
// or Abort at any point. The body is never buffered: it flows through an
// io.Pipe into go-msgauth, so Write blocks until the verifier has consumed
// the chunk (and, at the first chunk, until the key lookups are answered or
// msgCtx ends). Memory per message is the header block plus a few buffers of
// 4 KiB per signature; see DKIMConfig for the limits.
//
// A DKIMVerifier is for one message and one goroutine, except Abort, which
// may be called from any goroutine.
type DKIMVerifier struct {
	res TXTResolver
	cfg DKIMConfig

	state     dkimState
	header    bytes.Buffer
	sigs      []sigInfo
	extraSigs int  // signatures beyond MaxSignatures, not verified
	dropped   int  // malformed fields left out of the header block
	overflow  bool // header block over MaxHeaderBytes

	// Set by EndOfHeaders when there is something to verify.
	pw     *io.PipeWriter
	body   *bodyFilter
	keys   *keyRecorder
	done   chan dkimOutcome
	cancel context.CancelFunc

	abortOnce sync.Once
	aborted   chan struct{}
	writeErr  error
}

type dkimOutcome struct {
	verifs []*dkim.Verification
	err    error
	panic  any
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
	if cfg.MaxLineBreakRun <= 0 {
		cfg.MaxLineBreakRun = DefaultDKIMMaxLineBreakRun
	}
	return &DKIMVerifier{res: r, cfg: cfg, aborted: make(chan struct{})}
}

// Header adds one header field, in the order of the message. name is the
// field name; value is every octet after the colon, as received: with its
// leading space if there was one (Postfix sends it when the milter
// negotiates SMFIP_HDR_LEADSPC) and with folds as "\n" or "\r\n". The field
// is rebuilt as name ":" value with CRLF line ends, so it is byte for byte
// the field the signer saw, which c=simple header canonicalization needs.
//
// A field that could not have been in a valid message (a name with a colon
// or whitespace, a line break not followed by a space or tab) is left out.
func (v *DKIMVerifier) Header(name, value string) error {
	if v.state != stateHeaders {
		return ErrDKIMOrder
	}
	field, ok := rebuildField(name, value)
	if !ok {
		v.dropped++
		return nil
	}
	if v.overflow || v.header.Len()+len(field) > v.cfg.MaxHeaderBytes {
		v.overflow = true
		return nil
	}
	v.header.WriteString(field)
	if strings.EqualFold(name, "DKIM-Signature") {
		if len(v.sigs) < v.cfg.MaxSignatures {
			v.sigs = append(v.sigs, parseSignature(value))
		} else {
			v.extraSigs++
		}
	}
	return nil
}

// rebuildField returns name ":" value with every line break as CRLF and a
// final CRLF, or false when the field is malformed.
func rebuildField(name, value string) (string, bool) {
	if !validFieldName(name) {
		return "", false
	}
	value = strings.ReplaceAll(value, "\r\n", "\n")
	for i := strings.IndexByte(value, '\n'); i >= 0; {
		// RFC 5322 §2.2.3: a fold is CRLF followed by WSP.
		// https://datatracker.ietf.org/doc/html/rfc5322#section-2.2.3
		if i+1 >= len(value) || (value[i+1] != ' ' && value[i+1] != '\t') {
			return "", false
		}
		j := strings.IndexByte(value[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if strings.ContainsRune(value, '\r') {
		return "", false // a bare CR in a header field
	}
	return name + ":" + strings.ReplaceAll(value, "\n", "\r\n") + "\r\n", true
}

// validFieldName reports whether name is an RFC 5322 §3.6.8 field name:
// printable US-ASCII except ":". go-msgauth trims white space around names
// ("DKIM-Signature\v" becomes a signature to it), so a name that is not
// exactly a field name must never reach it, or its list of signatures and
// ours would no longer pair up.
func validFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
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
	vctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	v.cancel, v.pw = cancel, pw
	v.keys = &keyRecorder{ctx: vctx, r: v.res}
	v.body = &bodyFilter{w: pw, max: int64(v.cfg.MaxLineBreakRun)}
	v.done = make(chan dkimOutcome, 1)
	opts := &dkim.VerifyOptions{LookupTXT: v.keys.lookup, MaxVerifications: v.cfg.MaxSignatures}
	go runVerification(pr, opts, v.done)
	v.header.WriteString("\r\n") // the empty line that ends the header block
	_, err := pw.Write(v.header.Bytes())
	v.header = bytes.Buffer{}
	if err != nil {
		v.writeErr = err
	}
	return nil
}

// runVerification runs go-msgauth on the pipe. It always drains the pipe
// (go-msgauth does not promise to read to the end, libraries.md §2.1) so that
// the writer never blocks, and it turns a panic into an outcome and a closed
// pipe.
func runVerification(pr *io.PipeReader, opts *dkim.VerifyOptions, done chan<- dkimOutcome) {
	defer func() {
		if p := recover(); p != nil {
			pr.CloseWithError(errStopped)
			done <- dkimOutcome{panic: p}
		}
	}()
	verifs, err := dkim.VerifyWithOptions(pr, opts)
	io.Copy(io.Discard, pr)
	done <- dkimOutcome{verifs: verifs, err: err}
}

// Write passes one body chunk to the verifier. The chunk is not kept.
func (v *DKIMVerifier) Write(p []byte) (int, error) {
	switch v.state {
	case stateBody:
	case stateDone:
		select {
		case <-v.aborted:
			return 0, ErrDKIMAborted
		default:
		}
		return 0, ErrDKIMOrder
	default:
		return 0, ErrDKIMOrder
	}
	if v.pw == nil || v.writeErr != nil {
		return len(p), nil // nothing to verify, or verification already ended
	}
	if err := v.body.write(p); err != nil {
		select {
		case <-v.aborted:
			return 0, ErrDKIMAborted
		default:
		}
		v.writeErr = err // reported through the outcome at Finish
	}
	return len(p), nil
}

// Finish ends the body and returns one result per DKIM-Signature field, in
// header order, for at most MaxSignatures fields. A message without a
// signature gives an empty list (the caller reports dkim=none). If ctx ends
// before the verification does, the unfinished signatures are temperror.
// The error is ErrInternal (wrapped) after a recovered panic, ErrDKIMOrder
// after Abort or a second Finish; it is never about the message.
func (v *DKIMVerifier) Finish(ctx context.Context) ([]DKIMResult, error) {
	if v.state == stateHeaders {
		if err := v.EndOfHeaders(ctx); err != nil {
			return nil, err
		}
	}
	if v.state != stateBody {
		return nil, ErrDKIMOrder
	}
	v.state = stateDone
	if len(v.sigs) == 0 {
		return nil, nil
	}
	if v.overflow {
		return v.allResults(ResultNeutral, "header block over the size limit; not verified"), nil
	}
	if !v.body.over && v.writeErr == nil {
		v.writeErr = v.body.close()
	}
	// Always a clean EOF, never CloseWithError: go-msgauth v0.7.0 leaks its
	// per-signature goroutines when the stream of a message with two or more
	// signatures ends in an error (parallelVerify returns without closing
	// its pipes).
	v.pw.Close()
	select {
	case out := <-v.done:
		v.cancel()
		if out.panic != nil {
			return nil, fmt.Errorf("%w: DKIM verification panicked: %v", ErrInternal, out.panic)
		}
		if v.body.over {
			return v.allResults(ResultNeutral, errBodyLimit.Error()+"; not verified"), nil
		}
		return v.results(out), nil
	case <-ctx.Done():
		v.Abort()
		return v.allResults(ResultTempError, "verification did not finish: "+ctx.Err().Error()), nil
	case <-v.aborted:
		return nil, ErrDKIMOrder
	}
}

// Abort stops the verification and frees its goroutine; the results are
// dropped. It may be called at any time, from any goroutine, more than once.
func (v *DKIMVerifier) Abort() {
	v.abortOnce.Do(func() {
		close(v.aborted)
		if v.cancel != nil {
			v.cancel()
		}
		if v.pw != nil {
			v.pw.Close() // EOF, not an error: see Finish
		}
	})
}

// allResults gives every signature the same result.
func (v *DKIMVerifier) allResults(res Result, reason string) []DKIMResult {
	out := make([]DKIMResult, len(v.sigs))
	for i, s := range v.sigs {
		out[i] = v.baseResult(i, s)
		out[i].Result, out[i].Reason = res, reason
	}
	return out
}

// baseResult fills the fields that come from the signature itself.
func (v *DKIMVerifier) baseResult(i int, s sigInfo) DKIMResult {
	return DKIMResult{
		Domain:     strings.ToLower(strings.TrimSuffix(s.domain, ".")),
		Selector:   s.selector,
		Algorithm:  s.algorithm,
		Identifier: s.auid,
		BPrefix:    bPrefix(v.sigs, i),
	}
}

// bPrefix is the shortest prefix of b=, at least BPrefixLen characters, that
// no other signature of the message shares (RFC 6008 §4).
func bPrefix(sigs []sigInfo, i int) string {
	b := sigs[i].b
	n := min(BPrefixLen, len(b))
	for ; n < len(b); n++ {
		unique := true
		for j, o := range sigs {
			if j != i && strings.HasPrefix(o.b, b[:n]) {
				unique = false
				break
			}
		}
		if unique {
			break
		}
	}
	return b[:n]
}
