package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub"
)

// serveUnix serves h on a unix socket at path until the test ends; stop closes it.
func serveUnix(t *testing.T, path string, h http.Handler) (stop func()) {
	t.Helper()
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return func() { srv.Close() }
}

func newPool(t *testing.T, dir string) *Pool {
	cfg, err := config.Parse("t.toml", []byte("[session_manager]\nsocket_dir = \""+dir+"\"\n[clientes.51]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := New(slog.New(slog.DiscardHandler), Options{DialTimeout: 500 * time.Millisecond, Timeout: time.Second})
	p.Configure(cfg, func(string) string { return "" })
	return p
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"method": r.Method, "path": r.URL.RequestURI(), "body": string(b), "auth": r.Header.Get("Authorization")})
}

// TestRestartedSessionManager: kept-alive connections to a session manager that restarted are
// dead; the next requests (GET and POST, through Call and Forward) must not fail because of it.
func TestRestartedSessionManager(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "51.sock")
	stop := serveUnix(t, sock, http.HandlerFunc(echo))
	p := newPool(t, dir)
	ctx := context.Background()
	var out struct{ Method, Path, Body string }
	if err := p.Call(ctx, "51", "GET", "/status", nil, &out, 0); err != nil || out.Path != "/status" {
		t.Fatalf("Call = %+v, %v", out, err)
	}
	stop()
	serveUnix(t, sock, http.HandlerFunc(echo)) // the same socket, a new process
	if err := p.Call(ctx, "51", "POST", "/messages", map[string]string{"text": "hola"}, &out, 0); err != nil || out.Body != `{"text":"hola"}` {
		t.Fatalf("POST after restart = %+v, %v", out, err)
	}
	// Forward, with a caller's body and credentials.
	req := httptest.NewRequest("POST", "/session-manager/51/pair-code?x=1", strings.NewReader("abc"))
	req.Header.Set("Authorization", "Bearer caller-secret")
	rec := httptest.NewRecorder()
	p.Forward(rec, req, "51", "/pair-code", 0, func(w http.ResponseWriter, _ *http.Request, err error) { t.Fatalf("Forward: %v", err) })
	if got := rec.Body.String(); !strings.Contains(got, `"path":"/pair-code?x=1"`) || !strings.Contains(got, `"body":"abc"`) || !strings.Contains(got, `"auth":""`) {
		t.Errorf("Forward answer = %s; want the path and query, the body, and no caller Authorization", got)
	}
}

func TestFailures(t *testing.T) {
	dir := t.TempDir()
	p := newPool(t, dir)
	ctx := context.Background()
	check := func(name, state, code string) {
		t.Helper()
		start := time.Now()
		err := p.Call(ctx, "51", "GET", "/status", nil, nil, 0)
		var u *Unavailable
		if !errors.As(err, &u) || u.State != state || hub.ErrorCode(err) != code || !strings.Contains(err.Error(), "cliente 51") {
			t.Errorf("%s: err = %v, want state %s code %s naming the cliente", name, err, state, code)
		}
		if took := time.Since(start); took > 1500*time.Millisecond {
			t.Errorf("%s: took %s", name, took)
		}
	}
	check("no socket", StateDown, hub.CodeUnavailable)
	sock := filepath.Join(dir, "51.sock")
	l, _ := net.Listen("unix", sock)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	check("refused", StateFailed, hub.CodeUnavailable)
	os.Remove(sock)
	serveUnix(t, sock, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	}))
	check("hung", StateUnresponsive, hub.CodeTimeout)
	if err := p.Call(ctx, "99", "GET", "/status", nil, nil, 0); hub.ErrorCode(err) != hub.CodeNotFound {
		t.Errorf("unknown cliente: %v, want not_found", err)
	}
	// A caller that gives up is not an outage.
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if err := p.Call(cctx, "51", "GET", "/status", nil, nil, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
}

// TestForwardHeaders: what crosses the proxy in each direction.
func TestForwardHeaders(t *testing.T) {
	dir := t.TempDir()
	serveUnix(t, filepath.Join(dir, "51.sock"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen := []string{}
		for _, k := range []string{"Authorization", "Cookie", "Accept", "X-Hop", "Keep-Alive"} {
			if r.Header.Get(k) != "" {
				seen = append(seen, k)
			}
		}
		w.Header().Set("Set-Cookie", "sm=1")
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Retry-After", "2")
		w.Header().Set("X-Seen", strings.Join(seen, ","))
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "png?")
	}))
	p := newPool(t, dir)
	req := httptest.NewRequest("GET", "/session-manager/51/qr", nil)
	req.Header.Set("Authorization", "Bearer caller-secret")
	req.Header.Set("Cookie", "leadmaster_session=abc")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("Keep-Alive", "timeout=5")
	rec := httptest.NewRecorder()
	p.Forward(rec, req, "51", "/qr", 0, func(w http.ResponseWriter, _ *http.Request, err error) { t.Fatalf("Forward: %v", err) })
	if got := rec.Result().Header.Get("X-Seen"); got != "Accept" {
		t.Errorf("the session manager saw %q; want only Accept (no credentials, cookies or hop-by-hop headers)", got)
	}
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "2" || rec.Header().Get("Content-Type") != "image/png" || rec.Body.String() != "png?" {
		t.Errorf("answer %d %v %q; want the session manager's status, headers and body", rec.Code, rec.Header(), rec.Body.String())
	}
	if rec.Header().Get("Set-Cookie") != "" {
		t.Error("a session manager's Set-Cookie reached the caller")
	}
}

// TestForwardDeadline: a local forward is bounded by its timeout and by its caller, and a
// pooled connection whose last deadline has passed serves the next request.
func TestForwardDeadline(t *testing.T) {
	dir := t.TempDir()
	serveUnix(t, filepath.Join(dir, "51.sock"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			select {
			case <-r.Context().Done():
			case <-time.After(time.Minute):
			}
			return
		}
		io.WriteString(w, "ok")
	}))
	p := newPool(t, dir)
	forward := func(ctx context.Context, path string, timeout time.Duration) (*httptest.ResponseRecorder, error) {
		req := httptest.NewRequest("GET", "/session-manager/51"+path, nil).WithContext(ctx)
		rec := httptest.NewRecorder()
		var ferr error
		p.Forward(rec, req, "51", path, timeout, func(w http.ResponseWriter, _ *http.Request, err error) { ferr = err })
		return rec, ferr
	}
	ctx := context.Background()
	if rec, err := forward(ctx, "/status", 50*time.Millisecond); err != nil || rec.Body.String() != "ok" {
		t.Fatalf("first forward: %q, %v", rec.Body.String(), err)
	}
	time.Sleep(100 * time.Millisecond) // the pooled connection's deadline passes
	if rec, err := forward(ctx, "/status", 50*time.Millisecond); err != nil || rec.Body.String() != "ok" {
		t.Fatalf("forward on a connection whose deadline passed: %q, %v", rec.Body.String(), err)
	}

	start := time.Now()
	_, err := forward(ctx, "/hang", 200*time.Millisecond)
	var u *Unavailable
	if !errors.As(err, &u) || u.State != StateUnresponsive || hub.ErrorCode(err) != hub.CodeTimeout {
		t.Errorf("hung session manager: %v, want state %s", err, StateUnresponsive)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("hung session manager answered after %s, want about the 200ms timeout", took)
	}

	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	if _, err := forward(cctx, "/hang", 30*time.Second); err != nil {
		t.Errorf("a caller that went away got an error answer: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("forward went on %s after its caller went away", took)
	}
	if rec, err := forward(ctx, "/status", time.Second); err != nil || rec.Body.String() != "ok" {
		t.Fatalf("forward after a timeout and a cancel: %q, %v", rec.Body.String(), err)
	}
}
