package web

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/skip2/go-qrcode"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/proxy"
)

// clienteRow is one line of the clientes page and of its live JSON.
type clienteRow struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
	Label string `json:"label"`
	Class string `json:"class"`
	Phone string `json:"phone,omitempty"`
	// Queue is how many messages wait in the outbox (-1: unknown or no sender).
	Queue int `json:"queue"`
	// Detail says why the state is what it is (the hub's or the session manager's error).
	Detail string `json:"detail,omitempty"`
}

// clienteRows returns the rows of ids. Only an admin gets the technical detail of a failure
// (socket paths and the like); a member sees the state.
func (s *Server) clienteRows(ctx context.Context, lang string, admin bool, ids []string) []clienteRow {
	cfg := s.Config()
	sts := s.Sessions.StatusAll(ctx, ids, s.timeout)
	rows := make([]clienteRow, len(ids))
	for i, id := range ids {
		st := sts[i]
		rows[i] = clienteRow{ID: id, Name: cfg.Clientes[id].Name, State: st.State, Label: stateLabel(lang, st.State),
			Class: stateClass(st.State), Phone: formatPhone(st.Phone), Queue: -1}
		if admin {
			rows[i].Detail = firstNonEmpty(st.Error, st.LastError)
		}
		if st.Error != "" && s.Events != nil {
			// The session manager is unreachable: the last state its events reported still
			// tells which number the cliente had linked.
			if ls, err := s.Events.LastState(ctx, id); err == nil && ls.Phone != "" {
				rows[i].Phone = formatPhone(ls.Phone)
			}
		}
		if s.Sender != nil {
			if n, err := s.queueSize(ctx, id); err == nil {
				rows[i].Queue = n
			}
		}
	}
	return rows
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func (s *Server) handleClientesList(w http.ResponseWriter, r *http.Request) {
	v := s.newView(w, r, "clientes.title", "clientes")
	ids := s.accessible(hub.PrincipalFrom(r.Context()))
	v.D = struct{ Rows []clienteRow }{s.clienteRows(r.Context(), v.Lang, v.User.IsAdmin(), ids)}
	s.render(w, r, http.StatusOK, "clientes", v)
}

func (s *Server) handleClientesState(w http.ResponseWriter, r *http.Request) {
	p := hub.PrincipalFrom(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{"clientes": s.clienteRows(r.Context(), s.lang(r), p.IsAdmin(), s.accessible(p))})
}

func (s *Server) handleClienteGet(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/clientes/"+r.PathValue("id")+"/whatsapp", http.StatusSeeOther)
}

// linkState is the link page's state, rendered in the page and polled as JSON.
type linkState struct {
	State string `json:"state"`
	Label string `json:"label"`
	Class string `json:"class"`
	// Phone is the linked number, formatted; Linked the sentence saying so.
	Phone  string `json:"phone,omitempty"`
	Linked string `json:"linked,omitempty"`
	// QR is the code to scan (what the session manager's GET /qr?format=text gives), QRImage
	// the same as a PNG data URI (left out when the poller says it has this code already).
	QR          string `json:"qr,omitempty"`
	QRImage     string `json:"qr_image,omitempty"`
	QRExpiresAt string `json:"qr_expires_at,omitempty"`
	// Hint says what to do now.
	Hint  string `json:"hint,omitempty"`
	Error string `json:"error,omitempty"`
}

// linkState asks cliente id's session manager for its state and, while it shows a QR code, for
// the code. known is the code the page shows already (its image is not sent again). Only an
// admin gets the technical detail of a failure.
func (s *Server) linkState(ctx context.Context, lang, id, known string, admin bool) linkState {
	st := s.Sessions.Status(ctx, id, s.timeout)
	ls := linkState{State: st.State, Label: stateLabel(lang, st.State), Class: stateClass(st.State)}
	if admin {
		ls.Error = firstNonEmpty(st.Error, st.LastError)
	}
	switch st.State {
	case "connected":
		ls.Phone = formatPhone(st.Phone)
		ls.Linked = translate(lang, "link.linked_as", ls.Phone)
		ls.Error = ""
	case "qr":
		var qr struct {
			Code      string `json:"code"`
			ExpiresAt string `json:"expires_at"`
		}
		err := s.Sessions.Call(ctx, id, http.MethodGet, "/qr", nil, &qr, s.timeout)
		switch {
		case err == nil && qr.Code != "":
			ls.QR, ls.QRExpiresAt = qr.Code, qr.ExpiresAt
			if qr.Code != known {
				ls.QRImage = qrImage(qr.Code)
			}
			ls.Hint = translate(lang, "link.hint_qr")
		case hub.ErrorCode(err) == "already_linked":
			// Linked between the two questions: the next poll shows it.
			ls.State, ls.Label, ls.Class = "pairing", stateLabel(lang, "pairing"), stateClass("pairing")
		default:
			ls.Hint = translate(lang, "link.hint_wait")
		}
	case "pairing", "connecting":
		ls.Hint = translate(lang, "link.hint_wait")
	case proxy.StateDown, proxy.StateFailed, proxy.StateUnresponsive, proxy.StateError:
		ls.Hint = translate(lang, "link.hint_down", id)
	default:
		ls.Hint = translate(lang, "link.hint_wait")
	}
	return ls
}

// qrImage renders code as a PNG data URI (empty if it cannot be encoded).
func qrImage(code string) string {
	png, err := qrcode.Encode(code, qrcode.Medium, 320)
	if err != nil {
		return ""
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)
}

type whatsappData struct {
	S linkState
	// PairPhone and PairCode are the phone-code alternative's input and answer.
	PairPhone, PairCode string
}

func (s *Server) handleWhatsAppGet(w http.ResponseWriter, r *http.Request) {
	v := s.newView(w, r, "link.title", "clientes")
	v.Tab = "whatsapp"
	v.D = whatsappData{S: s.linkState(r.Context(), v.Lang, r.PathValue("id"), "", v.User.IsAdmin())}
	s.render(w, r, http.StatusOK, "whatsapp", v)
}

func (s *Server) handleWhatsAppState(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.linkState(r.Context(), s.lang(r), r.PathValue("id"), r.URL.Query().Get("known"), hub.PrincipalFrom(r.Context()).IsAdmin()))
}

// pairTimeout bounds asking the session manager for a phone code (it waits on WhatsApp).
const pairTimeout = 45 * time.Second

func (s *Server) handleWhatsAppPairCode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	phone := strings.TrimSpace(r.PostFormValue("phone"))
	v := s.newView(w, r, "link.title", "clientes")
	v.Tab = "whatsapp"
	d := whatsappData{PairPhone: phone}
	status := http.StatusOK
	if phone == "" {
		v.Error = translate(v.Lang, "link.pair_missing")
		status = http.StatusUnprocessableEntity
	} else {
		var resp struct {
			Code string `json:"code"`
		}
		err := s.Sessions.Call(r.Context(), id, http.MethodPost, "/pair-code", map[string]string{"phone": phone}, &resp, pairTimeout)
		if err != nil {
			he := asError(err)
			status = httpStatus(he)
			v.Error = errorText(v.Lang, he)
		} else {
			d.PairCode = resp.Code
			s.log.Info("web pair code requested", "cliente_id", id, "by", v.User.Username)
		}
	}
	d.S = s.linkState(r.Context(), v.Lang, id, "", v.User.IsAdmin())
	v.D = d
	s.render(w, r, status, "whatsapp", v)
}

func (s *Server) handleWhatsAppLogout(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.Sessions.Call(r.Context(), id, http.MethodPost, "/logout", nil, nil, pairTimeout); err != nil {
		s.fail(w, r, page, err)
		return
	}
	s.log.Info("web unlink", "cliente_id", id, "by", hub.PrincipalFrom(r.Context()).Username)
	seeOther(w, r, "/clientes/"+id+"/whatsapp", "unlinked")
}
