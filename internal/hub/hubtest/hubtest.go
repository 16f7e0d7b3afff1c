// Package hubtest gives the hub's tests a stand-in session manager: the HTTP API of
// docs/session-manager-api.md on a real unix socket, with state, contacts and an event log the
// test controls.
package hubtest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Event is one entry of the stand-in's event log.
type Event struct {
	Seq  int64           `json:"seq"`
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

// Contact is one entry of GET /contacts.
type Contact struct {
	JID          string `json:"jid"`
	Phone        string `json:"phone"`
	Name         string `json:"name"`
	PushName     string `json:"push_name"`
	BusinessName string `json:"business_name"`
}

// SessionManager is a stand-in session manager serving on a unix socket.
type SessionManager struct {
	ID     string
	Socket string

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced when the log grows
	state    string
	phone    string
	events   []Event
	contacts []Contact
	requests []string
	// StatusDelay delays GET /status (to test the hub's timeouts).
	statusDelay time.Duration

	srv *http.Server
	l   net.Listener
}

// StartSessionManager serves a stand-in for cliente id on socket (its directory is created)
// until the test ends.
func StartSessionManager(tb testing.TB, socket, id string) *SessionManager {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		tb.Fatal(err)
	}
	os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		tb.Fatalf("listen %s: %v", socket, err)
	}
	sm := &SessionManager{ID: id, Socket: socket, state: "qr", changed: make(chan struct{}), l: l}
	sm.srv = &http.Server{Handler: sm}
	go sm.srv.Serve(l)
	tb.Cleanup(sm.Close)
	return sm
}

// Close stops serving; the socket file is removed (a later dial finds nothing).
func (sm *SessionManager) Close() {
	sm.srv.Close()
	os.Remove(sm.Socket)
}

// SetState sets the state GET /status reports and logs a state event.
func (sm *SessionManager) SetState(state, phone string) {
	sm.mu.Lock()
	sm.state, sm.phone = state, phone
	sm.mu.Unlock()
	sm.AddEvent("state", map[string]string{"state": state, "phone": phone})
}

// SetStatusDelay makes GET /status wait d before answering.
func (sm *SessionManager) SetStatusDelay(d time.Duration) {
	sm.mu.Lock()
	sm.statusDelay = d
	sm.mu.Unlock()
}

// SetContacts sets what GET /contacts lists.
func (sm *SessionManager) SetContacts(cs []Contact) {
	sm.mu.Lock()
	sm.contacts = cs
	sm.mu.Unlock()
}

// AddEvent appends an event of type typ with data to the log and returns its sequence number.
func (sm *SessionManager) AddEvent(typ string, data any) int64 {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	seq := int64(len(sm.events) + 1)
	sm.events = append(sm.events, Event{Seq: seq, Type: typ, Time: time.Now().UTC().Truncate(time.Millisecond), Data: b})
	close(sm.changed)
	sm.changed = make(chan struct{})
	return seq
}

// Message logs an incoming text message from phone and returns its sequence number.
func (sm *SessionManager) Message(id, from, pushName, text string) int64 {
	return sm.AddEvent("message", map[string]any{"id": id, "from": from, "from_jid": from[1:] + "@s.whatsapp.net",
		"push_name": pushName, "text": text, "timestamp": time.Now().UTC().Format(time.RFC3339)})
}

// Requests returns "METHOD /path?query" for every request served so far.
func (sm *SessionManager) Requests() []string {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return append([]string(nil), sm.requests...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// ServeHTTP serves the session-manager API.
func (sm *SessionManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sm.mu.Lock()
	sm.requests = append(sm.requests, r.Method+" "+r.URL.RequestURI())
	state, phone, delay := sm.state, sm.phone, sm.statusDelay
	sm.mu.Unlock()
	route := r.Method + " " + r.URL.Path
	switch route {
	case "GET /health":
		writeJSON(w, 200, map[string]string{"status": "ok"})
	case "GET /status":
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		writeJSON(w, 200, map[string]string{"cliente": sm.ID, "state": state, "phone": phone, "since": "2026-01-02T03:04:05Z"})
	case "GET /qr":
		if state == "connected" {
			writeErr(w, 409, "already_linked", "cliente "+sm.ID+" is already linked")
			return
		}
		if r.Header.Get("Accept") == "application/json" {
			writeJSON(w, 200, map[string]string{"code": "2@fake-qr-" + sm.ID, "expires_at": time.Now().Add(20 * time.Second).UTC().Format(time.RFC3339)})
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Write([]byte("\x89PNG\r\n\x1a\nfake-" + sm.ID))
	case "POST /pair-code":
		var req struct {
			Phone string `json:"phone"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeErr(w, 400, "bad_request", err.Error())
			return
		}
		writeJSON(w, 200, map[string]string{"code": "ABCD-EFGH"})
	case "POST /logout":
		sm.SetState("qr", "")
		writeJSON(w, 200, map[string]string{"state": "qr"})
	case "GET /contacts":
		sm.mu.Lock()
		cs := append([]Contact{}, sm.contacts...)
		sm.mu.Unlock()
		writeJSON(w, 200, map[string]any{"contacts": cs})
	case "POST /messages":
		var req struct{ To, Text, ID string }
		json.NewDecoder(r.Body).Decode(&req)
		if req.ID == "" {
			req.ID = fmt.Sprintf("3EB0%d", time.Now().UnixNano())
		}
		writeJSON(w, 200, map[string]any{"id": req.ID, "to": req.To, "state": "sent"})
	case "GET /events":
		sm.serveEvents(w, r)
	default:
		writeErr(w, 404, "not_found", "no route "+route)
	}
}

func (sm *SessionManager) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		limit = 100
	}
	wait, _ := time.ParseDuration(q.Get("wait"))
	deadline := time.After(min(wait, 60*time.Second))
	for {
		sm.mu.Lock()
		var out []Event
		for _, e := range sm.events {
			if e.Seq > after && len(out) < limit {
				out = append(out, e)
			}
		}
		changed := sm.changed
		sm.mu.Unlock()
		if len(out) > 0 || wait == 0 {
			next := after
			if len(out) > 0 {
				next = out[len(out)-1].Seq
			}
			if out == nil {
				out = []Event{}
			}
			writeJSON(w, 200, map[string]any{"events": out, "next": next})
			return
		}
		select {
		case <-changed:
		case <-deadline:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}
