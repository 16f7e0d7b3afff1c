// Package daemontest runs LeadMaster's real binaries in tests the way systemd runs them: the
// listening socket passed in as fd 3 (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), sd_notify
// messages read from a NOTIFY_SOCKET, SIGTERM for a graceful stop and SIGKILL for a crash.
// The test keeps the socket open across restarts, as a .socket unit does.
package daemontest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/sdexec"
)

// Binaries are the daemons built for a test run.
type Binaries struct {
	Dir string
	// Hub is central-hub as shipped.
	Hub string
	// SessionManager is built with -tags fakewa: it trusts the fake WhatsApp server named by
	// $LEADMASTER_FAKEWA_URL. Production builds never do.
	SessionManager string
}

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// Build builds the binaries once per test process; Main removes them when the tests end.
// Tests that need them are skipped with -short.
func Build(tb testing.TB) Binaries {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds and runs the real daemons; skipped with -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "leadmaster-bin")
		if err != nil {
			buildErr = err
			return
		}
		built = Binaries{Dir: dir, Hub: filepath.Join(dir, "central-hub"), SessionManager: filepath.Join(dir, "session-manager")}
		for _, args := range [][]string{
			{"build", "-o", built.Hub, "github.com/leadmaster/leadmaster/cmd/central-hub"},
			{"build", "-tags", "fakewa", "-o", built.SessionManager, "github.com/leadmaster/leadmaster/cmd/session-manager"},
		} {
			if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return built
}

// Main runs the tests and removes what Build built: call it from TestMain,
// os.Exit(daemontest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if built.Dir != "" {
		os.RemoveAll(built.Dir)
	}
	return code
}

// Socket binds network/addr ("unix" and a path, or "tcp" and 127.0.0.1:0) and returns the
// listening socket as a file to pass to Start, and its address. It stays open until the test
// ends, across any number of daemon restarts.
func Socket(tb testing.TB, network, addr string) (*os.File, string) {
	tb.Helper()
	f, a, err := sdexec.ListenFile(network, addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f, a
}

// Buffer is a goroutine-safe bytes buffer for a daemon's stderr.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Proc is one run of a daemon.
type Proc struct {
	Name   string
	Cmd    *exec.Cmd
	Stderr *Buffer
	// Notify carries every sd_notify line (READY=1, STATUS=..., STOPPING=1, ...).
	Notify chan string

	tb     testing.TB
	exited chan error // holds the exit result once the process ended
}

// Start runs bin with args, sock as its one passed socket (named name), env added to the
// test's environment, and a NOTIFY_SOCKET in dir. Cleanup kills it if it still runs and
// shows its stderr when the test failed.
func Start(tb testing.TB, name string, sock *os.File, dir string, env []string, bin string, args ...string) *Proc {
	tb.Helper()
	p := &Proc{Name: name, Stderr: &Buffer{}, Notify: make(chan string, 256), tb: tb, exited: make(chan error, 1)}
	notifyPath := filepath.Join(dir, name+".notify")
	nconn, err := sdexec.ListenNotify(notifyPath, func(line string) {
		select {
		case p.Notify <- line:
		default:
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	p.Cmd = sdexec.Command(name, sock, append([]string{"NOTIFY_SOCKET=" + notifyPath}, env...), bin, args...)
	p.Cmd.Stderr = p.Stderr
	if err := p.Cmd.Start(); err != nil {
		nconn.Close()
		tb.Fatal(err)
	}
	go func() { p.exited <- p.Cmd.Wait(); nconn.Close() }()
	tb.Cleanup(func() {
		p.Cmd.Process.Kill()
		p.wait()
		if tb.Failed() {
			tb.Logf("%s stderr:\n%s", name, Tail(p.Stderr.String(), 60))
		}
	})
	return p
}

// wait returns the exit result, keeping it for later callers.
func (p *Proc) wait() error {
	err := <-p.exited
	p.exited <- err
	return err
}

// WaitNotify waits for an sd_notify line starting with prefix and returns it; the process
// exiting first, or the timeout, fails the test.
func (p *Proc) WaitNotify(prefix string, timeout time.Duration) string {
	p.tb.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line := <-p.Notify:
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case err := <-p.exited:
			p.exited <- err
			p.tb.Fatalf("%s exited before %s: %v\n%s", p.Name, prefix, err, Tail(p.Stderr.String(), 30))
		case <-deadline:
			p.tb.Fatalf("%s: no %s within %v\n%s", p.Name, prefix, timeout, Tail(p.Stderr.String(), 30))
		}
	}
}

// WaitReady waits for READY=1.
func (p *Proc) WaitReady() { p.tb.Helper(); p.WaitNotify("READY=1", 20*time.Second) }

// Kill ends the process without warning (a crash, an OOM kill) and waits for it.
func (p *Proc) Kill() {
	p.Cmd.Process.Signal(syscall.SIGKILL)
	p.wait()
}

// Stop sends SIGTERM and expects a clean exit (status 0) within 30 s, having sent STOPPING=1.
func (p *Proc) Stop() {
	p.tb.Helper()
	p.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.wait() }()
	select {
	case err := <-done:
		if err != nil {
			p.tb.Errorf("%s exited with %v after SIGTERM, want 0", p.Name, err)
		}
	case <-time.After(30 * time.Second):
		p.tb.Fatalf("%s did not stop within 30s of SIGTERM", p.Name)
	}
	for {
		select {
		case line := <-p.Notify:
			if line == "STOPPING=1" {
				return
			}
		default:
			p.tb.Errorf("%s sent no STOPPING=1", p.Name)
			return
		}
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) { p.Cmd.Process.Signal(sig) }

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Client calls central-hub's JSON API.
type Client struct {
	TB    testing.TB
	Base  string // http://host:port
	Token string
}

// Do sends body (if any) as JSON and decodes a 2xx answer into out (if any). It returns the
// status and the body; a connection error (a hub being restarted) is status 0 with its text.
func (c *Client) Do(method, path string, body, out any) (int, string) {
	c.TB.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.Base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			c.TB.Fatalf("%s %s: %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, string(b)
}

// Login returns a Client holding user's token.
func (c *Client) Login(user, password string) *Client {
	c.TB.Helper()
	var s struct{ Token string }
	if code, body := c.Do("POST", "/api/auth/login", map[string]string{"username": user, "password": password}, &s); code != 200 {
		c.TB.Fatalf("login %s: %d %s", user, code, body)
	}
	return &Client{TB: c.TB, Base: c.Base, Token: s.Token}
}

// Eventually fails the test unless cond becomes true within timeout.
func Eventually(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
