package integration

import (
	"bytes"
	"fmt"
	"net"
	"net/textproto"
	"sort"
	"strings"
	"time"
)

// reply is one SMTP reply: its code, its text (lines joined by "\n") and the
// command it answered ("MAIL", "RCPT", "DATA", "EOM", ...).
type reply struct {
	Stage string
	Code  int
	Text  string
}

func (r reply) String() string { return fmt.Sprintf("%s: %d %s", r.Stage, r.Code, r.Text) }

// ok reports a 2xx (or 354 for DATA) reply.
func (r reply) ok() bool { return r.Code >= 200 && r.Code < 400 }

// smtpClient is a deliberately small SMTP client: it speaks exactly the
// commands the tests need (EHLO, XCLIENT, MAIL, RCPT, DATA, RSET, QUIT) and
// returns every reply, including 4xx/5xx ones, instead of turning them into
// errors, because the replies are what the tests assert. net/smtp has no
// XCLIENT and hides the reply text of failures behind errors.
type smtpClient struct {
	nc net.Conn
	tp *textproto.Conn
}

// dialSMTP connects to addr and reads the greeting, then says EHLO.
func dialSMTP(addr string) (*smtpClient, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &smtpClient{nc: nc, tp: textproto.NewConn(nc)}
	if r, err := c.read("CONNECT"); err != nil || r.Code != 220 {
		c.Close()
		return nil, fmt.Errorf("greeting: %v %v", r, err)
	}
	if r, err := c.cmd("EHLO", "EHLO test-client.invalid"); err != nil || r.Code != 250 {
		c.Close()
		return nil, fmt.Errorf("EHLO: %v %v", r, err)
	}
	return c, nil
}

// Close ends the session with QUIT (best effort) and closes the socket.
func (c *smtpClient) Close() error {
	c.nc.SetDeadline(time.Now().Add(2 * time.Second))
	c.cmd("QUIT", "QUIT")
	return c.nc.Close()
}

func (c *smtpClient) read(stage string) (reply, error) {
	// Postfix's milter timeouts are far longer, but the test bed's answers
	// are local: 60 s covers a slow CI machine under -race.
	c.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
	code, text, err := c.tp.ReadResponse(0)
	if err != nil && code == 0 {
		return reply{Stage: stage}, err
	}
	return reply{Stage: stage, Code: code, Text: text}, nil
}

func (c *smtpClient) cmd(stage, format string, args ...any) (reply, error) {
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.tp.PrintfLine(format, args...); err != nil {
		return reply{Stage: stage}, err
	}
	return c.read(stage)
}

// xclient sends XCLIENT with the attributes (ADDR, NAME, HELO, LOGIN, ...)
// and says EHLO again: Postfix answers XCLIENT with a new greeting, and the
// session then starts over as if the simulated client had connected.
// Values must not need xtext encoding (the tests use plain names).
func (c *smtpClient) xclient(attrs map[string]string) (reply, error) {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("XCLIENT")
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, attrs[k])
	}
	r, err := c.cmd("XCLIENT", "%s", b.String())
	if err != nil || r.Code != 220 {
		return r, err
	}
	helo := attrs["HELO"]
	if helo == "" {
		helo = "test-client.invalid"
	}
	return c.cmd("EHLO", "EHLO %s", helo)
}

// send runs one mail transaction and returns the first reply that is not a
// success, or the end-of-data reply. RSET follows a failed transaction so
// that the connection can carry the next message.
func (c *smtpClient) send(from string, rcpts []string, msg []byte) (reply, error) {
	r, err := c.cmd("MAIL", "MAIL FROM:<%s>", from)
	if err != nil || !r.ok() {
		return c.reset(r, err)
	}
	for _, rc := range rcpts {
		if r, err = c.cmd("RCPT", "RCPT TO:<%s>", rc); err != nil || !r.ok() {
			return c.reset(r, err)
		}
	}
	if r, err = c.cmd("DATA", "DATA"); err != nil || r.Code != 354 {
		return c.reset(r, err)
	}
	c.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	w := c.tp.DotWriter()
	if _, err := w.Write(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))); err != nil {
		return reply{Stage: "EOM"}, err
	}
	if err := w.Close(); err != nil {
		return reply{Stage: "EOM"}, err
	}
	return c.read("EOM")
}

func (c *smtpClient) reset(r reply, err error) (reply, error) {
	if err == nil {
		c.cmd("RSET", "RSET")
	}
	return r, err
}
