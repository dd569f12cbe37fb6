package web

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/dmarc-milter/dmarc-milter/internal/pgtest"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// The browser tests drive Debian's chromium (scripts/install-deps.sh)
// headless through the DevTools protocol (chromedp): each page is loaded
// from a real HTTP listener over a store filled through the intake, and the
// test watches every request the page makes, every console message and
// every uncaught exception.

// chromiumPath finds the browser: $CHROMIUM, else /usr/bin/chromium. Under
// CI=true a missing browser fails the test; locally it skips loudly.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(p); err != nil {
		msg := fmt.Sprintf("chromium not found at %s (apt-get install chromium, or scripts/install-deps.sh): %v", p, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPING BROWSER TEST: " + msg)
	}
	return p
}

// newBrowser starts a headless chromium with a fresh profile, stopped when
// t ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox, // as root, chromium refuses to start with its sandbox
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// watcher records what a page does beyond rendering: requests to other
// hosts, console messages, exceptions, and log entries of level error (a
// failed load, a CSP violation).
type watcher struct {
	host     string
	mu       sync.Mutex
	requests []string
	problems []string
}

// watch subscribes to ctx's tab for the page served on host.
func watch(t *testing.T, ctx context.Context, host string) *watcher {
	w := &watcher{host: host}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // cleanups run last first: cancel, then wait
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	reqs := chromedp.Events(wctx, network.RequestWillBeSent)
	console := chromedp.Events(wctx, cdpruntime.ConsoleAPICalled)
	exceptions := chromedp.Events(wctx, cdpruntime.ExceptionThrown)
	logs := chromedp.Events(wctx, cdplog.EntryAdded)
	collect := func(fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if v := recover(); v != nil {
					w.problem(fmt.Sprintf("watcher panicked: %v\n%s", v, debug.Stack()))
				}
			}()
			fn()
		}()
	}
	collect(func() {
		for ev, err := range reqs {
			if err != nil {
				return
			}
			w.request(ev.Request.URL)
		}
	})
	collect(func() {
		for ev, err := range console {
			if err != nil {
				return
			}
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			w.problem(fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
		}
	})
	collect(func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			w.problem(fmt.Sprintf("exception: %s", ev.ExceptionDetails.Text))
		}
	})
	collect(func() {
		for ev, err := range logs {
			if err != nil {
				return
			}
			if ev.Entry.Level == cdplog.EntryLevelError || ev.Entry.Level == cdplog.EntryLevelWarning {
				w.problem(fmt.Sprintf("log %s/%s: %s (%s)", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
			}
		}
	})
	return w
}

func (w *watcher) request(u string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.requests = append(w.requests, u)
	p, err := url.Parse(u)
	if err == nil && p.Scheme == "data" {
		// No network: chromium's own date-picker icon is a data: URL
		// (the page's CSP would refuse a data: image of the page's).
		return
	}
	if err != nil || p.Host != w.host || p.Scheme != "http" {
		w.problems = append(w.problems, "request to another host: "+u)
	}
}

func (w *watcher) problem(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.problems = append(w.problems, s)
}

// check fails t with every problem seen so far and forgets them; it also
// returns the requests seen.
func (w *watcher) check(t *testing.T, page string) []string {
	t.Helper()
	time.Sleep(150 * time.Millisecond) // events trail the load event
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.problems {
		t.Errorf("%s: %s", page, p)
	}
	reqs := w.requests
	w.problems, w.requests = nil, nil
	return reqs
}

// screenshotDir is where screenshots go: $SCREENSHOT_DIR (make
// screenshots: docs/img), else the test's temp dir.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("SCREENSHOT_DIR"); d != "" {
		return d
	}
	return t.TempDir()
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// noScriptRan checks that no payload of the XSS corpus ran: none sets
// window.__pwned, and the title is ours.
func noScriptRan(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.__pwned !== "undefined"`))
	if err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if pwned || !strings.HasSuffix(title, "· dmarc-milter") {
		t.Errorf("%s: a payload ran (window.__pwned set: %v, title %q)", page, pwned, title)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// TestBrowserPages loads every page in chromium over the fixture, on
// SQLite and on PostgreSQL: expected rows and totals, no console message or
// exception, no request to another host, no script from the XSS corpus
// run, the hostile text shown as text; then sorting, the date range and a
// CSV export by clicking. Screenshots of each page are saved.
func TestBrowserPages(t *testing.T) {
	ctx := newBrowser(t)
	t.Run("sqlite", func(t *testing.T) { browserPages(t, ctx, fixture(t, ""), true) })
	t.Run("postgresql", func(t *testing.T) {
		tctx, cancel := chromedp.NewContext(ctx) // a new tab of the same browser
		defer cancel()
		browserPages(t, tctx, fixture(t, pgtest.Database(t)), false)
	})
}

func browserPages(t *testing.T, ctx context.Context, st *store.Store, shots bool) {
	ts := newTestServer(t, st, Options{})
	host := strings.TrimPrefix(ts.URL, "http://")
	w := watch(t, ctx, host)
	dir := screenshotDir(t)
	pages := []struct {
		name, path string
		checks     map[string]string // selector → text it must contain
	}{
		{"domains", "/", map[string]string{"#total-messages": "212", "#domains tbody tr:first-child td:first-child": "example.com",
			"#domains tbody tr:first-child td:nth-child(3)": "88.2 %"}},
		{"senders", "/senders?domain=example.com", map[string]string{"#total-messages": "170",
			"#senders tbody tr:first-child td:first-child": "esp.example", "#senders tbody tr:nth-child(2) td:nth-child(2)": "unknown"}},
		{"failures", "/failures?domain=example.com", map[string]string{"#total-messages": "170", "#total-fail": "20",
			"#failures tbody tr:first-child td:first-child": "neither SPF nor DKIM"}},
		{"inbound", "/inbound", map[string]string{"#total-messages": "150", "#spoofed tbody tr:first-child": "paypal.example",
			"#overrides tbody": "List-Id present"}},
		{"reports", "/reports", map[string]string{"#reports tbody tr:first-child": "report-1", "#suppressed tbody": "dmarc@gone.example"}},
		// The XSS corpus's domain: hostile org_name, selector, comment,
		// PTR names.
		{"xss-failures", "/failures?domain=example.net", map[string]string{
			"#overrides tbody": `<script>window.__pwned=1;document.title="PWNED"</script>`,
			"#failures tbody":  `<svg onload="window.__pwned=4"></svg>._domainkey.example.net`}},
		{"xss-senders", "/senders?domain=example.net", map[string]string{"#senders tbody": `<b onmouseover="window.__pwned=8">evil</b>`}},
	}
	for _, p := range pages {
		if err := do(ctx, chromedp.Navigate(ts.URL+p.path), chromedp.WaitReady("main")); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		for sel, want := range p.checks {
			if got := text(t, ctx, sel); !strings.Contains(got, want) {
				t.Errorf("%s: %s shows %q, want it to contain %q", p.name, sel, got, want)
			}
		}
		noScriptRan(t, ctx, p.name)
		reqs := w.check(t, p.name)
		if !slicesContain(reqs, "/static/style.css") {
			t.Errorf("%s: the stylesheet was not loaded (requests %q)", p.name, reqs)
		}
		if shots {
			screenshot(t, ctx, dir, p.name)
		}
	}
	if t.Failed() {
		return
	}
	browserSorting(t, ctx, ts.URL, w)
	browserRange(t, ctx, ts.URL, w)
	browserExport(t, ctx, ts.URL, w)
}

func slicesContain(reqs []string, suffix string) bool {
	for _, r := range reqs {
		if strings.HasSuffix(r, suffix) {
			return true
		}
	}
	return false
}

// browserSorting clicks the Messages header of the senders table (sorted
// by messages, most first): the order reverses.
func browserSorting(t *testing.T, ctx context.Context, base string, w *watcher) {
	if err := do(ctx, chromedp.Navigate(base+"/senders?domain=example.com"), chromedp.WaitReady("#senders")); err != nil {
		t.Fatal(err)
	}
	first := "#senders tbody tr:first-child td:nth-child(4)"
	if got := text(t, ctx, first); got != "150" {
		t.Fatalf("default order: first row has %q messages, want 150", got)
	}
	if err := do(ctx, chromedp.Click(`#senders thead th:nth-child(4) a`)); err != nil {
		t.Fatal(err)
	}
	loc := waitURL(t, ctx, "sort=messages")
	if got := text(t, ctx, first); got != "20" || !strings.Contains(loc, "dir=asc") {
		t.Errorf("after sorting: first row has %q messages at %s, want 20 with dir=asc", got, loc)
	}
	w.check(t, "sorting")
}

// browserRange sets the date range to 2026-12-02 alone through the form:
// only that day's 50 messages of example.com remain.
func browserRange(t *testing.T, ctx context.Context, base string, w *watcher) {
	if err := do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitReady("form.range"),
		chromedp.SetValue(`input[name="from"]`, "2026-12-02"), chromedp.SetValue(`input[name="to"]`, "2026-12-02"),
		chromedp.Click(`form.range button`)); err != nil {
		t.Fatal(err)
	}
	loc := waitURL(t, ctx, "from=2026-12-02")
	if got := text(t, ctx, "#total-messages"); got != "50" {
		t.Errorf("range 2026-12-02: total %q at %s, want 50", got, loc)
	}
	if got := text(t, ctx, "#domains tbody"); strings.Contains(got, "example.org") {
		t.Errorf("range 2026-12-02 shows example.org (reported on Dec 3): %q", got)
	}
	w.check(t, "range")
}

// browserExport clicks the CSV export of the XSS domain's failures: the
// file arrives, and no cell starts a formula.
func browserExport(t *testing.T, ctx context.Context, base string, w *watcher) {
	dir := t.TempDir()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	progress := chromedp.Events(tctx, browser.DownloadProgress)
	err := do(ctx, chromedp.Navigate(base+"/failures?domain=example.net"), chromedp.WaitReady("#export-csv"),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: ptr(true)})
			return err
		}),
		chromedp.Click("#export-csv"))
	if err != nil {
		t.Fatal(err)
	}
	var guid string
	for ev, err := range progress {
		if err != nil {
			t.Fatal(err)
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			guid = ev.GUID
			break
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("download canceled")
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, guid))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
	if err != nil || len(recs) < 2 || recs[0][0] != "cause" {
		t.Fatalf("export: %v, %q", err, b)
	}
	for _, rec := range recs {
		for _, c := range rec {
			if c != "" && strings.ContainsRune("=+-@", rune(c[0])) {
				t.Errorf("exported cell %q starts a formula", c)
			}
		}
	}
	w.check(t, "export")
}

func ptr[T any](v T) *T { return &v }

// waitURL waits until the tab's location contains want (a click's
// navigation has happened) and the new page's main element is there.
func waitURL(t *testing.T, ctx context.Context, want string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err == nil && strings.Contains(loc, want) {
			if err := do(ctx, chromedp.WaitReady("main")); err != nil {
				t.Fatal(err)
			}
			return loc
		}
		if time.Now().After(deadline) {
			t.Fatalf("location %q never contained %q (%v)", loc, want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// do runs the steps with a deadline, so that a page that never shows what
// is waited for fails the test instead of hanging it.
func do(ctx context.Context, steps ...chromedp.Action[chromedp.Void]) error {
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return chromedp.Do(tctx, steps...)
}

// TestBrowserChecksCanFail: the checks above see what they look for. A page
// with an inline script and no CSP runs it (the marker is set); the same
// page behind our headers does not, and the blocked script is reported; an
// image from another host is reported as such.
func TestBrowserChecksCanFail(t *testing.T) {
	ctx := newBrowser(t)
	page := `<!DOCTYPE html><title>t · dmarc-milter</title><main>x</main><script>window.__pwned=1</script><img src="http://192.0.2.1/x.png">`
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, page)
	}))
	defer bare.Close()
	guarded := httptest.NewServer(securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, page)
	})))
	defer guarded.Close()

	w := watch(t, ctx, strings.TrimPrefix(bare.URL, "http://"))
	if err := do(ctx, chromedp.Navigate(bare.URL), chromedp.WaitReady("main")); err != nil {
		t.Fatal(err)
	}
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.__pwned !== "undefined"`))
	if err != nil || !pwned {
		t.Errorf("without CSP the inline script should have run: %v %v", pwned, err)
	}
	if p := w.take(); !containsPrefix(p, "request to another host: http://192.0.2.1/") {
		t.Errorf("the foreign image was not reported: %q", p)
	}

	w.mu.Lock()
	w.host = strings.TrimPrefix(guarded.URL, "http://")
	w.mu.Unlock()
	if err := do(ctx, chromedp.Navigate(guarded.URL), chromedp.WaitReady("main")); err != nil {
		t.Fatal(err)
	}
	pwned, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.__pwned !== "undefined"`))
	if err != nil || pwned {
		t.Errorf("behind our CSP the inline script ran: %v %v", pwned, err)
	}
	if p := w.take(); !containsSubstring(p, "Content Security Policy") {
		t.Errorf("the blocked script was not reported: %q", p)
	}
}

// take returns the problems seen after the page settled, and forgets them.
func (w *watcher) take() []string {
	time.Sleep(300 * time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.problems
	w.problems, w.requests = nil, nil
	return p
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

func containsSubstring(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
