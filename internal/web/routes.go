package web

import "net/http"

// Handler returns the dashboard's handler: every route, behind the
// middleware (security headers, GET/HEAD only, authentication, recovery).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// "GET" patterns also match HEAD.
	mux.HandleFunc("GET /{$}", s.domainsPage)
	mux.HandleFunc("GET /senders", s.sendersPage)
	mux.HandleFunc("GET /failures", s.failuresPage)
	mux.HandleFunc("GET /inbound", s.inboundPage)
	mux.HandleFunc("GET /reports", s.reportsPage)
	mux.Handle("GET /static/", staticFiles())
	return s.middleware(mux)
}
