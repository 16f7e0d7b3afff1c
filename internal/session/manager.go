// Package session is the session manager: one cliente's WhatsApp connection and its state
// machine, the sent-message ledger, the durable event log, and the HTTP API on its socket.
package session

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leadmaster/leadmaster/internal/store"
	"github.com/leadmaster/leadmaster/internal/whatsapp"
)

// WhatsApp is the subset of the WhatsApp client that Manager uses.
type WhatsApp interface {
	Linked() bool
	Connected() bool
	Self() (jid, pushName string)
	Connect(ctx context.Context) error
	Disconnect()
	PairPhone(ctx context.Context, phone string) (string, error)
	Logout(ctx context.Context) error
	Reset() error
	ResolvePhone(ctx context.Context, phone string) (string, error)
	SendText(ctx context.Context, to, id, text string) (time.Time, error)
	NewMessageID() string
	Contacts(ctx context.Context) ([]whatsapp.Contact, error)
}

var _ WhatsApp = (*whatsapp.Client)(nil)

// States of a session, as GET /status reports them.
const (
	StateConnecting   = "connecting"
	StateQR           = "qr"
	StatePairing      = "pairing"
	StateConnected    = "connected"
	StateDisconnected = "disconnected"
	StateLoggedOut    = "logged_out"
)

// Domain errors the HTTP layer maps to statuses.
var (
	ErrInvalid      = errors.New("invalid")
	ErrConflict     = errors.New("conflict")
	ErrNotReady     = errors.New("not ready")
	ErrLinked       = errors.New("already linked")
	ErrNotConnected = whatsapp.ErrNotConnected
)

// Status is a snapshot of the session.
type Status struct {
	Cliente     string     `json:"cliente"`
	State       string     `json:"state"`
	JID         string     `json:"jid,omitempty"`
	Phone       string     `json:"phone,omitempty"`
	PushName    string     `json:"push_name,omitempty"`
	Since       time.Time  `json:"since"`
	LastError   string     `json:"last_error"`
	QRExpiresAt *time.Time `json:"qr_expires_at,omitempty"`
}

// Options configures a Manager.
type Options struct {
	Cliente           string
	DB                *store.DB
	Events            *EventLog
	Log               *slog.Logger
	ReconnectMaxDelay time.Duration
	// OnStatus is called after every state change (for sd_notify STATUS=).
	OnStatus func(Status)
}

// Manager owns one cliente's WhatsApp session.
type Manager struct {
	opts Options
	wa   WhatsApp
	log  *slog.Logger

	mu        sync.Mutex
	status    Status
	qr        string
	qrExpires time.Time
	maxDelay  time.Duration
	resolved  map[string]resolvedJID
	inflight  map[string]chan struct{}

	kick  chan string // why the control loop should act
	pings chan chan struct{}

	// Counters for /metrics.
	sent, duplicates, sendErrors, received, receipts, reconnects atomic.Int64
}

type resolvedJID struct {
	jid string
	at  time.Time
}

// NewManager returns a Manager; call Run with the WhatsApp client whose events go to HandleEvent.
func NewManager(opts Options) *Manager {
	return &Manager{
		opts:     opts,
		log:      opts.Log,
		maxDelay: opts.ReconnectMaxDelay,
		status:   Status{Cliente: opts.Cliente, State: StateConnecting, Since: time.Now().UTC()},
		resolved: map[string]resolvedJID{},
		inflight: map[string]chan struct{}{},
		kick:     make(chan string, 8),
		pings:    make(chan chan struct{}),
	}
}

// SetReconnectMaxDelay changes the backoff cap (on reload).
func (m *Manager) SetReconnectMaxDelay(d time.Duration) {
	m.mu.Lock()
	m.maxDelay = d
	m.mu.Unlock()
}

// Status returns the current state.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	if s.State == StateQR && !m.qrExpires.IsZero() {
		t := m.qrExpires
		s.QRExpiresAt = &t
	}
	return s
}

// QR returns the code to show and when it expires.
func (m *Manager) QR() (string, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.status.State == StateConnected || (m.wa != nil && m.wa.Linked() && m.status.State != StateQR):
		return "", time.Time{}, ErrLinked
	case m.status.State != StateQR || m.qr == "" || time.Now().After(m.qrExpires):
		return "", time.Time{}, ErrNotReady
	}
	return m.qr, m.qrExpires, nil
}

// setState records a state change, logs it, appends it to the event log and reports it.
func (m *Manager) setState(state, errText string) {
	m.mu.Lock()
	if m.status.State == state && errText == "" {
		m.mu.Unlock()
		return
	}
	m.status.State = state
	m.status.Since = time.Now().UTC()
	if errText != "" {
		m.status.LastError = errText
	}
	if state == StateConnected {
		m.status.LastError = ""
	}
	if state != StateQR {
		m.qr, m.qrExpires = "", time.Time{}
	}
	if m.wa != nil {
		jid, push := m.wa.Self()
		m.status.JID, m.status.PushName, m.status.Phone = jid, push, phoneOfJID(jid)
	}
	st := m.status
	m.mu.Unlock()

	if errText != "" {
		m.log.Warn("session state", "state", state, "err", errText)
	} else {
		m.log.Info("session state", "state", state, "phone", st.Phone)
	}
	data := map[string]string{"state": state, "jid": st.JID, "phone": st.Phone, "error": errText}
	if _, err := m.opts.Events.Append(context.Background(), "state", data); err != nil {
		m.log.Error("state change not logged", "err", err)
	}
	if m.opts.OnStatus != nil {
		m.opts.OnStatus(st)
	}
}

func phoneOfJID(jid string) string {
	user, server, ok := strings.Cut(jid, "@")
	if !ok || server != "s.whatsapp.net" {
		return ""
	}
	user, _, _ = strings.Cut(user, ":")
	user, _, _ = strings.Cut(user, ".")
	return "+" + user
}

// HandleEvent takes the WhatsApp client's events. An error makes WhatsApp redeliver the message.
func (m *Manager) HandleEvent(e whatsapp.Event) error {
	ctx := context.Background()
	switch e.Type {
	case whatsapp.EventQR:
		m.mu.Lock()
		m.qr, m.qrExpires = e.QR, e.QRExpires
		m.mu.Unlock()
		m.setState(StateQR, "")
		if m.opts.OnStatus != nil {
			m.opts.OnStatus(m.Status())
		}
	case whatsapp.EventQRExhausted:
		m.signal("qr_exhausted")
	case whatsapp.EventPairSuccess:
		m.setState(StatePairing, "")
	case whatsapp.EventPairError:
		m.setState(StateQR, "pairing failed: "+e.Err)
	case whatsapp.EventConnected:
		m.setState(StateConnected, "")
		m.signal("connected")
	case whatsapp.EventDisconnected:
		m.setState(StateDisconnected, "connection to WhatsApp lost")
		m.signal("disconnected")
	case whatsapp.EventLoggedOut:
		m.setState(StateLoggedOut, "logged out: "+e.Err)
		m.signal("logged_out")
	case whatsapp.EventConnectFail:
		m.setState(StateDisconnected, e.Err)
		m.signal("disconnected")
	case whatsapp.EventMessage:
		msg := e.Message
		_, err := m.opts.Events.Append(ctx, "message", map[string]any{
			"id": msg.ID, "from": msg.Phone, "from_jid": msg.From, "push_name": msg.PushName,
			"kind": msg.Kind, "text": msg.Text, "timestamp": msg.Time.UTC(),
		})
		if err != nil {
			return err
		}
		m.received.Add(1)
		m.log.Info("message received", "message_id", msg.ID, "kind", msg.Kind)
	case whatsapp.EventReceipt:
		r := e.Receipt
		_, err := m.opts.Events.Append(ctx, "receipt", map[string]any{
			"message_ids": r.IDs, "type": r.Type, "from": r.Phone, "from_jid": r.From, "timestamp": r.Time.UTC(),
		})
		if err != nil {
			return err
		}
		m.receipts.Add(1)
	}
	return nil
}

func (m *Manager) signal(why string) {
	select {
	case m.kick <- why:
	default: // a kick is already pending; the loop re-reads the state anyway
	}
}

// Run drives the connection until ctx ends: connect, show QRs, reconnect with capped
// exponential backoff, return to QR after a logout. It disconnects before returning.
func (m *Manager) Run(ctx context.Context, wa WhatsApp) {
	m.mu.Lock()
	m.wa = wa
	m.mu.Unlock()
	defer wa.Disconnect()
	attempt := 0
	// needConnect is explicit: a socket that shows QR codes is connected but not logged in,
	// so "not logged in" must not mean "dial again".
	needConnect := true
	for ctx.Err() == nil {
		if needConnect {
			m.setState(StateConnecting, "")
			if err := m.connect(ctx, wa); err != nil {
				if ctx.Err() != nil {
					return
				}
				m.setState(StateDisconnected, "connect: "+err.Error())
				attempt++
				if !m.sleep(ctx, m.backoff(attempt)) {
					return
				}
				continue
			}
			needConnect = false
		}
		select {
		case <-ctx.Done():
			return
		case reply := <-m.pings:
			close(reply)
		case why := <-m.kick:
			switch why {
			case "connected":
				attempt = 0
			case "qr_exhausted":
				// Fresh codes come with a fresh connection.
				wa.Disconnect()
				needConnect = true
			case "logged_out", "logout":
				wa.Disconnect()
				if err := wa.Reset(); err != nil {
					m.log.Error("reset device after logout", "err", err)
				}
				attempt = 0
				needConnect = true
			case "disconnected":
				wa.Disconnect()
				attempt++
				m.reconnects.Add(1)
				if !m.sleep(ctx, m.backoff(attempt)) {
					return
				}
				needConnect = true
			}
		}
	}
}

// connect dials WhatsApp while still answering health pings: a dial can take long, and
// the watchdog must not kill a process that is only waiting on the network.
func (m *Manager) connect(ctx context.Context, wa WhatsApp) error {
	done := make(chan error, 1)
	go func() { done <- wa.Connect(ctx) }()
	for {
		select {
		case err := <-done:
			return err
		case reply := <-m.pings:
			close(reply)
		}
	}
}

// sleep waits d, answering health pings meanwhile; false when ctx ended.
func (m *Manager) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case reply := <-m.pings:
			close(reply)
		}
	}
}

func (m *Manager) backoff(attempt int) time.Duration {
	m.mu.Lock()
	maxDelay := m.maxDelay
	m.mu.Unlock()
	d := time.Second << min(attempt-1, 16)
	if d > maxDelay {
		d = maxDelay
	}
	// ±20% jitter so many session managers do not reconnect in lockstep after an outage.
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Check is the health check behind /health and the watchdog: the control loop answers and
// the store responds.
func (m *Manager) Check(ctx context.Context) error {
	reply := make(chan struct{})
	select {
	case m.pings <- reply:
	case <-ctx.Done():
		return errors.New("control loop not responding")
	}
	select {
	case <-reply:
	case <-ctx.Done():
		return errors.New("control loop not responding")
	}
	var one int
	if err := m.opts.DB.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// PairCode asks for a code to link by phone number instead of the QR.
func (m *Manager) PairCode(ctx context.Context, number string) (string, error) {
	e164, err := parsePhone(number)
	if err != nil {
		return "", err
	}
	if m.wa.Linked() && m.Status().State != StateQR {
		return "", ErrLinked
	}
	if m.Status().State != StateQR {
		return "", ErrNotReady
	}
	code, err := m.wa.PairPhone(ctx, strings.TrimPrefix(e164, "+"))
	if err != nil {
		return "", err
	}
	m.setState(StatePairing, "")
	return code, nil
}

// Logout unlinks the device; the session goes back to showing a QR.
func (m *Manager) Logout(ctx context.Context) error {
	if !m.wa.Linked() {
		return whatsapp.ErrNotLinked
	}
	if err := m.wa.Logout(ctx); err != nil {
		return err
	}
	m.setState(StateLoggedOut, "")
	m.signal("logout")
	return nil
}

// Contacts lists the linked account's contacts.
func (m *Manager) Contacts(ctx context.Context) ([]whatsapp.Contact, error) {
	return m.wa.Contacts(ctx)
}

// SendRequest is one text message to send.
type SendRequest struct {
	To   string `json:"to"`
	Text string `json:"text"`
	ID   string `json:"id,omitempty"`
}

// SendResult is what happened to a SendRequest.
type SendResult struct {
	ID        string    `json:"id"`
	To        string    `json:"to"`
	State     string    `json:"state"`
	Timestamp time.Time `json:"timestamp"`
	Duplicate bool      `json:"duplicate"`
}

var messageID = regexp.MustCompile(`^[A-Za-z0-9]{4,64}$`)

// sendTimeout bounds one send to WhatsApp, whoever asked for it.
const sendTimeout = 60 * time.Second

// MaxTextLen is the longest text accepted, WhatsApp's own limit.
const MaxTextLen = 65536

// Send sends a text once per message ID. A repeated ID returns the first result and sends
// nothing; an ID whose earlier attempt did not finish (a crash, an error) is sent again with
// the same ID, which WhatsApp recipients treat as the same message.
func (m *Manager) Send(ctx context.Context, req SendRequest) (SendResult, error) {
	text := req.Text
	if strings.TrimSpace(text) == "" {
		return SendResult{}, fmt.Errorf("%w: text is empty", ErrInvalid)
	}
	if len(text) > MaxTextLen {
		return SendResult{}, fmt.Errorf("%w: text is longer than %d bytes", ErrInvalid, MaxTextLen)
	}
	if req.ID != "" && !messageID.MatchString(req.ID) {
		return SendResult{}, fmt.Errorf("%w: id must be 4-64 letters and digits", ErrInvalid)
	}
	sum := sha256.Sum256([]byte(text))
	digest := hex.EncodeToString(sum[:])
	if req.ID != "" {
		// A known ID answers without touching WhatsApp, even while disconnected.
		if res, ok, err := m.ledgerSent(ctx, req.ID, req.To, digest); err != nil || ok {
			return res, err
		}
	}
	if !m.wa.Connected() {
		return SendResult{}, ErrNotConnected
	}
	to, err := m.resolve(ctx, req.To)
	if err != nil {
		return SendResult{}, err
	}
	id := req.ID
	if id == "" {
		id = m.wa.NewMessageID()
	}
	done, err := m.claim(ctx, id, to, digest)
	if err != nil {
		return SendResult{}, err
	}
	if done != nil {
		return *done, nil
	}
	defer m.release(id)

	// The send does not stop when the caller goes away (a hub killed mid-request): once a
	// message may have left, the ledger must learn how it ended, or the caller's retry would
	// send it a second time.
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
	defer cancel()
	ts, err := m.wa.SendText(sendCtx, to, id, text)
	if err != nil {
		m.sendErrors.Add(1)
		_, dbErr := m.opts.DB.Exec(sendCtx, `UPDATE lm_ledger SET state = 'failed', error = ? WHERE id = ?`, err.Error(), id)
		if dbErr != nil {
			m.log.Error("ledger update", "err", dbErr)
		}
		return SendResult{}, err
	}
	ts = ts.UTC()
	if ts.IsZero() {
		ts = time.Now().UTC()
	}
	// The ledger row and the "sent" event are one transaction: after a crash either both say
	// sent, or the row still says sending and a retry resends with the same ID.
	_, err = m.opts.Events.AppendTx(sendCtx, "sent", map[string]string{"id": id, "to": to}, func(tx *store.Tx) error {
		_, err := tx.Exec(sendCtx, `UPDATE lm_ledger SET state = 'sent', error = '', sent_ms = ? WHERE id = ?`, ts.UnixMilli(), id)
		return err
	})
	if err != nil {
		return SendResult{}, fmt.Errorf("record sent message: %w", err)
	}
	m.sent.Add(1)
	m.log.Info("message sent", "message_id", id)
	return SendResult{ID: id, To: to, State: "sent", Timestamp: ts}, nil
}

// ledgerSent returns the stored result when id was sent already. The same ID for another
// text or recipient is a conflict: the caller reused an ID by mistake.
func (m *Manager) ledgerSent(ctx context.Context, id, reqTo, digest string) (SendResult, bool, error) {
	var to, state, oldDigest string
	var sentMS sql.NullInt64
	err := m.opts.DB.QueryRow(ctx, `SELECT to_jid, digest, state, sent_ms FROM lm_ledger WHERE id = ?`, id).Scan(&to, &oldDigest, &state, &sentMS)
	if errors.Is(err, sql.ErrNoRows) {
		return SendResult{}, false, nil
	}
	if err != nil {
		return SendResult{}, false, fmt.Errorf("ledger: %w", err)
	}
	if oldDigest != digest || !sameRecipient(reqTo, to) {
		return SendResult{}, false, fmt.Errorf("%w: message id %s was already used for a different recipient or text", ErrConflict, id)
	}
	if state != "sent" {
		return SendResult{}, false, nil
	}
	m.duplicates.Add(1)
	return SendResult{ID: id, To: to, State: "sent", Timestamp: time.UnixMilli(sentMS.Int64).UTC(), Duplicate: true}, true, nil
}

// claim reserves id for this attempt. It returns the earlier result when id was already sent.
func (m *Manager) claim(ctx context.Context, id, to, digest string) (*SendResult, error) {
	m.mu.Lock()
	if _, busy := m.inflight[id]; busy {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: message %s is being sent right now", ErrConflict, id)
	}
	m.inflight[id] = make(chan struct{})
	m.mu.Unlock()
	var claimed *SendResult
	err := m.opts.DB.InTx(ctx, func(tx *store.Tx) error {
		var oldDigest, state string
		var sentMS sql.NullInt64
		err := tx.QueryRow(ctx, `SELECT digest, state, sent_ms FROM lm_ledger WHERE id = ?`, id).Scan(&oldDigest, &state, &sentMS)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.Exec(ctx, `INSERT INTO lm_ledger (id, to_jid, digest, state, attempts, created_ms) VALUES (?, ?, ?, 'sending', 1, ?)`, id, to, digest, time.Now().UnixMilli())
			return err
		case err != nil:
			return err
		case oldDigest != digest:
			return fmt.Errorf("%w: message id %s was already used for a different recipient or text", ErrConflict, id)
		case state == "sent":
			m.duplicates.Add(1)
			claimed = &SendResult{ID: id, To: to, State: "sent", Timestamp: time.UnixMilli(sentMS.Int64).UTC(), Duplicate: true}
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE lm_ledger SET state = 'sending', attempts = attempts + 1 WHERE id = ?`, id)
		return err
	})
	if err != nil || claimed != nil {
		m.release(id)
	}
	if err != nil && !errors.Is(err, ErrConflict) {
		err = fmt.Errorf("ledger: %w", err)
	}
	return claimed, err
}

// sameRecipient reports whether the requested recipient may be the stored JID: the JID
// itself, or a phone number whose digits are the JID's user part.
func sameRecipient(reqTo, jid string) bool {
	reqTo = strings.TrimSpace(reqTo)
	if strings.Contains(reqTo, "@") {
		return reqTo == jid
	}
	user, server, _ := strings.Cut(jid, "@")
	if server != "s.whatsapp.net" {
		return true // a LID: the phone number cannot be compared
	}
	e164, err := parsePhone(reqTo)
	return err == nil && strings.TrimPrefix(e164, "+") == user
}

func (m *Manager) release(id string) {
	m.mu.Lock()
	if ch, ok := m.inflight[id]; ok {
		close(ch)
		delete(m.inflight, id)
	}
	m.mu.Unlock()
}

// resolve turns a phone number (any common format, with country code) or a JID into the
// recipient's JID, asking WhatsApp whether the number has an account (cached for a day).
func (m *Manager) resolve(ctx context.Context, to string) (string, error) {
	to = strings.TrimSpace(to)
	if strings.Contains(to, "@") {
		if !strings.HasSuffix(to, "@s.whatsapp.net") && !strings.HasSuffix(to, "@lid") {
			return "", fmt.Errorf("%w: only user JIDs (@s.whatsapp.net) can receive messages, not %q", ErrInvalid, to)
		}
		return to, nil
	}
	e164, err := parsePhone(to)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	r, ok := m.resolved[e164]
	m.mu.Unlock()
	if ok && time.Since(r.at) < 24*time.Hour {
		return r.jid, nil
	}
	jid, err := m.wa.ResolvePhone(ctx, e164)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	m.resolved[e164] = resolvedJID{jid: jid, at: time.Now()}
	m.mu.Unlock()
	return jid, nil
}
