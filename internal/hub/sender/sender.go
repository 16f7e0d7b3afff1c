// Package sender is the hub's outbox: single messages and campaigns, paced per cliente, sent
// through each cliente's session manager so that nothing is lost and nothing is sent twice.
//
// Every message is written to the outbox with its WhatsApp message ID before the first
// attempt. A dispatcher per cliente takes messages in turn, marks each "sending" in the
// database, asks the session manager to send it with that ID, and records the answer. The
// session manager's ledger turns a repeated ID into a no-op that returns the first result, so
// after a crash anywhere the hub resends whatever was "sending" with the same ID; and the
// session manager's "sent" events (read by package events, which calls HandleEvent inside the
// transaction that stores them) mark messages sent even when the hub never saw the answer.
// Receipts move messages on to delivered and read.
//
// Campaigns render a template for each recipient at creation, so the outbox holds exactly the
// texts that will go. Pacing (rate on an absolute schedule, random gaps, daily cap and quiet
// hours in the cliente's time zone) is per cliente and shared by all its campaigns; see
// docs/sender.md for the rules.
package sender

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	mrand "math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/store"
)

// Component names this package's migrations.
const Component = "hub-sender"

// Migrations create the outbox tables. They run after contacts' and events' (the sender
// reads leads and writes conversation rows).
var Migrations = []store.Migration{
	hub.Migration(1, `
CREATE TABLE sender_campaigns (
	id ID_PK,
	cliente_id TEXT NOT NULL,
	name TEXT NOT NULL,
	template TEXT NOT NULL,
	recipients TEXT NOT NULL,
	pacing TEXT NOT NULL DEFAULT '{}',
	state TEXT NOT NULL,
	start_at BIGINT NOT NULL DEFAULT 0,
	total INTEGER NOT NULL DEFAULT 0,
	skipped_opted_out INTEGER NOT NULL DEFAULT 0,
	skipped_duplicate INTEGER NOT NULL DEFAULT 0,
	skipped_invalid INTEGER NOT NULL DEFAULT 0,
	warnings TEXT NOT NULL DEFAULT '[]',
	day TEXT NOT NULL DEFAULT '',
	day_count INTEGER NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	started_at BIGINT NOT NULL DEFAULT 0,
	finished_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sender_campaigns_cliente ON sender_campaigns (cliente_id, state);
CREATE TABLE sender_messages (
	cliente_id TEXT NOT NULL,
	id TEXT NOT NULL,
	campaign_id BIGINT NOT NULL DEFAULT 0,
	seq BIGINT NOT NULL,
	lead_id BIGINT NOT NULL DEFAULT 0,
	phone TEXT NOT NULL,
	text TEXT NOT NULL,
	state TEXT NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_at BIGINT NOT NULL DEFAULT 0,
	error TEXT NOT NULL DEFAULT '',
	error_code TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	first_attempt_at BIGINT NOT NULL DEFAULT 0,
	sent_at BIGINT NOT NULL DEFAULT 0,
	delivered_at BIGINT NOT NULL DEFAULT 0,
	read_at BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (cliente_id, id)
);
CREATE INDEX sender_messages_queue ON sender_messages (cliente_id, campaign_id, state, seq);
CREATE TABLE sender_clientes (
	cliente_id TEXT PRIMARY KEY,
	paused INTEGER NOT NULL DEFAULT 0,
	reason TEXT NOT NULL DEFAULT '',
	paused_at BIGINT NOT NULL DEFAULT 0,
	day TEXT NOT NULL DEFAULT '',
	day_count INTEGER NOT NULL DEFAULT 0
)`),
}

// Message states. A message only moves forward (queued → sending → sent → delivered → read),
// except that a failed attempt returns it to queued for a retry; a message marked failed
// moves to sent, delivered or read if the session manager's events say it did go out.
const (
	StateQueued    = "queued"
	StateSending   = "sending"
	StateSent      = "sent"
	StateDelivered = "delivered"
	StateRead      = "read"
	StateFailed    = "failed"
)

// Error codes of failed messages (the message's error_code; error has the words).
const (
	FailInvalidPhone  = "invalid_phone"
	FailNotOnWhatsApp = "not_on_whatsapp"
	FailOptedOut      = "opted_out"
	FailCancelled     = "cancelled"
	FailRejected      = "rejected"    // the session manager refused the request (400, 409)
	FailAttempts      = "attempts"    // max_attempts transient failures
	FailInterrupted   = "interrupted" // the hub stopped during the last allowed attempt
)

// Options are what a Service is built from.
type Options struct {
	DB *store.DB
	// Config returns the configuration in force (pacing and time zones are read from it at
	// every step, so a reload applies at once).
	Config  func() *config.Config
	Gateway Gateway
	Log     *slog.Logger
}

// Service is the sender module: the outbox, campaigns, dispatchers and HTTP handlers.
type Service struct {
	db   *store.DB
	cfg  func() *config.Config
	gw   Gateway
	log  *slog.Logger
	now  func() time.Time
	rand func() float64

	mu          sync.Mutex
	dispatchers map[string]*dispatcher
	wakes       map[string]chan struct{}
	zones       map[string]*time.Location
	// Tuning, changed by tests and benchmarks.
	retryBase   time.Duration // first retry delay after a transient failure
	waitMax     time.Duration // longest pause while the session manager is unavailable
	pollEvery   time.Duration // longest sleep when nothing is due
	unpacedConc int           // messages in flight at once when a cliente has no pacing
	// failureWindow is how long failures must go on (with failuresToPause of them) before
	// they pause the cliente.
	failureWindow time.Duration
}

// New returns a Service. Call Run to start sending.
func New(o Options) *Service {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		db: o.DB, cfg: o.Config, gw: o.Gateway, log: log,
		now: time.Now, rand: mrand.Float64,
		dispatchers: map[string]*dispatcher{}, wakes: map[string]chan struct{}{}, zones: map[string]*time.Location{},
		retryBase: 5 * time.Second, waitMax: 15 * time.Second, pollEvery: 5 * time.Second, unpacedConc: 8,
		failureWindow: time.Minute,
	}
}

// wakeChan returns cliente's wake channel (buffered 1, so a wake is never lost or blocking).
func (s *Service) wakeChan(cliente string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.wakes[cliente]
	if ch == nil {
		ch = make(chan struct{}, 1)
		s.wakes[cliente] = ch
	}
	return ch
}

// wake tells cliente's dispatcher to look at the outbox now.
func (s *Service) wake(cliente string) {
	select {
	case s.wakeChan(cliente) <- struct{}{}:
	default:
	}
}

// Run keeps one dispatcher per configured cliente until ctx ends, following configuration
// changes. It returns once every dispatcher stopped (in-flight sends get a few seconds to
// finish; anything cut short is resent with the same ID at the next start).
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	running := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range running {
			cancel()
		}
		wg.Wait()
	}()
	for {
		want := map[string]bool{}
		for _, id := range s.cfg().ClienteIDs() {
			want[id] = true
			if running[id] == nil {
				dctx, cancel := context.WithCancel(ctx)
				running[id] = cancel
				d := newDispatcher(s, id)
				s.mu.Lock()
				s.dispatchers[id] = d
				s.mu.Unlock()
				wg.Go(func() { d.run(dctx) })
			}
		}
		for id, cancel := range running {
			if !want[id] {
				cancel()
				delete(running, id)
				s.mu.Lock()
				delete(s.dispatchers, id)
				s.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// messageIDPattern is what the session manager accepts as a caller-chosen message ID.
var messageIDPattern = regexp.MustCompile(`^[A-Za-z0-9]{4,64}$`)

// NewMessageID returns a WhatsApp message ID in the form whatsmeow and WhatsApp Web use:
// "3EB0" and 18 upper-case hex digits.
func NewMessageID() string {
	b := make([]byte, 9)
	rand.Read(b)
	return "3EB0" + strings.ToUpper(hex.EncodeToString(b))
}

// ValidMessageID reports whether id may be given as a message ID.
func ValidMessageID(id string) bool { return messageIDPattern.MatchString(id) }

// location returns cliente's time zone: time_zone from the configuration, else the host's.
func (s *Service) location(cfg *config.Config, cliente string) *time.Location {
	tz := cfg.Clientes[cliente].TimeZone
	if tz == "" {
		return time.Local
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if loc := s.zones[tz]; loc != nil {
		return loc
	}
	loc, err := time.LoadLocation(tz) // validated with the configuration
	if err != nil {
		return time.Local
	}
	s.zones[tz] = loc
	return loc
}
