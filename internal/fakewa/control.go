package fakewa

import (
	"encoding/json"
	"errors"
	"net/http"
)

// routes lists every endpoint: the websocket the client dials and the JSON control API
// that tests and demo users drive the simulated phones with.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws/chat", s.handleWebsocket)
	mux.HandleFunc("GET /_fake/recipients", s.handleRecipientsList)
	mux.HandleFunc("GET /_fake/recipients/{phone}", s.handleRecipientGet)
	mux.HandleFunc("GET /_fake/devices", s.handleDevicesList)
	mux.HandleFunc("POST /_fake/scan", s.handleScanCreate)
	mux.HandleFunc("POST /_fake/pair-code", s.handlePairCodeCreate)
	mux.HandleFunc("POST /_fake/send", s.handleSendCreate)
	mux.HandleFunc("POST /_fake/read", s.handleReadCreate)
	mux.HandleFunc("POST /_fake/unlink", s.handleUnlinkCreate)
	mux.HandleFunc("POST /_fake/not-on-whatsapp", s.handleNotOnWhatsAppCreate)
	mux.HandleFunc("/_fake/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such control endpoint")
	})
	return mux
}

// RecipientJSON is one simulated contact and what it received, as the control API shows it.
type RecipientJSON struct {
	Phone    string     `json:"phone"`
	Received []Received `json:"received"`
}

func (s *Server) handleRecipientsList(w http.ResponseWriter, r *http.Request) {
	out := []RecipientJSON{}
	for _, phone := range s.Recipients() {
		out = append(out, RecipientJSON{Phone: phone, Received: s.Received(phone)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"recipients": out})
}

func (s *Server) handleRecipientGet(w http.ResponseWriter, r *http.Request) {
	phone := digits(r.PathValue("phone"))
	received := s.Received(phone)
	if received == nil {
		received = []Received{}
	}
	writeJSON(w, http.StatusOK, RecipientJSON{Phone: phone, Received: received})
}

func (s *Server) handleDevicesList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"devices": s.Devices()})
}

func (s *Server) handleScanCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		QR    string `json:"qr"`
		Phone string `json:"phone"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if err := s.ScanQR(r.Context(), req.QR, req.Phone); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"phone": digits(req.Phone), "linked": true})
}

func (s *Server) handlePairCodeCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Phone string `json:"phone"`
		Code  string `json:"code"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if err := s.PairWithCode(r.Context(), req.Phone, req.Code); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"phone": digits(req.Phone), "linked": true})
}

func (s *Server) handleSendCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		From     string `json:"from"`
		To       string `json:"to"`
		Text     string `json:"text"`
		PushName string `json:"push_name"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	id, err := s.SendText(r.Context(), req.From, req.To, req.Text, req.PushName)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id})
}

func (s *Server) handleReadCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Phone string   `json:"phone"` // the contact that read
		IDs   []string `json:"ids"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if err := s.SendReadReceipt(r.Context(), req.Phone, req.IDs...); err != nil {
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"read": req.IDs})
}

func (s *Server) handleUnlinkCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Phone string `json:"phone"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if err := s.Unlink(req.Phone); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"phone": digits(req.Phone), "unlinked": true})
}

func (s *Server) handleNotOnWhatsAppCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Phone string `json:"phone"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	s.MarkNotOnWhatsApp(req.Phone)
	writeJSON(w, http.StatusOK, map[string]any{"phone": digits(req.Phone), "on_whatsapp": false})
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writeError writes the project's error shape: {"error": {"code": ..., "message": ...}}.
func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}

func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrUnknownQR), errors.Is(err, ErrNoPairingCode), errors.Is(err, ErrNotLinked):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrInvalidPhone), errors.Is(err, ErrWrongCode):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, ErrClientGone), errors.Is(err, ErrPairingRejected):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}
