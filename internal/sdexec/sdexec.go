// Package sdexec starts LeadMaster's daemons the way systemd does: the listening socket
// passed in as fd 3 (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) and sd_notify messages read from
// a NOTIFY_SOCKET. The tests (internal/daemontest) and the benchmarks (cmd/lmbench,
// senderbench) share it; it is not part of the installed programs.
package sdexec

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/fakewa"
)

// ListenFile binds network/addr ("unix" and a path, or "tcp" and 127.0.0.1:0) and returns
// the listening socket as a file to pass to Command, and its address. The socket stays open
// as long as the file does, across any number of daemon runs, as a .socket unit keeps it.
func ListenFile(network, addr string) (*os.File, string, error) {
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, "", err
	}
	var f *os.File
	switch l := l.(type) {
	case *net.TCPListener:
		f, err = l.File()
	case *net.UnixListener:
		l.SetUnlinkOnClose(false)
		f, err = l.File()
	}
	a := l.Addr().String()
	l.Close() // f holds a duplicate
	if err != nil {
		return nil, "", err
	}
	return f, a, nil
}

// Command returns the command that runs bin with args and sock as its one passed socket,
// named name, with env added to this process's environment. LISTEN_PID must be the daemon's
// own PID: a shell sets it, then execs the daemon (keeping the PID).
func Command(name string, sock *os.File, env []string, bin string, args ...string) *exec.Cmd {
	cmd := exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, bin}, args...)...)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES="+name)
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = []*os.File{sock}
	return cmd
}

// ListenNotify listens for sd_notify messages at path (give it to the daemon as
// NOTIFY_SOCKET) and calls fn with each line, on a goroutine of its own, until closed.
func ListenNotify(path string, fn func(line string)) (io.Closer, error) {
	os.Remove(path)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				fn(line)
			}
		}
	}()
	return c, nil
}

// UnixClient is an HTTP client for the server on the unix socket sock, whatever host a URL
// names.
func UnixClient(sock string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

// Link has the fake phone phone scan the QR code of the session manager c reaches, and waits
// until the session manager says it is connected, within timeout.
func Link(c *http.Client, fake *fakewa.Server, phone string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	get := func(path string) (int, string, error) {
		resp, err := c.Get("http://session-manager" + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	var qr string
	for qr == "" {
		if time.Now().After(deadline) {
			return fmt.Errorf("no QR code within %s", timeout)
		}
		if code, body, err := get("/qr?format=text"); err == nil && code == http.StatusOK {
			qr = body
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := fake.ScanQR(context.Background(), qr, phone); err != nil {
		return err
	}
	for {
		var st struct{ State string }
		if _, body, err := get("/status"); err == nil {
			json.Unmarshal([]byte(body), &st)
		}
		if st.State == "connected" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not connected within %s (state %q)", timeout, st.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
