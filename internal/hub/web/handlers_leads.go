package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
)

const leadsPerPage = 50

// leadsData is the leads page: the search, a page of leads, and what the last import or
// creation said.
type leadsData struct {
	Q, Tag, OptedOut string
	Page             contacts.Page
	Offset           int
	PrevURL, NextURL string
	// Import is the last import's result, ImportErrors its per-row problems.
	Import       *contacts.ImportResult
	ImportErrors []rowError
	ImportError  string
	// New is the add-a-lead form as submitted (shown again when it failed).
	New newLead
}

type newLead struct{ Phone, Name, Tags, Region string }

// rowError is a CSV problem as the page shows it.
type rowError struct {
	Line                   int
	Column, Value, Message string
}

func parseTags(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' })
}

func (s *Server) leadsData(r *http.Request) (leadsData, error) {
	q := r.URL.Query()
	d := leadsData{Q: strings.TrimSpace(q.Get("q")), Tag: strings.TrimSpace(q.Get("tag")), OptedOut: q.Get("opted_out")}
	d.Offset, _ = strconv.Atoi(q.Get("offset"))
	d.Offset = max(d.Offset, 0)
	f := contacts.Filter{Q: d.Q, Tag: d.Tag, Limit: leadsPerPage, Offset: d.Offset}
	switch d.OptedOut {
	case "yes", "no":
		b := d.OptedOut == "yes"
		f.OptedOut = &b
	default:
		d.OptedOut = ""
	}
	var err error
	d.Page, err = s.Contacts.List(r.Context(), r.PathValue("id"), f)
	if err != nil {
		return d, err
	}
	link := func(offset int) string {
		v := url.Values{}
		for k, val := range map[string]string{"q": d.Q, "tag": d.Tag, "opted_out": d.OptedOut} {
			if val != "" {
				v.Set(k, val)
			}
		}
		if offset > 0 {
			v.Set("offset", strconv.Itoa(offset))
		}
		u := "/clientes/" + r.PathValue("id") + "/leads"
		if len(v) > 0 {
			u += "?" + v.Encode()
		}
		return u
	}
	if d.Page.NextOffset > 0 {
		d.NextURL = link(d.Page.NextOffset)
	}
	if d.Offset > 0 {
		d.PrevURL = link(max(d.Offset-leadsPerPage, 0))
	}
	return d, nil
}

func (s *Server) renderLeads(w http.ResponseWriter, r *http.Request, status int, edit func(*view, *leadsData)) {
	v := s.newView(w, r, "leads.title", "clientes")
	v.Tab = "leads"
	d, err := s.leadsData(r)
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	if edit != nil {
		edit(v, &d)
	}
	v.D = d
	s.render(w, r, status, "leads", v)
}

func (s *Server) handleLeadsList(w http.ResponseWriter, r *http.Request) {
	s.renderLeads(w, r, http.StatusOK, nil)
}

func (s *Server) handleLeadCreate(w http.ResponseWriter, r *http.Request) {
	nl := newLead{Phone: r.PostFormValue("phone"), Name: r.PostFormValue("name"), Tags: r.PostFormValue("tags"),
		Region: strings.TrimSpace(r.PostFormValue("region"))}
	tags := parseTags(nl.Tags)
	_, err := s.Contacts.Create(r.Context(), r.PathValue("id"), contacts.Input{Phone: &nl.Phone, Name: &nl.Name, Tags: &tags, Region: nl.Region})
	if err != nil {
		he := asError(err)
		if httpStatus(he) >= 500 {
			s.fail(w, r, page, err)
			return
		}
		s.renderLeads(w, r, httpStatus(he), func(v *view, d *leadsData) {
			v.Error = errorText(v.Lang, he)
			d.New = nl
		})
		return
	}
	seeOther(w, r, "/clientes/"+r.PathValue("id")+"/leads", "lead_created")
}

// handleLeadsImport reads the uploaded CSV and shows the result on the leads page: counts, or
// every bad row with its line number (nothing is imported then).
func (s *Server) handleLeadsImport(w http.ResponseWriter, r *http.Request) {
	f, _, err := r.FormFile("file")
	if err != nil {
		s.renderLeads(w, r, http.StatusBadRequest, func(v *view, d *leadsData) {
			d.ImportError = translate(v.Lang, "import.no_file")
		})
		return
	}
	defer f.Close()
	opt := contacts.ImportOptions{Region: strings.TrimSpace(r.FormValue("region"))}
	res, err := s.Contacts.Import(r.Context(), r.PathValue("id"), f, opt)
	if err != nil {
		he := asError(err)
		if httpStatus(he) >= 500 {
			s.fail(w, r, page, err)
			return
		}
		s.renderLeads(w, r, httpStatus(he), func(v *view, d *leadsData) {
			d.ImportError = errorText(v.Lang, he)
			if rows, ok := he.Details.([]contacts.RowError); ok {
				for _, re := range rows {
					d.ImportErrors = append(d.ImportErrors, rowError{Line: re.Line, Column: re.Column, Value: re.Value,
						Message: translateMessage(v.Lang, re.Message)})
				}
			}
		})
		return
	}
	s.log.Info("web import", "cliente_id", r.PathValue("id"), "rows", res.Rows, "by", hub.PrincipalFrom(r.Context()).Username)
	s.renderLeads(w, r, http.StatusOK, func(v *view, d *leadsData) { d.Import = &res })
}

func (s *Server) lead(r *http.Request) (contacts.Lead, error) {
	id, err := strconv.ParseInt(r.PathValue("lid"), 10, 64)
	if err != nil {
		return contacts.Lead{}, hub.Errorf(hub.CodeNotFound, "no lead %q", r.PathValue("lid"))
	}
	return s.Contacts.Get(r.Context(), r.PathValue("id"), id)
}

type leadData struct {
	L    contacts.Lead
	Tags string
	Name string
}

func (s *Server) handleLeadGet(w http.ResponseWriter, r *http.Request) {
	l, err := s.lead(r)
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	v := s.newView(w, r, "lead.title", "clientes")
	v.Tab = "leads"
	v.D = leadData{L: l, Tags: strings.Join(l.Tags, ", "), Name: l.Name}
	s.render(w, r, http.StatusOK, "lead", v)
}

func (s *Server) handleLeadUpdate(w http.ResponseWriter, r *http.Request) {
	l, err := s.lead(r)
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	name, tagText := r.PostFormValue("name"), r.PostFormValue("tags")
	tags := parseTags(tagText)
	opted := r.PostFormValue("opted_out") != ""
	_, err = s.Contacts.Update(r.Context(), l.ClienteID, l.ID, contacts.Input{Name: &name, Tags: &tags, OptedOut: &opted})
	if err != nil {
		he := asError(err)
		if httpStatus(he) >= 500 || he.Code == hub.CodeNotFound {
			s.fail(w, r, page, err)
			return
		}
		v := s.newView(w, r, "lead.title", "clientes")
		v.Tab = "leads"
		v.Error = errorText(v.Lang, he)
		v.D = leadData{L: l, Tags: tagText, Name: name}
		s.render(w, r, httpStatus(he), "lead", v)
		return
	}
	seeOther(w, r, fmt.Sprintf("/clientes/%s/leads/%d", l.ClienteID, l.ID), "lead_saved")
}

// handleLeadOptOut sets or clears the opt-out flag from the leads table and goes back there.
func (s *Server) handleLeadOptOut(w http.ResponseWriter, r *http.Request) {
	l, err := s.lead(r)
	if err == nil {
		opted := r.PostFormValue("opted_out") == "1"
		_, err = s.Contacts.Update(r.Context(), l.ClienteID, l.ID, contacts.Input{OptedOut: &opted})
	}
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	back := localPath(r.PostFormValue("next"), "/clientes/"+l.ClienteID+"/leads")
	if !strings.HasPrefix(back, "/clientes/"+l.ClienteID+"/") {
		back = "/clientes/" + l.ClienteID + "/leads"
	}
	seeOther(w, r, back, "lead_saved")
}

func (s *Server) handleLeadDelete(w http.ResponseWriter, r *http.Request) {
	l, err := s.lead(r)
	if err == nil {
		err = s.Contacts.Delete(r.Context(), l.ClienteID, l.ID)
	}
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	seeOther(w, r, "/clientes/"+l.ClienteID+"/leads", "lead_deleted")
}
