package sender

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/store"
)

var _ events.Sink = (*Service)(nil)

// staleState is how old a state event may be and still pause sending: the hub reads a
// session manager's whole log when it first follows it, and a logout from last month says
// nothing about the number today.
const staleState = time.Hour

// HandleEvent follows a session manager's event log (events.Sink): "sent" marks the
// outbox message sent (whatever the hub saw of the attempt), receipts move messages to
// delivered and read, and state changes that mean WhatsApp restricted the number pause the
// cliente's sending. It runs inside the transaction that stores the event.
func (s *Service) HandleEvent(ctx context.Context, tx *store.Tx, e events.Stored) error {
	switch e.Type {
	case events.TypeSent:
		var d events.SentData
		if json.Unmarshal(e.Data, &d) != nil || d.ID == "" {
			return nil
		}
		var phone, text string
		err := tx.QueryRow(ctx, `SELECT phone, text FROM sender_messages WHERE cliente_id = ? AND id = ?`, e.ClienteID, d.ID).Scan(&phone, &text)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // sent by someone else through the session manager
		}
		if err != nil {
			return fmt.Errorf("sender: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE sender_messages SET state = 'sent', sent_at = ?, error = '', error_code = '', updated_at = ?
			WHERE cliente_id = ? AND id = ? AND state IN ('queued', 'sending', 'failed')`,
			hub.Millis(e.Time), hub.Millis(s.now()), e.ClienteID, d.ID); err != nil {
			return fmt.Errorf("sender: mark sent: %w", err)
		}
		return events.RecordOutgoing(ctx, tx, e.ClienteID, phone, d.ID, text, e.Time)
	case events.TypeReceipt:
		var r events.ReceiptData
		if json.Unmarshal(e.Data, &r) != nil || len(r.MessageIDs) == 0 {
			return nil
		}
		at := r.Timestamp
		if at.IsZero() {
			at = e.Time
		}
		ms := hub.Millis(at)
		ph := strings.TrimSuffix(strings.Repeat("?,", len(r.MessageIDs)), ",")
		var q string
		var args []any
		switch r.Type {
		case "delivered":
			q = `UPDATE sender_messages SET state = 'delivered', delivered_at = ?, sent_at = CASE WHEN sent_at = 0 THEN ? ELSE sent_at END,
				error = '', error_code = '', updated_at = ?
				WHERE cliente_id = ? AND state IN ('queued', 'sending', 'sent', 'failed') AND id IN (` + ph + `)`
			args = []any{ms, ms, hub.Millis(s.now()), e.ClienteID}
		case "read":
			q = `UPDATE sender_messages SET state = 'read', read_at = ?, sent_at = CASE WHEN sent_at = 0 THEN ? ELSE sent_at END,
				delivered_at = CASE WHEN delivered_at = 0 THEN ? ELSE delivered_at END, error = '', error_code = '', updated_at = ?
				WHERE cliente_id = ? AND state IN ('queued', 'sending', 'sent', 'delivered', 'failed') AND id IN (` + ph + `)`
			args = []any{ms, ms, ms, hub.Millis(s.now()), e.ClienteID}
		default:
			return nil
		}
		for _, id := range r.MessageIDs {
			args = append(args, id)
		}
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("sender: receipt: %w", err)
		}
	case events.TypeState:
		var st events.StateData
		if json.Unmarshal(e.Data, &st) != nil {
			return nil
		}
		if st.State == "connected" {
			s.connected(e.ClienteID)
		}
		if reason := restriction(st); reason != "" && s.now().Sub(e.Time) < staleState {
			if _, err := s.pause(ctx, tx, e.ClienteID, reason); err != nil {
				return fmt.Errorf("sender: %w", err)
			}
		}
	}
	return nil
}

// restriction returns why a state change means WhatsApp is restricting the number, or "".
// A logout the cliente asked for (POST /logout) carries no error and is not a restriction.
func restriction(st events.StateData) string {
	lower := strings.ToLower(st.Error)
	switch {
	case st.State == "logged_out" && st.Error != "":
		return "WhatsApp logged the number out (" + st.Error + "); link it again, check it on the phone, then resume"
	case strings.Contains(lower, "banned"):
		return "WhatsApp restricted the number: " + st.Error
	case strings.Contains(lower, "connect failure 402"), strings.Contains(lower, "connect failure 403"), strings.Contains(lower, "connect failure 406"):
		return "WhatsApp refused the connection (" + st.Error + "); the number may be restricted"
	}
	return ""
}

// connected ends a wait for cliente's session manager at once.
func (s *Service) connected(cliente string) {
	if d := s.dispatcher(cliente); d != nil {
		d.mu.Lock()
		d.waitUntil, d.waitStep = time.Time{}, 0
		d.mu.Unlock()
	}
	s.wake(cliente)
}

func jsonUnmarshal(s string, v any) { json.Unmarshal([]byte(s), v) }
