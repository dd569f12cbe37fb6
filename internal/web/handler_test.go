package web

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
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

// manyReports stores n reports for n policy domains (d000.example, …) of
// Dec 3: all claimed, and built and sent to two destinations for the
// domains of failed (with that many of the two failed).
func manyReports(t testing.TB, st *store.Store, n int, failed map[int]int) {
	ctx := t.Context()
	pol := func(i int) store.Policy {
		return store.Policy{Domain: fmt.Sprintf("d%03d.example", i), P: "reject", SP: "reject", NP: "reject", ADKIM: "r", ASPF: "r",
			FO: "0", Testing: "n", DiscoveryMethod: "treewalk"}
	}
	var rows []store.Row
	for i := range n {
		rows = append(rows, store.Row{Begin: dec(3), End: dec(4), Policy: pol(i), SourceIP: netip.MustParseAddr("203.0.113.5"),
			HeaderFrom: pol(i).Domain, Disposition: "none", DKIMAligned: "pass", SPFAligned: "pass", Reasons: []store.Reason{}, Count: 1})
	}
	_, err := st.RecordRows(ctx, rows)
	must(t, err)
	for i := range n {
		cl, err := st.ClaimReport(ctx, store.Group{Policy: pol(i), Begin: dec(3), End: dec(4)}, "test", time.Hour)
		must(t, err)
		f, ok := failed[i]
		if !ok {
			continue
		}
		must(t, st.SaveBuilt(ctx, cl, store.Built{ReportID: fmt.Sprintf("rep-%03d", i), Filename: "r.xml.gz", Data: []byte("x"),
			Deliveries: []store.Delivery{{Address: "a@x.example", State: store.DeliveryPending}, {Address: "b@x.example", State: store.DeliveryPending}}}))
		for j, a := range []string{"a@x.example", "b@x.example"} {
			if j < f {
				must(t, st.MarkFailed(ctx, cl, a, store.Failure{Temporary: true, Err: "451 later", Next: testNow.Add(time.Hour)}))
			} else {
				must(t, st.MarkSent(ctx, cl, a))
			}
		}
	}
}

// firstReportRow is the first row of the reports table.
func firstReportRow(t *testing.T, body string) string {
	t.Helper()
	_, tbl, ok := strings.Cut(body, `<table id="reports">`)
	_, rest, ok2 := strings.Cut(tbl, "<tbody>")
	row, _, ok3 := strings.Cut(rest, "</tr>")
	if !ok || !ok2 || !ok3 {
		t.Fatalf("no reports table in %q", body)
	}
	return row
}

// TestReportsPageSortLimit: with more reports than the page shows, the
// database's sort picks the right first rows (most failed destinations
// first, newest first), the page says how many it left out, and the
// exports hold every report.
func TestReportsPageSortLimit(t *testing.T) {
	const n = maxReportRows + 20
	st := openStore(t, "")
	manyReports(t, st, n, map[int]int{100: 1, 300: 2, 519: 0})
	ts := newTestServer(t, st, Options{})

	_, body := get(t, ts.URL+"/reports?sort=failed&dir=desc")
	if row := firstReportRow(t, body); !strings.Contains(row, "rep-300") {
		t.Errorf("sorted by failed destinations, first row %q, want rep-300 (two failed)", row)
	}
	if i, j := strings.Index(body, "rep-300"), strings.Index(body, "rep-100"); i < 0 || j < i {
		t.Errorf("rep-100 (one failed) not after rep-300")
	}
	if !strings.Contains(body, fmt.Sprintf("Showing %d of %d reports", maxReportRows, n)) {
		t.Errorf("page does not say it shows %d of %d", maxReportRows, n)
	}
	_, tbl, _ := strings.Cut(body, `<table id="reports">`)
	_, tbody, _ := strings.Cut(tbl, "<tbody>")
	tbody, _, _ = strings.Cut(tbody, "</tbody>")
	if got := strings.Count(tbody, "<tr>"); got != maxReportRows {
		t.Errorf("%d rows in the reports table, want %d", got, maxReportRows)
	}
	_, body = get(t, ts.URL+"/reports?sort=failed&dir=asc")
	if row := firstReportRow(t, body); !strings.Contains(row, "d000.example") || strings.Contains(body, "rep-300") {
		t.Errorf("fewest failed first: first row %q, want d000.example and no rep-300 among the %d shown", row, maxReportRows)
	}
	_, body = get(t, ts.URL+"/reports?sort=domain&dir=desc")
	if row := firstReportRow(t, body); !strings.Contains(row, fmt.Sprintf("d%03d.example", n-1)) {
		t.Errorf("by domain descending, first row %q", row)
	}

	// Every column of the page is a sort the database knows.
	for _, c := range sentCols {
		for _, dir := range []string{"asc", "desc"} {
			if resp, body := get(t, ts.URL+"/reports?sort="+c.Key+"&dir="+dir); resp.StatusCode != 200 {
				t.Errorf("sort=%s&dir=%s: %d %s", c.Key, dir, resp.StatusCode, body)
			}
		}
	}

	resp, body := get(t, ts.URL+"/reports?sort=failed&dir=desc&format=json")
	if resp.StatusCode != 200 {
		t.Fatalf("json: %d", resp.StatusCode)
	}
	var exp struct {
		Reports []sentRow `json:"reports"`
	}
	if err := json.Unmarshal([]byte(body), &exp); err != nil {
		t.Fatal(err)
	}
	if len(exp.Reports) != n || exp.Reports[0].ReportID != "rep-300" || exp.Reports[0].Failed != 2 {
		t.Errorf("json export: %d reports, first %+v; want %d, rep-300 with 2 failed", len(exp.Reports), exp.Reports[0], n)
	}
	_, body = get(t, ts.URL+"/reports?format=csv")
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n+1 {
		t.Errorf("csv export: %d records, want %d and the header", len(recs), n+1)
	}
}
