package sender

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/store"
)

// MaxTextLen is the longest text the session manager sends, in bytes.
const MaxTextLen = 65536

// Message is one outbox entry as the API shows it.
type Message struct {
	ID      string `json:"id"`
	Cliente string `json:"cliente"`
	To      string `json:"to"`
	Text    string `json:"text"`
	State   string `json:"state"`
	// Error says why the message failed, or why its last attempt did.
	Error     string `json:"error,omitempty"`
	ErrorCode string `json:"error_code,omitempty"`
	Campaign  int64  `json:"campaign,omitempty"`
	Lead      int64  `json:"lead,omitempty"`
	Attempts  int    `json:"attempts"`
	// NextAttemptAt is set while a retry waits.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	SentAt        *time.Time `json:"sent_at,omitempty"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
	ReadAt        *time.Time `json:"read_at,omitempty"`
	// Duplicate is set in the answer to a POST that repeated an ID already in the outbox.
	Duplicate bool `json:"duplicate,omitempty"`

	seq            int64
	firstAttemptAt int64
}

const messageCols = `cliente_id, id, campaign_id, seq, lead_id, phone, text, state, attempts, next_at, error, error_code,
	created_at, updated_at, first_attempt_at, sent_at, delivered_at, read_at`

func scanMessage(sc interface{ Scan(...any) error }) (Message, error) {
	var m Message
	var next, created, updated, sent, delivered, read int64
	err := sc.Scan(&m.Cliente, &m.ID, &m.Campaign, &m.seq, &m.Lead, &m.To, &m.Text, &m.State, &m.Attempts, &next,
		&m.Error, &m.ErrorCode, &created, &updated, &m.firstAttemptAt, &sent, &delivered, &read)
	if err != nil {
		return Message{}, err
	}
	m.CreatedAt, m.UpdatedAt = hub.FromMillis(created), hub.FromMillis(updated)
	m.SentAt, m.DeliveredAt, m.ReadAt = optTime(sent), optTime(delivered), optTime(read)
	if m.State == StateQueued && next > hub.Millis(time.Now()) {
		m.NextAttemptAt = optTime(next)
	}
	return m, nil
}

func optTime(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := hub.FromMillis(ms)
	return &t
}

func getMessage(ctx context.Context, q hub.Querier, cliente, id string) (Message, error) {
	m, err := scanMessage(q.QueryRow(ctx, `SELECT `+messageCols+` FROM sender_messages WHERE cliente_id = ? AND id = ?`, cliente, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, hub.Errorf(hub.CodeNotFound, "cliente %s has no message %s", cliente, id)
	}
	if err != nil {
		return Message{}, fmt.Errorf("get message: %w", err)
	}
	return m, nil
}

// Message returns cliente's outbox message id.
func (s *Service) Message(ctx context.Context, cliente, id string) (Message, error) {
	return getMessage(ctx, s.db, cliente, id)
}

// SendRequest is POST /api/clientes/{id}/messages.
type SendRequest struct {
	To   string `json:"to"`
	Text string `json:"text"`
	// ID is the WhatsApp message ID to use (4-64 letters and digits); the hub picks one when empty.
	ID string `json:"id"`
}

// Enqueue puts one message in cliente's outbox. Sending the same ID again with the same
// recipient and text returns the message already there with Duplicate set; with another
// recipient or text it is a conflict.
func (s *Service) Enqueue(ctx context.Context, cliente string, req SendRequest) (Message, error) {
	if strings.TrimSpace(req.To) == "" {
		return Message{}, hub.Errorf(hub.CodeInvalid, `"to" is required: a phone number with country code, like +54 9 11 5555 0000`)
	}
	if strings.TrimSpace(req.Text) == "" {
		return Message{}, hub.Errorf(hub.CodeInvalid, `"text" is required`)
	}
	if len(req.Text) > MaxTextLen {
		return Message{}, hub.Errorf(hub.CodeInvalid, "text is %d bytes; the most WhatsApp takes is %d", len(req.Text), MaxTextLen)
	}
	id := req.ID
	if id == "" {
		id = NewMessageID()
	} else if !ValidMessageID(id) {
		return Message{}, hub.Errorf(hub.CodeInvalid, "id must be 4-64 letters and digits (A-Z, a-z, 0-9), not %q", id)
	}
	phone, err := contacts.Normalize(req.To, "", false)
	if err != nil {
		return Message{}, err
	}
	var out Message
	err = s.db.InTx(ctx, func(tx *store.Tx) error {
		var lead int64
		var opted int
		err := tx.QueryRow(ctx, `SELECT id, opted_out FROM leads WHERE cliente_id = ? AND phone = ?`, cliente, phone).Scan(&lead, &opted)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("look up lead: %w", err)
		}
		if opted != 0 {
			return hub.Errorf(hub.CodeInvalid, "contact %s opted out of messages; clear opted_out on contact %d to write to it again", phone, lead)
		}
		if old, err := getMessage(ctx, tx, cliente, id); err == nil {
			if old.To != phone || old.Text != req.Text {
				return hub.Errorf(hub.CodeConflict, "message id %s was already used for another recipient or text", id)
			}
			out = old
			out.Duplicate = true
			return nil
		} else if hub.ErrorCode(err) != hub.CodeNotFound {
			return err
		}
		now := hub.Millis(s.now())
		_, err = tx.Exec(ctx, `INSERT INTO sender_messages (cliente_id, id, campaign_id, seq, lead_id, phone, text, state, created_at, updated_at)
			VALUES (?, ?, 0, ?, ?, ?, ?, 'queued', ?, ?)`, cliente, id, now, lead, phone, req.Text, now, now)
		if err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		out, err = getMessage(ctx, tx, cliente, id)
		return err
	})
	if err != nil {
		return Message{}, err
	}
	if !out.Duplicate {
		s.wake(cliente)
	}
	return out, nil
}

// MessageFilter selects outbox messages.
type MessageFilter struct {
	State    string
	Campaign int64 // 0: any; -1: single messages only
	Limit    int
	Offset   int
}

// MessagePage is one page of messages.
type MessagePage struct {
	Messages   []Message `json:"messages"`
	NextOffset int       `json:"next_offset,omitempty"`
}

// Messages lists cliente's outbox, newest first.
func (s *Service) Messages(ctx context.Context, cliente string, f MessageFilter) (MessagePage, error) {
	where := []string{"cliente_id = ?"}
	args := []any{cliente}
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, f.State)
	}
	switch {
	case f.Campaign > 0:
		where = append(where, "campaign_id = ?")
		args = append(args, f.Campaign)
	case f.Campaign < 0:
		where = append(where, "campaign_id = 0")
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	order := "created_at DESC, seq DESC"
	if f.Campaign > 0 {
		order = "seq"
	}
	rows, err := s.db.Query(ctx, `SELECT `+messageCols+` FROM sender_messages WHERE `+strings.Join(where, " AND ")+
		` ORDER BY `+order+` LIMIT ? OFFSET ?`, append(args, f.Limit+1, f.Offset)...)
	if err != nil {
		return MessagePage{}, fmt.Errorf("list messages: %w", err)
	}
	defer rows.Close()
	p := MessagePage{Messages: []Message{}}
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return MessagePage{}, fmt.Errorf("list messages: %w", err)
		}
		p.Messages = append(p.Messages, m)
	}
	if len(p.Messages) > f.Limit {
		p.Messages = p.Messages[:f.Limit]
		p.NextOffset = f.Offset + f.Limit
	}
	return p, rows.Err()
}

// Counts returns how many of cliente's messages are in each state (all campaigns and singles).
func (s *Service) Counts(ctx context.Context, cliente string) (map[string]int, error) {
	return counts(ctx, s.db, `cliente_id = ?`, cliente)
}

func counts(ctx context.Context, q hub.Querier, cond string, args ...any) (map[string]int, error) {
	out := map[string]int{StateQueued: 0, StateSending: 0, StateSent: 0, StateDelivered: 0, StateRead: 0, StateFailed: 0}
	rows, err := q.Query(ctx, `SELECT state, COUNT(*) FROM sender_messages WHERE `+cond+` GROUP BY state`, args...)
	if err != nil {
		return nil, fmt.Errorf("count messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count messages: %w", err)
		}
		out[st] = n
	}
	return out, rows.Err()
}

// Queued returns how many messages wait in every cliente's outbox (queued or being sent),
// for the service's status line.
func (s *Service) Queued(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM sender_messages WHERE state IN ('queued', 'sending')`).Scan(&n)
	return n, err
}

// Metrics reports the outbox for Prometheus through sample (api.MetricsWriter.Sample):
// messages by cliente and state, and whether each cliente's sending is paused.
func (s *Service) Metrics(ctx context.Context, sample func(name, kind, help string, value float64, labels ...string)) {
	rows, err := s.db.Query(ctx, `SELECT cliente_id, state, COUNT(*) FROM sender_messages GROUP BY cliente_id, state ORDER BY cliente_id, state`)
	if err == nil {
		for rows.Next() {
			var cliente, state string
			var n int
			if rows.Scan(&cliente, &state, &n) == nil {
				sample("leadmaster_hub_outbox_messages", "gauge", "Outbox messages by cliente and state.", float64(n), "cliente", cliente, "state", state)
			}
		}
		rows.Close()
	}
	for _, id := range s.cfg().ClienteIDs() {
		st, err := s.clienteState(ctx, s.db, id)
		if err != nil {
			return
		}
		v := 0.0
		if st.Paused {
			v = 1
		}
		sample("leadmaster_hub_sending_paused", "gauge", "1 while the cliente's sending is paused (see GET /api/clientes/{id}/sending).", v, "cliente", id)
	}
}
