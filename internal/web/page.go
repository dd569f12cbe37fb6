package web

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

const day = 24 * time.Hour

// maxRangeDays bounds a page's date range.
const maxRangeDays = 400

// dateRange is a page's UTC days: [Since, Until) with Until the day after
// the last day shown (To).
type dateRange struct {
	Since, Until time.Time
}

// From and To are the first and last day, as the form shows them.
func (d dateRange) From() string { return d.Since.Format(time.DateOnly) }
func (d dateRange) To() string   { return d.Until.Add(-day).Format(time.DateOnly) }

// Days are the days of the range.
func (d dateRange) Days() int { return int(d.Until.Sub(d.Since) / day) }

var errBadRange = errors.New("bad date range")

// parseRange reads from and to (YYYY-MM-DD, UTC, inclusive); missing, the
// range is the 30 days up to today.
func parseRange(q url.Values, now time.Time) (dateRange, error) {
	today := now.UTC().Truncate(day)
	d := dateRange{Since: today.Add(-29 * day), Until: today.Add(day)}
	if v := q.Get("from"); v != "" {
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return d, fmt.Errorf("%w: from %q: want YYYY-MM-DD", errBadRange, v)
		}
		d.Since = t
	}
	if v := q.Get("to"); v != "" {
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return d, fmt.Errorf("%w: to %q: want YYYY-MM-DD", errBadRange, v)
		}
		d.Until = t.Add(day)
	}
	switch {
	case !d.Until.After(d.Since):
		return d, fmt.Errorf("%w: to is before from", errBadRange)
	case d.Days() > maxRangeDays:
		return d, fmt.Errorf("%w: at most %d days", errBadRange, maxRangeDays)
	}
	return d, nil
}

// column is one sortable column of a table.
type column[T any] struct {
	Key, Title string
	cmp        func(a, b T) int
}

// sortSpec is the table's sort order as asked in the query.
type sortSpec struct {
	Key  string
	Desc bool
}

// sortRows sorts rows by the column the query names (sort, dir), else by
// def; unknown keys fall back to def.
func sortRows[T any](rows []T, cols []column[T], q url.Values, def sortSpec) sortSpec {
	spec := sortSpec{Key: q.Get("sort"), Desc: q.Get("dir") != "asc"}
	i := slices.IndexFunc(cols, func(c column[T]) bool { return c.Key == spec.Key })
	if i < 0 {
		spec = def
		i = slices.IndexFunc(cols, func(c column[T]) bool { return c.Key == spec.Key })
	}
	c := cols[i]
	slices.SortStableFunc(rows, func(a, b T) int {
		if spec.Desc {
			return c.cmp(b, a)
		}
		return c.cmp(a, b)
	})
	return spec
}

// header is a column title with the link that sorts by it.
type header struct {
	Title string
	URL   string
	// Arrow marks the current sort column ("▲" or "▼").
	Arrow string
}

// headers builds the column headers of a table sorted by spec; a click on
// the current column reverses it.
func headers[T any](cols []column[T], q url.Values, spec sortSpec) []header {
	out := make([]header, 0, len(cols))
	for _, c := range cols {
		v := cloneValues(q)
		v.Del("format")
		v.Set("sort", c.Key)
		v.Set("dir", "desc")
		h := header{Title: c.Title}
		if c.Key == spec.Key {
			h.Arrow = "▲"
			if spec.Desc {
				h.Arrow = "▼"
				v.Set("dir", "asc")
			}
		}
		h.URL = "?" + v.Encode()
		out = append(out, h)
	}
	return out
}

func cloneValues(q url.Values) url.Values {
	v := url.Values{}
	for k, vs := range q {
		v[k] = slices.Clone(vs)
	}
	return v
}

// exportURL is the page's URL with format set.
func exportURL(q url.Values, format string) string {
	v := cloneValues(q)
	v.Set("format", format)
	return "?" + v.Encode()
}

// pageData is what every page template gets, with the page's own data in
// Data.
type pageData struct {
	Title   string
	Nav     string
	Range   dateRange
	Query   url.Values
	Hidden  map[string]string // query parameters the range form keeps
	CSVURL  string
	JSONURL string
	Data    any
}

func newPage(title, nav string, r *http.Request, rng dateRange, keep ...string) pageData {
	q := r.URL.Query()
	p := pageData{Title: title, Nav: nav, Range: rng, Query: q, Hidden: map[string]string{},
		CSVURL: exportURL(q, "csv"), JSONURL: exportURL(q, "json")}
	for _, k := range keep {
		if v := q.Get(k); v != "" {
			p.Hidden[k] = v
		}
	}
	return p
}

// render writes the page template with data; the page is built in memory
// first, so that a failing template gives a clean 500 and the server time
// goes into a Server-Timing header.
func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, data pageData, start time.Time) {
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, data); err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	serverTiming(w, start)
	w.Write(buf.Bytes())
}

func serverTiming(w http.ResponseWriter, start time.Time) {
	w.Header().Set("Server-Timing", fmt.Sprintf("app;dur=%.2f", float64(time.Since(start).Microseconds())/1000))
}

// fail answers a page whose data could not be read.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errBadRange) || errors.Is(err, errBadParam) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.log.Error("web: page failed", "path", r.URL.Path, "err", err)
	http.Error(w, "the store could not be read; see the log", http.StatusInternalServerError)
}

var errBadParam = errors.New("bad parameter")

// domainParam reads the page's domain parameter (lower case, no final dot).
func domainParam(q url.Values) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(q.Get("domain"))), ".")
	if d == "" || len(d) > 253 {
		return "", fmt.Errorf("%w: domain: want a domain name", errBadParam)
	}
	return d, nil
}

// domainPage reads the date range and the domain of a page about one of
// our domains.
func (s *Server) domainPage(q url.Values) (dateRange, string, error) {
	rng, err := parseRange(q, s.opts.Now())
	if err != nil {
		return dateRange{}, "", err
	}
	domain, err := domainParam(q)
	return rng, domain, err
}

// writeJSON writes v as indented JSON.
func writeJSON(w http.ResponseWriter, name string, v any, start time.Time) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.json"`, name))
	serverTiming(w, start)
	w.Write(append(b, '\n'))
}

// writeCSV writes a header and records, every cell neutralised (csvCell).
func writeCSV(w http.ResponseWriter, name string, head []string, records [][]string, start time.Time) {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	cw.Write(head)
	for _, rec := range records {
		safe := make([]string, len(rec))
		for i, c := range rec {
			safe[i] = csvCell(c)
		}
		cw.Write(safe)
	}
	cw.Flush()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.csv"`, name))
	serverTiming(w, start)
	w.Write(buf.Bytes())
}

// csvCell neutralises a cell a spreadsheet would read as a formula (one
// starting with =, +, -, @, or a tab or carriage return that hides such a
// start): a leading apostrophe makes it text (the OWASP "CSV injection"
// advice). Our numbers are never negative, so no number is changed.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// Comparison helpers for the column tables.
func byString[T any](f func(T) string) func(a, b T) int {
	return func(a, b T) int { return cmp.Compare(f(a), f(b)) }
}

func byInt[T any](f func(T) int64) func(a, b T) int {
	return func(a, b T) int { return cmp.Compare(f(a), f(b)) }
}

func byFloat[T any](f func(T) float64) func(a, b T) int {
	return func(a, b T) int { return cmp.Compare(f(a), f(b)) }
}

func byTime[T any](f func(T) time.Time) func(a, b T) int {
	return func(a, b T) int { return f(a).Compare(f(b)) }
}

// rate is part/whole as a fraction (0 when whole is 0).
func rate(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return float64(part) / float64(whole)
}
