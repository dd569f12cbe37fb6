// Package packaging_test checks the Debian package that scripts/build-deb.sh
// builds: lintian finds no error and only the warnings docs/install.md
// explains, every override ships with its reason, and two builds of the
// same commit in two fresh clones are byte for byte the same. The install
// test (dpkg -i, the daemon behind Postfix, purge) is
// integration.TestDebianPackage.
package packaging_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// need skips (locally) or fails (CI=true) when a program is missing.
func need(t *testing.T, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err == nil {
		return p
	}
	msg := prog + " not found; run scripts/install-deps.sh as root (Debian: " + pkg + ")"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Log(strings.Repeat("*", 72))
	t.Skip("SKIPPING: " + msg)
	return ""
}

// buildDeb builds the package of this checkout into a temporary directory.
func buildDeb(t *testing.T) string {
	t.Helper()
	need(t, "dpkg-deb", "dpkg")
	out, err := exec.Command("../scripts/build-deb.sh", runtime.GOARCH, t.TempDir()).Output()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, stderrOf(err))
	}
	return strings.TrimSpace(string(out))
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// TestLintian runs lintian (pedantic, with overridden tags shown) on the
// package: no error, no unused override, and every warning is one that
// docs/install.md explains.
func TestLintian(t *testing.T) {
	t.Parallel()
	lintian := need(t, "lintian", "lintian")
	deb := buildDeb(t)
	cmd := exec.Command(lintian, "--pedantic", "--display-info", "--show-overrides", "--fail-on", "none", deb)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("lintian: %v\n%s%s", err, out.String(), errb.String())
	}
	t.Logf("lintian %s:\n%s", filepath.Base(deb), out.String())
	doc, err := os.ReadFile("../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	overridden := 0
	// A tag line: "W: dmarc-milter: tag-name details"; "N:" lines explain.
	tagLine := regexp.MustCompile(`^([EWIPOX]): dmarc-milter(?: \S+)?: (\S+)`)
	for _, l := range strings.Split(out.String(), "\n") {
		m := tagLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		kind, tag := m[1], m[2]
		switch kind {
		case "E":
			t.Errorf("lintian error: %s", l)
		case "W", "I", "P", "X":
			if tag == "unused-override" || tag == "mismatched-override" {
				t.Errorf("lintian: %s", l)
			}
			if !bytes.Contains(doc, []byte("`"+tag+"`")) {
				t.Errorf("docs/install.md does not explain lintian's %s: %s", kind, l)
			}
		case "O":
			overridden++
			if !bytes.Contains(doc, []byte("`"+tag+"`")) {
				t.Errorf("docs/install.md does not list the override of %s", tag)
			}
		}
	}
	if overridden == 0 {
		t.Errorf("lintian used none of packaging/debian/lintian-overrides (is it installed in the package?)")
	}
}

// TestOverridesHaveReasons: each override in packaging/debian/
// lintian-overrides follows a comment that gives its reason.
func TestOverridesHaveReasons(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("debian/lintian-overrides")
	if err != nil {
		t.Fatal(err)
	}
	prevComment := false
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "#"):
			prevComment = true
		case strings.TrimSpace(l) == "":
			// A reason is the comment directly above its override.
			prevComment = false
		default:
			n++
			if !prevComment {
				t.Errorf("override without a reason just above it: %s", l)
			}
			prevComment = false
		}
	}
	if n == 0 {
		t.Error("no override found")
	}
}

// TestReproducible builds the package of HEAD in two fresh clones (other
// paths, umask, time zone, locale and file times) and compares the bytes.
// The two builds share the Go build cache here to keep the test short;
// scripts/check-reproducible.sh run by hand starts the second from an empty
// cache.
func TestReproducible(t *testing.T) {
	t.Parallel()
	need(t, "dpkg-deb", "dpkg")
	need(t, "git", "git")
	cmd := exec.Command("../scripts/check-reproducible.sh", runtime.GOARCH)
	cmd.Env = append(os.Environ(), "REPRO_SHARED_CACHE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("check-reproducible.sh: %v\n%s", err, out)
	}
	t.Logf("two clean builds of HEAD: %s", out)
}
