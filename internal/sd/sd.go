// Package sd is the daemons' side of systemd: listeners passed in with LISTEN_FDS (or bound
// by hand when run outside systemd), sd_notify readiness and status, and the watchdog loop.
// Outside systemd every notification is a silent no-op.
package sd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// Listener is a listening socket and how it reached us.
type Listener struct {
	net.Listener
	// Name is the FileDescriptorName= systemd gave it, or "" when bound by hand.
	Name string
	// Activated reports whether systemd passed it in.
	Activated bool
}

// Local reports whether the listener is a unix socket (guarded by file permissions) rather
// than TCP (which needs a bearer token).
func (l Listener) Local() bool { return l.Addr().Network() == "unix" }

// Listeners returns the sockets systemd passed in. It may be called once per process
// (go-systemd clears LISTEN_* so children do not inherit them). With no sockets passed it
// binds each of addrs (host:port or unix:/path) instead.
func Listeners(addrs ...string) ([]Listener, error) {
	named, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("listeners from systemd: %w", err)
	}
	var ls []Listener
	names := make([]string, 0, len(named))
	for name := range named {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, l := range named[name] {
			if l == nil {
				continue // not a stream socket
			}
			ls = append(ls, Listener{Listener: l, Name: name, Activated: true})
		}
	}
	if len(ls) > 0 {
		return ls, nil
	}
	for _, addr := range addrs {
		l, err := Listen(addr)
		if err != nil {
			for _, prev := range ls {
				prev.Close()
			}
			return nil, err
		}
		ls = append(ls, Listener{Listener: l})
	}
	return ls, nil
}

// Listen binds addr, which is host:port or unix:/path. A stale unix socket file left by a
// crashed process is replaced; a live one is an error.
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another process is serving this socket", addr)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("listen %s: remove stale socket: %w", addr, err)
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		return l, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return l, nil
}

// Notifier sends sd_notify messages. Its zero value is usable and silent.
type Notifier struct {
	log *slog.Logger
}

// NewNotifier returns a Notifier that logs failures to log at debug level.
func NewNotifier(log *slog.Logger) *Notifier { return &Notifier{log: log} }

func (n *Notifier) send(state string) {
	// unsetEnvironment=false: later notifications (STATUS, WATCHDOG) need NOTIFY_SOCKET.
	if _, err := daemon.SdNotify(false, state); err != nil && n.log != nil {
		n.log.Debug("sd_notify failed", "err", err)
	}
}

// Ready tells systemd the service is serving.
func (n *Notifier) Ready() { n.send(daemon.SdNotifyReady) }

// Status sets the one-line status shown by systemctl status.
func (n *Notifier) Status(s string) { n.send("STATUS=" + s) }

// Stopping tells systemd a graceful stop has begun.
func (n *Notifier) Stopping() { n.send(daemon.SdNotifyStopping) }

// Reloading tells systemd a reload has begun; call Ready when it ends.
func (n *Notifier) Reloading() {
	n.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
}

// Watchdog pings the systemd watchdog once.
func (n *Notifier) Watchdog() { n.send(daemon.SdNotifyWatchdog) }

// RunWatchdog pings the watchdog at half of WatchdogSec, but only while check passes, until
// ctx ends. Without a watchdog configured it returns at once. A failing check is logged; if
// it keeps failing, systemd kills and restarts the service, which is the point.
func (n *Notifier) RunWatchdog(ctx context.Context, check func(context.Context) error) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, interval/4)
		err := check(cctx)
		cancel()
		if err == nil {
			n.Watchdog()
		} else if ctx.Err() == nil && n.log != nil {
			n.log.Warn("health check failed, not pinging the watchdog", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
