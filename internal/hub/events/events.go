// Package events follows each cliente's session-manager event log and keeps what it says:
// incoming messages as conversations per lead, receipts, sent-message records and state
// changes. The cursor moves in the same transaction that stores the events, so a hub crash
// neither loses nor duplicates any; sinks (the webhook outbox, the sender's receipt handling)
// run inside that transaction too.
package events

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/store"
)

// Component names this package's migrations.
const Component = "hub-events"

// Migrations create the event tables. They run after contacts' (messages point at leads).
var Migrations = []store.Migration{
	hub.Migration(1, `
CREATE TABLE event_cursors (
	cliente_id TEXT PRIMARY KEY,
	seq BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE TABLE events (
	id TEXT PRIMARY KEY,
	cliente_id TEXT NOT NULL,
	seq BIGINT NOT NULL,
	type TEXT NOT NULL,
	time BIGINT NOT NULL,
	data TEXT NOT NULL,
	received_at BIGINT NOT NULL,
	UNIQUE (cliente_id, seq)
);
CREATE TABLE messages (
	id ID_PK,
	cliente_id TEXT NOT NULL,
	lead_id BIGINT NOT NULL,
	direction TEXT NOT NULL,
	wa_id TEXT NOT NULL,
	text TEXT NOT NULL DEFAULT '',
	status TEXT NOT NULL DEFAULT '',
	sent_at BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	UNIQUE (cliente_id, direction, wa_id)
);
CREATE INDEX messages_lead ON messages (cliente_id, lead_id, sent_at);
CREATE TABLE cliente_states (
	cliente_id TEXT PRIMARY KEY,
	state TEXT NOT NULL,
	jid TEXT NOT NULL DEFAULT '',
	phone TEXT NOT NULL DEFAULT '',
	error TEXT NOT NULL DEFAULT '',
	since BIGINT NOT NULL
)`),
	// A session manager's log has an id; when it changes (a wiped state directory) its
	// numbering restarts, and the hub stores the new log's events after seq_base.
	hub.Migration(2, `
ALTER TABLE event_cursors ADD COLUMN log_id TEXT NOT NULL DEFAULT '';
ALTER TABLE event_cursors ADD COLUMN seq_base BIGINT NOT NULL DEFAULT 0`),
}

// Event types in the session manager's log.
const (
	TypeState   = "state"
	TypeMessage = "message"
	TypeReceipt = "receipt"
	TypeSent    = "sent"
)

// Event is one entry of a session manager's GET /events.
type Event struct {
	Seq  int64           `json:"seq"`
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

// Batch is one GET /events answer.
type Batch struct {
	Events []Event `json:"events"`
	Next   int64   `json:"next"`
	// LogID names the session manager's log; a new one means the log was replaced.
	LogID string `json:"log_id"`
}

// Stored is an event as the hub keeps it, with the ID webhooks carry for deduplication.
type Stored struct {
	ID         string          `json:"id"`
	ClienteID  string          `json:"cliente"`
	Seq        int64           `json:"seq"`
	Type       string          `json:"type"`
	Time       time.Time       `json:"time"`
	Data       json.RawMessage `json:"data"`
	ReceivedAt time.Time       `json:"received_at"`
}

// MessageData is the data of a message event.
type MessageData struct {
	ID        string    `json:"id"`
	From      string    `json:"from"`
	FromJID   string    `json:"from_jid"`
	PushName  string    `json:"push_name"`
	Text      string    `json:"text"`
	Timestamp time.Time `json:"timestamp"`
}

// ReceiptData is the data of a receipt event.
type ReceiptData struct {
	MessageIDs []string  `json:"message_ids"`
	Type       string    `json:"type"` // delivered or read
	From       string    `json:"from"`
	Timestamp  time.Time `json:"timestamp"`
}

// StateData is the data of a state event.
type StateData struct {
	State string `json:"state"`
	JID   string `json:"jid"`
	Phone string `json:"phone"`
	Error string `json:"error"`
}

// SentData is the data of a sent event.
type SentData struct {
	ID string `json:"id"`
	To string `json:"to"`
}

// Sink is told of every stored event inside the transaction that stores it, so what it writes
// commits or rolls back with the event and the cursor. The webhook outbox is one; the sender
// (moving outbox messages to delivered and read on receipts) is another.
type Sink interface {
	HandleEvent(ctx context.Context, tx *store.Tx, e Stored) error
}

// Store keeps events, conversations and the cursors.
type Store struct {
	db    *store.DB
	sinks []Sink
	now   func() time.Time
}

// NewStore returns a Store that tells sinks of every new event.
func NewStore(db *store.DB, sinks ...Sink) *Store {
	return &Store{db: db, sinks: sinks, now: time.Now}
}

// AddSink adds a sink (before the consumer starts).
func (s *Store) AddSink(k Sink) { s.sinks = append(s.sinks, k) }

// Cursor returns the last sequence number stored for cliente (0 when none).
func (s *Store) Cursor(ctx context.Context, cliente string) (int64, error) {
	return cursor(ctx, s.db, cliente)
}

func cursor(ctx context.Context, q hub.Querier, cliente string) (int64, error) {
	seq, _, _, err := position(ctx, q, cliente)
	return seq, err
}

// position returns the cursor (the last sequence number of the session manager's log that was
// stored), the base added to its numbers in the events table, and the log's id.
func position(ctx context.Context, q hub.Querier, cliente string) (seq, base int64, logID string, err error) {
	err = q.QueryRow(ctx, `SELECT seq, seq_base, log_id FROM event_cursors WHERE cliente_id = ?`, cliente).Scan(&seq, &base, &logID)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, "", nil
	}
	return seq, base, logID, err
}

// Position returns cliente's cursor and the id of the log it belongs to ("" when unknown).
func (s *Store) Position(ctx context.Context, cliente string) (int64, string, error) {
	seq, _, logID, err := position(ctx, s.db, cliente)
	return seq, logID, err
}

// Rebase records that cliente's session manager now serves the log logID. The first id
// seen is just recorded. A different one means the log was replaced and numbers from 1
// again: the cursor goes back to 0 and the new log's events are stored after everything
// already kept. It reports whether the cursor was reset.
func (s *Store) Rebase(ctx context.Context, cliente, logID string) (reset bool, err error) {
	err = s.db.InTx(ctx, func(tx *store.Tx) error {
		seq, base, old, err := position(ctx, tx, cliente)
		if err != nil {
			return err
		}
		now := hub.Millis(s.now())
		if old == "" || old == logID {
			_, err = tx.Exec(ctx, `INSERT INTO event_cursors (cliente_id, seq, updated_at, log_id) VALUES (?, ?, ?, ?)
				ON CONFLICT (cliente_id) DO UPDATE SET log_id = excluded.log_id, updated_at = excluded.updated_at`, cliente, seq, now, logID)
			return err
		}
		var maxSeq int64
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM events WHERE cliente_id = ?`, cliente).Scan(&maxSeq); err != nil {
			return err
		}
		reset = true
		_, err = tx.Exec(ctx, `UPDATE event_cursors SET seq = 0, seq_base = ?, log_id = ?, updated_at = ? WHERE cliente_id = ?`,
			max(maxSeq, base+seq), logID, now, cliente)
		return err
	})
	return reset, err
}

func newID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "evt_" + hex.EncodeToString(b)
}

// Apply stores evs (in order) for cliente with everything they imply, and moves the cursor
// to the last one, all in one transaction. Events at or below the cursor are skipped, so
// applying a batch twice is harmless. It returns the events newly stored.
func (s *Store) Apply(ctx context.Context, cliente string, evs []Event) ([]Stored, error) {
	var out []Stored
	err := s.db.InTx(ctx, func(tx *store.Tx) error {
		out = out[:0]
		cur, base, _, err := position(ctx, tx, cliente)
		if err != nil {
			return fmt.Errorf("read cursor: %w", err)
		}
		now := s.now().UTC()
		last := cur
		for _, e := range evs {
			if e.Seq <= last {
				continue
			}
			last = e.Seq
			st := Stored{ID: newID(), ClienteID: cliente, Seq: base + e.Seq, Type: e.Type, Time: e.Time.UTC(), Data: e.Data, ReceivedAt: now}
			if len(st.Data) == 0 {
				st.Data = json.RawMessage("{}")
			}
			if st.Time.IsZero() {
				st.Time = now
			}
			if _, err := tx.Exec(ctx, `INSERT INTO events (id, cliente_id, seq, type, time, data, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				st.ID, cliente, st.Seq, st.Type, hub.Millis(st.Time), string(st.Data), hub.Millis(now)); err != nil {
				return fmt.Errorf("store event %d: %w", st.Seq, err)
			}
			if err := s.digest(ctx, tx, st); err != nil {
				return fmt.Errorf("event %d (%s): %w", e.Seq, e.Type, err)
			}
			for _, k := range s.sinks {
				if err := k.HandleEvent(ctx, tx, st); err != nil {
					return fmt.Errorf("event %d (%s): %w", e.Seq, e.Type, err)
				}
			}
			out = append(out, st)
		}
		if last == cur {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO event_cursors (cliente_id, seq, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (cliente_id) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at`, cliente, last, hub.Millis(now))
		return err
	})
	return out, err
}

// digest turns an event into conversation rows and state. Malformed data is kept in the
// events table and otherwise ignored: one bad event must not stop the stream.
func (s *Store) digest(ctx context.Context, tx *store.Tx, e Stored) error {
	now := hub.Millis(s.now())
	switch e.Type {
	case TypeMessage:
		var m MessageData
		if json.Unmarshal(e.Data, &m) != nil || m.ID == "" {
			return nil
		}
		phone, err := contacts.Normalize(firstNonEmpty(m.From, jidUser(m.FromJID)), "", false)
		if err != nil {
			return nil // not a person's number (a group, a hidden LID): no conversation
		}
		at := m.Timestamp
		if at.IsZero() {
			at = e.Time
		}
		lead, err := contacts.Touch(ctx, tx, e.ClienteID, phone, m.PushName, at)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO messages (cliente_id, lead_id, direction, wa_id, text, status, sent_at, created_at)
			VALUES (?, ?, 'in', ?, ?, 'received', ?, ?) ON CONFLICT (cliente_id, direction, wa_id) DO NOTHING`,
			e.ClienteID, lead, m.ID, m.Text, hub.Millis(at), now)
		return err
	case TypeSent:
		var m SentData
		if json.Unmarshal(e.Data, &m) != nil || m.ID == "" {
			return nil
		}
		phone, err := contacts.Normalize(jidUser(m.To), "", false)
		if err != nil {
			return nil
		}
		return RecordOutgoing(ctx, tx, e.ClienteID, phone, m.ID, "", e.Time)
	case TypeReceipt:
		var r ReceiptData
		if json.Unmarshal(e.Data, &r) != nil || (r.Type != "delivered" && r.Type != "read") || len(r.MessageIDs) == 0 {
			return nil
		}
		// Only move forward: a late "delivered" must not undo "read".
		cond := `status IN ('', 'sent')`
		if r.Type == "read" {
			cond = `status IN ('', 'sent', 'delivered')`
		}
		ph := strings.TrimSuffix(strings.Repeat("?,", len(r.MessageIDs)), ",")
		args := []any{r.Type, e.ClienteID}
		for _, id := range r.MessageIDs {
			args = append(args, id)
		}
		_, err := tx.Exec(ctx, `UPDATE messages SET status = ? WHERE cliente_id = ? AND direction = 'out' AND wa_id IN (`+ph+`) AND `+cond, args...)
		return err
	case TypeState:
		var st StateData
		if json.Unmarshal(e.Data, &st) != nil || st.State == "" {
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO cliente_states (cliente_id, state, jid, phone, error, since) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (cliente_id) DO UPDATE SET state = excluded.state, jid = excluded.jid, phone = excluded.phone,
				error = excluded.error, since = excluded.since`,
			e.ClienteID, st.State, st.JID, st.Phone, st.Error, hub.Millis(e.Time))
		return err
	}
	return nil
}

// RecordOutgoing records a message sent to phone with WhatsApp ID waID in the conversation.
// Called again for the same ID it fills in text when it was unknown (the sender knows the
// text; the session manager's sent event does not carry it).
func RecordOutgoing(ctx context.Context, q hub.Querier, cliente, phone, waID, text string, at time.Time) error {
	lead, err := contacts.Touch(ctx, q, cliente, phone, "", at)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO messages (cliente_id, lead_id, direction, wa_id, text, status, sent_at, created_at)
		VALUES (?, ?, 'out', ?, ?, 'sent', ?, ?)
		ON CONFLICT (cliente_id, direction, wa_id) DO UPDATE SET
			text = CASE WHEN messages.text = '' THEN excluded.text ELSE messages.text END`,
		cliente, lead, waID, text, hub.Millis(at), hub.Millis(time.Now()))
	return err
}

func jidUser(jid string) string {
	u, _, _ := strings.Cut(jid, "@")
	u, _, _ = strings.Cut(u, ":")
	return u
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// List returns up to limit of cliente's stored events after sequence number after.
func (s *Store) List(ctx context.Context, cliente string, after int64, limit int) ([]Stored, error) {
	rows, err := s.db.Query(ctx, `SELECT id, cliente_id, seq, type, time, data, received_at FROM events
		WHERE cliente_id = ? AND seq > ? ORDER BY seq LIMIT ?`, cliente, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	out := []Stored{}
	for rows.Next() {
		var e Stored
		var t, rcv int64
		var data string
		if err := rows.Scan(&e.ID, &e.ClienteID, &e.Seq, &e.Type, &t, &data, &rcv); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Time, e.ReceivedAt, e.Data = hub.FromMillis(t), hub.FromMillis(rcv), json.RawMessage(data)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Message is one message of a conversation.
type Message struct {
	ID        int64     `json:"id"`
	Direction string    `json:"direction"` // in or out
	WAID      string    `json:"wa_id"`
	Text      string    `json:"text"`
	Status    string    `json:"status"` // received; or sent, delivered, read
	Time      time.Time `json:"time"`
}

// Messages returns up to limit messages of cliente's lead, oldest first, before message ID
// before (0: the latest).
func (s *Store) Messages(ctx context.Context, cliente string, lead int64, before int64, limit int) ([]Message, error) {
	q := `SELECT id, direction, wa_id, text, status, sent_at FROM messages WHERE cliente_id = ? AND lead_id = ?`
	args := []any{cliente, lead}
	if before > 0 {
		q += ` AND id < ?`
		args = append(args, before)
	}
	rows, err := s.db.Query(ctx, q+` ORDER BY sent_at DESC, id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	defer rows.Close()
	out := []Message{}
	for rows.Next() {
		var m Message
		var at int64
		if err := rows.Scan(&m.ID, &m.Direction, &m.WAID, &m.Text, &m.Status, &at); err != nil {
			return nil, fmt.Errorf("list messages: %w", err)
		}
		m.Time = hub.FromMillis(at)
		out = append(out, m)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, rows.Err()
}

// State is the last state a cliente's event stream reported.
type State struct {
	State string
	Phone string
	Error string
	Time  time.Time
}

// LastState returns the last state event stored for cliente (zero when none).
func (s *Store) LastState(ctx context.Context, cliente string) (State, error) {
	var st State
	var since int64
	err := s.db.QueryRow(ctx, `SELECT state, phone, error, since FROM cliente_states WHERE cliente_id = ?`, cliente).
		Scan(&st.State, &st.Phone, &st.Error, &since)
	if errors.Is(err, sql.ErrNoRows) {
		return State{}, nil
	}
	st.Time = hub.FromMillis(since)
	return st, err
}
