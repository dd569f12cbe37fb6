// Package mbox splits mbox files (the traditional Unix mailbox: messages
// one after the other, each beginning with a "From " line) into messages,
// bounded in memory, for the import of report mail kept in mbox files.
package mbox

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Split calls fn for each message of an mbox file (messages begin at
// lines starting "From "; mboxrd's ">From " quoting is undone). A message
// over max bytes is not kept: fn gets tooLarge and an empty reader, and
// the rest of that message is skipped, so memory stays within max (plus a
// read buffer). Text before the first "From " line is ignored.
func Split(r io.Reader, max int64, fn func(msg io.Reader, tooLarge bool)) error {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	var buf bytes.Buffer
	inMsg, tooLarge := false, false
	flush := func() {
		if inMsg {
			if tooLarge {
				fn(bytes.NewReader(nil), true)
			} else {
				fn(bytes.NewReader(buf.Bytes()), false)
			}
		}
		buf.Reset()
		tooLarge = false
	}
	for {
		line, long, err := readLine(br, max)
		if err != nil && !errors.Is(err, io.EOF) {
			flush()
			return err
		}
		switch {
		case long:
			// A line over the bound: its message is too large (a long
			// line is never taken for a From_ line).
			tooLarge = inMsg
			buf.Reset()
		case len(line) == 0:
		case bytes.HasPrefix(line, []byte("From ")):
			flush()
			inMsg = true
		case !inMsg, tooLarge:
		default:
			if unq := bytes.TrimLeft(line, ">"); len(unq) < len(line) && bytes.HasPrefix(unq, []byte("From ")) {
				line = line[1:] // mboxrd: one ">" less
			}
			if int64(buf.Len()+len(line)) > max {
				tooLarge = true
				buf.Reset()
			} else {
				buf.Write(line)
			}
		}
		if errors.Is(err, io.EOF) {
			flush()
			return nil
		}
	}
}

// readLine reads one line with its end. A line over max is read to its
// end but not kept: long is set and line is nil.
func readLine(br *bufio.Reader, max int64) (line []byte, long bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !long {
			line = append(line, frag...)
			if int64(len(line)) > max {
				line, long = nil, true
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, long, err
	}
}
