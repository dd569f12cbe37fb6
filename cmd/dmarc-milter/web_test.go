package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"golang.org/x/crypto/bcrypt"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var addrRE = regexp.MustCompile(`msg="dashboard started" addr=(\S+)`)

// startTestWeb starts the dashboard of cfg the way serve does, and returns
// its address and the log.
func startTestWeb(t *testing.T, cfg *config.Config) (string, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	d := &daemon{log: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := d.startWeb(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stopWeb)
	m := addrRE.FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no address in the log: %s", logs.String())
	}
	return m[1], &logs
}

// TestServeWeb: web.listen starts the dashboard beside the milter; beyond
// loopback without authentication it warns; the pages answer with the CSP.
func TestServeWeb(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Web.Listen = "0.0.0.0:0"
	cfg.Store.URL = "sqlite:" + filepath.Join(t.TempDir(), "store.db")
	addr, logs := startTestWeb(t, cfg)
	if !strings.Contains(logs.String(), "beyond loopback without authentication") {
		t.Errorf("no warning for an open listener beyond loopback:\n%s", logs.String())
	}
	port := addr[strings.LastIndex(addr, ":"):]
	resp, err := http.Get("http://127.0.0.1" + port + "/inbound")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("GET /inbound: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
}

// TestServeWebAuthenticated: with a password no warning even beyond
// loopback, and a request without it is refused.
func TestServeWebAuthenticated(t *testing.T) {
	t.Parallel()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	cfg := config.Default()
	cfg.Web.Listen = "0.0.0.0:0"
	cfg.Web.PasswordHash = string(hash)
	cfg.Store.URL = "sqlite:" + filepath.Join(t.TempDir(), "store.db")
	addr, logs := startTestWeb(t, cfg)
	if strings.Contains(logs.String(), "without authentication") {
		t.Errorf("warning although a password is set:\n%s", logs.String())
	}
	port := addr[strings.LastIndex(addr, ":"):]
	resp, err := http.Get("http://127.0.0.1" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://127.0.0.1"+port+"/", nil)
	req.SetBasicAuth("admin", "pw")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("with the password: %d, want 200", resp.StatusCode)
	}
}

// TestWebCommandUsage: an extra argument and a bad address are
// configuration errors.
func TestWebCommandUsage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"web", "--store", "sqlite:/nonexistent/x.db", "extra"}, "unexpected argument"},
		{[]string{"web", "--store", "sqlite:x.db", "--listen", "nocolon"}, "web.listen"},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != exitConfig || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, %q; want %d mentioning %q", c.args, code, errb.String(), exitConfig, c.want)
		}
	}
}
