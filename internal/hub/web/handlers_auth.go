package web

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub"
)

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	if hub.PrincipalFrom(r.Context()) == nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/clientes", http.StatusSeeOther)
}

type loginData struct {
	Username string
	Next     string
}

func (s *Server) handleLoginGet(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"), "/clientes")
	if hub.PrincipalFrom(r.Context()) != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	v := s.newView(w, r, "login.title", "login")
	v.D = loginData{Next: next}
	s.render(w, r, http.StatusOK, "login", v)
}

func (s *Server) handleLoginPost(w http.ResponseWriter, r *http.Request) {
	username := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	next := localPath(r.PostFormValue("next"), "/clientes")
	fail := func(status int, msg string) {
		// The form is shown again with a fresh pre-login token.
		r = r.WithContext(hub.WithPrincipal(r.Context(), nil))
		v := s.newView(w, r, "login.title", "login")
		v.Error = msg
		v.D = loginData{Username: username, Next: next}
		s.render(w, r, status, "login", v)
	}
	lang := s.lang(r)
	if username == "" || password == "" {
		fail(http.StatusBadRequest, translate(lang, "login.missing"))
		return
	}
	sess, err := s.Auth.Login(r.Context(), username, password, clientAddr(r))
	if err != nil {
		he := asError(err)
		switch he.Code {
		case hub.CodeUnauthorized:
			s.log.Warn("web login refused", "username", username, "addr", clientAddr(r))
			fail(http.StatusUnauthorized, translate(lang, "login.wrong"))
		case hub.CodeTooManyRequests:
			s.log.Warn("web login throttled", "username", username, "addr", clientAddr(r))
			w.Header().Set("Retry-After", formatSeconds(he.RetryAfter))
			fail(http.StatusTooManyRequests, translate(lang, "login.throttled", minutesUp(he.RetryAfter)))
		default:
			s.fail(w, r, page, err)
		}
		return
	}
	s.setSessionCookie(w, r, sess.Token, sess.ExpiresAt)
	s.log.Info("web login", "username", sess.User.Username, "addr", clientAddr(r))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func formatSeconds(d time.Duration) string {
	return strconv.Itoa(int(d.Seconds() + 0.999))
}

// minutesUp is d in whole minutes, rounded up (at least 1).
func minutesUp(d time.Duration) int {
	return max(1, int((d+time.Minute-1)/time.Minute))
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(CookieName); err == nil {
		if err := s.Auth.Logout(r.Context(), c.Value); err != nil {
			s.fail(w, r, page, err)
			return
		}
	}
	s.clearSessionCookie(w, r)
	http.Redirect(w, r, "/login?done=logged_out", http.StatusSeeOther)
}

// handleLangSet stores the visitor's language in a cookie (a per-browser choice, kept for a
// year) and goes back to the page the form was on.
func (s *Server) handleLangSet(w http.ResponseWriter, r *http.Request) {
	l := r.PostFormValue("lang")
	if !validLang(l) {
		s.fail(w, r, page, hub.Errorf(hub.CodeBadRequest, "language must be es or en"))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: LangCookie, Value: l, Path: "/", MaxAge: 365 * 24 * 3600,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secure(r)})
	http.Redirect(w, r, localPath(r.PostFormValue("next"), "/"), http.StatusSeeOther)
}
