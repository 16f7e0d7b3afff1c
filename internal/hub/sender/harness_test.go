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
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/daemontest"
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
	bins            daemontest.Binaries
	dir, cfgPath    string
	smSock, hubSock *os.File
	sm, hub         *daemontest.Proc
	api             *client
}

func startStack(t *testing.T, senderTOML string) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs real processes; skipped with -short")
	}
	st := &stack{t: t, bins: daemontest.Build(t), dir: t.TempDir()}
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

	st.smSock, _ = daemontest.Socket(t, "unix", filepath.Join(sockDir, "51.sock"))
	st.sm = st.startSM()
	st.sm.WaitReady()
	link(t, st.fake, filepath.Join(sockDir, "51.sock"))

	cmd := exec.Command(st.bins.Hub, "--config", st.cfgPath, "user", "add", "--username", "admin", "--admin", "--password-stdin")
	cmd.Stdin = strings.NewReader("e2e-test-password\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	var hubAddr string
	st.hubSock, hubAddr = daemontest.Socket(t, "tcp", "127.0.0.1:0")
	st.hub = st.startHub()
	st.hub.WaitReady()
	st.api = (&client{TB: t, Base: "http://" + hubAddr}).Login("admin", "e2e-test-password")
	return st
}

// startSM starts session-manager@51 on its socket (not waiting for READY=1).
func (st *stack) startSM() *daemontest.Proc {
	return daemontest.Start(st.t, "session-manager", st.smSock, st.dir, []string{"LEADMASTER_FAKEWA_URL=" + st.fake.URL()},
		st.bins.SessionManager, "--cliente", "51", "--config", st.cfgPath)
}

// startHub starts central-hub on its socket (not waiting for READY=1).
func (st *stack) startHub() *daemontest.Proc {
	return daemontest.Start(st.t, "central-hub", st.hubSock, st.dir, nil, st.bins.Hub, "--config", st.cfgPath)
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
	daemontest.Eventually(t, "a QR code", 20*time.Second, func() bool {
		code, body := get("/qr?format=text")
		qr = body
		return code == 200
	})
	if err := fake.ScanQR(context.Background(), qr, linkedPhone); err != nil {
		t.Fatal(err)
	}
	daemontest.Eventually(t, "session manager connected", 20*time.Second, func() bool {
		_, body := get("/status")
		var st struct{ State string }
		json.Unmarshal([]byte(body), &st)
		return st.State == "connected"
	})
}

func TestMain(m *testing.M) { os.Exit(daemontest.Main(m)) }

// client calls the hub's API (see daemontest.Client).
type client = daemontest.Client
