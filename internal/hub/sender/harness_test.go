package sender_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/fakewa"
)

// The end-to-end tests of this package run the real central-hub and session-manager (built
// with -tags fakewa) with their sockets passed the way systemd passes them.

// linkedPhone is the number the fake phone links the session manager to.
const linkedPhone = "5491155550000"

// stack is a fake WhatsApp server, session-manager@51 linked to it and central-hub, with an
// admin logged in to the hub's API. Sending has no pacing unless senderTOML sets some.
type stack struct {
	t               *testing.T
	fake            *fakewa.Server
	bins            binaries
	dir, cfgPath    string
	smSock, hubSock *os.File
	sm, hub         *proc
	api             *client
}

func startStack(t *testing.T, senderTOML string) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs real processes; skipped with -short")
	}
	st := &stack{t: t, bins: buildBinaries(t), dir: t.TempDir()}
	var err error
	if st.fake, err = fakewa.New(fakewa.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.fake.Close() })
	sockDir := filepath.Join(st.dir, "run")
	os.MkdirAll(sockDir, 0o755)
	st.cfgPath = filepath.Join(st.dir, "leadmaster.toml")
	os.WriteFile(st.cfgPath, []byte(fmt.Sprintf(`[log]
level = "info"
[hub]
state_dir = %q
contact_sync_interval = "0s"
[session_manager]
state_dir = %q
socket_dir = %q
[sender]
per_minute = 0
min_gap = "0s"
max_gap = "0s"
daily_cap = 0
quiet_hours = ""
%s
[clientes.51]
name = "Acme"
`, filepath.Join(st.dir, "hub"), filepath.Join(st.dir, "clientes"), sockDir, senderTOML)), 0o644)

	st.smSock, _ = socketFile(t, "unix", filepath.Join(sockDir, "51.sock"))
	st.sm = st.startSM()
	st.sm.waitReady()
	link(t, st.fake, filepath.Join(sockDir, "51.sock"))

	cmd := exec.Command(st.bins.hub, "--config", st.cfgPath, "user", "add", "--username", "admin", "--admin", "--password-stdin")
	cmd.Stdin = strings.NewReader("e2e-test-password\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	var hubAddr string
	st.hubSock, hubAddr = socketFile(t, "tcp", "127.0.0.1:0")
	st.hub = st.startHub()
	st.hub.waitReady()
	st.api = (&client{t: t, base: "http://" + hubAddr}).login("admin", "e2e-test-password")
	return st
}

// startSM starts session-manager@51 on its socket (not waiting for READY=1).
func (st *stack) startSM() *proc {
	return startProc(st.t, "session-manager", st.smSock, st.dir, []string{"LEADMASTER_FAKEWA_URL=" + st.fake.URL()},
		st.bins.sm, "--cliente", "51", "--config", st.cfgPath)
}

// startHub starts central-hub on its socket (not waiting for READY=1).
func (st *stack) startHub() *proc {
	return startProc(st.t, "central-hub", st.hubSock, st.dir, nil, st.bins.hub, "--config", st.cfgPath)
}

// link shows the session manager's QR to the fake phone and waits until it is connected.
func link(t *testing.T, fake *fakewa.Server, sock string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	get := func(path string) (int, string) {
		resp, err := c.Get("http://sm" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var qr string
	eventually(t, "a QR code", 20*time.Second, func() bool {
		code, body := get("/qr?format=text")
		qr = body
		return code == 200
	})
	if err := fake.ScanQR(context.Background(), qr, linkedPhone); err != nil {
		t.Fatal(err)
	}
	eventually(t, "session manager connected", 20*time.Second, func() bool {
		_, body := get("/status")
		var st struct{ State string }
		json.Unmarshal([]byte(body), &st)
		return st.State == "connected"
	})
}

type binaries struct{ dir, hub, sm string }

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	built     binaries
	buildErr  error
)

// buildBinaries builds central-hub and the fakewa session-manager once per test binary.
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sender-crash-bin")
		if err != nil {
			buildErr = err
			return
		}
		built = binaries{dir: dir, hub: filepath.Join(dir, "central-hub"), sm: filepath.Join(dir, "session-manager")}
		for _, b := range [][]string{
			{"build", "-o", built.hub, "github.com/leadmaster/leadmaster/cmd/central-hub"},
			{"build", "-tags", "fakewa", "-o", built.sm, "github.com/leadmaster/leadmaster/cmd/session-manager"},
		} {
			if out, err := exec.Command("go", b...).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(b, " "), err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// proc is a daemon started the way systemd starts it: its socket as fd 3 (LISTEN_FDS),
// READY=1 read from NOTIFY_SOCKET.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stderr *syncBuffer
	notify chan string
	exited chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProc(t *testing.T, name string, sock *os.File, dir string, env []string, bin string, args ...string) *proc {
	t.Helper()
	notifyPath := filepath.Join(dir, name+".notify")
	os.Remove(notifyPath)
	nconn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, stderr: &syncBuffer{}, notify: make(chan string, 100), exited: make(chan error, 1)}
	// LISTEN_PID must be the daemon's own PID: sh sets it, then execs (keeping the PID).
	p.cmd = exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, bin}, args...)...)
	p.cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES="+name, "NOTIFY_SOCKET="+notifyPath)
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.ExtraFiles = []*os.File{sock}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nconn.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				select {
				case p.notify <- line:
				default:
				}
			}
		}
	}()
	go func() { p.exited <- p.cmd.Wait(); nconn.Close() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		err := <-p.exited
		p.exited <- err
		if t.Failed() {
			t.Logf("%s stderr (last 4 KB):\n%s", name, tail(p.stderr.String(), 4096))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line := <-p.notify:
			if line == "READY=1" {
				return
			}
		case err := <-p.exited:
			p.exited <- err
			p.t.Fatalf("%s exited before READY=1: %v\n%s", p.name, err, tail(p.stderr.String(), 4096))
		case <-deadline:
			p.t.Fatalf("%s: no READY=1 within 30s", p.name)
		}
	}
}

// kill ends the process without warning, like a crash or an OOM kill.
func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	err := <-p.exited
	p.exited <- err
}

// stop sends SIGTERM and expects a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			p.t.Errorf("%s exited with %v after SIGTERM, want 0", p.name, err)
		}
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

// socketFile binds network/addr and returns the listening socket as a file to pass as fd 3,
// and its address. The test keeps it open across restarts, as systemd keeps a .socket unit's.
func socketFile(t *testing.T, network, addr string) (*os.File, string) {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	var f *os.File
	switch l := l.(type) {
	case *net.TCPListener:
		f, err = l.File()
	case *net.UnixListener:
		l.SetUnlinkOnClose(false)
		f, err = l.File()
	}
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close() // f holds a duplicate
	t.Cleanup(func() { f.Close() })
	return f, a
}

type client struct {
	t     *testing.T
	base  string
	token string
}

// do sends a JSON request; a connection error (the hub being restarted) is answered as 0.
func (c *client) do(method, path string, body any, out any) (int, string) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, string(b)
}

func (c *client) login(user, pw string) *client {
	c.t.Helper()
	var s struct{ Token string }
	if code, body := c.do("POST", "/api/auth/login", map[string]string{"username": user, "password": pw}, &s); code != 200 {
		c.t.Fatalf("login %s: %d %s", user, code, body)
	}
	return &client{t: c.t, base: c.base, token: s.Token}
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
