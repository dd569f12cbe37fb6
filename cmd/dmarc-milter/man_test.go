package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dmarc-milter/dmarc-milter/internal/manpage"
)

var updateMan = flag.Bool("update", false, "rewrite docs/man/dmarc-milter.8")

const manPath = "../../docs/man/dmarc-milter.8"

// commandFlags returns the flag set of c as its run builds it.
func commandFlags(c command) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	if c.flags != nil {
		c.flags(fs)
	}
	return fs
}

// renderManPage writes dmarc-milter(8) from the command table: every
// command, and every flag of each as its flag set defines it.
func renderManPage() string {
	p := manpage.New("dmarc-milter", "8", "dmarc-milter", "System Manager's Manual")
	p.Section("name")
	p.Para("dmarc-milter - DMARC milter for Postfix")
	p.Section("synopsis")
	walkCommands(commands, "dmarc-milter ", func(path string, c command) {
		if len(c.subcommands) > 0 {
			return
		}
		args := "[options]"
		if c.flags == nil {
			args = ""
		}
		p.Synopsis(path, strings.TrimSpace(args+" "+c.args))
	})
	p.Section("description")
	p.Para(`dmarc-milter is a milter (the Sendmail mail filter protocol, which Postfix speaks) that checks
		SPF and DKIM for each message received over SMTP, applies the DMARC policy of the domain in the
		message's From: field (RFC 9989), and writes one Authentication-Results header field (RFC 8601)
		with the results. Depending on the policy and its configuration it accepts, quarantines, rejects
		or temporarily refuses the message. It is configured by one TOML file, described in
		dmarc-milter.toml(5); without a file it runs on built-in defaults.`)
	p.Para(`The first argument names the command; without one, serve runs. Options are written
		--name value or --name=value (one dash works too); an option that may be repeated says so.`)
	p.Section("commands")
	walkCommands(commands, "", func(path string, c command) {
		p.Subsection(path)
		p.Para(c.summary)
		commandFlags(c).VisitAll(func(f *flag.Flag) {
			arg, usage := flag.UnquoteUsage(f)
			switch f.DefValue {
			case "", "false", "0", "[]":
			default:
				usage += " (default " + f.DefValue + ")"
			}
			p.Tagged("--"+f.Name, arg, usage)
		})
	})
	p.Section("exit status")
	p.Tagged("0", "", "Success.")
	p.Tagged("1", "", "A runtime failure (a socket that cannot be opened, a check of lookup that fails).")
	p.Tagged("2", "", `An invalid configuration or command line. The systemd unit does not restart the
		daemon after this status (RestartPreventExitStatus=2): restarting cannot fix it.`)
	p.Section("signals")
	p.Tagged("SIGHUP", "", `Reload the configuration file. An invalid file is refused, logged, and the
		running configuration stays in force.`)
	p.Tagged("SIGTERM, SIGINT", "", `Stop accepting connections, let the messages in flight finish
		(timeouts.drain), then exit.`)
	p.Section("files")
	p.Tagged("/etc/dmarc-milter/dmarc-milter.toml", "", "The configuration file of the Debian package.")
	p.Tagged("/run/dmarc-milter/", "", `The runtime directory (systemd RuntimeDirectory=) that holds the
		packaged unix socket, dmarc-milter.sock.`)
	p.Tagged("/var/lib/dmarc-milter/", "", `The state directory (systemd StateDirectory=), where the
		report store is kept when one is used.`)
	p.Tagged("/lib/systemd/system/dmarc-milter.service", "", "The systemd unit.")
	p.Tagged("/usr/share/doc/dmarc-milter/", "", `The Postfix main.cf fragment and master.cf notes, the
		Dovecot snippet and Sieve script for quarantined mail, and the installation notes.`)
	p.Section("see also")
	p.Para("dmarc-milter.toml(5), postconf(5), master(5), systemd.service(5)")
	return p.String()
}

// TestManPage checks that docs/man/dmarc-milter.8 is what the command table
// gives (-update rewrites it; make man) and that groff renders it without
// a warning.
func TestManPage(t *testing.T) {
	want := renderManPage()
	if *updateMan {
		if err := os.MkdirAll("../../docs/man", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(manPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(manPath)
	if err != nil {
		t.Fatalf("%v (run make man)", err)
	}
	if d := cmp.Diff(want, string(got)); d != "" {
		t.Errorf("%s is stale; run make man (-want +got):\n%s", manPath, d)
	}
	text := groffText(t, want)
	walkCommands(commands, "dmarc-milter ", func(path string, c command) {
		if !strings.Contains(text, path) {
			t.Errorf("rendered page lacks the command %s", path)
		}
		commandFlags(c).VisitAll(func(f *flag.Flag) {
			if !strings.Contains(text, "--"+f.Name) {
				t.Errorf("rendered page lacks %s --%s", path, f.Name)
			}
		})
	})
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

// TestCommandFlagsMatchHelp runs every command with -h: the flags it lists
// are those of the command table, from which the man page is written.
func TestCommandFlagsMatchHelp(t *testing.T) {
	walkCommands(commands, "", func(path string, c command) {
		if c.flags == nil {
			return
		}
		if c.summary == "" {
			t.Errorf("%s has no summary for the man page", path)
		}
		var out, errb bytes.Buffer
		if code := run(append(strings.Fields(path), "-h"), &out, &errb); code != exitOK {
			t.Errorf("%s -h: exit %d", path, code)
		}
		var want []string
		commandFlags(c).VisitAll(func(f *flag.Flag) { want = append(want, f.Name) })
		var got []string
		for _, l := range strings.Split(errb.String(), "\n") {
			if name, ok := strings.CutPrefix(l, "  -"); ok {
				got = append(got, strings.Fields(name)[0])
			}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s: flags of -h differ from the command table (-table +help):\n%s", path, d)
		}
	})
}

// TestCommandGroups: a group runs the subcommand its first argument names,
// and refuses a missing or unknown one with the usage exit status; the man
// page lists the group and each subcommand with its flags.
func TestCommandGroups(t *testing.T) {
	var ran []string
	sub := func(name string) command {
		return command{name: name, summary: "Does " + name + ".",
			flags: func(fs *flag.FlagSet) { fs.Bool(name+"-flag", false, "a flag of "+name) },
			run: func(args []string, _, _ io.Writer) int {
				ran = append(ran, name+" "+strings.Join(args, " "))
				return exitOK
			}}
	}
	group := command{name: "report", summary: "Reports.", subcommands: []command{sub("build"), sub("send")}}
	var errb bytes.Buffer
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"send", "--x"}, exitOK},
		{nil, exitConfig},
		{[]string{"bogus"}, exitConfig},
	} {
		if code := runCommand(&group, "dmarc-milter report", tc.args, io.Discard, &errb); code != tc.code {
			t.Errorf("report %v: exit %d, want %d", tc.args, code, tc.code)
		}
	}
	if d := cmp.Diff([]string{"send --x"}, ran); d != "" {
		t.Errorf("ran (-want +got):\n%s", d)
	}
	if !strings.Contains(errb.String(), "need a subcommand: build, send") {
		t.Errorf("message %q does not name the subcommands", errb.String())
	}
	var paths []string
	walkCommands([]command{group}, "dmarc-milter ", func(path string, _ command) { paths = append(paths, path) })
	if d := cmp.Diff([]string{"dmarc-milter report", "dmarc-milter report build", "dmarc-milter report send"}, paths); d != "" {
		t.Errorf("walkCommands (-want +got):\n%s", d)
	}
}

// TestUsageNamesEveryCommand: the short usage text names every command.
func TestUsageNamesEveryCommand(t *testing.T) {
	for _, c := range commands {
		if c.name != "help" && !strings.Contains(usage, "dmarc-milter "+c.name) && !strings.Contains(usage, "["+c.name+"]") {
			t.Errorf("usage does not name %s:\n%s", c.name, usage)
		}
	}
}
