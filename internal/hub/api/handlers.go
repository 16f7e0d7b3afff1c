package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/auth"
	"github.com/leadmaster/leadmaster/internal/hub/proxy"
)

func (s *Server) handleHealthGet(w http.ResponseWriter, r *http.Request) {
	if err := s.health(r.Context()); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "error": err.Error()})
		return
	}
	writeHealthy(w)
}

func writeHealthy(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = healthyLength
	w.Write(healthyBody)
}

// The healthy answer is the hub's most frequent; it is written from ready-made bytes.
var (
	healthyBody     = []byte("{\"status\":\"ok\"}\n")
	healthyLength   = []string{"16"}
	jsonContentType = []string{"application/json"}
)

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *Server) handleAuthLogin(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Username == "" || req.Password == "" {
		s.fail(w, r, hub.Errorf(hub.CodeBadRequest, "username and password are required"))
		return
	}
	sess, err := s.Auth.Login(r.Context(), req.Username, req.Password, clientAddr(r))
	if err != nil {
		if hub.ErrorCode(err) == hub.CodeUnauthorized || hub.ErrorCode(err) == hub.CodeTooManyRequests {
			s.log.Warn("login refused", "username", req.Username, "addr", clientAddr(r), "reason", err)
		}
		s.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: sess.Token, Path: "/", Expires: sess.ExpiresAt,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil || s.Config().Hub.SecureCookies,
	})
	s.log.Info("login", "username", sess.User.Username, "addr", clientAddr(r))
	writeJSON(w, http.StatusOK, sess)
}

func (s *Server) handleAuthLogout(w http.ResponseWriter, r *http.Request) {
	tok, _ := credential(r)
	if hub.PrincipalFrom(r.Context()).APIKeyID != 0 {
		s.fail(w, r, hub.Errorf(hub.CodeBadRequest, "an API key cannot log out; revoke it with DELETE /api/clientes/{id}/apikeys/{kid}"))
		return
	}
	if err := s.Auth.Logout(r.Context(), tok); err != nil {
		s.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.WriteHeader(http.StatusNoContent)
}

type meResponse struct {
	User     *auth.User `json:"user,omitempty"`
	APIKey   *apiKeyRef `json:"api_key,omitempty"`
	Clientes []string   `json:"clientes"`
}

type apiKeyRef struct {
	ID      int64  `json:"id"`
	Cliente string `json:"cliente"`
}

func (s *Server) handleAuthMe(w http.ResponseWriter, r *http.Request) {
	p := hub.PrincipalFrom(r.Context())
	resp := meResponse{Clientes: s.accessible(p)}
	if p.APIKeyID != 0 {
		resp.APIKey = &apiKeyRef{ID: p.APIKeyID, Cliente: p.ClienteID}
	} else {
		u, err := s.Auth.GetUser(r.Context(), p.UserID)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		resp.User = &u
	}
	writeJSON(w, http.StatusOK, resp)
}

// accessible lists the configured clientes p may see.
func (s *Server) accessible(p *hub.Principal) []string { return p.Accessible(s.Config().ClienteIDs()) }

func (s *Server) handleUsersList(w http.ResponseWriter, r *http.Request) {
	users, err := s.Auth.ListUsers(r.Context(), r.URL.Query().Get("cliente"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": users})
}

type userRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
	Cliente  string `json:"cliente"`
}

func (s *Server) handleUserCreate(w http.ResponseWriter, r *http.Request) {
	var req userRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Role == "" {
		req.Role = string(hub.RoleMember)
		if req.Cliente == "" {
			req.Role = string(hub.RoleAdmin)
		}
	}
	if req.Cliente != "" {
		if _, ok := s.Config().Clientes[req.Cliente]; !ok {
			s.fail(w, r, hub.Errorf(hub.CodeInvalid, "cliente %q is not configured", req.Cliente))
			return
		}
	}
	u, err := s.Auth.CreateUser(r.Context(), auth.NewUser{Username: req.Username, Password: req.Password, Role: hub.Role(req.Role), ClienteID: req.Cliente})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("user created", "username", u.Username, "role", u.Role, "cliente_id", u.ClienteID, "by", hub.PrincipalFrom(r.Context()).Username)
	writeJSON(w, http.StatusCreated, u)
}

func (s *Server) handleUserDelete(w http.ResponseWriter, r *http.Request) {
	id, err := pathInt(r, "uid", "user")
	if err == nil {
		if id == hub.PrincipalFrom(r.Context()).UserID {
			err = hub.Errorf(hub.CodeConflict, "you cannot delete yourself")
		} else {
			err = s.Auth.DeleteUser(r.Context(), id)
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleUserPasswordSet(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Password string `json:"password"`
	}
	id, err := pathInt(r, "uid", "user")
	if err == nil {
		err = decode(r, &req)
	}
	if err == nil {
		err = s.Auth.SetPassword(r.Context(), id, req.Password)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// clienteView is a cliente as the API shows it.
type clienteView struct {
	ID       string       `json:"id"`
	Name     string       `json:"name"`
	Port     int          `json:"port,omitempty"`
	Remote   bool         `json:"remote,omitempty"`
	TimeZone string       `json:"time_zone,omitempty"`
	State    string       `json:"state"`
	Session  proxy.Status `json:"session"`
	// LastKnown is the last state the event stream reported, when the session manager is unreachable.
	LastKnown *lastKnown `json:"last_known,omitempty"`
}

type lastKnown struct {
	State string    `json:"state"`
	Phone string    `json:"phone,omitempty"`
	Since time.Time `json:"since"`
}

func (s *Server) clienteViews(r *http.Request, ids []string) []clienteView {
	cfg := s.Config()
	sts := s.Pool.StatusAll(r.Context(), ids, s.statusWait)
	out := make([]clienteView, len(ids))
	for i, id := range ids {
		cl := cfg.Clientes[id]
		st := sts[i]
		st.Name = cl.Name
		out[i] = clienteView{ID: id, Name: cl.Name, Port: cl.Port, Remote: cl.Address != "", TimeZone: cl.TimeZone, State: st.State, Session: st}
		if st.Error != "" && s.Events != nil {
			if ls, err := s.Events.LastState(r.Context(), id); err == nil && ls.State != "" {
				out[i].LastKnown = &lastKnown{State: ls.State, Phone: ls.Phone, Since: ls.Time}
			}
		}
	}
	return out
}

func (s *Server) handleClientesList(w http.ResponseWriter, r *http.Request) {
	ids := s.accessible(hub.PrincipalFrom(r.Context()))
	writeJSON(w, http.StatusOK, map[string]any{"clientes": s.clienteViews(r, ids)})
}

func (s *Server) handleClienteGet(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.clienteViews(r, []string{r.PathValue("id")})[0])
}

func (s *Server) handleAPIKeysList(w http.ResponseWriter, r *http.Request) {
	keys, err := s.Auth.ListAPIKeys(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"api_keys": keys})
}

// noKeyByKey refuses key management to API keys: a leaked key must not mint more.
func noKeyByKey(p *hub.Principal) error {
	if p.APIKeyID != 0 {
		return hub.Errorf(hub.CodeForbidden, "API keys are managed by logged-in users, not by other API keys")
	}
	return nil
}

func (s *Server) handleAPIKeyCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	p := hub.PrincipalFrom(r.Context())
	err := noKeyByKey(p)
	if err == nil && r.ContentLength != 0 {
		err = decode(r, &req)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	k, secret, err := s.Auth.CreateAPIKey(r.Context(), r.PathValue("id"), req.Name, p.Username)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("api key created", "cliente_id", k.ClienteID, "key_id", k.ID, "by", p.Username)
	writeJSON(w, http.StatusCreated, struct {
		auth.APIKey
		Key string `json:"key"`
	}{k, secret})
}

func (s *Server) handleAPIKeyDelete(w http.ResponseWriter, r *http.Request) {
	err := noKeyByKey(hub.PrincipalFrom(r.Context()))
	var id int64
	if err == nil {
		id, err = pathInt(r, "kid", "API key")
	}
	if err == nil {
		err = s.Auth.RevokeAPIKey(r.Context(), r.PathValue("id"), id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Proxy timeouts: most session-manager calls answer fast; sending and contact lists may wait on
// WhatsApp; the /events long-poll gets its own bound from its wait parameter.
const (
	proxyTimeout     = 15 * time.Second
	proxySlowTimeout = 45 * time.Second
	maxEventsWait    = 60 * time.Second
)

func (s *Server) proxyTimeoutFor(r *http.Request, path string) time.Duration {
	switch strings.Trim(path, "/") {
	case "events":
		wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
		if err != nil || wait < 0 {
			wait = 0
		}
		return min(wait, maxEventsWait) + 10*time.Second
	case "messages", "contacts", "pair-code", "logout":
		return s.slowTimeout
	}
	return s.proxyTimeout
}

func (s *Server) handleSessionManagerProxy(w http.ResponseWriter, r *http.Request) {
	path := "/" + r.PathValue("path")
	s.Pool.Forward(w, r, r.PathValue("id"), path, s.proxyTimeoutFor(r, path), s.fail)
}

func (s *Server) handleSessionManagersStatus(w http.ResponseWriter, r *http.Request) {
	ids := s.accessible(hub.PrincipalFrom(r.Context()))
	sts := s.Pool.StatusAll(r.Context(), ids, s.statusWait)
	cfg := s.Config()
	for i := range sts {
		sts[i].Name = cfg.Clientes[sts[i].Cliente].Name
	}
	writeJSON(w, http.StatusOK, map[string]any{"clientes": sts})
}

func (s *Server) handleWhatsAppQRGet(w http.ResponseWriter, r *http.Request) {
	s.Pool.Forward(w, r, r.PathValue("id"), "/qr", s.proxyTimeout, s.fail)
}

// handleWhatsAppStatusGet answers 200 with the state even when the session manager is down
// (state down, failed or unresponsive, and error saying why): it is what the UI polls.
func (s *Server) handleWhatsAppStatusGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st := s.Pool.Status(r.Context(), id, s.statusWait)
	st.Name = s.Config().Clientes[id].Name
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleWhatsAppPairCodeCreate(w http.ResponseWriter, r *http.Request) {
	s.Pool.Forward(w, r, r.PathValue("id"), "/pair-code", s.slowTimeout, s.fail)
}

func (s *Server) handleWhatsAppLogout(w http.ResponseWriter, r *http.Request) {
	s.Pool.Forward(w, r, r.PathValue("id"), "/logout", s.slowTimeout, s.fail)
}

func errMethod(method, allow string) error {
	return hub.Errorf(hub.CodeMethodNotAllowed, "method %s not allowed (allowed: %s)", method, allow)
}
