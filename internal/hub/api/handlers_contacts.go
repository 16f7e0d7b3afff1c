package api

import (
	"context"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
)

// importBodyLimit bounds a CSV upload (about 100,000 rows).
const importBodyLimit = 16 << 20

func (s *Server) handleContactsList(w http.ResponseWriter, r *http.Request) {
	f, err := listFilter(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page, err := s.Contacts.List(r.Context(), r.PathValue("id"), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func listFilter(r *http.Request) (contacts.Filter, error) {
	q := r.URL.Query()
	f := contacts.Filter{Q: q.Get("q"), Tag: q.Get("tag")}
	var err error
	if f.Limit, err = hub.IntParam(r, "limit", 50, 1, 500); err != nil {
		return f, err
	}
	if f.Offset, err = hub.IntParam(r, "offset", 0, 0, 1<<30); err != nil {
		return f, err
	}
	if v := q.Get("opted_out"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, hub.Errorf(hub.CodeBadRequest, "query parameter opted_out must be true or false, not %q", v)
		}
		f.OptedOut = &b
	}
	return f, nil
}

func (s *Server) handleContactCreate(w http.ResponseWriter, r *http.Request) {
	var in contacts.Input
	if err := decode(r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	l, err := s.Contacts.Create(r.Context(), r.PathValue("id"), in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, l)
}

func (s *Server) handleContactGet(w http.ResponseWriter, r *http.Request) {
	id, err := pathInt(r, "lid", "contact")
	var l contacts.Lead
	if err == nil {
		l, err = s.Contacts.Get(r.Context(), r.PathValue("id"), id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) handleContactUpdate(w http.ResponseWriter, r *http.Request) {
	var in contacts.Input
	id, err := pathInt(r, "lid", "contact")
	if err == nil {
		err = decode(r, &in)
	}
	var l contacts.Lead
	if err == nil {
		l, err = s.Contacts.Update(r.Context(), r.PathValue("id"), id, in)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) handleContactDelete(w http.ResponseWriter, r *http.Request) {
	id, err := pathInt(r, "lid", "contact")
	if err == nil {
		err = s.Contacts.Delete(r.Context(), r.PathValue("id"), id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleContactsSync(w http.ResponseWriter, r *http.Request) {
	res, err := s.Contacts.Sync(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// handleContactsImport takes the CSV as the request body (text/csv) or as the "file" field of
// a multipart form. Query parameters phone, name, tags and opted_out name the columns when the
// header does not use the usual names; region reads numbers without a country code.
func (s *Server) handleContactsImport(w http.ResponseWriter, r *http.Request) {
	opt := contacts.ImportOptions{Columns: map[string]string{}, Region: r.URL.Query().Get("region")}
	for _, f := range []string{"phone", "name", "tags", "opted_out"} {
		if v := r.URL.Query().Get(f); v != "" {
			opt.Columns[f] = v
		}
	}
	body := r.Body
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		f, _, err := r.FormFile("file")
		if err != nil {
			s.fail(w, r, hub.Errorf(hub.CodeBadRequest, "multipart upload needs the CSV in a field named file"))
			return
		}
		defer f.Close()
		body = f
	}
	res, err := s.Contacts.Import(r.Context(), r.PathValue("id"), body, opt)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleContactMessagesList(w http.ResponseWriter, r *http.Request) {
	cliente := r.PathValue("id")
	id, err := pathInt(r, "lid", "contact")
	if err == nil {
		_, err = s.Contacts.Get(r.Context(), cliente, id)
	}
	limit, err2 := hub.IntParam(r, "limit", 100, 1, 500)
	before, err3 := hub.IntParam(r, "before", 0, 0, 1<<62)
	for _, e := range []error{err, err2, err3} {
		if e != nil {
			s.fail(w, r, e)
			return
		}
	}
	msgs, err := s.Events.Messages(r.Context(), cliente, id, int64(before), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs})
}

func (s *Server) handleConversationsList(w http.ResponseWriter, r *http.Request) {
	f, err := listFilter(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f.Conversations = true
	page, err := s.Contacts.List(r.Context(), r.PathValue("id"), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) handleEventsList(w http.ResponseWriter, r *http.Request) {
	after, err := hub.IntParam(r, "after", 0, 0, 1<<62)
	limit, err2 := hub.IntParam(r, "limit", 100, 1, 1000)
	for _, e := range []error{err, err2} {
		if e != nil {
			s.fail(w, r, e)
			return
		}
	}
	evs, err := s.Events.List(r.Context(), r.PathValue("id"), int64(after), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var next int64 = int64(after)
	if len(evs) > 0 {
		next = evs[len(evs)-1].Seq
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs, "next": next})
}

func (s *Server) handleWebhookGet(w http.ResponseWriter, r *http.Request) {
	st, err := s.Webhooks.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleWebhookSet(w http.ResponseWriter, r *http.Request) {
	var req struct {
		URL    string `json:"url"`
		Secret string `json:"secret"`
	}
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if !hub.PrincipalFrom(r.Context()).IsAdmin() {
		if err := publicDestination(r.Context(), req.URL); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	st, err := s.Webhooks.Set(r.Context(), r.PathValue("id"), req.URL, req.Secret)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("webhook set", "cliente_id", r.PathValue("id"), "url", req.URL, "by", hub.PrincipalFrom(r.Context()).Username)
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleWebhookDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.Webhooks.Reset(r.Context(), r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleWebhookDeliveriesList(w http.ResponseWriter, r *http.Request) {
	limit, err := hub.IntParam(r, "limit", 100, 1, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ds, err := s.Webhooks.Deliveries(r.Context(), r.PathValue("id"), r.URL.Query().Get("state"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": ds})
}

func (s *Server) handleWebhookDeliveryRetry(w http.ResponseWriter, r *http.Request) {
	if err := s.Webhooks.Retry(r.Context(), r.PathValue("id"), r.PathValue("eid")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// publicDestination refuses a webhook URL that points at this host or a private network:
// without it, a cliente's member could make the hub post to internal services. Admins (and
// the TOML) may still name such addresses. A name that does not resolve now is accepted; its
// deliveries fail and show in the dead-letter list.
func publicDestination(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return nil // Webhooks.Set explains malformed URLs
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return hub.Errorf(hub.CodeInvalid, "webhook URL %q points at this host; only an admin can set such a URL", raw)
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupIPAddr(lctx, host)
		if err != nil {
			return nil
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	for _, ip := range ips {
		if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() {
			return hub.Errorf(hub.CodeInvalid, "webhook URL %q points at a local or private address (%s); only an admin can set such a URL", raw, ip)
		}
	}
	return nil
}
