package milterproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// memConn is a net.Conn over an input stream; what is written is counted,
// and kept in out when it is set.
type memConn struct {
	in      *bytes.Reader
	out     *bytes.Buffer // what is written, when set
	written int
	writes  int
	maxOut  int
	closed  bool
}

func (c *memConn) Read(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.in.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	c.written += len(p)
	c.writes++
	if c.out != nil {
		c.out.Write(p)
	}
	c.maxOut = max(c.maxOut, len(p))
	return len(p), nil
}

func (c *memConn) Close() error                     { c.closed = true; return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "mem", Net: "unix"} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Name: "mem", Net: "unix"} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzHandler exercises every part of the API on what it gets.
type fuzzHandler struct {
	s *Session
	n int
	// the largest buffers seen kept at an event
	maxBig, maxOut, maxMacro int
}

func (h *fuzzHandler) touch(b ...[]byte) {
	h.maxBig = max(h.maxBig, cap(h.s.big))
	h.maxOut = max(h.maxOut, cap(h.s.out))
	for i := range h.s.macros.tables {
		h.maxMacro = max(h.maxMacro, cap(h.s.macros.tables[i].buf))
	}
	for _, x := range b {
		h.n += len(x)
	}
	for _, name := range []string{"i", "j", "{client_addr}"} {
		v, _ := h.s.Macros().Get(name)
		h.n += len(v)
	}
}

func (h *fuzzHandler) Connect(host []byte, _ Family, _ uint16, addr []byte) Response {
	h.touch(host, addr)
	return Continue
}
func (h *fuzzHandler) Helo(name []byte) Response { h.touch(name); return Continue }
func (h *fuzzHandler) Mail(from []byte, args Args) Response {
	h.touch(StripAngles(from))
	for a, rest, ok := args.Next(); ok; a, rest, ok = rest.Next() {
		h.touch(a)
	}
	return Continue
}
func (h *fuzzHandler) Rcpt(to []byte, _ Args) Response { h.touch(to); return Reject }
func (h *fuzzHandler) Data() Response                  { return Continue }
func (h *fuzzHandler) Unknown(c []byte) Response       { h.touch(c); return Reject }
func (h *fuzzHandler) Header(n, v []byte) Response     { h.touch(n, v); return Continue }
func (h *fuzzHandler) EndOfHeaders() Response          { return Continue }
func (h *fuzzHandler) Body(b []byte) Response          { h.touch(b); return Continue }
func (h *fuzzHandler) EndOfMessage(m *Modifier) Response {
	_ = m.InsertHeader(0, "Authentication-Results", " mx; none")
	_ = m.ChangeHeader(1, "Authentication-Results", "")
	_ = m.AddHeader("X", " y\r\n\tz")
	_ = m.Quarantine("q")
	return ReplyCode("550 5.7.1 no")
}
func (h *fuzzHandler) Abort() {}
func (h *fuzzHandler) Reset() {}

// seedStream is a Postfix-shaped conversation.
func seedStream() []byte {
	var b []byte
	add := func(cmd byte, parts ...string) { b = append(b, packet(cmd, parts...)...) }
	add('O', u32(6)+u32(0x1ff)+u32(0x1fffff))
	add('D', "C", "j\x00mx\x00")
	add('C', "h\x00", "4", u16(25), "192.0.2.1\x00")
	add('H', "h\x00")
	add('D', "M", "{client_addr}\x00192.0.2.1\x00")
	add('M', "<a@b>\x00", "SIZE=1\x00")
	add('R', "<c@d>\x00")
	add('L', "From\x00", " a@b\x00")
	add('N')
	add('B', "body\r\n")
	add('E')
	add('A')
	add('K')
	add('U', "XYZZY\x00")
	add('Q')
	return b
}

// FuzzPacket: the decoders never panic on any payload, and what they
// return lies within it.
func FuzzPacket(f *testing.F) {
	f.Add(byte('C'), []byte("h\x004\x00\x19192.0.2.1\x00"))
	f.Add(byte('L'), []byte("From\x00 a@b\x00"))
	f.Add(byte('M'), []byte("<a@b>\x00SIZE=1\x00"))
	f.Add(byte('D'), []byte("Mi\x00Q\x00j"))
	f.Add(byte('O'), []byte("\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff"))
	f.Fuzz(func(t *testing.T, cmd byte, p []byte) {
		within := func(b []byte) {
			if len(b) > 0 && !bytes.Contains(p, b) {
				t.Fatalf("%q not in the payload", b)
			}
		}
		if ci, ok := decodeConnect(p); ok {
			within(ci.host)
			within(ci.addr)
		}
		if n, v, ok := decodeHeader(p); ok {
			within(n)
			within(v)
			if bytes.IndexByte(n, 0) >= 0 || len(n)+len(v)+2 != len(p) {
				t.Fatalf("header %q: %q from %q", n, v, p)
			}
		}
		if a, args, ok := decodeAddress(p); ok {
			within(a)
			for x, rest, ok := args.Next(); ok; x, rest, ok = rest.Next() {
				within(x)
			}
		}
		within(decodeString(p))
		decodeOptNeg(p)
		var m Macros
		m.store(append([]byte{cmd}, p...))
		v, _ := m.Get("i")
		within(v)
	})
}

// FuzzSession: any byte stream through a whole session ends it with nil or
// an error, never a panic, and memory stays bounded by the packet limit.
func FuzzSession(f *testing.F) {
	f.Add(seedStream())
	f.Add(append(seedStream()[:40], 0, 0, 0, 0))
	f.Add([]byte("\x00\x00\x00\x05B1234\x00\x00\x00\x01E"))
	f.Add([]byte("\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff\x00\x00\x00\x03Lx\x00"))
	const maxPacket = 4096
	f.Fuzz(func(t *testing.T, stream []byte) {
		c := &memConn{in: bytes.NewReader(stream)}
		opts := testOpts()
		opts.MaxPacket = maxPacket
		s := NewSession(c, opts)
		h := &fuzzHandler{s: s}
		err := s.Serve(h)
		if err != nil && errors.Is(err, io.EOF) {
			t.Fatalf("Serve returned a bare EOF: %v", err)
		}
		if !c.closed {
			t.Fatal("connection left open")
		}
		if c.maxOut > 4*maxPacket {
			t.Fatalf("a write of %d bytes", c.maxOut)
		}
		if h.maxBig > maxPacket || h.maxOut > maxKeptOut || h.maxMacro > maxPacket {
			t.Fatalf("buffers kept: big %d out %d macros %d", h.maxBig, h.maxOut, h.maxMacro)
		}
		if s.r != nil || s.big != nil {
			t.Fatal("read buffers not released after Serve")
		}

		// Renewed, whatever the stream left in it, the session serves a
		// well-formed conversation exactly as a new one does.
		fresh, renewed := &memConn{in: bytes.NewReader(seedStream()), out: &bytes.Buffer{}}, &memConn{in: bytes.NewReader(seedStream()), out: &bytes.Buffer{}}
		ns := NewSession(fresh, opts)
		want := &recorder{s: ns, macros: []string{"j", "{client_addr}", "i"}}
		wantErr := ns.Serve(want)
		s.Renew(renewed)
		got := &recorder{s: s, macros: want.macros}
		gotErr := s.Serve(got)
		if !slices.Equal(got.Events(), want.Events()) || !bytes.Equal(renewed.out.Bytes(), fresh.out.Bytes()) || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("renewed session: events %q, wrote %q, %v; a new one: %q, %q, %v",
				got.Events(), renewed.out.Bytes(), gotErr, want.Events(), fresh.out.Bytes(), wantErr)
		}
	})
}
