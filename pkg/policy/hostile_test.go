package policy

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Hostile input for the two parsers that read what a sender controls (the
// From: field and the DMARC record): each is fed inputs built to defeat
// parsers, at 1/32 of its length limit and at the limit (MaxFromFieldLen,
// MaxRecordLen; longer input is refused before parsing, checked too).
// Property: cost per input byte does not grow with the input (a quadratic
// parser would be 32 times slower per byte at the larger size; the bound
// allows 8 for noise), and allocation is bounded per input byte. Measured like a benchmark (repeat until a minimum
// time has passed, keep the best of three), not as a wall-clock bound.

// nsPerByte is the best time per input byte of f over three rounds.
func nsPerByte(in string, f func(string)) float64 {
	best := -1.0
	for range 3 {
		n, start := 0, time.Now()
		for time.Since(start) < 15*time.Millisecond || n < 2 {
			f(in)
			n++
		}
		ns := float64(time.Since(start).Nanoseconds()) / float64(n) / float64(len(in))
		if best < 0 || ns < best {
			best = ns
		}
	}
	return best
}

// allocPerByte is the bytes allocated by one call per input byte.
func allocPerByte(in string, f func(string)) float64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f(in)
	runtime.ReadMemStats(&b)
	return float64(b.TotalAlloc-a.TotalAlloc) / float64(len(in))
}

// fill repeats unit to n bytes between head and tail.
func fill(head, unit, tail string, n int) string {
	return head + strings.Repeat(unit, n/len(unit)) + tail
}

type hostileGen struct {
	name             string
	head, unit, tail string
}

func checkLinear(t *testing.T, limit int, gens []hostileGen, f func(string)) {
	t.Helper()
	for _, g := range gens {
		fixed := len(g.head) + len(g.tail)
		small := fill(g.head, g.unit, g.tail, limit/32-fixed)
		large := fill(g.head, g.unit, g.tail, limit-fixed)
		// A machine busy with other work can slow one measurement; a
		// quadratic parser is slow every time: measure up to three times.
		ps, pl := nsPerByte(small, f), nsPerByte(large, f)
		for try := 1; try < 3 && pl > 8*ps && pl > 50; try++ {
			ps, pl = nsPerByte(small, f), nsPerByte(large, f)
		}
		if pl > 8*ps && pl > 50 {
			t.Errorf("%s: %.1f ns/byte at %d bytes, %.1f at %d: cost grows with the input", g.name, pl, len(large), ps, len(small))
		}
		as, al := allocPerByte(small, f), allocPerByte(large, f)
		// Allocation per byte must not grow with the input either; the
		// absolute bound is loose (a token per two octets of "a.a.a..."
		// costs about 110 B/byte, within the length limit).
		if al > 4*as+8 || al > 128 {
			t.Errorf("%s: %.0f bytes allocated per input byte at %d bytes, %.0f at %d", g.name, al, len(large), as, len(small))
		}
		t.Logf("%s: %.1f ns/byte (%d B), %.1f ns/byte (%d B); %.1f B alloc/byte (small), %.1f (large)", g.name, ps, len(small), pl, len(large), as, al)
	}
}

func TestParseFromHostileLinear(t *testing.T) {
	checkLinear(t, MaxFromFieldLen, []hostileGen{
		{"open comments", "a@b.example ", "(", ""},
		{"nested comments", "a@b.example ", "(x", strings.Repeat(")", 1)},
		{"escaped quotes", `"`, `\"`, `" <a@b.example>`},
		{"mailboxes", "", "a@b.example, ", "a@b.example"},
		{"mailboxes of distinct-looking domains", "", "a@x.y.z.example, ", "a@b.example"},
		{"group starts", "", "g:", "a@b.example;"},
		{"angle brackets", "", "<", "a@b.example>"},
		{"at signs", "a", "@", "b.example"},
		{"dotted local part", "", "a.", "a@b.example"},
		{"long domain", "a@", "b.", "example"},
		{"folds", "a@b.example", "\n ", ""},
		{"encoded words", "", "=?utf-8?q?x?= ", "<a@b.example>"},
		{"obsolete route", "<", "@r.example,", ":a@b.example>"},
	}, func(s string) { ParseFrom([]string{s}) })
	// Over the limit: refused before parsing (nothing allocated for it).
	huge := fill("", "(", "a@b.example", 64<<20)
	if a := allocPerByte(huge, func(s string) { ParseFrom([]string{s}) }); a > 1e-4 {
		t.Errorf("64 MiB From field: %.5f bytes allocated per byte, want it refused without reading", a)
	}
	if a := ParseFrom([]string{huge}); a.Problem != FromUnparseable {
		t.Errorf("64 MiB From field: %q", a.Problem)
	}
}

func TestParseRecordHostileLinear(t *testing.T) {
	checkLinear(t, MaxRecordLen, []hostileGen{
		{"empty tags", "v=DMARC1;", " ;", "p=reject"},
		{"many rua", "v=DMARC1; p=reject; rua=", "mailto:a@b.example,", "mailto:c@d.example"},
		{"unknown tags", "v=DMARC1; p=reject; ", "x=y; ", ""},
		{"long value", "v=DMARC1; p=", "r", ""},
		{"white space", "v=DMARC1;", " \t", "p=none"},
	}, func(s string) { Parse(s) })
}
