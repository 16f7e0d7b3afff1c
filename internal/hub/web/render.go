package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub"
)

// pageNames are the files under templates/ that are pages (layout.html is in each set).
var pageNames = []string{
	"login", "error", "clientes", "whatsapp", "leads", "lead", "conversations", "conversation",
	"campaigns", "campaign", "users", "apikeys",
}

// parsePages parses every page once per language, the translation function bound to it. A
// page's set is the layout and the page's own file.
func parsePages() (map[string]map[string]*template.Template, error) {
	out := map[string]map[string]*template.Template{}
	for _, lang := range languages {
		out[lang] = map[string]*template.Template{}
		for _, name := range pageNames {
			t, err := template.New(name).Funcs(funcs(lang)).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
			if err != nil {
				return nil, fmt.Errorf("parse template %s: %w", name, err)
			}
			out[lang][name] = t
		}
	}
	return out, nil
}

// view is what every page template gets.
type view struct {
	Lang   string
	Title  string
	CSRF   string
	AssetV string
	// Path is the request's path and query (where the language form comes back to).
	Path string
	User *hub.Principal
	// Nav is the active top-level section; Tab the active cliente tab.
	Nav, Tab string
	// Cliente is the cliente the page is about (its tabs are shown), or nil.
	Cliente *clienteRef
	// HasCampaigns reports whether the campaign pages exist (the sender is wired).
	HasCampaigns bool
	// Flash is a message about what the last action did; Error what went wrong.
	Flash, Error string
	// D is the page's own data.
	D any
}

type clienteRef struct {
	ID   string
	Name string
}

// newView starts the view of a page.
func (s *Server) newView(w http.ResponseWriter, r *http.Request, title, nav string) *view {
	v := &view{
		Lang: s.lang(r), CSRF: s.csrfToken(w, r), AssetV: s.assetV, Path: pathWithoutDone(r.URL),
		User: hub.PrincipalFrom(r.Context()), Nav: nav, HasCampaigns: s.Sender != nil,
	}
	v.Title = translate(v.Lang, title)
	if id := r.PathValue("id"); id != "" && strings.HasPrefix(r.URL.Path, "/clientes/") {
		v.Cliente = &clienteRef{ID: id, Name: s.Config().Clientes[id].Name}
		if v.Cliente.Name == "" {
			v.Cliente.Name = translate(v.Lang, "cliente.n", id)
		}
	}
	if done := r.URL.Query().Get("done"); done != "" && hasKey("done."+done) {
		v.Flash = translate(v.Lang, "done."+done)
	}
	return v
}

// pathWithoutDone is u's path and query without the flash message's "done" parameter (a
// form that comes back to the page should not show the last message again).
func pathWithoutDone(u *url.URL) string {
	q := u.Query()
	if !q.Has("done") {
		return u.RequestURI()
	}
	q.Del("done")
	c := *u
	c.RawQuery = q.Encode()
	return c.RequestURI()
}

// render writes page name with v at status.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, v *view) {
	s.renderTemplate(w, r, status, name, "layout", v)
}

// renderTemplate executes one named template of page name's set (a fragment, or the layout).
func (s *Server) renderTemplate(w http.ResponseWriter, r *http.Request, status int, name, tmpl string, v *view) {
	t := s.pages[v.Lang][name]
	if v.Cliente != nil {
		if loc := s.location(v.Cliente.ID); loc != time.Local {
			// The cliente's own time zone: a copy of the page whose "when" writes in it.
			c, err := t.Clone()
			if err == nil {
				lang := v.Lang
				t = c.Funcs(template.FuncMap{"when": func(x any) string { return formatTime(lang, loc, x) }})
			}
		}
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, tmpl, v); err != nil {
		s.log.Error("render page", "page", name, "template", tmpl, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// asError returns err as a *hub.Error: its own, or a generic one (the text of anything else
// is logged, never shown).
func asError(err error) *hub.Error {
	var he *hub.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &hub.Error{Code: hub.CodeTooLarge, Message: fmt.Sprintf("the upload is larger than %d bytes", mbe.Limit)}
	case errors.As(err, &he):
		return he
	}
	code := hub.ErrorCode(err)
	return &hub.Error{Code: code, Message: strings.ReplaceAll(code, "_", " ")}
}

func httpStatus(he *hub.Error) int { return hub.StatusOf(he.Code) }

// fail answers err: an error page for a page route, a JSON error for a fragment.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, k kind, err error) {
	he := asError(err)
	status := httpStatus(he)
	if status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout {
		s.log.Error("web request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if k == fragment {
		writeJSON(w, status, map[string]any{"error": map[string]string{"code": he.Code, "message": he.Message}})
		return
	}
	v := s.newView(w, r, "error.title", "")
	v.Title = translate(v.Lang, "error."+strconv.Itoa(status))
	if !hasKey("error." + strconv.Itoa(status)) {
		v.Title = translate(v.Lang, "error.title")
	}
	v.D = struct {
		Status  int
		Message string
	}{status, errorText(v.Lang, he)}
	if status == http.StatusForbidden || status == http.StatusNotFound {
		v.Cliente = nil // the tabs of a cliente one may not see are no help
	}
	s.render(w, r, status, "error", v)
}

// errorText is what a person reads about he: a sentence in their language for the errors a
// page can explain, the service's own (English) message otherwise.
func errorText(lang string, he *hub.Error) string {
	if he.Code == hub.CodeForbidden && he.Message == "csrf" {
		return translate(lang, "error.csrf")
	}
	if k := "error.code." + he.Code; hasKey(k) {
		if he.Code == hub.CodeInvalid || he.Code == hub.CodeConflict || he.Code == "invalid_phone" || he.Code == "not_on_whatsapp" {
			return translate(lang, k) + " " + translateMessage(lang, he.Message)
		}
		return translate(lang, k)
	}
	return translateMessage(lang, he.Message)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// seeOther redirects after a successful POST; done names the flash message shown there.
func seeOther(w http.ResponseWriter, r *http.Request, to, done string) {
	if done != "" {
		sep := "?"
		if strings.Contains(to, "?") {
			sep = "&"
		}
		to += sep + "done=" + done
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func assetVersion(fsys fs.FS) string {
	h := sha256.New()
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(fsys, p)
			h.Write([]byte(p))
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func (s *Server) handleStatic(w http.ResponseWriter, r *http.Request) {
	name := path.Clean(r.PathValue("file"))
	b, err := fs.ReadFile(s.static, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	if r.URL.Query().Get("v") == s.assetV {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Write(b)
}
