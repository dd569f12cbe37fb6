package milter

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"

	milter "github.com/emersion/go-milter"
)

// The wire layer below go-milter: what trackedConn learns from the packets
// that pass through it (milter-protocol.txt in go-milter's module: every
// packet is a 4-byte big-endian length, a command or reply byte, then
// length-1 bytes of payload).
//
// go-milter v0.5.0 answers the MTA's option negotiation without looking at
// it (version 2 and our masks, libraries.md §1.2) and writes a reply for
// every callback, even for the events whose reply an SMFIP_NR_* flag told
// the MTA not to expect. The wrapper therefore
//
//   - reads the MTA's OPTNEG to learn which NR flags it offered, and clears
//     the ones it did not offer from go-milter's OPTNEG reply, so that both
//     sides agree on what was negotiated;
//   - drops the bare continue reply to an event whose NR flag was
//     negotiated (connect, HELO, MAIL, RCPT, a header field, the end of the
//     header block, a body chunk), because the MTA will not read it (the
//     session makes continue the only reply at those stages and keeps any
//     other answer for the end of message);
//   - holds the modifications of an end of message and writes them in one
//     system call with the final reply.

// noReplyOpts are the SMFIP_NR_* flags we ask for: no reply to the
// connection (NR_CONN), HELO (NR_HELO), MAIL (NR_MAIL), RCPT (NR_RCPT), a
// header field (NR_HDR), the end of the header block (NR_EOH) or a body
// chunk (NR_BODY). Every decision is taken at end of message, so the only
// reply the MTA waits for is that one: one round trip per message instead
// of eight, and an SMTP client that no longer waits for us at each command.
const noReplyOpts = milter.OptNoConnReply | milter.OptNoHeloReply | milter.OptNoMailReply |
	milter.OptNoRcptReply | milter.OptNoHeaderReply | milter.OptNoEOHReply | milter.OptNoBodyReply

// optionalOpts are the protocol flags asked for only when the MTA offers
// them: the NR flags and SMFIP_NODATA (the DATA command tells us nothing;
// without the flag the MTA sends it and reads go-milter's continue).
const optionalOpts = noReplyOpts | milter.OptNoData

// Commands and replies the wrapper looks at.
const (
	cmdOptNeg = byte(milter.CodeOptNeg) // 'O'
	cmdConn   = byte(milter.CodeConn)   // 'C'
	cmdHelo   = byte(milter.CodeHelo)   // 'H'
	cmdMail   = byte(milter.CodeMail)   // 'M'
	cmdRcpt   = byte(milter.CodeRcpt)   // 'R'
	cmdHeader = byte(milter.CodeHeader) // 'L'
	cmdEOH    = byte(milter.CodeEOH)    // 'N'
	cmdBody   = byte(milter.CodeBody)   // 'B'
	cmdEOM    = byte(milter.CodeEOB)    // 'E'
	replyCont = byte(milter.ActContinue)
)

// noReplyOpt is the NR flag that covers the reply to cmd (0: none does).
func noReplyOpt(cmd byte) milter.OptProtocol {
	switch cmd {
	case cmdConn:
		return milter.OptNoConnReply
	case cmdHelo:
		return milter.OptNoHeloReply
	case cmdMail:
		return milter.OptNoMailReply
	case cmdRcpt:
		return milter.OptNoRcptReply
	case cmdHeader:
		return milter.OptNoHeaderReply
	case cmdEOH:
		return milter.OptNoEOHReply
	case cmdBody:
		return milter.OptNoBodyReply
	}
	return 0
}

// isModification reports whether a reply code is a message modification
// (SMFIR_ADDRCPT, DELRCPT, ADDRCPT_PAR, REPLBODY, CHGFROM, ADDHEADER,
// INSHEADER, CHGHEADER, QUARANTINE): at end of message these precede the
// final reply, which the MTA reads right after them.
func isModification(code byte) bool {
	switch code {
	case '+', '-', '2', 'b', 'e', 'h', 'i', 'm', 'q':
		return true
	}
	return false
}

// inFramer follows the packet framing of what go-milter reads, copying
// nothing but the 5-byte packet head and the first 12 payload bytes of an
// OPTNEG (version, actions, protocol).
type inFramer struct {
	head  [4]byte // length bytes of the packet being started
	headN int     // how many of them are seen (0 at a packet boundary)
	left  uint32  // payload bytes after the command byte still to come
	cmd   byte    // command of the last packet whose command byte was read
	opt   [12]byte
	optN  int // OPTNEG payload bytes kept in opt
}

// track advances over b, the next bytes handed to go-milter.
func (f *inFramer) track(b []byte) {
	for len(b) > 0 {
		if f.left > 0 {
			k := uint32(len(b))
			if k > f.left {
				k = f.left
			}
			if f.cmd == cmdOptNeg && f.optN < len(f.opt) {
				f.optN += copy(f.opt[f.optN:], b[:k])
			}
			b, f.left = b[k:], f.left-k
			continue
		}
		if f.headN < len(f.head) {
			f.head[f.headN] = b[0]
			f.headN++
			b = b[1:]
			if f.headN == len(f.head) && binary.BigEndian.Uint32(f.head[:]) == 0 {
				// A zero-length packet has no command; go-milter ends
				// the session on it.
				f.headN = 0
			}
			continue
		}
		f.cmd, f.headN = b[0], 0
		f.left = binary.BigEndian.Uint32(f.head[:]) - 1
		if f.cmd == cmdOptNeg {
			f.optN = 0
		}
		b = b[1:]
	}
}

// offeredProtocol is the protocol mask of the MTA's last OPTNEG (0 if it
// was shorter than the three fields).
func (f *inFramer) offeredProtocol() milter.OptProtocol {
	if f.optN < len(f.opt) {
		return 0
	}
	return milter.OptProtocol(binary.BigEndian.Uint32(f.opt[8:]))
}

// errReplyAtNoReplyStage is returned by a write of any reply but a bare
// continue to an event whose NR flag was negotiated: the MTA would take it
// for the reply to its next event, so the connection is closed instead.
var errReplyAtNoReplyStage = errors.New("milter: reply to an event negotiated without reply")

// outQueue assembles what go-milter writes into whole reply packets and
// decides, packet by packet, what reaches the socket.
type outQueue struct {
	buf  []byte // bytes not yet on the socket
	done int    // buf[:done] are whole packets, ready or held
	send bool   // buf[:done] ends with a packet that must go out now
	nr   milter.OptProtocol
	// proto is the protocol mask of our OPTNEG answer as sent.
	proto milter.OptProtocol
}

// verdict of one reply packet.
type verdict int

const (
	pass   verdict = iota // write it (and what is held before it)
	hold                  // keep it for the next packet that passes
	drop                  // never write it
	refuse                // a reply the MTA would not read: end the session
)

// add appends p and classifies every whole packet in the queue; lastCmd is
// the command being answered and offered the MTA's protocol mask. It
// returns errReplyAtNoReplyStage for a reply the MTA will not read.
func (q *outQueue) add(p []byte, lastCmd byte, offered milter.OptProtocol) error {
	q.buf = append(q.buf, p...)
	for {
		rest := q.buf[q.done:]
		if len(rest) < 5 {
			return nil
		}
		n := binary.BigEndian.Uint32(rest)
		if n == 0 || uint64(len(rest)) < 4+uint64(n) {
			// go-milter never writes a zero length: nothing to decide
			// on, the bytes go out as they are at the next flush.
			return nil
		}
		pkt := rest[:4+n]
		switch q.classify(pkt, lastCmd, offered) {
		case drop:
			q.buf = append(q.buf[:q.done], rest[4+n:]...)
		case hold:
			q.done += len(pkt)
		case pass:
			q.done += len(pkt)
			q.send = true
		case refuse:
			return errReplyAtNoReplyStage
		}
	}
}

// classify decides the fate of one whole reply packet; it rewrites an
// OPTNEG reply's protocol field in place.
func (q *outQueue) classify(pkt []byte, lastCmd byte, offered milter.OptProtocol) verdict {
	code := pkt[4]
	switch {
	case lastCmd == cmdOptNeg && code == cmdOptNeg && len(pkt) >= 5+12:
		// OPTNEG reply: version, actions, protocol. Keep only the optional
		// flags the MTA offered; an MTA that offered no NR flag gets every
		// reply.
		field := pkt[5+8 : 5+12]
		proto := milter.OptProtocol(binary.BigEndian.Uint32(field))
		proto &^= optionalOpts &^ offered
		binary.BigEndian.PutUint32(field, uint32(proto))
		q.nr, q.proto = proto&noReplyOpts, proto
		return pass
	case q.nr&noReplyOpt(lastCmd) != 0:
		if code == replyCont && len(pkt) == 5 {
			return drop
		}
		return refuse
	case lastCmd == cmdEOM && isModification(code):
		return hold
	}
	return pass
}

// flush writes the packets that must go out now, with the ones held
// before them, in one write. With force, everything queued goes, a partial
// packet included.
func (q *outQueue) flush(w io.Writer, force bool) error {
	n := q.done
	if force {
		n = len(q.buf)
	} else if !q.send {
		return nil
	}
	if n == 0 {
		return nil
	}
	_, err := w.Write(q.buf[:n])
	q.buf = q.buf[:copy(q.buf, q.buf[n:])]
	q.done, q.send = 0, false
	if cap(q.buf) > maxKeptOut {
		q.buf = append([]byte(nil), q.buf...)
	}
	return err
}

// maxKeptOut bounds the queue's memory kept between replies (a reply is a
// few bytes; a large header modification should not pin its buffer).
const maxKeptOut = 16 << 10

// protocolNames names the flags of a protocol mask that we ask for, in the
// spelling of milter-protocol.txt (for the debug log of a connection).
func protocolNames(p milter.OptProtocol) string {
	names := []struct {
		f milter.OptProtocol
		n string
	}{
		{milter.OptNoConnReply, "NR_CONN"}, {milter.OptNoHeloReply, "NR_HELO"},
		{milter.OptNoMailReply, "NR_MAIL"}, {milter.OptNoRcptReply, "NR_RCPT"},
		{milter.OptNoHeaderReply, "NR_HDR"}, {milter.OptNoEOHReply, "NR_EOH"},
		{milter.OptNoBodyReply, "NR_BODY"}, {milter.OptNoData, "NODATA"},
		{milter.OptNoUnknown, "NOUNKNOWN"}, {milter.OptHeaderLeadingSpace, "HDR_LEADSPC"},
	}
	var b strings.Builder
	for _, n := range names {
		if p&n.f != 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(n.n)
		}
	}
	return b.String()
}
