package sender_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
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
	"github.com/leadmaster/leadmaster/internal/hub/sender"
)

// TestCrashExactlyOnce runs the real central-hub and session-manager (built with -tags
// fakewa) against the fake WhatsApp server, starts a campaign to 500 simulated recipients with
// pacing off, and SIGKILLs each process several times at random moments while it runs,
// restarting it at once the way systemd would (the listening sockets stay open, as a .socket
// unit keeps them). At the end every recipient has the message exactly once (one message ID,
// the right text), and the campaign's counts equal what the fake server saw.
//
// One window is inherent: the session manager killed after WhatsApp accepted a message but
// before its ledger recorded it resends the same ID. The fake server records such a second
// arrival (Received lists it twice, Arrivals counts 2); a real phone shows a repeated ID from
// the same sender once. The test counts distinct IDs per recipient and logs raw repeats.
func TestCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills real processes; skipped with -short")
	}
	const recipients = 500
	bins := buildBinaries(t)
	fake, err := fakewa.New(fakewa.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()

	dir := t.TempDir()
	sockDir := filepath.Join(dir, "run")
	os.MkdirAll(sockDir, 0o755)
	cfgPath := filepath.Join(dir, "leadmaster.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`[log]
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
# Generous: a message in flight at several kills spends an attempt each time, and this test
# is about losses and duplicates, not about giving up.
max_attempts = 10
[clientes.51]
name = "Crash"
`, filepath.Join(dir, "hub"), filepath.Join(dir, "clientes"), sockDir)), 0o644)

	smSock, _ := socketFile(t, "unix", filepath.Join(sockDir, "51.sock"))
	smEnv := []string{"LEADMASTER_FAKEWA_URL=" + fake.URL()}
	smArgs := []string{"--cliente", "51", "--config", cfgPath}
	sm := startProc(t, "session-manager", smSock, dir, smEnv, bins.sm, smArgs...)
	sm.waitReady()
	link(t, fake, filepath.Join(sockDir, "51.sock"))

	cmd := exec.Command(bins.hub, "--config", cfgPath, "user", "add", "--username", "admin", "--admin", "--password-stdin")
	cmd.Stdin = strings.NewReader("crash-test-password\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	hubSock, hubAddr := socketFile(t, "tcp", "127.0.0.1:0")
	hub := startProc(t, "central-hub", hubSock, dir, nil, bins.hub, "--config", cfgPath)
	hub.waitReady()
	api := (&client{t: t, base: "http://" + hubAddr}).login("admin", "crash-test-password")

	phone := func(i int) string { return fmt.Sprintf("+549114%07d", i) }
	want := map[string]string{} // digits -> text
	list := make([]map[string]string, recipients)
	for i := range recipients {
		list[i] = map[string]string{"phone": phone(i), "nombre": fmt.Sprintf("Persona %d", i), "n": fmt.Sprint(i)}
		want[strings.TrimPrefix(phone(i), "+")] = fmt.Sprintf("Hola Persona %d, este es el mensaje %d", i, i)
	}
	var c sender.Campaign
	if code, body := api.do("POST", "/api/clientes/51/campaigns", map[string]any{
		"name": "crash", "template": "Hola {{nombre}}, este es el mensaje {{n}}",
		"recipients": map[string]any{"list": list}, "start": true,
	}, &c); code != 201 {
		t.Fatalf("create campaign: %d %s", code, body)
	}
	t.Logf("campaign %d: %d messages queued", c.ID, c.Total)

	// Kill at random moments while the campaign runs: each time a random amount of progress
	// has been made, one of the processes (or both) gets SIGKILL and is restarted at once.
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("kill schedule seed %d", seed)
	kills := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	distinct := func() int {
		n := 0
		for _, p := range fake.Recipients() {
			if strings.HasPrefix(p, "549114") {
				n++
			}
		}
		return n
	}
	plan := []string{"sm", "hub", "sm", "both", "hub", "sm", "hub", "sm"}
	for k, who := range plan {
		threshold := (k+1)*recipients/(len(plan)+2) + rng.IntN(recipients/(len(plan)+2))
		if err := fake.WaitFor(ctx, func() bool { return distinct() >= threshold }); err != nil {
			t.Fatalf("campaign stalled before %d recipients (have %d)", threshold, distinct())
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		if who == "sm" || who == "both" {
			sm.kill()
			kills["session-manager"]++
		}
		if who == "hub" || who == "both" {
			hub.kill()
			kills["central-hub"]++
		}
		t.Logf("kill %d (%s) at %d recipients reached", k+1, who, distinct())
		if who == "sm" || who == "both" {
			sm = startProc(t, "session-manager", smSock, dir, smEnv, bins.sm, smArgs...)
		}
		if who == "hub" || who == "both" {
			hub = startProc(t, "central-hub", hubSock, dir, nil, bins.hub, "--config", cfgPath)
		}
		// Sometimes kill again before it is even ready.
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			if who == "hub" {
				hub.kill()
				kills["central-hub"]++
				hub = startProc(t, "central-hub", hubSock, dir, nil, bins.hub, "--config", cfgPath)
			} else {
				sm.kill()
				kills["session-manager"]++
				sm = startProc(t, "session-manager", smSock, dir, smEnv, bins.sm, smArgs...)
			}
			t.Logf("kill %d again (%s) during start-up", k+1, who)
		}
		if who == "hub" || who == "both" {
			hub.waitReady()
		}
		if who != "hub" {
			sm.waitReady()
		}
	}
	t.Logf("kills: %v", kills)

	// The campaign finishes.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, _ := api.do("GET", fmt.Sprintf("/api/clientes/51/campaigns/%d", c.ID), nil, &c)
		if code == 200 && c.State == sender.CampaignDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign not done: state %s, progress %v, failed %v", c.State, c.Progress, c.FailedByReason)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Every recipient received its message exactly once: one distinct ID, the right text,
	// the ID the hub's outbox holds for it.
	var page sender.MessagePage
	if code, body := api.do("GET", fmt.Sprintf("/api/clientes/51/messages?campaign=%d&limit=1000", c.ID), nil, &page); code != 200 {
		t.Fatalf("list messages: %d %s", code, body)
	}
	outboxID := map[string]string{}
	for _, m := range page.Messages {
		outboxID[strings.TrimPrefix(m.To, "+")] = m.ID
	}
	rawRepeats, extraArrivals := 0, 0
	gotRecipients := 0
	for _, p := range fake.Recipients() {
		if !strings.HasPrefix(p, "549114") {
			continue
		}
		gotRecipients++
		ids := map[string]bool{}
		rs := fake.Received(p)
		for _, r := range rs {
			ids[r.ID] = true
			if r.Text != want[p] {
				t.Errorf("%s received %q, want %q", p, r.Text, want[p])
			}
			if r.From != "5491155550000" {
				t.Errorf("%s received a message from %s", p, r.From)
			}
		}
		if len(ids) != 1 {
			t.Errorf("%s received %d distinct messages, want exactly 1: %v", p, len(ids), rs)
			continue
		}
		for id := range ids {
			if id != outboxID[p] {
				t.Errorf("%s received ID %s, the outbox says %s", p, id, outboxID[p])
			}
			if a := fake.Arrivals(id); a > 1 {
				extraArrivals += a - 1
			}
		}
		if len(rs) > 1 {
			rawRepeats++
		}
	}
	if gotRecipients != recipients {
		t.Errorf("%d of %d recipients received the message", gotRecipients, recipients)
	}
	done := c.Progress[sender.StateSent] + c.Progress[sender.StateDelivered] + c.Progress[sender.StateRead]
	if done != gotRecipients || c.Progress[sender.StateFailed] != 0 || c.Progress[sender.StateQueued]+c.Progress[sender.StateSending] != 0 {
		t.Errorf("campaign counts %v (failed %v) do not match the %d recipients the fake server saw", c.Progress, c.FailedByReason, gotRecipients)
	}
	t.Logf("result: %d recipients each received their message once (distinct IDs); campaign counts %v", gotRecipients, c.Progress)
	t.Logf("raw repeats (same ID resent after a session-manager kill between WhatsApp's ack and the ledger commit, shown once by a phone): %d recipients, %d extra arrivals", rawRepeats, extraArrivals)
	hub.stop()
	sm.stop()
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
	if err := fake.ScanQR(context.Background(), qr, "5491155550000"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "session manager connected", 20*time.Second, func() bool {
		_, body := get("/status")
		var st struct{ State string }
		json.Unmarshal([]byte(body), &st)
		return st.State == "connected"
	})
}

type binaries struct{ hub, sm string }

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
		built = binaries{hub: filepath.Join(dir, "central-hub"), sm: filepath.Join(dir, "session-manager")}
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
