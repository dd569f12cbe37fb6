package milter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/authres"
)

// Hostile messages (issue 8): each goes through a real session; the
// answer must be the safe verdict, the message must cost bounded memory and
// time, and exactly one verdict line must be logged for it. The figures
// (time, peak heap growth) are logged for docs/reliability.md.
//
// Not parallel: the heap is measured.

// heapPeak samples the live heap until stop is called and returns the
// highest HeapAlloc seen.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// hostile is one hostile message: the envelope, the header fields (sent
// as they are, NUL bytes included), a body generator, and the expectation.
type hostile struct {
	name     string
	ip       string
	mailFrom string
	fields   []HeaderField
	body     func(send func([]byte)) // calls send for each body chunk
	want     string                  // "reject" (550), "accept"
	check    func(t *testing.T, h *harness, mods []string)
	maxHeap  uint64 // bound of the peak heap growth
}

const mib = 1 << 20

func repeatFields(n int, f func(i int) HeaderField) []HeaderField {
	out := make([]HeaderField, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func stdFields(from string) []HeaderField {
	return []HeaderField{{"From", " " + from}, {"To", " bob@mx.test.example"}, {"Subject", " hostile"}}
}

// chunked sends n octets of a repeated pattern in 64 KiB chunks.
func chunked(n int, pattern string) func(send func([]byte)) {
	return func(send func([]byte)) {
		chunk := []byte(strings.Repeat(pattern, 65536/len(pattern)+1)[:65535])
		for sent := 0; sent < n; sent += len(chunk) {
			send(chunk[:min(len(chunk), n-sent)])
		}
	}
}

func hostileCases(t *testing.T) []hostile {
	signed := signMessage(t, []byte(message("pass.example")))
	sigFields, _ := SplitMessage(signed)
	var sig HeaderField
	for _, f := range sigFields {
		if strings.EqualFold(f.Name, "DKIM-Signature") {
			sig = f
		}
	}
	mailboxes := func() string {
		var b strings.Builder
		for i := 0; b.Len() < mib-64; i++ {
			fmt.Fprintf(&b, "a%d@d%d.example, ", i, i)
		}
		return strings.TrimSuffix(b.String(), ", ")
	}
	nested := func(send func([]byte)) {
		var b bytes.Buffer
		for i := range 10000 {
			fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i, i+1)
		}
		for i := 10000; i >= 0; i-- {
			fmt.Fprintf(&b, "--b%d--\r\n", i)
		}
		for p := b.Bytes(); len(p) > 0; p = p[min(len(p), 65535):] {
			send(p[:min(len(p), 65535)])
		}
	}
	return []hostile{
		{name: "1 MB header field", ip: "198.51.100.7", mailFrom: "x@reject.example",
			fields: append(stdFields("a@reject.example"), HeaderField{"X-Big", " " + strings.Repeat("x", 1000000)}),
			want:   "reject", maxHeap: 32 * mib},
		{name: "1 MB From of open comments", ip: "192.0.2.10", mailFrom: "x@pass.example",
			fields: stdFields("a@pass.example " + strings.Repeat("(", 1000000)),
			want:   "reject", maxHeap: 32 * mib},
		{name: "1 MB From of quoted pairs and nested groups", ip: "192.0.2.10", mailFrom: "x@pass.example",
			fields: stdFields(strings.Repeat("g:", 100000) + "\"" + strings.Repeat("\\\"", 400000) + " <a@pass.example>"),
			want:   "reject", maxHeap: 32 * mib},
		{name: "1 MB From of 40 000 mailboxes of distinct domains", ip: "198.51.100.7", mailFrom: "x@reject.example",
			fields: stdFields(mailboxes()), want: "reject", maxHeap: 48 * mib,
			check: func(t *testing.T, h *harness, _ []string) {
				// Discovery runs for dmarc.from.max_domains domains only.
				if q := h.dns.Queries(); q > 100 {
					t.Errorf("%d DNS queries for one message", q)
				}
			}},
		{name: "10 000 header fields", ip: "198.51.100.7", mailFrom: "x@reject.example",
			fields: append(repeatFields(10000, func(i int) HeaderField {
				return HeaderField{fmt.Sprintf("X-Filler-%d", i), " " + strings.Repeat("v", 80)}
			}), stdFields("a@reject.example")...),
			want: "reject", maxHeap: 32 * mib},
		{name: "1 000 From fields", ip: "192.0.2.10", mailFrom: "x@pass.example",
			fields: append(repeatFields(1000, func(i int) HeaderField {
				return HeaderField{"From", fmt.Sprintf(" a%d@pass.example", i)}
			}), HeaderField{"From", " b@reject.example"}),
			want: "reject", maxHeap: 32 * mib},
		{name: "100 DKIM signatures", ip: "192.0.2.10", mailFrom: "x@pass.example",
			fields: append(append([]HeaderField{sig}, repeatFields(99, func(i int) HeaderField {
				return HeaderField{"DKIM-Signature", fmt.Sprintf(" v=1; a=rsa-sha256; d=sig%d.example; s=sel; h=from; bh=AAAA; b=AAAA", i)}
			})...), stdFields("a@pass.example")...),
			body: chunked(1000, "Hello.\r\n"), want: "accept", maxHeap: 32 * mib,
			check: func(t *testing.T, h *harness, _ []string) {
				keys := 0
				for i := range 99 {
					keys += h.dns.QueriesFor(fmt.Sprintf("sel._domainkey.sig%d.example", i), 16)
				}
				keys += h.dns.QueriesFor("sel._domainkey.pass.example", 16)
				if keys > h.eng.cfg.DKIM.MaxSignatures {
					t.Errorf("%d DKIM key queries, want at most dkim.max_signatures = %d", keys, h.eng.cfg.DKIM.MaxSignatures)
				}
			}},
		{name: "100 MB body, signed", ip: "192.0.2.10", mailFrom: "x@pass.example",
			fields: sigFields, body: chunked(100*mib, "The quick brown fox jumps over the lazy dog.\r\n"),
			want: "accept", maxHeap: 48 * mib,
			check: func(t *testing.T, h *harness, mods []string) {
				// The body was hashed to its end: the signature fails
				// (body hash), and DMARC passes through SPF.
				ar := insertedAR(t, mods)
				if ar["dkim"].Value != "fail" || ar["dmarc"].Value != "pass" {
					t.Errorf("A-R %+v, want dkim=fail (body hash) and dmarc=pass", ar)
				}
			}},
		{name: "NUL bytes in body and header values", ip: "198.51.100.7", mailFrom: "x@reject.example",
			fields: append(stdFields("a@reject.example"), HeaderField{"X-Nul", " a\x00b\x00c"}),
			body:   chunked(200000, "nul\x00byte\r\n"), want: "reject", maxHeap: 32 * mib},
		{name: "NUL byte inside From", ip: "192.0.2.10", mailFrom: "x@pass.example",
			fields: []HeaderField{{"From", " a@pass.example\x00<b@reject.example>"}, {"Subject", " x"}},
			want:   "reject", maxHeap: 32 * mib},
		{name: "invalid UTF-8 in From", ip: "192.0.2.10", mailFrom: "x@pass.example",
			fields: stdFields("\xff\xfe\xfd <a@\xc3\x28.pass.example>"), want: "reject", maxHeap: 32 * mib},
		// Octets that are not UTF-8 in the From address make the field
		// unparseable (pkg/policy), which is the reject above; in the
		// display name they are tolerated (broken mailers send Latin-1
		// names); elsewhere they do not matter, and our A-R must still be
		// clean ASCII.
		{name: "Latin-1 display name in From, accepted", ip: "192.0.2.10", mailFrom: "x@pass.example",
			fields: stdFields("Ren\xe9 M\xfcller <a@pass.example>"), want: "accept", maxHeap: 32 * mib},
		{name: "invalid UTF-8 in envelope and Subject, accepted", ip: "192.0.2.10", mailFrom: "\xff\xfe@pass.example",
			fields: append(stdFields("a@pass.example"), HeaderField{"Subject", " \xc3\x28\xa0\xa1"}),
			want:   "accept", maxHeap: 32 * mib,
			check: func(t *testing.T, h *harness, mods []string) {
				if ar := insertedAR(t, mods); ar["dmarc"].Value != "pass" {
					t.Errorf("A-R %+v", ar)
				}
			}},
		{name: "deeply nested MIME", ip: "198.51.100.7", mailFrom: "x@reject.example",
			fields: append(stdFields("a@reject.example"), HeaderField{"Content-Type", " multipart/mixed; boundary=\"b0\""}),
			body:   nested, want: "reject", maxHeap: 32 * mib},
	}
}

// insertedAR parses our inserted Authentication-Results from raw
// modification packets ("i:" + index + name NUL value NUL).
func insertedAR(t *testing.T, mods []string) map[string]authres.Result {
	t.Helper()
	for _, m := range mods {
		if !strings.HasPrefix(m, "i:") || len(m) < 6 {
			continue
		}
		parts := strings.Split(m[6:], "\x00")
		if len(parts) >= 2 && parts[0] == authres.FieldName {
			return parseAR(t, parts[1])
		}
	}
	t.Fatalf("no Authentication-Results inserted: %q", mods)
	return nil
}

func TestHostileMessages(t *testing.T) {
	h := newHarness(t, nil)
	for _, hc := range hostileCases(t) {
		t.Run(hc.name, func(t *testing.T) {
			h.t = t
			h.dns.ResetCounts()
			before := strings.Count(h.logs.String(), "msg=verdict")
			base := heapAfterGC()
			stop := heapPeak()
			start := time.Now()
			r := dialRaw(t, h.addr)
			r.begin(hc.ip, hc.mailFrom)
			for _, f := range hc.fields {
				r.header(f.Name, f.Value)
			}
			r.want('N', nil, 'c')
			if hc.body != nil {
				hc.body(func(p []byte) { r.want('B', p, 'c') })
			}
			mods, code, data := r.eom()
			took := time.Since(start)
			peak := stop()
			r.send('Q', nil)
			switch hc.want {
			case "reject":
				if code != 'y' || !strings.HasPrefix(data, "550 ") {
					t.Errorf("answer %q %q, want the 550 reject", code, data)
				}
			case "accept":
				if code != 'a' {
					t.Errorf("answer %q %q, want accept", code, data)
				}
			}
			if hc.check != nil {
				hc.check(t, h, mods)
			}
			growth := int64(peak) - int64(base)
			if growth > int64(hc.maxHeap) {
				t.Errorf("peak heap growth %d MiB, bound %d MiB", growth/mib, hc.maxHeap/mib)
			}
			if took > 2*time.Minute {
				t.Errorf("took %v", took)
			}
			logs := h.logs.String()
			if n := strings.Count(logs, "msg=verdict") - before; n != 1 {
				t.Errorf("%d verdict lines for one message", n)
			}
			if strings.Contains(logs, "panic") {
				t.Fatalf("panic:\n%s", logs)
			}
			t.Logf("figures: answer %q, %v, peak heap growth %.1f MiB", code, took.Round(time.Millisecond), float64(growth)/mib)
		})
	}
}

// TestHostileOversizedHeaderPacket: a header field over our 1 MiB packet
// cap (maxPacket) ends the connection (Postfix never sends one: its
// header_size_limit is 100 KiB) without disturbing the server.
func TestHostileOversizedHeaderPacket(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	r := dialRaw(t, h.addr)
	r.begin("192.0.2.10", "x@pass.example")
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, 1<<20+1)
	r.c.Write(append(append(b, 'L'), bytes.Repeat([]byte("x"), 1<<20)...))
	if !r.closedByServer(10 * time.Second) {
		t.Fatal("not closed")
	}
	checkAlive(t, h.addr)
}
