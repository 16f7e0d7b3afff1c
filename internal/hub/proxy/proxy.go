// Package proxy is the hub's way to each cliente's session manager: over its unix socket, or
// over HTTP(S) with a bearer token when the cliente's session manager runs on another host.
//
// It never hangs a caller: connecting has a short timeout, every request a deadline, and a
// failure is turned into an answer that names the cliente and what state its session manager
// is in (down, failed, unresponsive).
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub"
)

// States the hub reports for a session manager it cannot get a status from. When it can, the
// session manager's own state (connecting, qr, pairing, connected, disconnected, logged_out)
// is reported instead.
const (
	// StateDown: the socket does not exist (the unit is not installed or its socket not started).
	StateDown = "down"
	// StateFailed: the socket refuses connections. Under systemd that is a stopped or failed
	// unit (socket activation would otherwise start it).
	StateFailed = "failed"
	// StateUnresponsive: connected, but no answer in time.
	StateUnresponsive = "unresponsive"
	// StateError: anything else (permissions, a bad token, a malformed answer).
	StateError = "error"
)

// TokenCredential is the systemd credential holding the bearer token for remote session managers.
const TokenCredential = "session-manager-token"

// Options tune a Pool.
type Options struct {
	// DialTimeout bounds connecting (default 2s).
	DialTimeout time.Duration
	// Timeout bounds a whole request unless the caller's context is shorter (default 15s).
	Timeout time.Duration
}

// Pool holds one HTTP transport per configured cliente.
type Pool struct {
	log *slog.Logger
	opt Options

	mu      sync.RWMutex
	targets map[string]*target
}

type target struct {
	id       string
	key      string // identity of the configuration; a change builds a new target
	where    string // for messages: "socket /run/..." or the URL
	unix     bool
	base     *url.URL
	token    string
	tokenErr error
	local    *connTransport         // for a session manager on this host
	remote   *http.Transport        // for one on another host,
	rp       *httputil.ReverseProxy // and its proxy
}

func (t *target) closeIdleConnections() {
	if t.local != nil {
		t.local.CloseIdleConnections()
	} else {
		t.remote.CloseIdleConnections()
	}
}

// bufferPool lends the reverse proxy its copy buffers (it would allocate 32 KiB per answer).
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

var buffers = &bufferPool{}

// New returns an empty Pool; call Configure.
func New(log *slog.Logger, opt Options) *Pool {
	if opt.DialTimeout == 0 {
		opt.DialTimeout = 2 * time.Second
	}
	if opt.Timeout == 0 {
		opt.Timeout = 15 * time.Second
	}
	return &Pool{log: log, opt: opt, targets: map[string]*target{}}
}

// Configure sets the clientes to reach from cfg, keeping the connections of clientes whose
// settings did not change. getenv finds $CREDENTIALS_DIRECTORY.
func (p *Pool) Configure(cfg *config.Config, getenv func(string) string) {
	next := map[string]*target{}
	p.mu.RLock()
	old := p.targets
	p.mu.RUnlock()
	for _, id := range cfg.ClienteIDs() {
		cl := cfg.Clientes[id]
		t := p.newTarget(id, cl, cfg.SocketPath(id), getenv)
		if o, ok := old[id]; ok && o.key == t.key && (o.tokenErr == nil) == (t.tokenErr == nil) && o.token == t.token {
			next[id] = o
			continue
		}
		next[id] = t
	}
	p.mu.Lock()
	p.targets = next
	p.mu.Unlock()
	for id, o := range old {
		if next[id] != o {
			o.closeIdleConnections()
		}
	}
}

func (p *Pool) newTarget(id string, cl config.Cliente, socket string, getenv func(string) string) *target {
	t := &target{id: id}
	dialer := &net.Dialer{Timeout: p.opt.DialTimeout, KeepAlive: 30 * time.Second}
	if cl.Address == "" {
		t.unix = true
		t.where = "socket " + socket
		t.key = "unix:" + socket
		t.base = &url.URL{Scheme: "http", Host: "session-manager-" + id}
		t.local = &connTransport{maxIdle: 256, host: t.base.Host, dial: func(ctx context.Context) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socket)
		}}
		return t
	}
	u, _ := url.Parse(strings.TrimSuffix(cl.Address, "/")) // validated by config
	t.base = u
	t.where = u.Redacted()
	t.key = "remote:" + cl.Address
	t.remote = &http.Transport{
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   p.opt.DialTimeout * 2,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	t.token, t.tokenErr = readToken(cl.TokenFile, getenv)
	t.rp = &httputil.ReverseProxy{
		Transport:  t.remote,
		BufferPool: buffers,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = t.base.Scheme
			pr.Out.URL.Host = t.base.Host
			pr.Out.URL.Path = t.base.Path + pr.In.URL.Path
			pr.Out.URL.RawPath = ""
			pr.Out.Host = ""
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
			if t.token != "" {
				pr.Out.Header.Set("Authorization", "Bearer "+t.token)
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			if !t.unix && resp.StatusCode == http.StatusUnauthorized {
				return errRejectedToken
			}
			resp.Header.Del("Set-Cookie")
			return nil
		},
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	return t
}

var errRejectedToken = errors.New("session manager rejected the hub's token")

func readToken(file string, getenv func(string) string) (string, error) {
	if dir := getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, TokenCredential))
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
		if file == "" {
			return "", fmt.Errorf("credential %s: %w", TokenCredential, err)
		}
	}
	if file == "" {
		return "", fmt.Errorf("no token_file and no %s credential", TokenCredential)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token_file %s is empty", file)
	}
	return tok, nil
}

func (p *Pool) target(id string) (*target, error) {
	p.mu.RLock()
	t := p.targets[id]
	p.mu.RUnlock()
	if t == nil {
		return nil, hub.Errorf(hub.CodeNotFound, "cliente %s is not configured", id)
	}
	if t.tokenErr != nil {
		return nil, &Unavailable{Cliente: id, State: StateError,
			Err: &hub.Error{Code: hub.CodeUnavailable, Message: fmt.Sprintf("session manager for cliente %s is remote (%s) but the hub has no token for it: %v", id, t.where, t.tokenErr)}}
	}
	return t, nil
}

// Known reports whether id is a configured cliente.
func (p *Pool) Known(id string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.targets[id] != nil
}

// Unavailable is a failure to get an answer from a session manager: State says what the hub
// concluded (down, failed, unresponsive, error) and Err is the API error to show.
type Unavailable struct {
	Cliente string
	State   string
	Err     *hub.Error
}

func (u *Unavailable) Error() string { return u.Err.Message }

// Unwrap lets errors.As find the *hub.Error.
func (u *Unavailable) Unwrap() error { return u.Err }

// classify explains err, from reaching t, to a person.
func (t *target) classify(err error, timeout time.Duration) *Unavailable {
	sm := "session manager for cliente " + t.id
	u := &Unavailable{Cliente: t.id}
	var msg string
	switch {
	case errors.Is(err, errRejectedToken):
		u.State = StateError
		msg = fmt.Sprintf("%s (%s) rejected the hub's token; check token_file or the %s credential", sm, t.where, TokenCredential)
	case errors.Is(err, syscall.ENOENT):
		u.State = StateDown
		msg = fmt.Sprintf("%s is not running (%s does not exist; is session-manager@%s.socket enabled?)", sm, t.where, t.id)
	case errors.Is(err, syscall.ECONNREFUSED) && t.unix:
		u.State = StateFailed
		msg = fmt.Sprintf("%s is not running (%s refused the connection: the unit is stopped or failed; see systemctl status session-manager@%s)", sm, t.where, t.id)
	case errors.Is(err, syscall.ECONNREFUSED):
		u.State = StateDown
		msg = fmt.Sprintf("%s is not running (%s refused the connection)", sm, t.where)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		u.State = StateError
		msg = fmt.Sprintf("cannot reach %s (%s: permission denied; the hub must be in the socket's group)", sm, t.where)
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		u.State = StateUnresponsive
		u.Err = &hub.Error{Code: hub.CodeTimeout, Message: fmt.Sprintf("%s did not answer within %s (%s)", sm, timeout.Round(time.Millisecond), t.where)}
		return u
	default:
		u.State = StateError
		msg = fmt.Sprintf("cannot reach %s (%s): %s", sm, t.where, shortErr(err))
	}
	u.Err = &hub.Error{Code: hub.CodeUnavailable, Message: msg, RetryAfter: 5 * time.Second}
	return u
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// shortErr keeps the innermost error text: "connection reset by peer" rather than a URL chain.
func shortErr(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// Do sends a request for pathQuery (a path with an optional query) to cliente id's session
// manager, with body (nil for none) as JSON. The exchange gets a deadline of timeout (the
// Pool's default when 0), and a failure to get an answer is an *Unavailable. The caller
// closes the answer's body, then calls the returned CancelFunc.
func (p *Pool) Do(ctx context.Context, id, method, pathQuery string, body []byte, timeout time.Duration) (*http.Response, context.CancelFunc, error) {
	t, err := p.target(id)
	if err != nil {
		return nil, nil, err
	}
	if timeout == 0 {
		timeout = p.opt.Timeout
	}
	u, err := url.ParseRequestURI(pathQuery)
	if err != nil {
		return nil, nil, fmt.Errorf("session manager request %q: %w", pathQuery, err)
	}
	header := http.Header{"Accept": {"application/json"}}
	if body != nil {
		header.Set("Content-Type", "application/json")
	}
	var resp *http.Response
	cancel := context.CancelFunc(func() {})
	if t.unix {
		resp, err = t.local.do(ctx, &outgoing{method: method, uri: u.RequestURI(), header: header, body: body}, time.Now().Add(timeout))
	} else {
		var rctx context.Context
		rctx, cancel = context.WithTimeout(ctx, timeout)
		var req *http.Request
		if req, err = http.NewRequestWithContext(rctx, method, t.base.String()+u.RequestURI(), bytes.NewReader(body)); err != nil {
			cancel()
			return nil, nil, err
		}
		req.Header = header
		if t.token != "" {
			req.Header.Set("Authorization", "Bearer "+t.token)
		}
		if resp, err = t.remote.RoundTrip(req); err == nil && resp.StatusCode == http.StatusUnauthorized {
			resp.Body.Close()
			err = errRejectedToken
		}
	}
	if err != nil {
		cancel()
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, nil, context.Canceled // the caller gave up; nothing to explain
		}
		return nil, nil, t.classify(err, timeout)
	}
	return resp, cancel, nil
}

// Call sends a JSON request (in may be nil) and decodes a JSON answer into out (may be nil).
// An error answer from the session manager comes back as a *hub.Error with its code.
func (p *Pool) Call(ctx context.Context, id, method, pathQuery string, in, out any, timeout time.Duration) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	resp, cancel, err := p.Do(ctx, id, method, pathQuery, body, timeout)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t, _ := p.target(id)
		if t != nil {
			return t.classify(err, timeout)
		}
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			return &hub.Error{Code: e.Error.Code, Message: e.Error.Message}
		}
		return hub.Errorf(hub.CodeUnavailable, "session manager for cliente %s answered %s to %s %s", id, resp.Status, method, pathQuery)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return hub.Errorf(hub.CodeUnavailable, "session manager for cliente %s sent a malformed answer to %s %s", id, method, pathQuery)
	}
	return nil
}

// Forward proxies r to path on cliente id's session manager and copies the answer back,
// whatever it is. timeout bounds the whole exchange; onError writes the API error when the
// session manager cannot be reached.
func (p *Pool) Forward(w http.ResponseWriter, r *http.Request, id, path string, timeout time.Duration, onError func(http.ResponseWriter, *http.Request, error)) {
	t, err := p.target(id)
	if err != nil {
		onError(w, r, err)
		return
	}
	if timeout == 0 {
		timeout = p.opt.Timeout
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		// Request bodies are small (the API limits them); holding one lets the transport send
		// it again when a kept-alive connection turns out to be closed.
		if body, err = io.ReadAll(r.Body); err != nil {
			onError(w, r, err)
			return
		}
	}
	if t.unix {
		forwardLocal(w, r, t, path, body, timeout, onError)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	out := r.WithContext(ctx) // the reverse proxy clones it again; a shallow copy is enough here
	u := *r.URL
	u.Path, u.RawPath = path, ""
	out.URL = &u
	if body != nil {
		out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	rp := *t.rp
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			onError(w, r, err)
			return
		}
		if errors.Is(r.Context().Err(), context.Canceled) && !errors.Is(err, errRejectedToken) {
			return // the caller went away
		}
		onError(w, r, t.classify(err, timeout))
	}
	rp.ServeHTTP(w, out)
}

// forwardLocal is Forward for a session manager on this host's unix socket: the same
// header rules as the reverse proxy (hop-by-hop headers, the caller's credentials and cookies
// stay behind; no cookie comes back), without httputil.ReverseProxy's per-request copies and
// goroutines. The connection's deadline bounds the exchange, the caller going away ends it.
func forwardLocal(w http.ResponseWriter, in *http.Request, t *target, path string, body []byte, timeout time.Duration, onError func(http.ResponseWriter, *http.Request, error)) {
	u := url.URL{Path: path, RawQuery: in.URL.RawQuery}
	out := &outgoing{method: in.Method, uri: u.RequestURI(), header: make(http.Header, len(in.Header)), body: body}
	copyEndToEnd(out.header, in.Header, "Authorization", "Cookie")
	resp, err := t.local.do(in.Context(), out, time.Now().Add(timeout))
	if err != nil {
		if errors.Is(in.Context().Err(), context.Canceled) {
			return // the caller went away
		}
		onError(w, in, t.classify(err, timeout))
		return
	}
	defer resp.Body.Close()
	copyEndToEnd(w.Header(), resp.Header, "Set-Cookie")
	w.WriteHeader(resp.StatusCode)
	buf := buffers.Get()
	io.CopyBuffer(w, resp.Body, buf)
	buffers.Put(buf)
}

// hopByHop are the headers that belong to one connection, never forwarded.
var hopByHop = map[string]bool{"Connection": true, "Proxy-Connection": true, "Keep-Alive": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true}

// copyEndToEnd copies src's headers into dst but the hop-by-hop ones, those src's Connection
// header names, and skip.
func copyEndToEnd(dst, src http.Header, skip ...string) {
	var named map[string]bool
	for _, v := range src["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				if named == nil {
					named = map[string]bool{}
				}
				named[http.CanonicalHeaderKey(name)] = true
			}
		}
	}
	for k, vv := range src {
		if hopByHop[k] || named[k] || slices.Contains(skip, k) {
			continue
		}
		dst[k] = vv
	}
}

// Status is one cliente's session-manager status as the hub reports it: the session manager's
// own fields when it answered, else State is down, failed, unresponsive or error and Error says why.
type Status struct {
	Cliente     string `json:"cliente"`
	Name        string `json:"name,omitempty"`
	State       string `json:"state"`
	JID         string `json:"jid,omitempty"`
	Phone       string `json:"phone,omitempty"`
	PushName    string `json:"push_name,omitempty"`
	Since       string `json:"since,omitempty"`
	LastError   string `json:"last_error,omitempty"`
	QRExpiresAt string `json:"qr_expires_at,omitempty"`
	// Error explains why the hub could not get a status.
	Error string `json:"error,omitempty"`
}

// Status asks cliente id's session manager for its status, within timeout.
func (p *Pool) Status(ctx context.Context, id string, timeout time.Duration) Status {
	var st Status
	err := p.Call(ctx, id, http.MethodGet, "/status", nil, &st, timeout)
	st.Cliente = id
	if err != nil {
		var u *Unavailable
		if errors.As(err, &u) {
			return Status{Cliente: id, State: u.State, Error: u.Err.Message}
		}
		return Status{Cliente: id, State: StateError, Error: err.Error()}
	}
	return st
}

// StatusAll asks every one of ids at once and returns the answers in the same order.
func (p *Pool) StatusAll(ctx context.Context, ids []string, timeout time.Duration) []Status {
	out := make([]Status, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { out[i] = p.Status(ctx, id, timeout) })
	}
	wg.Wait()
	return out
}

// Where describes how cliente id is reached ("socket /run/..." or a URL), for messages.
func (p *Pool) Where(id string) string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if t := p.targets[id]; t != nil {
		return t.where
	}
	return ""
}
