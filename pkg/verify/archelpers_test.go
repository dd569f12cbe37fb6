package verify

import (
	"context"
	"strings"
	"testing"
	"time"
)

// splitRaw cuts a CRLF message into header fields, as Postfix sends them
// (name, and every octet after the colon with folds as "\n"), and the body.
// Unlike splitMessage it accepts messages without a header or without a
// body, and a header line without a colon (left out, as Postfix would not
// pass it as a field).
func splitRaw(msg string) ([]field, string) {
	var fields []field
	rest := msg
	for rest != "" {
		line, after, ok := strings.Cut(rest, "\r\n")
		if !ok {
			line, after = rest, ""
		}
		if line == "" { // the empty line ends the header
			return fields, after
		}
		rest = after
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) > 0 {
				fields[len(fields)-1].value += "\n" + line
			}
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields = append(fields, field{name, value})
	}
	return fields, ""
}

// verifyARC streams msg through an ARCVerifier the way the milter will,
// with body chunks of chunk octets.
func verifyARC(t testing.TB, r TXTResolver, cfg ARCConfig, msg string, chunk int) ARCResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fields, body := splitRaw(msg)
	v := NewARCVerifier(r, cfg)
	for _, f := range fields {
		if err := v.Header(f.name, f.value); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.EndOfHeaders(ctx); err != nil {
		t.Fatal(err)
	}
	for b := []byte(body); len(b) > 0; {
		n := min(chunk, len(b))
		if _, err := v.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	res, err := v.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
