package sd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestDrainerAnswersRequestsReadDuringShutdown: a connection accepted before the stop whose
// request arrives after it is answered, not closed empty (what a client of a restarting
// socket-activated daemon would see as a failed request).
func TestDrainerAnswersRequestsReadDuringShutdown(t *testing.T) {
	for _, tt := range []struct {
		name    string
		drainer bool
		wantOK  bool
	}{
		{"http.Server.Shutdown alone drops it", false, false},
		{"Drainer answers it", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "ok")
			})}
			var d *Drainer
			var served net.Listener = l
			if tt.drainer {
				d = NewDrainer(srv)
				served = d.Listener(l)
			}
			serveErr := make(chan error, 1)
			go func() { serveErr <- srv.Serve(served) }()

			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			time.Sleep(50 * time.Millisecond) // accepted, no request yet

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			shutdownErr := make(chan error, 1)
			go func() {
				if d != nil {
					shutdownErr <- d.Shutdown(ctx)
				} else {
					shutdownErr <- srv.Shutdown(ctx)
				}
			}()
			time.Sleep(50 * time.Millisecond) // the stop has begun

			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			gotOK := err == nil && resp.StatusCode == http.StatusOK
			if gotOK != tt.wantOK {
				t.Errorf("answered 200 = %v (err %v), want %v", gotOK, err, tt.wantOK)
			}
			if err := <-shutdownErr; err != nil {
				t.Errorf("Shutdown = %v", err)
			}
			if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve = %v, want http.ErrServerClosed", err)
			}
		})
	}
}

// TestDrainerStopsAccepting: after Shutdown began, new connections are not accepted by
// this process (under systemd they wait in the socket's backlog for the next one).
func TestDrainerStopsAccepting(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	d := NewDrainer(srv)
	go srv.Serve(d.Listener(l))
	time.Sleep(20 * time.Millisecond)
	if err := d.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("dial after Shutdown succeeded, want the listener closed")
	}
}
