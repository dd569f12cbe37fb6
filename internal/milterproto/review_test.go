package milterproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestStreamAcrossBufferBoundaries: with no reply to body chunks the MTA
// writes packet after packet without waiting, so packets straddle the read
// buffer's end at every offset, and some are too big for it. Each chunk
// reaches the handler whole and unchanged, and in order.
func TestStreamAcrossBufferBoundaries(t *testing.T) {
	type chunk struct {
		n   int
		sum uint32
	}
	var mu sync.Mutex
	var got []chunk
	done := make(chan struct{})
	h := &funcHandler{body: func(b []byte) Response {
		mu.Lock()
		got = append(got, chunk{len(b), crc32.ChecksumIEEE(b)})
		mu.Unlock()
		return Continue
	}, eom: func(*Modifier) Response { close(done); return Accept }}
	opts := testOpts()
	opts.MaxPacket = 4 * readerSize
	srv := startServer(t, opts, func(*Session) Handler { return h })
	m := dialMTA(t, srv.path)
	_, _, proto, _ := m.optneg(postfixVersion, postfixActions, postfixProtocol)
	if proto&ProtoNRBody == 0 {
		t.Fatal("NR_BODY not negotiated")
	}

	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 2, 3, readerSize - 5, readerSize - 4, readerSize - 3, 65535, 65535, 2 * readerSize, 7}
	for range 60 {
		switch rng.IntN(4) {
		case 0:
			sizes = append(sizes, rng.IntN(16))
		case 1:
			sizes = append(sizes, 65535)
		case 2:
			sizes = append(sizes, rng.IntN(readerSize+64))
		default:
			sizes = append(sizes, rng.IntN(3*readerSize))
		}
	}
	var stream bytes.Buffer
	var want []chunk
	for i, n := range sizes {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i*7 + j*13)
		}
		stream.Write(binary.BigEndian.AppendUint32(nil, uint32(n+1)))
		stream.WriteByte('B')
		stream.Write(b)
		want = append(want, chunk{n, crc32.ChecksumIEEE(b)})
	}
	stream.Write(packet('E'))
	go func() {
		// Odd-sized writes, so that reads end anywhere in a packet.
		b := stream.Bytes()
		for len(b) > 0 {
			n := min(len(b), 1+rng.IntN(100000))
			if _, err := m.c.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
	}()
	// A generous deadline: some 10 MB go through the race detector on a
	// loaded machine.
	if code, data, err := m.tryRead(60 * time.Second); err != nil || code != 'a' {
		t.Fatalf("end of message: %q %q %v", code, data, err)
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("chunk %d: got %d bytes crc %08x, want %d bytes crc %08x (%d chunks, want %d)", i, got[i].n, got[i].sum, want[i].n, want[i].sum, len(got), len(want))
			}
		}
		t.Fatalf("%d chunks, want %d", len(got), len(want))
	}
}

// TestWriteDeadline: a peer that sends events whose reply it reads but
// never reads them fills the socket; the write of a reply then blocks. The
// idle limit bounds that write as it bounds a read, so the session ends
// instead of hanging until the daemon stops.
func TestWriteDeadline(t *testing.T) {
	opts := testOpts()
	opts.Idle = 200 * time.Millisecond
	srv := startServer(t, opts, func(*Session) Handler { return BaseHandler{} })
	m := dialMTA(t, srv.path)
	// No OPTNEG: every event is answered. The peer writes and never reads.
	helo := packet('H', "client.example\x00")
	flood := bytes.Repeat(helo, 4096)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = m.c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := m.c.Write(flood); err != nil {
				return
			}
		}
	}()
	select {
	case <-srv.errs:
	case <-time.After(10 * time.Second):
		t.Fatal("the session still runs 10 s after its peer stopped reading (idle limit 200 ms)")
	}
}

// captureConn is memConn keeping what is written.
type captureConn struct {
	memConn
	out bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, errors.New("closed")
	}
	return c.out.Write(p)
}

// TestNegotiationMatrix: for every MTA version from 1 to 7, every subset
// of the optional flags offered, with and without the required ones, and
// several action masks: the answer is the MTA's version when lower than
// ours, our actions within the offered ones, the required flags and the
// optional flags offered; macro lists only when SETSYMLIST is granted; and
// then exactly one reply to each event whose NR flag was not answered.
func TestNegotiationMatrix(t *testing.T) {
	optional := []Protocol{ProtoNRConnect, ProtoNRHelo, ProtoNRMail, ProtoNRRcpt, ProtoNRHeader, ProtoNREOH, ProtoNRBody, ProtoNoData}
	var optMask Protocol
	for _, f := range optional {
		optMask |= f
	}
	opts := &Options{
		Actions:    ActAddHeader | ActChangeHeader | ActQuarantine | ActSetSymList,
		Required:   ProtoNoUnknown | ProtoHdrLeadSpc,
		Optional:   optMask,
		MacroLists: map[Stage][]string{StageMail: {"{client_addr}", "i"}},
	}
	events := []struct {
		cmd   Command
		parts []string
	}{
		{CmdConnect, []string{"h\x00", "4", u16(25), "192.0.2.1\x00"}},
		{CmdHelo, []string{"h\x00"}},
		{CmdMail, []string{"<a@b>\x00"}},
		{CmdRcpt, []string{"<c@d>\x00"}},
		{CmdData, nil},
		{CmdUnknown, []string{"XYZZY\x00"}},
		{CmdHeader, []string{"From\x00", " a@b\x00"}},
		{CmdHeader, []string{"To\x00", " c@d\x00"}},
		{CmdEOH, nil},
		{CmdBody, []string{"body\r\n"}},
		{CmdBody, []string{"more\r\n"}},
		{CmdEOM, nil},
	}
	for _, version := range []uint32{0, 1, 2, 3, 4, 5, 6, 7} {
		for _, actions := range []Action{0, 0x1ff, 0x1ff &^ ActSetSymList, ActSetSymList} {
			for sub := range 1 << len(optional) {
				for _, req := range []Protocol{0, opts.Required} {
					var offer Protocol = req
					for i, f := range optional {
						if sub&(1<<i) != 0 {
							offer |= f
						}
					}
					var in []byte
					in = append(in, packet('O', u32(version)+u32(uint32(actions))+u32(uint32(offer)))...)
					for _, e := range events {
						in = append(in, packet('D', string(rune(e.cmd)), "i\x00Q\x00")...)
						in = append(in, packet(byte(e.cmd), e.parts...)...)
					}
					in = append(in, packet('Q')...)
					c := &captureConn{memConn: memConn{in: bytes.NewReader(in)}}
					err := NewSession(c, opts).Serve(BaseHandler{})
					name := fmt.Sprintf("version %d actions %#x offer %#x", version, actions, offer)
					if version < minVersion {
						if !errors.Is(err, ErrVersion) || c.out.Len() != 0 {
							t.Fatalf("%s: Serve %v, %d bytes written; want ErrVersion and nothing", name, err, c.out.Len())
						}
						continue
					}
					if err != nil {
						t.Fatalf("%s: Serve: %v", name, err)
					}
					out := c.out.Bytes()
					next := func() (byte, []byte) {
						if len(out) < 5 {
							t.Fatalf("%s: reply missing (%d bytes left)", name, len(out))
						}
						n := binary.BigEndian.Uint32(out)
						code, data := out[4], out[5:4+n]
						out = out[4+n:]
						return code, data
					}
					code, data := next()
					if code != 'O' || len(data) < 12 {
						t.Fatalf("%s: OPTNEG answered %q %q", name, code, data)
					}
					gotV := binary.BigEndian.Uint32(data)
					gotA := Action(binary.BigEndian.Uint32(data[4:]))
					gotP := Protocol(binary.BigEndian.Uint32(data[8:]))
					if gotV != min(version, Version) {
						t.Fatalf("%s: version %d answered", name, gotV)
					}
					if gotA != opts.Actions&actions {
						t.Fatalf("%s: actions %#x answered, want %#x", name, gotA, opts.Actions&actions)
					}
					if wantP := opts.Required | optMask&offer; gotP != wantP {
						t.Fatalf("%s: protocol %#x answered, want %#x", name, gotP, wantP)
					}
					lists := data[12:]
					if wantLists := gotA&ActSetSymList != 0; wantLists != (len(lists) > 0) {
						t.Fatalf("%s: macro lists %q with actions %#x", name, lists, gotA)
					}
					if len(lists) > 0 && string(lists) != u32(uint32(StageMail))+"{client_addr} i\x00" {
						t.Fatalf("%s: macro lists %q", name, lists)
					}
					n := Negotiated{Protocol: gotP}
					for _, e := range events {
						if !n.Replies(e.cmd) {
							continue
						}
						want := byte('c')
						if e.cmd == CmdEOM {
							want = 'a'
						}
						if code, data := next(); code != want || len(data) != 0 {
							t.Fatalf("%s: reply %q %q to %q, want %q", name, code, data, e.cmd, want)
						}
					}
					if len(out) != 0 {
						t.Fatalf("%s: %d bytes written beyond the replies due", name, len(out))
					}
				}
			}
		}
	}
}
