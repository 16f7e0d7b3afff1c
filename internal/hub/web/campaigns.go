package web

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/sender"
)

// Sender is the subset of the sender (*sender.Service) the UI uses.
type Sender interface {
	Counts(ctx context.Context, cliente string) (map[string]int, error)
	CreateCampaign(ctx context.Context, cliente string, req sender.CampaignRequest) (sender.Campaign, error)
	Campaign(ctx context.Context, cliente string, id int64) (sender.Campaign, error)
	Campaigns(ctx context.Context, cliente string, f sender.CampaignFilter) ([]sender.Campaign, error)
	Preview(ctx context.Context, cliente string, id int64, n int) ([]sender.PreviewEntry, error)
	Act(ctx context.Context, cliente string, id int64, action string) (sender.Campaign, error)
	Enqueue(ctx context.Context, cliente string, req sender.SendRequest) (sender.Message, error)
	Sending(ctx context.Context, cliente string) (sender.SendingStatus, error)
	PauseSending(ctx context.Context, cliente, reason string) error
	ResumeSending(ctx context.Context, cliente string) error
}

var _ Sender = (*sender.Service)(nil)

// queueSize is how many of cliente's messages wait in the outbox (queued or being sent).
func (s *Server) queueSize(ctx context.Context, cliente string) (int, error) {
	c, err := s.Sender.Counts(ctx, cliente)
	if err != nil {
		return 0, err
	}
	return c[sender.StateQueued] + c[sender.StateSending], nil
}

func (s *Server) campaignRoutes() []route {
	if s.Sender == nil {
		return nil
	}
	return []route{
		{"GET", "/clientes/{id}/campaigns", cliente, page, 0, s.handleCampaignsList},
		{"GET", "/clientes/{id}/campaigns/state", cliente, fragment, 0, s.handleCampaignsState},
		{"POST", "/clientes/{id}/campaigns", cliente, page, 0, s.handleCampaignCreate},
		{"POST", "/clientes/{id}/campaigns/preview", cliente, fragment, 0, s.handleCampaignPreview},
		{"GET", "/clientes/{id}/campaigns/{cid}", cliente, page, 0, s.handleCampaignGet},
		{"GET", "/clientes/{id}/campaigns/{cid}/state", cliente, fragment, 0, s.handleCampaignState},
		{"POST", "/clientes/{id}/campaigns/{cid}/{action}", cliente, page, 0, s.handleCampaignAct},
		{"POST", "/clientes/{id}/conversations/{lid}", cliente, page, 0, s.handleConversationReply},
		{"POST", "/clientes/{id}/sending/pause", cliente, page, 0, s.handleSendingPause},
		{"POST", "/clientes/{id}/sending/resume", cliente, page, 0, s.handleSendingResume},
	}
}

// campaignForm is the new-campaign form.
type campaignForm struct {
	Name, Template string
	// Who is all, tag or q; Tag and Q the selector's value.
	Who, Tag, Q string
}

func readCampaignForm(r *http.Request) campaignForm {
	f := campaignForm{Name: strings.TrimSpace(r.PostFormValue("name")), Template: r.PostFormValue("template"),
		Who: r.PostFormValue("who"), Tag: strings.TrimSpace(r.PostFormValue("tag")), Q: strings.TrimSpace(r.PostFormValue("q"))}
	switch f.Who {
	case "tag", "q", "all":
	default:
		f.Who = "all"
	}
	return f
}

func (f campaignForm) recipients() sender.Recipients {
	switch f.Who {
	case "tag":
		return sender.Recipients{Tag: f.Tag}
	case "q":
		return sender.Recipients{Q: f.Q}
	}
	return sender.Recipients{All: true}
}

// previewSample is one recipient's message as the campaign would write it.
type previewSample struct {
	To   string `json:"to"`
	Name string `json:"name,omitempty"`
	Text string `json:"text"`
}

// campaignPreview is the live preview: how many leads the campaign reaches and the message
// some of them would get.
type campaignPreview struct {
	Recipients int             `json:"recipients"`
	OptedOut   int             `json:"opted_out"`
	Samples    []previewSample `json:"samples"`
	// Summary says the counts in words; Error what is wrong with the template or selection.
	Summary string `json:"summary"`
	Error   string `json:"error,omitempty"`
}

// previewSamples is how many rendered messages the preview shows.
const previewSamples = 3

// preview renders f's template for the first leads it selects. It fills the fields the way
// the sender does for leads (nombre: the name, else the WhatsApp name; telefono; nombre_whatsapp),
// so the text matches what the campaign will queue; the campaign page then shows the queued
// texts themselves.
func (s *Server) preview(ctx context.Context, lang, cliente string, f campaignForm) campaignPreview {
	var p campaignPreview
	p.Samples = []previewSample{}
	if f.Who == "tag" && f.Tag == "" || f.Who == "q" && f.Q == "" {
		p.Error = translate(lang, "campaign.pick_who")
		return p
	}
	filter := contacts.Filter{Limit: 1}
	if f.Who == "tag" {
		filter.Tag = f.Tag
	} else if f.Who == "q" {
		filter.Q = f.Q
	}
	no, yes := false, true
	filter.OptedOut = &yes
	if out, err := s.Contacts.List(ctx, cliente, filter); err == nil {
		p.OptedOut = out.Total
	}
	// The campaign takes leads in ID order; the list is newest first, so its last page holds
	// the first recipients.
	filter.OptedOut = &no
	pg, err := s.Contacts.List(ctx, cliente, filter)
	if err == nil && pg.Total > 1 {
		filter.Limit, filter.Offset = previewSamples, max(pg.Total-previewSamples, 0)
		pg, err = s.Contacts.List(ctx, cliente, filter)
	}
	if err != nil {
		p.Error = errorText(lang, asError(err))
		return p
	}
	p.Recipients = pg.Total
	p.Summary = translate(lang, "campaign.preview_summary", p.Recipients, p.OptedOut)
	if strings.TrimSpace(f.Template) == "" {
		return p
	}
	tmpl, err := sender.ParseTemplate(f.Template)
	if err != nil {
		p.Error = translate(lang, "campaign.template_error", err.Error())
		return p
	}
	known := map[string]bool{}
	for _, k := range sender.StandardFields {
		known[k] = true
	}
	if bad := tmpl.Check(func(k string) bool { return known[k] }); bad != "" {
		p.Error = translate(lang, "campaign.unknown_field", bad, strings.Join(sender.StandardFields, "}}, {{"))
		return p
	}
	for i := len(pg.Leads) - 1; i >= 0; i-- {
		l := pg.Leads[i]
		fields := map[string]string{sender.FieldNombre: firstNonEmpty(l.Name, l.PushName), sender.FieldTelefono: l.Phone,
			sender.FieldNombreWhatsApp: l.PushName}
		text, _ := tmpl.Render(func(k string) string { return fields[k] })
		p.Samples = append(p.Samples, previewSample{To: formatPhone(l.Phone), Name: firstNonEmpty(l.Name, l.PushName), Text: text})
	}
	return p
}

type campaignsData struct {
	// Sending is the cliente's outbox: paused or not, what it does now, its pace.
	Sending *sendingView
	List    []campaignView
	Form    campaignForm
	Preview *campaignPreview
	Tags    []string
}

// campaignView is a campaign with what the page shows about its progress.
type campaignView struct {
	sender.Campaign
	Done, Pct int
	Label     string
	Class     string
	Counts    []stateCount
	// Actions are the actions the campaign's state allows.
	Actions []string
}

type stateCount struct {
	State, Label string
	N            int
}

// progressStates are the message states the page counts, in order.
var progressStates = []string{sender.StateQueued, sender.StateSending, sender.StateSent, sender.StateDelivered, sender.StateRead, sender.StateFailed}

func viewCampaign(lang string, c sender.Campaign) campaignView {
	v := campaignView{Campaign: c, Label: translate(lang, "campaign.state."+c.State), Class: stateClass(c.State)}
	for _, st := range progressStates {
		n := c.Progress[st]
		v.Counts = append(v.Counts, stateCount{State: st, Label: translate(lang, "msg.state."+st), N: n})
		if st != sender.StateQueued && st != sender.StateSending {
			v.Done += n
		}
	}
	v.Pct = percent(v.Done, c.Total)
	switch c.State {
	case sender.CampaignDraft:
		v.Actions = []string{sender.ActionStart, sender.ActionCancel}
	case sender.CampaignRunning, sender.CampaignScheduled:
		v.Actions = []string{sender.ActionPause, sender.ActionCancel}
	case sender.CampaignPaused:
		v.Actions = []string{sender.ActionResume, sender.ActionCancel}
	}
	return v
}

// tagsOf returns the tags in use among cliente's first leads (for the recipients' choice).
func (s *Server) tagsOf(ctx context.Context, cliente string) []string {
	pg, err := s.Contacts.List(ctx, cliente, contacts.Filter{Limit: 500})
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range pg.Leads {
		for _, t := range l.Tags {
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

func (s *Server) renderCampaigns(w http.ResponseWriter, r *http.Request, status int, edit func(*view, *campaignsData)) {
	id := r.PathValue("id")
	list, err := s.Sender.Campaigns(r.Context(), id, sender.CampaignFilter{Limit: 50})
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	v := s.newView(w, r, "campaigns.title", "clientes")
	v.Tab = "campaigns"
	d := campaignsData{Form: campaignForm{Who: "all"}, Tags: s.tagsOf(r.Context(), id)}
	if st, err := s.Sender.Sending(r.Context(), id); err == nil {
		d.Sending = viewSending(v.Lang, st)
	}
	for _, c := range list {
		d.List = append(d.List, viewCampaign(v.Lang, c))
	}
	if edit != nil {
		edit(v, &d)
	}
	v.D = d
	s.render(w, r, status, "campaigns", v)
}

func (s *Server) handleCampaignsList(w http.ResponseWriter, r *http.Request) {
	s.renderCampaigns(w, r, http.StatusOK, nil)
}

// handleCampaignCreate creates a draft and opens it (where its queued messages can be
// checked before starting), or, for the form's preview button (no JavaScript), shows the
// preview under the form.
func (s *Server) handleCampaignCreate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f := readCampaignForm(r)
	if r.PostFormValue("action") == "preview" {
		s.renderCampaigns(w, r, http.StatusOK, func(v *view, d *campaignsData) {
			p := s.preview(r.Context(), v.Lang, id, f)
			d.Form, d.Preview = f, &p
		})
		return
	}
	c, err := s.Sender.CreateCampaign(r.Context(), id, sender.CampaignRequest{Name: f.Name, Template: f.Template,
		Recipients: f.recipients(), Start: r.PostFormValue("action") == "start"})
	if err != nil {
		he := asError(err)
		if httpStatus(he) >= 500 {
			s.fail(w, r, page, err)
			return
		}
		s.renderCampaigns(w, r, httpStatus(he), func(v *view, d *campaignsData) {
			v.Error = errorText(v.Lang, he)
			p := s.preview(r.Context(), v.Lang, id, f)
			d.Form, d.Preview = f, &p
		})
		return
	}
	s.log.Info("web campaign created", "cliente_id", id, "campaign", c.ID, "by", hub.PrincipalFrom(r.Context()).Username)
	seeOther(w, r, fmt.Sprintf("/clientes/%s/campaigns/%d", id, c.ID), "campaign_created")
}

func (s *Server) handleCampaignPreview(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.preview(r.Context(), s.lang(r), r.PathValue("id"), readCampaignForm(r)))
}

// campaignState is what the pages poll about a campaign.
type campaignState struct {
	ID       int64        `json:"id"`
	State    string       `json:"state"`
	Label    string       `json:"label"`
	Class    string       `json:"class"`
	Total    int          `json:"total"`
	Done     int          `json:"done"`
	Pct      int          `json:"pct"`
	Counts   []stateCount `json:"counts"`
	Actions  []string     `json:"actions"`
	Progress string       `json:"progress"`
	Finish   string       `json:"finish,omitempty"`
}

func stateOf(lang string, loc *time.Location, v campaignView) campaignState {
	st := campaignState{ID: v.ID, State: v.State, Label: v.Label, Class: v.Class, Total: v.Total, Done: v.Done, Pct: v.Pct,
		Counts: v.Counts, Actions: v.Actions, Progress: translate(lang, "campaign.progress", v.Done, v.Total, v.Pct)}
	if st.Actions == nil {
		st.Actions = []string{}
	}
	if v.EstimatedFinish != nil && v.Pct < 100 {
		st.Finish = translate(lang, "campaign.finish", formatTime(lang, loc, v.EstimatedFinish))
	}
	return st
}

func (s *Server) handleCampaignsState(w http.ResponseWriter, r *http.Request) {
	list, err := s.Sender.Campaigns(r.Context(), r.PathValue("id"), sender.CampaignFilter{Limit: 50})
	if err != nil {
		s.fail(w, r, fragment, err)
		return
	}
	lang := s.lang(r)
	out := []campaignState{}
	for _, c := range list {
		out = append(out, stateOf(lang, s.location(r.PathValue("id")), viewCampaign(lang, c)))
	}
	writeJSON(w, http.StatusOK, map[string]any{"campaigns": out})
}

func campaignID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("cid"), 10, 64)
	if err != nil {
		return 0, hub.Errorf(hub.CodeNotFound, "no campaign %q", r.PathValue("cid"))
	}
	return id, nil
}

type campaignData struct {
	C       campaignView
	S       campaignState
	Preview []sender.PreviewEntry
}

func (s *Server) handleCampaignGet(w http.ResponseWriter, r *http.Request) {
	cid, err := campaignID(r)
	var c sender.Campaign
	if err == nil {
		c, err = s.Sender.Campaign(r.Context(), r.PathValue("id"), cid)
	}
	var prev []sender.PreviewEntry
	if err == nil {
		prev, err = s.Sender.Preview(r.Context(), r.PathValue("id"), cid, 5)
	}
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	v := s.newView(w, r, "campaign.title", "clientes")
	v.Tab = "campaigns"
	cv := viewCampaign(v.Lang, c)
	v.D = campaignData{C: cv, S: stateOf(v.Lang, s.location(r.PathValue("id")), cv), Preview: prev}
	s.render(w, r, http.StatusOK, "campaign", v)
}

func (s *Server) handleCampaignState(w http.ResponseWriter, r *http.Request) {
	cid, err := campaignID(r)
	var c sender.Campaign
	if err == nil {
		c, err = s.Sender.Campaign(r.Context(), r.PathValue("id"), cid)
	}
	if err != nil {
		s.fail(w, r, fragment, err)
		return
	}
	lang := s.lang(r)
	writeJSON(w, http.StatusOK, stateOf(lang, s.location(r.PathValue("id")), viewCampaign(lang, c)))
}

func (s *Server) handleCampaignAct(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	switch action {
	case sender.ActionStart, sender.ActionPause, sender.ActionResume, sender.ActionCancel:
	default:
		s.fail(w, r, page, hub.Errorf(hub.CodeNotFound, "no campaign action %q", action))
		return
	}
	cid, err := campaignID(r)
	if err == nil {
		_, err = s.Sender.Act(r.Context(), r.PathValue("id"), cid, action)
	}
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	s.log.Info("web campaign "+action, "cliente_id", r.PathValue("id"), "campaign", cid, "by", hub.PrincipalFrom(r.Context()).Username)
	seeOther(w, r, fmt.Sprintf("/clientes/%s/campaigns/%d", r.PathValue("id"), cid), "campaign_"+action)
}

// handleConversationReply queues a message to the lead through the sender's outbox.
func (s *Server) handleConversationReply(w http.ResponseWriter, r *http.Request) {
	l, err := s.lead(r)
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	text := r.PostFormValue("text")
	if _, err := s.Sender.Enqueue(r.Context(), l.ClienteID, sender.SendRequest{To: l.Phone, Text: text}); err != nil {
		he := asError(err)
		if httpStatus(he) >= 500 {
			s.fail(w, r, page, err)
			return
		}
		d, derr := s.conversation(r)
		if derr != nil {
			s.fail(w, r, page, derr)
			return
		}
		v := s.newView(w, r, "conversation.title", "clientes")
		v.Tab = "conversations"
		v.Error = errorText(v.Lang, he)
		v.D = d
		s.render(w, r, httpStatus(he), "conversation", v)
		return
	}
	seeOther(w, r, fmt.Sprintf("/clientes/%s/conversations/%d", l.ClienteID, l.ID), "reply_queued")
}

// sendingView is the cliente's sending as the campaigns page shows it.
type sendingView struct {
	Paused         bool
	Reason, Status string
	Class          string
	// Pace says the cliente's pacing in words.
	Pace string
}

func viewSending(lang string, st sender.SendingStatus) *sendingView {
	v := &sendingView{Paused: st.Paused, Reason: translateMessage(lang, st.Reason), Status: translateMessage(lang, st.Status), Class: "good"}
	switch {
	case st.Paused:
		v.Class = "bad"
	case strings.HasPrefix(st.Status, "waiting") || strings.HasPrefix(st.Status, "quiet") || strings.HasPrefix(st.Status, "daily cap"):
		v.Class = "wait"
	}
	p := st.Pacing
	var parts []string
	if p.PerMinute > 0 {
		parts = append(parts, translate(lang, "sending.per_minute", p.PerMinute))
	} else {
		parts = append(parts, translate(lang, "sending.no_rate"))
	}
	if p.MaxGap.Duration > 0 {
		parts = append(parts, translate(lang, "sending.gaps", p.MinGap.Duration.String(), p.MaxGap.Duration.String()))
	}
	if p.DailyCap > 0 {
		parts = append(parts, translate(lang, "sending.daily_cap", p.DailyCap, st.Today.CampaignMessages))
	}
	if p.QuietHours != "" {
		parts = append(parts, translate(lang, "sending.quiet", p.QuietHours, p.TimeZone))
	}
	v.Pace = strings.Join(parts, "; ")
	return v
}

func (s *Server) handleSendingPause(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p := hub.PrincipalFrom(r.Context())
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		reason = "paused by " + p.Username
	}
	if err := s.Sender.PauseSending(r.Context(), id, reason); err != nil {
		s.fail(w, r, page, err)
		return
	}
	s.log.Info("web sending paused", "cliente_id", id, "by", p.Username, "reason", reason)
	seeOther(w, r, "/clientes/"+id+"/campaigns", "sending_paused")
}

func (s *Server) handleSendingResume(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.Sender.ResumeSending(r.Context(), id); err != nil {
		s.fail(w, r, page, err)
		return
	}
	s.log.Info("web sending resumed", "cliente_id", id, "by", hub.PrincipalFrom(r.Context()).Username)
	seeOther(w, r, "/clientes/"+id+"/campaigns", "sending_resumed")
}
