package milterproto

import (
	"bytes"
	"encoding/binary"
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
	for range 200 {
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
	m.expect('a', "")
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
