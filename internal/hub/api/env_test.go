package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/auth"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/hub/hubtest"
	"github.com/leadmaster/leadmaster/internal/hub/proxy"
	"github.com/leadmaster/leadmaster/internal/hub/webhook"
	"github.com/leadmaster/leadmaster/internal/store"
)

// env is a hub wired as central-hub wires it, with stand-in session managers for clientes 51
// and 52 (53 is configured but never started) and one user of each kind.
type env struct {
	t      testing.TB
	cfg    atomic.Pointer[config.Config]
	db     *store.DB
	srv    *Server
	ts     *httptest.Server
	auth   *auth.Service
	pool   *proxy.Pool
	events *events.Store
	hooks  *webhook.Service
	sm     map[string]*hubtest.SessionManager

	adminToken, member51, member52, key51, key52 string
}

const testPassword = "correct horse battery"

func newEnv(tb testing.TB, dsn string) *env {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	cfg, err := config.Parse("test.toml", []byte(`
[session_manager]
socket_dir = "`+filepath.Join(dir, "sock")+`"
[clientes.51]
name = "Acme"
[clientes.52]
name = "Beta"
[clientes.53]
name = "Never started"
`))
	if err != nil {
		tb.Fatal(err)
	}
	e := &env{t: tb, sm: map[string]*hubtest.SessionManager{}}
	e.cfg.Store(cfg)
	e.db, err = store.Open(ctx, dsn, "")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.db.Close() })
	if err := Migrate(ctx, e.db); err != nil {
		tb.Fatal(err)
	}
	e.auth = auth.New(e.db, auth.Options{Params: auth.Params{Memory: 64, Time: 1, Threads: 1}})
	e.pool = proxy.New(nil2log(), proxy.Options{DialTimeout: time.Second, Timeout: 2 * time.Second})
	e.pool.Configure(cfg, func(string) string { return "" })
	e.hooks = webhook.New(e.db, e.cfg.Load, nil)
	e.events = events.NewStore(e.db, e.hooks)
	people := contacts.New(e.db, func(ctx context.Context, id string) ([]contacts.WAContact, error) {
		var resp struct {
			Contacts []contacts.WAContact `json:"contacts"`
		}
		err := e.pool.Call(ctx, id, "GET", "/contacts", nil, &resp, 0)
		return resp.Contacts, err
	}, nil)
	e.srv = New(Deps{Config: e.cfg.Load, Auth: e.auth, Pool: e.pool, Contacts: people, Events: e.events, Webhooks: e.hooks,
		Health: func(ctx context.Context) error { return e.db.PingContext(ctx) }})
	e.srv.statusWait, e.srv.proxyTimeout, e.srv.slowTimeout = 500*time.Millisecond, time.Second, time.Second
	e.ts = httptest.NewServer(e.srv)
	tb.Cleanup(e.ts.Close)

	for _, id := range []string{"51", "52"} {
		e.sm[id] = hubtest.StartSessionManager(tb, cfg.SocketPath(id), id)
	}
	e.adminToken = e.user("root", hub.RoleAdmin, "")
	e.member51 = e.user("ana", hub.RoleMember, "51")
	e.member52 = e.user("beto", hub.RoleMember, "52")
	e.key51 = e.apiKey("51")
	e.key52 = e.apiKey("52")
	return e
}

func nil2log() *slog.Logger { return slog.New(slog.DiscardHandler) }

func (e *env) user(name string, role hub.Role, cliente string) string {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.auth.CreateUser(ctx, auth.NewUser{Username: name, Password: testPassword, Role: role, ClienteID: cliente}); err != nil {
		e.t.Fatal(err)
	}
	s, err := e.auth.Login(ctx, name, testPassword, "test")
	if err != nil {
		e.t.Fatal(err)
	}
	return s.Token
}

func (e *env) apiKey(cliente string) string {
	e.t.Helper()
	_, secret, err := e.auth.CreateAPIKey(context.Background(), cliente, "test", "test")
	if err != nil {
		e.t.Fatal(err)
	}
	return secret
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// errorBody is the one error shape, as a client reads it.
type errorBody struct {
	Error struct{ Code, Message string }
}

// errorCode returns the code of a JSON error answer ("" when it is not one).
func (r response) errorCode() string {
	var b errorBody
	json.Unmarshal(r.body, &b)
	return b.Error.Code
}

func (r response) errorMessage() string {
	var b errorBody
	json.Unmarshal(r.body, &b)
	return b.Error.Message
}

func (r response) decode(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		tb.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request with token (none when "") and a body (a string is sent as is, anything
// else as JSON).
func (e *env) do(method, path, token string, body any, hdr ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = strings.NewReader(string(j))
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}
