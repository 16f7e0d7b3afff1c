package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/store"
	"github.com/leadmaster/leadmaster/internal/store/storetest"
)

const secret = "0123456789abcdef-secret"

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"evt_1"}`)
	h := http.Header{}
	h.Set(HeaderTimestamp, "1800000000")
	h.Set(HeaderSignature, Sign(secret, now.Unix(), body))
	if err := Verify(secret, h, body, 5*time.Minute, now); err != nil {
		t.Errorf("Verify(good) = %v", err)
	}
	for _, tt := range []struct {
		name   string
		secret string
		body   string
		now    time.Time
	}{
		{"wrong secret", "another-secret-of-16", string(body), now},
		{"tampered body", secret, `{"id":"evt_2"}`, now},
		{"replayed later", secret, string(body), now.Add(10 * time.Minute)},
	} {
		if err := Verify(tt.secret, h, []byte(tt.body), 5*time.Minute, tt.now); err == nil {
			t.Errorf("%s: Verify = nil, want an error", tt.name)
		}
	}
	// The documented recipe: "v1=" + hex HMAC-SHA256(secret, "timestamp.body").
	m := hmac.New(sha256.New, []byte("k"))
	m.Write([]byte("1800000000.{}"))
	if got, want := Sign("k", 1800000000, []byte("{}")), "v1="+hex.EncodeToString(m.Sum(nil)); got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

// receiver records deliveries and fails the first failFirst of them.
type receiver struct {
	mu        sync.Mutex
	failFirst int
	calls     int
	ids       []string
	bad       []string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if err := Verify(secret, req.Header, body, time.Minute, time.Now()); err != nil {
		r.bad = append(r.bad, err.Error())
	}
	if r.calls <= r.failFirst {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	var p Payload
	json.Unmarshal(body, &p)
	if p.ID != req.Header.Get(HeaderEventID) {
		r.bad = append(r.bad, "payload id "+p.ID+" != header "+req.Header.Get(HeaderEventID))
	}
	r.ids = append(r.ids, p.ID)
}

func (r *receiver) delivered() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

type fixture struct {
	db    *store.DB
	cfg   *config.Config
	store *events.Store
}

func newFixture(t *testing.T, dsn, url string) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dsn, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, m := range []struct {
		c  string
		ms []store.Migration
	}{{contacts.Component, contacts.Migrations}, {events.Component, events.Migrations}, {Component, Migrations}} {
		if err := db.Migrate(ctx, m.c, m.ms); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.Clientes = map[string]config.Cliente{"51": {WebhookURL: url, WebhookSecret: secret}, "52": {}}
	return &fixture{db: db, cfg: cfg}
}

func (f *fixture) service() *Service {
	s := New(f.db, func() *config.Config { return f.cfg }, nil)
	s.Backoff = func(int) time.Duration { return 20 * time.Millisecond }
	s.Poll = 20 * time.Millisecond
	return s
}

func (f *fixture) emit(t *testing.T, s *Service, cliente string, seqs ...int64) []string {
	t.Helper()
	st := events.NewStore(f.db, s)
	var evs []events.Event
	for _, q := range seqs {
		evs = append(evs, events.Event{Seq: q, Type: "message", Time: time.Now(), Data: json.RawMessage(`{"id":"M","from":"+5491155550001","text":"hola"}`)})
	}
	stored, err := st.Apply(context.Background(), cliente, evs)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range stored {
		ids = append(ids, e.ID)
	}
	return ids
}

func run(t *testing.T, s *Service) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, nil); close(done) }()
	return func() { cancel(); <-done }
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDeliveryRetriesInOrderAcrossRestart(t *testing.T) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) {
			rcv := &receiver{failFirst: 3}
			ts := httptest.NewServer(rcv)
			defer ts.Close()
			f := newFixture(t, dsn, ts.URL)

			// Events stored while no dispatcher runs (the hub crashed right after the commit).
			s := f.service()
			ids := f.emit(t, s, "51", 1, 2, 3)
			f.emit(t, s, "52", 1) // no webhook: nothing queued

			// A new process picks them up, retries through the failures, keeps the order.
			s2 := f.service()
			stop := run(t, s2)
			ids = append(ids, f.emit(t, s2, "51", 4)...)
			s2.Wake()
			waitFor(t, "all delivered", func() bool { return len(rcv.delivered()) == 4 })
			stop()
			if diff := cmp.Diff(rcv.delivered(), ids); diff != "" {
				t.Errorf("delivered (-got +want):\n%s", diff)
			}
			if len(rcv.bad) > 0 {
				t.Errorf("bad deliveries: %v", rcv.bad)
			}
			ds, err := s2.Deliveries(context.Background(), "51", StateDelivered, 10)
			if err != nil || len(ds) != 4 {
				t.Fatalf("delivered list = %d, %v", len(ds), err)
			}
			if ds[len(ds)-1].Attempts != 4 {
				t.Errorf("first event took %d attempts, want 4 (3 failures)", ds[len(ds)-1].Attempts)
			}
			if other, _ := s2.Deliveries(context.Background(), "52", "", 10); len(other) != 0 {
				t.Errorf("cliente without webhook has %d deliveries", len(other))
			}
		})
	}
}

func TestDeadLetterAndRetry(t *testing.T) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rcv := &receiver{failFirst: 1 << 30}
			ts := httptest.NewServer(rcv)
			defer ts.Close()
			f := newFixture(t, dsn, ts.URL)
			s := f.service()
			s.MaxAttempts = 3
			ids := f.emit(t, s, "51", 1)
			stop := run(t, s)
			waitFor(t, "dead", func() bool {
				ds, _ := s.Deliveries(ctx, "51", StateDead, 10)
				return len(ds) == 1
			})
			stop()
			dead, _ := s.Deliveries(ctx, "51", StateDead, 10)
			if dead[0].ID != ids[0] || dead[0].Attempts != 3 || dead[0].LastStatus != 503 || dead[0].LastError == "" {
				t.Errorf("dead letter = %+v", dead[0])
			}
			rcv.mu.Lock()
			rcv.failFirst = 0
			rcv.mu.Unlock()
			if err := s.Retry(ctx, "52", ids[0]); err == nil {
				t.Error("another cliente retried 51's delivery")
			}
			if err := s.Retry(ctx, "51", ids[0]); err != nil {
				t.Fatal(err)
			}
			stop = run(t, s)
			waitFor(t, "redelivered", func() bool { return len(rcv.delivered()) == 1 })
			stop()
		})
	}
}

func TestSettings(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, storetest.DSNs(t)["sqlite"], "https://hooks.example/from-config")
	s := f.service()
	got, _ := s.Get(ctx, "51")
	if got.Source != "config" || got.URL != "https://hooks.example/from-config" || got.Secret == secret {
		t.Errorf("from config = %+v (secret must be masked)", got)
	}
	set, err := s.Set(ctx, "51", "https://hooks.example/api", "")
	if err != nil || len(set.Secret) < 16 {
		t.Fatalf("Set = %+v, %v; want a generated secret shown once", set, err)
	}
	got, _ = s.Get(ctx, "51")
	if got.Source != "api" || got.URL != "https://hooks.example/api" {
		t.Errorf("after Set = %+v", got)
	}
	if _, err := s.Set(ctx, "51", "ftp://x", ""); err == nil {
		t.Error("Set accepted ftp://")
	}
	s.Reset(ctx, "51")
	if got, _ = s.Get(ctx, "51"); got.Source != "config" {
		t.Errorf("after Reset = %+v", got)
	}
}
