package web

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/auth"
)

type usersData struct {
	Users    []auth.User
	Clientes []clienteRef
	// New is the create form as submitted (shown again when it failed).
	New struct{ Username, Role, Cliente string }
}

func (s *Server) clienteRefs() []clienteRef {
	cfg := s.Config()
	var out []clienteRef
	for _, id := range cfg.ClienteIDs() {
		out = append(out, clienteRef{ID: id, Name: cfg.Clientes[id].Name})
	}
	return out
}

func (s *Server) renderUsers(w http.ResponseWriter, r *http.Request, status int, edit func(*view, *usersData)) {
	users, err := s.Auth.ListUsers(r.Context(), "")
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	v := s.newView(w, r, "users.title", "users")
	d := usersData{Users: users, Clientes: s.clienteRefs()}
	d.New.Role = string(hub.RoleMember)
	if edit != nil {
		edit(v, &d)
	}
	v.D = d
	s.render(w, r, status, "users", v)
}

func (s *Server) handleUsersList(w http.ResponseWriter, r *http.Request) {
	s.renderUsers(w, r, http.StatusOK, nil)
}

func (s *Server) handleUserCreate(w http.ResponseWriter, r *http.Request) {
	username := strings.TrimSpace(r.PostFormValue("username"))
	role := hub.Role(r.PostFormValue("role"))
	cliente := r.PostFormValue("cliente")
	if role == hub.RoleAdmin {
		cliente = ""
	}
	var err error
	if _, ok := s.Config().Clientes[cliente]; role == hub.RoleMember && !ok {
		err = hub.Errorf(hub.CodeInvalid, "choose the cliente of a member")
	} else {
		var u auth.User
		u, err = s.Auth.CreateUser(r.Context(), auth.NewUser{Username: username, Password: r.PostFormValue("password"), Role: role, ClienteID: cliente})
		if err == nil {
			s.log.Info("web user created", "username", u.Username, "role", u.Role, "cliente_id", u.ClienteID, "by", hub.PrincipalFrom(r.Context()).Username)
		}
	}
	if err != nil {
		he := asError(err)
		if httpStatus(he) >= 500 {
			s.fail(w, r, page, err)
			return
		}
		s.renderUsers(w, r, httpStatus(he), func(v *view, d *usersData) {
			v.Error = errorText(v.Lang, he)
			d.New.Username, d.New.Role, d.New.Cliente = username, string(role), cliente
		})
		return
	}
	seeOther(w, r, "/users", "user_created")
}

func userID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("uid"), 10, 64)
	if err != nil {
		return 0, hub.Errorf(hub.CodeNotFound, "no user %q", r.PathValue("uid"))
	}
	return id, nil
}

func (s *Server) handleUserPassword(w http.ResponseWriter, r *http.Request) {
	id, err := userID(r)
	if err == nil {
		err = s.Auth.SetPassword(r.Context(), id, r.PostFormValue("password"))
	}
	if err != nil {
		he := asError(err)
		if he.Code != hub.CodeInvalid {
			s.fail(w, r, page, err)
			return
		}
		s.renderUsers(w, r, httpStatus(he), func(v *view, d *usersData) { v.Error = errorText(v.Lang, he) })
		return
	}
	seeOther(w, r, "/users", "password_set")
}

func (s *Server) handleUserDelete(w http.ResponseWriter, r *http.Request) {
	id, err := userID(r)
	if err == nil && id == hub.PrincipalFrom(r.Context()).UserID {
		err = hub.Errorf(hub.CodeConflict, "you cannot delete yourself")
	}
	if err == nil {
		err = s.Auth.DeleteUser(r.Context(), id)
	}
	if err != nil {
		he := asError(err)
		if he.Code != hub.CodeConflict {
			s.fail(w, r, page, err)
			return
		}
		s.renderUsers(w, r, httpStatus(he), func(v *view, d *usersData) { v.Error = errorText(v.Lang, he) })
		return
	}
	seeOther(w, r, "/users", "user_deleted")
}

// apiKeyGroup is one cliente's keys.
type apiKeyGroup struct {
	Cliente clienteRef
	Keys    []auth.APIKey
}

type apiKeysData struct {
	Groups   []apiKeyGroup
	Clientes []clienteRef
	// Created is a key just made; Secret is shown this once.
	Created *auth.APIKey
	Secret  string
	New     struct{ Cliente, Name string }
}

func (s *Server) renderAPIKeys(w http.ResponseWriter, r *http.Request, status int, edit func(*view, *apiKeysData)) {
	v := s.newView(w, r, "apikeys.title", "apikeys")
	d := apiKeysData{Clientes: s.clienteRefs()}
	for _, c := range d.Clientes {
		keys, err := s.Auth.ListAPIKeys(r.Context(), c.ID)
		if err != nil {
			s.fail(w, r, page, err)
			return
		}
		d.Groups = append(d.Groups, apiKeyGroup{Cliente: c, Keys: keys})
	}
	if edit != nil {
		edit(v, &d)
	}
	v.D = d
	s.render(w, r, status, "apikeys", v)
}

func (s *Server) handleAPIKeysList(w http.ResponseWriter, r *http.Request) {
	s.renderAPIKeys(w, r, http.StatusOK, nil)
}

// handleAPIKeyCreate makes a key and shows its secret on the page it answers with (never in
// a redirect's URL, never again).
func (s *Server) handleAPIKeyCreate(w http.ResponseWriter, r *http.Request) {
	cliente, name := r.PostFormValue("cliente"), strings.TrimSpace(r.PostFormValue("name"))
	var err error
	if _, ok := s.Config().Clientes[cliente]; !ok {
		err = hub.Errorf(hub.CodeInvalid, "choose a cliente")
	}
	var k auth.APIKey
	var secret string
	if err == nil {
		p := hub.PrincipalFrom(r.Context())
		k, secret, err = s.Auth.CreateAPIKey(r.Context(), cliente, name, p.Username)
		if err == nil {
			s.log.Info("web api key created", "cliente_id", cliente, "key_id", k.ID, "by", p.Username)
		}
	}
	if err != nil {
		he := asError(err)
		if httpStatus(he) >= 500 {
			s.fail(w, r, page, err)
			return
		}
		s.renderAPIKeys(w, r, httpStatus(he), func(v *view, d *apiKeysData) {
			v.Error = errorText(v.Lang, he)
			d.New.Cliente, d.New.Name = cliente, name
		})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.renderAPIKeys(w, r, http.StatusCreated, func(v *view, d *apiKeysData) {
		d.Created, d.Secret = &k, secret
		v.Flash = translate(v.Lang, "done.apikey_created")
	})
}

func (s *Server) handleAPIKeyRevoke(w http.ResponseWriter, r *http.Request) {
	kid, err := strconv.ParseInt(r.PathValue("kid"), 10, 64)
	if err != nil {
		s.fail(w, r, page, hub.Errorf(hub.CodeNotFound, "no API key %q", r.PathValue("kid")))
		return
	}
	if err := s.Auth.RevokeAPIKey(r.Context(), r.PathValue("id"), kid); err != nil {
		s.fail(w, r, page, err)
		return
	}
	s.log.Info("web api key revoked", "cliente_id", r.PathValue("id"), "key_id", kid, "by", hub.PrincipalFrom(r.Context()).Username)
	seeOther(w, r, "/apikeys", "apikey_revoked")
}
