package milter

import (
	"strings"

	"github.com/dmarc-milter/dmarc-milter/internal/authres"
)

// hygiene finds the incoming header fields that must not reach the mailbox:
// every Authentication-Results field carrying our authserv-id (RFC 8601 §5)
// and every copy of the quarantine marker. It keeps references (name as
// received, 1-based index among the fields of that name), never values, so
// that a message with thousands of such fields costs a few words for each.
type hygiene struct {
	id          string // our authserv-id
	marker      string // marker field name; "" when disabled
	markerASCII bool
	nAR         int // Authentication-Results fields seen
	nMarker     int // marker fields seen (when the marker is another name)
	refs        []HeaderRef
}

func newHygiene(id, marker string) *hygiene {
	return &hygiene{id: id, marker: marker, markerASCII: isASCII(marker)}
}

// add looks at one header field, in message order. Names compare without
// regard to case.
func (h *hygiene) add(name, value string) {
	ascii := isASCII(name)
	if sameNameASCII(name, ascii, authres.FieldName, true) {
		h.nAR++
		if authres.IsOurs(value, h.id) {
			h.refs = append(h.refs, HeaderRef{Name: name, Index: h.nAR})
		}
		return
	}
	if h.marker == "" || !sameNameASCII(name, ascii, h.marker, h.markerASCII) {
		return
	}
	h.nMarker++
	h.refs = append(h.refs, HeaderRef{Name: name, Index: h.nMarker})
}

// forged returns the fields to delete, highest index first within each
// name (milter protocol SMFIR_CHGHEADER indexes are 1-based per name and
// Postfix compares names case-insensitively), so that deleting one does not
// shift the next. A nil hygiene has nothing to delete.
func (h *hygiene) forged() []HeaderRef {
	if h == nil || len(h.refs) == 0 {
		return nil
	}
	out := make([]HeaderRef, len(h.refs))
	for i, r := range h.refs {
		out[len(out)-1-i] = r
	}
	return out
}

// sameNameASCII is sameName for names whose ASCII-ness the caller knows
// (a name compared with several others is scanned once).
func sameNameASCII(a string, aASCII bool, b string, bASCII bool) bool {
	if !aASCII || !bASCII {
		return strings.ToLower(a) == strings.ToLower(b)
	}
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
