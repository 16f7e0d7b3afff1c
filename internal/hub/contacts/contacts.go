// Package contacts keeps each cliente's leads: phone numbers normalized to E.164 with
// libphonenumber's rules, names, source, tags and the opt-out flag. Leads come from the
// session manager's contact list (sync), CSV files (import) and the API.
package contacts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/store"
)

// Component names this package's migrations.
const Component = "hub-contacts"

// Migrations create the leads table.
var Migrations = []store.Migration{
	hub.Migration(1, `
CREATE TABLE leads (
	id ID_PK,
	cliente_id TEXT NOT NULL,
	phone TEXT NOT NULL,
	name TEXT NOT NULL DEFAULT '',
	push_name TEXT NOT NULL DEFAULT '',
	source TEXT NOT NULL,
	tags TEXT NOT NULL DEFAULT '[]',
	opted_out INTEGER NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	last_message_at BIGINT NOT NULL DEFAULT 0,
	UNIQUE (cliente_id, phone)
);
CREATE INDEX leads_cliente_recent ON leads (cliente_id, last_message_at)`),
}

// Sources of a lead.
const (
	SourceWhatsApp = "whatsapp"
	SourceCSV      = "csv"
	SourceAPI      = "api"
)

// Lead is one contact of a cliente.
type Lead struct {
	ID            int64      `json:"id"`
	ClienteID     string     `json:"cliente"`
	Phone         string     `json:"phone"`
	Name          string     `json:"name"`
	PushName      string     `json:"push_name,omitempty"`
	Source        string     `json:"source"`
	Tags          []string   `json:"tags"`
	OptedOut      bool       `json:"opted_out"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	LastMessageAt *time.Time `json:"last_message_at,omitempty"`
}

// WAContact is a contact as the session manager's GET /contacts lists it.
type WAContact struct {
	JID          string `json:"jid"`
	Phone        string `json:"phone"`
	Name         string `json:"name"`
	PushName     string `json:"push_name"`
	BusinessName string `json:"business_name"`
}

// Fetcher gets a cliente's contacts from its session manager.
type Fetcher func(ctx context.Context, clienteID string) ([]WAContact, error)

// Service is the contacts module.
type Service struct {
	db    *store.DB
	fetch Fetcher
	log   *slog.Logger
	now   func() time.Time

	syncMu sync.Mutex
	syncs  map[string]*sync.Mutex // one sync at a time per cliente
}

// New returns a Service; fetch may be nil when sync is not needed.
func New(db *store.DB, fetch Fetcher, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{db: db, fetch: fetch, log: log, now: time.Now, syncs: map[string]*sync.Mutex{}}
}

const leadCols = `id, cliente_id, phone, name, push_name, source, tags, opted_out, created_at, updated_at, last_message_at`

func scanLead(sc interface{ Scan(...any) error }) (Lead, error) {
	var l Lead
	var tags string
	var opted int
	var created, updated, last int64
	if err := sc.Scan(&l.ID, &l.ClienteID, &l.Phone, &l.Name, &l.PushName, &l.Source, &tags, &opted, &created, &updated, &last); err != nil {
		return Lead{}, err
	}
	if err := json.Unmarshal([]byte(tags), &l.Tags); err != nil || l.Tags == nil {
		l.Tags = []string{}
	}
	l.OptedOut = opted != 0
	l.CreatedAt, l.UpdatedAt = hub.FromMillis(created), hub.FromMillis(updated)
	if last != 0 {
		t := hub.FromMillis(last)
		l.LastMessageAt = &t
	}
	return l, nil
}

// Filter selects leads.
type Filter struct {
	// Q matches part of the phone, name or push name, ignoring case.
	Q string
	// Tag keeps leads with this tag.
	Tag string
	// OptedOut, when set, keeps leads with that opt-out flag.
	OptedOut *bool
	// Conversations keeps leads that have messages, most recent first.
	Conversations bool
	Limit, Offset int
}

// Page is one page of leads and how many match in all.
type Page struct {
	Leads []Lead `json:"leads"`
	Total int    `json:"total"`
	// NextOffset is the offset of the next page, or 0 when this is the last.
	NextOffset int `json:"next_offset,omitempty"`
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// List returns a page of cliente's leads matching f.
func (s *Service) List(ctx context.Context, cliente string, f Filter) (Page, error) {
	where := []string{"cliente_id = ?"}
	args := []any{cliente}
	if q := strings.TrimSpace(f.Q); q != "" {
		pat := "%" + likeEscape(strings.ToLower(q)) + "%"
		where = append(where, `(phone LIKE ? ESCAPE '\' OR LOWER(name) LIKE ? ESCAPE '\' OR LOWER(push_name) LIKE ? ESCAPE '\')`)
		args = append(args, pat, pat, pat)
	}
	if f.Tag != "" {
		tagJSON, _ := json.Marshal(f.Tag)
		where = append(where, `tags LIKE ? ESCAPE '\'`)
		args = append(args, "%"+likeEscape(string(tagJSON))+"%")
	}
	if f.OptedOut != nil {
		where = append(where, "opted_out = ?")
		args = append(args, boolInt(*f.OptedOut))
	}
	order := "id DESC"
	if f.Conversations {
		where = append(where, "last_message_at > 0")
		order = "last_message_at DESC, id DESC"
	}
	cond := strings.Join(where, " AND ")
	var p Page
	if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM leads WHERE `+cond, args...).Scan(&p.Total); err != nil {
		return Page{}, fmt.Errorf("count leads: %w", err)
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	rows, err := s.db.Query(ctx, `SELECT `+leadCols+` FROM leads WHERE `+cond+` ORDER BY `+order+` LIMIT ? OFFSET ?`,
		append(args, f.Limit, f.Offset)...)
	if err != nil {
		return Page{}, fmt.Errorf("list leads: %w", err)
	}
	defer rows.Close()
	p.Leads = []Lead{}
	for rows.Next() {
		l, err := scanLead(rows)
		if err != nil {
			return Page{}, fmt.Errorf("list leads: %w", err)
		}
		p.Leads = append(p.Leads, l)
	}
	if f.Offset+len(p.Leads) < p.Total {
		p.NextOffset = f.Offset + len(p.Leads)
	}
	return p, rows.Err()
}

// Get returns cliente's lead id.
func (s *Service) Get(ctx context.Context, cliente string, id int64) (Lead, error) {
	return get(ctx, s.db, cliente, id)
}

func get(ctx context.Context, q hub.Querier, cliente string, id int64) (Lead, error) {
	l, err := scanLead(q.QueryRow(ctx, `SELECT `+leadCols+` FROM leads WHERE cliente_id = ? AND id = ?`, cliente, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Lead{}, hub.Errorf(hub.CodeNotFound, "cliente %s has no contact %d", cliente, id)
	}
	if err != nil {
		return Lead{}, fmt.Errorf("get lead: %w", err)
	}
	return l, nil
}

// GetByPhone returns cliente's lead with E.164 phone.
func (s *Service) GetByPhone(ctx context.Context, cliente, phone string) (Lead, error) {
	l, err := scanLead(s.db.QueryRow(ctx, `SELECT `+leadCols+` FROM leads WHERE cliente_id = ? AND phone = ?`, cliente, phone))
	if errors.Is(err, sql.ErrNoRows) {
		return Lead{}, hub.Errorf(hub.CodeNotFound, "cliente %s has no contact %s", cliente, phone)
	}
	return l, err
}

// Input is a lead as an API caller writes it. Nil fields are left as they are on update.
type Input struct {
	Phone    *string   `json:"phone"`
	Name     *string   `json:"name"`
	Tags     *[]string `json:"tags"`
	OptedOut *bool     `json:"opted_out"`
	// Region reads numbers written without a country code (ISO 3166 code such as AR).
	Region string `json:"region"`
}

// Create adds a lead from the API. A phone that already exists is a conflict.
func (s *Service) Create(ctx context.Context, cliente string, in Input) (Lead, error) {
	if in.Phone == nil {
		return Lead{}, hub.Errorf(hub.CodeInvalid, "phone is required")
	}
	phone, err := Normalize(*in.Phone, in.Region, true)
	if err != nil {
		return Lead{}, err
	}
	l := Lead{ClienteID: cliente, Phone: phone, Source: SourceAPI, Tags: []string{}}
	if err := apply(&l, in); err != nil {
		return Lead{}, err
	}
	now := hub.Millis(s.now())
	tags, _ := json.Marshal(l.Tags)
	err = s.db.QueryRow(ctx, `INSERT INTO leads (cliente_id, phone, name, source, tags, opted_out, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, cliente, phone, l.Name, l.Source, string(tags), boolInt(l.OptedOut), now, now).Scan(&l.ID)
	if store.IsUniqueViolation(err) {
		return Lead{}, hub.Errorf(hub.CodeConflict, "cliente %s already has a contact %s", cliente, phone)
	}
	if err != nil {
		return Lead{}, fmt.Errorf("create lead: %w", err)
	}
	return s.Get(ctx, cliente, l.ID)
}

// Update changes the fields set in in.
func (s *Service) Update(ctx context.Context, cliente string, id int64, in Input) (Lead, error) {
	if in.Phone != nil {
		return Lead{}, hub.Errorf(hub.CodeInvalid, "phone cannot change; create a new contact instead")
	}
	var out Lead
	err := s.db.InTx(ctx, func(tx *store.Tx) error {
		l, err := get(ctx, tx, cliente, id)
		if err != nil {
			return err
		}
		if err := apply(&l, in); err != nil {
			return err
		}
		tags, _ := json.Marshal(l.Tags)
		if _, err := tx.Exec(ctx, `UPDATE leads SET name = ?, tags = ?, opted_out = ?, updated_at = ? WHERE id = ?`,
			l.Name, string(tags), boolInt(l.OptedOut), hub.Millis(s.now()), id); err != nil {
			return fmt.Errorf("update lead: %w", err)
		}
		out, err = get(ctx, tx, cliente, id)
		return err
	})
	return out, err
}

// Delete removes a lead.
func (s *Service) Delete(ctx context.Context, cliente string, id int64) error {
	res, err := s.db.Exec(ctx, `DELETE FROM leads WHERE cliente_id = ? AND id = ?`, cliente, id)
	if err != nil {
		return fmt.Errorf("delete lead: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return hub.Errorf(hub.CodeNotFound, "cliente %s has no contact %d", cliente, id)
	}
	return nil
}

func apply(l *Lead, in Input) error {
	if in.Name != nil {
		name := strings.TrimSpace(*in.Name)
		if utf8.RuneCountInString(name) > 200 {
			return hub.Errorf(hub.CodeInvalid, "name must be at most 200 characters")
		}
		l.Name = name
	}
	if in.Tags != nil {
		tags, err := cleanTags(*in.Tags)
		if err != nil {
			return err
		}
		l.Tags = tags
	}
	if in.OptedOut != nil {
		l.OptedOut = *in.OptedOut
	}
	return nil
}

// cleanTags trims, drops empty and repeated tags, and sorts them.
func cleanTags(in []string) ([]string, error) {
	out := []string{}
	for _, t := range in {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if utf8.RuneCountInString(t) > 50 || strings.ContainsAny(t, "\"\\") {
			return nil, hub.Errorf(hub.CodeInvalid, "tag %q must be at most 50 characters without quotes or backslashes", t)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) > 50 {
		return nil, hub.Errorf(hub.CodeInvalid, "a contact may have at most 50 tags")
	}
	slices.Sort(out)
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Touch records a WhatsApp message from or to phone at t: the lead is created (source whatsapp)
// if new, its push name refreshed, and its last-message time moved forward. It runs in the
// caller's transaction and returns the lead's ID.
func Touch(ctx context.Context, q hub.Querier, cliente, phone, pushName string, t time.Time) (int64, error) {
	now := hub.Millis(time.Now())
	at := hub.Millis(t)
	var id int64
	err := q.QueryRow(ctx, `INSERT INTO leads (cliente_id, phone, push_name, source, created_at, updated_at, last_message_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (cliente_id, phone) DO UPDATE SET
			push_name = CASE WHEN excluded.push_name <> '' THEN excluded.push_name ELSE leads.push_name END,
			last_message_at = CASE WHEN excluded.last_message_at > leads.last_message_at THEN excluded.last_message_at ELSE leads.last_message_at END,
			updated_at = excluded.updated_at
		RETURNING id`, cliente, phone, pushName, SourceWhatsApp, now, now, at).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("touch lead %s: %w", phone, err)
	}
	return id, nil
}

// SyncResult counts what a sync changed.
type SyncResult struct {
	Contacts int `json:"contacts"`
	Created  int `json:"created"`
	Updated  int `json:"updated"`
	Skipped  int `json:"skipped"`
}

// Sync pulls cliente's contacts from its session manager and merges them: new numbers become
// leads with source whatsapp; known ones get the WhatsApp names where they have none. Names
// and tags people set by hand or by CSV are never overwritten.
func (s *Service) Sync(ctx context.Context, cliente string) (SyncResult, error) {
	if s.fetch == nil {
		return SyncResult{}, hub.Errorf(hub.CodeUnavailable, "contact sync is not available")
	}
	s.syncMu.Lock()
	mu := s.syncs[cliente]
	if mu == nil {
		mu = new(sync.Mutex)
		s.syncs[cliente] = mu
	}
	s.syncMu.Unlock()
	mu.Lock()
	defer mu.Unlock()

	list, err := s.fetch(ctx, cliente)
	if err != nil {
		return SyncResult{}, err
	}
	res := SyncResult{Contacts: len(list)}
	now := hub.Millis(s.now())
	err = s.db.InTx(ctx, func(tx *store.Tx) error {
		for _, c := range list {
			raw := c.Phone
			if raw == "" {
				raw, _, _ = strings.Cut(c.JID, "@")
				raw, _, _ = strings.Cut(raw, ":")
			}
			phone, err := Normalize(raw, "", false)
			if err != nil || (c.JID != "" && !strings.HasSuffix(c.JID, "@s.whatsapp.net")) {
				res.Skipped++ // groups, broadcast lists, hidden (LID) numbers
				continue
			}
			push := c.PushName
			if push == "" {
				push = c.BusinessName
			}
			var id int64
			var name, oldPush string
			err = tx.QueryRow(ctx, `SELECT id, name, push_name FROM leads WHERE cliente_id = ? AND phone = ?`, cliente, phone).Scan(&id, &name, &oldPush)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if _, err := tx.Exec(ctx, `INSERT INTO leads (cliente_id, phone, name, push_name, source, created_at, updated_at)
					VALUES (?, ?, ?, ?, ?, ?, ?)`, cliente, phone, c.Name, push, SourceWhatsApp, now, now); err != nil {
					return fmt.Errorf("sync insert: %w", err)
				}
				res.Created++
			case err != nil:
				return fmt.Errorf("sync lookup: %w", err)
			default:
				newName := name
				if newName == "" {
					newName = c.Name
				}
				if push == "" {
					push = oldPush
				}
				if newName == name && push == oldPush {
					continue
				}
				if _, err := tx.Exec(ctx, `UPDATE leads SET name = ?, push_name = ?, updated_at = ? WHERE id = ?`, newName, push, now, id); err != nil {
					return fmt.Errorf("sync update: %w", err)
				}
				res.Updated++
			}
		}
		return nil
	})
	if err != nil {
		return SyncResult{}, err
	}
	s.log.Info("contacts synced", "cliente_id", cliente, "contacts", res.Contacts, "created", res.Created, "updated", res.Updated)
	return res, nil
}

// RunSync syncs every cliente ids() returns each interval() (read every round, so a reload
// applies; 0 turns periodic sync off) until ctx ends. The first round runs after firstDelay.
// A cliente whose session manager is unreachable or not linked is skipped until the next round.
// beat is called every round so a health check can tell the loop is alive.
func (s *Service) RunSync(ctx context.Context, ids func() []string, interval func() time.Duration, firstDelay time.Duration, beat func()) {
	next := time.Now().Add(firstDelay)
	for {
		if iv := interval(); iv > 0 && !time.Now().Before(next) {
			for _, id := range ids() {
				if ctx.Err() != nil {
					return
				}
				if _, err := s.Sync(ctx, id); err != nil && ctx.Err() == nil {
					s.log.Debug("periodic contact sync skipped", "cliente_id", id, "err", err)
				}
			}
			next = time.Now().Add(iv)
		}
		if beat != nil {
			beat()
		}
		wait := time.Until(next)
		if wait <= 0 || wait > 10*time.Second {
			wait = 10 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
