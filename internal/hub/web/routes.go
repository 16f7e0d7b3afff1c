package web

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/leadmaster/leadmaster/internal/hub"
)

// access says who may open a route.
type access int

const (
	asset   access = iota // anyone, and no session lookup (static files)
	public                // anyone
	authed                // a logged-in user
	admin                 // an admin user
	cliente               // an admin, or a member of the cliente in {id}
)

// kind says how a route answers: pages are HTML for people (a missing login redirects to the
// login page); fragments are what the page's JavaScript fetches (JSON or an HTML piece; a
// missing login is a 401).
type kind int

const (
	page kind = iota
	fragment
)

type route struct {
	method  string
	pattern string
	access  access
	kind    kind
	// limit is the largest request body accepted (default 64 KiB).
	limit   int64
	handler http.HandlerFunc
}

const (
	defaultBodyLimit = 64 << 10
	importBodyLimit  = 16 << 20
)

// routes lists every route of the UI. The tenant-isolation test walks the cliente ones.
func (s *Server) routes() []route {
	rs := []route{
		{"GET", "/{$}", public, page, 0, s.handleRoot},
		{"GET", "/static/{file...}", asset, fragment, 0, s.handleStatic},
		{"GET", "/login", public, page, 0, s.handleLoginGet},
		{"POST", "/login", public, page, 0, s.handleLoginPost},
		{"POST", "/logout", authed, page, 0, s.handleLogout},
		{"POST", "/lang", public, page, 0, s.handleLangSet},

		{"GET", "/clientes", authed, page, 0, s.handleClientesList},
		{"GET", "/clientes/state", authed, fragment, 0, s.handleClientesState},
		{"GET", "/clientes/{id}", cliente, page, 0, s.handleClienteGet},
		{"GET", "/clientes/{id}/whatsapp", cliente, page, 0, s.handleWhatsAppGet},
		{"GET", "/clientes/{id}/whatsapp/state", cliente, fragment, 0, s.handleWhatsAppState},
		{"POST", "/clientes/{id}/whatsapp/pair-code", cliente, page, 0, s.handleWhatsAppPairCode},
		{"POST", "/clientes/{id}/whatsapp/logout", cliente, page, 0, s.handleWhatsAppLogout},

		{"GET", "/clientes/{id}/leads", cliente, page, 0, s.handleLeadsList},
		{"POST", "/clientes/{id}/leads", cliente, page, 0, s.handleLeadCreate},
		{"POST", "/clientes/{id}/leads/import", cliente, page, importBodyLimit, s.handleLeadsImport},
		{"GET", "/clientes/{id}/leads/{lid}", cliente, page, 0, s.handleLeadGet},
		{"POST", "/clientes/{id}/leads/{lid}", cliente, page, 0, s.handleLeadUpdate},
		{"POST", "/clientes/{id}/leads/{lid}/opt-out", cliente, page, 0, s.handleLeadOptOut},
		{"POST", "/clientes/{id}/leads/{lid}/delete", cliente, page, 0, s.handleLeadDelete},

		{"GET", "/clientes/{id}/conversations", cliente, page, 0, s.handleConversationsList},
		{"GET", "/clientes/{id}/conversations/{lid}", cliente, page, 0, s.handleConversationGet},
		{"GET", "/clientes/{id}/conversations/{lid}/messages", cliente, fragment, 0, s.handleConversationMessages},

		{"GET", "/users", admin, page, 0, s.handleUsersList},
		{"POST", "/users", admin, page, 0, s.handleUserCreate},
		{"POST", "/users/{uid}/password", admin, page, 0, s.handleUserPassword},
		{"POST", "/users/{uid}/delete", admin, page, 0, s.handleUserDelete},
		{"GET", "/apikeys", admin, page, 0, s.handleAPIKeysList},
		{"POST", "/apikeys", admin, page, 0, s.handleAPIKeyCreate},
		{"POST", "/apikeys/{id}/{kid}/revoke", admin, page, 0, s.handleAPIKeyRevoke},
	}
	return append(rs, s.campaignRoutes()...)
}

func (s *Server) buildMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		h := http.Handler(rt.handler)
		if rt.method == http.MethodPost {
			h = s.checkCSRF(rt.kind, h)
		}
		switch rt.access {
		case cliente:
			h = s.requireCliente(rt.kind, h)
		case admin:
			h = s.requireAdmin(rt.kind, h)
		}
		switch rt.access {
		case asset:
		case public:
			h = s.softAuthenticate(h)
		default:
			h = s.authenticate(rt.kind, h)
		}
		h = limitBody(rt.limit, h)
		mux.Handle(rt.method+" "+rt.pattern, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, page, hub.Errorf(hub.CodeNotFound, "no page %s", r.URL.Path))
	})
	return mux
}

func limitBody(limit int64, next http.Handler) http.Handler {
	if limit == 0 {
		limit = defaultBodyLimit
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// authenticate finds the logged-in user from the session cookie. Without one a page
// redirects to the login page (coming back afterwards) and a fragment answers 401.
func (s *Server) authenticate(k kind, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := s.principal(r)
		if p == nil {
			if k == page && r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.fail(w, r, k, hub.Errorf(hub.CodeUnauthorized, "log in first"))
			return
		}
		next.ServeHTTP(w, r.WithContext(hub.WithPrincipal(r.Context(), p)))
	})
}

// softAuthenticate notes the logged-in user, if any, on a public route (the language form and
// the login page derive their CSRF token from the session when there is one).
func (s *Server) softAuthenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := s.principal(r); p != nil {
			r = r.WithContext(hub.WithPrincipal(r.Context(), p))
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) requireAdmin(k kind, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hub.PrincipalFrom(r.Context()).IsAdmin() {
			s.fail(w, r, k, hub.Errorf(hub.CodeForbidden, "only an admin may open this page"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireCliente lets through an admin, or a member of the cliente in the path. As in the API,
// a member gets 403 whether or not the cliente exists, so IDs cannot be probed.
func (s *Server) requireCliente(k kind, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !hub.PrincipalFrom(r.Context()).CanAccess(id) {
			s.fail(w, r, k, hub.Errorf(hub.CodeForbidden, "you have no access to cliente %q", id))
			return
		}
		if _, ok := s.Config().Clientes[id]; !ok {
			s.fail(w, r, k, hub.Errorf(hub.CodeNotFound, "cliente %q is not configured", id))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// accessible lists the configured clientes p may see.
func (s *Server) accessible(p *hub.Principal) []string { return p.Accessible(s.Config().ClienteIDs()) }

// localPath returns next when it is a path on this site, else fallback (no open redirects).
func localPath(next, fallback string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n") {
		return fallback
	}
	return next
}
