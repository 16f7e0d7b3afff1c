package api

import (
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync/atomic"

	"github.com/leadmaster/leadmaster/internal/hub"
)

// CookieName is the web UI's session cookie.
const CookieName = "leadmaster_session"

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				s.fail(w, r, hub.Errorf(hub.CodeInternal, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// statusWriter remembers the status code for the request counters.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer (flushes for proxied answers).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type stats struct {
	byClass [6]atomic.Int64 // index status/100
}

func (s *Server) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		c := sw.status / 100
		if c < 1 || c > 5 {
			c = 2
		}
		s.stats.byClass[c].Add(1)
	})
}

func limitBody(limit int64, next http.Handler) http.Handler {
	if limit == 0 {
		limit = defaultBodyLimit
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}

// credential returns the token or API key a request carries and whether it came in the cookie.
func credential(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok), false
		}
		return "", false
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return c.Value, true
	}
	return "", false
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, cookie := credential(r)
		if tok == "" {
			s.fail(w, r, hub.Errorf(hub.CodeUnauthorized, "authentication required: send Authorization: Bearer TOKEN (from POST /api/auth/login, or an API key)"))
			return
		}
		p, err := s.Auth.Authenticate(r.Context(), tok)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if cookie {
			if !sameOrigin(r) {
				s.fail(w, r, hub.Errorf(hub.CodeForbidden, "cross-site request refused"))
				return
			}
			c := *p
			c.Cookie = true
			p = &c
		}
		next.ServeHTTP(w, r.WithContext(hub.WithPrincipal(r.Context(), p)))
	})
}

// sameOrigin guards cookie-authenticated requests against cross-site forgery: a state-changing
// request must not come from another site (SameSite=Lax already keeps the cookie off most).
func sameOrigin(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		return err == nil && u.Host == r.Host
	}
	return true
}

func (s *Server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hub.PrincipalFrom(r.Context()).IsAdmin() {
			s.fail(w, r, hub.Errorf(hub.CodeForbidden, "only an admin may do this"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireCliente lets through an admin, or a member or API key of the cliente in the path. A
// caller without access gets 403 whether or not the cliente exists, so IDs cannot be probed.
func (s *Server) requireCliente(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		p := hub.PrincipalFrom(r.Context())
		if !p.CanAccess(id) {
			s.fail(w, r, hub.Errorf(hub.CodeForbidden, "you have no access to cliente %q", id))
			return
		}
		if _, ok := s.Config().Clientes[id]; !ok {
			s.fail(w, r, hub.Errorf(hub.CodeNotFound, "cliente %q is not configured", id))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	if ms := s.allowed(r); len(ms) > 0 {
		allow := strings.Join(ms, ", ")
		w.Header().Set("Allow", allow)
		s.fail(w, r, hub.Errorf(hub.CodeMethodNotAllowed, "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
		return
	}
	s.fail(w, r, hub.Errorf(hub.CodeNotFound, "no route %s %s", r.Method, r.URL.Path))
}

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		s.handleNotFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"service": "central-hub",
		"api":     "see /api/auth/login; docs/hub-api.md describes every route",
	})
}

// clientAddr is the caller's address for login throttling ("local" over a unix socket).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || host == "" {
		return "local"
	}
	return host
}
