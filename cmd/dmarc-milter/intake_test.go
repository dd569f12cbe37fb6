package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// intakeConfig writes a configuration accepting reports for example.com,
// with a DNS server that does not answer (the imports must not wait for
// it) and a short PTR budget.
func intakeConfig(t *testing.T, extra string) (cfgPath, storeURL string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath = filepath.Join(dir, "c.toml")
	conf := "[intake]\ndomains = [\"example.com\"]\nptr_budget = \"300ms\"\n" + extra +
		"[dns]\nnameservers = [\"127.0.0.1:1\"]\ntimeout = \"100ms\"\nattempts = 1\n"
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, "sqlite:" + filepath.Join(dir, "store.db")
}

func runCmd(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestReportImportAndQuestions: `report import` of pkg/report's corpus
// stores it and says so in its summary; again, it stores nothing; the
// questions answer in text and in the versioned JSON shape; bad usage
// exits 2.
func TestReportImportAndQuestions(t *testing.T) {
	t.Parallel()
	cfg, url := intakeConfig(t, "")
	corpus := filepath.Join("..", "..", "pkg", "report", "testdata", "incoming")
	code, out, errOut := runCmd("report", "import", "--config", cfg, "--store", url, corpus)
	if code != exitOK {
		t.Fatalf("import exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"8 stored (9 rows, 1069 messages), 10 duplicates",
		"02-rfc7489-namespace.xml: refused not_our_domain",
		"refused not_xml: 2",
		"skipped 3 files", // README.md, make.py, src/10-yahoo-unused.txt
	} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCmd("report", "import", "--config", cfg, "--store", url, "--quiet", corpus)
	if code != exitOK || !strings.Contains(out, " 0 stored (0 rows, 0 messages), 18 duplicates") {
		t.Errorf("re-import exit %d:\n%s", code, out)
	}
	if code, _, _ := runCmd("report", "import", "--config", cfg, "--store", url, "--strict", "--quiet", corpus); code != exitError {
		t.Errorf("--strict with refusals: exit %d, want 1", code)
	}

	code, out, errOut = runCmd("report", "senders", "--config", cfg, "--store", url, "--since", "2025-12-01", "--until", "2025-12-07", "--json", "example.com")
	if code != exitOK {
		t.Fatalf("senders exit %d: %s", code, errOut)
	}
	var rep struct {
		Version  int
		Domain   string
		Since    time.Time
		Messages int64
		Senders  []struct {
			Org        string
			Authorized bool
			Messages   int64
			IPs        []struct{ IP, PTRState string }
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Version != 1 || rep.Domain != "example.com" || rep.Messages != 1069 || len(rep.Senders) != 6 ||
		rep.Senders[0].Org != "192.0.2.25" || rep.Senders[0].Messages != 1053 || !rep.Since.Equal(time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("senders JSON: %+v", rep)
	}
	// Summaries built again (report rebuild-summaries) give the same answer.
	before := out
	if code, msg, errOut := runCmd("report", "rebuild-summaries", "--config", cfg, "--store", url); code != exitOK ||
		!strings.HasPrefix(msg, "summaries rebuilt in ") {
		t.Fatalf("rebuild-summaries exit %d: %s%s", code, msg, errOut)
	}
	if _, after, _ := runCmd("report", "senders", "--config", cfg, "--store", url, "--since", "2025-12-01", "--until", "2025-12-07",
		"--json", "example.com"); after != before {
		t.Errorf("senders after rebuild-summaries:\n%s\nbefore:\n%s", after, before)
	}
	code, out, _ = runCmd("report", "failures", "--config", cfg, "--store", url, "--since", "2025-12-01T00:00:00Z", "--days", "3", "example.com")
	if code != exitConfig {
		t.Errorf("--since with --days: exit %d", code)
	}
	code, out, _ = runCmd("report", "failures", "--config", cfg, "--store", url, "--since", "2025-12-01", "--until", "2025-12-07", "example.com")
	if code != exitOK || !strings.Contains(out, "7 of 1069 messages failed DMARC") || !strings.Contains(out, "fix: ") {
		t.Errorf("failures exit %d:\n%s", code, out)
	}
	code, out, _ = runCmd("report", "new", "--config", cfg, "--store", url, "--since", "2025-12-05", "--until", "2025-12-07", "example.com")
	if code != exitOK || !strings.Contains(out, "new senders of example.com") || strings.Contains(out, "192.0.2.25") {
		t.Errorf("new exit %d (192.0.2.25 was first seen on Dec 1):\n%s", code, out)
	}
	for _, args := range [][]string{
		{"report"}, {"report", "nope"}, {"report", "senders", "--config", cfg, "--store", url},
		{"report", "senders", "--config", cfg, "--store", url, "--since", "yesterday", "example.com"},
		{"report", "import", "--config", cfg, "--store", url},
		{"report", "rebuild-summaries", "--config", cfg, "--store", url, "extra"},
	} {
		if code, _, _ := runCmd(args...); code != exitConfig {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestClean: text from reports shown on a terminal has its control
// characters escaped.
func TestClean(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"esp.example":             "esp.example",
		"evil\x1b[2Jexample":      `evil\x1b[2Jexample`,
		"line\nbreak":             `line\nbreak`,
		"bücher.example":          "bücher.example",
		"\u202egnp.example":       `\u202egnp.example`,
		string([]byte{0xff, 'a'}): `\xffa`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// hostileSet writes the hostile inputs into dir and returns the refusal
// reason each must get, by file name.
func hostileSet(t *testing.T, dir string) map[string]string {
	t.Helper()
	want := map[string]string{}
	// pkg/report's hostile files, each with its reason (from their names).
	src := filepath.Join("..", "..", "pkg", "report", "testdata", "hostile")
	copied, err := filepath.Glob(filepath.Join(src, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range copied {
		if filepath.Base(p) == "README.md" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, "files", filepath.Base(p)), b)
		want[filepath.Base(p)] = "" // any refusal
	}
	// Random bytes in a directory are skipped, not refused (a Maildir
	// holds index files too).
	want["garbage.bin"] = "skipped"
	report := func(domain string, end time.Time, records string) string {
		return fmt.Sprintf(`<feedback><report_metadata><org_name>r</org_name><email>r@r.example</email><report_id>%d</report_id>
<date_range><begin>%d</begin><end>%d</end></date_range></report_metadata>
<policy_published><domain>%s</domain><p>none</p></policy_published>%s</feedback>`, end.Unix(), end.Add(-24*time.Hour).Unix(), end.Unix(), domain, records)
	}
	const record = `<record><row><source_ip>192.0.2.1</source_ip><count>1</count><policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row><identifiers><header_from>example.com</header_from></identifiers><auth_results></auth_results></record>`
	// A gzip bomb: 200 MB of spaces inside a report.
	writeGzip(t, filepath.Join(dir, "gzip-bomb.xml.gz"), "<feedback>", strings.Repeat(" ", 1<<20), 200, "</feedback>")
	want["gzip-bomb.xml.gz"] = "decompressed_too_large"
	// A million records (250 MB of XML).
	writeGzip(t, filepath.Join(dir, "million.xml.gz"), strings.TrimSuffix(report("example.com", time.Now().Add(-time.Hour), ""), "</feedback>"),
		strings.Repeat(record, 1000), 1000, "</feedback>")
	want["million.xml.gz"] = "too_many_records"
	// A zip bomb and a zip whose entry climbs out of its directory.
	writeZip(t, filepath.Join(dir, "zip-bomb.zip"), "r.xml", "<feedback>"+strings.Repeat(" ", 100<<20)+"</feedback>")
	want["zip-bomb.zip"] = "decompressed_too_large"
	writeZip(t, filepath.Join(dir, "path-trick.zip"), "../../etc/r.xml", report("example.com", time.Now().Add(-time.Hour), record))
	want["path-trick.zip"] = "zip_path"
	// Deep nesting, an oversize file, a future and an absurd range, a
	// domain not ours, a message of a thousand parts.
	write(t, filepath.Join(dir, "deep.xml"), []byte("<feedback>"+strings.Repeat("<a>", 100000)))
	want["deep.xml"] = "too_deep"
	write(t, filepath.Join(dir, "oversize.xml"), []byte("<feedback>"+strings.Repeat("<!-- x -->", 2<<20)))
	want["oversize.xml"] = "too_large"
	write(t, filepath.Join(dir, "future.xml"), []byte(report("example.com", time.Now().Add(30*24*time.Hour), record)))
	want["future.xml"] = "future_date_range"
	write(t, filepath.Join(dir, "ancient.xml"), []byte(report("example.com", time.Date(2001, 1, 2, 0, 0, 0, 0, time.UTC), record)))
	want["ancient.xml"] = "absurd_date_range"
	write(t, filepath.Join(dir, "other-domain.xml"), []byte(report("example.net", time.Now().Add(-time.Hour), record)))
	want["other-domain.xml"] = "not_our_domain"
	var parts strings.Builder
	parts.WriteString("Subject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for range 1000 {
		parts.WriteString("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n")
	}
	parts.WriteString("--b--\r\n")
	write(t, filepath.Join(dir, "parts.eml"), []byte(parts.String()))
	want["parts.eml"] = "too_many_parts"
	return want
}

func write(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeGzip writes head, n times body, then tail, gzipped.
func writeGzip(t *testing.T, p, head, body string, n int, tail string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	zw, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	io.WriteString(zw, head)
	for range n {
		io.WriteString(zw, body)
	}
	io.WriteString(zw, tail)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

func writeZip(t *testing.T, p, name, content string) {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, content)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	write(t, p, b.Bytes())
}

// processCPU is the user and system CPU time this process has used.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakHeap samples the heap in use until stop is called.
func peakHeap() (stop func() uint64) {
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// TestReportImportHostile: the hostile set through `report import`:
// every input refused with its reason, in bounded time and memory, the
// store holding no report afterwards.
func TestReportImportHostile(t *testing.T) {
	if testing.Short() {
		t.Skip("writes some 250 MB of gzip input")
	}
	dir := t.TempDir()
	want := hostileSet(t, dir)
	cfg, url := intakeConfig(t, "")
	// `report import` runs on Go's collector defaults; the in-process
	// `serve` of other tests in this binary leaves its [runtime] settings
	// (gc_percent 400) in force, which let the heap grow to five times the
	// live data, so they are set back for the measurement.
	oldGC, oldLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(oldGC); debug.SetMemoryLimit(oldLimit) })
	runtime.GC()
	stop := peakHeap()
	cpu0 := processCPU(t)
	code, out, errOut := runCmd("report", "import", "--config", cfg, "--store", url, dir)
	// CPU time rather than wall time: the bound is on the work the hostile
	// set costs, which a busy machine does not change.
	cpu := processCPU(t) - cpu0
	peak := stop()
	t.Logf("hostile import: %v CPU, peak heap %d MiB\n%s", cpu, peak>>20, out)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	line := regexp.MustCompile(`(?m)^(\S+): (?:refused )?(\S+?):`)
	got := map[string]string{}
	for _, m := range line.FindAllStringSubmatch(out, -1) {
		got[filepath.Base(m[1])] = m[2]
	}
	for name, reason := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: not refused", name)
		case reason != "" && g != reason:
			t.Errorf("%s: refused %s, want %s", name, g, reason)
		}
	}
	if !strings.Contains(out, " 0 stored (0 rows, 0 messages)") {
		t.Errorf("something was stored:\n%s", out)
	}
	st, err := store.Open(context.Background(), url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, rows, _, err := st.ReceivedCount(context.Background(), ""); err != nil || n != 0 || rows != 0 {
		t.Errorf("store holds %d reports, %d rows (%v)", n, rows, err)
	}
	if cpu > 60*time.Second {
		t.Errorf("hostile import took %v of CPU", cpu)
	}
	if peak > 200<<20 {
		t.Errorf("peak heap %d MiB", peak>>20)
	}
}
