package session

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	qrcode "github.com/skip2/go-qrcode"

	"github.com/leadmaster/leadmaster/internal/whatsapp"
)

// maxBody bounds every request body.
const maxBody = 64 << 10

// Server is the session manager's HTTP API.
//
// It serves before the store is open, so systemd hears READY=1 within milliseconds: /health
// answers at once, and other routes wait (up to startWait) until Attach supplies the
// Manager. The store opens in the background meanwhile.
type Server struct {
	log   *slog.Logger
	token func() string
	start time.Time

	ready    chan struct{} // closed by Attach; m and events are set before
	stopping chan struct{} // closed by Stopping: long polls answer at once
	stopOnce sync.Once
	m        *Manager
	events   *EventLog
	failed   error
	onceErr  sync.Once
}

// startWait bounds how long a request waits for the store to open.
const startWait = 30 * time.Second

// NewServer returns the API. token returns the bearer token TCP callers must present ("":
// every TCP request but /health is refused). Call Attach (or Fail) once start-up is done.
func NewServer(log *slog.Logger, token func() string) *Server {
	return &Server{log: log, token: token, start: time.Now(), ready: make(chan struct{}), stopping: make(chan struct{})}
}

// Stopping ends every long poll now (with what it has), so a graceful stop need not wait
// for them; the hub simply polls the next process.
func (s *Server) Stopping() {
	s.stopOnce.Do(func() { close(s.stopping) })
}

// Attach connects the API to the session once its store is open.
func (s *Server) Attach(m *Manager, events *EventLog) {
	s.onceErr.Do(func() {
		s.m, s.events = m, events
		close(s.ready)
	})
}

// Fail makes every waiting and later request answer 503 with err (start-up failed; the
// process is about to exit).
func (s *Server) Fail(err error) {
	s.onceErr.Do(func() {
		s.failed = err
		close(s.ready)
	})
}

// whenReady holds requests until Attach, except /health, which answers "starting".
func (s *Server) whenReady(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.ready:
		default:
			if r.URL.Path == "/health" {
				writeJSON(w, http.StatusOK, map[string]string{"status": "starting"})
				return
			}
			t := time.NewTimer(startWait)
			defer t.Stop()
			select {
			case <-s.ready:
			case <-r.Context().Done():
				return
			case <-t.C:
				w.Header().Set("Retry-After", "5")
				writeError(w, http.StatusServiceUnavailable, "unavailable", "the session manager is still opening its store")
				return
			}
		}
		if s.failed != nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "the session manager failed to start; see its journal")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Handler returns the API; local is true for unix-socket listeners, which file permissions
// guard, and false for TCP, which needs the bearer token.
func (s *Server) Handler(local bool) http.Handler {
	r := mux.NewRouter()
	s.routes(r)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path))
	})
	var h http.Handler = s.whenReady(r)
	if !local {
		h = s.requireToken(h)
	}
	return s.recoverPanics(h)
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				buf := make([]byte, 4096)
				buf = buf[:runtime.Stack(buf, false)]
				s.log.Error("handler panic", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(buf))
				writeError(w, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			next.ServeHTTP(w, r)
			return
		}
		want := s.token()
		if want == "" {
			writeError(w, http.StatusForbidden, "forbidden", "TCP access needs a token: set the session-manager-token credential or token_file for this cliente")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="session-manager"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.m.Check(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.m.Status())
}

func (s *Server) handleQRGet(w http.ResponseWriter, r *http.Request) {
	code, expires, err := s.m.QR()
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case r.URL.Query().Get("format") == "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, code)
	case r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json"):
		writeJSON(w, http.StatusOK, map[string]any{"code": code, "expires_at": expires.UTC()})
	default:
		png, err := qrcode.Encode(code, qrcode.Medium, 320)
		if err != nil {
			s.writeErr(w, r, fmt.Errorf("render QR: %w", err))
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Expires", expires.UTC().Format(http.TimeFormat))
		w.Write(png)
	}
}

func (s *Server) handlePairCodeCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Phone string `json:"phone"`
	}
	if !decode(w, r, &req) {
		return
	}
	code, err := s.m.PairCode(r.Context(), req.Phone)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"code": code})
}

func (s *Server) handleMessageCreate(w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	if !decode(w, r, &req) {
		return
	}
	if req.To == "" {
		writeError(w, http.StatusBadRequest, "bad_request", `"to" is required: a phone number with country code or a JID`)
		return
	}
	res, err := s.m.Send(r.Context(), req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleContactsList(w http.ResponseWriter, r *http.Request) {
	cs, err := s.m.Contacts(r.Context())
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	type contact struct {
		JID          string `json:"jid"`
		Phone        string `json:"phone"`
		Name         string `json:"name"`
		PushName     string `json:"push_name"`
		BusinessName string `json:"business_name"`
	}
	out := make([]contact, len(cs))
	for i, c := range cs {
		out[i] = contact(c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"contacts": out})
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if err := s.m.Logout(r.Context()); err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"state": StateQR})
}

func (s *Server) handleEventsList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err := intParam(q.Get("after"), 0, 0, 1<<62)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "after: "+err.Error())
		return
	}
	limit, err := intParam(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "limit: "+err.Error())
		return
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 || wait > 60*time.Second {
			writeError(w, http.StatusBadRequest, "bad_request", "wait: must be a duration between 0s and 60s, like 25s")
			return
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	evs, err := s.events.Read(ctx, after, int(limit), wait)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	next := after
	if len(evs) > 0 {
		next = evs[len(evs)-1].Seq
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs, "next": next, "log_id": s.events.ID()})
}

func intParam(s string, def, lo, hi int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("must be an integer between %d and %d", lo, hi)
	}
	return v, nil
}

// writeErr maps domain errors to statuses; only unexpected ones are logged, and their text
// is not shown to the caller.
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	st := s.m.Status()
	switch {
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, ErrInvalidPhone):
		writeError(w, http.StatusUnprocessableEntity, "invalid_phone", err.Error())
	case errors.Is(err, whatsapp.ErrNotOnWhatsApp):
		writeError(w, http.StatusUnprocessableEntity, "not_on_whatsapp", "that number has no WhatsApp account")
	case errors.Is(err, ErrLinked), errors.Is(err, whatsapp.ErrLinked):
		writeError(w, http.StatusConflict, "already_linked", fmt.Sprintf("cliente %s is already linked as %s", st.Cliente, st.Phone))
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, ErrNotReady):
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, "qr_not_ready", fmt.Sprintf("no QR code yet for cliente %s (state %s); retry shortly", st.Cliente, st.State))
	case errors.Is(err, whatsapp.ErrNotLinked):
		writeError(w, http.StatusConflict, "not_linked", fmt.Sprintf("cliente %s is not linked to WhatsApp (state %s)", st.Cliente, st.State))
	case errors.Is(err, ErrNotConnected):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "not_connected", fmt.Sprintf("cliente %s is not connected to WhatsApp (state %s)", st.Cliente, st.State))
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, "timeout", "WhatsApp did not answer in time")
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error; see the session manager's journal")
	}
}

// jsonBuffers hold answers while they are encoded (a failed encoding must not leave half an
// answer written); jsonType is the Content-Type every JSON answer gets.
var (
	jsonBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	jsonType    = []string{"application/json"}
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	buf := jsonBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 { // a large answer (a contacts list) is not kept around
			jsonBuffers.Put(buf)
		}
	}()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"encode response"}}`, http.StatusInternalServerError)
		return
	}
	w.Header()["Content-Type"] = jsonType
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// decode reads a JSON body into v, answering the request itself when that fails.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "bad_request", "Content-Type must be application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", maxBody))
			return false
		}
		if errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, "bad_request", "request body is empty; send a JSON object")
			return false
		}
		writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: more than one value")
		return false
	}
	return true
}
