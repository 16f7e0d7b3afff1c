package sender

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/store"
)

// Campaign states as stored. The API shows a running campaign whose start time is still
// ahead as "scheduled".
const (
	CampaignDraft     = "draft"
	CampaignScheduled = "scheduled"
	CampaignRunning   = "running"
	CampaignPaused    = "paused"
	CampaignCancelled = "cancelled"
	CampaignDone      = "done"
)

// CampaignRequest is POST /api/clientes/{id}/campaigns.
type CampaignRequest struct {
	Name     string `json:"name"`
	Template string `json:"template"`
	// Recipients are leads chosen by tag and/or search, all leads, or an uploaded list.
	Recipients Recipients `json:"recipients"`
	// StartAt, when set, holds the campaign until then once started.
	StartAt *time.Time `json:"start_at"`
	// Pacing sets limits of this campaign's own, on top of the cliente's.
	Pacing PacingOverride `json:"pacing"`
	// Start starts the campaign at once (as POST .../start would).
	Start bool `json:"start"`
}

// Recipients choose who a campaign writes to. Tag, Q and All select leads; List is an
// uploaded list instead.
type Recipients struct {
	Tag string `json:"tag,omitempty"`
	Q   string `json:"q,omitempty"`
	All bool   `json:"all,omitempty"`
	// List entries have "phone" (or "telefono") and any other columns, which the template
	// may use as fields. Values from the list win over the lead's.
	List []map[string]string `json:"list,omitempty"`
	// Region reads list numbers written without a country code (ISO 3166, such as AR).
	Region string `json:"region,omitempty"`
}

// RecipientsSpec is how a campaign's recipients were chosen, as the API shows it.
type RecipientsSpec struct {
	Tag    string `json:"tag,omitempty"`
	Q      string `json:"q,omitempty"`
	All    bool   `json:"all,omitempty"`
	List   int    `json:"list,omitempty"` // entries in the uploaded list
	Region string `json:"region,omitempty"`
}

// PacingOverride is a campaign's own pacing. It can only slow the campaign down: the
// cliente's pace (leadmaster.toml) always applies as well, and all of the cliente's
// campaigns share it.
type PacingOverride struct {
	PerMinute  int             `json:"per_minute,omitempty"`
	MinGap     config.Duration `json:"min_gap,omitzero"`
	MaxGap     config.Duration `json:"max_gap,omitzero"`
	DailyCap   int             `json:"daily_cap,omitempty"`
	QuietHours string          `json:"quiet_hours,omitempty"`
}

func (o PacingOverride) validate() error {
	switch {
	case o.PerMinute < 0:
		return hub.Errorf(hub.CodeInvalid, "pacing.per_minute must not be negative")
	case o.DailyCap < 0:
		return hub.Errorf(hub.CodeInvalid, "pacing.daily_cap must not be negative")
	case o.MinGap.Duration < 0 || o.MaxGap.Duration < 0:
		return hub.Errorf(hub.CodeInvalid, "pacing gaps must not be negative")
	case o.MaxGap.Duration != 0 && o.MaxGap.Duration < o.MinGap.Duration:
		return hub.Errorf(hub.CodeInvalid, "pacing.max_gap must not be below pacing.min_gap")
	case o.MaxGap.Duration > 24*time.Hour:
		return hub.Errorf(hub.CodeInvalid, "pacing.max_gap must be at most 24h")
	}
	if o.QuietHours != "" {
		if _, _, err := config.ParseQuietHours(o.QuietHours); err != nil {
			return hub.Errorf(hub.CodeInvalid, "pacing.quiet_hours %v", err)
		}
	}
	return nil
}

func (o PacingOverride) pacing() Pacing {
	p := fromConfig(config.Pacing{PerMinute: o.PerMinute, MinGap: o.MinGap, MaxGap: o.MaxGap, DailyCap: o.DailyCap, QuietHours: o.QuietHours, MaxAttempts: 1})
	if p.MaxGap < p.MinGap {
		p.MaxGap = p.MinGap
	}
	return p
}

// Skipped counts recipients a campaign left out.
type Skipped struct {
	OptedOut  int `json:"opted_out"`
	Duplicate int `json:"duplicate"`
	Invalid   int `json:"invalid"`
}

// Campaign is a campaign with its progress.
type Campaign struct {
	ID         int64          `json:"id"`
	Cliente    string         `json:"cliente"`
	Name       string         `json:"name"`
	Template   string         `json:"template"`
	State      string         `json:"state"`
	Recipients RecipientsSpec `json:"recipients"`
	StartAt    *time.Time     `json:"start_at,omitempty"`
	Pacing     PacingOverride `json:"pacing"`
	// Total is the number of messages in the outbox for this campaign.
	Total    int      `json:"total"`
	Skipped  Skipped  `json:"skipped"`
	Warnings []string `json:"warnings"`
	// Progress counts the campaign's messages in each state.
	Progress map[string]int `json:"progress"`
	// FailedByReason splits the failed count by error_code (cancelled, not_on_whatsapp, ...).
	FailedByReason map[string]int `json:"failed_by_reason"`
	// EstimatedFinish is when the last message should go at the pace in force (absent when
	// the campaign is not running or the cliente's sending is paused).
	EstimatedFinish *time.Time `json:"estimated_finish,omitempty"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	FinishedAt      *time.Time `json:"finished_at,omitempty"`

	startAt  int64
	day      string
	dayCount int
}

const campaignCols = `id, cliente_id, name, template, state, recipients, pacing, start_at, total, skipped_opted_out,
	skipped_duplicate, skipped_invalid, warnings, day, day_count, created_at, updated_at, started_at, finished_at`

func scanCampaign(sc interface{ Scan(...any) error }) (Campaign, error) {
	var c Campaign
	var recipients, pacing, warnings string
	var created, updated, started, finished int64
	err := sc.Scan(&c.ID, &c.Cliente, &c.Name, &c.Template, &c.State, &recipients, &pacing, &c.startAt, &c.Total,
		&c.Skipped.OptedOut, &c.Skipped.Duplicate, &c.Skipped.Invalid, &warnings, &c.day, &c.dayCount,
		&created, &updated, &started, &finished)
	if err != nil {
		return Campaign{}, err
	}
	json.Unmarshal([]byte(recipients), &c.Recipients)
	json.Unmarshal([]byte(pacing), &c.Pacing)
	json.Unmarshal([]byte(warnings), &c.Warnings)
	if c.Warnings == nil {
		c.Warnings = []string{}
	}
	c.StartAt = optTime(c.startAt)
	c.CreatedAt, c.UpdatedAt = hub.FromMillis(created), hub.FromMillis(updated)
	c.StartedAt, c.FinishedAt = optTime(started), optTime(finished)
	return c, nil
}

// recipient is one row about to become a message.
type recipient struct {
	lead   int64
	phone  string
	fields map[string]string
}

type leadInfo struct {
	id             int64
	name, pushName string
	optedOut       bool
}

// CreateCampaign checks req, renders the template for every recipient and puts the messages
// in the outbox, all in one transaction. The campaign starts as a draft unless req.Start.
func (s *Service) CreateCampaign(ctx context.Context, cliente string, req CampaignRequest) (Campaign, error) {
	req.Name = strings.TrimSpace(req.Name)
	switch {
	case req.Name == "":
		return Campaign{}, hub.Errorf(hub.CodeInvalid, "name is required")
	case utf8.RuneCountInString(req.Name) > 200:
		return Campaign{}, hub.Errorf(hub.CodeInvalid, "name must be at most 200 characters")
	case strings.TrimSpace(req.Template) == "":
		return Campaign{}, hub.Errorf(hub.CodeInvalid, "template is required")
	case len(req.Template) > MaxTextLen:
		return Campaign{}, hub.Errorf(hub.CodeInvalid, "template is %d bytes; the most WhatsApp takes is %d", len(req.Template), MaxTextLen)
	}
	tmpl, err := ParseTemplate(req.Template)
	if err != nil {
		return Campaign{}, hub.Errorf(hub.CodeInvalid, "template: %v", err)
	}
	if err := req.Pacing.validate(); err != nil {
		return Campaign{}, err
	}
	r := req.Recipients
	selectors := 0
	if r.Tag != "" || r.Q != "" {
		selectors++
	}
	if r.All {
		selectors++
	}
	if r.List != nil {
		selectors++
	}
	if selectors != 1 {
		return Campaign{}, hub.Errorf(hub.CodeInvalid, `recipients must be one of: {"tag": "..."} and/or {"q": "..."} (leads), {"all": true} (every lead), or {"list": [{"phone": "...", ...}]}`)
	}

	known := map[string]bool{}
	for _, f := range StandardFields {
		known[f] = true
	}
	var rs []recipient
	var sk Skipped
	var warnings []string
	spec := RecipientsSpec{Tag: r.Tag, Q: r.Q, All: r.All, List: len(r.List), Region: r.Region}
	if r.List != nil {
		rs, sk.Invalid, warnings, err = s.listRecipients(ctx, cliente, r, known)
	} else {
		rs, err = s.leadRecipients(ctx, cliente, r)
	}
	if err != nil {
		return Campaign{}, err
	}
	if f := tmpl.Check(func(f string) bool { return known[f] }); f != "" {
		names := make([]string, 0, len(known))
		for k := range known {
			names = append(names, k)
		}
		slices.Sort(names)
		return Campaign{}, &hub.Error{Code: hub.CodeInvalid, Message: fmt.Sprintf("template uses {{%s}}, which is not a field of these recipients (fields: %s)", f, strings.Join(names, ", ")),
			Details: map[string]any{"field": f, "known": names}}
	}

	now := s.now()
	ms := hub.Millis(now)
	seen := make(map[string]bool, len(rs))
	msgs := make([]recipientMsg, 0, len(rs))
	empty := map[string]int{}
	tooLong := 0
	for _, rc := range rs {
		if seen[rc.phone] {
			sk.Duplicate++
			continue
		}
		seen[rc.phone] = true
		if rc.fields["\x00opted"] != "" {
			sk.OptedOut++
			continue
		}
		text, missing := tmpl.Render(func(f string) string { return rc.fields[f] })
		for _, f := range missing {
			empty[f]++
		}
		if strings.TrimSpace(text) == "" || len(text) > MaxTextLen {
			tooLong++
			sk.Invalid++
			continue
		}
		msgs = append(msgs, recipientMsg{id: NewMessageID(), lead: rc.lead, phone: rc.phone, text: text})
	}
	for _, f := range slices.Sorted(mapsKeys(empty)) {
		warnings = append(warnings, fmt.Sprintf("%d recipients have no %s: {{%s}} is empty in their message (write {{%s|...}} to give a fallback)", empty[f], f, f, f))
	}
	if tooLong > 0 {
		warnings = append(warnings, fmt.Sprintf("%d recipients skipped: their message would be empty or longer than %d bytes", tooLong, MaxTextLen))
	}
	if len(msgs) == 0 {
		return Campaign{}, &hub.Error{Code: hub.CodeInvalid,
			Message: fmt.Sprintf("the campaign has no one to write to (%d opted out, %d duplicates, %d invalid)", sk.OptedOut, sk.Duplicate, sk.Invalid),
			Details: map[string]any{"skipped": sk, "warnings": warnings}}
	}
	if warnings == nil {
		warnings = []string{}
	}
	specJSON, _ := json.Marshal(spec)
	pacingJSON, _ := json.Marshal(req.Pacing)
	warnJSON, _ := json.Marshal(warnings)
	var startAt int64
	if req.StartAt != nil {
		startAt = hub.Millis(*req.StartAt)
	}
	state := CampaignDraft
	var started int64
	if req.Start {
		state, started = CampaignRunning, ms
	}
	var id int64
	err = s.db.InTx(ctx, func(tx *store.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO sender_campaigns (cliente_id, name, template, recipients, pacing, state, start_at, total,
			skipped_opted_out, skipped_duplicate, skipped_invalid, warnings, created_at, updated_at, started_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			cliente, req.Name, req.Template, string(specJSON), string(pacingJSON), state, startAt, len(msgs),
			sk.OptedOut, sk.Duplicate, sk.Invalid, string(warnJSON), ms, ms, started).Scan(&id)
		if err != nil {
			return fmt.Errorf("create campaign: %w", err)
		}
		return insertMessages(ctx, tx, cliente, id, msgs, ms)
	})
	if err != nil {
		return Campaign{}, err
	}
	s.log.Info("campaign created", "cliente_id", cliente, "campaign", id, "messages", len(msgs), "state", state,
		"opted_out", sk.OptedOut, "duplicates", sk.Duplicate, "invalid", sk.Invalid)
	if req.Start {
		s.wake(cliente)
	}
	return s.Campaign(ctx, cliente, id)
}

type recipientMsg struct {
	id    string
	lead  int64
	phone string
	text  string
}

// insertBatch rows go in one INSERT: few round trips, and well under every driver's limit
// on bound parameters.
const insertBatch = 500

func insertMessages(ctx context.Context, tx *store.Tx, cliente string, campaign int64, msgs []recipientMsg, now int64) error {
	const row = "(?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)"
	full := ""
	args := make([]any, 0, insertBatch*9)
	for start := 0; start < len(msgs); start += insertBatch {
		batch := msgs[start:min(start+insertBatch, len(msgs))]
		q := full
		if len(batch) != insertBatch || q == "" {
			q = `INSERT INTO sender_messages (cliente_id, id, campaign_id, seq, lead_id, phone, text, state, created_at, updated_at) VALUES ` +
				strings.TrimSuffix(strings.Repeat(row+",", len(batch)), ",")
			if len(batch) == insertBatch {
				full = q
			}
		}
		args = args[:0]
		for i, m := range batch {
			args = append(args, cliente, m.id, campaign, int64(start+i+1), m.lead, m.phone, m.text, now, now)
		}
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("enqueue campaign messages: %w", err)
		}
	}
	return nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// leadRecipients selects cliente's leads by tag and search (or all), in ID order.
func (s *Service) leadRecipients(ctx context.Context, cliente string, r Recipients) ([]recipient, error) {
	where := []string{"cliente_id = ?"}
	args := []any{cliente}
	if r.Tag != "" {
		tagJSON, _ := json.Marshal(r.Tag)
		where = append(where, `tags LIKE ? ESCAPE '\'`)
		args = append(args, "%"+likeEscape(string(tagJSON))+"%")
	}
	if q := strings.TrimSpace(r.Q); q != "" {
		pat := "%" + likeEscape(strings.ToLower(q)) + "%"
		where = append(where, `(phone LIKE ? ESCAPE '\' OR LOWER(name) LIKE ? ESCAPE '\' OR LOWER(push_name) LIKE ? ESCAPE '\')`)
		args = append(args, pat, pat, pat)
	}
	rows, err := s.db.Query(ctx, `SELECT id, phone, name, push_name, opted_out FROM leads WHERE `+strings.Join(where, " AND ")+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("select recipients: %w", err)
	}
	defer rows.Close()
	var out []recipient
	for rows.Next() {
		var l leadInfo
		var phone string
		var opted int
		if err := rows.Scan(&l.id, &phone, &l.name, &l.pushName, &opted); err != nil {
			return nil, fmt.Errorf("select recipients: %w", err)
		}
		l.optedOut = opted != 0
		out = append(out, recipient{lead: l.id, phone: phone, fields: leadFields(phone, l, nil)})
	}
	return out, rows.Err()
}

// leadFields are the template fields of a recipient: the list's columns, then the lead's.
func leadFields(phone string, l leadInfo, list map[string]string) map[string]string {
	f := make(map[string]string, len(list)+4)
	for k, v := range list {
		f[k] = v
	}
	if f[FieldNombre] == "" {
		f[FieldNombre] = l.name
		if f[FieldNombre] == "" {
			f[FieldNombre] = l.pushName
		}
	}
	if f[FieldNombreWhatsApp] == "" {
		f[FieldNombreWhatsApp] = l.pushName
	}
	f[FieldTelefono] = phone
	if l.optedOut {
		f["\x00opted"] = "1" // not a valid field name, so no template can print it
	}
	return f
}

// maxListErrors is how many bad list rows are named in the warnings.
const maxListErrors = 5

// listRecipients reads an uploaded list: it normalizes each phone, joins known leads (for
// their names and opt-out) and adds the list's columns to known.
func (s *Service) listRecipients(ctx context.Context, cliente string, r Recipients, known map[string]bool) ([]recipient, int, []string, error) {
	leads := map[string]leadInfo{}
	rows, err := s.db.Query(ctx, `SELECT id, phone, name, push_name, opted_out FROM leads WHERE cliente_id = ?`, cliente)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("load leads: %w", err)
	}
	for rows.Next() {
		var l leadInfo
		var phone string
		var opted int
		if err := rows.Scan(&l.id, &phone, &l.name, &l.pushName, &opted); err != nil {
			rows.Close()
			return nil, 0, nil, fmt.Errorf("load leads: %w", err)
		}
		l.optedOut = opted != 0
		leads[phone] = l
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, nil, fmt.Errorf("load leads: %w", err)
	}
	// Normalizing numbers (libphonenumber) is most of the work for a big list: spread it
	// over the CPUs, then assemble in list order.
	type parsed struct {
		phone string
		cols  map[string]string
		err   error
	}
	res := make([]parsed, len(r.List))
	workers := min(runtime.GOMAXPROCS(0), max(len(r.List)/1000, 1))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(r.List); i += workers {
				cols := make(map[string]string, len(r.List[i]))
				raw := ""
				for k, v := range r.List[i] {
					k = strings.ToLower(strings.TrimSpace(k))
					if a, ok := fieldAliases[k]; ok {
						k = a
					}
					if k == FieldTelefono {
						raw = v
						continue
					}
					if !validField(k) {
						res[i].err = hub.Errorf(hub.CodeInvalid, "recipients.list[%d]: column %q: a column name is letters, digits and _", i, k)
						break
					}
					cols[k] = v
				}
				if res[i].err == nil {
					res[i].cols = cols
					res[i].phone, res[i].err = contacts.Normalize(raw, r.Region, false)
				}
			}
		})
	}
	wg.Wait()
	var out []recipient
	var warnings []string
	invalid := 0
	for i, p := range res {
		if p.err != nil && p.cols == nil {
			return nil, 0, nil, p.err // a bad column name: the whole list is wrong
		}
		for k := range p.cols {
			known[k] = true
		}
		if p.err != nil {
			invalid++
			if invalid <= maxListErrors {
				warnings = append(warnings, fmt.Sprintf("recipients.list[%d] skipped: %v", i, p.err))
			}
			continue
		}
		l := leads[p.phone]
		out = append(out, recipient{lead: l.id, phone: p.phone, fields: leadFields(p.phone, l, p.cols)})
	}
	if invalid > maxListErrors {
		warnings = append(warnings, fmt.Sprintf("... and %d more list entries without a valid phone", invalid-maxListErrors))
	}
	return out, invalid, warnings, nil
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func getCampaign(ctx context.Context, q hub.Querier, cliente string, id int64) (Campaign, error) {
	c, err := scanCampaign(q.QueryRow(ctx, `SELECT `+campaignCols+` FROM sender_campaigns WHERE cliente_id = ? AND id = ?`, cliente, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Campaign{}, hub.Errorf(hub.CodeNotFound, "cliente %s has no campaign %d", cliente, id)
	}
	if err != nil {
		return Campaign{}, fmt.Errorf("get campaign: %w", err)
	}
	return c, nil
}

// Campaign returns cliente's campaign id with its progress and estimated finish.
func (s *Service) Campaign(ctx context.Context, cliente string, id int64) (Campaign, error) {
	c, err := getCampaign(ctx, s.db, cliente, id)
	if err != nil {
		return Campaign{}, err
	}
	return s.withProgress(ctx, c)
}

func (s *Service) withProgress(ctx context.Context, c Campaign) (Campaign, error) {
	var err error
	if c.Progress, err = counts(ctx, s.db, `cliente_id = ? AND campaign_id = ?`, c.Cliente, c.ID); err != nil {
		return Campaign{}, err
	}
	c.FailedByReason = map[string]int{}
	if c.Progress[StateFailed] > 0 {
		rows, err := s.db.Query(ctx, `SELECT error_code, COUNT(*) FROM sender_messages WHERE cliente_id = ? AND campaign_id = ? AND state = 'failed' GROUP BY error_code`, c.Cliente, c.ID)
		if err != nil {
			return Campaign{}, fmt.Errorf("count failures: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var code string
			var n int
			if err := rows.Scan(&code, &n); err != nil {
				return Campaign{}, fmt.Errorf("count failures: %w", err)
			}
			c.FailedByReason[code] = n
		}
	}
	now := s.now()
	if c.State == CampaignRunning && c.startAt > hub.Millis(now) {
		c.State = CampaignScheduled
	}
	if c.State == CampaignRunning || c.State == CampaignScheduled {
		if t, ok, err := s.estimateFinish(ctx, c, now); err != nil {
			return Campaign{}, err
		} else if ok {
			c.EstimatedFinish = &t
		}
	}
	return c, nil
}

// estimateFinish works out when c's last message should go at the pace in force: the
// cliente's pace shared with its other running campaigns, c's own limits, daily caps and
// quiet hours. It reports false when the cliente's sending is paused.
func (s *Service) estimateFinish(ctx context.Context, c Campaign, now time.Time) (time.Time, bool, error) {
	remaining := c.Progress[StateQueued] + c.Progress[StateSending]
	if remaining == 0 {
		return now, true, nil
	}
	st, err := s.clienteState(ctx, s.db, c.Cliente)
	if err != nil {
		return time.Time{}, false, err
	}
	if st.Paused {
		return time.Time{}, false, nil
	}
	var sharing int
	if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM sender_campaigns WHERE cliente_id = ? AND state = 'running'`, c.Cliente).Scan(&sharing); err != nil {
		return time.Time{}, false, fmt.Errorf("count running campaigns: %w", err)
	}
	sharing = max(sharing, 1)
	cfg := s.cfg()
	loc := s.location(cfg, c.Cliente)
	cp := clientePacing(cfg, c.Cliente)
	own := c.Pacing.pacing()
	per := max(cp.effective()*time.Duration(sharing), own.effective())
	today := dayKey(now, loc)
	const unlimited = math.MaxInt
	capPerDay, capLeft := unlimited, unlimited
	if cp.DailyCap > 0 {
		used := 0
		if st.Day == today {
			used = st.DayCount
		}
		capPerDay, capLeft = max(cp.DailyCap/sharing, 1), max(cp.DailyCap-used, 0)/sharing
	}
	if own.DailyCap > 0 {
		used := 0
		if c.day == today {
			used = c.dayCount
		}
		capPerDay, capLeft = min(capPerDay, own.DailyCap), min(capLeft, max(own.DailyCap-used, 0))
	}
	if capPerDay == unlimited {
		capPerDay, capLeft = 0, 0
	}
	start := later(now, hub.FromMillis(c.startAt))
	t := estimate(start, remaining, per, capLeft, capPerDay, append(slices.Clone(cp.Quiet), own.Quiet...), loc)
	return t, !t.IsZero(), nil
}

// CampaignFilter selects campaigns.
type CampaignFilter struct {
	State         string
	Limit, Offset int
}

// Campaigns lists cliente's campaigns, newest first, with their progress.
func (s *Service) Campaigns(ctx context.Context, cliente string, f CampaignFilter) ([]Campaign, error) {
	where := "cliente_id = ?"
	args := []any{cliente}
	switch f.State {
	case "":
	case CampaignScheduled:
		where += " AND state = 'running' AND start_at > ?"
		args = append(args, hub.Millis(s.now()))
	case CampaignRunning:
		where += " AND state = 'running' AND start_at <= ?"
		args = append(args, hub.Millis(s.now()))
	default:
		where += " AND state = ?"
		args = append(args, f.State)
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	rows, err := s.db.Query(ctx, `SELECT `+campaignCols+` FROM sender_campaigns WHERE `+where+` ORDER BY id DESC LIMIT ? OFFSET ?`, append(args, f.Limit, f.Offset)...)
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	var list []Campaign
	for rows.Next() {
		c, err := scanCampaign(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list campaigns: %w", err)
		}
		list = append(list, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	out := make([]Campaign, 0, len(list))
	for _, c := range list {
		c, err := s.withProgress(ctx, c)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// PreviewEntry is one rendered message of a campaign.
type PreviewEntry struct {
	MessageID string `json:"message_id"`
	To        string `json:"to"`
	Lead      int64  `json:"lead,omitempty"`
	Text      string `json:"text"`
}

// Preview returns the first n messages of cliente's campaign id as they will be sent.
func (s *Service) Preview(ctx context.Context, cliente string, id int64, n int) ([]PreviewEntry, error) {
	if _, err := getCampaign(ctx, s.db, cliente, id); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT id, phone, lead_id, text FROM sender_messages WHERE cliente_id = ? AND campaign_id = ? ORDER BY seq LIMIT ?`, cliente, id, n)
	if err != nil {
		return nil, fmt.Errorf("preview: %w", err)
	}
	defer rows.Close()
	out := []PreviewEntry{}
	for rows.Next() {
		var e PreviewEntry
		if err := rows.Scan(&e.MessageID, &e.To, &e.Lead, &e.Text); err != nil {
			return nil, fmt.Errorf("preview: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Campaign actions.
const (
	ActionStart  = "start"
	ActionPause  = "pause"
	ActionResume = "resume"
	ActionCancel = "cancel"
)

// transitions lists, for each action, the states it applies to and the state it leads to.
var transitions = map[string]struct {
	from []string
	to   string
}{
	ActionStart:  {[]string{CampaignDraft}, CampaignRunning},
	ActionPause:  {[]string{CampaignRunning}, CampaignPaused},
	ActionResume: {[]string{CampaignPaused}, CampaignRunning},
	ActionCancel: {[]string{CampaignDraft, CampaignRunning, CampaignPaused}, CampaignCancelled},
}

// Act applies action (start, pause, resume, cancel) to cliente's campaign id. Cancelling
// fails every message still queued with error_code "cancelled"; messages being sent finish.
func (s *Service) Act(ctx context.Context, cliente string, id int64, action string) (Campaign, error) {
	tr, ok := transitions[action]
	if !ok {
		return Campaign{}, hub.Errorf(hub.CodeNotFound, "no campaign action %q", action)
	}
	err := s.db.InTx(ctx, func(tx *store.Tx) error {
		c, err := getCampaign(ctx, tx, cliente, id)
		if err != nil {
			return err
		}
		if c.State == tr.to && action != ActionStart {
			return nil // pausing a paused campaign is no error
		}
		if !slices.Contains(tr.from, c.State) {
			return hub.Errorf(hub.CodeConflict, "campaign %d is %s; %s applies to a campaign that is %s", id, c.State, action, strings.Join(tr.from, " or "))
		}
		now := hub.Millis(s.now())
		q := `UPDATE sender_campaigns SET state = ?, updated_at = ?`
		args := []any{tr.to, now}
		switch action {
		case ActionStart:
			q += `, started_at = ?`
			args = append(args, now)
		case ActionCancel:
			q += `, finished_at = ?`
			args = append(args, now)
		}
		if _, err := tx.Exec(ctx, q+` WHERE id = ?`, append(args, id)...); err != nil {
			return fmt.Errorf("%s campaign: %w", action, err)
		}
		if action == ActionCancel {
			if _, err := tx.Exec(ctx, `UPDATE sender_messages SET state = 'failed', error = 'the campaign was cancelled before this message was sent',
				error_code = ?, updated_at = ? WHERE cliente_id = ? AND campaign_id = ? AND state = 'queued'`, FailCancelled, now, cliente, id); err != nil {
				return fmt.Errorf("cancel campaign messages: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return Campaign{}, err
	}
	s.log.Info("campaign "+action, "cliente_id", cliente, "campaign", id)
	s.wake(cliente)
	return s.Campaign(ctx, cliente, id)
}
