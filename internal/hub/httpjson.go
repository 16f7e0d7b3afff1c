package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// statusOf maps an error code to its HTTP status.
var statusOf = map[string]int{
	CodeBadRequest:       http.StatusBadRequest,
	CodeUnauthorized:     http.StatusUnauthorized,
	CodeForbidden:        http.StatusForbidden,
	CodeNotFound:         http.StatusNotFound,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeConflict:         http.StatusConflict,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeInvalid:          http.StatusUnprocessableEntity,
	CodeTooManyRequests:  http.StatusTooManyRequests,
	CodeInternal:         http.StatusInternalServerError,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeTimeout:          http.StatusGatewayTimeout,
	// Codes a session manager may answer with, passed through as they are.
	"already_linked":  http.StatusConflict,
	"invalid_phone":   http.StatusUnprocessableEntity,
	"not_on_whatsapp": http.StatusUnprocessableEntity,
	"qr_not_ready":    http.StatusServiceUnavailable,
	"not_connected":   http.StatusServiceUnavailable,
}

// StatusOf returns the HTTP status for an error code (502 for a code nobody here defines:
// it came from further away).
func StatusOf(code string) int {
	if st, ok := statusOf[code]; ok {
		return st
	}
	return http.StatusBadGateway
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

// WriteError answers with err in the one error shape. Only *Error text reaches the caller;
// anything else is logged (with unexpected 5xx) and answered "internal error".
func WriteError(w http.ResponseWriter, r *http.Request, err error, log *slog.Logger) {
	var he *Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		he = &Error{Code: CodeTooLarge, Message: fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)}
	case errors.As(err, &he):
	default:
		code := ErrorCode(err)
		msg := "internal error"
		if code != CodeInternal {
			msg = strings.ReplaceAll(code, "_", " ")
		}
		he = &Error{Code: code, Message: msg}
	}
	status := StatusOf(he.Code)
	if status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout && log != nil {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if he.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(he.RetryAfter.Seconds()+0.999)))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="leadmaster"`)
	}
	WriteJSON(w, status, errorBody{Error: errorDetail{Code: he.Code, Message: he.Message, Details: he.Details}})
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
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

// ErrEmptyBody is DecodeJSON's error for a request without a body, for routes where one is
// optional.
var ErrEmptyBody error = &Error{Code: CodeBadRequest, Message: "request body is empty; a JSON object is expected"}

// DecodeJSON reads one JSON object from r's body into v, rejecting unknown fields, trailing
// data and bodies over the route's limit with messages that say exactly what is wrong.
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			return Errorf(CodeBadRequest, "request body has data after the JSON object")
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
		return ErrEmptyBody
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(CodeBadRequest, "request body is truncated JSON")
	case errors.As(err, &syn):
		return Errorf(CodeBadRequest, "request body is not valid JSON (at byte %d): %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return Errorf(CodeBadRequest, "field %q must be %s, not %s", typ.Field, jsonType(typ.Type.Kind().String()), typ.Value)
		}
		return Errorf(CodeBadRequest, "request body must be a JSON object, not %s", typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return Errorf(CodeBadRequest, "unknown field %s in request body", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return Errorf(CodeBadRequest, "request body: %v", err)
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

// IntParam parses the query parameter name, which must be an integer in [lo, hi]; def when
// it is absent.
func IntParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, Errorf(CodeBadRequest, "query parameter %s must be an integer from %d to %d, not %q", name, lo, hi, v)
	}
	return n, nil
}
