package report

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestHostileFiles: each file of testdata/hostile is refused with its
// reason.
func TestHostileFiles(t *testing.T) {
	t.Parallel()
	cases := map[string]RefusalReason{
		"billion-laughs.xml":     RefusalDTD,            // entity expansion bomb
		"external-entity.xml":    RefusalDTD,            // XXE: SYSTEM entity
		"undeclared-entity.xml":  RefusalMalformedXML,   // &xxe; without a DTD
		"bad-utf8.xml":           RefusalInvalidUTF8,    // \xff\xfe in a text
		"truncated-utf8.xml":     RefusalInvalidUTF8,    // the file ends inside a rune
		"latin1.xml":             RefusalInvalidUTF8,    // declared ISO-8859-1, bytes not UTF-8
		"latin1-ascii.xml":       RefusalEncoding,       // declared windows-1252
		"wrong-root.xml":         RefusalNotFeedback,    // <html>
		"foreign-namespace.xml":  RefusalNotFeedback,    // feedback in another namespace
		"no-report-id.xml":       RefusalMissingElement, // report_metadata without report_id
		"no-records.xml":         RefusalMissingElement, // RFC 9990 §3.1.1.2: at least one record
		"no-header-from.xml":     RefusalMissingElement, // identifiers without header_from
		"bad-count.xml":          RefusalBadValue,       // <count>lots</count>
		"bad-ip.xml":             RefusalBadValue,       // 999.0.2.1
		"bad-date.xml":           RefusalBadValue,       // <end>tomorrow</end>
		"duplicate-metadata.xml": RefusalDuplicate,      // report_metadata twice
		"two-roots.xml":          RefusalMalformedXML,   // a second root element
		"truncated.xml":          RefusalMalformedXML,   // ends in the middle
		"fake-zip.zip":           RefusalCorruptArchive, // zip magic, no zip
		"garbage.bin":            RefusalUnknownFormat,  // neither XML, gzip nor zip
	}
	files, err := filepath.Glob("testdata/hostile/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases)+1 { // and README.md
		t.Errorf("%d files in testdata/hostile, %d cases", len(files), len(cases))
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata/hostile", name))
			if err != nil {
				t.Fatal(err)
			}
			f, err := ParseFile(bytes.NewReader(data), Limits{})
			assertRefused(t, f, err, want)
		})
	}
}

func assertRefused(t *testing.T, f any, err error, want RefusalReason) {
	t.Helper()
	got, ok := ReasonOf(err)
	if !ok || got != want {
		t.Fatalf("err = %v, want refusal %s", err, want)
	}
	switch v := f.(type) {
	case *Feedback:
		if v != nil {
			t.Errorf("a report came back with the refusal")
		}
	case []*Feedback:
		if v != nil {
			t.Errorf("reports came back with the refusal")
		}
	}
}

// minimalReport is a valid report with n records and extra inserted
// before the first record (an extension, say).
func minimalReport(n int, extra string) string {
	var b strings.Builder
	b.WriteString(`<feedback><report_metadata><org_name>o</org_name><email>e@example.com</email><report_id>r</report_id>` +
		`<date_range><begin>1764892800</begin><end>1764979200</end></date_range></report_metadata>` +
		`<policy_published><domain>example.com</domain><p>none</p></policy_published>` + extra)
	for i := range n {
		b.WriteString(recordXML(i))
	}
	b.WriteString("</feedback>")
	return b.String()
}

func recordXML(i int) string {
	return fmt.Sprintf(`<record><row><source_ip>10.%d.%d.%d</source_ip><count>1</count><policy_evaluated>`+
		`<disposition>none</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row>`+
		`<identifiers><header_from>example.com</header_from></identifiers><auth_results>`+
		`<spf><domain>example.com</domain><result>fail</result></spf></auth_results></record>`+"\n",
		i>>16&255, i>>8&255, i&255)
}

func gzipped(t testing.TB, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type zipEntrySpec struct {
	name  string
	data  string
	flags uint16
	// lieSize, when set, is the uncompressed size written in the headers.
	lieSize uint64
}

func zipped(t testing.TB, entries ...zipEntrySpec) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range entries {
		if e.lieSize != 0 {
			var comp bytes.Buffer
			fw, _ := flate.NewWriter(&comp, flate.BestCompression)
			fw.Write([]byte(e.data))
			fw.Close()
			w, err := zw.CreateRaw(&zip.FileHeader{Name: e.name, Method: zip.Deflate, CRC32: crc32.ChecksumIEEE([]byte(e.data)),
				CompressedSize64: uint64(comp.Len()), UncompressedSize64: e.lieSize})
			if err != nil {
				t.Fatal(err)
			}
			w.Write(comp.Bytes())
			continue
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Deflate, Flags: e.flags})
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, e.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestHostileGenerated: refusals of inputs built in the test.
func TestHostileGenerated(t *testing.T) {
	t.Parallel()
	ok := minimalReport(1, "")
	// 2 MiB of tiny elements, each a child of feedback (unknown, skipped),
	// so that only the byte limits stop them.
	big := strings.Repeat("<x/>", 1<<19)
	small := Limits{MaxXMLBytes: 512 << 10, MaxInputBytes: 512 << 10}
	cases := []struct {
		name  string
		input []byte
		lim   Limits
		want  RefusalReason
	}{
		{"deep nesting", []byte("<feedback>" + strings.Repeat("<a>", 10000) + strings.Repeat("</a>", 10000) + "</feedback>"), Limits{}, RefusalTooDeep},
		{"deep nesting in an extension", []byte(minimalReport(1, "<extension>"+strings.Repeat("<x:a xmlns:x='urn:x'>", 40)+strings.Repeat("</x:a>", 40)+"</extension>")), Limits{}, RefusalTooDeep},
		{"huge text", []byte(strings.Replace(ok, "<org_name>o", "<org_name>"+strings.Repeat("o", 100<<10), 1)), Limits{}, RefusalTokenTooLarge},
		{"huge attribute", []byte(strings.Replace(ok, "<org_name>", `<org_name lang="`+strings.Repeat("e", 100<<10)+`">`, 1)), Limits{}, RefusalTokenTooLarge},
		{"many attributes", []byte(strings.Replace(ok, "<org_name>", "<org_name"+strings.Repeat(" a=''", 1)+attrs(100)+">", 1)), Limits{}, RefusalTokenTooLarge},
		{"huge comment", []byte(strings.Replace(ok, "<org_name>", "<!--"+strings.Repeat("c", 100<<10)+"--><org_name>", 1)), Limits{}, RefusalTokenTooLarge},
		{"too many records", []byte(minimalReport(11, "")), Limits{MaxRecords: 10}, RefusalTooManyRecords},
		{"a million reasons", []byte(strings.Replace(ok, "</policy_evaluated>", strings.Repeat("<reason><type>other</type></reason>", 1_000_000)+"</policy_evaluated>", 1)), Limits{}, RefusalTooManyElements},
		{"huge element name", []byte(strings.Replace(ok, "<org_name>", "<"+strings.Repeat("n", 100<<10)+"/><org_name>", 1)), Limits{}, RefusalTokenTooLarge},
		{"huge processing instruction", []byte("<?pi " + strings.Repeat("p", 100<<10) + "?>" + ok), Limits{}, RefusalTokenTooLarge},
		{"too many dkim results", []byte(strings.Replace(ok, "<auth_results>", "<auth_results>"+strings.Repeat("<dkim><domain>d</domain><selector>s</selector><result>pass</result></dkim>", 201), 1)), Limits{}, RefusalTooManyElements},
		{"xml over MaxInputBytes", []byte(minimalReport(0, big)), small, RefusalTooLarge},
		{"gzip bomb", gzipped(t, minimalReport(0, big)), small, RefusalDecompressedTooLarge},
		{"gzip truncated", gzipped(t, ok)[:40], Limits{}, RefusalCorruptArchive},
		{"gzip bad checksum", corruptTrailer(gzipped(t, ok)), Limits{}, RefusalCorruptArchive},
		{"gzip over MaxInputBytes", gzipped(t, ok), Limits{MaxInputBytes: 100}, RefusalTooLarge},
		{"zip bomb (declared size)", zipped(t, zipEntrySpec{name: "r.xml", data: minimalReport(0, big)}), small, RefusalDecompressedTooLarge},
		{"zip whose header lies about the size", zipped(t, zipEntrySpec{name: "r.xml", data: minimalReport(0, big), lieSize: 1000}), small, RefusalCorruptArchive},
		{"zip slip", zipped(t, zipEntrySpec{name: "../../etc/cron.d/r.xml", data: ok}), Limits{}, RefusalZipPath},
		{"zip absolute path", zipped(t, zipEntrySpec{name: "/tmp/r.xml", data: ok}), Limits{}, RefusalZipPath},
		{"zip backslash", zipped(t, zipEntrySpec{name: `..\r.xml`, data: ok}), Limits{}, RefusalZipPath},
		{"zip two reports", zipped(t, zipEntrySpec{name: "a.xml", data: ok}, zipEntrySpec{name: "b.xml", data: ok}), Limits{}, RefusalZipEntries},
		{"zip no xml", zipped(t, zipEntrySpec{name: "a.txt", data: ok}, zipEntrySpec{name: "b.txt", data: ok}), Limits{}, RefusalZipEntries},
		{"zip encrypted", zipped(t, zipEntrySpec{name: "a.xml", data: ok, flags: 1}), Limits{}, RefusalZipEntries},
		{"zip many entries", zipped(t, manyEntries(20)...), Limits{}, RefusalZipEntries},
		{"zip empty", zipped(t), Limits{}, RefusalZipEntries},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := ParseFile(bytes.NewReader(tc.input), tc.lim)
			assertRefused(t, f, err, tc.want)
		})
	}
	// The valid variants of the same builders parse: the refusals above
	// are for the reason named, not for a broken builder.
	for name, in := range map[string][]byte{
		"xml":            []byte(ok),
		"gzip":           gzipped(t, ok),
		"zip":            zipped(t, zipEntrySpec{name: "r.xml", data: ok}),
		"zip one file":   zipped(t, zipEntrySpec{name: "report", data: ok}),
		"zip with a dir": zipped(t, zipEntrySpec{name: "dir/", data: ""}, zipEntrySpec{name: "dir/r.xml", data: ok}),
	} {
		if _, err := ParseFile(bytes.NewReader(in), Limits{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func attrs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " a%d=''", i)
	}
	return b.String()
}

func manyEntries(n int) []zipEntrySpec {
	var out []zipEntrySpec
	for i := range n {
		out = append(out, zipEntrySpec{name: fmt.Sprintf("f%d.txt", i), data: "x"})
	}
	return out
}

func corruptTrailer(gz []byte) []byte {
	out := bytes.Clone(gz)
	out[len(out)-8] ^= 0xff // the CRC-32 of the gzip trailer
	return out
}

// TestHostileMessages: refusals of report messages.
func TestHostileMessages(t *testing.T) {
	t.Parallel()
	head := "From: r@example.net\r\nTo: d@example.com\r\nSubject: Report\r\nMIME-Version: 1.0\r\n"
	part := func(ct, body string) string {
		return "--b\r\nContent-Type: " + ct + "\r\n\r\n" + body + "\r\n"
	}
	var many strings.Builder
	for range 100 {
		many.WriteString(part("text/plain", "hi"))
	}
	nested := head + "Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n"
	for i := 1; i <= 10; i++ {
		nested += fmt.Sprintf("--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i-1, i)
	}
	cases := []struct {
		name string
		msg  string
		lim  Limits
		want RefusalReason
	}{
		{"no report", head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part("text/plain", "hello") + "--b--\r\n", Limits{}, RefusalNoReport},
		{"plain text", head + "\r\nJust text.\r\n", Limits{}, RefusalNoReport},
		{"too many parts", head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + many.String() + "--b--\r\n", Limits{}, RefusalTooManyParts},
		{"nested too deep", nested, Limits{}, RefusalTooManyParts},
		{"too large", head + "\r\n" + strings.Repeat("x", 2000), Limits{MaxInputBytes: 1000}, RefusalTooLarge},
		{"multipart without boundary", head + "Content-Type: multipart/mixed\r\n\r\nx\r\n", Limits{}, RefusalMIME},
		{"bad base64", head + "Content-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!****\r\n", Limits{}, RefusalMIME},
		{"no header end", "From r@example.net", Limits{}, RefusalMIME},
		{"hostile attachment", head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part("text/xml", "<feedback>"+strings.Repeat("<a>", 100)) + "--b--\r\n", Limits{}, RefusalTooDeep},
		{"too many reports", head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + strings.Repeat(part("text/xml", minimalReport(1, "")), 3) + "--b--\r\n", Limits{MaxReports: 2}, RefusalTooManyParts},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMessage(strings.NewReader(tc.msg), tc.lim)
			assertRefused(t, got, err, tc.want)
		})
	}
	// A text part that only looks like XML does not hide the report.
	msg := head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part("text/plain", "<https://example.net/dmarc> says hello") +
		part("text/plain", "<p>not a report</p>") + part("text/xml", minimalReport(1, "")) + "--b--\r\n"
	if got, err := ParseMessage(strings.NewReader(msg), Limits{}); err != nil || len(got) != 1 {
		t.Errorf("ParseMessage = %d reports, %v; want the text/xml report", len(got), err)
	}
}

// TestMillionRecords streams a report of one million records through a
// pipe (never whole in memory) and checks that it is refused at the record
// limit, having read only a little of it, with the heap bounded and in
// bounded time.
//
// Not parallel, as TestGzipBombMemory: they measure the heap.
func TestMillionRecords(t *testing.T) {
	const total, limit = 1_000_000, 20_000
	pr, pw := io.Pipe()
	var written int
	var peakHeap uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				pw.CloseWithError(fmt.Errorf("generator panicked: %v", r))
			}
		}()
		w := bufio.NewWriterSize(pw, 64<<10)
		head := minimalReport(0, "")
		if _, err := io.WriteString(w, strings.TrimSuffix(head, "</feedback>")); err != nil {
			return
		}
		for written = 0; written < total; written++ {
			if written == limit {
				// The parser holds about limit records now: the peak.
				var ms runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms)
				peakHeap = ms.HeapAlloc
			}
			if _, err := io.WriteString(w, recordXML(written)); err != nil {
				return // the parser stopped reading
			}
		}
		io.WriteString(w, "</feedback>")
		w.Flush()
		pw.Close()
	}()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	f, err := Parse(pr, Limits{MaxRecords: limit})
	elapsed := time.Since(start)
	pr.Close()
	<-done
	assertRefused(t, f, err, RefusalTooManyRecords)
	t.Logf("refused after %d of %d records in %v; heap %d MiB before, %d MiB at the limit",
		written, total, elapsed, before.HeapAlloc>>20, peakHeap>>20)
	if written > limit+1000 {
		t.Errorf("the generator wrote %d records: the parser read far past its limit", written)
	}
	if peakHeap > before.HeapAlloc+64<<20 {
		t.Errorf("heap grew by %d MiB for %d records (bound 64 MiB)", (peakHeap-before.HeapAlloc)>>20, limit)
	}
	if elapsed > 60*time.Second {
		t.Errorf("took %v", elapsed)
	}
}

// TestGzipBombMemory: a gzip bomb streamed through a pipe, 1 GiB of XML
// once inflated, is refused at MaxXMLBytes with bounded allocation.
func TestGzipBombMemory(t *testing.T) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				pw.CloseWithError(fmt.Errorf("generator panicked: %v", r))
			}
		}()
		zw, _ := gzip.NewWriterLevel(pw, gzip.BestCompression)
		io.WriteString(zw, strings.TrimSuffix(minimalReport(0, ""), "</feedback>"))
		chunk := strings.Repeat("<x/>", 1<<14)
		for i := 0; i < (1<<30)/len(chunk); i++ {
			if _, err := io.WriteString(zw, chunk); err != nil {
				return
			}
		}
		zw.Close()
		pw.Close()
	}()
	const limit = 4 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	peak := sampleHeap()
	start := time.Now()
	f, err := ParseFile(pr, Limits{MaxXMLBytes: limit})
	elapsed := time.Since(start)
	peakHeap := peak()
	runtime.ReadMemStats(&after)
	pr.Close()
	<-done
	assertRefused(t, f, err, RefusalDecompressedTooLarge)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("refused in %v; heap %d MiB before, at most %d MiB during; %d MiB allocated in all (garbage included)",
		elapsed, before.HeapAlloc>>20, peakHeap>>20, alloc>>20)
	if peakHeap > before.HeapAlloc+64<<20 {
		t.Errorf("heap grew by %d MiB (bound 64 MiB)", (peakHeap-before.HeapAlloc)>>20)
	}
	// Each of the million elements in 4 MiB of XML costs a few small
	// allocations, dropped at once: the total grows with the limit, not
	// with the gigabyte the bomb holds.
	if alloc > 128*limit {
		t.Errorf("allocated %d MiB, over 128 times the %d MiB limit", alloc>>20, limit>>20)
	}
}

// sampleHeap samples HeapAlloc every few milliseconds until the returned
// function is called, which returns the highest value seen.
func sampleHeap() func() uint64 {
	stop := make(chan struct{})
	result := make(chan uint64)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				result <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(stop)
		return <-result
	}
}
