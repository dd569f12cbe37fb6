package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/internal/milter"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

// cmdEvaluate runs one message file through the daemon's own code path
// (milter.Engine and Transaction, fed the way Postfix feeds the milter) and
// prints the Authentication-Results header, the disposition and a trace.
func cmdEvaluate(args []string, stdout, stderr io.Writer) int {
	var ef evaluateFlags
	fs := flag.NewFlagSet("evaluate", flag.ContinueOnError)
	ef.register(fs)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	addr, err := netip.ParseAddr(ef.ip)
	if err != nil || ef.helo == "" || fs.NArg() != 1 {
		fmt.Fprintf(stderr, "evaluate: need --ip ADDR, --helo NAME and one message file (or -)\n%s", usage)
		return exitConfig
	}
	cfg, err := loadConfig(&ef.commonFlags)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	msg, err := readMessage(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "evaluate: %v\n", err)
		return exitError
	}
	res, err := cache.New(cacheConfig(cfg.DNS))
	if err != nil {
		fmt.Fprintf(stderr, "evaluate: dns: %v\n", err)
		return exitConfig
	}
	eng, err := milter.NewEngine(cfg, res, nil)
	if err != nil {
		fmt.Fprintf(stderr, "evaluate: %v\n", err)
		return exitError
	}
	env := milter.Envelope{ClientIP: addr.Unmap(), Helo: ef.helo, MailFrom: strings.Trim(ef.mailFrom, "<>"), AuthUser: ef.auth, MTAHost: ef.mta, Rcpts: ef.rcpts}
	d := milter.EvaluateMessage(context.Background(), eng, env, msg)
	printDecision(stdout, d)
	return exitOK
}

func readMessage(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
	}
	return os.ReadFile(path)
}

// evaluateFlags are the flags of evaluate: those of serve and the
// simulated SMTP client.
type evaluateFlags struct {
	commonFlags
	ip, helo, mailFrom, auth, mta string
	rcpts                         stringList
}

func (f *evaluateFlags) register(fs *flag.FlagSet) {
	f.commonFlags.register(fs)
	fs.StringVar(&f.ip, "ip", "", "SMTP client `address` (required)")
	fs.StringVar(&f.helo, "helo", "", "HELO/EHLO `name` (required)")
	fs.StringVar(&f.mailFrom, "mail-from", "", "MAIL FROM `address` without angle brackets; \"\" or \"<>\" for the null sender")
	fs.Var(&f.rcpts, "rcpt", "RCPT TO `address`, repeatable")
	fs.StringVar(&f.auth, "auth", "", "SASL login name, as if the client had authenticated")
	fs.StringVar(&f.mta, "mta-host", "", "the MTA's host name (milter macro j)")
}

// printDecision writes the header changes, the disposition and the trace.
func printDecision(w io.Writer, d *milter.Decision) {
	for _, h := range d.Delete {
		fmt.Fprintf(w, "delete: %s #%d\n", h.Name, h.Index)
	}
	if d.AuthResults != "" {
		if len(d.Insert) == 0 {
			fmt.Fprintln(w, "# not added: the message is not delivered")
		}
		fmt.Fprintf(w, "Authentication-Results:%s\n", strings.ReplaceAll(d.AuthResults, "\r\n", "\n"))
	}
	for _, h := range d.Add {
		fmt.Fprintf(w, "%s:%s\n", h.Name, h.Value)
	}
	fmt.Fprintf(w, "disposition: %s\n", d)
	if d.Reason != "" {
		fmt.Fprintf(w, "reason: %s\n", d.Reason)
	}
	fmt.Fprintln(w, "trace:")
	for _, l := range d.Trace {
		fmt.Fprintf(w, "  %s\n", l)
	}
}
