package api

import (
	"net/http"
	"strconv"

	"github.com/leadmaster/leadmaster/internal/hub"
)

// fail writes err in the one error shape (see hub.WriteError).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	hub.WriteError(w, r, err, s.log)
}

func writeJSON(w http.ResponseWriter, status int, v any) { hub.WriteJSON(w, status, v) }

func decode(r *http.Request, v any) error { return hub.DecodeJSON(r, v) }

// pathInt parses a numeric path parameter.
func pathInt(r *http.Request, name, what string) (int64, error) {
	v := r.PathValue(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, hub.Errorf(hub.CodeNotFound, "%s %q does not exist", what, v)
	}
	return n, nil
}
