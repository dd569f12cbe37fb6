package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// reportCommand is one subcommand of `dmarc-milter report`.
type reportCommand struct {
	run  func(args []string, stdout, stderr io.Writer) int
	help string
}

// reportCommands are the subcommands of `report`: about the reports other
// receivers send us (intake.go) and, merged in by the lead, the reports we
// send (build, send, status).
var reportCommands = map[string]reportCommand{
	"import":   {run: cmdReportImport, help: "import --config FILE [--store URL] PATH...   take in report files, directories, Maildirs, mbox files"},
	"senders":  {run: cmdReportSenders, help: "senders --config FILE [RANGE] [--json] DOMAIN   who sends as DOMAIN"},
	"failures": {run: cmdReportFailures, help: "failures --config FILE [RANGE] [--json] DOMAIN  what fails and why, with the fix"},
	"new":      {run: cmdReportNew, help: "new --config FILE [RANGE] [--json] DOMAIN       senders first seen in the range"},
}

// cmdReport dispatches `dmarc-milter report SUBCOMMAND`.
func cmdReport(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, reportUsage())
		if len(args) == 0 {
			return exitConfig
		}
		return exitOK
	}
	c, ok := reportCommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "dmarc-milter report: unknown subcommand %q\n%s", args[0], reportUsage())
		return exitConfig
	}
	return c.run(args[1:], stdout, stderr)
}

func reportUsage() string {
	var names []string
	for n := range reportCommands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: dmarc-milter report SUBCOMMAND ...\n")
	for _, n := range names {
		b.WriteString("  dmarc-milter report " + reportCommands[n].help + "\n")
	}
	b.WriteString("RANGE: --since T --until T (RFC 3339 or YYYY-MM-DD, UTC, [since, until)) or --days N (default 7)\n")
	return b.String()
}
