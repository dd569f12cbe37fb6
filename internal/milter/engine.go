package milter

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// Resolver is the DNS the checks need: *cache.Resolver in the daemon (and a
// *net.Resolver would do). It is the union of what pkg/verify and pkg/policy
// ask for.
type Resolver interface {
	verify.Resolver
}

// Engine holds everything a message needs that does not change from one
// message to the next: the configuration and the checkers. It is immutable;
// a reload builds a new one.
type Engine struct {
	cfg       *config.Config
	res       Resolver
	cache     *cache.Resolver // res when it is pkg/cache: checks whose answers are cached run inline
	spf       *verify.SPFChecker
	spfCfg    verify.SPFConfig
	trusted   config.Networks
	allowNets config.Networks
	forwarder config.Networks
	allowFrom map[string]bool
	hostname  string
	metrics   Metrics
	local     policy.LocalPolicy // the local policy of every message
	tracing   bool               // Transactions record their steps (log_level debug)
	// hook, set only by tests, is called at named points of a message
	// (to inject panics).
	hook func(point string)
}

// at calls the test hook.
func (e *Engine) at(point string) {
	if e.hook != nil {
		e.hook(point)
	}
}

// NewEngine builds an engine over res. m may be nil (no metrics).
func NewEngine(cfg *config.Config, res Resolver, m Metrics) (*Engine, error) {
	if cfg == nil || res == nil {
		return nil, fmt.Errorf("milter: NewEngine needs a configuration and a resolver")
	}
	if m == nil {
		m = NopMetrics{}
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	e := &Engine{
		cfg:       cfg,
		res:       res,
		spfCfg:    verify.SPFConfig{LookupLimit: uint(cfg.SPF.LookupLimit), VoidLookupLimit: uint(cfg.SPF.VoidLookupLimit)},
		trusted:   cfg.TrustedNetworks,
		allowNets: cfg.Allowlist.Networks,
		forwarder: cfg.DMARC.TrustedForwarders,
		allowFrom: map[string]bool{},
		hostname:  host,
		metrics:   m,
	}
	e.spf = verify.NewSPFChecker(res, e.spfCfg)
	e.cache, _ = res.(*cache.Resolver)
	for _, d := range cfg.Allowlist.FromDomains {
		e.allowFrom[d] = true
	}
	e.local = e.localPolicy()
	// The steps of a message are only shown by the debug log line (and the
	// evaluate subcommand, which asks for them itself): formatting them for
	// every message would cost more than some of the checks.
	e.tracing = cfg.LogLevel == "debug"
	return e, nil
}

// Config returns the engine's configuration (read only).
func (e *Engine) Config() *config.Config { return e.cfg }

// AuthservID is the authserv-id for a message whose MTA sent macro j = mta
// ("" when it did not): the configured id, else the MTA's name, else our
// host name.
func (e *Engine) AuthservID(mta string) string { return e.authservID(mta) }

func (e *Engine) authservID(mta string) string {
	switch {
	case e.cfg.AuthservID != "":
		return e.cfg.AuthservID
	case mta != "" && isHostname(mta):
		return mta
	}
	return e.hostname
}

// discoveryMethod maps the configuration to pkg/policy.
func (e *Engine) discoveryMethod() policy.Method {
	if e.cfg.DMARC.Discovery == config.DiscoveryPSL {
		return policy.MethodPSL
	}
	return policy.MethodTreeWalk
}

// Envelope is what the MTA told us about a message before its content.
type Envelope struct {
	ClientIP   netip.Addr // the SMTP client
	ClientName string     // its verified PTR name, or "unknown"/"[ip]"
	Helo       string     // HELO/EHLO argument
	MailFrom   string     // reverse-path without angle brackets; "" for <>
	AuthUser   string     // SASL login name ({auth_authen}); "" if none
	MTAHost    string     // the MTA's host name (macro j)
	Rcpts      []string   // envelope recipients (evaluate only; not used)
	// HeloSPF, when not nil, is the connection's memory of its HELO SPF
	// result, reused by the connection's next messages (see HeloSPFMemo).
	HeloSPF *HeloSPFMemo
}

// Begin starts a message: bypass checks, then SPF in the background. ctx is
// the connection's context; the message's context derives from it.
func (e *Engine) Begin(ctx context.Context, env Envelope) *Transaction {
	e.at("mail")
	ctx, cancel := context.WithCancel(ctx)
	t := &Transaction{
		e:       e,
		env:     env,
		ctx:     ctx,
		cancel:  cancel,
		tracing: e.tracing,
	}
	t.bypass = e.bypassAtMail(env)
	if t.bypass == BypassTrusted {
		return t
	}
	if t.bypass == BypassAuthenticated {
		return t
	}
	t.startSPF()
	return t
}

// bypassAtMail decides the bypasses known at MAIL FROM.
func (e *Engine) bypassAtMail(env Envelope) Bypass {
	switch {
	case e.trusted.Contains(env.ClientIP):
		return BypassTrusted
	case env.AuthUser != "":
		return BypassAuthenticated
	}
	return BypassNone
}

// isHostname is a loose check for a usable host name.
func isHostname(s string) bool {
	if s == "" || len(s) > 253 || strings.HasPrefix(s, "[") {
		return false
	}
	for _, r := range s {
		if !(r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}
