package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub/hubtest"
	"github.com/leadmaster/leadmaster/internal/hub/webhook"
)

// hubDir holds a config and state for one test.
type hubDir struct {
	dir, cfgPath, socketDir string
}

func newHubDir(t *testing.T, extra string) *hubDir {
	t.Helper()
	d := &hubDir{dir: t.TempDir()}
	d.socketDir = filepath.Join(d.dir, "sock")
	d.cfgPath = filepath.Join(d.dir, "leadmaster.toml")
	d.write(t, extra)
	return d
}

func (d *hubDir) write(t *testing.T, extra string) {
	t.Helper()
	body := "[hub]\nstate_dir = \"" + filepath.Join(d.dir, "state") + "\"\ncontact_sync_interval = \"0s\"\n" +
		"[session_manager]\nsocket_dir = \"" + d.socketDir + "\"\n" + extra
	if err := os.WriteFile(d.cfgPath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func env(string) string { return "" }

// cli runs central-hub with args and stdin, returning stdout, stderr and the exit status.
func cli(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, env, strings.NewReader(stdin), &out, &errb)
	code := exitCode(err, &errb)
	return out.String(), errb.String(), code
}

func TestConfigErrorsExit78(t *testing.T) {
	d := newHubDir(t, "[clientes.51]\nport = 70000\n")
	_, stderr, code := cli(t, "", "--config", d.cfgPath, "--check-config")
	if code != config.ExitConfig {
		t.Errorf("exit = %d, want %d", code, config.ExitConfig)
	}
	want := d.cfgPath + ":7: key clientes.51.port:"
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr = %q, want it to name %q", stderr, want)
	}
	// Serving with a bad file fails the same way, before binding anything.
	if _, _, code := cli(t, "", "--config", d.cfgPath, "--listen", "127.0.0.1:0"); code != config.ExitConfig {
		t.Errorf("serve exit = %d, want %d", code, config.ExitConfig)
	}
	d.write(t, "[clientes.51]\nname = \"Acme\"\n")
	if out, _, code := cli(t, "", "--config", d.cfgPath, "--check-config"); code != 0 || !strings.Contains(out, "OK (1 clientes)") {
		t.Errorf("good config: exit %d, %q", code, out)
	}
	if _, stderr, code := cli(t, "", "--config", d.cfgPath, "--listen", "nonsense"); code != 2 || !strings.Contains(stderr, "--listen") {
		t.Errorf("bad --listen: exit %d, %q; want 2 naming the flag", code, stderr)
	}
	if out, _, code := cli(t, "", "version"); code != 0 || !strings.HasPrefix(out, "central-hub ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestUserCommands(t *testing.T) {
	d := newHubDir(t, "[clientes.51]\nname = \"Acme\"\n")
	for _, tt := range []struct {
		name, stdin string
		args        []string
		code        int
		out         string
	}{
		{"admin", "s3cret-password\n", []string{"user", "add", "--username", "root", "--admin", "--password-stdin"}, 0, "created user root"},
		{"member", "another-password\n", []string{"user", "add", "--username", "ana", "--cliente", "51", "--password-stdin"}, 0, "member of cliente 51"},
		{"unknown cliente", "another-password\n", []string{"user", "add", "--username", "x", "--cliente", "99", "--password-stdin"}, 1, "not configured"},
		{"both roles", "pw\n", []string{"user", "add", "--username", "x", "--admin", "--cliente", "51", "--password-stdin"}, 2, "exactly one"},
		{"no stdin flag", "", []string{"user", "add", "--username", "x", "--admin"}, 2, "--password-stdin"},
		{"short password", "short\n", []string{"user", "add", "--username", "x", "--admin", "--password-stdin"}, 1, "at least 8"},
		{"duplicate", "s3cret-password\n", []string{"user", "add", "--username", "root", "--admin", "--password-stdin"}, 1, "already exists"},
		{"list", "", []string{"user", "list"}, 0, "ana       member  51"},
		{"unknown command", "", []string{"user", "frobnicate"}, 2, "unknown command"},
	} {
		out, stderr, code := cli(t, tt.stdin, append([]string{"--config", d.cfgPath}, tt.args...)...)
		if code != tt.code || !strings.Contains(out+stderr, tt.out) {
			t.Errorf("%s: exit %d, output %q %q; want %d containing %q", tt.name, code, out, stderr, tt.code, tt.out)
		}
	}
	out, stderr, code := cli(t, "", "apikey", "create", "--cliente", "51", "--config", d.cfgPath)
	if code != 0 || !strings.HasPrefix(out, "lmk_") || strings.Count(out, "\n") != 1 || !strings.Contains(stderr, "only this once") {
		t.Errorf("apikey create: exit %d, stdout %q, stderr %q; want the key alone on stdout", code, out, stderr)
	}
}

// runningHub is central-hub served in-process on a loopback listener.
type runningHub struct {
	url    string
	reload chan os.Signal
	stop   func() error
}

func startHub(t *testing.T, d *hubDir) *runningHub {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	h := &runningHub{url: "http://" + l.Addr().String(), reload: make(chan os.Signal, 1)}
	a := &app{getenv: env, stdin: strings.NewReader(""), stdout: io.Discard, stderr: &syncWriter{w: io.Discard},
		listeners: []net.Listener{l}, reload: h.reload, ready: func([]net.Addr) { close(ready) }}
	if testing.Verbose() {
		a.stderr = &syncWriter{w: os.Stderr}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, []string{"--config", d.cfgPath}) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("hub exited before serving: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("hub not ready in 10s")
	}
	var once sync.Once
	var stopErr error
	h.stop = func() error {
		once.Do(func() { cancel(); stopErr = <-done })
		return stopErr
	}
	t.Cleanup(func() { h.stop() })
	return h
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (h *runningHub) call(t *testing.T, method, path, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func (h *runningHub) login(t *testing.T, user, pw string) string {
	t.Helper()
	var s struct{ Token string }
	if code := h.call(t, "POST", "/api/auth/login", "", map[string]string{"username": user, "password": pw}, &s); code != 200 {
		t.Fatalf("login %s: %d", user, code)
	}
	return s.Token
}

// TestServeFollowsEventsAndReloads runs the whole hub: a user made by the CLI logs in, an
// incoming message reaches the conversation API and a signed webhook, and SIGHUP adds a cliente.
func TestServeFollowsEventsAndReloads(t *testing.T) {
	rcvd := make(chan webhook.Payload, 10)
	rcv := newReceiver(t, "webhook-secret-0123456789", rcvd)
	clientes := "[clientes.51]\nname = \"Acme\"\nwebhook_url = \"" + rcv + "\"\nwebhook_secret = \"webhook-secret-0123456789\"\n"
	d := newHubDir(t, clientes)
	if _, stderr, code := cli(t, "member-password\n", "--config", d.cfgPath, "user", "add", "--username", "ana", "--cliente", "51", "--password-stdin"); code != 0 {
		t.Fatal(stderr)
	}
	cli(t, "admin-password\n", "--config", d.cfgPath, "user", "add", "--username", "root", "--admin", "--password-stdin")
	sm := hubtest.StartSessionManager(t, filepath.Join(d.socketDir, "51.sock"), "51")
	h := startHub(t, d)
	tok := h.login(t, "ana", "member-password")

	sm.SetState("connected", "+5491100000000")
	sm.Message("IN1", "+5491155550001", "Lead Uno", "quiero info")
	var p webhook.Payload
	for p.Type != "message" {
		select {
		case p = <-rcvd:
		case <-time.After(10 * time.Second):
			t.Fatal("no message webhook within 10s")
		}
	}
	var conv struct {
		Leads []struct {
			ID       int64
			Phone    string
			PushName string `json:"push_name"`
		}
	}
	h.call(t, "GET", "/api/clientes/51/conversations", tok, nil, &conv)
	if len(conv.Leads) != 1 || conv.Leads[0].Phone != "+5491155550001" || conv.Leads[0].PushName != "Lead Uno" {
		t.Fatalf("conversations = %+v", conv)
	}
	var msgs struct {
		Messages []struct{ Text, Direction string }
	}
	h.call(t, "GET", "/api/clientes/51/contacts/"+itoa(conv.Leads[0].ID)+"/messages", tok, nil, &msgs)
	if len(msgs.Messages) != 1 || msgs.Messages[0].Text != "quiero info" || msgs.Messages[0].Direction != "in" {
		t.Errorf("messages = %+v", msgs)
	}

	// SIGHUP: a new cliente appears without a restart; a broken file is refused and the old one kept.
	root := h.login(t, "root", "admin-password")
	d.write(t, clientes+"[clientes.52]\nname = \"Beta\"\n")
	h.reload <- os.Interrupt
	var cl struct{ Clientes []struct{ ID string } }
	waitUntil(t, "cliente 52 after reload", func() bool {
		h.call(t, "GET", "/api/clientes", root, nil, &cl)
		return len(cl.Clientes) == 2
	})
	d.write(t, "[clientes.51\n")
	h.reload <- os.Interrupt
	time.Sleep(200 * time.Millisecond)
	h.call(t, "GET", "/api/clientes", root, nil, &cl)
	if len(cl.Clientes) != 2 {
		t.Errorf("after a bad reload: %d clientes, want the previous 2", len(cl.Clientes))
	}
	if err := h.stop(); err != nil {
		t.Errorf("graceful stop: %v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
