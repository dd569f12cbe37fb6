package milterproto

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"testing"

	milter "github.com/emersion/go-milter"
)

// BenchmarkMessage sends one message per op through a server over a unix
// socket, the way Postfix does (macros before every event, a reply read
// only where the negotiation says so, ABORT after the message), with a
// trivial filter that reads a macro and inserts one header field at end of
// message. go-milter is the baseline: its server replies to every event
// (it cannot honour the NR flags), so Postfix waits for each reply;
// "milterproto-every-reply" is our loop with an MTA that offers no NR flag,
// the same conversation as go-milter's.
//
//	go test -run '^$' -bench Message -benchmem -count 6 ./internal/milterproto
func BenchmarkMessage(b *testing.B) {
	b.Run("milterproto", func(b *testing.B) {
		ln := benchListener(b)
		go Serve(ln, testOpts(), func(s *Session) Handler { return &benchHandler{s: s} })
		runBench(b, ln.Addr().String(), 0x1fffff, ProtoNRHeader|ProtoNREOH|ProtoNRBody|ProtoNoData)
	})
	b.Run("milterproto-every-reply", func(b *testing.B) {
		ln := benchListener(b)
		go Serve(ln, testOpts(), func(s *Session) Handler { return &benchHandler{s: s} })
		runBench(b, ln.Addr().String(), ProtoNoUnknown|ProtoHdrLeadSpc, 0)
	})
	b.Run("go-milter", func(b *testing.B) {
		ln := benchListener(b)
		srv := &milter.Server{
			NewMilter: func() milter.Milter { return &benchMilter{} },
			Actions:   milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine | milter.OptSetSymList,
			Protocol:  milter.OptNoUnknown | milter.OptHeaderLeadingSpace,
			SymList:   map[milter.Stage][]string{milter.StageMailFrom: testOpts().MacroLists[StageMail]},
		}
		go srv.Serve(ln)
		b.Cleanup(func() { srv.Close() })
		runBench(b, ln.Addr().String(), 0x1fffff, 0)
	})
}

func benchListener(b *testing.B) net.Listener {
	ln, err := net.Listen("unix", filepath.Join(b.TempDir(), "b.sock"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	return ln
}

type benchHandler struct {
	BaseHandler
	s *Session
}

func (h *benchHandler) EndOfMessage(m *Modifier) Response {
	v, _ := h.s.Macros().Get("i")
	if len(v) == 0 {
		return TempFail
	}
	_ = m.InsertHeader(0, "Authentication-Results", " mx.example; dmarc=pass")
	return Accept
}

type benchMilter struct{ milter.NoOpMilter }

func (benchMilter) Body(m *milter.Modifier) (milter.Response, error) {
	if m.Macros["i"] == "" {
		return milter.RespTempFail, nil
	}
	_ = m.InsertHeader(0, "Authentication-Results", " mx.example; dmarc=pass")
	return milter.RespAccept, nil
}

// step is what the MTA writes before it waits for replies (0: none).
type step struct {
	out     []byte
	replies int
}

// messageSteps is one message as Postfix sends it to a filter that
// negotiated proto.
func messageSteps(proto Protocol) []step {
	var steps []step
	var cur []byte
	event := func(cmd byte, flagNR Protocol, parts ...string) {
		cur = append(cur, packet('D', string(cmd), "i\x00QID12345\x00")...)
		cur = append(cur, packet(cmd, parts...)...)
		if proto&flagNR == 0 {
			steps = append(steps, step{out: cur, replies: 1})
			cur = nil
		}
	}
	event('M', ProtoNRMail, "<sender@example.org>\x00", "SIZE=4000\x00")
	event('R', ProtoNRRcpt, "<rcpt@example.net>\x00")
	if proto&ProtoNoData == 0 {
		event('T', ProtoNRData)
	} else {
		cur = append(cur, packet('D', "T", "i\x00QID12345\x00")...)
	}
	for _, h := range []string{"Received", "DKIM-Signature", "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "X-Mailer"} {
		event('L', ProtoNRHeader, h+"\x00", " some value of a typical length for "+h+"\x00")
	}
	event('N', ProtoNREOH)
	body := make([]byte, 3000)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	event('B', ProtoNRBody, string(body))
	cur = append(cur, packet('D', "E", "i\x00QID12345\x00")...)
	cur = append(cur, packet('E')...)
	steps = append(steps, step{out: cur, replies: 2}) // the insert, then accept
	steps = append(steps, step{out: packet('A')})
	return steps
}

// runBench offers offer as the MTA's protocol mask and checks that the
// filter answered the no-reply and NODATA flags want.
func runBench(b *testing.B, addr string, offer, want Protocol) {
	c, err := net.Dial("unix", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	var opt [12]byte
	binary.BigEndian.PutUint32(opt[:], 6)
	binary.BigEndian.PutUint32(opt[4:], 0x1ff)
	binary.BigEndian.PutUint32(opt[8:], uint32(offer))
	if _, err := c.Write(packet('O', string(opt[:]))); err != nil {
		b.Fatal(err)
	}
	reply := make([]byte, 1<<10)
	code, n := benchRead(b, r, reply)
	if code != 'O' || n < 12 {
		b.Fatalf("OPTNEG reply %c", code)
	}
	proto := Protocol(binary.BigEndian.Uint32(reply[8:])) & (ProtoNoReply | ProtoNoData)
	if proto != want {
		b.Fatalf("negotiated %#x, want %#x", proto, want)
	}
	steps := messageSteps(proto)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, s := range steps {
			if _, err := c.Write(s.out); err != nil {
				b.Fatal(err)
			}
			for range s.replies {
				benchRead(b, r, reply)
			}
		}
	}
}

func benchRead(b *testing.B, r *bufio.Reader, buf []byte) (byte, int) {
	if _, err := io.ReadFull(r, buf[:5]); err != nil {
		b.Fatal(err)
	}
	n := int(binary.BigEndian.Uint32(buf)) - 1
	if n > len(buf) {
		b.Fatalf("reply of %d bytes", n)
	}
	code := buf[4]
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		b.Fatal(err)
	}
	if code == 't' {
		b.Fatal("the filter did not see macro i")
	}
	return code, n
}
