package milter

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"

	"github.com/dmarc-milter/dmarc-milter/internal/authres"
	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/milterproto"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

// fuzzCodes are the milter commands a fuzzed session picks from (valid
// and invalid ones).
var fuzzCodes = []byte{'C', 'H', 'M', 'R', 'L', 'N', 'B', 'E', 'A', 'D', 'T', 'Q', 'U', 'K', 'O', 'x'}

// FuzzSession drives the server with a fuzzed sequence of milter packets
// after a valid option negotiation, offering the NR flags (as Postfix does)
// when the input's length is odd. Property: the server never panics,
// neither into its own on_error path nor in the protocol loop (no "panic"
// in our log), never tries to answer an event negotiated without reply (the
// loop refuses it and the session end is logged with
// milterproto.ErrReplyAtNoReplyStage), always ends the connection or
// answers, and a well-formed session afterwards still gets its verdict.
func FuzzSession(f *testing.F) {
	f.Add([]byte{2, 5, 'h', 'e', 'l', 'o', '!', 3, 10, 'a', '@', 'b', '.', 'c', 0, 0, 0, 0, 0, 4, 8, 'F', 'r', 'o', 'm', 0, ' ', 'x', 0, 5, 0, 7, 0})
	f.Add([]byte{0, 20, 'h', 0, '4', 0x9c, 0x40, '1', '2', '7', '.', '0', '.', '0', '.', '1', 0, 0, 0, 0, 0, 0, 8, 0})
	f.Add([]byte{9, 3, 'M', 'i', 0, 8, 1, 0, 12, 0})
	h := newHarness(&testing.T{}, func(c *config.Config) {
		c.Timeouts.EndOfMessage = time.Second
		c.Timeouts.SPF, c.Timeouts.DKIM, c.Timeouts.DMARC = time.Second, time.Second, time.Second
	})
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		h.logs.Reset()
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		optneg := make([]byte, 12)
		binary.BigEndian.PutUint32(optneg, 6)
		binary.BigEndian.PutUint32(optneg[4:], uint32(milter.OptAddHeader|milter.OptChangeHeader|milter.OptQuarantine))
		if len(data)%2 == 1 {
			binary.BigEndian.PutUint32(optneg[8:], postfixProtocol)
		}
		writePacket(c, 'O', optneg)
		for len(data) >= 2 {
			code := fuzzCodes[int(data[0])%len(fuzzCodes)]
			n := min(int(data[1])%64, len(data)-2)
			writePacket(c, code, data[2:2+n])
			data = data[2+n:]
		}
		writePacket(c, 'Q', nil)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		// A reset is an end too: the server closed with our packets unread.
		if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("server did not end the session: %v", err)
		}
		checkAlive(t, h.addr)
		if logs := h.logs.String(); strings.Contains(logs, "panic") || strings.Contains(logs, milterproto.ErrReplyAtNoReplyStage.Error()) {
			t.Fatalf("panic in the server, or a reply refused:\n%s", logs)
		}
	})
}

// checkAlive runs one well-formed message and expects its DMARC reject.
func checkAlive(t *testing.T, addr string) {
	t.Helper()
	cl := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		ActionMask: milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
	})
	s, err := cl.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	steps := []func() (*milter.Action, error){
		func() (*milter.Action, error) { return s.Conn("c", milter.FamilyInet, 1, "198.51.100.9") },
		func() (*milter.Action, error) { return s.Helo("c.example") },
		func() (*milter.Action, error) { return s.Mail("a@reject.example", nil) },
		func() (*milter.Action, error) { return s.HeaderField("From", " a@reject.example") },
		func() (*milter.Action, error) { return s.HeaderEnd() },
	}
	for i, step := range steps {
		if act, err := step(); err != nil || act.Code != milter.ActContinue {
			t.Fatalf("step %d: %+v %v", i, act, err)
		}
	}
	_, act, err := s.BodyReadFrom(strings.NewReader("x\r\n"))
	if err != nil || act.Code != milter.ActReplyCode || act.SMTPCode != 550 {
		t.Fatalf("well-formed message after the fuzzed one: %+v %v", act, err)
	}
}

func writePacket(c net.Conn, code byte, data []byte) {
	b := make([]byte, 5+len(data))
	binary.BigEndian.PutUint32(b, uint32(1+len(data)))
	b[4] = code
	copy(b[5:], data)
	c.Write(b) // the server may have closed already
}

// FuzzForgedAR feeds hostile Authentication-Results values through a
// transaction and checks the deletions: exactly the fields whose
// authserv-id is ours, by 1-based index among the A-R fields, highest
// first.
func FuzzForgedAR(f *testing.F) {
	f.Add(testAuthservID+"; dmarc=pass", "other; none", " (c) MX.TEST.EXAMPLE ; spf=pass")
	f.Add("\"mx.test.example\"", "mx.test.example.", "(unterminated mx.test.example")
	f.Add("", "mx.test.example/x", "x")
	res, err := cache.New(cache.Config{Nameservers: []string{"127.0.0.1:9"}})
	if err != nil {
		f.Fatal(err)
	}
	cfg := config.Default()
	cfg.AuthservID = testAuthservID
	e, err := NewEngine(cfg, res, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b, c string) {
		// An authenticated submission: no DNS, but hygiene still applies.
		tx := Begin(context.Background(), e, Envelope{ClientIP: netip.MustParseAddr("192.0.2.1"), AuthUser: "u"}, nil)
		defer tx.Close()
		values := []string{a, b, c}
		for i, v := range values {
			tx.Header("Authentication-Results", v)
			if i == 0 {
				tx.Header("Received", "x")
			}
		}
		tx.EndOfHeaders()
		d := tx.End()
		var want []int
		for i := len(values) - 1; i >= 0; i-- {
			if authres.IsOurs(values[i], testAuthservID) {
				want = append(want, i+1)
			}
		}
		if len(d.Delete) != len(want) {
			t.Fatalf("deleted %+v, want indexes %v", d.Delete, want)
		}
		for i, ref := range d.Delete {
			if ref.Index != want[i] || ref.Name != "Authentication-Results" {
				t.Fatalf("deleted %+v, want indexes %v", d.Delete, want)
			}
		}
	})
}
