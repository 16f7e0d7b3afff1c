// Package webhook delivers each cliente's events to its webhook URL: JSON bodies signed with
// HMAC-SHA256 over "TIMESTAMP.BODY", an event ID for deduplication, and a durable outbox in
// the hub database, filled in the same transaction that stores the event. Failed deliveries
// are retried with exponential backoff across restarts; after MaxAttempts they go to the
// dead-letter list, from which they can be retried by hand.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/store"
	"github.com/leadmaster/leadmaster/internal/version"
)

// Component names this package's migrations.
const Component = "hub-webhook"

// Migrations create the webhook tables.
var Migrations = []store.Migration{
	hub.Migration(1, `
CREATE TABLE webhook_settings (
	cliente_id TEXT PRIMARY KEY,
	url TEXT NOT NULL,
	secret TEXT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE TABLE webhook_outbox (
	id TEXT PRIMARY KEY,
	cliente_id TEXT NOT NULL,
	seq BIGINT NOT NULL,
	type TEXT NOT NULL,
	payload TEXT NOT NULL,
	state TEXT NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_at BIGINT NOT NULL,
	last_error TEXT NOT NULL DEFAULT '',
	last_status INTEGER NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	delivered_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_at);
CREATE INDEX webhook_outbox_cliente ON webhook_outbox (cliente_id, state, created_at)`),
}

// Header names of a delivery. docs/hub-api.md shows how to verify them.
const (
	HeaderEventID   = "X-LeadMaster-Event-Id"
	HeaderEventType = "X-LeadMaster-Event-Type"
	HeaderCliente   = "X-LeadMaster-Cliente"
	HeaderTimestamp = "X-LeadMaster-Timestamp"
	HeaderSignature = "X-LeadMaster-Signature"
	HeaderAttempt   = "X-LeadMaster-Attempt"
)

// Delivery states.
const (
	StatePending   = "pending"
	StateDelivered = "delivered"
	StateDead      = "dead"
)

// Payload is the JSON body of a delivery.
type Payload struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Cliente string          `json:"cliente"`
	Seq     int64           `json:"seq"`
	Time    time.Time       `json:"time"`
	Data    json.RawMessage `json:"data"`
}

// Sign returns the signature header value for body sent at ts (Unix seconds):
// "v1=" + hex(HMAC-SHA256(secret, ts + "." + body)).
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte("."))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a delivery's signature and that its timestamp is within tolerance of now; it
// is what a receiver written in Go calls (docs/hub-api.md has the recipe for other languages).
func Verify(secret string, h http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	ts, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return errors.New("missing or malformed " + HeaderTimestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("timestamp %d is %s away from now", ts, d.Round(time.Second))
	}
	want := Sign(secret, ts, body)
	for _, got := range strings.Split(h.Get(HeaderSignature), ",") {
		if hmac.Equal([]byte(strings.TrimSpace(got)), []byte(want)) {
			return nil
		}
	}
	return errors.New("signature does not match")
}

// Settings are a cliente's webhook as the API shows it.
type Settings struct {
	URL string `json:"url"`
	// Secret is masked except in the answer that set it.
	Secret string `json:"secret,omitempty"`
	// Source is config (leadmaster.toml), api (set through the API, which wins) or none.
	Source string `json:"source"`
}

// Service is the webhook module: the events.Sink that fills the outbox and the dispatcher
// that empties it.
type Service struct {
	db  *store.DB
	cfg func() *config.Config
	log *slog.Logger

	// Client sends deliveries (redirects are not followed: a 3xx is a failure).
	Client *http.Client
	// MaxAttempts is how many tries before a delivery is dead.
	MaxAttempts int
	// Backoff is the pause after the nth failure (n from 1).
	Backoff func(n int) time.Duration
	// Poll is how often the outbox is checked when nothing wakes the dispatcher.
	Poll time.Duration
	Now  func() time.Time

	wake      chan struct{}
	delivered atomic.Int64
	failed    atomic.Int64
}

// New returns a Service; cfg gives the webhook settings from leadmaster.toml.
func New(db *store.DB, cfg func() *config.Config, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		db: db, cfg: cfg, log: log,
		Client: &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		MaxAttempts: 15,
		Backoff:     DefaultBackoff,
		Poll:        5 * time.Second,
		Now:         time.Now,
		wake:        make(chan struct{}, 1),
	}
}

// DefaultBackoff waits 10s after the first failure, doubling up to an hour, with ±20% jitter:
// 15 attempts span about nine hours.
func DefaultBackoff(n int) time.Duration {
	d := 10 * time.Second
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 2
	}
	d = min(d, time.Hour)
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

// Wake makes the dispatcher look at the outbox now (after events were stored).
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// endpoint returns cliente's webhook URL and secret ("" when none). q is the transaction, if any.
func (s *Service) endpoint(ctx context.Context, q hub.Querier, cliente string) (url, secret, source string, err error) {
	err = q.QueryRow(ctx, `SELECT url, secret FROM webhook_settings WHERE cliente_id = ?`, cliente).Scan(&url, &secret)
	if err == nil {
		return url, secret, "api", nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", "", "", fmt.Errorf("webhook settings: %w", err)
	}
	cl := s.cfg().Clientes[cliente]
	if cl.WebhookURL != "" {
		return cl.WebhookURL, cl.WebhookSecret, "config", nil
	}
	return "", "", "none", nil
}

// HandleEvent puts e in the outbox when its cliente has a webhook (events.Sink).
func (s *Service) HandleEvent(ctx context.Context, tx *store.Tx, e events.Stored) error {
	url, _, _, err := s.endpoint(ctx, tx, e.ClienteID)
	if err != nil || url == "" {
		return err
	}
	body, err := json.Marshal(Payload{ID: e.ID, Type: e.Type, Cliente: e.ClienteID, Seq: e.Seq, Time: e.Time, Data: e.Data})
	if err != nil {
		return err
	}
	now := hub.Millis(s.Now())
	// Queue behind the cliente's held-back entries (a failing receiver), to keep the order.
	var held sql.NullInt64
	if err := tx.QueryRow(ctx, `SELECT MAX(next_at) FROM webhook_outbox WHERE cliente_id = ? AND state = ?`,
		e.ClienteID, StatePending).Scan(&held); err != nil {
		return err
	}
	next := max(now, held.Int64)
	_, err = tx.Exec(ctx, `INSERT INTO webhook_outbox (id, cliente_id, seq, type, payload, state, next_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, e.ID, e.ClienteID, e.Seq, e.Type, string(body), StatePending, next, now)
	return err
}

var _ events.Sink = (*Service)(nil)

// Get returns cliente's webhook settings with the secret masked.
func (s *Service) Get(ctx context.Context, cliente string) (Settings, error) {
	url, secret, source, err := s.endpoint(ctx, s.db, cliente)
	if err != nil {
		return Settings{}, err
	}
	if url == "" && source == "api" {
		source = "api (disabled)"
	}
	return Settings{URL: url, Secret: mask(secret), Source: source}, nil
}

func mask(secret string) string {
	if secret == "" {
		return ""
	}
	if len(secret) <= 8 {
		return "****"
	}
	return secret[:4] + "…" + secret[len(secret)-2:]
}

// Set stores cliente's webhook through the API (it wins over leadmaster.toml). An empty url
// turns the webhook off; an empty secret makes one. The answer shows the secret in full, once.
func (s *Service) Set(ctx context.Context, cliente, url, secret string) (Settings, error) {
	if url != "" {
		if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
			return Settings{}, hub.Errorf(hub.CodeInvalid, "url must start with http:// or https://")
		}
		if len(url) > 2000 {
			return Settings{}, hub.Errorf(hub.CodeInvalid, "url must be at most 2000 characters")
		}
	}
	if secret == "" && url != "" {
		b := make([]byte, 24)
		rand.Read(b)
		secret = "whsec_" + base64.RawURLEncoding.EncodeToString(b)
	}
	if url != "" && (utf8.RuneCountInString(secret) < 16 || len(secret) > 256) {
		return Settings{}, hub.Errorf(hub.CodeInvalid, "secret must be 16-256 characters")
	}
	_, err := s.db.Exec(ctx, `INSERT INTO webhook_settings (cliente_id, url, secret, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (cliente_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, updated_at = excluded.updated_at`,
		cliente, url, secret, hub.Millis(s.Now()))
	if err != nil {
		return Settings{}, fmt.Errorf("set webhook: %w", err)
	}
	return Settings{URL: url, Secret: secret, Source: "api"}, nil
}

// Reset drops the API setting, so leadmaster.toml applies again.
func (s *Service) Reset(ctx context.Context, cliente string) error {
	_, err := s.db.Exec(ctx, `DELETE FROM webhook_settings WHERE cliente_id = ?`, cliente)
	return err
}

// Delivery is one outbox entry.
type Delivery struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Seq         int64           `json:"seq"`
	State       string          `json:"state"`
	Attempts    int             `json:"attempts"`
	NextAt      *time.Time      `json:"next_attempt_at,omitempty"`
	LastError   string          `json:"last_error,omitempty"`
	LastStatus  int             `json:"last_status,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	DeliveredAt *time.Time      `json:"delivered_at,omitempty"`
	Payload     json.RawMessage `json:"payload"`
}

// Deliveries lists cliente's outbox entries in state ("" for all), newest first.
func (s *Service) Deliveries(ctx context.Context, cliente, state string, limit int) ([]Delivery, error) {
	q := `SELECT id, type, seq, state, attempts, next_at, last_error, last_status, created_at, delivered_at, payload
		FROM webhook_outbox WHERE cliente_id = ?`
	args := []any{cliente}
	switch state {
	case "":
	case StatePending, StateDelivered, StateDead:
		q += ` AND state = ?`
		args = append(args, state)
	default:
		return nil, hub.Errorf(hub.CodeBadRequest, "state must be pending, delivered or dead, not %q", state)
	}
	rows, err := s.db.Query(ctx, q+` ORDER BY created_at DESC, seq DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	defer rows.Close()
	out := []Delivery{}
	for rows.Next() {
		var d Delivery
		var next, created, delivered int64
		var payload string
		if err := rows.Scan(&d.ID, &d.Type, &d.Seq, &d.State, &d.Attempts, &next, &d.LastError, &d.LastStatus, &created, &delivered, &payload); err != nil {
			return nil, fmt.Errorf("list deliveries: %w", err)
		}
		d.CreatedAt = hub.FromMillis(created)
		if d.State == StatePending {
			t := hub.FromMillis(next)
			d.NextAt = &t
		}
		if delivered != 0 {
			t := hub.FromMillis(delivered)
			d.DeliveredAt = &t
		}
		d.Payload = json.RawMessage(payload)
		out = append(out, d)
	}
	return out, rows.Err()
}

// Retry puts cliente's dead (or pending) delivery id back in the queue for now, with a fresh
// attempt count.
func (s *Service) Retry(ctx context.Context, cliente, id string) error {
	res, err := s.db.Exec(ctx, `UPDATE webhook_outbox SET state = ?, attempts = 0, next_at = ? WHERE cliente_id = ? AND id = ? AND state <> ?`,
		StatePending, hub.Millis(s.Now()), cliente, id, StateDelivered)
	if err != nil {
		return fmt.Errorf("retry delivery: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return hub.Errorf(hub.CodeNotFound, "cliente %s has no undelivered webhook event %q", cliente, id)
	}
	s.Wake()
	return nil
}

// Counts returns how many outbox entries are in each state (for /metrics).
func (s *Service) Counts(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.Query(ctx, `SELECT state, COUNT(*) FROM webhook_outbox GROUP BY state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{StatePending: 0, StateDelivered: 0, StateDead: 0}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, rows.Err()
}

// Sent returns how many deliveries succeeded and failed since start.
func (s *Service) Sent() (delivered, failed int64) { return s.delivered.Load(), s.failed.Load() }

type due struct {
	id, cliente, payload, typ string
	attempts                  int
	created                   int64
}

// Run delivers due outbox entries until ctx ends: one cliente's in order, clientes in parallel.
// beat is called every round for the health check.
func (s *Service) Run(ctx context.Context, beat func()) {
	lastPrune := time.Time{}
	for ctx.Err() == nil {
		n, err := s.round(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("webhook dispatcher", "err", err)
		}
		if beat != nil {
			beat()
		}
		if time.Since(lastPrune) > time.Hour {
			s.prune(ctx)
			lastPrune = time.Now()
		}
		if n > 0 && err == nil {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-time.After(s.Poll):
		}
	}
}

// round delivers what is due now and returns how many it tried.
func (s *Service) round(ctx context.Context) (int, error) {
	rows, err := s.db.Query(ctx, `SELECT id, cliente_id, type, payload, attempts, created_at FROM webhook_outbox
		WHERE state = ? AND next_at <= ? ORDER BY created_at, seq LIMIT 200`, StatePending, hub.Millis(s.Now()))
	if err != nil {
		return 0, err
	}
	byCliente := map[string][]due{}
	n := 0
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.id, &d.cliente, &d.typ, &d.payload, &d.attempts, &d.created); err != nil {
			rows.Close()
			return 0, err
		}
		byCliente[d.cliente] = append(byCliente[d.cliente], d)
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for cliente, ds := range byCliente {
		wg.Go(func() {
			for _, d := range ds {
				if ctx.Err() != nil || !s.deliver(ctx, cliente, d) {
					return // keep this cliente's order: the rest waits for the failed one
				}
			}
		})
	}
	wg.Wait()
	return n, nil
}

// deliver makes one attempt and records its outcome; it reports whether the entry is done
// (delivered or dead), so later ones may go.
func (s *Service) deliver(ctx context.Context, cliente string, d due) bool {
	url, secret, _, err := s.endpoint(ctx, s.db, cliente)
	if err != nil {
		return false
	}
	log := s.log.With("cliente_id", cliente, "event_id", d.id)
	if url == "" {
		s.finish(ctx, d, StateDead, 0, "the cliente has no webhook any more")
		return true
	}
	attempt := d.attempts + 1
	status, err := s.post(ctx, url, secret, d, attempt)
	if ctx.Err() != nil {
		return false // shutting down: the attempt does not count
	}
	if err == nil {
		s.delivered.Add(1)
		s.finish(ctx, d, StateDelivered, status, "")
		log.Debug("webhook delivered", "type", d.typ, "attempt", attempt)
		return true
	}
	s.failed.Add(1)
	if attempt >= s.MaxAttempts {
		log.Warn("webhook delivery dead after all attempts", "attempts", attempt, "err", err)
		s.fail(ctx, d, attempt, status, err.Error(), true)
		return true
	}
	log.Info("webhook delivery failed; will retry", "attempt", attempt, "err", err)
	s.fail(ctx, d, attempt, status, err.Error(), false)
	return false
}

func (s *Service) post(ctx context.Context, url, secret string, d due, attempt int) (int, error) {
	ts := s.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(d.payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "LeadMaster-Webhook/"+version.Version)
	req.Header.Set(HeaderEventID, d.id)
	req.Header.Set(HeaderEventType, d.typ)
	req.Header.Set(HeaderCliente, d.cliente)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(secret, ts, []byte(d.payload)))
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	resp, err := s.Client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap() // drop the repeated method and URL
		}
		return 0, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		msg := resp.Status
		if s := strings.TrimSpace(string(bytes.ToValidUTF8(snippet, nil))); s != "" {
			msg += ": " + s
		}
		return resp.StatusCode, errors.New(msg)
	}
	return resp.StatusCode, nil
}

func (s *Service) finish(ctx context.Context, d due, state string, status int, msg string) {
	var deliveredAt int64
	if state == StateDelivered {
		deliveredAt = hub.Millis(s.Now())
	}
	if _, err := s.db.Exec(ctx, `UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, last_status = ?, last_error = ?, delivered_at = ?
		WHERE id = ?`, state, status, msg, deliveredAt, d.id); err != nil {
		s.log.Error("webhook outbox update", "event_id", d.id, "err", err)
	}
}

func (s *Service) fail(ctx context.Context, d due, attempt, status int, msg string, dead bool) {
	if len(msg) > 500 {
		msg = msg[:500]
	}
	next := s.Now().Add(s.Backoff(attempt))
	err := s.db.InTx(ctx, func(tx *store.Tx) error {
		state := StatePending
		if dead {
			state = StateDead
		}
		if _, err := tx.Exec(ctx, `UPDATE webhook_outbox SET state = ?, attempts = ?, next_at = ?, last_status = ?, last_error = ? WHERE id = ?`,
			state, attempt, hub.Millis(next), status, msg, d.id); err != nil {
			return err
		}
		if dead {
			return nil
		}
		// Hold the cliente's later events back until this one goes, to keep their order.
		_, err := tx.Exec(ctx, `UPDATE webhook_outbox SET next_at = ? WHERE cliente_id = ? AND state = ? AND next_at < ? AND id <> ?`,
			hub.Millis(next), d.cliente, StatePending, hub.Millis(next), d.id)
		return err
	})
	if err != nil {
		s.log.Error("webhook outbox update", "event_id", d.id, "err", err)
	}
}

// prune forgets deliveries that succeeded more than a week ago.
func (s *Service) prune(ctx context.Context) {
	cut := hub.Millis(s.Now().Add(-7 * 24 * time.Hour))
	s.db.Exec(ctx, `DELETE FROM webhook_outbox WHERE state = ? AND delivered_at < ?`, StateDelivered, cut)
}
