package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/leadmaster/leadmaster/internal/hub"
)

// statusOf maps an error code to its HTTP status.
var statusOf = map[string]int{
	hub.CodeBadRequest:       http.StatusBadRequest,
	hub.CodeUnauthorized:     http.StatusUnauthorized,
	hub.CodeForbidden:        http.StatusForbidden,
	hub.CodeNotFound:         http.StatusNotFound,
	hub.CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	hub.CodeConflict:         http.StatusConflict,
	hub.CodeTooLarge:         http.StatusRequestEntityTooLarge,
	hub.CodeInvalid:          http.StatusUnprocessableEntity,
	hub.CodeTooManyRequests:  http.StatusTooManyRequests,
	hub.CodeInternal:         http.StatusInternalServerError,
	hub.CodeUnavailable:      http.StatusServiceUnavailable,
	hub.CodeTimeout:          http.StatusGatewayTimeout,
	// Codes a session manager may answer with, passed through by Call.
	"already_linked":  http.StatusConflict,
	"invalid_phone":   http.StatusUnprocessableEntity,
	"not_on_whatsapp": http.StatusUnprocessableEntity,
	"qr_not_ready":    http.StatusServiceUnavailable,
	"not_connected":   http.StatusServiceUnavailable,
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

// fail writes err in the one error shape. Only *hub.Error text reaches the caller; anything
// else is logged and answered "internal error".
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *hub.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		he = &hub.Error{Code: hub.CodeTooLarge, Message: fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)}
	case errors.As(err, &he):
	default:
		code := hub.ErrorCode(err)
		msg := "internal error"
		if code != hub.CodeInternal {
			msg = strings.ReplaceAll(code, "_", " ")
		}
		he = &hub.Error{Code: code, Message: msg}
	}
	status, ok := statusOf[he.Code]
	if !ok {
		status = http.StatusBadGateway
	}
	if status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if he.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(he.RetryAfter.Seconds()+0.999)))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="leadmaster"`)
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: he.Code, Message: he.Message, Details: he.Details}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"internal error"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// decode reads one JSON object from r's body into v, rejecting unknown fields, trailing data
// and bodies over the route's limit with messages that say exactly what is wrong.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			return hub.Errorf(hub.CodeBadRequest, "request body has data after the JSON object")
		}
		if _, err2 := dec.Token(); err2 != io.EOF {
			return hub.Errorf(hub.CodeBadRequest, "request body has data after the JSON object")
		}
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return err
	case errors.Is(err, io.EOF):
		return hub.Errorf(hub.CodeBadRequest, "request body is empty; a JSON object is expected")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return hub.Errorf(hub.CodeBadRequest, "request body is truncated JSON")
	case errors.As(err, &syn):
		return hub.Errorf(hub.CodeBadRequest, "request body is not valid JSON (at byte %d): %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return hub.Errorf(hub.CodeBadRequest, "field %q must be %s, not %s", typ.Field, jsonType(typ.Type.Kind().String()), typ.Value)
		}
		return hub.Errorf(hub.CodeBadRequest, "request body must be a JSON object, not %s", typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return hub.Errorf(hub.CodeBadRequest, "unknown field %s in request body", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return hub.Errorf(hub.CodeBadRequest, "request body: %v", err)
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return "a number"
}

// intParam parses a query parameter that must be an integer in [lo, hi], with a default.
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, hub.Errorf(hub.CodeBadRequest, "query parameter %s must be an integer from %d to %d, not %q", name, lo, hi, v)
	}
	return n, nil
}

// pathInt parses a numeric path parameter.
func pathInt(r *http.Request, name, what string) (int64, error) {
	v := r.PathValue(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, hub.Errorf(hub.CodeNotFound, "%s %q does not exist", what, v)
	}
	return n, nil
}
