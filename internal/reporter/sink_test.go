package reporter

import (
	"bytes"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// sink is a real SMTP server on loopback (go-smtp's) standing in for the
// relay: it counts what it accepts per recipient and refuses recipients
// with the replies set in refuse.
type sink struct {
	addr string

	mu     sync.Mutex
	got    map[string][][]byte // recipient → messages accepted
	refuse map[string]*smtp.SMTPError
}

func newSink(t *testing.T) *sink {
	t.Helper()
	k := &sink{got: map[string][][]byte{}, refuse: map[string]*smtp.SMTPError{}}
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{k: k}, nil }))
	s.Domain = "sink.test"
	s.ErrorLog = log.New(io.Discard, "", 0)
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.addr = ln.Addr().String()
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return k
}

func (k *sink) setRefuse(addr string, e *smtp.SMTPError) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e == nil {
		delete(k.refuse, addr)
		return
	}
	k.refuse[addr] = e
}

// messages returns what addr was sent.
func (k *sink) messages(addr string) [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([][]byte(nil), k.got[addr]...)
}

func (k *sink) total() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, m := range k.got {
		n += len(m)
	}
	return n
}

var (
	tempRefusal = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"}
	permRefusal = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
)

type sinkSession struct {
	k  *sink
	to []string
}

func (s *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }

func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	if e := s.k.refuse[strings.ToLower(to)]; e != nil {
		return e
	}
	s.to = append(s.to, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	var b bytes.Buffer
	if _, err := io.Copy(&b, r); err != nil {
		return err
	}
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	for _, to := range s.to {
		s.k.got[to] = append(s.k.got[to], b.Bytes())
	}
	return nil
}

func (s *sinkSession) Reset()        { s.to = nil }
func (s *sinkSession) Logout() error { return nil }
