package verify

import (
	"bytes"
	"io"
)

// bodyFilter passes the body to go-msgauth without buffering it, with one
// change that does not alter any canonical form: a run of CRLF pairs at the
// end of what has been seen is held back as a count. When more content
// follows, the run is written out; when the body ends there, one CRLF is
// written instead of the run. Both canonicalizations drop all empty lines at
// the end of the body (RFC 6376 §3.4.3 simple: "Ignores all empty lines at
// the end of the message body"; §3.4.4 relaxed: "Ignore all empty lines at
// the end of the message body"), so one CRLF gives the same hash as many.
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.4.3
//
// Why: go-msgauth's canonicalizers keep a run of CR/LF octets in memory until
// they see what follows it, and the simple one re-copies that buffer on
// every write. A body of millions of blank lines would make it hold all of
// them, at a cost that grows with the square of the run. The trailing run is
// absorbed here; a run inside the body longer than max octets that crosses
// a write stops the stream (over is set) and the signatures give neutral. A
// run inside one write is bounded by maxPiece.
type bodyFilter struct {
	w    io.Writer
	max  int64
	held int64 // CRLF pairs held back
	cr   bool  // a CR held back: maybe the first half of a CRLF
	run  int64 // CR/LF octets written since the last octet other than SP, HTAB, CR, LF
	over bool
}

var crlfBlock = bytes.Repeat([]byte("\r\n"), 2048)

func (f *bodyFilter) write(p []byte) error {
	if f.over {
		return nil
	}
	k := len(p)
	for k > 0 && (p[k-1] == '\r' || p[k-1] == '\n') {
		k--
	}
	if k > 0 {
		if err := f.flush(); err != nil {
			return err
		}
		if err := f.emit(p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	for _, c := range p {
		var err error
		switch {
		case f.cr && c == '\n':
			f.cr = false
			f.held++
		case c == '\r':
			if f.cr {
				err = f.flush() // the held CR was a lone CR: content
			}
			f.cr = true
		default: // a bare LF: go-msgauth turns it into CRLF; pass it on as is
			if err = f.flush(); err == nil {
				err = f.emit([]byte{'\n'})
			}
		}
		if err != nil || f.over {
			return err
		}
	}
	return nil
}

// flush writes what is held back: the CRLF run, then a held CR.
func (f *bodyFilter) flush() error {
	if f.held > 0 {
		if f.run+2*f.held > f.max {
			f.over = true
			return nil
		}
		f.run += 2 * f.held
		for f.held > 0 {
			n := min(f.held, int64(len(crlfBlock)/2))
			if _, err := f.w.Write(crlfBlock[:2*n]); err != nil {
				return err
			}
			f.held -= n
		}
	}
	if f.cr {
		f.cr = false
		return f.emit([]byte{'\r'})
	}
	return nil
}

// maxPiece bounds one write to go-msgauth, so that a run of blank lines
// inside one chunk (which emit does not count) is at most this long.
const maxPiece = 64 << 10

// emit writes b in pieces of at most maxPiece octets.
func (f *bodyFilter) emit(b []byte) error {
	for len(b) > 0 && !f.over {
		n := min(len(b), maxPiece)
		if err := f.emitPiece(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// emitPiece writes b, keeping track of the CR/LF run that crosses its
// start and its end (a run inside b is bounded by maxPiece).
func (f *bodyFilter) emitPiece(b []byte) error {
	i := 0
	for i < len(b) && isBodyWS(b[i]) {
		i++
	}
	if i == len(b) {
		f.run += lineBreaks(b)
	} else {
		if f.run+lineBreaks(b[:i]) > f.max {
			f.over = true
			return nil
		}
		j := len(b)
		for isBodyWS(b[j-1]) {
			j--
		}
		f.run = lineBreaks(b[j:])
	}
	if f.run > f.max {
		f.over = true
		return nil
	}
	_, err := f.w.Write(b)
	return err
}

// isBodyWS: the octets that go-msgauth's relaxed body canonicalizer holds
// (CR, LF) or drops (SP, HTAB) while it waits for the end of a run.
func isBodyWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func lineBreaks(b []byte) int64 {
	return int64(bytes.Count(b, []byte{'\r'}) + bytes.Count(b, []byte{'\n'}))
}

// close writes the end of the body: a held lone CR is content (with the
// CRLFs before it); a held CRLF run is trailing and becomes one CRLF.
func (f *bodyFilter) close() error {
	if f.over {
		return nil
	}
	if f.cr {
		return f.flush()
	}
	if f.held > 0 {
		f.held = 0
		_, err := f.w.Write(crlfBlock[:2])
		return err
	}
	return nil
}
