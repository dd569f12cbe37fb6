package milter

import (
	"bufio"
	"bytes"
	"context"
	"strings"
)

// HeaderField is one header field as Postfix passes it to a milter that
// negotiated SMFIP_HDR_LEADSPC: the name, and the value with its leading
// white space and with folds as "\n".
type HeaderField struct {
	Name, Value string
}

// maxBodyChunk is the largest body chunk Postfix sends (milter8.c).
const maxBodyChunk = 65535

// EvaluateMessage runs a whole message through a Transaction of e exactly
// as the milter session does (header fields, end of header, body chunks,
// end of message), recording its steps. The evaluate subcommand uses it.
func EvaluateMessage(ctx context.Context, e *Engine, env Envelope, msg []byte) *Decision {
	tx := NewTransaction(ctx, e, env, nil)
	defer tx.Close()
	tx.tracing = true
	tx.Start()
	if tx.Bypassed() {
		return tx.End()
	}
	fields, body := SplitMessage(msg)
	for _, h := range fields {
		tx.Header(h.Name, h.Value)
	}
	tx.EndOfHeaders()
	for len(body) > 0 {
		n := min(len(body), maxBodyChunk)
		tx.BodyChunk(body[:n])
		body = body[n:]
	}
	return tx.End()
}

// SplitMessage splits a message into header fields and a body with CRLF
// line ends. A leading mbox "From " line is skipped; the header ends at the
// first line that is neither a field nor a continuation, as in Postfix.
func SplitMessage(msg []byte) (fields []HeaderField, body []byte) {
	sc := bufio.NewScanner(bytes.NewReader(msg))
	sc.Buffer(make([]byte, 0, 64<<10), len(msg)+1)
	var rest bytes.Buffer
	inHeader, first := true, true
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if inHeader {
			if first && strings.HasPrefix(line, "From ") {
				first = false
				continue
			}
			first = false
			if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && len(fields) > 0 {
				fields[len(fields)-1].Value += "\n" + line
				continue
			}
			if name, value, ok := strings.Cut(line, ":"); ok && name != "" && !strings.ContainsAny(name, " \t") {
				fields = append(fields, HeaderField{name, value})
				continue
			}
			inHeader = false
			if line == "" {
				continue
			}
		}
		rest.WriteString(line)
		rest.WriteString("\r\n")
	}
	return fields, rest.Bytes()
}
