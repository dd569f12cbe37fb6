package milter

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzSplitMessage checks the message splitter of the evaluate subcommand:
// no panic; every field name is non-empty without white space or colon;
// values hold no line break other than a fold ("\n" followed by a space or
// tab); the body is whole CRLF lines; and the output is no larger than the
// input plus a CRLF per line (bounded allocation).
func FuzzSplitMessage(f *testing.F) {
	f.Add([]byte("From: a@b.example\nSubject: x\n \tfolded\n\nbody\n"))
	f.Add([]byte("From mbox line\r\nX:\r\n\r\n\r\n"))
	f.Add([]byte(" leading continuation\nno colon line\nA: b"))
	f.Add([]byte("A: b\rc\n\x00: d\n\n\xff"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		fields, body := SplitMessage(msg)
		size := len(body)
		for _, h := range fields {
			if h.Name == "" || strings.ContainsAny(h.Name, " \t:") {
				t.Fatalf("field name %q", h.Name)
			}
			for i := strings.IndexByte(h.Value, '\n'); i >= 0; i = strings.IndexByte(h.Value[i+1:], '\n') + i + 1 {
				if i+1 >= len(h.Value) || (h.Value[i+1] != ' ' && h.Value[i+1] != '\t') {
					t.Fatalf("value %q has a line break that is not a fold", h.Value)
				}
				if strings.IndexByte(h.Value[i+1:], '\n') < 0 {
					break
				}
			}
			size += len(h.Name) + len(h.Value)
		}
		if len(body) > 0 && !bytes.HasSuffix(body, []byte("\r\n")) {
			t.Fatalf("body does not end in CRLF: %q", body)
		}
		if lines := bytes.Count(msg, []byte("\n")) + 1; size > len(msg)+2*lines {
			t.Fatalf("output %d bytes for %d bytes of input", size, len(msg))
		}
	})
}
