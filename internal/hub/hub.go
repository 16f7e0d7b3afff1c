// Package hub holds the domain types central-hub's packages share: the error type every API
// answer is built from, the authenticated principal, and the portable-migration helper.
//
// The subpackages do the work: auth (users, sessions, API keys), proxy (the way to each
// cliente's session manager), contacts (leads, sync, CSV import), events (the event consumer
// and conversations), webhook (signed outgoing webhooks) and api (the HTTP server).
package hub

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/leadmaster/leadmaster/internal/store"
)

// Error codes. Each maps to one HTTP status in package api; docs/hub-api.md lists them.
const (
	CodeBadRequest       = "bad_request"        // 400
	CodeUnauthorized     = "unauthorized"       // 401
	CodeForbidden        = "forbidden"          // 403
	CodeNotFound         = "not_found"          // 404
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeConflict         = "conflict"           // 409
	CodeTooLarge         = "too_large"          // 413
	CodeInvalid          = "invalid"            // 422
	CodeTooManyRequests  = "too_many_requests"  // 429
	CodeInternal         = "internal"           // 500
	CodeUnavailable      = "unavailable"        // 503
	CodeTimeout          = "timeout"            // 504
)

// Error is an error meant for the API caller: a stable code and a message a person can act on.
// Anything that is not an *Error reaches the caller as "internal error" only.
type Error struct {
	Code    string
	Message string
	// RetryAfter, when set, becomes a Retry-After header.
	RetryAfter time.Duration
	// Details, when set, is shown as the error's "details" (such as per-row import errors).
	Details any
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the *Error in err's chain, CodeNotFound for store.ErrNotFound,
// CodeConflict for store.ErrConflict, and CodeInternal otherwise.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, store.ErrNotFound):
		return CodeNotFound
	case errors.Is(err, store.ErrConflict):
		return CodeConflict
	}
	return CodeInternal
}

// Role is what a user may do.
type Role string

// Roles. An admin sees every cliente; a member sees only its own.
const (
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

// Principal is who made a request: a logged-in user or a cliente's API key.
type Principal struct {
	UserID   int64  `json:"id,omitempty"`
	Username string `json:"username,omitempty"`
	Role     Role   `json:"role"`
	// ClienteID is the cliente a member or an API key belongs to ("" for admins).
	ClienteID string `json:"cliente,omitempty"`
	// APIKeyID is set when the request came with an API key.
	APIKeyID int64 `json:"api_key_id,omitempty"`
	// Cookie reports whether the credential came in the web UI's cookie.
	Cookie bool `json:"-"`
}

// CanAccess reports whether p may act on cliente id.
func (p *Principal) CanAccess(id string) bool {
	if p == nil {
		return false
	}
	return p.Role == RoleAdmin || (p.ClienteID != "" && p.ClienteID == id)
}

// Accessible returns those of ids (clientes, in their order) that p may act on.
func (p *Principal) Accessible(ids []string) []string {
	out := []string{}
	for _, id := range ids {
		if p.CanAccess(id) {
			out = append(out, id)
		}
	}
	return out
}

// IsAdmin reports whether p is an administrator.
func (p *Principal) IsAdmin() bool { return p != nil && p.Role == RoleAdmin }

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal in ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Migration builds a store.Migration from SQL written once for both dialects (see
// store.Portable: ID_PK becomes an auto-increment primary key).
func Migration(version int, sql string) store.Migration { return store.Portable(version, sql) }

// Millis converts t to the Unix milliseconds the hub's tables store.
func Millis(t time.Time) int64 { return t.UnixMilli() }

// FromMillis converts stored Unix milliseconds back to a UTC time (zero for 0).
func FromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// Querier is what *store.DB and *store.Tx have in common, so that one function can run in or
// outside a transaction.
type Querier interface {
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) *sql.Row
}

var (
	_ Querier = (*store.DB)(nil)
	_ Querier = (*store.Tx)(nil)
)
