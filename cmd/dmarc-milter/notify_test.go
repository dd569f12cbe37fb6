package main

import (
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestBinaryNotify: under systemd (Type=notify, NOTIFY_SOCKET set) the
// daemon says READY=1 once it listens, RELOADING=1 then READY=1 around a
// SIGHUP reload, and STOPPING=1 when SIGTERM starts the drain.
func TestBinaryNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	next := func(want string) {
		t.Helper()
		buf := make([]byte, 256)
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("notify message %q, %v; want %q", buf[:n], err, want)
		}
	}
	d := startDaemon(t, "serve", "--listen", "inet:127.0.0.1:0")
	next("READY=1")
	d.cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	d.cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1")
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}
