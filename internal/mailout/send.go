package mailout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Status is the class of the outcome for one recipient.
type Status string

// The statuses. RFC 5321 §4.2.1: 2yz is success, 4yz a transient and 5yz a
// permanent negative completion.
const (
	StatusAccepted  Status = "accepted"  // the relay took responsibility (250 after DATA)
	StatusTemporary Status = "temporary" // 4xx, a connection error, a timeout, TLS or AUTH not possible: try again later
	StatusPermanent Status = "permanent" // 5xx
)

// Stage is the step of the SMTP session a result comes from.
type Stage string

// The stages, in session order.
const (
	StageConnect  Stage = "connect" // TCP, and the TLS handshake of smtps://
	StageGreeting Stage = "greeting"
	StageHello    Stage = "ehlo"
	StageStartTLS Stage = "starttls"
	StageAuth     Stage = "auth"
	StageMail     Stage = "mail"
	StageRcpt     Stage = "rcpt"
	StageData     Stage = "data"
)

// EnhancedCode is an RFC 3463 status code (class.subject.detail); the zero
// value means the reply had none.
type EnhancedCode [3]int

// String formats the code as "4.7.1", or "" for the zero value.
func (e EnhancedCode) String() string {
	if e == (EnhancedCode{}) {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

// RecipientResult is the outcome of Send for one recipient.
type RecipientResult struct {
	Recipient string
	Status    Status
	// Stage is where the outcome was decided: StageData for an accepted
	// message; StageRcpt when the relay refused the recipient; an earlier
	// stage when the session failed before the recipient was given.
	Stage Stage
	// Code, Enhanced and Text are the relay's reply at Stage (Code 0 when
	// there was none: a connection error, a timeout, a refusal of ours).
	// Text is the reply without its codes, lines joined by "\n".
	Code     int
	Enhanced EnhancedCode
	Text     string
	// Err is nil for an accepted recipient; otherwise it wraps one of
	// ErrReply, ErrConnection, ErrTimeout, ErrTLS, ErrStartTLSNotOffered,
	// ErrAuthNotPossible, ErrAddress.
	Err error
}

// DestinationRefused reports whether the relay refused this recipient or
// this message for it permanently (5xx at RCPT or DATA): the case for
// which a destination may be suppressed. A permanent failure at an
// earlier stage (EHLO, AUTH, MAIL FROM) is about our relay set-up, not the
// destination, and is the same for every recipient.
func (r RecipientResult) DestinationRefused() bool {
	return r.Status == StatusPermanent && (r.Stage == StageRcpt || r.Stage == StageData)
}

// Errors of Send, wrapped by RecipientResult.Err.
var (
	ErrReply              = errors.New("mailout: negative reply from the relay")
	ErrConnection         = errors.New("mailout: connection to the relay failed")
	ErrTimeout            = errors.New("mailout: relay did not answer in time")
	ErrTLS                = errors.New("mailout: TLS with the relay failed")
	ErrStartTLSNotOffered = errors.New("mailout: STARTTLS required but not offered by the relay")
	ErrAuthNotPossible    = errors.New("mailout: AUTH PLAIN not possible")
	ErrAddress            = errors.New("mailout: address not usable in an SMTP command")
)

// Send sends msg (a whole message with CRLF line ends, as Signer.Sign
// returns it) from the envelope sender from to each address of to, in one
// SMTP session, and returns one result per recipient in the order of to.
// Every step has a deadline: the step's timeout, and ctx's deadline; when
// ctx ends, the session is cut and the remaining recipients get
// StatusTemporary.
func (c *Client) Send(ctx context.Context, from string, to []string, msg []byte) []RecipientResult {
	if len(to) == 0 {
		return nil
	}
	res := make([]RecipientResult, len(to))
	for i, rcpt := range to {
		res[i].Recipient = rcpt
	}
	if !validPath(from) {
		return fillAll(res, RecipientResult{Status: StatusPermanent, Stage: StageMail, Err: fmt.Errorf("%w: sender %q", ErrAddress, from)})
	}
	s, fail := c.open(ctx)
	if fail != nil {
		return fillAll(res, *fail)
	}
	defer s.close()
	s.transaction(ctx, from, res, msg)
	return res
}

// fillAll gives every result the same outcome.
func fillAll(res []RecipientResult, r RecipientResult) []RecipientResult {
	for i := range res {
		rcpt := res[i].Recipient
		res[i] = r
		res[i].Recipient = rcpt
	}
	return res
}

// validPath accepts an address for MAIL FROM or RCPT TO: no control
// characters (they would end the command) and the RFC 5321 §4.5.3.1.3 size.
// ParseRUA has checked the syntax of report addresses already.
func validPath(addr string) bool {
	if addr == "" || len(addr)+2 > maxPath {
		return false
	}
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c < 0x20 || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// session is one SMTP connection.
type session struct {
	c    *Client
	raw  net.Conn
	smtp *smtp.Client
	stop func() bool // unregisters the context watch

	mu  sync.Mutex
	cut bool // ctx ended: the connection's deadline is in the past for good
}

// step sets the deadline of the next step: now+d, or ctx's deadline when
// that is earlier. Once ctx has ended it keeps the connection cut.
func (s *session) step(ctx context.Context, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return
	}
	dl := time.Now().Add(d)
	if cd, ok := ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	s.raw.SetDeadline(dl)
}

// cancel cuts the connection when ctx ends: every read or write fails at
// once with a timeout.
func (s *session) cancel() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut = true
	s.raw.SetDeadline(time.Unix(1, 0))
}

func (s *session) close() {
	s.stop()
	s.raw.Close()
}

// open connects, reads the greeting, says EHLO, starts TLS and
// authenticates.
func (c *Client) open(ctx context.Context) (*session, *RecipientResult) {
	d := net.Dialer{Timeout: c.connectTO}
	raw, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		r := classify(ctx, StageConnect, err)
		return nil, &r
	}
	s := &session{c: c, raw: raw}
	s.stop = context.AfterFunc(ctx, s.cancel)
	if r := s.start(ctx); r != nil {
		s.close()
		return nil, r
	}
	return s, nil
}

// start runs the session up to AUTH.
func (s *session) start(ctx context.Context) *RecipientResult {
	var conn net.Conn = s.raw
	if s.c.implicitTLS {
		s.step(ctx, s.c.connectTO)
		tc := tls.Client(s.raw, s.c.tls) // RFC 8314 §3.3: the TLS handshake begins immediately
		if err := tc.HandshakeContext(ctx); err != nil {
			return s.fail(ctx, StageConnect, fmt.Errorf("%w: %w", ErrTLS, err))
		}
		conn = tc
	}
	s.step(ctx, s.c.commandTO)
	sc, err := smtp.NewClient(conn, s.c.host) // reads the 220 greeting
	if err != nil {
		return s.fail(ctx, StageGreeting, err)
	}
	s.smtp = sc
	s.step(ctx, s.c.commandTO)
	if err := sc.Hello(s.c.helo); err != nil {
		return s.fail(ctx, StageHello, err)
	}
	if err := s.startTLS(ctx); err != nil {
		return err
	}
	return s.auth(ctx)
}

// startTLS upgrades an smtp:// session (RFC 3207).
func (s *session) startTLS(ctx context.Context) *RecipientResult {
	if s.c.implicitTLS {
		return nil
	}
	if ok, _ := s.smtp.Extension("STARTTLS"); !ok {
		if s.c.requireTLS {
			return s.fail(ctx, StageStartTLS, ErrStartTLSNotOffered)
		}
		return nil // opportunistic: the relay offers no TLS
	}
	s.step(ctx, s.c.commandTO)
	err := s.smtp.StartTLS(s.c.tls) // RFC 3207 §4.2: the client then discards what it knew and says EHLO again (net/smtp does)
	if err == nil {
		return nil
	}
	var te *textproto.Error
	if _, on := s.smtp.TLSConnectionState(); !on && errors.As(err, &te) && !s.c.requireTLS {
		return nil // RFC 3207 §4: after a refusal (454) the client decides whether to go on; opportunistic goes on in plain text
	}
	if errors.As(err, &te) {
		return s.fail(ctx, StageStartTLS, err)
	}
	return s.fail(ctx, StageStartTLS, fmt.Errorf("%w: %w", ErrTLS, err))
}

// auth runs AUTH PLAIN (RFC 4954 §4) when a username is configured; never
// without TLS (RFC 4616 security considerations: PLAIN only over a
// protected channel), never when the relay does not offer PLAIN.
func (s *session) auth(ctx context.Context) *RecipientResult {
	if s.c.username == "" {
		return nil
	}
	if _, on := s.smtp.TLSConnectionState(); !on {
		return s.fail(ctx, StageAuth, fmt.Errorf("%w: the session is not encrypted (the relay offered no STARTTLS)", ErrAuthNotPossible))
	}
	ok, mechs := s.smtp.Extension("AUTH")
	if !ok || !hasWord(mechs, "PLAIN") {
		return s.fail(ctx, StageAuth, fmt.Errorf("%w: the relay offers AUTH %q", ErrAuthNotPossible, mechs))
	}
	s.step(ctx, s.c.commandTO)
	if err := s.smtp.Auth(smtp.PlainAuth("", s.c.username, s.c.password, s.c.host)); err != nil {
		return s.fail(ctx, StageAuth, err)
	}
	return nil
}

func hasWord(list, w string) bool {
	for _, x := range strings.Fields(list) {
		if strings.EqualFold(x, w) {
			return true
		}
	}
	return false
}

// transaction sends MAIL, one RCPT per recipient, and DATA, and fills res.
func (s *session) transaction(ctx context.Context, from string, res []RecipientResult, msg []byte) {
	s.step(ctx, s.c.commandTO)
	if err := s.smtp.Mail(from); err != nil {
		fillAll(res, *s.fail(ctx, StageMail, err))
		return
	}
	var accepted []int
	for i := range res {
		if !validPath(res[i].Recipient) {
			res[i] = RecipientResult{Recipient: res[i].Recipient, Status: StatusPermanent, Stage: StageRcpt, Err: fmt.Errorf("%w: recipient %q", ErrAddress, res[i].Recipient)}
			continue
		}
		s.step(ctx, s.c.commandTO)
		err := s.smtp.Rcpt(res[i].Recipient)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		r := s.fail(ctx, StageRcpt, err)
		if r.Code == 421 || r.Code == 0 {
			// RFC 5321 §3.8: 421 closes the channel; without a reply the
			// connection is gone: the rest cannot be tried either.
			fillAll(res[i:], *r)
			return
		}
		rcpt := res[i].Recipient
		res[i] = *r
		res[i].Recipient = rcpt
	}
	if len(accepted) == 0 {
		s.quit(ctx)
		return
	}
	r := s.data(ctx, msg)
	for _, i := range accepted {
		rcpt := res[i].Recipient
		res[i] = r
		res[i].Recipient = rcpt
	}
	if r.Status == StatusAccepted {
		s.quit(ctx)
	}
}

// data sends DATA, the message, and reads the reply to the final dot. It
// drives net/smtp's text connection itself to keep the reply text (the
// relay's queue ID).
func (s *session) data(ctx context.Context, msg []byte) RecipientResult {
	t := s.smtp.Text
	s.step(ctx, s.c.commandTO) // RFC 5321 §4.5.3.2.4: DATA initiation
	if err := t.PrintfLine("DATA"); err != nil {
		return *s.fail(ctx, StageData, err)
	}
	if _, _, err := t.ReadResponse(354); err != nil {
		return *s.fail(ctx, StageData, err)
	}
	s.step(ctx, s.c.commandTO) // RFC 5321 §4.5.3.2.5: data blocks
	w := t.DotWriter()         // RFC 5321 §4.5.2: dot-stuffing, and the final "." line
	if _, err := w.Write(msg); err != nil {
		return *s.fail(ctx, StageData, err)
	}
	if err := w.Close(); err != nil {
		return *s.fail(ctx, StageData, err)
	}
	s.step(ctx, s.c.dataTO) // RFC 5321 §4.5.3.2.6: DATA termination
	code, text, err := t.ReadResponse(250)
	if err != nil {
		return *s.fail(ctx, StageData, err)
	}
	enh, text := splitEnhanced(code, text)
	return RecipientResult{Status: StatusAccepted, Stage: StageData, Code: code, Enhanced: enh, Text: text}
}

// quit ends the session politely; its outcome does not matter any more.
func (s *session) quit(ctx context.Context) {
	s.step(ctx, s.c.commandTO)
	s.smtp.Quit()
}

// fail classifies an error of the session at a stage.
func (s *session) fail(ctx context.Context, stage Stage, err error) *RecipientResult {
	r := classify(ctx, stage, err)
	return &r
}

// classify turns an error into a result: a negative reply by its code
// (RFC 5321 §4.2.1), anything else is temporary.
func classify(ctx context.Context, stage Stage, err error) RecipientResult {
	r := RecipientResult{Status: StatusTemporary, Stage: stage}
	var te *textproto.Error
	var ne net.Error
	switch {
	case errors.As(err, &te):
		r.Code = te.Code
		r.Enhanced, r.Text = splitEnhanced(te.Code, te.Msg)
		if te.Code/100 == 5 {
			r.Status = StatusPermanent // RFC 5321 §4.2.1: 5yz, permanent negative completion
		}
		r.Err = fmt.Errorf("%w: %s: %d %s", ErrReply, stage, te.Code, te.Msg)
	case ctx.Err() != nil:
		r.Err = fmt.Errorf("%w: %s: %w (%v)", ErrTimeout, stage, ctx.Err(), err)
	case errors.As(err, &ne) && ne.Timeout():
		r.Err = fmt.Errorf("%w: %s: %v", ErrTimeout, stage, err)
	case errors.Is(err, ErrTLS), errors.Is(err, ErrStartTLSNotOffered), errors.Is(err, ErrAuthNotPossible):
		r.Err = fmt.Errorf("%s: %w", stage, err)
	default:
		r.Err = fmt.Errorf("%w: %s: %w", ErrConnection, stage, err)
	}
	return r
}

// splitEnhanced takes the RFC 3463 §2 enhanced status code off the front of
// the lines of a reply, where its class matches the reply code's first
// digit, and returns the first one found. RFC 2034 puts it on every line;
// some servers (go-smtp's) put it on the last line only.
func splitEnhanced(code int, text string) (EnhancedCode, string) {
	var found EnhancedCode
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		word, rest, _ := strings.Cut(l, " ")
		if e, ok := parseEnhanced(word); ok && e[0] == code/100 {
			if found == (EnhancedCode{}) {
				found = e
			}
			lines[i] = rest
		}
	}
	return found, strings.Join(lines, "\n")
}

// parseEnhanced parses class.subject.detail: class 2, 4 or 5, subject 1-3
// digits, detail 1-3 digits (RFC 3463 §2).
func parseEnhanced(s string) (EnhancedCode, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return EnhancedCode{}, false
	}
	var e EnhancedCode
	for i, p := range parts {
		if p == "" || len(p) > 3 || (i == 0 && len(p) != 1) || strings.Trim(p, "0123456789") != "" {
			return EnhancedCode{}, false
		}
		e[i], _ = strconv.Atoi(p)
	}
	if e[0] != 2 && e[0] != 4 && e[0] != 5 {
		return EnhancedCode{}, false
	}
	return e, true
}
