package mbox

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSplit: messages split at From_ lines, ">From " unquoted once, an
// oversized message skipped (reported, never held) and the rest read.
func TestSplit(t *testing.T) {
	in := "junk before\nFrom a\nSubject: 1\n\n>From x\n>>From y\nFrom b\nSubject: 2\n\n" + strings.Repeat("z", 100) + "\nFrom c\nSubject: 3\n"
	var got []string
	err := Split(strings.NewReader(in), 60, func(r io.Reader, tooLarge bool) {
		b, _ := io.ReadAll(r)
		if tooLarge {
			got = append(got, "TOO LARGE")
			return
		}
		got = append(got, string(b))
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Subject: 1\n\nFrom x\n>From y\n", "TOO LARGE", "Subject: 3\n"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// FuzzSplit: no panic; no message is longer than the bound; there are
// no more messages than "From " line starts.
func FuzzSplit(f *testing.F) {
	f.Add([]byte("From a\nx\nFrom b\n>From c\n"), 10)
	f.Add([]byte("From \n\n\n"), 1)
	f.Add([]byte(strings.Repeat("From x\n", 50)), 3)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max <= 0 || max > 1<<16 {
			max = 64
		}
		n := 0
		err := Split(bytes.NewReader(data), int64(max), func(r io.Reader, tooLarge bool) {
			n++
			b, _ := io.ReadAll(r)
			if len(b) > max {
				t.Fatalf("message of %d bytes over the bound %d", len(b), max)
			}
		})
		if err != nil {
			t.Fatalf("error %v", err)
		}
		if froms := bytes.Count(append([]byte("\n"), data...), []byte("\nFrom ")); n > froms {
			t.Fatalf("%d messages from %d From_ lines", n, froms)
		}
	})
}
