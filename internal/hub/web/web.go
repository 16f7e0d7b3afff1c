// Package web is central-hub's web UI: server-rendered pages from embedded html/template
// templates, with a little vanilla JavaScript (embedded too) that polls JSON for what changes
// by itself: a cliente's WhatsApp state and QR code, campaign progress, new messages. The UI
// works with the binary alone (no CDN, no build step) and without JavaScript, minus the live
// updates.
//
// The UI logs in with the hub's auth service and keeps the session token in the same
// HttpOnly cookie the JSON API accepts. Every form carries a CSRF token derived from that
// session (or, before login, from a random cookie); a POST without the right token gets 403.
// Pages are in Spanish unless hub.language or the visitor's language cookie says English.
// docs/web-ui.md describes the pages and these choices.
package web

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub/auth"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/hub/proxy"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Sessions is the subset of the session-manager pool (*proxy.Pool) the UI uses.
type Sessions interface {
	Status(ctx context.Context, id string, timeout time.Duration) proxy.Status
	StatusAll(ctx context.Context, ids []string, timeout time.Duration) []proxy.Status
	Call(ctx context.Context, id, method, pathQuery string, in, out any, timeout time.Duration) error
}

var _ Sessions = (*proxy.Pool)(nil)

// Deps are what the UI is built from.
type Deps struct {
	Log *slog.Logger
	// Config returns the configuration in force (it changes on reload).
	Config   func() *config.Config
	Auth     *auth.Service
	Sessions Sessions
	Contacts *contacts.Service
	Events   *events.Store
	// Sender runs campaigns and knows queue sizes; nil hides the campaign pages.
	Sender Sender
}

// Server is the web UI, an http.Handler meant to be mounted at "/".
type Server struct {
	Deps
	log     *slog.Logger
	mux     *http.ServeMux
	pages   map[string]map[string]*template.Template // language -> page name -> template
	static  fs.FS
	assetV  string // a hash of the static files, appended to their URLs to bust caches
	timeout time.Duration
}

// New builds the UI. It panics if an embedded template does not parse, which a test catches.
func New(d Deps) *Server {
	s := &Server{Deps: d, log: d.Log, timeout: 3 * time.Second}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.static, _ = fs.Sub(staticFS, "static")
	s.assetV = assetVersion(s.static)
	var err error
	if s.pages, err = parsePages(); err != nil {
		panic(err)
	}
	s.mux = s.buildMux()
	return s
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "+
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	s.mux.ServeHTTP(w, r)
}
