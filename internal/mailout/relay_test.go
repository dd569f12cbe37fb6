package mailout

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// relay is a real SMTP server on loopback (go-smtp's), for the tests: it
// records what it receives and injects faults per command.
type relay struct {
	addr   string
	caFile string // PEM of the self-signed certificate, when TLS is on

	mu        sync.Mutex
	got       []received
	sessions  int
	authTried int
	// Faults; a nil error means accept.
	mailErr  error
	rcptErr  map[string]error // per recipient
	dataErr  error
	dropAt   string        // "rcpt" or "data": close the connection there
	slowRcpt time.Duration // sleep before answering RCPT
}

// received is one message the relay accepted.
type received struct {
	helo string
	tls  bool
	user string
	from string
	to   []string
	data []byte
}

type relayOptions struct {
	startTLS    bool // offer STARTTLS
	implicitTLS bool // TLS from the first byte (smtps)
	user, pass  string
}

func newRelay(t *testing.T, o relayOptions) *relay {
	t.Helper()
	r := &relay{rcptErr: map[string]error{}}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		r.mu.Lock()
		r.sessions++
		r.mu.Unlock()
		return &relaySession{r: r, c: c, o: o}, nil
	}))
	s.Domain = "relay.test"
	s.ErrorLog = log.New(io.Discard, "", 0)
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	if o.startTLS || o.implicitTLS {
		cfg, caFile := selfSigned(t)
		r.caFile = caFile
		if o.startTLS {
			s.TLSConfig = cfg
		}
		if o.implicitTLS {
			ln = tls.NewListener(ln, cfg)
		}
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return r
}

func (r *relay) messages() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

type relaySession struct {
	r    *relay
	c    *smtp.Conn
	o    relayOptions
	user string
	msg  received
}

func (s *relaySession) AuthMechanisms() []string {
	if s.o.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *relaySession) Auth(mech string) (sasl.Server, error) {
	s.r.mu.Lock()
	s.r.authTried++
	s.r.mu.Unlock()
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != s.o.user || pass != s.o.pass {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}), nil
}

func (s *relaySession) Mail(from string, _ *smtp.MailOptions) error {
	if s.o.user != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.r.mu.Lock()
	err := s.r.mailErr
	s.r.mu.Unlock()
	s.msg = received{helo: s.c.Hostname(), user: s.user, from: from}
	_, s.msg.tls = s.c.TLSConnectionState()
	return err
}

func (s *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.r.mu.Lock()
	err, slow, drop := s.r.rcptErr[to], s.r.slowRcpt, s.r.dropAt == "rcpt"
	s.r.mu.Unlock()
	time.Sleep(slow)
	if drop {
		s.c.Conn().Close()
		return errors.New("dropped")
	}
	if err == nil {
		s.msg.to = append(s.msg.to, to)
	}
	return err
}

func (s *relaySession) Data(rd io.Reader) error {
	s.r.mu.Lock()
	err, drop := s.r.dataErr, s.r.dropAt == "data"
	s.r.mu.Unlock()
	b, rerr := io.ReadAll(rd)
	if drop {
		s.c.Conn().Close()
		return errors.New("dropped")
	}
	if rerr != nil {
		return rerr
	}
	if err != nil {
		return err
	}
	s.msg.data = b
	s.r.mu.Lock()
	s.r.got = append(s.r.got, s.msg)
	s.r.mu.Unlock()
	return nil
}

func (s *relaySession) Reset()        { s.msg = received{} }
func (s *relaySession) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1 and localhost at test time
// and writes it as the CA file a client can trust.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "relay.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, caFile
}

// passwordFile writes a password file with the given mode.
func passwordFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode passes through the umask
		t.Fatal(err)
	}
	return p
}
