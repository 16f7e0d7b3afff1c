package sender

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub"
)

// CampaignBodyLimit is the largest POST /campaigns body: room for an uploaded list of about
// 100,000 recipients with a few columns each.
const CampaignBodyLimit = 32 << 20

// The handlers below are mounted by package api on the routes it lists (all cliente-scoped:
// the caller's access to {id} is checked before they run). A nil *Service answers 503.

// HandleMessageCreate is POST /api/clientes/{id}/messages: 202 with the queued message (200
// with "duplicate": true when the ID is already in the outbox with the same recipient and text).
func (s *Service) HandleMessageCreate(w http.ResponseWriter, r *http.Request) {
	if !s.available(w, r) {
		return
	}
	var req SendRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	m, err := s.Enqueue(r.Context(), r.PathValue("id"), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusAccepted
	if m.Duplicate {
		status = http.StatusOK
	}
	writeJSON(w, status, m)
}

// HandleMessageGet is GET /api/clientes/{id}/messages/{mid}.
func (s *Service) HandleMessageGet(w http.ResponseWriter, r *http.Request) {
	if !s.available(w, r) {
		return
	}
	m, err := s.Message(r.Context(), r.PathValue("id"), r.PathValue("mid"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// HandleMessagesList is GET /api/clientes/{id}/messages?state=&campaign=&limit=&offset=
// (campaign=0 lists single messages only).
func (s *Service) HandleMessagesList(w http.ResponseWriter, r *http.Request) {
	if !s.available(w, r) {
		return
	}
	q := r.URL.Query()
	var f MessageFilter
	var err error
	if f.State = q.Get("state"); f.State != "" && !validState(f.State) {
		s.fail(w, r, hub.Errorf(hub.CodeBadRequest, "state must be queued, sending, sent, delivered, read or failed, not %q", f.State))
		return
	}
	if v := q.Get("campaign"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.fail(w, r, hub.Errorf(hub.CodeBadRequest, "campaign must be a campaign ID (0: single messages only), not %q", v))
			return
		}
		f.Campaign = n
		if n == 0 {
			f.Campaign = -1
		}
	}
	if f.Limit, err = hub.IntParam(r, "limit", 50, 1, 1000); err == nil {
		f.Offset, err = hub.IntParam(r, "offset", 0, 0, 1<<30)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p, err := s.Messages(r.Context(), r.PathValue("id"), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func validState(st string) bool {
	switch st {
	case StateQueued, StateSending, StateSent, StateDelivered, StateRead, StateFailed:
		return true
	}
	return false
}

// HandleCampaignCreate is POST /api/clientes/{id}/campaigns: 201 with the campaign.
func (s *Service) HandleCampaignCreate(w http.ResponseWriter, r *http.Request) {
	if !s.available(w, r) {
		return
	}
	var req CampaignRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.CreateCampaign(r.Context(), r.PathValue("id"), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

// HandleCampaignsList is GET /api/clientes/{id}/campaigns?state=&limit=&offset=.
func (s *Service) HandleCampaignsList(w http.ResponseWriter, r *http.Request) {
	if !s.available(w, r) {
		return
	}
	f := CampaignFilter{State: r.URL.Query().Get("state")}
	var err error
	if f.Limit, err = hub.IntParam(r, "limit", 50, 1, 500); err == nil {
		f.Offset, err = hub.IntParam(r, "offset", 0, 0, 1<<30)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.Campaigns(r.Context(), r.PathValue("id"), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"campaigns": list})
}

// HandleCampaignGet is GET /api/clientes/{id}/campaigns/{cid}.
func (s *Service) HandleCampaignGet(w http.ResponseWriter, r *http.Request) {
	if !s.available(w, r) {
		return
	}
	id, err := campaignID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.Campaign(r.Context(), r.PathValue("id"), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// HandleCampaignPreview is GET /api/clientes/{id}/campaigns/{cid}/preview?n=5.
func (s *Service) HandleCampaignPreview(w http.ResponseWriter, r *http.Request) {
	if !s.available(w, r) {
		return
	}
	id, err := campaignID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := hub.IntParam(r, "n", 5, 1, 100)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.Preview(r.Context(), r.PathValue("id"), id, n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": list})
}

// HandleCampaignStart is POST /api/clientes/{id}/campaigns/{cid}/start.
func (s *Service) HandleCampaignStart(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, ActionStart)
}

// HandleCampaignPause is POST /api/clientes/{id}/campaigns/{cid}/pause.
func (s *Service) HandleCampaignPause(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, ActionPause)
}

// HandleCampaignResume is POST /api/clientes/{id}/campaigns/{cid}/resume.
func (s *Service) HandleCampaignResume(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, ActionResume)
}

// HandleCampaignCancel is POST /api/clientes/{id}/campaigns/{cid}/cancel.
func (s *Service) HandleCampaignCancel(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, ActionCancel)
}

func (s *Service) act(w http.ResponseWriter, r *http.Request, action string) {
	if !s.available(w, r) {
		return
	}
	id, err := campaignID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.Act(r.Context(), r.PathValue("id"), id, action)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func campaignID(r *http.Request) (int64, error) {
	v := r.PathValue("cid")
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, hub.Errorf(hub.CodeNotFound, "campaign %q does not exist", v)
	}
	return n, nil
}

// SendingStatus is a cliente's sending as GET /api/clientes/{id}/sending shows it.
type SendingStatus struct {
	Cliente  string     `json:"cliente"`
	Paused   bool       `json:"paused"`
	Reason   string     `json:"reason,omitempty"`
	PausedAt *time.Time `json:"paused_at,omitempty"`
	// Status says what the dispatcher is doing: idle, sending, pacing, quiet hours, waiting
	// for the session manager, paused.
	Status string     `json:"status"`
	Pacing PacingInfo `json:"pacing"`
	// Today counts campaign messages tried today in the cliente's time zone.
	Today  DayInfo        `json:"today"`
	Outbox map[string]int `json:"outbox"`
}

// PacingInfo is the cliente's pace in force (leadmaster.toml).
type PacingInfo struct {
	PerMinute   int             `json:"per_minute"`
	MinGap      config.Duration `json:"min_gap"`
	MaxGap      config.Duration `json:"max_gap"`
	DailyCap    int             `json:"daily_cap"`
	QuietHours  string          `json:"quiet_hours"`
	MaxAttempts int             `json:"max_attempts"`
	TimeZone    string          `json:"time_zone"`
}

// DayInfo counts one day's campaign messages against the daily cap.
type DayInfo struct {
	Day              string `json:"day"`
	CampaignMessages int    `json:"campaign_messages"`
	DailyCap         int    `json:"daily_cap"`
}

// Sending returns cliente's sending status.
func (s *Service) Sending(ctx context.Context, cliente string) (SendingStatus, error) {
	st, err := s.clienteState(ctx, s.db, cliente)
	if err != nil {
		return SendingStatus{}, err
	}
	cfg := s.cfg()
	merged := cfg.Merged(cliente)
	loc := s.location(cfg, cliente)
	out := SendingStatus{Cliente: cliente, Paused: st.Paused, Reason: st.Reason, Status: "not running",
		Pacing: PacingInfo{PerMinute: merged.PerMinute, MinGap: merged.MinGap, MaxGap: merged.MaxGap, DailyCap: merged.DailyCap,
			QuietHours: merged.QuietHours, MaxAttempts: merged.MaxAttempts, TimeZone: loc.String()},
		Today: DayInfo{Day: dayKey(s.now(), loc), DailyCap: merged.DailyCap}}
	if st.Paused {
		out.PausedAt = &st.PausedAt
	}
	if st.Day == out.Today.Day {
		out.Today.CampaignMessages = st.DayCount
	}
	if d := s.dispatcher(cliente); d != nil {
		d.mu.Lock()
		out.Status = d.status
		d.mu.Unlock()
	}
	if st.Paused {
		out.Status = "paused: " + st.Reason
	}
	if out.Outbox, err = s.Counts(ctx, cliente); err != nil {
		return SendingStatus{}, err
	}
	return out, nil
}

// HandleSendingGet is GET /api/clientes/{id}/sending.
func (s *Service) HandleSendingGet(w http.ResponseWriter, r *http.Request) {
	if !s.available(w, r) {
		return
	}
	st, err := s.Sending(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// HandleSendingPause is POST /api/clientes/{id}/sending/pause {"reason": "..."}: nothing of
// the cliente's goes out until resumed.
func (s *Service) HandleSendingPause(w http.ResponseWriter, r *http.Request) {
	if !s.available(w, r) {
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if err := decodeOptional(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		reason = "paused by " + who(r)
	}
	if err := s.PauseSending(r.Context(), id, reason); err != nil {
		s.fail(w, r, err)
		return
	}
	s.HandleSendingGet(w, r)
}

// HandleSendingResume is POST /api/clientes/{id}/sending/resume: lifts a pause, including
// one set because WhatsApp restricted the number.
func (s *Service) HandleSendingResume(w http.ResponseWriter, r *http.Request) {
	if !s.available(w, r) {
		return
	}
	id := r.PathValue("id")
	if err := s.ResumeSending(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("sending resumed by hand", "cliente_id", id, "by", who(r))
	s.HandleSendingGet(w, r)
}

func who(r *http.Request) string {
	p := hub.PrincipalFrom(r.Context())
	switch {
	case p == nil:
		return "hand"
	case p.Username != "":
		return p.Username
	case p.APIKeyID != 0:
		return fmt.Sprintf("API key %d", p.APIKeyID)
	}
	return "hand"
}

func (s *Service) available(w http.ResponseWriter, r *http.Request) bool {
	if s == nil {
		hub.WriteError(w, r, hub.Errorf(hub.CodeUnavailable, "sending is not available in this hub"), nil)
		return false
	}
	return true
}

// fail writes err in the hub's one error shape (see hub.WriteError).
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	hub.WriteError(w, r, err, s.log)
}

func writeJSON(w http.ResponseWriter, status int, v any) { hub.WriteJSON(w, status, v) }

func decode(r *http.Request, v any) error { return hub.DecodeJSON(r, v) }

// decodeOptional is decode for a body that may be empty.
func decodeOptional(r *http.Request, v any) error {
	if err := decode(r, v); err != nil && err != hub.ErrEmptyBody {
		return err
	}
	return nil
}
