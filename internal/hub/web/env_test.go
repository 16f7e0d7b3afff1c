package web

import (
	"bytes"
	"context"
	"html"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/api"
	"github.com/leadmaster/leadmaster/internal/hub/auth"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/hub/hubtest"
	"github.com/leadmaster/leadmaster/internal/hub/proxy"
	"github.com/leadmaster/leadmaster/internal/hub/sender"
	"github.com/leadmaster/leadmaster/internal/store"
)

// env is the UI over real services on SQLite, with stand-in session managers for clientes 51
// and 52 (53 is configured but never started).
type env struct {
	t        testing.TB
	cfg      atomic.Pointer[config.Config]
	db       *store.DB
	ui       *Server
	ts       *httptest.Server
	auth     *auth.Service
	contacts *contacts.Service
	events   *events.Store
	sender   *sender.Service
	sm       map[string]*hubtest.SessionManager
}

const testPassword = "correct horse battery"

func newEnv(tb testing.TB, extraTOML string) *env {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	cfg, err := config.Parse("test.toml", []byte(`
[session_manager]
socket_dir = "`+filepath.Join(dir, "sock")+`"
[sender]
per_minute = 0
min_gap = "0s"
max_gap = "0s"
daily_cap = 0
quiet_hours = ""
[clientes.51]
name = "Inmobiliaria Sur"
[clientes.52]
name = "Beta"
[clientes.53]
name = "Never started"
`+extraTOML))
	if err != nil {
		tb.Fatal(err)
	}
	e := &env{t: tb, sm: map[string]*hubtest.SessionManager{}}
	e.cfg.Store(cfg)
	e.db, err = store.Open(ctx, filepath.Join(dir, "hub.db"), "")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.db.Close() })
	if err := api.Migrate(ctx, e.db); err != nil {
		tb.Fatal(err)
	}
	e.auth = auth.New(e.db, auth.Options{Params: auth.Params{Memory: 64, Time: 1, Threads: 1}})
	pool := proxy.New(slog.New(slog.DiscardHandler), proxy.Options{DialTimeout: time.Second, Timeout: 2 * time.Second})
	pool.Configure(cfg, func(string) string { return "" })
	e.events = events.NewStore(e.db)
	e.contacts = contacts.New(e.db, nil, nil)
	e.sender = sender.New(sender.Options{DB: e.db, Config: e.cfg.Load, Gateway: sender.PoolGateway(pool)})
	e.ui = New(Deps{Config: e.cfg.Load, Auth: e.auth, Sessions: pool, Contacts: e.contacts, Events: e.events, Sender: e.sender})
	e.ui.timeout = time.Second
	e.ts = httptest.NewServer(e.ui)
	tb.Cleanup(e.ts.Close)
	for _, id := range []string{"51", "52"} {
		e.sm[id] = hubtest.StartSessionManager(tb, cfg.SocketPath(id), id)
	}
	e.user("root", hub.RoleAdmin, "")
	e.user("ana", hub.RoleMember, "51")
	e.user("beto", hub.RoleMember, "52")
	return e
}

func (e *env) user(name string, role hub.Role, cliente string) {
	e.t.Helper()
	if _, err := e.auth.CreateUser(context.Background(), auth.NewUser{Username: name, Password: testPassword, Role: role, ClienteID: cliente}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) lead(cliente, phone, name string, tags ...string) contacts.Lead {
	e.t.Helper()
	l, err := e.contacts.Create(context.Background(), cliente, contacts.Input{Phone: &phone, Name: &name, Tags: &tags})
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	e   *env
	c   *http.Client
	jar http.CookieJar
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, jar: jar, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type answer struct {
	status int
	header http.Header
	body   string
}

// has reports whether the page holds s, in its HTML or in its text (html/template writes
// "+" as "&#43;").
func (p answer) has(s string) bool {
	return strings.Contains(p.body, s) || strings.Contains(html.UnescapeString(p.body), s)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the first CSRF token of the page.
func (p answer) csrf(tb testing.TB) string {
	tb.Helper()
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		tb.Fatalf("no CSRF token in page:\n%s", p.body)
	}
	return m[1]
}

func (b *browser) do(req *http.Request) answer {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func (b *browser) get(path string, hdr ...string) answer {
	b.e.t.Helper()
	req, _ := http.NewRequest("GET", b.e.ts.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

// post sends a urlencoded form; fields alternate names and values.
func (b *browser) post(path string, fields ...string) answer {
	b.e.t.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(fields); i += 2 {
		v.Add(fields[i], fields[i+1])
	}
	req, _ := http.NewRequest("POST", b.e.ts.URL+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// upload posts a multipart form with one file field.
func (b *browser) upload(path, field, filename, content string, fields ...string) answer {
	b.e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		mw.WriteField(fields[i], fields[i+1])
	}
	fw, _ := mw.CreateFormFile(field, filename)
	fw.Write([]byte(content))
	mw.Close()
	req, _ := http.NewRequest("POST", b.e.ts.URL+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.do(req)
}

// login logs in through the form and returns the CSRF token of the logged-in session.
func (b *browser) login(user string) string {
	b.e.t.Helper()
	lp := b.get("/login")
	p := b.post("/login", "csrf", lp.csrf(b.e.t), "username", user, "password", testPassword, "next", "/clientes")
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/clientes" {
		b.e.t.Fatalf("login %s: %d %s\n%s", user, p.status, p.header.Get("Location"), p.body)
	}
	return b.get("/clientes").csrf(b.e.t)
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.e.ts.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}
