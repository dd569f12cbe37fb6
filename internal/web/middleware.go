package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/netip"
	"runtime/debug"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// CSP is the Content-Security-Policy of every response: nothing but our
// own stylesheet and images; no script at all (the pages need none, so
// even a payload that slipped past escaping could not run), no frames, no
// form posting elsewhere.
const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; " +
	"frame-ancestors 'none'; form-action 'self'"

// middleware wraps h with the checks every request goes through, outermost
// first: recovery, security headers, GET/HEAD only, authentication.
func (s *Server) middleware(h http.Handler) http.Handler {
	return s.recoverPanics(securityHeaders(readOnly(s.authenticate(h))))
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", CSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// readOnly refuses every method but GET and HEAD: the dashboard changes
// nothing.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "read-only: GET and HEAD only", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authenticate lets a request in when no authentication is configured,
// when a trusted proxy names the user, or when its Basic credentials match.
// A proxy header from an address not trusted is refused outright rather
// than ignored, so that a misrouted proxy shows up at once.
func (s *Server) authenticate(h http.Handler) http.Handler {
	if s.opts.PasswordHash == "" && s.opts.ProxyHeader == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.ProxyHeader != "" && r.Header.Get(s.opts.ProxyHeader) != "" {
			if s.trustedProxy(r.RemoteAddr) {
				h.ServeHTTP(w, r)
				return
			}
			s.log.Warn("web: proxy header from an address not trusted", "remote", r.RemoteAddr, "header", s.opts.ProxyHeader)
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		if s.opts.PasswordHash != "" && s.basicOK(r) {
			h.ServeHTTP(w, r)
			return
		}
		if s.opts.PasswordHash != "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="dmarc-milter", charset="UTF-8"`)
		}
		http.Error(w, "authentication required", http.StatusUnauthorized)
	})
}

func (s *Server) basicOK(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	want := sha256.Sum256([]byte(s.opts.User))
	got := sha256.Sum256([]byte(user))
	userOK := subtle.ConstantTimeCompare(want[:], got[:]) == 1
	// The hash is compared even for a wrong user, so the time taken does
	// not tell which user names exist.
	passOK := bcrypt.CompareHashAndPassword([]byte(s.opts.PasswordHash), []byte(pass)) == nil
	return userOK && passOK
}

func (s *Server) trustedProxy(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// recoverPanics turns a panic in a page into a 500 and a log record.
func (s *Server) recoverPanics(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("web: page panicked", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
			s.log.Debug("web: request", "method", r.Method, "path", r.URL.Path, "took", time.Since(start))
		}()
		h.ServeHTTP(w, r)
	})
}
