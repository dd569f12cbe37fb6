package milter

import (
	"bufio"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// postfixConversation is one SMTP session of one message as Postfix 3.7
// sends it to a milter that negotiated every SMFIP_NR_* flag and NODATA
// (ours): macros before each event, CONNECT, HELO, MAIL, RCPT, the header
// fields, EOH, the body, end of message, then ABORT and QUIT. Option
// negotiation, which comes first and waits for its reply, is not in it.
func postfixConversation(ip, helo string, fields []HeaderField, body []byte) []byte {
	var b []byte
	pkt := func(cmd byte, parts ...string) {
		n := 1
		for _, p := range parts {
			n += len(p)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		b = append(b, cmd)
		for _, p := range parts {
			b = append(b, p...)
		}
	}
	pkt('D', "C", "j\x00", testAuthservID, "\x00{daemon_name}\x00smtpd\x00v\x00Postfix 3.7.11\x00")
	pkt('C', "client.example\x00", "4", "\x9c\x40", ip, "\x00")
	pkt('D', "H")
	pkt('H', helo, "\x00")
	pkt('D', "M", "{client_addr}\x00", ip, "\x00{client_name}\x00client.example\x00j\x00", testAuthservID, "\x00")
	pkt('M', "<a@pass.example>\x00")
	pkt('D', "R", "i\x004Q00001\x00")
	pkt('R', "<u@inbox.example>\x00")
	for _, f := range fields {
		pkt('L', f.Name, "\x00", f.Value, "\x00")
	}
	pkt('N')
	for len(body) > 0 {
		n := min(len(body), 65535)
		pkt('B', string(body[:n]))
		body = body[n:]
	}
	pkt('D', "E", "i\x004Q00001\x00")
	pkt('E')
	pkt('A')
	pkt('Q')
	return b
}

// optNegPacket is Postfix 3.7's option negotiation (milter_protocol = 6).
func optNegPacket() []byte {
	b := binary.BigEndian.AppendUint32(nil, 13)
	b = append(b, 'O')
	b = binary.BigEndian.AppendUint32(b, 6)
	b = binary.BigEndian.AppendUint32(b, 0x1ff)
	return binary.BigEndian.AppendUint32(b, postfixProtocol)
}

// connClient is the MTA side of BenchmarkConnectionPerMessage: it reuses
// its buffers so that the allocations measured are the server's.
type connClient struct {
	addr string
	r    *bufio.Reader
	buf  []byte
}

// readReply reads one reply packet and returns its code.
func (c *connClient) readReply() (byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(c.r, head[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint32(head[:4])) - 1
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	if _, err := io.ReadFull(c.r, c.buf[:n]); err != nil {
		return 0, err
	}
	return head[4], nil
}

// session runs one whole connection: negotiation, the conversation, the
// modifications and the final reply of end of message.
func (c *connClient) session(optneg, conv []byte) (byte, error) {
	conn, err := net.Dial("unix", c.addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c.r.Reset(conn)
	if _, err := conn.Write(optneg); err != nil {
		return 0, err
	}
	if _, err := c.readReply(); err != nil {
		return 0, err
	}
	if _, err := conn.Write(conv); err != nil {
		return 0, err
	}
	for {
		code, err := c.readReply()
		if err != nil {
			return 0, err
		}
		switch code {
		case 'h', 'i', 'm', 'q': // modifications before the final reply
			continue
		}
		return code, nil
	}
}

// BenchmarkConnectionPerMessage: one message per milter connection, the
// shape of inbound MX traffic (Postfix opens a milter connection per SMTP
// session): accept, negotiation, CONNECT and HELO, one unsigned message
// (SPF pass, DMARC pass through SPF, warm DNS cache, so that DKIM hashing
// does not drown the connection's cost), teardown. The allocations are the
// server's (the client reuses its buffers).
//
//	go test -run '^$' -bench ConnectionPerMessage -benchmem -count 8 ./internal/milter
func BenchmarkConnectionPerMessage(b *testing.B) {
	e := benchEngineT(b)
	srv := NewServer(e, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("unix", filepath.Join(b.TempDir(), "m.sock"))
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown(b.Context()) })
	fields, body := SplitMessage([]byte(message("pass.example")))
	optneg := optNegPacket()
	conv := postfixConversation("192.0.2.10", "mail.client.example", fields, body)
	c := &connClient{addr: ln.Addr().String(), r: bufio.NewReaderSize(nil, 4096)}
	for range 3 { // warm the DNS cache
		if code, err := c.session(optneg, conv); err != nil || code != 'a' && code != 'c' {
			b.Fatalf("warm-up: reply %q, %v", code, err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if code, err := c.session(optneg, conv); err != nil || code != 'a' && code != 'c' {
			b.Fatalf("reply %q, %v", code, err)
		}
	}
}
