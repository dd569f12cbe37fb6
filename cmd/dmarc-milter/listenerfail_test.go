package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
)

// TestListenerFailureExits: when the milter listener fails for good, the
// daemon drains and exits with status 1 (so that systemd restarts it)
// instead of living on without accepting connections.
func TestListenerFailureExits(t *testing.T) {
	var logs bytes.Buffer
	d := &daemon{level: new(slog.LevelVar), log: slog.New(slog.NewTextHandler(&logs, nil))}
	cfg := config.Default()
	cfg.Listen = "inet:127.0.0.1:0"
	cfg.DNS.Nameservers = []string{"127.0.0.1:53"}
	if err := d.start(cfg); err != nil {
		t.Fatal(err)
	}
	d.failed <- errors.New("accept: no buffer space available")
	if code := d.loop(make(chan os.Signal)); code != exitError {
		t.Errorf("exit status %d, want %d", code, exitError)
	}
	if !strings.Contains(logs.String(), "milter listener failed: exiting") {
		t.Errorf("log:\n%s", logs.String())
	}
}
