package events

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/hubtest"
	"github.com/leadmaster/leadmaster/internal/store"
	"github.com/leadmaster/leadmaster/internal/store/storetest"
)

func openDB(t *testing.T, dsn string) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dsn, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, contacts.Component, contacts.Migrations); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, Component, Migrations); err != nil {
		t.Fatal(err)
	}
	return db
}

func ev(seq int64, typ string, data any) Event {
	b, _ := json.Marshal(data)
	return Event{Seq: seq, Type: typ, Time: time.Date(2026, 1, 2, 3, 4, int(seq), 0, time.UTC), Data: b}
}

// recorder is a Sink that records what it is told, and fails when fail is set.
type recorder struct {
	got  []string
	fail error
}

func (r *recorder) HandleEvent(_ context.Context, _ *store.Tx, e Stored) error {
	if r.fail != nil {
		return r.fail
	}
	r.got = append(r.got, e.Type)
	return nil
}

func TestApply(t *testing.T) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rec := &recorder{}
			s := NewStore(openDB(t, dsn), rec)
			batch := []Event{
				ev(1, TypeState, StateData{State: "connected", Phone: "+5491100000000"}),
				ev(2, TypeMessage, MessageData{ID: "IN1", From: "+5491155550001", PushName: "Ana", Text: "hola"}),
				ev(3, TypeSent, SentData{ID: "OUT1", To: "5491155550001@s.whatsapp.net"}),
				ev(4, TypeReceipt, ReceiptData{MessageIDs: []string{"OUT1"}, Type: "read"}),
				ev(5, TypeReceipt, ReceiptData{MessageIDs: []string{"OUT1"}, Type: "delivered"}), // late, must not undo read
				ev(6, TypeMessage, MessageData{ID: "IN2", From: "", FromJID: "120363@g.us", Text: "group chatter"}),
				ev(7, "something_new", map[string]int{"x": 1}),
			}
			stored, err := s.Apply(ctx, "51", batch)
			if err != nil {
				t.Fatal(err)
			}
			if len(stored) != 7 {
				t.Fatalf("stored %d events, want 7", len(stored))
			}
			if diff := cmp.Diff(rec.got, []string{"state", "message", "sent", "receipt", "receipt", "message", "something_new"}); diff != "" {
				t.Errorf("sink saw (-got +want):\n%s", diff)
			}
			// Applying the same batch again (a crash after commit, before the next read) adds nothing.
			again, err := s.Apply(ctx, "51", batch)
			if err != nil || len(again) != 0 {
				t.Errorf("re-apply stored %d, %v; want 0", len(again), err)
			}
			if cur, _ := s.Cursor(ctx, "51"); cur != 7 {
				t.Errorf("cursor = %d, want 7", cur)
			}
			ppl := contacts.New(s.db, nil, nil)
			ana, err := ppl.GetByPhone(ctx, "51", "+5491155550001")
			if err != nil {
				t.Fatal(err)
			}
			if ana.PushName != "Ana" || ana.Source != contacts.SourceWhatsApp || ana.LastMessageAt == nil {
				t.Errorf("lead from message = %+v", ana)
			}
			msgs, err := s.Messages(ctx, "51", ana.ID, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range msgs {
				got = append(got, m.Direction+":"+m.WAID+":"+m.Status+":"+m.Text)
			}
			if diff := cmp.Diff(got, []string{"in:IN1:received:hola", "out:OUT1:read:"}); diff != "" {
				t.Errorf("conversation (-got +want):\n%s", diff)
			}
			if st, _ := s.LastState(ctx, "51"); st.State != "connected" || st.Phone != "+5491100000000" {
				t.Errorf("last state = %+v", st)
			}
			if evs, _ := s.List(ctx, "51", 5, 10); len(evs) != 2 || evs[0].Seq != 6 {
				t.Errorf("List(after 5) = %d events", len(evs))
			}
			if evs, _ := s.List(ctx, "52", 0, 10); len(evs) != 0 {
				t.Errorf("cliente 52 sees %d events of 51", len(evs))
			}
		})
	}
}

// TestApplyAllOrNothing: when a sink fails, neither the events, nor what they imply, nor the
// cursor are written, so the batch is read again later.
func TestApplyAllOrNothing(t *testing.T) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rec := &recorder{fail: errors.New("disk full")}
			s := NewStore(openDB(t, dsn), rec)
			_, err := s.Apply(ctx, "51", []Event{ev(1, TypeMessage, MessageData{ID: "IN1", From: "+5491155550001", Text: "hola"})})
			if err == nil {
				t.Fatal("Apply with a failing sink succeeded")
			}
			if cur, _ := s.Cursor(ctx, "51"); cur != 0 {
				t.Errorf("cursor = %d after a failed batch, want 0", cur)
			}
			if evs, _ := s.List(ctx, "51", 0, 10); len(evs) != 0 {
				t.Errorf("%d events stored by a failed batch", len(evs))
			}
			if _, err := contacts.New(s.db, nil, nil).GetByPhone(ctx, "51", "+5491155550001"); err == nil {
				t.Error("a failed batch created a lead")
			}
			rec.fail = nil
			if stored, err := s.Apply(ctx, "51", []Event{ev(1, TypeMessage, MessageData{ID: "IN1", From: "+5491155550001", Text: "hola"})}); err != nil || len(stored) != 1 {
				t.Errorf("retry: stored %d, %v", len(stored), err)
			}
		})
	}
}

func TestConsumerFollowsAndResumes(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.DSNs(t)["sqlite"]
	db := openDB(t, dsn)
	sm := hubtest.StartSessionManager(t, t.TempDir()+"/51.sock", "51")
	src := &socketSource{socket: sm.Socket}
	s := NewStore(db)
	c := NewConsumer(s, src, nil)
	c.Wait = 200 * time.Millisecond
	stored := make(chan int, 100)
	c.OnStored = func(_ string, evs []Stored) { stored <- len(evs) }
	c.Reconcile(ctx, []string{"51"})
	for i := range 3 {
		sm.Message("M"+string(rune('A'+i)), "+5491155550001", "Ana", "hola")
	}
	waitFor(t, func() bool { cur, _ := s.Cursor(ctx, "51"); return cur == 3 })
	c.Stop()
	// Events logged while the hub is away are picked up by the next consumer, once.
	sm.Message("MD", "+5491155550001", "Ana", "sigo acá")
	c2 := NewConsumer(s, src, nil)
	c2.Wait = 200 * time.Millisecond
	c2.Reconcile(ctx, []string{"51"})
	defer c2.Stop()
	waitFor(t, func() bool { cur, _ := s.Cursor(ctx, "51"); return cur == 4 })
	evs, _ := s.List(ctx, "51", 0, 100)
	if len(evs) != 4 {
		t.Errorf("%d events stored, want 4 (no loss, no duplicates)", len(evs))
	}
	if err := c2.Check(); err != nil {
		t.Errorf("Check = %v", err)
	}
	if c2.States()["51"] != "following" {
		t.Errorf("state = %q, want following", c2.States()["51"])
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scriptedSource serves a log the test controls, with its id.
type scriptedSource struct {
	mu    sync.Mutex
	logID string
	evs   []Event
}

func (s *scriptedSource) Events(ctx context.Context, _ string, after int64, wait time.Duration) (Batch, error) {
	s.mu.Lock()
	b := Batch{LogID: s.logID, Next: after}
	for _, e := range s.evs {
		if e.Seq > after {
			b.Events = append(b.Events, e)
			b.Next = e.Seq
		}
	}
	s.mu.Unlock()
	if len(b.Events) == 0 {
		time.Sleep(min(wait, 20*time.Millisecond))
	}
	return b, nil
}

func (s *scriptedSource) replace(logID string, evs ...Event) {
	s.mu.Lock()
	s.logID, s.evs = logID, evs
	s.mu.Unlock()
}

// TestReplacedLogIsReadFromStart: a session manager whose state was wiped numbers its log
// from 1 again under a new id; the hub reads the new log from its start and keeps the old
// events, numbered after them.
func TestReplacedLogIsReadFromStart(t *testing.T) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := NewStore(openDB(t, dsn))
			src := &scriptedSource{}
			msg := func(seq int64, id string) Event {
				return ev(seq, TypeMessage, MessageData{ID: id, From: "+5491155550001", Text: "hola " + id})
			}
			src.replace("log-A", msg(1, "A1"), msg(2, "A2"), msg(3, "A3"))
			c := NewConsumer(s, src, nil)
			c.Wait = 50 * time.Millisecond
			c.Reconcile(ctx, []string{"51"})
			defer c.Stop()
			waitFor(t, func() bool { cur, _ := s.Cursor(ctx, "51"); return cur == 3 })
			if _, id, _ := s.Position(ctx, "51"); id != "log-A" {
				t.Errorf("log id = %q, want log-A", id)
			}
			src.replace("log-B", msg(1, "B1"), msg(2, "B2"))
			waitFor(t, func() bool {
				cur, id, _ := s.Position(ctx, "51")
				return cur == 2 && id == "log-B"
			})
			evs, err := s.List(ctx, "51", 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, e := range evs {
				got = append(got, e.Seq)
			}
			if diff := cmp.Diff(got, []int64{1, 2, 3, 4, 5}); diff != "" {
				t.Errorf("stored seqs (-got +want):\n%s", diff)
			}
			if len(evs) == 5 && !strings.Contains(string(evs[4].Data), "B2") {
				t.Errorf("last event = %s, want the new log's B2", evs[4].Data)
			}
		})
	}
}
