package authres

import (
	"strings"
	"testing"
	"time"
)

// TestHostileLinear: Parse and IsOurs read incoming fields, which the
// sender controls and which have no length limit of their own (the MTA's
// header_size_limit, 100 KiB in Postfix, or go-milter's 1 MiB packet cap).
// Inputs built to defeat parsers at 16 KiB and 1 MiB: the cost per byte
// must not grow with the input (quadratic would be 64 times; the bound
// allows 8 for noise). Measured like a benchmark, best of three.
func TestHostileLinear(t *testing.T) {
	gens := []struct{ name, head, unit, tail string }{
		{"comments", "", "(x)", "mx.example; none"},
		{"nested comments", "", "(", "mx.example; none"},
		{"escaped quoted id", `"`, `\"`, `"; none`},
		{"results", "mx.example", "; dmarc=pass", ""},
		{"properties", "mx.example; dmarc=pass", " header.from=a.example", ""},
		{"reasons", "mx.example; dmarc=pass", ` reason="a;b\"c"`, ""},
		{"folding", "mx.example;", "\r\n\t", "none"},
		{"token", "", "m", "; none"},
	}
	perByte := func(in string) float64 {
		best := -1.0
		for range 3 {
			n, start := 0, time.Now()
			for time.Since(start) < 10*time.Millisecond || n < 2 {
				Parse(in)
				IsOurs(in, "mx.example")
				n++
			}
			ns := float64(time.Since(start).Nanoseconds()) / float64(n) / float64(len(in))
			if best < 0 || ns < best {
				best = ns
			}
		}
		return best
	}
	for _, g := range gens {
		small := g.head + strings.Repeat(g.unit, (16<<10)/len(g.unit)) + g.tail
		large := g.head + strings.Repeat(g.unit, (1<<20)/len(g.unit)) + g.tail
		ps, pl := perByte(small), perByte(large)
		if pl > 8*ps && pl > 50 {
			t.Errorf("%s: %.1f ns/byte at 1 MiB, %.1f at 16 KiB", g.name, pl, ps)
		}
		t.Logf("%s: %.2f ns/byte at 16 KiB, %.2f at 1 MiB", g.name, ps, pl)
	}
}
