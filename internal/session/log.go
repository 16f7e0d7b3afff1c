package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/leadmaster/leadmaster/internal/store"
)

var migrations = []store.Migration{
	store.Portable(1, `
CREATE TABLE lm_events (
	seq ID_PK,
	type TEXT NOT NULL,
	at_ms BIGINT NOT NULL,
	data TEXT NOT NULL
);
CREATE TABLE lm_ledger (
	id TEXT PRIMARY KEY,
	to_jid TEXT NOT NULL,
	digest TEXT NOT NULL,
	state TEXT NOT NULL,
	error TEXT NOT NULL DEFAULT '',
	attempts INTEGER NOT NULL DEFAULT 0,
	created_ms BIGINT NOT NULL,
	sent_ms BIGINT
)`),
	store.Portable(2, `
CREATE TABLE lm_meta (
	key TEXT PRIMARY KEY,
	value TEXT NOT NULL
)`),
}

// Migrate creates or upgrades the session manager's own tables.
func Migrate(ctx context.Context, db *store.DB) error {
	return db.Migrate(ctx, "session", migrations)
}

// Event is one entry of the durable event log the hub reads by cursor.
type Event struct {
	Seq  int64           `json:"seq"`
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

// EventLog is the ordered, durable log of state changes, incoming messages and receipts.
// Appends are serialised so sequence numbers become visible in order on every database.
type EventLog struct {
	db *store.DB
	// id names this log. A reader that keeps a cursor keeps the id with it: a different id
	// means the log was replaced (a wiped state directory, a move to PostgreSQL) and its
	// sequence numbers started again at 1.
	id string

	mu      sync.Mutex
	last    int64
	changed chan struct{} // closed and replaced on every append
}

// OpenEventLog returns the log stored in db (already migrated).
func OpenEventLog(ctx context.Context, db *store.DB) (*EventLog, error) {
	l := &EventLog{db: db, changed: make(chan struct{})}
	if err := db.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM lm_events`).Scan(&l.last); err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	if _, err := db.Exec(ctx, `INSERT INTO lm_meta (key, value) VALUES ('event_log_id', ?) ON CONFLICT (key) DO NOTHING`, hex.EncodeToString(b)); err != nil {
		return nil, fmt.Errorf("event log id: %w", err)
	}
	if err := db.QueryRow(ctx, `SELECT value FROM lm_meta WHERE key = 'event_log_id'`).Scan(&l.id); err != nil {
		return nil, fmt.Errorf("event log id: %w", err)
	}
	return l, nil
}

// ID returns the log's identity, which changes only when the log is replaced.
func (l *EventLog) ID() string { return l.id }

// Append stores an event and wakes waiting readers.
func (l *EventLog) Append(ctx context.Context, typ string, data any) (int64, error) {
	return l.AppendTx(ctx, typ, data, nil)
}

// AppendTx stores an event; with also set, it runs in the same transaction, so the event
// and the change it describes are stored together or not at all.
func (l *EventLog) AppendTx(ctx context.Context, typ string, data any, also func(*store.Tx) error) (int64, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return 0, fmt.Errorf("append %s event: %w", typ, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var seq int64
	err = l.db.InTx(ctx, func(tx *store.Tx) error {
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		now := time.Now().UnixMilli()
		if l.db.Dialect == store.Postgres {
			return tx.QueryRow(ctx, `INSERT INTO lm_events (type, at_ms, data) VALUES (?, ?, ?) RETURNING seq`, typ, now, string(b)).Scan(&seq)
		}
		res, err := tx.Exec(ctx, `INSERT INTO lm_events (type, at_ms, data) VALUES (?, ?, ?)`, typ, now, string(b))
		if err != nil {
			return err
		}
		seq, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("append %s event: %w", typ, err)
	}
	l.last = seq
	close(l.changed)
	l.changed = make(chan struct{})
	return seq, nil
}

// Last returns the newest sequence number.
func (l *EventLog) Last() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// Read returns up to limit events after seq, waiting up to wait for one to arrive.
func (l *EventLog) Read(ctx context.Context, after int64, limit int, wait time.Duration) ([]Event, error) {
	if wait > 0 {
		l.mu.Lock()
		last, changed := l.last, l.changed
		l.mu.Unlock()
		if last <= after {
			t := time.NewTimer(wait)
			select {
			case <-changed:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	// The wait may end because ctx did (a stop, a caller gone); the read itself still runs,
	// briefly, so a stopping server answers what it has instead of an error.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	rows, err := l.db.Query(qctx, `SELECT seq, type, at_ms, data FROM lm_events WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	evs := []Event{}
	for rows.Next() {
		var e Event
		var ms int64
		var data string
		if err := rows.Scan(&e.Seq, &e.Type, &ms, &data); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		e.Time = time.UnixMilli(ms).UTC()
		e.Data = json.RawMessage(data)
		evs = append(evs, e)
	}
	return evs, rows.Err()
}

// Prune deletes events older than keep, but never the newest one (the cursor's anchor).
func (l *EventLog) Prune(ctx context.Context, keep time.Duration) (int64, error) {
	cut := time.Now().Add(-keep).UnixMilli()
	res, err := l.db.Exec(ctx, `DELETE FROM lm_events WHERE at_ms < ? AND seq < ?`, cut, l.Last())
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	return res.RowsAffected()
}
