package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/store"
	"github.com/leadmaster/leadmaster/internal/store/storetest"
	"github.com/leadmaster/leadmaster/internal/whatsapp"
)

// fakeWA is a hand-written WhatsApp double that records what Manager asks of it.
type fakeWA struct {
	mu        sync.Mutex
	linked    bool
	connected bool
	sends     []string // id|to|text
	failNext  error
	notOnWA   map[string]bool
	nextID    int
}

func (f *fakeWA) Linked() bool                  { f.mu.Lock(); defer f.mu.Unlock(); return f.linked }
func (f *fakeWA) Connected() bool               { f.mu.Lock(); defer f.mu.Unlock(); return f.connected }
func (f *fakeWA) Self() (string, string)        { return "5491155550000:1@s.whatsapp.net", "Ana" }
func (f *fakeWA) Connect(context.Context) error { return nil }
func (f *fakeWA) Disconnect()                   {}
func (f *fakeWA) Reset() error {
	f.mu.Lock()
	f.linked, f.connected = false, false
	f.mu.Unlock()
	return nil
}
func (f *fakeWA) Logout(context.Context) error                          { return f.Reset() }
func (f *fakeWA) Contacts(context.Context) ([]whatsapp.Contact, error)  { return nil, nil }
func (f *fakeWA) PairPhone(_ context.Context, p string) (string, error) { return "ABCD-EFGH", nil }
func (f *fakeWA) NewMessageID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	return fmt.Sprintf("3EB0%08X", f.nextID)
}
func (f *fakeWA) ResolvePhone(_ context.Context, p string) (string, error) {
	if f.notOnWA[p] {
		return "", whatsapp.ErrNotOnWhatsApp
	}
	return strings.TrimPrefix(p, "+") + "@s.whatsapp.net", nil
}
func (f *fakeWA) SendText(_ context.Context, to, id, text string) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNext; err != nil {
		f.failNext = nil
		return time.Time{}, err
	}
	f.sends = append(f.sends, id+"|"+to+"|"+text)
	return time.Unix(1700000000, 0), nil
}

func newTestManager(tb testing.TB, dsn string) (*Manager, *fakeWA, *EventLog) {
	tb.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dsn, "")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := Migrate(ctx, db); err != nil {
		tb.Fatal(err)
	}
	events, err := OpenEventLog(ctx, db)
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewManager(Options{Cliente: "51", DB: db, Events: events, Log: log, ReconnectMaxDelay: time.Second})
	wa := &fakeWA{linked: true, connected: true, notOnWA: map[string]bool{"+5491144440000": true}}
	m.wa = wa
	return m, wa, events
}

func newTestServer(m *Manager, token func() string) *Server {
	s := NewServer(m.log, token)
	s.Attach(m, m.opts.Events)
	return s
}

func forEachDB(t *testing.T, fn func(t *testing.T, dsn string)) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) { fn(t, dsn) })
	}
}

func TestSendOncePerID(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		m, wa, events := newTestManager(t, dsn)
		ctx := context.Background()
		first, err := m.Send(ctx, SendRequest{To: "+54 9 11 5555-1234", Text: "hola", ID: "LEAD0001"})
		if err != nil {
			t.Fatalf("Send() error = %v", err)
		}
		if first.To != "5491155551234@s.whatsapp.net" || first.Duplicate || first.State != "sent" {
			t.Errorf("first Send() = %+v", first)
		}
		again, err := m.Send(ctx, SendRequest{To: "5491155551234", Text: "hola", ID: "LEAD0001"})
		if err != nil {
			t.Fatalf("repeated Send() error = %v", err)
		}
		if !again.Duplicate || !again.Timestamp.Equal(first.Timestamp) {
			t.Errorf("repeated Send() = %+v, want the first result marked duplicate", again)
		}
		if len(wa.sends) != 1 {
			t.Errorf("WhatsApp got %d sends, want 1: %v", len(wa.sends), wa.sends)
		}
		// Reused ID for a different text is a conflict, not a silent no-op.
		if _, err := m.Send(ctx, SendRequest{To: "5491155551234", Text: "otra cosa", ID: "LEAD0001"}); !errors.Is(err, ErrConflict) {
			t.Errorf("Send(same id, other text) error = %v, want conflict", err)
		}
		evs, _ := events.Read(ctx, 0, 100, 0)
		var sentEvents int
		for _, e := range evs {
			if e.Type == "sent" {
				sentEvents++
			}
		}
		if sentEvents != 1 {
			t.Errorf("event log has %d sent events, want 1", sentEvents)
		}
	})
}

func TestSendRetriesAfterFailureWithSameID(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		m, wa, _ := newTestManager(t, dsn)
		ctx := context.Background()
		wa.failNext = errors.New("server did not ack")
		if _, err := m.Send(ctx, SendRequest{To: "+5491155551234", Text: "hola", ID: "RETRY001"}); err == nil {
			t.Fatal("Send() error = nil, want the WhatsApp error")
		}
		res, err := m.Send(ctx, SendRequest{To: "+5491155551234", Text: "hola", ID: "RETRY001"})
		if err != nil || res.Duplicate {
			t.Fatalf("retry Send() = %+v, %v; want a real send", res, err)
		}
		if len(wa.sends) != 1 || !strings.HasPrefix(wa.sends[0], "RETRY001|") {
			t.Errorf("sends = %v, want one with the same id", wa.sends)
		}
	})
}

func TestSendErrors(t *testing.T) {
	m, wa, _ := newTestManager(t, storetest.DSNs(t)["sqlite"])
	srv := httptest.NewServer(newTestServer(m, func() string { return "" }).Handler(true))
	defer srv.Close()
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"no body", ``, 400, "bad_request"},
		{"unknown field", `{"to":"+5491155551234","text":"x","prio":1}`, 400, "bad_request"},
		{"no to", `{"text":"x"}`, 400, "bad_request"},
		{"empty text", `{"to":"+5491155551234","text":"  "}`, 400, "bad_request"},
		{"bad id", `{"to":"+5491155551234","text":"x","id":"no spaces!"}`, 400, "bad_request"},
		{"bad phone", `{"to":"12","text":"x"}`, 422, "invalid_phone"},
		{"not on whatsapp", `{"to":"+54 9 11 4444-0000","text":"x"}`, 422, "not_on_whatsapp"},
		{"group jid", `{"to":"123@g.us","text":"x"}`, 400, "bad_request"},
		{"too large", `{"to":"+5491155551234","text":"` + strings.Repeat("a", 70000) + `"}`, 413, "too_large"},
		{"ok", `{"to":"+5491155551234","text":"hola"}`, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/messages", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct{ Code, Message string }
			}
			json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tt.status || body.Error.Code != tt.code {
				t.Errorf("status %d code %q (%s), want %d %q", resp.StatusCode, body.Error.Code, body.Error.Message, tt.status, tt.code)
			}
		})
	}
	wa.mu.Lock()
	wa.connected = false
	wa.mu.Unlock()
	resp, _ := http.Post(srv.URL+"/messages", "application/json", strings.NewReader(`{"to":"+5491155551234","text":"hola"}`))
	if resp.StatusCode != 503 {
		t.Errorf("send while disconnected: status %d, want 503", resp.StatusCode)
	}
	resp.Body.Close()
}

func TestTCPNeedsToken(t *testing.T) {
	m, _, _ := newTestManager(t, storetest.DSNs(t)["sqlite"])
	go m.Run(t.Context(), m.wa)
	token := "s3cret-token"
	srv := httptest.NewServer(newTestServer(m, func() string { return token }).Handler(false))
	defer srv.Close()
	get := func(path, auth string) int {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/health", ""); got != 200 {
		t.Errorf("/health without token: %d, want 200", got)
	}
	if got := get("/status", ""); got != 401 {
		t.Errorf("/status without token: %d, want 401", got)
	}
	if got := get("/status", "Bearer wrong"); got != 401 {
		t.Errorf("/status wrong token: %d, want 401", got)
	}
	if got := get("/status", "Bearer "+token); got != 200 {
		t.Errorf("/status with token: %d, want 200", got)
	}
	token = ""
	if got := get("/status", "Bearer "); got != 403 {
		t.Errorf("/status with no token configured: %d, want 403", got)
	}
}

func TestEventLogLongPoll(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		_, _, events := newTestManager(t, dsn)
		ctx := context.Background()
		start := time.Now()
		got, err := events.Read(ctx, 0, 10, 50*time.Millisecond)
		if err != nil || len(got) != 0 || time.Since(start) < 40*time.Millisecond {
			t.Fatalf("Read on empty log = %v, %v after %v; want nothing after the wait", got, err, time.Since(start))
		}
		done := make(chan []Event)
		go func() {
			evs, _ := events.Read(ctx, 0, 10, 10*time.Second)
			done <- evs
		}()
		time.Sleep(20 * time.Millisecond)
		if _, err := events.Append(ctx, "message", map[string]string{"text": "hola"}); err != nil {
			t.Fatal(err)
		}
		select {
		case evs := <-done:
			if len(evs) != 1 || evs[0].Seq != 1 || evs[0].Type != "message" {
				t.Errorf("woken Read = %+v", evs)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("long poll not woken by Append")
		}
		for i := 0; i < 5; i++ {
			events.Append(ctx, "receipt", map[string]int{"i": i})
		}
		page, _ := events.Read(ctx, 2, 3, 0)
		if len(page) != 3 || page[0].Seq != 3 || page[2].Seq != 5 {
			t.Errorf("Read(after 2, limit 3) seqs = %v", seqs(page))
		}
	})
}

func seqs(evs []Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func TestEventsQueryErrors(t *testing.T) {
	m, _, _ := newTestManager(t, storetest.DSNs(t)["sqlite"])
	srv := httptest.NewServer(newTestServer(m, func() string { return "" }).Handler(true))
	defer srv.Close()
	for _, q := range []string{"after=-1", "after=x", "limit=0", "limit=5000", "wait=2m", "wait=soon"} {
		resp, err := http.Get(srv.URL + "/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("/events?%s: status %d, want 400", q, resp.StatusCode)
		}
	}
}

// connectCounter wraps fakeWA to count and signal Connect calls.
type connectCounter struct {
	*fakeWA
	calls chan struct{}
	err   error
}

func (c *connectCounter) Connect(context.Context) error {
	c.calls <- struct{}{}
	return c.err
}

func TestReconnectAndLogout(t *testing.T) {
	m, wa, events := newTestManager(t, storetest.DSNs(t)["sqlite"])
	wa.connected = false
	cc := &connectCounter{fakeWA: wa, calls: make(chan struct{}, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { m.Run(ctx, cc); close(done) }()
	waitCall := func(what string) {
		t.Helper()
		select {
		case <-cc.calls:
			t.Logf("Connect call %s at state %s", what, m.Status().State)
		case <-time.After(5 * time.Second):
			t.Fatalf("no Connect call %s", what)
		}
	}
	waitCall("at start")
	wa.mu.Lock()
	wa.connected = true
	wa.mu.Unlock()
	m.HandleEvent(whatsapp.Event{Type: whatsapp.EventConnected})
	if st := m.Status(); st.State != StateConnected || st.Phone != "+5491155550000" {
		t.Fatalf("after Connected: %+v", st)
	}
	// Let the loop take the "connected" kick and come back to waiting.
	for len(m.kick) > 0 {
		time.Sleep(time.Millisecond)
	}
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	// The connection drops: disconnected, then a reconnect after the backoff (about 1 s).
	wa.mu.Lock()
	wa.connected = false
	wa.mu.Unlock()
	start := time.Now()
	m.HandleEvent(whatsapp.Event{Type: whatsapp.EventDisconnected})
	if st := m.Status(); st.State != StateDisconnected {
		t.Errorf("after Disconnected: state %s", st.State)
	}
	waitCall("after the drop")
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Errorf("reconnected after %v, want a backoff of about 1s", d)
	}
	// The health check answers while the loop is waiting.
	hctx, hcancel := context.WithTimeout(ctx, time.Second)
	if err := m.Check(hctx); err != nil {
		t.Errorf("Check() = %v", err)
	}
	hcancel()
	// Logged out from the phone: the device is reset and a new connection asks for a QR.
	m.HandleEvent(whatsapp.Event{Type: whatsapp.EventLoggedOut, Err: "device removed"})
	waitCall("after the logout")
	if wa.Linked() {
		t.Error("device still linked after LoggedOut; want Reset")
	}
	m.HandleEvent(whatsapp.Event{Type: whatsapp.EventQR, QR: "2@abc,def,ghi,jkl", QRExpires: time.Now().Add(time.Minute)})
	if code, _, err := m.QR(); err != nil || code != "2@abc,def,ghi,jkl" {
		t.Errorf("QR() = %q, %v", code, err)
	}
	cancel()
	<-done
	evs, _ := events.Read(context.Background(), 0, 100, 0)
	var states []string
	for _, e := range evs {
		if e.Type == "state" {
			var d struct{ State string }
			json.Unmarshal(e.Data, &d)
			states = append(states, d.State)
		}
	}
	want := "connected disconnected connecting logged_out connecting qr"
	if got := strings.Join(states, " "); got != want {
		t.Errorf("state events = %q, want %q", got, want)
	}
}

// slowWA holds SendText until released, like a send in flight when the caller dies.
type slowWA struct {
	*fakeWA
	entered, release chan struct{}
}

func (s *slowWA) SendText(ctx context.Context, to, id, text string) (time.Time, error) {
	close(s.entered)
	<-s.release
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	return s.fakeWA.SendText(ctx, to, id, text)
}

func TestSendOutlivesItsCaller(t *testing.T) {
	m, wa, _ := newTestManager(t, storetest.DSNs(t)["sqlite"])
	slow := &slowWA{fakeWA: wa, entered: make(chan struct{}), release: make(chan struct{})}
	m.wa = slow
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := m.Send(ctx, SendRequest{To: "+5491155551234", Text: "hola", ID: "INFLIGHT01"})
		done <- err
	}()
	<-slow.entered
	cancel() // the hub was killed mid-request
	close(slow.release)
	<-done
	m.wa = wa
	res, err := m.Send(context.Background(), SendRequest{To: "+5491155551234", Text: "hola", ID: "INFLIGHT01"})
	if err != nil || !res.Duplicate {
		t.Fatalf("retry after the caller died = %+v, %v; want the ledger's duplicate", res, err)
	}
	if len(wa.sends) != 1 {
		t.Errorf("WhatsApp got %d sends, want 1", len(wa.sends))
	}
}

func TestEventLogIDIsStable(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		_, _, events := newTestManager(t, dsn)
		db, err := store.Open(context.Background(), dsn, "")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		again, err := OpenEventLog(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		if events.ID() == "" || again.ID() != events.ID() {
			t.Errorf("log id %q, reopened %q: want one stable, non-empty id", events.ID(), again.ID())
		}
		other, _, _ := newTestManager(t, storetest.DSNs(t)["sqlite"])
		if other.opts.Events.ID() == events.ID() {
			t.Error("two different logs share an id")
		}
	})
}
