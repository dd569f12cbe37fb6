// Package web is the read-only dashboard over the report store: our domains
// as other receivers report them (volume, DMARC pass rate, published policy,
// stored health checks), the senders and failures of one domain, what our
// milter decided (inbound), and the reports we sent.
//
// Pages are rendered on the server with html/template from templates
// embedded in the binary; charts are SVG drawn by the same templates from
// numbers computed here, so a page needs no JavaScript and loads nothing
// from another host. Every page takes a date range (from, to: UTC days,
// inclusive), sorts its tables by links (sort, dir) and exports what it
// shows (format=csv or format=json).
//
// Everything read from a received report is attacker-controlled text: it
// reaches the page only through html/template's contextual escaping (HTML,
// attributes, URLs, SVG text) and the CSV export neutralises cells that a
// spreadsheet would run as a formula. A strict Content-Security-Policy
// (middleware.go) keeps any script from running even if escaping failed.
// The handler is read-only: GET and HEAD only.
package web

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure a Server. The zero value serves without
// authentication.
type Options struct {
	// User and PasswordHash (bcrypt) turn on HTTP Basic authentication.
	User         string
	PasswordHash string
	// ProxyHeader names the header a trusted reverse proxy sets to the
	// authenticated user; it is believed only from TrustedProxies.
	ProxyHeader    string
	TrustedProxies []netip.Prefix
	// Now is the clock of the default date range; default time.Now.
	Now func() time.Time
	// Logger receives one record per failed page; nil discards.
	Logger *slog.Logger
}

// Server serves the dashboard over one store.
type Server struct {
	st    *store.Store
	opts  Options
	log   *slog.Logger
	pages map[string]*template.Template
}

// New returns a Server reading st.
func New(st *store.Store, opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	return &Server{st: st, opts: opts, log: opts.Logger, pages: pages}, nil
}

// pageNames are the page templates; each is parsed with layout.html.
var pageNames = []string{"domains", "senders", "failures", "inbound", "reports"}

func parseTemplates() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/chart.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

func staticFiles() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.StripPrefix("/static/", http.FileServerFS(sub))
}

// Serve serves the dashboard on ln until ctx ends, then shuts it down.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
