package authres

import "github.com/dmarc-milter/dmarc-milter/pkg/authres"

// The reader of Authentication-Results fields is pkg/authres; these names
// forward to it so that the milter's imports do not change.

// Result is one resinfo (see pkg/authres.Result).
type Result = authres.Result

// Param is one property of a Result (see pkg/authres.Param).
type Param = authres.Param

// ErrSyntax is returned (wrapped) by Parse for a field it cannot read.
var ErrSyntax = authres.ErrSyntax

// AuthservID returns the authserv-id of a field value (pkg/authres.AuthservID).
func AuthservID(value string) (id string, ok bool) { return authres.AuthservID(value) }

// IsOurs reports whether a field value carries the authserv-id id
// (pkg/authres.IsOurs).
func IsOurs(value, id string) bool { return authres.IsOurs(value, id) }

// Parse reads a whole Authentication-Results field value (pkg/authres.Parse).
func Parse(value string) (authservID string, results []Result, err error) {
	return authres.Parse(value)
}
