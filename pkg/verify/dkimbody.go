package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"hash"
	"sync"
)

// bodyHasher computes the body hash of RFC 6376 §3.7 for one body
// canonicalization while the body streams through, without buffering it and
// without allocating per chunk. One bodyHasher serves every signature of the
// message with that canonicalization (all use SHA-256).
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

	out [32]byte
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

	// relaxedMarks are the pairs of octets where relaxed canonicalization
	// changes the body, besides HTAB and bare LF.
	relaxedMarks = [...][]byte{[]byte("  "), []byte(" \r"), []byte(" \n")}
)

// writePairs hashes n CRLF pairs.
func (b *bodyHasher) writePairs(n int64) {
	for n > 0 {
		k := min(n, int64(len(crlfBlock)/2))
		b.h.Write(crlfBlock[:2*k])
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
		b.h.Write(p[i:end])
		i = end
	}
}

// lineByte takes a CR or LF of the simple canonicalization.
func (b *bodyHasher) lineByte(c byte) {
	if c == '\r' {
		if b.cr { // the CR held is not followed by LF: it is content
			b.writePairs(b.pairs)
			b.h.Write(crOnly)
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
		b.h.Write(crOnly)
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
	for i := 0; i < len(p); {
		c := p[i]
		if isFWS(c) {
			b.runByte(c)
			i++
			continue
		}
		b.flushRelaxed()
		end := cleanEnd(p, i, last+1)
		b.h.Write(p[i:end])
		b.written = true
		i = end
	}
}

// cleanEnd returns the end of the run of p starting at content octet i that
// relaxed canonicalization leaves as it is: up to (excluding) the first HTAB,
// two WSP in a row, WSP before CR or LF, or bare LF, before lim, and ending
// on a content octet. Each search covers only [i, end), and the next call
// starts past end, so a chunk is scanned a bounded number of times.
func cleanEnd(p []byte, i, lim int) int {
	end := lim
	if k := bytes.IndexByte(p[i:end], '\t'); k >= 0 {
		end = i + k
	}
	for _, pat := range relaxedMarks {
		if k := bytes.Index(p[i:end], pat); k >= 0 {
			end = i + k
		}
	}
	for j := i; ; {
		k := bytes.IndexByte(p[j:end], '\n')
		if k < 0 {
			break
		}
		k += j
		if p[k-1] != '\r' {
			end = k
			break
		}
		j = k + 1
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
			b.h.Write(crOnly)
			b.lastCR, b.wsp = true, false
		case '\n':
			if !b.lastCR {
				b.h.Write(crOnly) // a bare LF is a line end
			}
			b.h.Write(lfOnly)
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
	b.snap, _ = b.h.(encoding.BinaryAppender).AppendBinary(b.snap[:0])
	b.writePairs(b.pairs)
	if b.cr {
		b.h.Write(crOnly)
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
			b.h.Write(crOnly)
		}
		b.pairs, b.cr = 0, false
	}
	if b.wsp {
		b.h.Write(spOnly)
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
			// Back to the state before the run. The state was made by the
			// same hash; it cannot fail to load.
			if err := b.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b.snap); err != nil {
				panic("verify: SHA-256 state does not load: " + err.Error())
			}
		}
		// RFC 6376 §3.4.4 and erratum 1384: a body that is empty after
		// canonicalization stays empty (no CRLF is added).
		// https://www.rfc-editor.org/errata/eid1384
		if b.written {
			b.h.Write(crlfBlock[:2])
		}
	} else {
		if b.cr {
			b.writePairs(b.pairs)
			b.h.Write(crOnly)
		}
		// RFC 6376 §3.4.3: "If there is no body or no trailing CRLF on the
		// message body, a CRLF is added"; the trailing empty lines were
		// held and are dropped, leaving one CRLF.
		b.h.Write(crlfBlock[:2])
	}
	b.h.Sum(b.out[:0])
	return b.out
}
