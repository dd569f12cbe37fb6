package integration

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
)

// The names the Debian package installs and creates.
const (
	debPackage = "dmarc-milter"
	debUser    = "dmarc-milter"
	debUnit    = "/lib/systemd/system/dmarc-milter.service"
	debConfig  = "/etc/dmarc-milter/dmarc-milter.toml"
	debSocket  = "/run/dmarc-milter/dmarc-milter.sock"
)

// leftoverRoots are where a package could leave something behind; the
// install test lists every name containing "dmarc-milter" under them before
// the install and after the purge.
var leftoverRoots = []string{"/etc", "/lib/systemd", "/usr/sbin", "/usr/share/doc", "/usr/share/man",
	"/usr/share/lintian", "/var/lib", "/run", "/var/cache/man"}

// TestDebianPackage builds the .deb of this checkout, installs it with
// dpkg -i, starts the daemon the way the installed unit's ExecStart does
// (this machine has no systemd as PID 1: the test does what systemd would,
// as the unit's User= and Group= with its RuntimeDirectory= and
// StateDirectory=), runs the Postfix suite's pass and reject scenarios
// against the packaged socket, removes the package (configuration, data
// and user stay), then purges it and checks that nothing is left: no file,
// directory, user or group, and no group membership of postfix.
func TestDebianPackage(t *testing.T) {
	requireBed(t)
	requireDpkg(t)
	checkGoroutines(t)
	root := repoRoot(t)
	before := leftovers(t)

	t0 := time.Now()
	deb := strings.TrimSpace(run(t, filepath.Join(root, "scripts/build-deb.sh"), runtime.GOARCH, t.TempDir()))
	t.Logf("built %s in %v", filepath.Base(deb), time.Since(t0).Round(time.Millisecond))

	purged := false
	t.Cleanup(func() {
		if !purged {
			// A failure half-way must not leave the package installed.
			dpkg(t, "--purge", debPackage)
		}
	})
	dpkg(t, "-i", deb)
	files := strings.Fields(run(t, "dpkg-query", "-L", debPackage))

	t.Run("installed", func(t *testing.T) { testInstalled(t, root) })
	t.Run("serve-postfix", func(t *testing.T) { testPackagedDaemon(t, root) })
	t.Run("reinstall-keeps-config", func(t *testing.T) { testReinstallKeepsConfig(t, deb) })
	t.Run("remove-keeps-config-and-data", testRemove)

	dpkg(t, "--purge", debPackage)
	purged = true
	t.Run("purge-leaves-nothing", func(t *testing.T) { testPurged(t, before, files) })
}

// dpkg runs dpkg with args, waiting up to two minutes for the lock that
// another package operation on this machine (apt) may hold.
func dpkg(t *testing.T, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := exec.Command("dpkg", args...).CombinedOutput()
		if err == nil {
			return string(out)
		}
		if !strings.Contains(string(out), "lock") || time.Now().After(deadline) {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		time.Sleep(time.Second)
	}
}

// debStatus is the package's state as dpkg knows it ("installed",
// "config-files", ...); "not-installed" also when dpkg does not know it.
func debStatus() string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", debPackage).Output()
	f := strings.Fields(string(out))
	if err != nil || len(f) != 3 {
		return "not-installed"
	}
	return f[2]
}

// requireDpkg skips (locally) or fails (CI=true) without dpkg, or when the
// package or its user is already on this machine: the test must not
// replace an administrator's installation.
func requireDpkg(t *testing.T) {
	t.Helper()
	var why string
	if _, err := exec.LookPath("dpkg"); err != nil {
		why = "no dpkg (not Debian)"
	} else if st := debStatus(); st != "not-installed" {
		why = "the package dmarc-milter is on this machine (" + st + "); dpkg --purge dmarc-milter to run this test"
	} else if _, err := user.Lookup(debUser); err == nil {
		why = "a user dmarc-milter exists here; the test needs to create it"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Log(strings.Repeat("*", 72))
	t.Skip("SKIPPING THE DEBIAN PACKAGE TEST: " + why)
}

// leftovers lists every path under leftoverRoots whose name contains
// "dmarc-milter".
func leftovers(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range leftoverRoots {
		filepath.WalkDir(r, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if strings.Contains(d.Name(), "dmarc-milter") {
				out = append(out, path)
			}
			return nil
		})
	}
	slices.Sort(out)
	return out
}

// testInstalled: the user and group exist, the configuration is a
// conffile, and the unit is what deploy/systemd ships.
func testInstalled(t *testing.T, root string) {
	u, err := user.Lookup(debUser)
	if err != nil {
		t.Fatalf("postinst created no user: %v", err)
	}
	g, err := user.LookupGroup(debUser)
	if err != nil || g.Gid != u.Gid {
		t.Errorf("group %s: %v (gid %v, the user's %s)", debUser, err, g, u.Gid)
	}
	if uid, _ := strconv.Atoi(u.Uid); uid >= 1000 || uid == 0 {
		t.Errorf("user %s has uid %d, not a system uid", debUser, uid)
	}
	conff := run(t, "dpkg-query", "-W", "-f=${Conffiles}", debPackage)
	if !strings.Contains(conff, debConfig) {
		t.Errorf("conffiles %q lack %s", conff, debConfig)
	}
	if got, want := readFile(t, debUnit), readFile(t, filepath.Join(root, "deploy/systemd/dmarc-milter.service")); got != want {
		t.Errorf("%s differs from deploy/systemd/dmarc-milter.service", debUnit)
	}
	// systemd's own check of the unit (it needs no running systemd).
	if p, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command(p, "verify", debUnit).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", debUnit, err, out)
		}
	}
	// The unit is enabled (deb-systemd-helper made the link systemd reads at boot).
	if _, err := os.Stat("/etc/systemd/system/multi-user.target.wants/dmarc-milter.service"); err != nil {
		t.Errorf("the unit is not enabled: %v", err)
	}
	if out, err := exec.Command("/usr/sbin/dmarc-milter", "check-config", "--config", debConfig).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "listen unix:"+debSocket) {
		t.Errorf("check-config of the packaged file: %v: %s", err, out)
	}
	out := run(t, "/usr/sbin/dmarc-milter", "version")
	for _, want := range []string{"commit: ", "go: go", "public suffix list: golang.org/x/net v"} {
		if !strings.Contains(out, want) {
			t.Errorf("dmarc-milter version lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "commit: unknown") {
		t.Errorf("the packaged binary does not know its commit:\n%s", out)
	}
	// The man pages are where man finds them.
	for _, page := range []string{"dmarc-milter", "dmarc-milter.toml"} {
		if p := strings.TrimSpace(run(t, "man", "-w", page)); !strings.HasPrefix(p, "/usr/share/man/") {
			t.Errorf("man -w %s: %s", page, p)
		}
	}
}

// unitService reads the [Service] section of the installed unit.
func unitService(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(debUnit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			section = l
		case section == "[Service]":
			k, v, _ := strings.Cut(l, "=")
			m[k] = v
		}
	}
	for _, k := range []string{"ExecStart", "User", "Group", "RuntimeDirectory", "RuntimeDirectoryMode",
		"StateDirectory", "StateDirectoryMode", "UMask", "Type"} {
		if m[k] == "" {
			t.Fatalf("%s: [Service] has no %s=", debUnit, k)
		}
	}
	return m
}

// systemdDir creates /run/NAME or /var/lib/NAME as systemd does for
// RuntimeDirectory= and StateDirectory=: owned by the unit's user and
// group, with the unit's mode.
func systemdDir(t *testing.T, path, mode string, uid, gid int) {
	t.Helper()
	m, err := strconv.ParseUint(mode, 8, 32)
	if err != nil {
		t.Fatalf("mode %q: %v", mode, err)
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, os.FileMode(m)); err != nil {
		t.Fatal(err)
	}
}

// startPackaged runs the unit's ExecStart as its User= and Group=, with
// its UMask=, RuntimeDirectory= and StateDirectory= prepared and
// NOTIFY_SOCKET set, and waits for READY=1 as systemd does for Type=notify.
// The test's DNS server and authserv-id are added as flags, as an
// administrator would in a drop-in (systemctl edit).
func startPackaged(t *testing.T, dir, nameserver string) *daemon {
	t.Helper()
	svc := unitService(t)
	if svc["Type"] != "notify" {
		t.Fatalf("unit Type=%s; this test starts a Type=notify service", svc["Type"])
	}
	u, err := user.Lookup(svc["User"])
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroup(svc["Group"])
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(g.Gid)
	runDir := filepath.Join("/run", svc["RuntimeDirectory"])
	stateDir := filepath.Join("/var/lib", svc["StateDirectory"])
	systemdDir(t, runDir, svc["RuntimeDirectoryMode"], uid, gid)
	systemdDir(t, stateDir, svc["StateDirectoryMode"], uid, gid)

	// systemd's notification socket: a datagram socket the daemon's user
	// may write to.
	notifyDir, err := os.MkdirTemp("", "dmarc-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(notifyDir) })
	os.Chmod(notifyDir, 0o755)
	notifyPath := filepath.Join(notifyDir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	os.Chmod(notifyPath, 0o666)

	argv := append(strings.Fields(svc["ExecStart"]), "--nameserver", nameserver, "--authserv-id", authservID)
	d := &daemon{bin: argv[0], config: debConfig, listen: "unix:" + debSocket, nameserver: nameserver,
		log: filepath.Join(dir, "packaged-daemon.log")}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	// UMask= is set by a shell before exec: umask is per process, and the
	// test's own must not change.
	d.cmd = exec.Command("/bin/sh", append([]string{"-c", `umask "$0"; exec "$@"`, svc["UMask"]}, argv...)...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.Dir = "/"
	d.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"NOTIFY_SOCKET=" + notifyPath, "RUNTIME_DIRECTORY=" + runDir, "STATE_DIRECTORY=" + stateDir,
		"HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username}
	d.cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); logf.Close(); close(done) }(d.cmd, d.done)
	t.Cleanup(func() { d.stop(t) })

	buf := make([]byte, 256)
	notify.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := notify.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("notify: %q, %v; want READY=1\n%s", buf[:n], err, tailFile(d.log, 30))
	}
	return d
}

// testPackagedDaemon runs the suite's pass and reject scenarios through a
// private Postfix whose smtpd talks to the packaged socket, after the
// postfix user was put in the daemon's group as the packaged configuration
// says.
func testPackagedDaemon(t *testing.T, root string) {
	run(t, "adduser", "--quiet", "postfix", debUser)
	w := &world{root: root, dir: bedDir(t), d: map[string]*daemon{}}
	w.dns = dnstest.New(t, "")
	d := startPackaged(t, w.dir, w.dns.Addr)

	st, err := os.Stat(debSocket)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	u, _ := user.Lookup(debUser)
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o660 || strconv.Itoa(int(sys.Uid)) != u.Uid || strconv.Itoa(int(sys.Gid)) != u.Gid {
		t.Errorf("%s: mode %v owner %d:%d; want a socket, 0660, owned by %s:%s (%s:%s)", debSocket, st.Mode(), sys.Uid, sys.Gid,
			debUser, debUser, u.Uid, u.Gid)
	}

	w.dc = startDovecot(t, root, w.dir, authservID)
	// The service is called "header" because the scenarios send to it; it
	// uses the packaged socket.
	w.pf = startPostfix(t, root, w.dir, w.dc.lmtp, []smtpService{{name: "header", milter: "unix:" + debSocket}})
	w.d["packaged"] = d
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix log (tail):\n%s", tailFile(w.pf.log, 60))
			t.Logf("packaged daemon log (tail):\n%s", tailFile(d.log, 30))
		}
	})
	for _, sc := range scenarios {
		if sc.name != "dkim-aligned-pass-inbox" && sc.name != "reject-550-at-eom-nothing-delivered" {
			continue
		}
		t.Run(sc.name, func(t *testing.T) { sc.run(t, w) })
	}
	if l := readFile(t, d.log); !strings.Contains(l, `msg="dmarc-milter started"`) || !strings.Contains(l, debSocket) {
		t.Errorf("the daemon did not log its start on %s:\n%s", debSocket, l)
	}
	d.stop(t)
}

// testReinstallKeepsConfig: a change to the conffile survives installing
// the package again.
func testReinstallKeepsConfig(t *testing.T, deb string) {
	const mark = "\n# changed by the administrator\n"
	f, err := os.OpenFile(debConfig, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(mark)
	f.Close()
	dpkg(t, "-i", deb)
	if !strings.HasSuffix(readFile(t, debConfig), mark) {
		t.Errorf("reinstalling replaced the administrator's %s", debConfig)
	}
}

// testRemove: dpkg -r removes the program and keeps the configuration,
// the state directory and the user.
func testRemove(t *testing.T) {
	data := "/var/lib/dmarc-milter/kept"
	writeFile(t, data, "report store stand-in\n", 0o600)
	dpkg(t, "-r", debPackage)
	for _, p := range []string{debConfig, data} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("removal deleted %s: %v", p, err)
		}
	}
	for _, p := range []string{"/usr/sbin/dmarc-milter", debUnit} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("removal left %s", p)
		}
	}
	if _, err := user.Lookup(debUser); err != nil {
		t.Errorf("removal deleted the user: %v", err)
	}
}

// testPurged: nothing of the package is left.
func testPurged(t *testing.T, before, files []string) {
	if st := debStatus(); st != "not-installed" {
		t.Errorf("dpkg still knows the package: %s", st)
	}
	after := leftovers(t)
	for _, p := range after {
		if !slices.Contains(before, p) {
			t.Errorf("left behind: %s", p)
		}
	}
	for _, p := range files {
		// A directory of the package's list may be shared (/lib, /usr/sbin).
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			t.Errorf("left behind: %s", p)
		}
	}
	if _, err := user.Lookup(debUser); err == nil {
		t.Errorf("purge left the user %s", debUser)
	}
	if _, err := user.LookupGroup(debUser); err == nil {
		t.Errorf("purge left the group %s", debUser)
	}
	if out := run(t, "id", "-nG", "postfix"); slices.Contains(strings.Fields(out), debUser) {
		t.Errorf("postfix is still in group %s: %s", debUser, out)
	}
	t.Logf("after purge, %d path(s) named dmarc-milter, as before the install: %v", len(after), after)
}
