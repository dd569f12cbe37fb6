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
	"runtime"
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
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return cmdServe(args, stderr)
	case "check-config":
		return cmdCheckConfig(args, stdout, stderr)
	case "evaluate":
		return cmdEvaluate(args, stdout, stderr)
	case "lookup":
		return cmdLookup(args, stdout, stderr)
	case "web":
		return cmdWeb(args, stderr)
	case "version":
		fmt.Fprintf(stdout, "dmarc-milter %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "dmarc-milter: unknown command %q\n%s", cmd, usage)
	return exitConfig
}

const usage = `usage:
  dmarc-milter [serve] [--config FILE] [--listen ADDR] [--authserv-id ID] [--nameserver HOST[:PORT]]...
  dmarc-milter check-config [--config FILE] [flags of serve]
  dmarc-milter evaluate --ip ADDR --helo NAME --mail-from ADDR [--rcpt ADDR]... [flags of serve] FILE.eml|-
  dmarc-milter lookup [flags of serve] DOMAIN
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
