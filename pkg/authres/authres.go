// Package authres reads Authentication-Results header fields (RFC 8601,
// https://datatracker.ietf.org/doc/html/rfc8601) and holds the types of
// their results, so that code under pkg/ (the ARC verifier, which parses the
// ARC-Authentication-Results of each ARC set) and the milter share one
// reader.
//
// Parse is a small tolerant reader of the RFC 8601 §2.2 grammar (comments,
// quoted strings, folding). AuthservID and IsOurs find the authserv-id of a
// field, which the milter uses to remove fields that claim to come from us
// (RFC 8601 §5). The writer, Format, stays with the milter in
// internal/authres.
package authres

// Result is one resinfo: method=value, an optional comment, a reason and
// properties ("smtp.mailfrom", "header.d", ...).
type Result struct {
	Method  string            // "spf", "dkim", "dmarc", "auth"
	Value   string            // "pass", "fail", ...
	Comment string            // written as "(comment)" after the value
	Reason  string            // written as reason="..."
	Props   map[string]string // ptype.property → value; empty values are left out
	// Params are more properties, for writers that would rather not build
	// a map: a writer writes them as if they were in Props (a name should
	// not be in both). Parse leaves them empty.
	Params []Param
}

// Param is one property of a Result.
type Param struct {
	Name, Value string
}
