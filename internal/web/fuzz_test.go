package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseRange: any from/to either fails with errBadRange or gives a
// range of whole UTC days, at most maxRangeDays long, that From and To
// give back.
func FuzzParseRange(f *testing.F) {
	for _, s := range [][2]string{{"", ""}, {"2026-12-01", "2026-12-07"}, {"2026-12-07", "2026-12-01"}, {"x", "2026-13-40"}, {"0001-01-01", "9999-12-31"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, from, to string) {
		q := url.Values{"from": {from}, "to": {to}}
		r, err := parseRange(q, testNow)
		if err != nil {
			return
		}
		if !r.Until.After(r.Since) || r.Days() > maxRangeDays || r.Since.Hour() != 0 || r.Until.Hour() != 0 {
			t.Fatalf("range %v..%v from %q %q", r.Since, r.Until, from, to)
		}
		again, err := parseRange(url.Values{"from": {r.From()}, "to": {r.To()}}, testNow)
		if err != nil || again != r {
			t.Fatalf("From/To %q %q do not give the range back: %v %v", r.From(), r.To(), again, err)
		}
	})
}

// FuzzPageQuery: any query string on any page answers 200 or 400, never
// 500 or a panic, and always with the CSP.
func FuzzPageQuery(f *testing.F) {
	for _, s := range []string{"", "domain=example.com", "sort=messages&dir=asc", "format=csv", "format=json&domain=x",
		"from=2026-01-01&to=2026-12-31", "domain=%00", "sort=%3Cscript%3E"} {
		f.Add("/senders", s)
		f.Add("/", s)
	}
	srv, err := New(openStore(f, ""), Options{})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, path, query string) {
		pages := []string{"/", "/senders", "/failures", "/inbound", "/reports"}
		p := pages[len(path)%len(pages)]
		req := httptest.NewRequest(http.MethodGet, "http://x"+p, nil)
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 && rec.Code != 400 {
			t.Fatalf("%s?%s: %d %s", p, query, rec.Code, rec.Body.String())
		}
		if !strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'none'") {
			t.Fatalf("%s?%s: no CSP", p, query)
		}
	})
}
