package sender

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/store"
	"github.com/leadmaster/leadmaster/internal/store/storetest"
)

func forEachDB(t *testing.T, f func(t *testing.T, dsn string)) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) { f(t, dsn) })
	}
}

// unpaced is a configuration for cliente 51 (and 52) with no pacing at all.
const unpaced = `
[sender]
per_minute = 0
min_gap = "0s"
max_gap = "0s"
daily_cap = 0
quiet_hours = ""
max_attempts = 3
[clientes.51]
name = "Acme"
time_zone = "America/Argentina/Buenos_Aires"
[clientes.52]
name = "Beta"
`

// fakeGateway is a session manager with a ledger: an ID it has sent is answered as a
// duplicate and sends nothing. fail, when set, may fail an attempt instead.
type fakeGateway struct {
	mu     sync.Mutex
	ledger map[string]Outgoing // by cliente/ID
	sends  map[string]int      // real sends by cliente/ID (more than 1 would be a double send)
	calls  []Outgoing
	tries  map[string]int // calls by cliente/ID
	fail   func(cliente string, m Outgoing, try int) error
	delay  time.Duration
}

func newFakeGateway() *fakeGateway {
	return &fakeGateway{ledger: map[string]Outgoing{}, sends: map[string]int{}, tries: map[string]int{}}
}

func (g *fakeGateway) Send(ctx context.Context, cliente string, m Outgoing) (Result, error) {
	if g.delay > 0 {
		time.Sleep(g.delay)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	key := cliente + "/" + m.ID
	g.tries[key]++
	g.calls = append(g.calls, m)
	if g.fail != nil {
		if err := g.fail(cliente, m, g.tries[key]); err != nil {
			return Result{}, err
		}
	}
	if old, ok := g.ledger[key]; ok {
		if old != m {
			return Result{}, &SendError{Kind: KindPermanent, Code: FailRejected, Message: "id reused"}
		}
		return Result{Timestamp: time.Now(), Duplicate: true}, nil
	}
	g.ledger[key] = m
	g.sends[key]++
	return Result{Timestamp: time.Now()}, nil
}

func (g *fakeGateway) sent(cliente, id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sends[cliente+"/"+id]
}

func (g *fakeGateway) triesOf(cliente, id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tries[cliente+"/"+id]
}

func (g *fakeGateway) total() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, v := range g.sends {
		n += v
	}
	return n
}

// env is a Service on a fresh database with contacts and events migrated.
type env struct {
	t   testing.TB
	db  *store.DB
	s   *Service
	gw  *fakeGateway
	cfg atomic.Pointer[config.Config]
	ev  *events.Store
}

func newEnv(tb testing.TB, dsn, toml string) *env {
	tb.Helper()
	ctx := context.Background()
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		tb.Fatal(err)
	}
	db, err := store.Open(ctx, dsn, "")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	for _, m := range []struct {
		c  string
		ms []store.Migration
	}{{contacts.Component, contacts.Migrations}, {events.Component, events.Migrations}, {Component, Migrations}} {
		if err := db.Migrate(ctx, m.c, m.ms); err != nil {
			tb.Fatal(err)
		}
	}
	e := &env{t: tb, db: db, gw: newFakeGateway()}
	e.cfg.Store(cfg)
	e.s = New(Options{DB: db, Config: e.cfg.Load, Gateway: e.gw})
	e.s.retryBase, e.s.waitMax, e.s.pollEvery, e.s.failureWindow = 20*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond
	e.ev = events.NewStore(db, e.s)
	return e
}

// run starts the dispatchers until the test ends.
func (e *env) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.s.Run(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// lead adds a lead and returns its ID.
func (e *env) lead(cliente, phone, name string, tags []string, optedOut bool) int64 {
	e.t.Helper()
	l, err := contacts.New(e.db, nil, nil).Create(context.Background(), cliente, contacts.Input{Phone: &phone, Name: &name, Tags: &tags, OptedOut: &optedOut})
	if err != nil {
		e.t.Fatalf("create lead %s: %v", phone, err)
	}
	return l.ID
}

func (e *env) message(cliente, id string) Message {
	e.t.Helper()
	m, err := e.s.Message(context.Background(), cliente, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) waitState(cliente, id, want string) Message {
	e.t.Helper()
	var m Message
	waitFor(e.t, 10*time.Second, fmt.Sprintf("message %s to be %s", id, want), func() bool {
		m = e.message(cliente, id)
		return m.State == want
	})
	return m
}

// apply stores session-manager events for cliente as the event consumer would.
func (e *env) apply(cliente string, evs ...events.Event) {
	e.t.Helper()
	cur, err := e.ev.Cursor(context.Background(), cliente)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range evs {
		evs[i].Seq = cur + int64(i) + 1
		if evs[i].Time.IsZero() {
			evs[i].Time = time.Now()
		}
	}
	if _, err := e.ev.Apply(context.Background(), cliente, evs); err != nil {
		e.t.Fatal(err)
	}
}
