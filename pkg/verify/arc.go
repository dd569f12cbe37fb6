package verify

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/authres"
)

// ARC defaults and limits.
const (
	// DefaultARCOldestPassDepth is the number of ARC-Message-Signatures
	// below the newest one verified to find ARCResult.OldestPass.
	DefaultARCOldestPassDepth = 8
	// maxARCFields bounds the ARC header fields kept: three per set, 50
	// sets. A message with more has more than 50 sets (or duplicates) and
	// fails whatever the rest says.
	maxARCFields = 3 * MaxARCInstance
	// arcKeyWorkers is the number of key lookups of one message run at
	// once: a chain of 50 sets by 50 sealers needs up to 100 keys.
	arcKeyWorkers = 4
)

// ARCConfig holds the ARC limits. The zero value gives the defaults.
type ARCConfig struct {
	// MaxHeaderBytes bounds the size of the header block. A message with
	// ARC fields whose header is larger fails (cv=fail: RFC 8617 §5.2.1
	// makes every error a failure). Default (0): DefaultDKIMMaxHeaderBytes.
	MaxHeaderBytes int
	// OldestPassDepth is how many ARC-Message-Signatures below the newest
	// are verified to find OldestPass (RFC 8617 §5.2 step 5, optional):
	// each costs a key lookup and a signature check. Default (0):
	// DefaultARCOldestPassDepth; negative: none (OldestPass is then the
	// newest instance).
	OldestPassDepth int
}

// ARCFailure says why a chain failed, or that it did not.
type ARCFailure uint8

// The reasons of a cv=fail, in the order of the steps of RFC 8617 §5.2.
const (
	// ARCFailNone: the chain passed, or there is none.
	ARCFailNone ARCFailure = iota
	// ARCFailHeaderLimit: the header block is over MaxHeaderBytes.
	ARCFailHeaderLimit
	// ARCFailInstance: an ARC field whose instance cannot be read (a
	// missing or malformed i=, or a tag list that does not parse).
	ARCFailInstance
	// ARCFailTooManySets: an instance above 50, or more than 150 ARC
	// fields (step 1).
	ARCFailTooManySets
	// ARCFailNewestCV: the newest ARC-Seal says cv=fail (step 2).
	ARCFailNewestCV
	// ARCFailStructure: an instance without exactly one of each ARC field,
	// or a gap in the instances (step 3).
	ARCFailStructure
	// ARCFailCV: a cv= other than none at instance 1 or other than pass
	// above it, or a seal whose cv= cannot be read (step 3).
	ARCFailCV
	// ARCFailAMS: the newest ARC-Message-Signature does not verify
	// (step 4).
	ARCFailAMS
	// ARCFailSeal: an ARC-Seal does not verify (step 6).
	ARCFailSeal
	// ARCFailKeyTemporary: a key could not be fetched for a temporary
	// reason (timeout, SERVFAIL, the message's deadline). RFC 8617 §5.2.1
	// makes it a failure like any other; the distinct reason lets a
	// policy tell it apart.
	ARCFailKeyTemporary
)

var arcFailureNames = [...]string{
	ARCFailNone:         "none",
	ARCFailHeaderLimit:  "header-limit",
	ARCFailInstance:     "instance",
	ARCFailTooManySets:  "too-many-sets",
	ARCFailNewestCV:     "newest-cv-fail",
	ARCFailStructure:    "structure",
	ARCFailCV:           "cv",
	ARCFailAMS:          "ams",
	ARCFailSeal:         "seal",
	ARCFailKeyTemporary: "key-temporary",
}

// String returns a short stable name ("structure", "seal", ...) for logs.
func (f ARCFailure) String() string {
	if int(f) < len(arcFailureNames) {
		return arcFailureNames[f]
	}
	return "ARCFailure(" + strconv.Itoa(int(f)) + ")"
}

// ARCSet is one ARC set (RFC 8617 §4.2): what its three fields say.
// https://datatracker.ietf.org/doc/html/rfc8617#section-4.2
type ARCSet struct {
	Instance int
	// CV is the cv= of the set's ARC-Seal: the chain status the sealer
	// found when the message reached it.
	CV ChainValidation
	// SealDomain is the d= of the ARC-Seal, lowercased, without a trailing
	// dot: the sealer.
	SealDomain    string
	SealSelector  string
	SealAlgorithm string
	// AMSDomain and AMSSelector are d= and s= of the
	// ARC-Message-Signature (usually the sealer's own).
	AMSDomain   string
	AMSSelector string
	// AuthservID and Results are the ARC-Authentication-Results: the
	// sealer's assessment of the message as it arrived there (RFC 8617
	// §4.1.1). A payload that does not parse leaves them empty and sets
	// AARErr; the chain result does not depend on it.
	AuthservID string
	Results    []authres.Result
	AARErr     error
}

// ARCResult is the outcome of validating the Authenticated Received Chain
// of a message (RFC 8617 §5.2).
// https://datatracker.ietf.org/doc/html/rfc8617#section-5.2
type ARCResult struct {
	// CV is the chain validation status: none (no ARC field at all), pass,
	// or fail. RFC 8617 §5.2: a failed chain "MUST be treated the same as
	// a message with no Authenticated Received Chain".
	CV ChainValidation
	// Sets are the ARC sets in instance order (Sets[0] is instance 1),
	// filled when the chain's structure is valid, whatever CV is: only a
	// pass makes what they say trustworthy.
	Sets []ARCSet
	// Sealers are the sealers' domains (Sets[k].SealDomain) in instance
	// order, the newest last.
	Sealers []string
	// OldestPass is the instance of the oldest ARC-Message-Signature that
	// still verifies, or 0 when all of them do (RFC 8617 §5.2 step 5, the
	// header.oldest-pass of §6). Only older signatures within
	// ARCConfig.OldestPassDepth are verified: when that bound stops the
	// walk, OldestPass is the oldest instance verified, not 0. Set only
	// when CV is pass.
	OldestPass int
	// Failure says why CV is fail; FailedInstance is the instance of the
	// field at fault, when there is one.
	Failure        ARCFailure
	FailedInstance int
	// Reason is a short human-readable explanation for logs.
	Reason string
}

// arcField is one ARC header field, parsed as far as collecting needs.
type arcField struct {
	kind     arcKind
	instance int
	field    int     // index in ARCVerifier.fields
	tags     arcTags // ARC-Seal and ARC-Message-Signature
	payload  string  // ARC-Authentication-Results: after "i=N;"
	err      error   // the instance could not be read
}

// arcSetIdx holds the index in ARCVerifier.arc of each field of one set,
// -1 when absent; dup counts fields found twice.
type arcSetIdx struct {
	aar, ams, as int
	dup          int
}

// ARCVerifier validates the Authenticated Received Chain (RFC 8617) of one
// message while it streams through, in the order of the milter events, like
// DKIMVerifier:
// https://datatracker.ietf.org/doc/html/rfc8617
//
//	v := verify.NewARCVerifier(resolver, cfg)
//	v.Header(name, value)       // each header field, in message order
//	v.EndOfHeaders(msgCtx)      // structure checked, key lookups start
//	v.Write(chunk)              // each body chunk
//	res, err := v.Finish(msgCtx)
//
// or Abort at any point. The body is canonicalized and hashed as it
// arrives, by the DKIM body hashers (at most two, whatever the number of
// sets); the header hashes and the signature checks reuse the DKIM code,
// and the keys go through the same resolver and parsed-key memo as DKIM
// keys, with the same rules (RSA of at least 1024 bits, rsa-sha256 or
// ed25519-sha256). Memory per message is the header fields and a few
// hundred octets per ARC field, at most 150 of them.
//
// We verify; we do not seal. Sealing is for intermediaries that forward
// mail, which a receiving milter is not.
//
// An ARCVerifier is for one message and one goroutine, except Abort, which
// may be called from any goroutine.
type ARCVerifier struct {
	res TXTResolver
	cfg ARCConfig

	state    dkimState
	fields   []hfield
	size     int
	overflow bool
	arc      []arcField
	tooMany  bool // more than maxARCFields ARC fields
	now      time.Time

	// Set by EndOfHeaders.
	final      *ARCResult // decided without the body or keys (none, or a fail)
	n          int        // the newest instance
	sets       []arcSetIdx
	seals      []sealInfo // by instance - 1
	ams        []sigInfo  // by instance - 1; parsed for the newest and those within depth
	lowest     int        // the lowest instance whose AMS is verified for OldestPass
	amsJob     []int      // by instance - 1: index in jobs, or -1
	sealJob    []int
	bodies     bodyFanout
	jobs       []keyJob
	sealStates [][]byte   // by instance - 1: the hash state before its seal
	lk         arcLookups // shared with the lookup workers until keysDone
	keysDone   chan any
	panicked   any

	mu        sync.Mutex
	cancel    context.CancelFunc
	abortOnce sync.Once
	aborted   chan struct{}

	fieldArr [16]hfield
}

// NewARCVerifier returns a verifier for one message that fetches keys
// through r.
func NewARCVerifier(r TXTResolver, cfg ARCConfig) *ARCVerifier {
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultDKIMMaxHeaderBytes
	}
	if cfg.OldestPassDepth == 0 {
		cfg.OldestPassDepth = DefaultARCOldestPassDepth
	}
	v := &ARCVerifier{res: r, cfg: cfg, aborted: make(chan struct{})}
	v.fields = v.fieldArr[:0]
	return v
}

// Header adds one header field, in the order of the message, as for
// DKIMVerifier.Header: name, and every octet after the colon as received
// (folds as "\n" or "\r\n"). The strings are kept until Finish. A field
// that could not have been in a valid message is left out.
func (v *ARCVerifier) Header(name, value string) (err error) {
	if v.state != stateHeaders {
		return ErrDKIMOrder
	}
	defer v.recoverPanic()
	size, ok := checkField(name, value)
	if !ok {
		return nil
	}
	if v.overflow || v.size+size > v.cfg.MaxHeaderBytes {
		v.overflow = true
		return nil
	}
	v.size += size
	v.fields = append(v.fields, hfield{name, value})
	kind := arcFieldKind(name)
	if kind == arcNone {
		return nil
	}
	if len(v.arc) >= maxARCFields {
		v.tooMany = true
		return nil
	}
	f := arcField{kind: kind, field: len(v.fields) - 1}
	if kind == arcAAR {
		f.instance, f.payload, f.err = parseAARInstance(value)
	} else {
		f.tags, f.err = parseARCTags(value)
		if f.err == nil {
			f.instance, f.err = f.tags.instance()
		}
	}
	v.arc = append(v.arc, f)
	return nil
}

func (v *ARCVerifier) recoverPanic() {
	if p := recover(); p != nil && v.panicked == nil {
		v.panicked = p
	}
}

// fail records a chain failure decided at EndOfHeaders.
func (v *ARCVerifier) fail(f ARCFailure, instance int, reason string) {
	v.final = &ARCResult{CV: ChainFail, Failure: f, FailedInstance: instance, Reason: reason}
}

// EndOfHeaders ends the header block, checks the structure of the chain
// (RFC 8617 §5.2 steps 1 to 3) and, when it holds, starts the key lookups
// under ctx. Without ARC fields nothing is started.
func (v *ARCVerifier) EndOfHeaders(ctx context.Context) error {
	if v.state != stateHeaders {
		return ErrDKIMOrder
	}
	v.state = stateBody
	select {
	case <-v.aborted:
		v.state = stateDone
		return ErrDKIMAborted
	default:
	}
	defer v.recoverPanic()
	if v.now.IsZero() {
		v.now = time.Now()
	}
	if !v.collect() {
		return nil
	}
	v.start(ctx)
	return nil
}

// collect applies steps 1 to 3 of RFC 8617 §5.2 and parses the seals and
// the signatures that will be verified. It returns false when the result is
// decided (v.final).
func (v *ARCVerifier) collect() bool {
	if len(v.arc) == 0 && !v.tooMany {
		if v.overflow {
			// The ARC fields may be past the limit: a chain that cannot be
			// read fails (RFC 8617 §5.2.1), and so does one we did not see.
			v.fail(ARCFailHeaderLimit, 0, "header block over the size limit; ARC not verified")
			return false
		}
		// RFC 8617 §5.2 step 1: no ARC set: the status is "none".
		v.final = &ARCResult{CV: ChainNone, Reason: "no ARC sets"}
		return false
	}
	if v.overflow {
		v.fail(ARCFailHeaderLimit, 0, "header block over the size limit; ARC not verified")
		return false
	}
	if v.tooMany {
		// RFC 8617 §5.2 step 1: more than 50 sets: "fail".
		v.fail(ARCFailTooManySets, 0, fmt.Sprintf("more than %d ARC header fields", maxARCFields))
		return false
	}
	n := 0
	for i := range v.arc {
		f := &v.arc[i]
		if errors.Is(f.err, errARCRange) && f.instance > MaxARCInstance {
			// RFC 8617 §5.2 step 1: an instance above 50 means more than
			// 50 sets: "fail".
			v.fail(ARCFailTooManySets, f.instance, fmt.Sprintf("%s instance %d is above %d", arcKindName(f.kind), f.instance, MaxARCInstance))
			return false
		}
		if f.err != nil {
			// RFC 8617 §4.2.1: a field without a valid instance belongs to
			// no set; the chain cannot be collected.
			v.fail(ARCFailInstance, 0, arcKindName(f.kind)+": "+f.err.Error())
			return false
		}
		n = max(n, f.instance)
	}
	v.n = n
	v.sets = make([]arcSetIdx, n)
	for i := range v.sets {
		v.sets[i] = arcSetIdx{aar: -1, ams: -1, as: -1}
	}
	for i := range v.arc {
		f := &v.arc[i]
		s := &v.sets[f.instance-1]
		var slot *int
		switch f.kind {
		case arcAAR:
			slot = &s.aar
		case arcAMS:
			slot = &s.ams
		default:
			slot = &s.as
		}
		if *slot >= 0 {
			s.dup++
		}
		*slot = i
	}
	// RFC 8617 §5.2 step 2: if the newest set's seal says cv=fail, the
	// chain fails. Read before the structure, as the steps are ordered.
	if top := &v.sets[n-1]; top.as >= 0 && top.dup == 0 {
		if cv, err := parseCV(v.arc[top.as].tags.cv); err == nil && cv == ChainFail {
			v.fail(ARCFailNewestCV, n, fmt.Sprintf("ARC-Seal i=%d says cv=fail", n))
			return false
		}
	}
	for i := range v.sets {
		s := &v.sets[i]
		// RFC 8617 §5.2 step 3.1: each set has exactly one of each of the
		// three fields; step 3.2: the instances run from 1 to N without
		// gaps or repetition.
		switch {
		case s.dup > 0:
			v.fail(ARCFailStructure, i+1, fmt.Sprintf("instance %d has a field twice", i+1))
			return false
		case s.aar < 0 && s.ams < 0 && s.as < 0:
			v.fail(ARCFailStructure, i+1, fmt.Sprintf("instance %d is missing (the instances have a gap)", i+1))
			return false
		case s.aar < 0:
			v.fail(ARCFailStructure, i+1, fmt.Sprintf("instance %d has no %s", i+1, FieldARCAuthenticationResults))
			return false
		case s.ams < 0:
			v.fail(ARCFailStructure, i+1, fmt.Sprintf("instance %d has no %s", i+1, FieldARCMessageSignature))
			return false
		case s.as < 0:
			v.fail(ARCFailStructure, i+1, fmt.Sprintf("instance %d has no %s", i+1, FieldARCSeal))
			return false
		}
	}
	v.seals = make([]sealInfo, n)
	for i := n; i >= 1; i-- {
		t := &v.arc[v.sets[i-1].as].tags
		cv, err := parseCV(t.cv)
		switch {
		case t.present&atCV == 0 || err != nil:
			v.fail(ARCFailCV, i, fmt.Sprintf("ARC-Seal i=%d has no valid cv=", i))
			return false
		case cv == ChainFail:
			// RFC 8617 §5.2 step 3.3: no seal may say cv=fail.
			v.fail(ARCFailCV, i, fmt.Sprintf("ARC-Seal i=%d says cv=fail", i))
			return false
		case i == 1 && cv != ChainNone:
			// RFC 8617 §5.2 step 3.3: "For the ARC Set with instance value
			// = 1, the value MUST be "none"."
			v.fail(ARCFailCV, i, fmt.Sprintf("ARC-Seal i=1 says cv=%s, not none", cv))
			return false
		case i > 1 && cv != ChainPass:
			// RFC 8617 §5.2 step 3.3: "For ARC Sets with instance values >
			// 1, the values MUST be "pass"."
			v.fail(ARCFailCV, i, fmt.Sprintf("ARC-Seal i=%d says cv=%s, not pass", i, cv))
			return false
		}
		v.seals[i-1] = parseSeal(t)
		v.seals[i-1].cv = cv
	}
	v.ams = make([]sigInfo, n)
	top := &v.arc[v.sets[n-1].ams]
	v.ams[n-1] = parseAMS(&top.tags, top.field, v.now)
	if err := v.ams[n-1].err; err != nil {
		// RFC 8617 §5.2 step 4: the newest AMS must verify.
		v.fail(ARCFailAMS, n, fmt.Sprintf("ARC-Message-Signature i=%d: %v", n, err))
		return false
	}
	for i := n; i >= 1; i-- {
		if err := v.seals[i-1].err; err != nil {
			// RFC 8617 §5.2 step 6: every seal must verify.
			v.fail(ARCFailSeal, i, fmt.Sprintf("ARC-Seal i=%d: %v", i, err))
			return false
		}
	}
	// RFC 8617 §5.2 step 5 (optional): the older AMSes, within the depth.
	v.lowest = n
	if v.cfg.OldestPassDepth > 0 {
		v.lowest = max(1, n-v.cfg.OldestPassDepth)
	}
	for i := n - 1; i >= v.lowest; i-- {
		f := &v.arc[v.sets[i-1].ams]
		v.ams[i-1] = parseAMS(&f.tags, f.field, v.now)
	}
	return true
}

func arcKindName(k arcKind) string {
	switch k {
	case arcAAR:
		return FieldARCAuthenticationResults
	case arcAMS:
		return FieldARCMessageSignature
	}
	return FieldARCSeal
}

// start sets up the body hashers and starts the key lookups.
//
// The keys are fetched newest first: the newest AMS's, then the seals' from
// instance N down to 1, then the older AMSes'. Each seal is verified as soon
// as its key and those of the newer seals are in (a seal covers only header
// fields, all known by now), and at the first seal that does not verify no
// more lookups are started: RFC 8617 §9.2 warns that a concocted chain of
// sets bearing victims' domains makes a validator query "all of them ...
// until a failure is discovered"; this way at most arcKeyWorkers lookups
// follow the failure. The lookups in flight then finish normally.
// https://datatracker.ietf.org/doc/html/rfc8617#section-9.2
func (v *ARCVerifier) start(ctx context.Context) {
	job := func(name string) int {
		for j := range v.jobs {
			if strings.EqualFold(v.jobs[j].name, name) {
				return j
			}
		}
		v.jobs = append(v.jobs, keyJob{name: name})
		return len(v.jobs) - 1
	}
	v.amsJob = make([]int, v.n)
	v.sealJob = make([]int, v.n)
	for i := range v.amsJob {
		v.amsJob[i] = -1
	}
	add := func(i int) {
		s := &v.ams[i-1]
		if v.bodies[s.bodyCan] == nil {
			v.bodies[s.bodyCan] = newBodyHasher(s.bodyCan == canonRelaxed)
		}
		v.amsJob[i-1] = job(s.keyName)
	}
	add(v.n) // parsed without error, or collect would have failed
	for i := v.n; i >= 1; i-- {
		v.sealJob[i-1] = job(v.seals[i-1].keyName)
	}
	for i := v.n - 1; i >= v.lowest; i-- {
		if v.ams[i-1].needsKey {
			add(i)
		}
	}
	v.lk = arcLookups{done: make([]bool, len(v.jobs)), sealNext: v.n}
	v.hashSealPrefixes()
	v.lk.more.L = &v.lk.mu
	vctx, cancel := context.WithCancel(ctx)
	v.mu.Lock()
	v.cancel = cancel
	select {
	case <-v.aborted:
		cancel()
	default:
	}
	v.mu.Unlock()
	v.keysDone = make(chan any, 1)
	workers := min(arcKeyWorkers, len(v.jobs))
	var wg sync.WaitGroup
	wg.Add(workers)
	for range workers {
		go v.lookupWorker(vctx, &wg)
	}
	go func() {
		wg.Wait()
		v.lk.mu.Lock()
		p := v.lk.caught
		v.lk.mu.Unlock()
		v.keysDone <- p
	}()
}

// hashSealPrefixes hashes the sets once, in instance order, and keeps the
// SHA-256 state reached before each seal (RFC 8617 §5.1.1: seal i covers
// the sets 1 to i, its own seal last): each seal's hash then costs its own
// field, and a chain of N sets is hashed in time linear in N, not
// quadratic.
func (v *ARCVerifier) hashSealPrefixes() {
	h := sha256.New()
	v.sealStates = make([][]byte, v.n)
	var buf, slab []byte
	for k := 1; k <= v.n; k++ {
		s := &v.sets[k-1]
		buf = appendField(buf[:0], v.fields[v.arc[s.aar].field], canonRelaxed)
		buf = appendField(buf, v.fields[v.arc[s.ams].field], canonRelaxed)
		h.Write(buf)
		start := len(slab)
		var err error
		if slab, err = h.(encoding.BinaryAppender).AppendBinary(slab); err != nil {
			panic("verify: SHA-256 state does not save: " + err.Error())
		}
		v.sealStates[k-1] = slab[start:len(slab):len(slab)]
		h.Write(appendField(buf[:0], v.fields[v.arc[s.as].field], canonRelaxed))
	}
	h.Reset()
	v.lk.sealHash = h
}

// arcLookups is what the lookup workers of one message share.
type arcLookups struct {
	mu       sync.Mutex
	more     sync.Cond // on mu: a job finished, or stop
	next     int       // the next job to start
	undone   int       // the first job not finished
	done     []bool    // by job: the lookup has finished
	stop     bool      // start no more lookups
	sealNext int       // the next seal to verify, from N down; 0: all verified
	sealRes  Result    // "" while no seal failed; else the failing seal's result
	sealWhy  string
	sealAt   int
	buf      []byte    // scratch space for the seals' hash input
	sealHash hash.Hash // the seals' SHA-256
	caught   any       // the first panic of a worker
}

// lookupWorker starts lookups in job order until there are none left or
// a seal failed, and verifies the seals whose keys are in.
func (v *ARCVerifier) lookupWorker(ctx context.Context, wg *sync.WaitGroup) {
	l := &v.lk
	defer wg.Done()
	defer func() {
		if p := recover(); p != nil {
			l.mu.Lock()
			if l.caught == nil {
				l.caught = p
			}
			l.stop = true
			l.more.Broadcast()
			l.mu.Unlock()
		}
	}()
	for {
		j, ok := l.take(len(v.jobs))
		if !ok {
			return
		}
		lookupKey(ctx, v.res, &v.jobs[j])
		v.finished(j)
	}
}

// take returns the next job to start. A job starts only within
// arcKeyWorkers of the first unfinished one, so that a slow early key (the
// newest AMS's and seal's) does not let the workers run through the whole
// chain before the newest seal is checked.
func (l *arcLookups) take(n int) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.stop && l.next < n && l.next >= l.undone+arcKeyWorkers {
		l.more.Wait()
	}
	if l.stop || l.next >= n {
		return 0, false
	}
	l.next++
	return l.next - 1, true
}

// finished records the end of job j and verifies the seals now ready,
// newest first (RFC 8617 §5.2 step 6), stopping at the first failure.
func (v *ARCVerifier) finished(j int) {
	l := &v.lk
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.more.Broadcast()
	l.done[j] = true
	for l.undone < len(l.done) && l.done[l.undone] {
		l.undone++
	}
	for l.sealNext >= 1 && l.sealRes == "" && l.done[v.sealJob[l.sealNext-1]] {
		i := l.sealNext
		var res Result
		var why string
		res, why, l.buf = v.checkSeal(i, l.buf)
		if res != ResultPass {
			l.sealRes, l.sealWhy, l.sealAt, l.stop = res, why, i, true
			return
		}
		l.sealNext--
	}
}

// Write passes one body chunk to the verifier. The chunk is not kept.
func (v *ARCVerifier) Write(p []byte) (int, error) {
	switch {
	case closed(v.aborted):
		return 0, ErrDKIMAborted
	case v.state != stateBody:
		return 0, ErrDKIMOrder
	}
	if v.panicked == nil {
		v.hashBody(p)
	}
	return len(p), nil
}

func (v *ARCVerifier) hashBody(p []byte) {
	defer v.recoverPanic()
	v.bodies.write(p)
}

// Finish ends the body and returns the chain's result. If ctx ends before
// the key lookups do, the chain fails (ARCFailKeyTemporary). The error is
// ErrInternal (wrapped) after a recovered panic, ErrDKIMOrder after Abort
// or a second Finish; it is never about the message.
func (v *ARCVerifier) Finish(ctx context.Context) (res ARCResult, err error) {
	if v.state == stateHeaders {
		if err := v.EndOfHeaders(ctx); err != nil {
			return ARCResult{}, err
		}
	}
	if v.state != stateBody {
		return ARCResult{}, ErrDKIMOrder
	}
	v.state = stateDone
	select {
	case <-v.aborted:
		return ARCResult{}, ErrDKIMOrder
	default:
	}
	defer func() {
		if p := recover(); p != nil {
			v.Abort()
			res, err = ARCResult{}, fmt.Errorf("%w: ARC verification panicked: %v", ErrInternal, p)
		}
	}()
	var sums [numCanons][32]byte
	for c, b := range v.bodies {
		if b != nil {
			sums[c] = b.sum()
			b.release()
			v.bodies[c] = nil
		}
	}
	if v.panicked != nil {
		v.Abort()
		return ARCResult{}, fmt.Errorf("%w: ARC verification panicked: %v", ErrInternal, v.panicked)
	}
	if v.final != nil {
		r := *v.final
		v.describe(&r)
		return r, nil
	}
	keysOK := true
	if v.keysDone != nil {
		var p any
		select {
		case p = <-v.keysDone:
		default:
			select {
			case p = <-v.keysDone:
			case <-ctx.Done():
				v.Abort()
				keysOK = false
			case <-v.aborted:
				return ARCResult{}, ErrDKIMOrder
			}
		}
		v.cancel()
		if p != nil {
			return ARCResult{}, fmt.Errorf("%w: ARC key lookup panicked: %v", ErrInternal, p)
		}
	}
	r := v.validate(ctx, &sums, keysOK)
	v.describe(&r)
	return r, nil
}

// validate runs steps 4 to 7 of RFC 8617 §5.2 with the body hashes and
// the keys.
func (v *ARCVerifier) validate(ctx context.Context, sums *[numCanons][32]byte, keysOK bool) ARCResult {
	if !keysOK {
		return ARCResult{CV: ChainFail, Failure: ARCFailKeyTemporary,
			Reason: "verification did not finish: " + ctx.Err().Error()}
	}
	buf := make([]byte, 0, v.size)
	n := v.n
	// RFC 8617 §5.2 step 4: "Validate the AMS with the greatest instance
	// value (most recent). If validation fails, then the Chain Validation
	// Status is "fail"".
	res, reason, buf := v.checkAMS(n, sums, buf)
	if res != ResultPass {
		return v.keyFail(res, ARCFailAMS, n, fmt.Sprintf("ARC-Message-Signature i=%d: %s", n, reason))
	}
	// RFC 8617 §5.2 step 6: "Validate each AS beginning with the greatest
	// instance value and proceeding in decreasing order to the AS with the
	// instance value of 1. If any AS fails to validate, the Chain
	// Validation Status is "fail"". The lookup workers verified them as
	// their keys came in (finished); all lookups have ended by now.
	if l := &v.lk; l.sealRes != "" {
		return v.keyFail(l.sealRes, ARCFailSeal, l.sealAt, fmt.Sprintf("ARC-Seal i=%d: %s", l.sealAt, l.sealWhy))
	} else if l.sealNext != 0 {
		return ARCResult{CV: ChainFail, Failure: ARCFailSeal, FailedInstance: l.sealNext,
			Reason: fmt.Sprintf("ARC-Seal i=%d: not verified", l.sealNext)}
	}
	// RFC 8617 §5.2 step 5: the oldest AMS that still verifies, walking
	// down from N-1; 0 when all of them do. The result does not depend
	// on it.
	oldest := 0
	for i := n - 1; i >= 1; i-- {
		if i < v.lowest {
			oldest = v.lowest // the bound stopped the walk
			break
		}
		var res Result
		res, _, buf = v.checkAMS(i, sums, buf)
		if res != ResultPass {
			oldest = i + 1
			break
		}
	}
	// RFC 8617 §5.2 step 7: every check passed.
	return ARCResult{CV: ChainPass, OldestPass: oldest, Reason: fmt.Sprintf("chain of %d sets verified", n)}
}

// keyFail is a failure of step 4 or 6; a key lookup that failed for a
// temporary reason is told apart (RFC 8617 §5.2.1: the chain fails all the
// same).
func (v *ARCVerifier) keyFail(res Result, f ARCFailure, instance int, reason string) ARCResult {
	if res == ResultTempError {
		f = ARCFailKeyTemporary
	}
	return ARCResult{CV: ChainFail, Failure: f, FailedInstance: instance, Reason: reason}
}

// checkAMS verifies the ARC-Message-Signature of instance i as a DKIM
// signature (RFC 8617 §4.1.2). The result is pass, fail, or the key's
// permerror or temperror.
func (v *ARCVerifier) checkAMS(i int, sums *[numCanons][32]byte, buf []byte) (Result, string, []byte) {
	s := &v.ams[i-1]
	if s.err != nil {
		return ResultPermError, s.err.Error(), buf
	}
	j := &v.jobs[v.amsJob[i-1]]
	if j.res != "" {
		return j.res, j.reason, buf
	}
	if err := j.key.fits(s); err != nil {
		return ResultPermError, err.Error(), buf
	}
	// RFC 6376 §6.1.3: the body hash must match bh=.
	if len(s.bodyHash) != len(sums[s.bodyCan]) || [32]byte(s.bodyHash) != sums[s.bodyCan] {
		return ResultFail, "body hash did not verify", buf
	}
	var digest [32]byte
	digest, buf = headerHash(v.fields, s, buf)
	if err := verifyDigest(j.key, digest[:], s.sig); err != nil {
		return ResultFail, err.Error(), buf
	}
	return ResultPass, "", buf
}

// checkSeal verifies the ARC-Seal of instance i (RFC 8617 §5.1.1): its
// signature covers, in increasing instance order from 1 to i, the
// ARC-Authentication-Results, the ARC-Message-Signature and the ARC-Seal of
// each set, the last one with an empty b= value and without its final
// CRLF, all with the "relaxed" header canonicalization (§4.1.3). The hash
// of the part before the seal itself is taken from sealStates.
// https://datatracker.ietf.org/doc/html/rfc8617#section-5.1.1
func (v *ARCVerifier) checkSeal(i int, buf []byte) (Result, string, []byte) {
	si := &v.seals[i-1]
	j := &v.jobs[v.sealJob[i-1]]
	if j.res != "" {
		return j.res, j.reason, buf
	}
	if err := j.key.fits(&sigInfo{keyAlgo: si.keyAlgo}); err != nil {
		return ResultPermError, err.Error(), buf
	}
	h := v.lk.sealHash // checkSeal runs under v.lk.mu
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(v.sealStates[i-1]); err != nil {
		panic("verify: SHA-256 state does not load: " + err.Error())
	}
	sf := v.fields[v.arc[v.sets[i-1].as].field]
	before, after := removeBValue(sf.value)
	buf = appendRelaxedName(buf[:0], sf.name)
	var rv relaxedValue
	buf = rv.append(buf, before)
	buf = rv.append(buf, after)
	h.Write(buf)
	var digest [32]byte
	h.Sum(digest[:0])
	if err := verifyDigest(j.key, digest[:], si.sig); err != nil {
		return ResultFail, err.Error(), buf
	}
	return ResultPass, "", buf
}

// verifyDigest checks sig over the SHA-256 digest of the header hash input
// with key, as for a DKIM signature (RFC 6376 §3.3.1, RFC 8463 §3).
func verifyDigest(key *dkimKey, digest, sig []byte) error {
	switch key.algo {
	case "rsa":
		if err := rsa.VerifyPKCS1v15(key.rsa, crypto.SHA256, digest, sig); err != nil {
			return fmt.Errorf("signature did not verify: %w", err)
		}
	case "ed25519":
		if !ed25519.Verify(key.ed, digest, sig) {
			return errors.New("signature did not verify: invalid Ed25519 signature")
		}
	default:
		return errors.New("unsupported key algorithm")
	}
	return nil
}

// describe fills Sets and Sealers from a chain whose structure is valid.
func (v *ARCVerifier) describe(r *ARCResult) {
	if v.seals == nil || len(v.ams) == 0 {
		return
	}
	r.Sets = make([]ARCSet, v.n)
	r.Sealers = make([]string, v.n)
	for i := range r.Sets {
		s := &v.sets[i]
		seal := &v.seals[i]
		amsTags := &v.arc[s.ams].tags
		set := ARCSet{
			Instance:      i + 1,
			CV:            seal.cv,
			SealDomain:    strings.ToLower(strings.TrimSuffix(seal.domain, ".")),
			SealSelector:  seal.selector,
			SealAlgorithm: seal.algorithm,
			AMSDomain:     strings.ToLower(strings.TrimSuffix(stripFWS(amsTags.d), ".")),
			AMSSelector:   stripFWS(amsTags.s),
		}
		set.AuthservID, set.Results, set.AARErr = authres.Parse(v.arc[s.aar].payload)
		r.Sets[i] = set
		r.Sealers[i] = set.SealDomain
	}
}

// Abort stops the verification and frees its goroutines; the result is
// dropped. It may be called at any time, from any goroutine, more than once.
func (v *ARCVerifier) Abort() {
	v.abortOnce.Do(func() {
		v.mu.Lock()
		close(v.aborted)
		if v.cancel != nil {
			v.cancel()
		}
		v.mu.Unlock()
	})
}
