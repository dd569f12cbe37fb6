// Package daterange reads the time ranges of the report commands: --since
// and --until as RFC 3339 times or YYYY-MM-DD dates (00:00 UTC), half-open
// [since, until), or --days N, the last N UTC days with today.
package daterange

import (
	"errors"
	"fmt"
	"time"
)

// ErrBadRange is the error of every range that cannot be used.
var ErrBadRange = errors.New("daterange: bad range")

// DefaultDays is the range when neither --since nor --days is given.
const DefaultDays = 7

// Flags are the range as given on the command line; zero values are
// absent.
type Flags struct {
	Since, Until string
	Days         int
}

// Resolve turns the flags into a UTC range [since, until) at now. Until
// defaults to the end of today (UTC); since to Days (or DefaultDays) days
// before until. --days and --since together are an error.
func (f Flags) Resolve(now time.Time) (since, until time.Time, err error) {
	until = now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	if f.Until != "" {
		if until, err = ParseTime(f.Until); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	switch {
	case f.Days < 0 || f.Days > 100*366:
		return time.Time{}, time.Time{}, fmt.Errorf("%w: --days %d", ErrBadRange, f.Days)
	case f.Days > 0 && f.Since != "":
		return time.Time{}, time.Time{}, fmt.Errorf("%w: --days and --since together", ErrBadRange)
	}
	days := DefaultDays
	if f.Days > 0 {
		days = f.Days
	}
	since = until.AddDate(0, 0, -days)
	if f.Since != "" {
		if since, err = ParseTime(f.Since); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	if !since.Before(until) {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: since %s is not before until %s", ErrBadRange,
			since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	return since, until, nil
}

// ParseTime reads an RFC 3339 time (returned in UTC) or a YYYY-MM-DD date
// (its 00:00 UTC).
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %q is neither RFC 3339 nor YYYY-MM-DD", ErrBadRange, s)
	}
	return t.UTC(), nil
}
