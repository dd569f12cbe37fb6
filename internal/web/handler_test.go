package web

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/intake"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"
)

func newTestServer(t testing.TB, st *store.Store, opts Options) *httptest.Server {
	t.Helper()
	opts.Now = func() time.Time { return testNow }
	s, err := New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func get(t testing.TB, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestPagesServe: every page answers 200 with the security headers and its
// totals, over the fixture (SQLite).
func TestPagesServe(t *testing.T) {
	ts := newTestServer(t, fixture(t, ""), Options{})
	cases := []struct {
		path string
		want []string
	}{
		{"/", []string{`id="total-messages">212<`, "example.com", "88.2 %", "example.org", "reject / quarantine", "DMARC p=reject; SPF close"}},
		{"/senders?domain=example.com", []string{`id="total-messages">170<`, "esp.example", "mta1.esp.example", "198.51.100.7", "unknown", "authorized"}},
		{"/failures?domain=example.com", []string{`id="total-messages">170<`, `id="total-fail">20<`, "neither SPF nor DKIM for your domain"}},
		{"/inbound", []string{`id="total-messages">150<`, "paypal.example", "mailing_list", "List-Id present"}},
		{"/reports", []string{"paypal.example", "report-1", "rua@paypal.example", "550 5.1.1 no such user", "dmarc@gone.example"}},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			resp, body := get(t, ts.URL+c.path)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Content-Security-Policy"); got != CSP {
				t.Errorf("CSP = %q", got)
			}
			for _, h := range []string{"X-Content-Type-Options", "Referrer-Policy", "Server-Timing"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("no %s header", h)
				}
			}
			for _, w := range c.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
		})
	}
}

// TestCSPHeader: the policy forbids scripts, frames, foreign forms and
// every other source.
func TestCSPHeader(t *testing.T) {
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'", "style-src 'self'"} {
		if !strings.Contains(CSP, want) {
			t.Errorf("CSP lacks %q", want)
		}
	}
	if strings.Contains(CSP, "script-src") || strings.Contains(CSP, "unsafe") {
		t.Errorf("CSP allows scripts: %q", CSP)
	}
}

// TestReadOnly: every method but GET and HEAD is refused.
func TestReadOnly(t *testing.T) {
	ts := newTestServer(t, openStore(t, ""), Options{})
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		req, _ := http.NewRequest(m, ts.URL+"/", strings.NewReader("x=1"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405", m, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("HEAD", ts.URL+"/inbound", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HEAD: status %d", resp.StatusCode)
	}
}

// TestBadParameters: a bad range or a missing domain is a 400 that says why.
func TestBadParameters(t *testing.T) {
	ts := newTestServer(t, openStore(t, ""), Options{})
	for path, want := range map[string]string{
		"/?from=yesterday":                       "from",
		"/inbound?from=2026-12-05&to=2026-12-01": "before",
		"/?from=2020-01-01&to=2026-01-01":        "at most",
		"/senders":                               "domain",
	} {
		resp, body := get(t, ts.URL+path)
		if resp.StatusCode != 400 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %q, want 400 mentioning %q", path, resp.StatusCode, body, want)
		}
	}
}

// TestAuthentication: Basic with the bcrypt hash; the proxy header only
// from a trusted address.
func TestAuthentication(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, "")
	do := func(ts *httptest.Server, user, pass, proxyUser string) int {
		req, _ := http.NewRequest("GET", ts.URL+"/", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		if proxyUser != "" {
			req.Header.Set("X-Remote-User", proxyUser)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	basic := newTestServer(t, st, Options{User: "admin", PasswordHash: string(hash)})
	for _, c := range []struct {
		user, pass string
		want       int
	}{{"", "", 401}, {"admin", "wrong", 401}, {"root", "s3cret", 401}, {"admin", "s3cret", 200}} {
		if got := do(basic, c.user, c.pass, ""); got != c.want {
			t.Errorf("basic %q/%q: %d, want %d", c.user, c.pass, got, c.want)
		}
	}
	trusted := newTestServer(t, st, Options{ProxyHeader: "X-Remote-User", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if got := do(trusted, "", "", "alice"); got != 200 {
		t.Errorf("trusted proxy: %d", got)
	}
	if got := do(trusted, "", "", ""); got != 401 {
		t.Errorf("no header: %d, want 401", got)
	}
	untrusted := newTestServer(t, st, Options{ProxyHeader: "X-Remote-User", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if got := do(untrusted, "", "", "alice"); got != 403 {
		t.Errorf("proxy header from an untrusted address: %d, want 403", got)
	}
}

// TestSendersJSONIsIntakeShape: the senders page's JSON export is
// intake.Senders' report, field for field.
func TestSendersJSONIsIntakeShape(t *testing.T) {
	st := fixture(t, "")
	ts := newTestServer(t, st, Options{})
	resp, body := get(t, ts.URL+"/senders?domain=example.com&format=json")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got intake.SendersReport
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want, err := intake.Senders(t.Context(), st, "example.com", dec1Range().Since, dec1Range().Until)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("export differs from intake.Senders (-want +got):\n%s", d)
	}
	if got.Messages != comMessages || len(got.Senders) != 2 {
		t.Errorf("messages %d, senders %d; want %d, 2", got.Messages, len(got.Senders), comMessages)
	}
}

// dec1Range is the default range at testNow.
func dec1Range() dateRange {
	r, _ := parseRange(nil, testNow)
	return r
}

// TestCSVNeutralised: cells from hostile reports that start with = + - @
// come out as text.
func TestCSVNeutralised(t *testing.T) {
	ts := newTestServer(t, fixture(t, ""), Options{})
	resp, body := get(t, ts.URL+"/failures?domain=example.net&format=csv")
	if resp.StatusCode != 200 {
		t.Fatalf("%d: %s", resp.StatusCode, body)
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	formulas := 0
	for _, rec := range recs {
		for _, cell := range rec {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Errorf("cell %q would run as a formula", cell)
			}
			if strings.HasPrefix(cell, "'=") || strings.HasPrefix(cell, "'+") || strings.HasPrefix(cell, "'-") || strings.HasPrefix(cell, "'@") {
				formulas++
			}
		}
	}
	if formulas == 0 {
		t.Errorf("no neutralised cell in %q: the corpus's formulas did not reach the export", body)
	}
}

func TestCSVCell(t *testing.T) {
	for in, want := range map[string]string{
		"=1+1": "'=1+1", "+1": "'+1", "-1": "'-1", "@SUM(A1)": "'@SUM(A1)", "\t=1": "'\t=1",
		"example.com": "example.com", "": "", "12": "12",
	} {
		if got := csvCell(in); got != want {
			t.Errorf("csvCell(%q) = %q, want %q", in, got, want)
		}
	}
}
