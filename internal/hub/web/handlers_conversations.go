package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/events"
)

// conversationRow is a lead with messages and the last of them.
type conversationRow struct {
	L    contacts.Lead
	Last *events.Message
}

type conversationsData struct {
	Q                string
	Rows             []conversationRow
	Total            int
	PrevURL, NextURL string
}

func (s *Server) handleConversationsList(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v := s.newView(w, r, "conversations.title", "clientes")
	v.Tab = "conversations"
	d := conversationsData{Q: strings.TrimSpace(r.URL.Query().Get("q"))}
	offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
	offset = max(offset, 0)
	pg, err := s.Contacts.List(r.Context(), id, contacts.Filter{Q: d.Q, Conversations: true, Limit: leadsPerPage, Offset: offset})
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	d.Total = pg.Total
	for _, l := range pg.Leads {
		row := conversationRow{L: l}
		if msgs, err := s.Events.Messages(r.Context(), id, l.ID, 0, 1); err == nil && len(msgs) > 0 {
			row.Last = &msgs[0]
		}
		d.Rows = append(d.Rows, row)
	}
	link := func(off int) string {
		q := url.Values{}
		if d.Q != "" {
			q.Set("q", d.Q)
		}
		if off > 0 {
			q.Set("offset", strconv.Itoa(off))
		}
		u := "/clientes/" + id + "/conversations"
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		return u
	}
	if pg.NextOffset > 0 {
		d.NextURL = link(pg.NextOffset)
	}
	if offset > 0 {
		d.PrevURL = link(max(offset-leadsPerPage, 0))
	}
	v.D = d
	s.render(w, r, http.StatusOK, "conversations", v)
}

type conversationData struct {
	L        contacts.Lead
	Messages []events.Message
}

// threadLimit is how many of a conversation's latest messages the page shows.
const threadLimit = 200

func (s *Server) conversation(r *http.Request) (conversationData, error) {
	l, err := s.lead(r)
	if err != nil {
		return conversationData{}, err
	}
	msgs, err := s.Events.Messages(r.Context(), l.ClienteID, l.ID, 0, threadLimit)
	return conversationData{L: l, Messages: msgs}, err
}

func (s *Server) handleConversationGet(w http.ResponseWriter, r *http.Request) {
	d, err := s.conversation(r)
	if err != nil {
		s.fail(w, r, page, err)
		return
	}
	v := s.newView(w, r, "conversation.title", "clientes")
	v.Tab = "conversations"
	v.D = d
	s.render(w, r, http.StatusOK, "conversation", v)
}

// handleConversationMessages is the thread alone, as HTML, for the page to refresh itself.
func (s *Server) handleConversationMessages(w http.ResponseWriter, r *http.Request) {
	d, err := s.conversation(r)
	if err != nil {
		s.fail(w, r, fragment, err)
		return
	}
	v := s.newView(w, r, "conversation.title", "clientes")
	v.D = d
	s.renderTemplate(w, r, http.StatusOK, "conversation", "thread", v)
}
