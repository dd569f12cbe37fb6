package milterproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testOpts are the options the daemon asks for.
func testOpts() *Options {
	return &Options{
		Actions:  ActAddHeader | ActChangeHeader | ActQuarantine | ActSetSymList,
		Required: ProtoNoUnknown | ProtoHdrLeadSpc,
		Optional: ProtoNRHeader | ProtoNREOH | ProtoNRBody | ProtoNoData,
		MacroLists: map[Stage][]string{
			StageMail: {"{client_addr}", "{client_name}", "s", "i", "j", "{auth_authen}", "{auth_type}"},
		},
	}
}

// countingConn counts the server's writes.
type countingConn struct {
	net.Conn
	writes atomic.Int64
	mu     sync.Mutex
	sizes  []int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	c.mu.Lock()
	c.sizes = append(c.sizes, len(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// server is a test listener on a unix socket running one Session per
// connection; Serve's result of each session arrives on errs.
type server struct {
	path  string
	errs  chan error
	mu    sync.Mutex
	conns []*countingConn
	sess  []*Session
}

func startServer(t *testing.T, opts *Options, newHandler func(*Session) Handler) *server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &server{path: path, errs: make(chan error, 16)}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cc := &countingConn{Conn: c}
			s := NewSession(cc, opts)
			srv.mu.Lock()
			srv.conns = append(srv.conns, cc)
			srv.sess = append(srv.sess, s)
			srv.mu.Unlock()
			h := newHandler(s)
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.errs <- s.Serve(h)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		srv.mu.Lock()
		for _, s := range srv.sess {
			s.Close()
		}
		srv.mu.Unlock()
		wg.Wait()
	})
	return srv
}

// result waits for the next session's Serve result.
func (s *server) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.errs:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

func (s *server) session(i int) (*Session, *countingConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sess[i], s.conns[i]
}

// mta is a raw MTA side that writes packets as Postfix's milter8.c does.
type mta struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialMTA(t *testing.T, path string) *mta {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &mta{t: t, c: c, r: bufio.NewReader(c)}
}

func packet(cmd byte, parts ...string) []byte {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(n))
	b = append(b, cmd)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func (m *mta) send(cmd byte, parts ...string) {
	m.t.Helper()
	if _, err := m.c.Write(packet(cmd, parts...)); err != nil {
		m.t.Fatalf("send %c: %v", cmd, err)
	}
}

func (m *mta) read() (byte, string) {
	m.t.Helper()
	code, data, err := m.tryRead(5 * time.Second)
	if err != nil {
		m.t.Fatalf("read: %v", err)
	}
	return code, data
}

func (m *mta) tryRead(d time.Duration) (byte, string, error) {
	_ = m.c.SetReadDeadline(time.Now().Add(d))
	var head [5]byte
	if _, err := io.ReadFull(m.r, head[:]); err != nil {
		return 0, "", err
	}
	n := binary.BigEndian.Uint32(head[:])
	data := make([]byte, n-1)
	if _, err := io.ReadFull(m.r, data); err != nil {
		return 0, "", err
	}
	return head[4], string(data), nil
}

// expect reads one reply and checks its code and data.
func (m *mta) expect(code byte, data string) {
	m.t.Helper()
	c, d := m.read()
	if c != code || d != data {
		m.t.Fatalf("reply %c %q, want %c %q", c, d, code, data)
	}
}

// expectEOF checks that the server closed the connection.
func (m *mta) expectEOF() {
	m.t.Helper()
	code, data, err := m.tryRead(5 * time.Second)
	if err == nil {
		m.t.Fatalf("reply %c %q, want the connection closed", code, data)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		m.t.Fatalf("read: %v, want EOF", err)
	}
}

// optneg negotiates and returns the filter's answer.
func (m *mta) optneg(version uint32, actions Action, proto Protocol) (uint32, Action, Protocol, string) {
	m.t.Helper()
	var p [12]byte
	binary.BigEndian.PutUint32(p[:], version)
	binary.BigEndian.PutUint32(p[4:], uint32(actions))
	binary.BigEndian.PutUint32(p[8:], uint32(proto))
	m.send('O', string(p[:]))
	code, data := m.read()
	if code != 'O' || len(data) < 12 {
		m.t.Fatalf("OPTNEG reply %c %q", code, data)
	}
	d := []byte(data)
	return binary.BigEndian.Uint32(d), Action(binary.BigEndian.Uint32(d[4:])),
		Protocol(binary.BigEndian.Uint32(d[8:])), data[12:]
}

func u16(v uint16) string { return string(binary.BigEndian.AppendUint16(nil, v)) }
func u32(v uint32) string { return string(binary.BigEndian.AppendUint32(nil, v)) }

// recorder records the events it gets, with the macros of interest, and
// answers with resp (Continue by default) and eom at end of message.
type recorder struct {
	s      *Session
	macros []string
	resp   map[Command]Response
	eom    func(m *Modifier) Response

	mu     sync.Mutex
	events []string
}

func (r *recorder) add(format string, args ...any) {
	ev := fmt.Sprintf(format, args...)
	for _, name := range r.macros {
		if v, ok := r.s.Macros().Get(name); ok {
			ev += fmt.Sprintf(" %s=%s", name, v)
		}
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) Events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func (r *recorder) answer(cmd Command) Response { return r.resp[cmd] }

func (r *recorder) Connect(host []byte, f Family, port uint16, addr []byte) Response {
	r.add("connect %s %c %d %s", host, f, port, addr)
	return r.answer(CmdConnect)
}
func (r *recorder) Helo(name []byte) Response { r.add("helo %s", name); return r.answer(CmdHelo) }
func (r *recorder) Mail(from []byte, args Args) Response {
	r.add("mail %s%s", from, argString(args))
	return r.answer(CmdMail)
}
func (r *recorder) Rcpt(to []byte, args Args) Response {
	r.add("rcpt %s%s", to, argString(args))
	return r.answer(CmdRcpt)
}
func (r *recorder) Data() Response            { r.add("data"); return r.answer(CmdData) }
func (r *recorder) Unknown(c []byte) Response { r.add("unknown %s", c); return r.answer(CmdUnknown) }
func (r *recorder) Header(name, value []byte) Response {
	r.add("header %s:%q", name, value)
	return r.answer(CmdHeader)
}
func (r *recorder) EndOfHeaders() Response { r.add("eoh"); return r.answer(CmdEOH) }
func (r *recorder) Body(chunk []byte) Response {
	r.add("body %d", len(chunk))
	return r.answer(CmdBody)
}
func (r *recorder) EndOfMessage(m *Modifier) Response {
	r.add("eom")
	if r.eom != nil {
		return r.eom(m)
	}
	if resp, ok := r.resp[CmdEOM]; ok {
		return resp
	}
	return Accept
}
func (r *recorder) Abort() { r.add("abort") }
func (r *recorder) Reset() { r.add("reset") }

func argString(a Args) string {
	var b strings.Builder
	for arg, rest, ok := a.Next(); ok; arg, rest, ok = rest.Next() {
		b.WriteString(" ")
		b.Write(arg)
	}
	return b.String()
}

// newRecorder returns a handler factory whose handlers are sent on ch.
func newRecorder(ch chan *recorder, macros []string, resp map[Command]Response, eom func(*Modifier) Response) func(*Session) Handler {
	return func(s *Session) Handler {
		r := &recorder{s: s, macros: macros, resp: resp, eom: eom}
		ch <- r
		return r
	}
}
