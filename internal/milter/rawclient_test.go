package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"
)

// rawClient speaks the milter protocol packet by packet, so that a test can
// stop anywhere (half a packet, no end of message) or send what no library
// client would (oversized packets, unknown commands, NUL inside a value).
// Like Postfix it reads no reply to an event whose SMFIP_NR_* flag the
// milter negotiated.
type rawClient struct {
	t     *testing.T
	c     net.Conn
	proto milter.OptProtocol // the milter's OPTNEG answer
}

// postfixProtocol is the protocol mask Postfix 3.7 offers with
// milter_protocol = 6: every SMFIP_* flag up to HDR_LEADSPC.
const postfixProtocol = 0x1fffff

// dialRaw connects and negotiates options as Postfix does (version 6,
// without v6-only action bits, every protocol flag offered).
func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	return dialRawProto(t, addr, postfixProtocol)
}

// dialRawProto is dialRaw offering the protocol mask offer.
func dialRawProto(t *testing.T, addr string, offer uint32) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawClient{t: t, c: c}
	opt := make([]byte, 12)
	binary.BigEndian.PutUint32(opt, 6)
	binary.BigEndian.PutUint32(opt[4:], uint32(milter.OptAddHeader|milter.OptChangeHeader|milter.OptQuarantine))
	binary.BigEndian.PutUint32(opt[8:], offer)
	r.send('O', opt)
	code, data, err := r.read()
	if err != nil || code != 'O' || len(data) < 12 {
		t.Fatalf("option negotiation answered %q %q %v", code, data, err)
	}
	r.proto = milter.OptProtocol(binary.BigEndian.Uint32(data[8:]))
	return r
}

// send writes one packet.
func (r *rawClient) send(code byte, data []byte) {
	r.t.Helper()
	b := make([]byte, 5+len(data))
	binary.BigEndian.PutUint32(b, uint32(1+len(data)))
	b[4] = code
	copy(b[5:], data)
	r.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("write %q: %v", code, err)
	}
}

// noReply reports whether the milter negotiated no reply to code. The
// flags are spelt out from milter-protocol.txt / Postfix's milter8.c rather
// than taken from the code under test.
func (r *rawClient) noReply(code byte) bool {
	flag := map[byte]milter.OptProtocol{
		'L': 1 << 7,  // SMFIP_NR_HDR
		'N': 1 << 18, // SMFIP_NR_EOH
		'B': 1 << 19, // SMFIP_NR_BODY
		'C': 1 << 12, 'H': 1 << 13, 'M': 1 << 14, 'R': 1 << 15, 'T': 1 << 16, 'U': 1 << 17,
	}[code]
	return r.proto&flag != 0
}

// read reads one reply packet.
func (r *rawClient) read() (byte, []byte, error) {
	r.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(r.c, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > 1<<20 {
		return 0, nil, io.ErrUnexpectedEOF
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.c, b); err != nil {
		return 0, nil, err
	}
	return b[0], b[1:], nil
}

// step sends a packet and returns the reply: continue, without reading,
// for an event negotiated without reply (as Postfix's milter8_event does).
func (r *rawClient) step(code byte, data []byte) (byte, []byte) {
	r.t.Helper()
	r.send(code, data)
	if r.noReply(code) {
		return 'c', nil
	}
	c, d, err := r.read()
	if err != nil {
		r.t.Fatalf("reply to %q: %v", code, err)
	}
	return c, d
}

// want sends a packet and expects the reply code.
func (r *rawClient) want(code byte, data []byte, reply byte) {
	r.t.Helper()
	if c, d := r.step(code, data); c != reply {
		r.t.Fatalf("reply to %q: %q %q, want %q", code, c, d, reply)
	}
}

// eom sends end of message and collects the modifications and the final
// reply (its code and data).
func (r *rawClient) eom() (mods []string, code byte, data string) {
	r.t.Helper()
	r.send('E', nil)
	for {
		c, d, err := r.read()
		if err != nil {
			r.t.Fatalf("end of message: %v", err)
		}
		switch c {
		case 'a', 'r', 't', 'd', 'y', 'c':
			return mods, c, strings.TrimRight(string(d), "\x00")
		}
		mods = append(mods, string(c)+":"+string(d))
	}
}

// closedByServer reports whether the server ends the connection (EOF or
// reset) within d, reading and discarding what it sends.
func (r *rawClient) closedByServer(d time.Duration) bool {
	r.c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, r.c)
	var ne net.Error
	return !(err != nil && errors.As(err, &ne) && ne.Timeout())
}

// Payload builders (milter protocol, milter-protocol.txt).

func cstr(ss ...string) []byte {
	var b bytes.Buffer
	for _, s := range ss {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return b.Bytes()
}

func connectData(host, ip string) []byte {
	b := append([]byte(host), 0, '4', 0x9c, 0x40)
	return append(b, cstr(ip)...)
}

func macroData(stage byte, kv ...string) []byte {
	return append([]byte{stage}, cstr(kv...)...)
}

// begin sends connect, HELO, MAIL (with the client address macro) and RCPT.
func (r *rawClient) begin(ip, mailFrom string) {
	r.t.Helper()
	r.want('C', connectData("client.example", ip), 'c')
	r.want('H', cstr("mail.client.example"), 'c')
	r.send('D', macroData('M', "i", "RAWQ1", "{client_addr}", ip, "j", testAuthservID))
	r.want('M', cstr("<"+mailFrom+">"), 'c')
	r.want('R', cstr("<bob@mx.test.example>"), 'c')
}

// header sends one field the way Postfix does with HDR_LEADSPC.
func (r *rawClient) header(name, value string) {
	r.t.Helper()
	r.want('L', cstr(name, value), 'c')
}

// sessionGoroutineMarkers identify goroutines that belong to a milter
// connection or a message: the protocol loop, our session and
// Transaction goroutines, and the DKIM verification. pkg/cache's upstream
// queries are not listed: they deliberately outlive a cancelled caller for
// at most their own deadline (single flight).
var sessionGoroutineMarkers = []string{
	"internal/milterproto.(*Session)",
	"internal/milter.(*Server).serve(", // a worker serving a connection (an idle one is not a session's)
	"internal/milter.(*Transaction)",
	"pkg/verify.runVerification",
	"github.com/emersion/go-msgauth/dkim.",
}

// sessionGoroutines returns the number of session goroutines and their
// stacks.
func sessionGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var b strings.Builder
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for _, m := range sessionGoroutineMarkers {
			if strings.Contains(g, m) {
				count++
				b.WriteString(g + "\n\n")
				break
			}
		}
	}
	return count, b.String()
}

// waitGoroutines waits until at most want session goroutines remain and
// fails with their stacks otherwise.
func waitGoroutines(t *testing.T, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, stacks := sessionGoroutines()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d session goroutines left, want at most %d:\n%s", what, n, want, stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// heapAfterGC is the live heap after a collection.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
