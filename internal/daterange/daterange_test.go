package daterange

import (
	"errors"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func day(d int) time.Time { return time.Date(2026, 12, d, 0, 0, 0, 0, time.UTC) }

// TestResolve: the forms of the range, and the refused ones.
func TestResolve(t *testing.T) {
	cases := []struct {
		name         string
		f            Flags
		since, until time.Time
		bad          bool
	}{
		{name: "default: 7 days with today", f: Flags{}, since: day(1), until: day(8)},
		{name: "days", f: Flags{Days: 1}, since: day(7), until: day(8)},
		{name: "dates", f: Flags{Since: "2026-12-01", Until: "2026-12-03"}, since: day(1), until: day(3)},
		{name: "rfc 3339 in UTC", f: Flags{Since: "2026-12-01T02:00:00+02:00", Until: "2026-12-02"}, since: day(1), until: day(2)},
		{name: "days before until", f: Flags{Until: "2026-12-05", Days: 2}, since: day(3), until: day(5)},
		{name: "days and since", f: Flags{Since: "2026-12-01", Days: 2}, bad: true},
		{name: "negative days", f: Flags{Days: -1}, bad: true},
		{name: "empty range", f: Flags{Since: "2026-12-03", Until: "2026-12-03"}, bad: true},
		{name: "not a time", f: Flags{Since: "yesterday"}, bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, u, err := tc.f.Resolve(now)
			if tc.bad {
				if !errors.Is(err, ErrBadRange) {
					t.Fatalf("err = %v, want ErrBadRange", err)
				}
				return
			}
			if err != nil || !s.Equal(tc.since) || !u.Equal(tc.until) {
				t.Errorf("Resolve = %v, %v, %v; want %v, %v", s, u, err, tc.since, tc.until)
			}
		})
	}
}

// FuzzResolve: never a panic; a range given back is non-empty and in UTC;
// an error is ErrBadRange.
func FuzzResolve(f *testing.F) {
	f.Add("2025-12-01", "2025-12-07", 0)
	f.Add("2025-12-01T10:00:00+02:00", "", 0)
	f.Add("", "", 3)
	f.Add("x", "2025-13-40", -1)
	f.Fuzz(func(t *testing.T, since, until string, days int) {
		s, u, err := Flags{Since: since, Until: until, Days: days}.Resolve(now)
		if err != nil {
			if !errors.Is(err, ErrBadRange) {
				t.Fatalf("error %v is not ErrBadRange", err)
			}
			return
		}
		if !s.Before(u) || s.Location() != time.UTC || u.Location() != time.UTC {
			t.Fatalf("range %v – %v", s, u)
		}
	})
}
