package session

import (
	"net/http"

	"github.com/gorilla/mux"
)

func (s *Server) routes(r *mux.Router) {
	r.HandleFunc("/health", s.handleHealth).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/status", s.handleStatus).Methods(http.MethodGet)
	r.HandleFunc("/qr", s.handleQRGet).Methods(http.MethodGet)
	r.HandleFunc("/pair-code", s.handlePairCodeCreate).Methods(http.MethodPost)
	r.HandleFunc("/messages", s.handleMessageCreate).Methods(http.MethodPost)
	r.HandleFunc("/contacts", s.handleContactsList).Methods(http.MethodGet)
	r.HandleFunc("/logout", s.handleLogout).Methods(http.MethodPost)
	r.HandleFunc("/events", s.handleEventsList).Methods(http.MethodGet)
	r.HandleFunc("/metrics", s.handleMetrics).Methods(http.MethodGet)
}
