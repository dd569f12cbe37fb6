package mailout

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// refusingRelay is a scripted SMTP server on loopback that offers STARTTLS
// but answers it with 454 (RFC 3207 §4: TLS temporarily not available),
// which go-smtp's server cannot be made to do. It accepts everything else
// and counts the messages it receives.
type refusingRelay struct {
	addr string
	mu   sync.Mutex
	msgs int
}

func newRefusingRelay(t *testing.T) *refusingRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &refusingRelay{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	return r
}

func (r *refusingRelay) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	say := func(s string) { c.Write([]byte(s + "\r\n")) }
	say("220 scripted ESMTP")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			say("250-scripted\r\n250-STARTTLS\r\n250 8BITMIME")
		case "STARTTLS":
			say("454 4.7.0 TLS not available due to temporary reason")
		case "MAIL", "RCPT", "RSET", "NOOP":
			say("250 2.0.0 OK")
		case "DATA":
			say("354 go ahead")
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			r.mu.Lock()
			r.msgs++
			r.mu.Unlock()
			say("250 2.0.0 queued as SCRIPTED1")
		case "QUIT":
			say("221 2.0.0 bye")
			return
		default:
			say("502 5.5.2 not implemented")
		}
	}
}

// TestSendSTARTTLSRefused: a 454 to STARTTLS lets an opportunistic client go
// on in plain text; a client that requires TLS stops there.
func TestSendSTARTTLSRefused(t *testing.T) {
	t.Parallel()
	r := newRefusingRelay(t)
	c := newTestClient(t, ClientOptions{Relay: "smtp://" + r.addr})
	got := c.Send(ctxFor(t, 10*time.Second), "a@receiver.example", []string{"dmarc@example.com"}, testMessage)[0]
	if got.Status != StatusAccepted || got.Text != "queued as SCRIPTED1" || got.Enhanced != (EnhancedCode{2, 0, 0}) {
		t.Errorf("opportunistic: %+v", got)
	}
	c = newTestClient(t, ClientOptions{Relay: "smtp://" + r.addr, StartTLS: StartTLSRequired})
	got = c.Send(ctxFor(t, 10*time.Second), "a@receiver.example", []string{"dmarc@example.com"}, testMessage)[0]
	if got.Status != StatusTemporary || got.Stage != StageStartTLS || got.Code != 454 || !errors.Is(got.Err, ErrReply) {
		t.Errorf("required: %+v", got)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msgs != 1 {
		t.Errorf("%d messages, want 1 (the opportunistic one)", r.msgs)
	}
}
