package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// connTransport is an HTTP/1.1 client transport for one local session manager that does the
// whole exchange on the caller's goroutine: take an idle connection (or dial), write the
// request, read the answer. net/http's Transport runs two goroutines per connection and hands
// every request and answer across them; on a 2-core host that costs the hub a third of its
// proxied throughput. Anything unusual (a broken idle connection, an answer not read to the
// end) just closes the connection.
type connTransport struct {
	dial    func(ctx context.Context) (net.Conn, error)
	host    string // the Host header sent
	maxIdle int

	mu   sync.Mutex
	idle []*pconn
}

type pconn struct {
	net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	idle time.Time // when it was put back
}

// maxIdleTime drops pooled connections the session manager has probably closed already.
const maxIdleTime = 50 * time.Second

var errRetry = errors.New("idle connection closed by the session manager")

// outgoing is one request to send: the method, the request URI (path and query), the
// end-to-end headers and the whole body (nil for none), held so that it can be sent again.
type outgoing struct {
	method string
	uri    string
	header http.Header
	body   []byte
}

// do sends out and returns the answer; its body must be read to the end and closed for the
// connection to be reused. deadline (if not zero) bounds the whole exchange, reading the
// body included; ctx being cancelled aborts it at once.
func (t *connTransport) do(ctx context.Context, out *outgoing, deadline time.Time) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(ctx, pc, out, deadline, reused)
		if err == nil {
			return resp, nil
		}
		pc.Close()
		// A kept-alive connection the server closed meanwhile fails before any answer; try
		// once more on a fresh one (the whole request is held, so it can be sent again).
		if reused && attempt == 0 && errors.Is(err, errRetry) {
			continue
		}
		return nil, err
	}
}

func (t *connTransport) get(ctx context.Context) (*pconn, bool, error) {
	t.mu.Lock()
	for n := len(t.idle); n > 0; n = len(t.idle) {
		pc := t.idle[n-1]
		t.idle = t.idle[:n-1]
		if time.Since(pc.idle) < maxIdleTime {
			t.mu.Unlock()
			return pc, true, nil
		}
		// The most recently used is taken first, so everything below is older still.
		stale := append([]*pconn{pc}, t.idle...)
		t.idle = t.idle[:0]
		t.mu.Unlock()
		for _, c := range stale {
			c.Close()
		}
		t.mu.Lock()
	}
	t.mu.Unlock()
	c, err := t.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	return &pconn{Conn: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 8<<10)}, false, nil
}

// put returns pc to the pool. Its deadline is left as it is: every exchange sets its own.
func (t *connTransport) put(pc *pconn) {
	pc.idle = time.Now()
	t.mu.Lock()
	if len(t.idle) < t.maxIdle {
		t.idle = append(t.idle, pc)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	pc.Close()
}

// readFor gives http.ReadResponse the request method it needs (HEAD answers have no body).
var readFor = map[string]*http.Request{http.MethodGet: {Method: http.MethodGet}, http.MethodHead: {Method: http.MethodHead}}

func (t *connTransport) exchange(ctx context.Context, pc *pconn, out *outgoing, deadline time.Time, reused bool) (*http.Response, error) {
	pc.SetDeadline(deadline) // the zero time clears one left from the connection's last use
	// A cancelled caller unblocks the connection at once; the connection is then discarded.
	stop := context.AfterFunc(ctx, func() { pc.SetDeadline(time.Unix(1, 0)) })
	// Until the first byte of an answer arrives, a failure on a reused connection most likely
	// means the server closed it while idle: the caller may retry on a fresh one.
	early := func(err error) error {
		stop()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if reused && !isTimeout(err) {
			return errRetry
		}
		return err
	}
	writeRequest(pc.bw, t.host, out)
	if err := pc.bw.Flush(); err != nil {
		return nil, early(err)
	}
	if _, err := pc.br.Peek(1); err != nil {
		return nil, early(err)
	}
	rq := readFor[out.method]
	if rq == nil {
		rq = &http.Request{Method: out.method}
	}
	resp, err := http.ReadResponse(pc.br, rq)
	if err != nil {
		stop()
		return nil, ctxErr(ctx, err)
	}
	resp.Body = &body{ReadCloser: resp.Body, pc: pc, t: t, stop: stop, reuse: !resp.Close}
	return resp, nil
}

// writeRequest writes out as HTTP/1.1 to bw. Header fields with a line break in them cannot
// be sent as they are and are left out (net/http's server never lets one through anyway).
func writeRequest(bw *bufio.Writer, host string, out *outgoing) {
	bw.WriteString(out.method)
	bw.WriteByte(' ')
	bw.WriteString(out.uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vv := range out.header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue
		}
		if strings.ContainsAny(k, "\r\n: ") {
			continue
		}
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n") {
				continue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if out.body != nil || (out.method != http.MethodGet && out.method != http.MethodHead && out.method != http.MethodDelete && out.method != http.MethodOptions) {
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.Itoa(len(out.body)))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(out.body)
}

// ctxErr prefers the context's error (a deadline is a timeout, not an I/O failure).
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// body returns the connection to the pool once the answer has been read to the end.
type body struct {
	io.ReadCloser
	pc    *pconn
	t     *connTransport
	stop  func() bool
	reuse bool
	eof   bool
	done  bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.ReadCloser.Close()
	if b.stop() && b.reuse && b.eof && err == nil {
		b.t.put(b.pc)
	} else {
		b.pc.Close()
	}
	return nil
}

// CloseIdleConnections closes the pooled connections (after a reconfiguration).
func (t *connTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, pc := range idle {
		pc.Close()
	}
}
