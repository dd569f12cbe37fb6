package milter

import (
	"fmt"
	"os"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/milterproto"
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
	trusted   config.Networks
	hostname  string
	metrics   Metrics
	local     policy.LocalPolicy // the local policy of every message
	discovery policy.Options     // how policy discovery works
	tracing   bool               // Transactions record their steps (log_level debug)
	recorder  Recorder           // nil: reporting is off
	capture   Capturer           // report mail to the intake mailboxes; nil: none
	heloSPF   heloSPFCache       // HELO SPF results of recent connections
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
		spf:       verify.NewSPFChecker(res, verify.SPFConfig{LookupLimit: uint(cfg.SPF.LookupLimit), VoidLookupLimit: uint(cfg.SPF.VoidLookupLimit)}),
		trusted:   cfg.TrustedNetworks,
		hostname:  host,
		metrics:   m,
		local:     cfg.LocalPolicy().WithDefaults(),
		discovery: policy.Options{Method: cfg.DMARC.Discovery},
		// Formatting the steps of every message would cost more than some
		// of the checks: only the debug log shows them.
		tracing: cfg.LogLevel == "debug",
	}
	e.cache, _ = res.(*cache.Resolver)
	return e, nil
}

// Config returns the engine's configuration (read only).
func (e *Engine) Config() *config.Config { return e.cfg }

// AuthservID is the authserv-id for a message whose MTA sent macro j = mta
// ("" when it did not): the configured id, else the MTA's name, else our
// host name.
func (e *Engine) AuthservID(mta string) string {
	switch {
	case e.cfg.AuthservID != "":
		return e.cfg.AuthservID
	case mta != "" && isHostname(mta):
		return mta
	}
	return e.hostname
}

// errorResponse is the on_error answer given at once.
func (e *Engine) errorResponse() milterproto.Response {
	if e.cfg.OnError == config.ErrorAccept {
		return milterproto.Accept
	}
	return milterproto.ReplyCode(escapeReply(e.cfg.Actions.ErrorReply))
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
