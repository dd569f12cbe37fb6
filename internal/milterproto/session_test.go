package milterproto

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"
)

// postfixOffer is what Postfix 3.7 offers (cmd/milterbench does the same).
const (
	postfixVersion  = 6
	postfixActions  = Action(0x1ff)
	postfixProtocol = Protocol(0x1fffff)
)

// TestPostfixConversation drives a session with the packets Postfix sends
// (cmd/milterbench/milter.go's shapes): macros before every event, no
// reply read for the events whose NR flag was negotiated, ABORT after each
// message, QUIT at the end.
func TestPostfixConversation(t *testing.T) {
	ch := make(chan *recorder, 1)
	eom := func(m *Modifier) Response {
		for _, err := range []error{
			m.ChangeHeader(2, "Authentication-Results", ""),
			m.InsertHeader(0, "Authentication-Results", " mx.example;\r\n\tdmarc=pass"),
			m.AddHeader("X-Test", " 1"),
			m.Quarantine("held"),
		} {
			if err != nil {
				t.Errorf("modification: %v", err)
			}
		}
		return Accept
	}
	srv := startServer(t, testOpts(), newRecorder(ch, []string{"i", "j", "{client_addr}"}, nil, eom))
	m := dialMTA(t, srv.path)

	ver, act, proto, symlist := m.optneg(postfixVersion, postfixActions, postfixProtocol)
	if ver != 6 || act != 0x131 || proto != ProtoNoUnknown|ProtoHdrLeadSpc|ProtoNRHeader|ProtoNREOH|ProtoNRBody|ProtoNoData {
		t.Fatalf("OPTNEG reply version %d actions %#x protocol %#x", ver, act, proto)
	}
	if want := u32(2) + "{client_addr} {client_name} s i j {auth_authen} {auth_type}\x00"; symlist != want {
		t.Errorf("macro lists %q, want %q", symlist, want)
	}
	r := <-ch
	if n := r.s.Negotiated(); n.Missing != 0 || n.Offered != postfixProtocol || n.Version != 6 {
		t.Errorf("Negotiated = %+v", *n)
	}

	m.send('D', "C", "j\x00mx.example\x00{daemon_name}\x00smtpd\x00")
	m.send('C', "client.example\x00", "4", u16(40000), "192.0.2.1\x00")
	m.expect('c', "")
	m.send('D', "H", "{tls_version}\x00TLSv1.3\x00")
	m.send('H', "client.example\x00")
	m.expect('c', "")

	for msg := 1; msg <= 2; msg++ {
		m.send('D', "M", "{client_addr}\x00192.0.2.1\x00{auth_authen}\x00\x00")
		m.send('M', "<a@b.example>\x00", "SIZE=100\x00", "BODY=8BITMIME\x00")
		m.expect('c', "")
		m.send('D', "R", "i\x00QID\x00")
		m.send('R', "<x@y.example>\x00")
		m.expect('c', "")
		// NODATA: Postfix sends the macros, not the event. Content: no
		// reply is read until end of message.
		m.send('D', "T", "i\x00QID\x00")
		m.send('D', "L", "i\x00QID\x00")
		m.send('L', "From\x00", " A <a@b.example>\x00")
		m.send('D', "L", "i\x00QID\x00")
		m.send('L', "Subject\x00", " one\n\ttwo\x00")
		m.send('D', "N", "i\x00QID\x00")
		m.send('N')
		m.send('D', "B", "i\x00QID\x00")
		m.send('B', "body\r\n")
		writesBefore := srvWrites(srv)
		m.send('D', "E", "i\x00QID\x00")
		m.send('E')
		m.expect('m', u32(2)+"Authentication-Results\x00\x00")
		m.expect('i', u32(0)+"Authentication-Results\x00 mx.example;\n\tdmarc=pass\x00")
		m.expect('h', "X-Test\x00 1\x00")
		m.expect('q', "held\x00")
		m.expect('a', "")
		if got := srvWrites(srv) - writesBefore; got != 1 {
			t.Errorf("message %d: end of message in %d writes, want 1", msg, got)
		}
		m.send('A')
	}
	m.send('Q')
	if err := srv.result(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	m.expectEOF()

	want := []string{
		"connect client.example 4 40000 192.0.2.1 j=mx.example",
		"helo client.example j=mx.example",
	}
	for range 2 {
		want = append(want,
			"mail <a@b.example> SIZE=100 BODY=8BITMIME j=mx.example {client_addr}=192.0.2.1",
			"rcpt <x@y.example> i=QID j=mx.example {client_addr}=192.0.2.1",
			`header From:" A <a@b.example>" i=QID j=mx.example {client_addr}=192.0.2.1`,
			`header Subject:" one\n\ttwo" i=QID j=mx.example {client_addr}=192.0.2.1`,
			"eoh i=QID j=mx.example {client_addr}=192.0.2.1",
			"body 6 i=QID j=mx.example {client_addr}=192.0.2.1",
			"eom i=QID j=mx.example {client_addr}=192.0.2.1",
			"abort j=mx.example", // ABORT clears the message's macros first
		)
	}
	if got := r.Events(); !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func srvWrites(s *server) int64 {
	_, c := s.session(0)
	return c.writes.Load()
}

// TestNoReplyFlagsNotOffered: an MTA that offers no NR flag gets a reply to
// every event; the required flags are answered anyway and reported.
func TestNoReplyFlagsNotOffered(t *testing.T) {
	ch := make(chan *recorder, 1)
	srv := startServer(t, testOpts(), newRecorder(ch, nil, nil, nil))
	m := dialMTA(t, srv.path)
	ver, act, proto, symlist := m.optneg(2, ActAddHeader|ActChangeHeader, 0)
	if ver != 2 || act != ActAddHeader|ActChangeHeader || proto != ProtoNoUnknown|ProtoHdrLeadSpc || symlist != "" {
		t.Fatalf("OPTNEG reply version %d actions %#x protocol %#x symlist %q", ver, act, proto, symlist)
	}
	r := <-ch
	if n := r.s.Negotiated(); n.Missing != ProtoNoUnknown|ProtoHdrLeadSpc {
		t.Errorf("Missing = %#x", n.Missing)
	}
	m.send('M', "<>\x00")
	m.expect('c', "")
	m.send('L', "From\x00", "a@b\x00")
	m.expect('c', "")
	m.send('N')
	m.expect('c', "")
	m.send('B', "x")
	m.expect('c', "")
	m.send('T')
	m.expect('c', "")
	m.send('E')
	m.expect('a', "")
}

func TestVersionTooOld(t *testing.T) {
	srv := startServer(t, testOpts(), func(*Session) Handler { return BaseHandler{} })
	m := dialMTA(t, srv.path)
	m.send('O', u32(1)+u32(0x3f)+u32(0x7f))
	m.expectEOF()
	if err := srv.result(t); !errors.Is(err, ErrVersion) {
		t.Errorf("Serve: %v, want ErrVersion", err)
	}
}

// TestGoMilterClient talks to a session with go-milter's client, an
// independent implementation, with and without the NR flags offered.
func TestGoMilterClient(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto milter.OptProtocol
	}{
		{"no NR offered", 0},
		{"NR offered", milter.OptNoHeaderReply | milter.OptNoEOHReply | milter.OptNoBodyReply | milter.OptHeaderLeadingSpace | milter.OptNoUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := make(chan *recorder, 1)
			eom := func(m *Modifier) Response {
				if v, _ := m.s.Macros().Get("{auth_authen}"); string(v) == "reject" {
					return ReplyCode("550 5.7.1 rejected, 100%% sure")
				}
				m.ChangeHeader(1, "Authentication-Results", "")
				m.InsertHeader(0, "Authentication-Results", " mx.example; dmarc=pass")
				m.Quarantine("dmarc")
				return Accept
			}
			srv := startServer(t, testOpts(), newRecorder(ch, []string{"{auth_authen}"}, nil, eom))
			cl := milter.NewClientWithOptions("unix", srv.path, milter.ClientOptions{
				ActionMask:   milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine,
				ProtocolMask: tc.proto,
				ReadTimeout:  5 * time.Second,
				WriteTimeout: 5 * time.Second,
			})
			s, err := cl.Session()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r := <-ch
			if got := s.ProtocolOpts & (milter.OptNoHeaderReply | milter.OptNoEOHReply | milter.OptNoBodyReply); got != tc.proto&(milter.OptNoHeaderReply|milter.OptNoEOHReply|milter.OptNoBodyReply) {
				t.Errorf("negotiated NR flags %#x", got)
			}
			if _, err := s.Conn("client.example", milter.FamilyInet, 25, "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Helo("helo.example"); err != nil {
				t.Fatal(err)
			}
			for _, who := range []string{"pass", "reject"} {
				if err := s.Macros(milter.CodeMail, "{auth_authen}", who); err != nil {
					t.Fatal(err)
				}
				if act, err := s.Mail("a@b.example", []string{"SIZE=10"}); err != nil || act.Code != milter.ActContinue {
					t.Fatalf("mail: %v %v", act, err)
				}
				if _, err := s.Rcpt("x@y.example", nil); err != nil {
					t.Fatal(err)
				}
				if _, err := s.HeaderField("From", " a@b.example"); err != nil {
					t.Fatal(err)
				}
				if _, err := s.HeaderEnd(); err != nil {
					t.Fatal(err)
				}
				mods, act, err := s.BodyReadFrom(bytes.NewReader([]byte("hello\r\n")))
				if err != nil {
					t.Fatal(err)
				}
				if who == "reject" {
					if act.Code != milter.ActReplyCode || act.SMTPCode != 550 || act.SMTPText != "5.7.1 rejected, 100%% sure" || len(mods) != 0 {
						t.Errorf("reject: %+v, %d modifications", act, len(mods))
					}
				} else {
					if act.Code != milter.ActAccept || len(mods) != 3 {
						t.Fatalf("pass: %+v, %+v", act, mods)
					}
					if mods[0].Code != milter.ActChangeHeader || mods[0].HeaderIndex != 1 || mods[0].HeaderValue != "" ||
						mods[1].Code != milter.ActInsertHeader || mods[1].HeaderIndex != 0 || mods[1].HeaderValue != " mx.example; dmarc=pass" ||
						mods[2].Code != milter.ActQuarantine || mods[2].Reason != "dmarc" {
						t.Errorf("modifications %+v", mods)
					}
				}
				if err := s.Abort(); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			if err := srv.result(t); err != nil {
				t.Errorf("Serve: %v", err)
			}
			ev := r.Events()
			if len(ev) < 3 || ev[0] != "connect client.example 4 25 192.0.2.1" || ev[1] != "helo helo.example" ||
				ev[2] != "mail <a@b.example> SIZE=10 {auth_authen}=pass" {
				t.Errorf("events %q", ev)
			}
		})
	}
}

// TestReplyAtNoReplyStage: a decision at an event whose reply the MTA does
// not read ends the session instead of desynchronising it.
func TestReplyAtNoReplyStage(t *testing.T) {
	ch := make(chan *recorder, 1)
	srv := startServer(t, testOpts(), newRecorder(ch, nil, map[Command]Response{CmdHeader: Reject}, nil))
	m := dialMTA(t, srv.path)
	m.optneg(postfixVersion, postfixActions, postfixProtocol)
	m.send('M', "<a@b>\x00")
	m.expect('c', "")
	m.send('L', "From\x00", "x\x00")
	m.expectEOF()
	if err := srv.result(t); !errors.Is(err, ErrReplyAtNoReplyStage) {
		t.Errorf("Serve: %v", err)
	}
}

// TestMalformed: each bad packet ends the session with its error, never a
// panic, and the connection is closed.
func TestMalformed(t *testing.T) {
	opts := testOpts()
	opts.MaxPacket = 1 << 16
	for _, tc := range []struct {
		name string
		raw  string
		want error
	}{
		{"zero length", "\x00\x00\x00\x00", ErrZeroLength},
		{"too large", u32(1<<16+1) + "B", ErrTooLarge},
		{"unknown command", string(packet('Z')), ErrUnknownCommand},
		{"empty macro", string(packet('D')), ErrMalformed},
		{"short optneg", string(packet('O', "\x00\x00\x00\x06")), ErrMalformed},
		{"header without value", string(packet('L', "From\x00x")), ErrMalformed},
		{"connect without family", string(packet('C', "host\x00")), ErrMalformed},
		{"mail unterminated", string(packet('M', "<a@b>")), ErrMalformed},
		{"cut packet", u32(10) + "B12", errors.New("unexpected EOF")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, opts, func(*Session) Handler { return BaseHandler{} })
			m := dialMTA(t, srv.path)
			if _, err := m.c.Write([]byte(tc.raw)); err != nil {
				t.Fatal(err)
			}
			if tc.name == "cut packet" {
				m.c.(*net.UnixConn).CloseWrite()
			}
			err := srv.result(t)
			if err == nil || !errors.Is(err, tc.want) && !strings.Contains(err.Error(), tc.want.Error()) {
				t.Errorf("Serve: %v, want %v", err, tc.want)
			}
			m.expectEOF()
		})
	}
}

// TestBigPacket: a packet larger than the read buffer is read whole into
// the separate buffer, which is dropped after use when it is big.
func TestBigPacket(t *testing.T) {
	opts := testOpts()
	opts.MaxPacket = 2 << 20
	got := make(chan int, 4)
	var sess *Session
	h := &funcHandler{body: func(chunk []byte) Response {
		ok := 1
		for i, c := range chunk {
			if c != byte(i) {
				ok = 0
				break
			}
		}
		got <- len(chunk)*ok + (1-ok)*-1
		return Continue
	}, eom: func(*Modifier) Response {
		got <- cap(sess.big)
		return Accept
	}}
	srv := startServer(t, opts, func(s *Session) Handler { sess = s; return h })
	m := dialMTA(t, srv.path)
	for _, n := range []int{100, readerSize - 5, readerSize, 1 << 20} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)
		}
		m.send('B', string(b))
		m.expect('c', "")
		if l := <-got; l != n {
			t.Errorf("chunk of %d bytes arrived as %d", n, l)
		}
	}
	m.send('E')
	m.expect('a', "")
	if c := <-got; c > maxKeptBig {
		t.Errorf("kept a %d-byte buffer after the big packet", c)
	}
}

type funcHandler struct {
	BaseHandler
	body func([]byte) Response
	eom  func(*Modifier) Response
}

func (f *funcHandler) Body(b []byte) Response { return f.body(b) }
func (f *funcHandler) EndOfMessage(m *Modifier) Response {
	if f.eom == nil {
		return Accept
	}
	return f.eom(m)
}

// TestIdleDeadlinePerRead: the idle deadline is set before each read from
// the socket, not for a whole packet: a packet trickling in slower than
// the deadline in total, but faster per piece, is read; silence is not.
func TestIdleDeadlinePerRead(t *testing.T) {
	opts := testOpts()
	// A byte every 20 ms for 700 ms in all: longer than the idle limit, so
	// a limit per packet would end the session; 400 ms leaves room for a
	// loaded machine to oversleep one 20 ms pause 20 times over.
	opts.Idle = 400 * time.Millisecond
	srv := startServer(t, opts, func(*Session) Handler { return BaseHandler{} })
	m := dialMTA(t, srv.path)
	p := packet('H', "a-rather-long-helo-name.example\x00")
	for i := range p {
		if _, err := m.c.Write(p[i : i+1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // 700 ms in all
	}
	m.expect('c', "")
	start := time.Now()
	err := srv.result(t)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Serve: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle session ended after %v", d)
	}
	m.expectEOF()
}

// TestDrain: between messages the connection closes at once; during a
// message, right after the reply that ends it, or at ABORT.
func TestDrain(t *testing.T) {
	start := func(t *testing.T) (*server, *mta, *Session) {
		srv := startServer(t, testOpts(), func(*Session) Handler { return BaseHandler{} })
		m := dialMTA(t, srv.path)
		m.optneg(postfixVersion, postfixActions, postfixProtocol)
		s, _ := srv.session(0)
		return srv, m, s
	}
	t.Run("idle", func(t *testing.T) {
		srv, m, s := start(t)
		s.Drain()
		m.expectEOF()
		if err := srv.result(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Run("in message", func(t *testing.T) {
		srv, m, s := start(t)
		m.send('M', "<a@b>\x00")
		m.expect('c', "")
		if !s.InMessage() {
			t.Fatal("not in message after MAIL")
		}
		s.Drain()
		m.send('L', "From\x00", "x\x00")
		m.send('E')
		m.expect('a', "")
		m.expectEOF()
		if err := srv.result(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Run("abort", func(t *testing.T) {
		srv, m, s := start(t)
		m.send('M', "<a@b>\x00")
		m.expect('c', "")
		s.Drain()
		m.send('A')
		m.expectEOF()
		if err := srv.result(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Run("accept at MAIL ends the message", func(t *testing.T) {
		srv := startServer(t, testOpts(), newRecorder(make(chan *recorder, 1), nil, map[Command]Response{CmdMail: Accept}, nil))
		m := dialMTA(t, srv.path)
		m.optneg(postfixVersion, postfixActions, postfixProtocol)
		s, _ := srv.session(0)
		m.send('M', "<a@b>\x00")
		m.expect('a', "")
		// The session marks the message ended right after it has written
		// the reply (so that a drain never closes before the reply): the
		// MTA can read the reply a moment before that.
		deadline := time.Now().Add(5 * time.Second)
		for s.InMessage() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if s.InMessage() {
			t.Error("in message after accept at MAIL")
		}
	})
	t.Run("reject at RCPT does not", func(t *testing.T) {
		srv := startServer(t, testOpts(), newRecorder(make(chan *recorder, 1), nil, map[Command]Response{CmdRcpt: Reject}, nil))
		m := dialMTA(t, srv.path)
		m.optneg(postfixVersion, postfixActions, postfixProtocol)
		s, _ := srv.session(0)
		m.send('M', "<a@b>\x00")
		m.expect('c', "")
		m.send('R', "<x@y>\x00")
		m.expect('r', "")
		if !s.InMessage() {
			t.Error("message ended by a rejected recipient")
		}
	})
}

// TestQuitNC: QUIT_NC resets the handler and the macros; the connection
// serves the next SMTP session.
func TestQuitNC(t *testing.T) {
	ch := make(chan *recorder, 1)
	srv := startServer(t, testOpts(), newRecorder(ch, []string{"j", "i"}, nil, nil))
	m := dialMTA(t, srv.path)
	m.optneg(postfixVersion, postfixActions, postfixProtocol)
	m.send('D', "C", "j\x00one\x00")
	m.send('C', "h1\x00", "U")
	m.expect('c', "")
	m.send('D', "M", "i\x00Q1\x00")
	m.send('M', "<a@b>\x00")
	m.expect('c', "")
	m.send('K')
	m.send('C', "h2\x00", "U")
	m.expect('c', "")
	m.send('Q')
	if err := srv.result(t); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	want := []string{"connect h1 U 0  j=one", "mail <a@b> j=one i=Q1", "reset", "connect h2 U 0 "}
	if got := r.Events(); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// TestFinalChunkAtEOM: a body chunk carried by SMFIC_BODYEOB reaches Body
// before EndOfMessage; a decision there is the final reply.
func TestFinalChunkAtEOM(t *testing.T) {
	ch := make(chan *recorder, 1)
	srv := startServer(t, testOpts(), newRecorder(ch, nil, nil, nil))
	m := dialMTA(t, srv.path)
	m.send('E', "last")
	m.expect('a', "")
	r := <-ch
	if got := r.Events(); !slices.Equal(got, []string{"body 4", "eom"}) {
		t.Errorf("events %q", got)
	}
	r.mu.Lock()
	r.resp = map[Command]Response{CmdBody: Discard}
	r.mu.Unlock()
	m.send('E', "last")
	m.expect('d', "")
	if got := r.Events(); len(got) != 3 || got[2] != "body 4" {
		t.Errorf("events %q", got)
	}
}

// TestModifierChecks: modifications are refused outside end of message,
// when not negotiated, and with a NUL; a reply text with a NUL ends the
// session.
func TestModifierChecks(t *testing.T) {
	errs := make(chan error, 8)
	var sess *Session
	h := &checkHandler{errs: errs, sess: &sess}
	srv := startServer(t, testOpts(), func(s *Session) Handler { sess = s; return h })
	m := dialMTA(t, srv.path)
	m.optneg(postfixVersion, ActAddHeader, postfixProtocol) // no CHGHDRS, no QUARANTINE
	m.send('M', "<a@b>\x00")
	m.expect('c', "")
	if err := <-errs; !errors.Is(err, ErrNotAtEOM) {
		t.Errorf("at MAIL: %v", err)
	}
	m.send('E')
	for _, want := range []error{ErrNotNegotiated, ErrNotNegotiated, ErrMalformedReply, ErrMalformedReply, nil} {
		if err := <-errs; !errors.Is(err, want) {
			t.Errorf("at EOM: %v, want %v", err, want)
		}
	}
	m.expectEOF() // the reply text had a NUL: nothing of the message is written
	if err := srv.result(t); !errors.Is(err, ErrMalformedReply) {
		t.Errorf("Serve: %v", err)
	}
}

type checkHandler struct {
	BaseHandler
	errs chan error
	sess **Session
}

func (h *checkHandler) Mail([]byte, Args) Response {
	h.errs <- (*h.sess).mod.AddHeader("X", "v")
	return Continue
}

func (h *checkHandler) EndOfMessage(m *Modifier) Response {
	h.errs <- m.InsertHeader(0, "X", "v")
	h.errs <- m.Quarantine("r")
	h.errs <- m.AddHeader("X", "v\x00")
	h.errs <- m.AddHeader("", "v")
	h.errs <- m.AddHeader("X", " v")
	return ReplyCode("550 5.7.1 \x00")
}

// TestServe runs the package's accept loop.
func TestServe(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/s.sock")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ln, testOpts(), func(*Session) Handler { return BaseHandler{} }) }()
	m := dialMTA(t, ln.Addr().String())
	m.optneg(postfixVersion, postfixActions, postfixProtocol)
	m.send('E')
	m.expect('a', "")
	m.send('Q')
	m.expectEOF()
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

// TestRenew: a session renewed for a second connection serves it as a new
// one would: the negotiation, the macros, the drain and the closed state
// of the first connection are gone, and a packet larger than the read
// buffer in the first does not disturb the second.
func TestRenew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	macros := []string{"j", "{client_addr}"}
	recs := make(chan *recorder, 2)
	errs := make(chan error, 2)
	sessions := make(chan *Session, 1)
	go func() {
		var s *Session
		for i := range 2 {
			c, err := ln.Accept()
			if err != nil {
				errs <- err
				return
			}
			if i == 0 {
				s = NewSession(c, testOpts())
				sessions <- s
			} else {
				s.Renew(c)
			}
			r := &recorder{s: s, macros: macros}
			recs <- r
			errs <- s.Serve(r)
		}
	}()

	// First connection: the NR flags of the options, macros at CONNECT and MAIL, a
	// header field larger than the read buffer, then a drain that closes
	// it at the end of the message.
	m := dialMTA(t, path)
	m.optneg(postfixVersion, postfixActions, postfixProtocol)
	s := <-sessions
	r1 := <-recs
	m.send('D', "C", "j\x00mx1.example\x00")
	m.send('C', "one.example\x00", "4", u16(25), "192.0.2.1\x00")
	m.expect('c', "")
	m.send('D', "M", "{client_addr}\x00192.0.2.1\x00")
	m.send('M', "<a@one.example>\x00")
	m.expect('c', "")
	m.send('L', "X-Big\x00", strings.Repeat("x", readerSize+100), "\x00")
	m.send('N')
	for deadline := time.Now().Add(5 * time.Second); len(r1.Events()) < 4; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("first connection's events: %q", r1.Events())
		}
	}
	s.Drain()
	m.send('A')
	m.expectEOF()
	if err := <-errs; err != nil {
		t.Fatalf("first Serve: %v", err)
	}
	if got, want := r1.Events(), []string{
		"connect one.example 4 25 192.0.2.1 j=mx1.example",
		"mail <a@one.example> j=mx1.example {client_addr}=192.0.2.1",
		fmt.Sprintf("header X-Big:%q j=mx1.example {client_addr}=192.0.2.1", strings.Repeat("x", readerSize+100)),
		"eoh j=mx1.example {client_addr}=192.0.2.1",
		"abort j=mx1.example",
	}; !slices.Equal(got, want) {
		t.Fatalf("first connection's events:\n%q\nwant\n%q", got, want)
	}

	// Second connection, on the renewed session: an MTA that offers no NR
	// flag gets a reply to every event, sees none of the first
	// connection's macros, and the drain does not close it.
	m2 := dialMTA(t, path)
	_, _, proto, _ := m2.optneg(postfixVersion, postfixActions, 0)
	if proto&ProtoNoReply != 0 {
		t.Fatalf("second negotiation: protocol %#x has NR flags the MTA did not offer", proto)
	}
	r2 := <-recs
	m2.send('C', "two.example\x00", "4", u16(25), "192.0.2.2\x00")
	m2.expect('c', "")
	m2.send('M', "<b@two.example>\x00")
	m2.expect('c', "")
	m2.send('L', "From\x00", " b@two.example\x00")
	m2.expect('c', "")
	m2.send('E')
	m2.expect('a', "")
	m2.send('A')
	m2.send('M', "<c@two.example>\x00") // still open after the message
	m2.expect('c', "")
	m2.send('Q')
	if err := <-errs; err != nil {
		t.Fatalf("second Serve: %v", err)
	}
	if got, want := r2.Events(), []string{
		"connect two.example 4 25 192.0.2.2",
		"mail <b@two.example>",
		`header From:" b@two.example"`,
		"eom",
		"abort",
		"mail <c@two.example>",
	}; !slices.Equal(got, want) {
		t.Fatalf("second connection's events:\n%q\nwant\n%q", got, want)
	}
}
