package api

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/leadmaster/leadmaster/internal/hub/proxy"
	"github.com/leadmaster/leadmaster/internal/store/storetest"
)

// forEachDB runs f on SQLite and, when available, PostgreSQL.
func forEachDB(t *testing.T, f func(t *testing.T, dsn string)) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) { f(t, dsn) })
	}
}

// concrete fills a route pattern's wildcards: {id} with cliente, the rest with plausible values.
func concrete(pattern, cliente string) string {
	r := strings.NewReplacer("{id}", cliente, "{lid}", "1", "{kid}", "1", "{uid}", "1", "{eid}", "evt_1", "{path...}", "status")
	return r.Replace(pattern)
}

// TestTenantIsolation walks every cliente-scoped route as a member and as an API key of
// another cliente, and without credentials: none may get through.
func TestTenantIsolation(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		n := 0
		for _, rt := range e.srv.routes() {
			if rt.access != cliente {
				continue
			}
			n++
			method := rt.method
			if method == "" {
				method = "GET"
			}
			path := concrete(rt.pattern, "51")
			t.Run(method+" "+rt.pattern, func(t *testing.T) {
				for _, tt := range []struct {
					name, token string
					status      int
				}{
					{"member of 52", e.member52, http.StatusForbidden},
					{"API key of 52", e.key52, http.StatusForbidden},
					{"no credentials", "", http.StatusUnauthorized},
					{"garbage token", "lms_nonsense", http.StatusUnauthorized},
				} {
					r := e.do(method, path, tt.token, "{}")
					if r.status != tt.status {
						t.Errorf("%s: %s %s: Status = %d, want %d (%s)", tt.name, method, path, r.status, tt.status, r.body)
					}
				}
				// The owner gets past the check (whatever the route then answers).
				if r := e.do(method, path, e.member51, "{}"); r.status == http.StatusForbidden || r.status == http.StatusUnauthorized {
					t.Errorf("member of 51: %s %s: Status = %d, want access (%s)", method, path, r.status, r.body)
				}
			})
		}
		if n < 20 {
			t.Errorf("walked %d cliente routes; the route table seems to have lost some", n)
		}
		// A cliente that does not exist answers 403 to a non-admin too, so IDs cannot be probed.
		if r := e.do("GET", "/api/clientes/99", e.member52, nil); r.status != http.StatusForbidden {
			t.Errorf("member: GET /api/clientes/99: Status = %d, want 403", r.status)
		}
		if r := e.do("GET", "/api/clientes/99", e.adminToken, nil); r.status != http.StatusNotFound {
			t.Errorf("admin: GET /api/clientes/99: Status = %d, want 404", r.status)
		}
	})
}

// TestListsShowOnlyOwnClientes checks the routes that list clientes rather than take one.
func TestListsShowOnlyOwnClientes(t *testing.T) {
	e := newEnv(t, storetest.DSNs(t)["sqlite"])
	for _, path := range []string{"/api/clientes", "/session-manager/status", "/api/auth/me"} {
		var got struct {
			Clientes any `json:"clientes"`
		}
		r := e.do("GET", path, e.member52, nil)
		if r.status != 200 {
			t.Fatalf("GET %s: Status = %d (%s)", path, r.status, r.body)
		}
		r.decode(t, &got)
		if strings.Contains(string(r.body), `"51"`) || !strings.Contains(string(r.body), `"52"`) {
			t.Errorf("GET %s as member of 52 = %s, want only cliente 52", path, r.body)
		}
	}
	for _, path := range []string{"/api/users", "/api/users/1"} {
		method := "GET"
		if strings.HasSuffix(path, "1") {
			method = "DELETE"
		}
		for _, tok := range []string{e.member51, e.key51} {
			if r := e.do(method, path, tok, nil); r.status != http.StatusForbidden {
				t.Errorf("%s %s as non-admin: Status = %d, want 403", method, path, r.status)
			}
		}
	}
}

func TestAuth(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		// Login answers the contract shape and sets the UI cookie.
		r := e.do("POST", "/api/auth/login", "", map[string]string{"username": "ana", "password": testPassword})
		if r.status != 200 {
			t.Fatalf("login: Status = %d (%s)", r.status, r.body)
		}
		var sess struct {
			Token     string    `json:"token"`
			ExpiresAt time.Time `json:"expires_at"`
			User      struct {
				Username, Role, Cliente string
			} `json:"user"`
		}
		r.decode(t, &sess)
		if sess.Token == "" || sess.ExpiresAt.Before(time.Now().Add(time.Hour)) || sess.User.Username != "ana" || sess.User.Cliente != "51" || sess.User.Role != "member" {
			t.Errorf("login answer = %s", r.body)
		}
		if c := r.header.Get("Set-Cookie"); !strings.Contains(c, CookieName+"=") || !strings.Contains(c, "HttpOnly") {
			t.Errorf("login Set-Cookie = %q, want an HttpOnly %s cookie", c, CookieName)
		}
		if r := e.do("GET", "/api/auth/me", sess.Token, nil); r.status != 200 || !strings.Contains(string(r.body), `"username":"ana"`) {
			t.Errorf("me: Status = %d, body %s", r.status, r.body)
		}

		for _, tt := range []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"wrong password", map[string]string{"username": "ana", "password": "nope nope nope"}, 401, "unauthorized"},
			{"unknown user", map[string]string{"username": "nobody", "password": "nope nope nope"}, 401, "unauthorized"},
			{"missing password", map[string]string{"username": "ana"}, 400, "bad_request"},
			{"unknown field", `{"username":"ana","password":"x","remember":true}`, 400, "bad_request"},
			{"not JSON", `username=ana`, 400, "bad_request"},
			{"empty body", ``, 400, "bad_request"},
			{"wrong type", `{"username":5,"password":"x"}`, 400, "bad_request"},
		} {
			r := e.do("POST", "/api/auth/login", "", tt.body)
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Errorf("%s: Status = %d code %q, want %d %q (%s)", tt.name, r.status, r.errorCode(), tt.status, tt.code, r.body)
			}
		}
		if r := e.do("POST", "/api/auth/login", "", `{"username":"ana","password":"x","remember":true}`); !strings.Contains(r.errorMessage(), `"remember"`) {
			t.Errorf("unknown field message = %q, want it to name the field", r.errorMessage())
		}

		// The cookie alone authenticates GETs; a cross-site POST with it is refused.
		cookie := "Cookie"
		if r := e.do("GET", "/api/auth/me", "", nil, cookie, CookieName+"="+sess.Token); r.status != 200 {
			t.Errorf("me with cookie: Status = %d", r.status)
		}
		if r := e.do("POST", "/api/clientes/51/contacts", "", map[string]string{"phone": "+5491155550000"}, cookie, CookieName+"="+sess.Token, "Origin", "https://evil.example"); r.status != http.StatusForbidden {
			t.Errorf("cross-site POST with cookie: Status = %d, want 403", r.status)
		}

		// Logout revokes the token at once.
		if r := e.do("POST", "/api/auth/logout", sess.Token, nil); r.status != http.StatusNoContent {
			t.Errorf("logout: Status = %d (%s)", r.status, r.body)
		}
		if r := e.do("GET", "/api/auth/me", sess.Token, nil); r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("me after logout: Status = %d, WWW-Authenticate %q, want 401 with the header", r.status, r.header.Get("WWW-Authenticate"))
		}

		// API keys: created by a member, shown once, usable, revocable; they cannot mint keys.
		r = e.do("POST", "/api/clientes/51/apikeys", e.member51, map[string]string{"name": "crm"})
		var key struct {
			ID  int64  `json:"id"`
			Key string `json:"key"`
		}
		r.decode(t, &key)
		if r.status != 201 || !strings.HasPrefix(key.Key, "lmk_") {
			t.Fatalf("create key: Status = %d (%s)", r.status, r.body)
		}
		if r := e.do("GET", "/api/clientes/51/apikeys", e.member51, nil); strings.Contains(string(r.body), key.Key) {
			t.Errorf("key list shows the secret: %s", r.body)
		}
		if r := e.do("GET", "/api/clientes/51/contacts", key.Key, nil); r.status != 200 {
			t.Errorf("contacts with API key: Status = %d (%s)", r.status, r.body)
		}
		if r := e.do("POST", "/api/clientes/51/apikeys", key.Key, nil); r.status != 403 {
			t.Errorf("API key creating a key: Status = %d, want 403", r.status)
		}
		if r := e.do("DELETE", "/api/clientes/51/apikeys/"+itoa(key.ID), e.member51, nil); r.status != 204 {
			t.Errorf("revoke key: Status = %d (%s)", r.status, r.body)
		}
		if r := e.do("GET", "/api/clientes/51/contacts", key.Key, nil); r.status != 401 {
			t.Errorf("revoked key: Status = %d, want 401", r.status)
		}
	})
}

func TestLoginThrottled(t *testing.T) {
	e := newEnv(t, storetest.DSNs(t)["sqlite"])
	var last response
	for range 6 {
		last = e.do("POST", "/api/auth/login", "", map[string]string{"username": "ana", "password": "wrong password"})
	}
	if last.status != http.StatusTooManyRequests || last.header.Get("Retry-After") == "" {
		t.Fatalf("6th wrong login: Status = %d, Retry-After %q, want 429 with Retry-After", last.status, last.header.Get("Retry-After"))
	}
	// Even the right password waits: the account is being guessed at.
	if r := e.do("POST", "/api/auth/login", "", map[string]string{"username": "ana", "password": testPassword}); r.status != http.StatusTooManyRequests {
		t.Errorf("right password while throttled: Status = %d, want 429", r.status)
	}
	// Another user from another address is not affected.
	if r := e.do("POST", "/api/auth/login", "", map[string]string{"username": "beto", "password": testPassword}); r.status != 200 {
		t.Errorf("other user: Status = %d, want 200", r.status)
	}
}

func TestUsersAdmin(t *testing.T) {
	e := newEnv(t, storetest.DSNs(t)["sqlite"])
	r := e.do("POST", "/api/users", e.adminToken, map[string]string{"username": "carla", "password": "long enough pw", "cliente": "52"})
	if r.status != 201 {
		t.Fatalf("create user: Status = %d (%s)", r.status, r.body)
	}
	for _, tt := range []struct {
		name string
		body map[string]string
		code string
	}{
		{"duplicate", map[string]string{"username": "carla", "password": "long enough pw", "cliente": "52"}, "conflict"},
		{"short password", map[string]string{"username": "dora", "password": "short", "cliente": "52"}, "invalid"},
		{"unknown cliente", map[string]string{"username": "dora", "password": "long enough pw", "cliente": "77"}, "invalid"},
		{"bad username", map[string]string{"username": "no spaces please", "password": "long enough pw"}, "invalid"},
	} {
		if r := e.do("POST", "/api/users", e.adminToken, tt.body); r.errorCode() != tt.code {
			t.Errorf("%s: code = %q, want %q (%s)", tt.name, r.errorCode(), tt.code, r.body)
		}
	}
	if r := e.do("POST", "/api/auth/login", "", map[string]string{"username": "carla", "password": "long enough pw"}); r.status != 200 {
		t.Errorf("new user login: Status = %d", r.status)
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t, storetest.DSNs(t)["sqlite"])
	for _, tt := range []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"GET", "/api/nothing-here", nil, 404, "not_found"},
		{"DELETE", "/api/clientes", nil, 405, "method_not_allowed"},
		{"POST", "/api/clientes/51/contacts", `{"phone":"` + strings.Repeat("1", 70000) + `"}`, 413, "too_large"},
		{"POST", "/api/clientes/51/contacts", `{"phone":"+5491155550000"} {"x":1}`, 400, "bad_request"},
		{"GET", "/api/clientes/51/contacts?limit=100000", nil, 400, "bad_request"},
		{"GET", "/api/clientes/51/contacts/abc", nil, 404, "not_found"},
	} {
		r := e.do(tt.method, tt.path, e.adminToken, tt.body)
		if r.status != tt.status || r.errorCode() != tt.code {
			t.Errorf("%s %s: Status = %d code %q, want %d %q (%s)", tt.method, tt.path, r.status, r.errorCode(), tt.status, tt.code, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type = %q, want application/json", tt.method, tt.path, ct)
		}
	}
	if r := e.do("DELETE", "/api/clientes", e.adminToken, nil); r.header.Get("Allow") != "GET" {
		t.Errorf("405 Allow = %q, want GET", r.header.Get("Allow"))
	}
	if r := e.do("GET", "/health", "", nil); r.status != 200 || string(r.body) != "{\"status\":\"ok\"}\n" {
		t.Errorf("health = %d %s", r.status, r.body)
	}
}

func TestProxy(t *testing.T) {
	e := newEnv(t, storetest.DSNs(t)["sqlite"])
	e.sm["51"].SetState("connected", "+5491155550000")

	// A running session manager: answers pass through, the caller's credentials do not.
	r := e.do("GET", "/session-manager/51/status", e.member51, nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"state":"connected"`) {
		t.Errorf("proxied status = %d %s", r.status, r.body)
	}
	r = e.do("GET", "/api/whatsapp/52/qr", e.member52, nil)
	if r.status != 200 || r.header.Get("Content-Type") != "image/png" || !strings.HasPrefix(string(r.body), "\x89PNG") {
		t.Errorf("QR = %d %s %q", r.status, r.header.Get("Content-Type"), r.body)
	}
	if r := e.do("GET", "/api/whatsapp/51/qr", e.member51, nil); r.status != 409 || r.errorCode() != "already_linked" {
		t.Errorf("QR when linked = %d %s, want the session manager's 409", r.status, r.body)
	}
	if r := e.do("POST", "/api/whatsapp/52/pair-code", e.member52, map[string]string{"phone": "+5491155550001"}); r.status != 200 || !strings.Contains(string(r.body), "ABCD-EFGH") {
		t.Errorf("pair-code = %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/session-manager/51/events?after=0&wait=0s", e.member51, nil); r.status != 200 || !strings.Contains(string(r.body), `"seq":1`) {
		t.Errorf("proxied events = %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/whatsapp/51/logout", e.member51, nil); r.status != 200 {
		t.Errorf("logout = %d %s", r.status, r.body)
	}

	// Down, failed and hanging session managers answer at once with who and what.
	failedSock := e.cfg.Load().SocketPath("52")
	e.sm["52"].Close()
	os.MkdirAll(filepath.Dir(failedSock), 0o755)
	stale, err := (&netListenConfig{}).stale(failedSock)
	if err != nil {
		t.Fatal(err)
	}
	defer stale()

	for _, tt := range []struct {
		name, path, token string
		status            int
		code, state, must string
		within            time.Duration
	}{
		{"never started", "/session-manager/53/status", e.adminToken, 503, "unavailable", proxy.StateDown, "cliente 53 is not running", time.Second},
		{"unit failed", "/session-manager/52/status", e.member52, 503, "unavailable", proxy.StateFailed, "cliente 52 is not running", time.Second},
		{"stable route, failed", "/api/whatsapp/52/qr", e.member52, 503, "unavailable", proxy.StateFailed, "refused", time.Second},
	} {
		start := time.Now()
		r := e.do("GET", tt.path, tt.token, nil)
		if took := time.Since(start); took > tt.within {
			t.Errorf("%s: took %s, want under %s", tt.name, took, tt.within)
		}
		if r.status != tt.status || r.errorCode() != tt.code || !strings.Contains(r.errorMessage(), tt.must) {
			t.Errorf("%s: %d %s, want %d %s mentioning %q", tt.name, r.status, r.body, tt.status, tt.code, tt.must)
		}
	}
	var st proxy.Status
	r = e.do("GET", "/api/whatsapp/52/status", e.member52, nil)
	r.decode(t, &st)
	if r.status != 200 || st.State != proxy.StateFailed || st.Error == "" {
		t.Errorf("stable status of a failed unit = %d %s, want 200 with state failed and the reason", r.status, r.body)
	}

	// A hung session manager: the hub gives up on its own deadline, not the caller's.
	e.sm["51"].SetStatusDelay(time.Minute)
	start := time.Now()
	r = e.do("GET", "/session-manager/51/status", e.member51, nil)
	if took := time.Since(start); r.status != http.StatusGatewayTimeout || r.errorCode() != "timeout" || took > 5*time.Second {
		t.Errorf("hung session manager: %d %s after %s, want 504 timeout within the proxy deadline", r.status, r.body, took)
	}
	var all struct{ Clientes []proxy.Status }
	start = time.Now()
	e.do("GET", "/session-manager/status", e.adminToken, nil).decode(t, &all)
	var states []string
	for _, s := range all.Clientes {
		states = append(states, s.Cliente+":"+s.State)
	}
	if diff := cmp.Diff(states, []string{"51:unresponsive", "52:failed", "53:down"}); diff != "" {
		t.Errorf("/session-manager/status states (-got +want):\n%s", diff)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("/session-manager/status took %s with one hung session manager, want the short status deadline", took)
	}
}

func TestProxyRemoteToken(t *testing.T) {
	// A remote session manager gets the hub's token, never the caller's.
	var gotAuth string
	remote := newTokenServer(t, "s3cret", &gotAuth)
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("s3cret\n"), 0o600)
	e := newEnv(t, storetest.DSNs(t)["sqlite"])
	cfg := *e.cfg.Load()
	cfg.Clientes = map[string]configCliente{"51": {Name: "Remote", Address: remote.URL, TokenFile: tok}, "52": cfg.Clientes["52"]}
	e.cfg.Store(&cfg)
	e.pool.Configure(&cfg, func(string) string { return "" })
	r := e.do("GET", "/session-manager/51/status", e.member51, nil)
	if r.status != 200 || gotAuth != "Bearer s3cret" {
		t.Errorf("remote status = %d %s, upstream Authorization %q, want 200 and the hub's token", r.status, r.body, gotAuth)
	}
	os.WriteFile(tok, []byte("wrong\n"), 0o600)
	e.pool.Configure(&cfg, func(string) string { return "" })
	r = e.do("GET", "/session-manager/51/status", e.member51, nil)
	if r.status != 503 || !strings.Contains(r.errorMessage(), "rejected the hub's token") {
		t.Errorf("remote with a wrong token = %d %s, want 503 explaining the token", r.status, r.body)
	}
	_ = context.Background
}
