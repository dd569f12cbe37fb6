package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"hash"
	"sync"
)

// bodyFanout is a verifier's body hashers, one per canonicalization in
// use (nil for the others): every body chunk goes to each.
type bodyFanout [numCanons]*bodyHasher

func (bs *bodyFanout) write(p []byte) {
	for _, b := range bs {
		if b != nil {
			b.write(p)
		}
	}
}

// closed reports whether ch is closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// bodyHasher computes the body hash of RFC 6376 §3.7 for one body
// canonicalization while the body streams through, without buffering it and
// without allocating per chunk. One bodyHasher serves every signature of the
// message with that canonicalization (all use SHA-256).
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.7
//
// The canonical form equals the input except at a few places, so the input
// is written to the hash in long runs found with bytes.IndexByte and
// bytes.Index, and only the octets around those places go through the
// per-octet state machine (lineByte, runByte).
//
// Line ends are taken as go-msgauth takes them, so that results do not
// change with the verifier: a bare LF is a line end (a CR is put before it);
// a bare CR is an ordinary octet. Postfix sends CRLF lines, so neither
// occurs in mail that went through it unless the message was made that way.
//
// A run of line ends (and, for relaxed, WSP) may be the end of the body,
// where both canonicalizations drop it, so it is held back until a later
// octet shows it is not: as a count of CRLF pairs, never as bytes. A run
// that is not only CRLF pairs (a bare CR in it, relaxed) is rare; it is
// written to the hash at once and the hash state from before it is kept, to
// be restored if the body ends there.
type bodyHasher struct {
	h       hash.Hash
	relaxed bool

	pairs int64 // CRLF pairs held back
	cr    bool  // a CR held back after the pairs (it may start a CRLF)

	// relaxed only
	wsp     bool   // WSP seen since the last line end of the run
	written bool   // some content has been hashed
	inHash  bool   // the run is in the hash; snap is the state before it
	lastCR  bool   // inHash: the last octet hashed was a CR
	snap    []byte // hash state (encoding.BinaryAppender)

	// Short pieces (line ends, an SP, the runs between the places relaxed
	// canonicalization changes) are gathered here and hashed together.
	stage  [512]byte
	staged int

	out [32]byte
}

// put hashes x, through the stage when it is short.
func (b *bodyHasher) put(x []byte) {
	if len(x) > len(b.stage)/4 {
		b.flushStage()
		b.h.Write(x)
		return
	}
	if b.staged+len(x) > len(b.stage) {
		b.flushStage()
	}
	b.staged += copy(b.stage[b.staged:], x)
}

func (b *bodyHasher) flushStage() {
	if b.staged > 0 {
		b.h.Write(b.stage[:b.staged])
		b.staged = 0
	}
}

// bodyHashers are reused across messages: a SHA-256 state and the hasher
// are two allocations per message otherwise.
var bodyHashers = sync.Pool{New: func() any { return &bodyHasher{h: sha256.New()} }}

func newBodyHasher(relaxed bool) *bodyHasher {
	b := bodyHashers.Get().(*bodyHasher)
	b.h.Reset()
	b.relaxed = relaxed
	return b
}

// release returns b to the pool, its state cleared.
func (b *bodyHasher) release() {
	h, snap := b.h, b.snap[:0]
	*b = bodyHasher{h: h, snap: snap}
	bodyHashers.Put(b)
}

var (
	crlfBlock = bytes.Repeat([]byte("\r\n"), 1024)
	crOnly    = crlfBlock[:1]
	lfOnly    = crlfBlock[1:2]
	spOnly    = []byte{' '}
)

// writePairs hashes n CRLF pairs.
func (b *bodyHasher) writePairs(n int64) {
	for n > 0 {
		k := min(n, int64(len(crlfBlock)/2))
		b.put(crlfBlock[:2*k])
		n -= k
	}
}

func (b *bodyHasher) write(p []byte) {
	if b.relaxed {
		b.writeRelaxed(p)
	} else {
		b.writeSimple(p)
	}
}

// writeSimple: RFC 6376 §3.4.3, the body unchanged but for the empty lines at
// its end ("Ignores all empty lines at the end of the message body").
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.4.3
func (b *bodyHasher) writeSimple(p []byte) {
	last := len(p) - 1 // the last octet that is not CR or LF
	for last >= 0 && (p[last] == '\r' || p[last] == '\n') {
		last--
	}
	for i := 0; i < len(p); {
		c := p[i]
		if c == '\r' || c == '\n' {
			b.lineByte(c)
			i++
			continue
		}
		// Content: what was held is not the end of the body.
		b.flushSimple()
		// Hash up to the last content octet or the next bare LF.
		end := last + 1
		for j := i; ; {
			k := bytes.IndexByte(p[j:end], '\n')
			if k < 0 {
				break
			}
			k += j // > i: p[i] is not a LF
			if p[k-1] != '\r' {
				end = k
				break
			}
			j = k + 1
		}
		b.put(p[i:end])
		i = end
	}
}

// lineByte takes a CR or LF of the simple canonicalization.
func (b *bodyHasher) lineByte(c byte) {
	if c == '\r' {
		if b.cr { // the CR held is not followed by LF: it is content
			b.writePairs(b.pairs)
			b.put(crOnly)
			b.pairs = 0
		}
		b.cr = true
		return
	}
	// A LF ends a line, after a CR or bare (then read as CRLF).
	b.pairs++
	b.cr = false
}

func (b *bodyHasher) flushSimple() {
	b.writePairs(b.pairs)
	if b.cr {
		b.put(crOnly)
	}
	b.pairs, b.cr = 0, false
}

// writeRelaxed: RFC 6376 §3.4.4: WSP at the end of lines is deleted, every
// other run of WSP becomes one SP, empty lines at the end of the body are
// deleted.
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.4.4
func (b *bodyHasher) writeRelaxed(p []byte) {
	last := len(p) - 1 // the last octet that is not WSP, CR or LF
	for last >= 0 && isFWS(p[last]) {
		last--
	}
	sc := newRelaxedScan(p, last+1)
	for i := 0; i < len(p); {
		c := p[i]
		if isFWS(c) {
			b.runByte(c)
			i++
			continue
		}
		b.flushRelaxed()
		end := sc.cleanEnd(i)
		b.put(p[i:end])
		b.written = true
		i = end
	}
}

// relaxedScan finds in one chunk the places where relaxed canonicalization
// changes it, for cleanEnd: a HTAB (it becomes SP, or goes), two SP in a row,
// SP before a CR (at the end of a line, or before a bare CR), a bare LF (a
// CR goes before it; SP before it is found through it). Each place found is
// kept until the writer is past it, so every search covers each octet of
// the chunk once: the cost is linear whatever the number of places. Line
// ends are found with IndexByte, one call per line; a bare CR, rare, is
// noticed by counting the CRs of each run against its LFs.
type relaxedScan struct {
	p      []byte
	lim    int // the end of the content of p
	tab    int // next HTAB; lim: none; -1: not searched
	dbl    int // next "  "
	line   int // next bare LF, or SP before a CRLF
	lfFrom int // the LFs before lfFrom were checked
}

func newRelaxedScan(p []byte, lim int) relaxedScan {
	return relaxedScan{p: p, lim: lim, tab: -1, dbl: -1, line: -1}
}

var twoSP = []byte("  ")

// indexTwoSP is bytes.Index(p, "  "), fast on text. bytes.Index looks for
// the first octet of the pattern with IndexByte and checks the second; in
// text, where one octet in six or eight is a space, that is a call per word,
// and it gives up for its vectorized search only when the false hits are
// denser than that. Here IndexByte skips to the next space (text without
// spaces, such as base64, goes in one call), then the vectorized search
// checks the 64 octets from there, the size bytes.Index hands to it whole.
func indexTwoSP(p []byte) int {
	for i := 0; ; {
		k := bytes.IndexByte(p[i:], ' ')
		if k < 0 {
			return -1
		}
		i += k
		w := p[i:min(i+64, len(p))]
		if len(w) < 2 {
			return -1
		}
		if off := bytes.Index(w, twoSP); off >= 0 {
			return i + off
		}
		i += len(w) - 1 // the last octet of w may start a pair
	}
}

// cleanEnd returns the end of the run of p starting at content octet i that
// relaxed canonicalization leaves as it is; the run ends on a content octet.
func (s *relaxedScan) cleanEnd(i int) int {
	p, lim := s.p, s.lim
	if s.tab < i {
		s.tab = lim
		if off := bytes.IndexByte(p[i:lim], '\t'); off >= 0 {
			s.tab = i + off
		}
	}
	if s.dbl < i {
		s.dbl = lim
		if off := indexTwoSP(p[i:lim]); off >= 0 {
			s.dbl = i + off
		}
	}
	if s.line < i {
		s.line = lim
		for j := max(i, s.lfFrom); ; {
			off := bytes.IndexByte(p[j:lim], '\n')
			if off < 0 {
				s.lfFrom = lim
				break
			}
			k := j + off // > i: p[i] is not a LF
			j = k + 1
			if p[k-1] != '\r' {
				s.line, s.lfFrom = k, j // a bare LF
				break
			}
			if p[k-2] == ' ' { // k-2 > i: p[i] is content
				s.line, s.lfFrom = k-2, j // SP before CRLF
				break
			}
		}
	}
	end := min(lim, s.tab, s.dbl, s.line)
	// Every LF in [i, end) ends a CRLF; more CRs than LFs means a bare CR,
	// which matters when SP is before it.
	if bytes.Count(p[i:end], crOnly) > bytes.Count(p[i:end], lfOnly) {
		for j := i; ; {
			off := bytes.IndexByte(p[j:end], '\r')
			if off < 0 {
				break
			}
			k := j + off
			if p[k-1] == ' ' {
				end = k - 1
				break
			}
			j = k + 1
		}
	}
	for end > i+1 && isFWS(p[end-1]) {
		end--
	}
	return end
}

// runByte takes a WSP, CR or LF of the relaxed canonicalization.
func (b *bodyHasher) runByte(c byte) {
	if b.inHash {
		switch c {
		case '\r':
			b.put(crOnly)
			b.lastCR, b.wsp = true, false
		case '\n':
			if !b.lastCR {
				b.put(crOnly) // a bare LF is a line end
			}
			b.put(lfOnly)
			b.lastCR, b.wsp = false, false
		default:
			b.lastCR, b.wsp = false, true
		}
		return
	}
	switch c {
	case '\r':
		if b.cr {
			b.toHash() // two CRs: the first one is bare
			b.runByte(c)
			return
		}
		b.cr, b.wsp = true, false
	case '\n':
		b.pairs++ // after a CR, or bare (then read as CRLF)
		b.cr, b.wsp = false, false
	default:
		if b.cr {
			b.toHash() // a CR before WSP is bare
			b.runByte(c)
			return
		}
		b.wsp = true
	}
}

// toHash writes the held run to the hash, keeping the state from before it.
func (b *bodyHasher) toHash() {
	b.flushStage()
	b.snap, _ = b.h.(encoding.BinaryAppender).AppendBinary(b.snap[:0])
	b.writePairs(b.pairs)
	if b.cr {
		b.put(crOnly)
	}
	b.lastCR = b.cr
	b.pairs, b.cr, b.inHash = 0, false, true
}

// flushRelaxed is called before content: the held run is not the end of the
// body. Its line ends are hashed, then one SP if it ended with WSP.
func (b *bodyHasher) flushRelaxed() {
	if b.inHash {
		b.inHash = false
	} else {
		b.writePairs(b.pairs)
		if b.cr {
			b.put(crOnly)
		}
		b.pairs, b.cr = 0, false
	}
	if b.wsp {
		b.put(spOnly)
		b.wsp = false
	}
	b.lastCR = false
}

// sum ends the body and returns its hash. The run held at the end is
// dropped, except a CR that ends the body in simple canonicalization, which
// is content.
func (b *bodyHasher) sum() [32]byte {
	if b.relaxed {
		if b.inHash {
			// Back to the state before the run: what was staged since is
			// part of the run. The state was made by the same hash; it
			// cannot fail to load.
			b.staged = 0
			if err := b.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b.snap); err != nil {
				panic("verify: SHA-256 state does not load: " + err.Error())
			}
		}
		// RFC 6376 §3.4.4 and erratum 1384: a body that is empty after
		// canonicalization stays empty (no CRLF is added).
		// https://www.rfc-editor.org/errata/eid1384
		if b.written {
			b.put(crlfBlock[:2])
		}
	} else {
		if b.cr {
			b.writePairs(b.pairs)
			b.put(crOnly)
		}
		// RFC 6376 §3.4.3: "If there is no body or no trailing CRLF on the
		// message body, a CRLF is added"; the trailing empty lines were
		// held and are dropped, leaving one CRLF.
		b.put(crlfBlock[:2])
	}
	b.flushStage()
	b.h.Sum(b.out[:0])
	return b.out
}
