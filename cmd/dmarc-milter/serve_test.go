package main

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
)

func TestListenUnixSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "milter.sock")
	// A stale socket from a crash is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := config.Default()
	cfg.Listen = "unix:" + path
	cfg.Socket.Mode = "0666"
	ln, err := listen(log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o666 || st.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want 0666 socket", st.Mode())
	}
	if !strings.Contains(logs.String(), "milter socket is world-writable") {
		t.Errorf("no warning for a world-writable socket:\n%s", logs.String())
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	ln.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after close: %v", err)
	}
}

func TestWarnPermissions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, nil, 0o600)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	warnPermissions(log, p)
	if logs.Len() != 0 {
		t.Errorf("warning for a 0600 file: %s", logs.String())
	}
	os.Chmod(p, 0o640)
	warnPermissions(log, p)
	if logs.Len() != 0 {
		t.Errorf("warning for a 0640 file: %s", logs.String())
	}
	os.Chmod(p, 0o660)
	warnPermissions(log, p)
	if !strings.Contains(logs.String(), "group-writable") {
		t.Errorf("no warning for a 0660 file")
	}
	os.Chmod(p, 0o666)
	warnPermissions(log, p)
	if !strings.Contains(logs.String(), "world-writable") {
		t.Errorf("no warning for a 0666 file")
	}
}

func TestCacheConfigZeroes(t *testing.T) {
	t.Parallel()
	d := config.Default().DNS
	d.ServeStale, d.ErrorTTL, d.MinTTL = 0, 0, 0
	c := cacheConfig(d)
	if c.StaleTTL >= 0 || c.ErrTTL >= 0 || c.MinTTL <= 0 {
		t.Errorf("explicit zeroes not mapped to pkg/cache's \"disabled\": %+v", c)
	}
}
