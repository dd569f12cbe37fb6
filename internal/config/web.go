package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Web configures the read-only web dashboard (docs/dashboard.md): the
// domains, their senders and failures from the reports we received, what
// the milter decided, and the reports we sent.
type Web struct {
	// Listen is "host:port" for the dashboard's HTTP listener in serve
	// (dmarc-milter web --listen overrides it). Empty disables it in
	// serve. A listener beyond loopback without password_hash or
	// proxy_header is logged as a warning: the pages show who sends mail
	// as our domains.
	// Default: ""
	Listen string `toml:"listen"`

	// User is the user name asked for with password_hash (HTTP Basic
	// authentication).
	// Default: "admin"
	User string `toml:"user"`

	// PasswordHash turns on HTTP Basic authentication: the bcrypt hash of
	// the password ("$2a$..." or "$2b$...", for example from
	// `htpasswd -nbB admin PASSWORD`). Empty: no password.
	// Default: ""
	PasswordHash string `toml:"password_hash"`

	// ProxyHeader names the header in which a reverse proxy that
	// authenticated the user passes the user name (e.g. "X-Remote-User").
	// A request with the header set is let in only when it comes from one
	// of trusted_proxies. Empty: no proxy authentication.
	// Default: ""
	ProxyHeader string `toml:"proxy_header"`

	// TrustedProxies are the addresses or prefixes (CIDR) of the reverse
	// proxies whose proxy_header is believed.
	// Default: []
	TrustedProxies []string `toml:"trusted_proxies"`
}

func defaultWeb() Web {
	return Web{User: "admin", TrustedProxies: []string{}}
}

// Proxies parses TrustedProxies (validated at load).
func (w *Web) Proxies() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range w.TrustedProxies {
		if p, err := parseProxy(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Authenticated tells whether the dashboard asks who the user is.
func (w *Web) Authenticated() bool { return w.PasswordHash != "" || w.ProxyHeader != "" }

func parseProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func (w *Web) validate() error {
	if w.Listen != "" {
		if _, _, err := net.SplitHostPort(w.Listen); err != nil {
			return fmt.Errorf("web.listen: %q: want host:port", w.Listen)
		}
	}
	if w.PasswordHash != "" {
		if _, err := bcrypt.Cost([]byte(w.PasswordHash)); err != nil {
			return fmt.Errorf("web.password_hash: not a bcrypt hash: %v", err)
		}
		if w.User == "" || strings.Contains(w.User, ":") {
			return fmt.Errorf("web.user: %q: must be set and hold no colon", w.User)
		}
	}
	for _, s := range w.TrustedProxies {
		if _, err := parseProxy(s); err != nil {
			return fmt.Errorf("web.trusted_proxies: %q: not an address or prefix", s)
		}
	}
	switch {
	case w.ProxyHeader != "" && len(w.TrustedProxies) == 0:
		return fmt.Errorf("web.proxy_header: set, but web.trusted_proxies is empty: no proxy would be believed")
	case len(w.TrustedProxies) > 0 && w.ProxyHeader == "":
		return fmt.Errorf("web.trusted_proxies: set, but web.proxy_header is empty")
	}
	return nil
}
