package sd

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Drainer stops an http.Server without dropping a request, which is what lets a restart or
// an upgrade under socket activation lose nothing.
//
// http.Server.Shutdown alone is not enough: a connection accepted just before it, whose
// request is read after it began, is closed with no answer (curl: "Empty reply from
// server"). Under socket activation that is every connection the kernel had queued when
// SIGTERM came. Drainer first stops accepting (systemd keeps the socket, so later
// connections wait in its backlog for the next process), then waits until every accepted
// connection has been answered, and only then calls Shutdown to close the idle ones.
type Drainer struct {
	srv  *http.Server
	mu   sync.Mutex
	busy map[net.Conn]bool // accepted and not idle: a request is coming or being served
	lns  []*drainListener
}

// NewDrainer returns a Drainer for srv. It chains srv.ConnState, so call it after setting
// that hook, and before Serve.
func NewDrainer(srv *http.Server) *Drainer {
	d := &Drainer{srv: srv, busy: map[net.Conn]bool{}}
	next := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		d.mu.Lock()
		switch st {
		case http.StateNew, http.StateActive:
			d.busy[c] = true
		default:
			delete(d.busy, c)
		}
		d.mu.Unlock()
		if next != nil {
			next(c, st)
		}
	}
	return d
}

// Listener wraps l for srv.Serve; Shutdown stops it.
func (d *Drainer) Listener(l net.Listener) net.Listener {
	dl := &drainListener{Listener: l, done: make(chan struct{})}
	d.mu.Lock()
	d.lns = append(d.lns, dl)
	d.mu.Unlock()
	return dl
}

// Shutdown stops accepting, waits (until ctx ends) for every accepted connection to be
// answered, then shuts srv down. Serve returns http.ErrServerClosed.
func (d *Drainer) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	lns := d.lns
	d.mu.Unlock()
	for _, l := range lns {
		l.stop()
	}
	// Once each Serve loop has seen its listener closed, every connection it accepted has
	// been reported as StateNew, so busy is complete.
	for _, l := range lns {
		select {
		case <-l.done:
		case <-ctx.Done():
		}
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for ctx.Err() == nil {
		d.mu.Lock()
		n := len(d.busy)
		d.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return d.srv.Shutdown(ctx)
}

type drainListener struct {
	net.Listener
	stopped atomic.Bool
	once    sync.Once
	done    chan struct{} // closed when Accept has failed after stop
	doneOne sync.Once
}

func (l *drainListener) stop() {
	l.once.Do(func() {
		l.stopped.Store(true)
		l.Listener.Close()
	})
}

// Accept reports http.ErrServerClosed once stopped, so Serve returns that, as after Shutdown.
func (l *drainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && l.stopped.Load() {
		l.doneOne.Do(func() { close(l.done) })
		return nil, http.ErrServerClosed
	}
	return c, err
}

// Close is Shutdown's way in as well as srv.Close's.
func (l *drainListener) Close() error {
	l.stop()
	return nil
}
