package config

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dmarc-milter/dmarc-milter/internal/manpage"
)

// packagedValues are the keys the Debian package sets in
// /etc/dmarc-milter/dmarc-milter.toml, with their values as TOML; every
// other key stays commented out at its default. The state directory needs
// no key: the unit's StateDirectory= gives the daemon $STATE_DIRECTORY
// (/var/lib/dmarc-milter).
var packagedValues = map[string]string{
	// A unix socket in the unit's RuntimeDirectory=; the daemon's group
	// (dmarc-milter) owns it, mode 0660 (socket.mode's default), so that
	// Postfix reaches it once the postfix user is in that group.
	"listen": `"unix:/run/dmarc-milter/dmarc-milter.sock"`,
}

// packagedHeader explains the file to the administrator who opens it.
const packagedHeader = `# /etc/dmarc-milter/dmarc-milter.toml: configuration of dmarc-milter (TOML),
# installed by the Debian package. Reference: dmarc-milter.toml(5).
# The package sets the values below that are not commented out; every other
# key is commented out at its default: uncomment and change what you need,
# then "systemctl reload dmarc-milter" (check first: dmarc-milter check-config
# --config /etc/dmarc-milter/dmarc-milter.toml).
#
# Postfix and the socket. The daemon runs as the system user dmarc-milter
# and listens on /run/dmarc-milter/dmarc-milter.sock (group dmarc-milter,
# mode 0660). Let Postfix in and point it at the socket:
#
#   adduser postfix dmarc-milter
#   postconf -e 'smtpd_milters = unix:/run/dmarc-milter/dmarc-milter.sock'
#   systemctl restart postfix
#
# Debian runs smtpd chrooted in /var/spool/postfix (the chroot column of
# the smtp line in /etc/postfix/master.cf), and a chrooted smtpd cannot see
# /run/dmarc-milter. Either set that column to "n", or move the socket into
# the chroot: listen = "unix:/var/spool/postfix/dmarc-milter/dmarc-milter.sock"
# here, smtpd_milters = unix:dmarc-milter/dmarc-milter.sock in main.cf (a
# path relative to the queue directory), the directory created with
#   install -d -o dmarc-milter -g dmarc-milter -m 0750 /var/spool/postfix/dmarc-milter
# and ReadWritePaths=/var/spool/postfix/dmarc-milter added to the unit with
# "systemctl edit dmarc-milter". See
# /usr/share/doc/dmarc-milter/postfix/master.cf.md.
#
# Generated from internal/config/config.go by "make man". Do not edit.
`

// renderPackaged writes the packaged configuration: the example file with
// the packaged values set.
func renderPackaged(t *testing.T, keys []docKey) string {
	var b strings.Builder
	b.WriteString(packagedHeader)
	used := 0
	for _, k := range keys {
		if k.section {
			fmt.Fprintf(&b, "\n%s\n[%s]\n", comment(k.doc), k.path)
			continue
		}
		name := k.path[strings.LastIndexByte(k.path, '.')+1:]
		if v, ok := packagedValues[k.path]; ok {
			used++
			fmt.Fprintf(&b, "\n%s\n# Set by the package; the default is %s.\n%s = %s\n", comment(k.doc), k.actual, name, v)
			continue
		}
		fmt.Fprintf(&b, "\n%s\n#%s = %s\n", comment(k.doc), name, k.actual)
	}
	if used != len(packagedValues) {
		t.Errorf("packagedValues names a key that Config does not have: %v", packagedValues)
	}
	return b.String()
}

// renderManPage writes dmarc-milter.toml(5): every key, its meaning and
// default, from the same doc comments as docs/config.md.
func renderManPage(keys []docKey) string {
	p := manpage.New("dmarc-milter.toml", "5", "dmarc-milter", "File Formats Manual")
	p.Section("name")
	p.Para("dmarc-milter.toml - configuration file of dmarc-milter")
	p.Section("synopsis")
	p.Para("/etc/dmarc-milter/dmarc-milter.toml")
	p.Section("description")
	p.Para(`dmarc-milter(8) reads one TOML file (dmarc-milter serve --config FILE; the Debian package's
		unit names /etc/dmarc-milter/dmarc-milter.toml). Every key is optional: with no file at all the
		daemon runs on the defaults below. An unknown key is an error that names the key and its line;
		dmarc-milter check-config --config FILE checks a file and exits 2 with one message when it is
		wrong. Durations are Go durations ("1m30s"). SIGHUP reloads the file; an invalid file is refused
		and the running configuration stays in force.`)
	p.Para(`Command-line options of serve override the file: --listen, --authserv-id, --nameserver
		(repeatable; replaces dns.nameservers).`)
	p.Section("keys")
	p.Subsection("Top-level keys")
	for _, k := range keys {
		if k.section {
			p.Subsection("[" + k.path + "]")
			p.Para(k.doc)
			continue
		}
		p.Tagged(k.path, "", k.doc+" Default: "+k.actual+".")
	}
	p.Section("files")
	p.Tagged("/etc/dmarc-milter/dmarc-milter.toml", "", `The file of the Debian package: the packaged values
		set (the unix socket /run/dmarc-milter/dmarc-milter.sock) and every other key commented out at its
		default. A conffile: upgrades keep the administrator's changes.`)
	p.Tagged("/usr/share/doc/dmarc-milter/examples/dmarc-milter.toml", "", `Every key commented out at its
		default.`)
	p.Section("see also")
	p.Para("dmarc-milter(8), postconf(5)")
	return p.String()
}

// TestManPageAndPackagedConfig checks that docs/man/dmarc-milter.toml.5 and
// packaging/debian/dmarc-milter.toml are current (-update rewrites them;
// make man), that groff renders the page without a warning and names every
// key, and that the packaged file parses, validates, and differs from
// Default() only in the packaged values.
func TestManPageAndPackagedConfig(t *testing.T) {
	keys := collectKeys(t)
	files := map[string]string{
		"../../docs/man/dmarc-milter.toml.5":       renderManPage(keys),
		"../../packaging/debian/dmarc-milter.toml": renderPackaged(t, keys),
	}
	for path, want := range files {
		if *update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run make man)", err)
		}
		if d := cmp.Diff(want, string(got)); d != "" {
			t.Errorf("%s is stale; run make man (-want +got):\n%s", path, d)
		}
	}
	text := groffText(t, files["../../docs/man/dmarc-milter.toml.5"])
	for _, k := range keys {
		if !strings.Contains(text, k.path) {
			t.Errorf("rendered dmarc-milter.toml(5) lacks %s", k.path)
		}
	}

	c, err := Parse("packaged", []byte(files["../../packaging/debian/dmarc-milter.toml"]))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("packaged configuration: %v", err)
	}
	want := Default()
	want.Listen = "unix:/run/dmarc-milter/dmarc-milter.sock"
	if d := cmp.Diff(want, c, cmp.Comparer(func(a, b Network) bool { return a == b })); d != "" {
		t.Errorf("packaged configuration differs from Default() beyond the packaged values (-want +got):\n%s", d)
	}
}

// groffText renders a page as plain text; groff's warnings fail the test.
func groffText(t *testing.T, src string) string {
	t.Helper()
	path, err := exec.LookPath("groff")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("groff not installed (Debian: groff-base)")
		}
		t.Skip("groff not installed (Debian: groff-base)")
	}
	cmd := exec.Command(path, "-man", "-ww", "-Tutf8", "-P", "-cbou", "-rLL=300n")
	cmd.Stdin = strings.NewReader(src)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("groff: %v\n%s", err, errb.String())
	}
	return out.String()
}
