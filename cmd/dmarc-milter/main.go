// Command dmarc-milter is a DMARC milter for Postfix: it checks SPF and
// DKIM, applies the From: domain's DMARC policy and writes one
// Authentication-Results header per message.
//
// Usage:
//
//	dmarc-milter [serve] [--config FILE] [--listen ADDR] [--authserv-id ID] [--nameserver HOST[:PORT]]...
//	dmarc-milter check-config [--config FILE]
//	dmarc-milter evaluate --ip ADDR --helo NAME --mail-from ADDR [--rcpt ADDR]... [--config FILE] FILE.eml
//	dmarc-milter lookup [--config FILE] [--nameserver HOST[:PORT]]... DOMAIN
//	dmarc-milter report build|send|status --config FILE ...
//	dmarc-milter report import|senders|failures|new --config FILE ...
//	dmarc-milter web [--config FILE] [--listen HOST:PORT] [--store URL]
//	dmarc-milter version
//
// serve is the default. check-config exits 2 with one message when the
// configuration is invalid. See docs/config.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// version is set at build time (-ldflags -X main.version=...).
var version = "dev"

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1 // runtime failure
	exitConfig = 2 // invalid configuration or usage (systemd RestartPreventExitStatus=2)
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches the subcommand and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if c := findCommand(commands, name); c != nil {
		return runCommand(c, "dmarc-milter "+name, args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "dmarc-milter: unknown command %q\n%s", name, usage)
	return exitConfig
}

// runCommand runs c, or, for a group of subcommands, the one named by the
// first argument. path is the command line so far, for messages.
func runCommand(c *command, path string, args []string, stdout, stderr io.Writer) int {
	if len(c.subcommands) == 0 {
		return c.run(args, stdout, stderr)
	}
	var names []string
	for _, sc := range c.subcommands {
		names = append(names, sc.name)
	}
	if len(args) == 0 || findCommand(c.subcommands, args[0]) == nil {
		fmt.Fprintf(stderr, "%s: need a subcommand: %s\n", path, strings.Join(names, ", "))
		return exitConfig
	}
	return runCommand(findCommand(c.subcommands, args[0]), path+" "+args[0], args[1:], stdout, stderr)
}

// command is one subcommand. The table below is what run dispatches on and
// what dmarc-milter(8) is generated from (man_test.go), so a command added
// here, and every flag its flags function registers, is documented.
type command struct {
	name string
	// args is the synopsis after the flags ("DOMAIN", "FILE.eml|-").
	args string
	// summary says what the command does, in sentences (the man page's
	// paragraph for it).
	summary string
	// flags registers the command's flags on fs; the command's run builds
	// its own flag set with the same function, so the two cannot differ
	// (TestCommandFlagsMatchHelp). nil: the command takes no flags.
	flags func(fs *flag.FlagSet)
	run   func(args []string, stdout, stderr io.Writer) int
	// subcommands make the command a group ("report build", "report
	// send"): the first argument names one of them, and run and flags are
	// unused.
	subcommands []command
}

// commands lists every subcommand in the order of the usage text.
var commands = []command{
	{name: "serve", summary: "Runs the milter: listens on the configured socket, evaluates each message " +
		"Postfix sends and answers with its disposition and Authentication-Results header. It is the default " +
		"command. SIGHUP reloads the configuration file (an invalid file is refused and the running " +
		"configuration stays); SIGTERM drains the messages in flight and exits. With systemd it reports " +
		"readiness over sd_notify.",
		flags: func(fs *flag.FlagSet) { new(commonFlags).register(fs) },
		run:   func(args []string, _, stderr io.Writer) int { return cmdServe(args, stderr) }},
	{name: "check-config", summary: "Reads and validates the configuration, prints one line and exits 0, " +
		"or prints one message naming the key and line of the error and exits 2.",
		flags: func(fs *flag.FlagSet) { new(commonFlags).register(fs) },
		run:   cmdCheckConfig},
	{name: "evaluate", args: "FILE.eml|-", summary: "Runs one message (a file, or - for standard input) " +
		"through the daemon's own code path, as Postfix would feed it from the given client, and prints the " +
		"Authentication-Results header, the disposition and a trace of the decision. DNS is queried live.",
		flags: func(fs *flag.FlagSet) { new(evaluateFlags).register(fs) },
		run:   cmdEvaluate},
	{name: "lookup", args: "DOMAIN", summary: "Checks how DOMAIN publishes DMARC, SPF and DKIM as receivers " +
		"see it: the DMARC record that applies and how it was found, the SPF record as a tree of includes " +
		"and redirects with its DNS lookups counted against the limits of RFC 7208, the SPF records of the " +
		"given subdomains and the DKIM keys of the given selectors. Exits 0 when no check fails, 1 when one " +
		"fails or DNS did not answer, 2 for usage or configuration errors.",
		flags: func(fs *flag.FlagSet) { new(lookupFlags).register(fs) },
		run:   cmdLookup},
	{name: "report", summary: "Everything about DMARC aggregate reports (RFC 9990). Times are UTC, given " +
		"as RFC 3339 or YYYY-MM-DD; ranges are half-open [since, until). See docs/reports.md.",
		subcommands: []command{
			{name: "build", summary: "Writes the reports that would be sent for the periods in the range " +
				"(the .xml.gz files and the whole messages, .eml) into the output directory, without sending " +
				"or marking anything; also for a period still open.",
				flags: func(fs *flag.FlagSet) { new(reportBuildFlags).register(fs) },
				run:   cmdReportBuild},
			{name: "send", summary: "Builds and sends every report that is due now, once, and exits: " +
				"for schedule = \"external\" (a systemd timer or cron runs it). Exactly one sender sends each " +
				"report, also beside running daemons on the same store.",
				flags: func(fs *flag.FlagSet) { new(reportSendFlags).register(fs) },
				run:   cmdReportSend},
			{name: "status", summary: "Shows, per policy domain, the rows recorded, the last report sent, " +
				"failures and suppressed destinations.",
				flags: func(fs *flag.FlagSet) { new(reportStatusFlags).register(fs) },
				run:   cmdReportStatus},
			{name: "import", args: "PATH...", summary: "Takes in the aggregate reports other receivers sent " +
				"about the domains of [intake] domains: report files (.xml, .xml.gz, .zip), report messages " +
				"(.eml), directories, Maildirs and mbox files. A report already stored is a duplicate and is " +
				"not stored again. Exits 0 when every report was stored, a duplicate or refused; 1 when one " +
				"could not be stored or a path not read (with --strict, also when one was refused).",
				flags: func(fs *flag.FlagSet) { new(importFlags).register(fs) },
				run:   cmdReportImport},
			{name: "senders", args: "DOMAIN", summary: "Who sends as DOMAIN, from the reports received: " +
				"senders grouped by the organizational domain of their confirmed reverse DNS name, with " +
				"their addresses, volume, aligned SPF and DKIM passes, dispositions and first and last seen.",
				flags: func(fs *flag.FlagSet) { new(questionFlags).register(fs) },
				run:   cmdReportSenders},
			{name: "failures", args: "DOMAIN", summary: "What fails for DOMAIN and why (SPF not aligned " +
				"through a third party, a DKIM selector failing, forwarding), with the fix in words.",
				flags: func(fs *flag.FlagSet) { new(questionFlags).register(fs) },
				run:   cmdReportFailures},
			{name: "new", args: "DOMAIN", summary: "The senders of DOMAIN first seen in the range.",
				flags: func(fs *flag.FlagSet) { new(questionFlags).register(fs) },
				run:   cmdReportNew},
			{name: "rebuild-summaries", summary: "Builds the dashboard's summaries again from the stored " +
				"received reports, counters and rows (writers wait meanwhile; docs/reports.md): after hosts " +
				"still running a binary older than the summaries recorded into a shared store during a rolling " +
				"upgrade.",
				flags: func(fs *flag.FlagSet) { new(intakeFlags).register(fs) },
				run:   cmdReportRebuild},
		}},
	{name: "web", summary: "Serves the read-only dashboard (docs/dashboard.md) over the store, without " +
		"the milter: for a host that is not an MX, pointed at the shared PostgreSQL store. Runs until SIGTERM " +
		"or SIGINT.",
		flags: func(fs *flag.FlagSet) { new(webFlags).register(fs) },
		run:   cmdWeb},
	{name: "version", summary: "Prints the version, the commit it was built from, the Go version and " +
		"the version of the embedded Public Suffix List data.",
		run: func(_ []string, stdout, _ io.Writer) int { printVersion(stdout); return exitOK }},
	{name: "help", summary: "Prints the usage summary.",
		run: func(_ []string, stdout, _ io.Writer) int { fmt.Fprint(stdout, usage); return exitOK }},
}

// findCommand returns the named command of table, or nil.
func findCommand(table []command, name string) *command {
	for i := range table {
		if table[i].name == name {
			return &table[i]
		}
	}
	return nil
}

// walkCommands calls f for every command of table, depth first in table
// order (a group before its subcommands), with its full name ("report
// build").
func walkCommands(table []command, prefix string, f func(path string, c command)) {
	for _, c := range table {
		f(prefix+c.name, c)
		walkCommands(c.subcommands, prefix+c.name+" ", f)
	}
}

const usage = `usage:
  dmarc-milter [serve] [--config FILE] [--listen ADDR] [--authserv-id ID] [--nameserver HOST[:PORT]]...
  dmarc-milter check-config [--config FILE] [flags of serve]
  dmarc-milter evaluate --ip ADDR --helo NAME --mail-from ADDR [--rcpt ADDR]... [flags of serve] FILE.eml|-
  dmarc-milter lookup [flags of serve] DOMAIN
  dmarc-milter report build --config FILE --out DIR [--since T] [--until T]
  dmarc-milter report send --config FILE [--dry-run]
  dmarc-milter report status --config FILE [--json]
  dmarc-milter report import --config FILE [--store URL] [--no-ptr] [--strict] [--quiet] PATH...
  dmarc-milter report senders|failures|new --config FILE [--since T] [--until T] [--days N] [--json] DOMAIN
  dmarc-milter web [--config FILE] [--listen HOST:PORT] [--store URL]
  dmarc-milter version
`

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// commonFlags are the serve flags that override the configuration file.
type commonFlags struct {
	config      string
	listen      string
	authservID  string
	nameservers stringList
}

func (f *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "configuration `file` (TOML); none: the built-in defaults")
	fs.StringVar(&f.listen, "listen", "", "milter socket: inet:HOST:PORT, inet6:[HOST]:PORT or unix:PATH (overrides listen)")
	fs.StringVar(&f.authservID, "authserv-id", "", "authserv-id of our Authentication-Results (overrides authserv_id)")
	fs.Var(&f.nameservers, "nameserver", "DNS server `host[:port]`, repeatable (overrides dns.nameservers)")
}

// parseFlags parses args; a usage error is reported and gives exitConfig.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitConfig, false
	}
	return exitOK, true
}
