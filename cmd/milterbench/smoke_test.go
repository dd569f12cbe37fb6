package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// smokeConfig asks dmarc-milter for the decisions the corpus expectations
// assume (the same as bench/dmarc-milter.toml, without the metrics listener).
const smokeConfig = `
log_level = "warn"

[actions]
reject_policy = "reject"
quarantine_method = "hold"
`

// startDaemon builds cmd/dmarc-milter and starts it on a unix socket with the
// given DNS server. It skips the test when the daemon is not in the tree
// (and fails instead when CI=true).
func startDaemon(t *testing.T, dnsAddr string) (sock string, pid int) {
	t.Helper()
	if _, err := os.Stat("../dmarc-milter/main.go"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cmd/dmarc-milter missing: %v", err)
		}
		t.Skipf("SKIP (loud): cmd/dmarc-milter missing: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "dmarc-milter")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(gobin, "build", "-o", bin, "../dmarc-milter").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "bench.toml")
	if err := os.WriteFile(cfg, []byte(smokeConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(dir, "d.sock")
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", "--config", cfg, "--listen", "unix:"+sock,
		"--authserv-id", authservID, "--nameserver", dnsAddr)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("dmarc-milter output:\n%s", logs.String())
		}
	})
	if err := waitMilter("unix:"+sock, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return sock, cmd.Process.Pid
}

// TestSmokeDaemon is the CI smoke run: the 200-message corpus through
// dmarc-milter at concurrency 4 with cold caches, then again warm. Every
// message must be answered with the verdict the corpus expects, and the warm
// pass must make (almost) no DNS queries.
func TestSmokeDaemon(t *testing.T) {
	c := testCorpus(t)
	srv, err := startDNS(c.Zone, "")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	sock, pid := startDaemon(t, srv.addr)
	cfg := loadConfig{Milters: []string{"unix:" + sock}, Concurrency: 4, Sessions: len(c.Sessions), Timeout: 30 * time.Second}
	for _, pass := range []string{"cold", "warm"} {
		srv.ResetCounts()
		rec, elapsed := runPhase(context.Background(), c, cfg, 0)
		t.Logf("%s: %d messages in %v, %d DNS queries, verdicts %v", pass, rec.messages, elapsed, srv.Queries(), rec.verdicts)
		if rec.errors != 0 {
			t.Fatalf("%s: %d errors: %v", pass, rec.errors, rec.errSamples)
		}
		if rec.messages != c.messages() || len(rec.eom) != c.messages() {
			t.Errorf("%s: %d messages answered, want %d", pass, len(rec.eom), c.messages())
		}
		if rec.mismatches != 0 {
			t.Errorf("%s: %d verdicts differ from the corpus's expectations: %v", pass, rec.mismatches, rec.samples)
		}
		if d := cmp.Diff(expectedRange(c, 0, len(c.Sessions)), rec.verdicts); d != "" {
			t.Errorf("%s: verdict counts (-want +got):\n%s", pass, d)
		}
		if pass == "warm" && float64(srv.Queries()) >= 0.05*float64(rec.messages) {
			t.Errorf("warm: %d DNS queries for %d messages (target < 0.05 per message)", srv.Queries(), rec.messages)
		}
	}
	if hwm, _, err := procMem(pid); err == nil {
		t.Logf("dmarc-milter peak RSS %.1f MB", float64(hwm)/(1<<20))
	}
}
