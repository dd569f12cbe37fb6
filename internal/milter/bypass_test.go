package milter

import (
	"context"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/milterproto"
)

// liveCtx is a connection context that counts the cancelable contexts
// derived from it and not yet released: context.WithCancel registers a
// child with the AfterFunc of a parent that has one, and calls the stop
// function it got back when the child is cancelled.
type liveCtx struct {
	context.Context
	done chan struct{}
	live atomic.Int64
}

func newLiveCtx() *liveCtx {
	return &liveCtx{Context: context.Background(), done: make(chan struct{})}
}

func (c *liveCtx) Done() <-chan struct{} { return c.done }

func (c *liveCtx) AfterFunc(func()) func() bool {
	c.live.Add(1)
	var once sync.Once
	return func() bool {
		stopped := false
		once.Do(func() { c.live.Add(-1); stopped = true })
		return stopped
	}
}

// TestBypassReleasesTransaction: a message bypassed at MAIL FROM (trusted
// network) releases its Transaction's context at once, like every other
// message at its end. A context left registered with the connection's
// lives as long as the connection: one per message, without bound on a
// connection kept across SMTP sessions (SMFIC_QUIT_NC).
func TestBypassReleasesTransaction(t *testing.T) {
	t.Parallel()
	var armed atomic.Bool
	armed.Store(true)
	h := newHarness(t, nil, panicOnce("eom", &armed)) // in the bypassed Transaction's End
	srvSide, mtaSide := net.Pipe()
	defer mtaSide.Close()
	live := newLiveCtx()
	c := &connection{engine: &h.srv.engine, log: h.srv.log, ctx: live, cancel: func() {}}
	c.ps = milterproto.NewSession(srvSide, &c.opts)
	defer c.ps.Close()
	c.clientIP = netip.MustParseAddr("127.0.0.1") // trusted by default

	if r := c.Mail([]byte("<x@reject.example>"), nil); r.Code() != 'y' || armed.Load() {
		t.Fatalf("MAIL answered %q with the panic armed %v, want the on_error reply after the panic", r.Code(), armed.Load())
	}
	c.Abort()
	if n := live.live.Load(); n != 0 {
		t.Fatalf("%d message contexts still registered after a panic in a bypassed message's End, want 0", n)
	}
	for i := range 20 {
		if r := c.Mail([]byte("<x@reject.example>"), nil); r.Code() != 'a' {
			t.Fatalf("message %d: MAIL answered %q, want accept (trusted network)", i, r.Code())
		}
		c.Abort()
	}
	if n := live.live.Load(); n != 0 {
		t.Errorf("%d message contexts still registered with the connection after 20 bypassed messages, want 0", n)
	}

	// The same for an evaluated message ended by ABORT (the reference).
	c.clientIP = netip.MustParseAddr("198.51.100.7")
	c.Mail([]byte("<x@reject.example>"), nil)
	c.Abort()
	if n := live.live.Load(); n != 0 {
		t.Errorf("%d message contexts registered after an aborted message, want 0", n)
	}
}

// verdictLines returns the verdict log lines.
func verdictLines(logs string) []string {
	var out []string
	for l := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(l, "msg=verdict") {
			out = append(out, l)
		}
	}
	return out
}

var queueIDAttr = regexp.MustCompile(`queue_id=(\S*)`)

// TestNoReplyBypassVerdictAtEOM: with NR_MAIL the MTA goes on to the end of
// a message bypassed at MAIL FROM, so its verdict line is written there,
// with the queue id that Postfix only has by then (it assigns one at the
// first accepted RCPT; macro i is empty at MAIL FROM). A bypassed message
// that ends with ABORT before its end gets no line, like any other.
func TestNoReplyBypassVerdictAtEOM(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	r := dialRawProto(t, h.addr, postfixProtocol)
	if !r.noReply('M') {
		t.Fatal("NR_MAIL not negotiated")
	}
	r.want('C', connectData("localhost", "127.0.0.1"), 'c')
	r.want('H', cstr("localhost"), 'c')

	// A message given up before its end (ABORT after RCPT).
	r.send('D', macroData('M', "{client_addr}", "127.0.0.1", "j", testAuthservID))
	r.want('M', cstr("<gone@reject.example>"), 'c')
	r.send('D', macroData('R', "i", "QGONE"))
	r.want('R', cstr("<bob@mx.test.example>"), 'c')
	r.send('A', nil)

	// A message that reaches its end.
	r.send('D', macroData('M', "{client_addr}", "127.0.0.1", "j", testAuthservID))
	r.want('M', cstr("<x@reject.example>"), 'c')
	r.send('D', macroData('R', "i", "QBYPASS1"))
	r.want('R', cstr("<bob@mx.test.example>"), 'c')
	body := sendHeaders(r, []byte(message("reject.example")))
	r.want('N', nil, 'c')
	r.want('B', body, 'c')
	r.send('D', macroData('E', "i", "QBYPASS1"))
	mods, code, _ := r.eom()
	if code != 'a' || len(mods) != 0 {
		t.Fatalf("end of message: %q with %q, want accept alone", code, mods)
	}
	r.send('A', nil)
	r.send('Q', nil)
	r.closedByServer(5e9)

	lines := verdictLines(h.logs.String())
	if len(lines) != 1 {
		t.Fatalf("%d verdict lines, want 1 (the message that reached its end):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if m := queueIDAttr.FindStringSubmatch(lines[0]); m == nil || m[1] != "QBYPASS1" || !strings.Contains(lines[0], "bypass=trusted-network") {
		t.Errorf("verdict line %q, want queue_id=QBYPASS1 and bypass=trusted-network", lines[0])
	}
}
