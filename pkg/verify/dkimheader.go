package verify

import (
	"crypto/sha256"
	"strings"
)

// hfield is one header field as received: the name, and every octet after
// the colon with folds as "\n" or "\r\n" (see DKIMVerifier.Header).
type hfield struct{ name, value string }

// checkField reports whether name ":" value is a field that could have been
// in a valid message, and its size once rebuilt with CRLF line ends.
func checkField(name, value string) (int, bool) {
	if !validFieldName(name) {
		return 0, false
	}
	size := len(name) + 1 + len(value) + 2
	for i := 0; i < len(value); i++ {
		switch value[i] {
		case '\r':
			if i+1 >= len(value) || value[i+1] != '\n' {
				return 0, false // a bare CR in a header field
			}
		case '\n':
			// RFC 5322 §2.2.3: a fold is CRLF followed by WSP.
			// https://datatracker.ietf.org/doc/html/rfc5322#section-2.2.3
			if i+1 >= len(value) || (value[i+1] != ' ' && value[i+1] != '\t') {
				return 0, false
			}
			if i == 0 || value[i-1] != '\r' {
				size++ // "\n" becomes "\r\n"
			}
		}
	}
	return size, true
}

// validFieldName reports whether name is an RFC 5322 §3.6.8 field name:
// printable US-ASCII except ":". A field with another name is left out of
// the header (it could not have been in the signed message), so that a name
// such as "DKIM-Signature\v" is never taken for a signature.
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

// rebuildField returns name ":" value with every line break as CRLF and a
// final CRLF, or false when the field is malformed: the field as the signer
// saw it, which is its c=simple form.
func rebuildField(name, value string) (string, bool) {
	if _, ok := checkField(name, value); !ok {
		return "", false
	}
	return string(appendSimpleField(nil, name, value, true)), true
}

// appendSimpleValue appends value with every line break as CRLF.
func appendSimpleValue(buf []byte, value string) []byte {
	for {
		i := strings.IndexByte(value, '\n')
		if i < 0 {
			return append(buf, value...)
		}
		buf = append(buf, strings.TrimSuffix(value[:i], "\r")...)
		buf = append(buf, '\r', '\n')
		value = value[i+1:]
	}
}

// appendSimpleField is the "simple" header canonicalization (RFC 6376
// §3.4.1: the field is not changed in any way).
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.4.1
func appendSimpleField(buf []byte, name, value string, crlf bool) []byte {
	buf = append(buf, name...)
	buf = append(buf, ':')
	buf = appendSimpleValue(buf, value)
	if crlf {
		buf = append(buf, '\r', '\n')
	}
	return buf
}

// relaxedValue is the state of the relaxed canonicalization of a value that
// arrives in pieces (the signature field around its removed b= value).
type relaxedValue struct {
	started bool // a non-WSP octet has been written
	space   bool // WSP seen since the last octet written
}

// RFC 6376 §3.4.2: unfold (delete CRLF before WSP), reduce every run of WSP
// to one SP, delete WSP at the end of the value and before it (after the
// colon).
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.4.2
func (r *relaxedValue) append(buf []byte, value string) []byte {
	for i := 0; i < len(value); i++ {
		c := value[i]
		if isFWS(c) {
			r.space = r.started
			continue
		}
		if r.space {
			buf = append(buf, ' ')
			r.space = false
		}
		buf = append(buf, c)
		r.started = true
	}
	return buf
}

// appendRelaxedName appends the field name in lower case (RFC 6376 §3.4.2:
// "Convert all header field names (not the header field values) to
// lowercase"), then the colon, without the WSP before it ("Delete any WSP
// characters remaining before and after the colon"; Header never keeps such
// a name, but the canonicalization is complete).
func appendRelaxedName(buf []byte, name string) []byte {
	name = strings.TrimRight(name, " \t")
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	return append(buf, ':')
}

// headerHash computes the hash of the header part of s (RFC 6376 §3.7): the
// fields named by h= in that order, then the DKIM-Signature field itself
// with an empty b= value and without its final CRLF, all canonicalized by
// s.headerCan. buf is scratch space, returned for reuse.
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.7
func headerHash(fields []hfield, s *sigInfo, buf []byte) ([32]byte, []byte) {
	buf = buf[:0]
	p := newPicker(fields, s.headers)
	listItems(s.headers, func(name string) bool {
		f := p.pick(name)
		if f < 0 {
			// RFC 6376 §5.4.2: a name with no (more) instance in the
			// message is the null string: nothing is hashed for it.
			// https://datatracker.ietf.org/doc/html/rfc6376#section-5.4.2
			return true
		}
		buf = appendField(buf, fields[f], s.headerCan)
		return true
	})
	// RFC 6376 §3.7: the signature field is hashed last, with the b= value
	// empty and without the CRLF at its end.
	sf := fields[s.field]
	before, after := removeBValue(sf.value)
	if s.headerCan == canonRelaxed {
		buf = appendRelaxedName(buf, sf.name)
		var rv relaxedValue
		buf = rv.append(buf, before)
		buf = rv.append(buf, after)
	} else {
		buf = appendSimpleField(buf, sf.name, before, false)
		buf = appendSimpleValue(buf, after)
	}
	return sha256.Sum256(buf), buf
}

func appendField(buf []byte, f hfield, c canon) []byte {
	if c == canonRelaxed {
		buf = appendRelaxedName(buf, f.name)
		var rv relaxedValue
		buf = rv.append(buf, f.value)
		return append(buf, '\r', '\n')
	}
	return appendSimpleField(buf, f.name, f.value, true)
}

// picker selects header fields for h= (RFC 6376 §5.4.2): each name takes the
// last instance of that field not taken yet, from the bottom up, so a name
// listed twice takes the last two instances in bottom-up order.
type picker struct {
	fields []hfield
	// Small case (the usual one): the names taken so far, scanned.
	taken  [pickerSmallH]string
	ntaken int
	// Large case (an h= of many names, or many fields): the fields of each
	// lowercased name, bottom up, and how many of them are taken, so that
	// the work stays linear.
	byName map[string]*pickList
}

type pickList struct {
	idx   []int
	taken int
}

// Above these sizes picker indexes the fields by name.
const (
	pickerSmallH      = 32
	pickerSmallFields = 128
)

func newPicker(fields []hfield, h string) picker {
	p := picker{fields: fields}
	if len(fields) > pickerSmallFields || strings.Count(h, ":") >= pickerSmallH {
		p.byName = map[string]*pickList{}
		for i := len(fields) - 1; i >= 0; i-- {
			key := strings.ToLower(fields[i].name)
			l := p.byName[key]
			if l == nil {
				l = &pickList{}
				p.byName[key] = l
			}
			l.idx = append(l.idx, i)
		}
	}
	return p
}

// pick returns the index of the next field named name (case-insensitive),
// or -1.
func (p *picker) pick(name string) int {
	if p.byName != nil {
		l := p.byName[strings.ToLower(name)]
		if l == nil || l.taken >= len(l.idx) {
			return -1
		}
		l.taken++
		return l.idx[l.taken-1]
	}
	n := 0 // instances of name already taken
	for _, t := range p.taken[:p.ntaken] {
		if strings.EqualFold(t, name) {
			n++
		}
	}
	if p.ntaken < len(p.taken) {
		p.taken[p.ntaken] = name
		p.ntaken++
	}
	for i := len(p.fields) - 1; i >= 0; i-- {
		if strings.EqualFold(p.fields[i].name, name) {
			if n == 0 {
				return i
			}
			n--
		}
	}
	return -1
}
