package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub"
)

// Cookies the UI sets.
const (
	// CookieName holds the session token; it is the cookie the JSON API accepts too
	// (api.CookieName), so the page's scripts may call the API.
	CookieName = "leadmaster_session"
	// csrfCookie holds a random secret before login, for the login and language forms.
	csrfCookie = "leadmaster_csrf"
	// LangCookie holds the visitor's language choice (es or en).
	LangCookie = "leadmaster_lang"
	// csrfField and csrfHeader carry the token in a form and in a script's request.
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
)

// secure reports whether cookies must be Secure: over TLS, behind a TLS-terminating proxy
// that says so, or when hub.secure_cookies is set.
func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") || s.Config().Hub.SecureCookies
}

// principal returns the logged-in user of r's session cookie, or nil. API keys are not
// accepted in the cookie: the UI is for people.
func (s *Server) principal(r *http.Request) *hub.Principal {
	c, err := r.Cookie(CookieName)
	if err != nil || !strings.HasPrefix(c.Value, "lms_") {
		return nil
	}
	p, err := s.Auth.Authenticate(r.Context(), c.Value)
	if err != nil || p.APIKeyID != 0 {
		return nil
	}
	cp := *p
	cp.Cookie = true
	return &cp
}

func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: token, Path: "/", Expires: expires,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secure(r)})
}

func (s *Server) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secure(r)})
}

// csrfSecret returns the secret r's CSRF token derives from: the session token when logged
// in, else the pre-login cookie ("" when neither is there).
func csrfSecret(r *http.Request) string {
	if c, err := r.Cookie(CookieName); err == nil && strings.HasPrefix(c.Value, "lms_") {
		if hub.PrincipalFrom(r.Context()) != nil {
			return c.Value
		}
	}
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	return ""
}

// csrfFor derives the token from a secret. The token is as unguessable as the secret, and
// tells nothing about it (a page's HTML may leak where the cookie cannot).
func csrfFor(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("leadmaster web csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfToken returns the token to put in r's forms, setting the pre-login cookie when there is
// no secret yet.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if sec := csrfSecret(r); sec != "" {
		return csrfFor(sec)
	}
	b := make([]byte, 32)
	rand.Read(b)
	sec := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: sec, Path: "/", MaxAge: 12 * 3600,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
	return csrfFor(sec)
}

// checkCSRF refuses with 403 a POST whose token (form field csrf or header X-CSRF-Token) is
// missing or does not match the session's.
func (s *Server) checkCSRF(k kind, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get(csrfHeader)
		if got == "" {
			got = formValue(r, csrfField)
		}
		sec := csrfSecret(r)
		if sec == "" || got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(csrfFor(sec))) != 1 {
			s.log.Warn("web form refused: missing or wrong CSRF token", "path", r.URL.Path, "addr", clientAddr(r))
			s.fail(w, r, k, &hub.Error{Code: hub.CodeForbidden, Message: "csrf"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// formValue reads a field of a urlencoded or multipart form (up to the body limit).
func formValue(r *http.Request, name string) string {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if r.MultipartForm == nil {
			if err := r.ParseMultipartForm(1 << 20); err != nil {
				return ""
			}
		}
	}
	return r.FormValue(name)
}

// clientAddr is the caller's address for login throttling ("local" over a unix socket).
func clientAddr(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = strings.Trim(host, "[]")
	if host == "" || host == "@" {
		return "local"
	}
	return host
}
