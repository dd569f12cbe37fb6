package milter

import (
	"strings"

	"github.com/dmarc-milter/dmarc-milter/internal/authres"
)

// hygiene finds the incoming header fields that must not reach the mailbox:
// every Authentication-Results field carrying our authserv-id (RFC 8601 §5,
// https://datatracker.ietf.org/doc/html/rfc8601#section-5) and every copy of
// the quarantine marker. It keeps only references (name as received, 1-based
// index among the fields of that name), never values, so that a message
// with thousands of such fields costs a few words for each.
//
// The Transaction keeps one for its decision; the session keeps another, so
// that forged fields are still deleted when the Transaction failed (a
// recovered panic with on_error = "accept").
type hygiene struct {
	id     string         // our authserv-id
	marker string         // lower-case marker field name; "" when disabled
	counts map[string]int // lower-case name → occurrences, for the two names only
	refs   []HeaderRef
}

func newHygiene(id, marker string) *hygiene {
	return &hygiene{id: id, marker: strings.ToLower(marker), counts: map[string]int{}}
}

// add looks at one header field, in message order.
func (h *hygiene) add(name, value string) {
	lname := strings.ToLower(name)
	isAR := lname == strings.ToLower(authres.FieldName)
	if !isAR && (h.marker == "" || lname != h.marker) {
		return
	}
	h.counts[lname]++
	if isAR && !authres.IsOurs(value, h.id) {
		return
	}
	h.refs = append(h.refs, HeaderRef{Name: name, Index: h.counts[lname]})
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
