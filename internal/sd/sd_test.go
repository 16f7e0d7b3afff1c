package sd

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenBindsByHand(t *testing.T) {
	t.Setenv("LISTEN_FDS", "")
	sock := filepath.Join(t.TempDir(), "a.sock")
	ls, err := Listeners("unix:"+sock, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	if len(ls) != 2 || !ls[0].Local() || ls[1].Local() || ls[0].Activated {
		t.Fatalf("Listeners = %+v, want a local unix and a TCP listener bound by hand", ls)
	}
	// A second process on a live socket is refused, with a clear message.
	if _, err := Listen("unix:" + sock); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("Listen on a live socket: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "stale.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the file stays, nobody listens: what a crash leaves behind
	l2, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket file: %v", err)
	}
	l2.Close()
}

func TestNotifierSends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	n := NewNotifier(nil)
	n.Ready()
	n.Status("connected as +5491155550000")
	for _, want := range []string{"READY=1", "STATUS=connected as +5491155550000"} {
		buf := make([]byte, 256)
		k, err := conn.Read(buf)
		if err != nil || string(buf[:k]) != want {
			t.Errorf("got %q (%v), want %q", buf[:k], err, want)
		}
	}
}
