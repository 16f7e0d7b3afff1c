package sender

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/proxy"
)

// Gateway sends one message through a cliente's session manager (POST /messages). Sending the
// same ID again must be harmless: the session manager's ledger answers it without sending.
type Gateway interface {
	Send(ctx context.Context, cliente string, m Outgoing) (Result, error)
}

// Outgoing is a message as the session manager is asked to send it.
type Outgoing struct {
	ID   string
	To   string // E.164
	Text string
}

// Result is the session manager's answer to a send.
type Result struct {
	Timestamp time.Time
	// Duplicate reports whether the ID had already been sent (nothing went out this time).
	Duplicate bool
}

// Kind says what a failed send means for the message and for the cliente's sending.
type Kind int

const (
	// KindTransient: the attempt failed and may succeed later (a timeout, an internal error).
	// It counts as an attempt; after max_attempts the message fails.
	KindTransient Kind = iota
	// KindWait: the session manager cannot send right now (down, not connected, not linked).
	// The cliente's sending waits; no attempt is counted.
	KindWait
	// KindBusy: the session manager is sending this very ID right now (a resend after a hub
	// restart raced the first attempt). Retried shortly; no attempt is counted.
	KindBusy
	// KindPermanent: this message can never be sent (invalid number, not on WhatsApp, refused).
	KindPermanent
)

// SendError is a failed send, classified.
type SendError struct {
	Kind Kind
	// Code is the session manager's error code (invalid_phone, not_on_whatsapp, ...) or the
	// hub's (unavailable, timeout).
	Code    string
	Message string
}

func (e *SendError) Error() string { return e.Message }

// classify explains any error from a Gateway. Errors that are not *SendError are transient.
func classify(err error) *SendError {
	var se *SendError
	if errors.As(err, &se) {
		return se
	}
	return &SendError{Kind: KindTransient, Code: hub.CodeInternal, Message: err.Error()}
}

// sendTimeout bounds one POST /messages. WhatsApp answers in well under a second; the session
// manager's own deadline for a send is shorter than this, so a timeout here is rare.
const sendTimeout = 60 * time.Second

// PoolGateway sends through the hub's session-manager pool.
func PoolGateway(pool *proxy.Pool) Gateway { return poolGateway{pool} }

type poolGateway struct{ pool *proxy.Pool }

func (g poolGateway) Send(ctx context.Context, cliente string, m Outgoing) (Result, error) {
	var resp struct {
		ID        string    `json:"id"`
		State     string    `json:"state"`
		Timestamp time.Time `json:"timestamp"`
		Duplicate bool      `json:"duplicate"`
	}
	err := g.pool.Call(ctx, cliente, http.MethodPost, "/messages", map[string]string{"to": m.To, "text": m.Text, "id": m.ID}, &resp, sendTimeout)
	if err != nil {
		return Result{}, classifyPool(err)
	}
	if resp.ID != "" && resp.ID != m.ID {
		return Result{}, &SendError{Kind: KindPermanent, Code: FailRejected, Message: fmt.Sprintf("session manager answered for message %s, not %s", resp.ID, m.ID)}
	}
	return Result{Timestamp: resp.Timestamp, Duplicate: resp.Duplicate}, nil
}

// classifyPool maps the pool's and the session manager's errors (docs/session-manager-api.md)
// to what the dispatcher should do.
func classifyPool(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	var u *proxy.Unavailable
	if errors.As(err, &u) {
		if u.State == proxy.StateUnresponsive {
			// It may have sent: count an attempt, resend later with the same ID.
			return &SendError{Kind: KindTransient, Code: hub.CodeTimeout, Message: u.Err.Message}
		}
		return &SendError{Kind: KindWait, Code: hub.CodeUnavailable, Message: u.Err.Message}
	}
	var he *hub.Error
	if !errors.As(err, &he) {
		return &SendError{Kind: KindTransient, Code: hub.CodeInternal, Message: err.Error()}
	}
	se := &SendError{Code: he.Code, Message: he.Message}
	switch he.Code {
	case "invalid_phone", "not_on_whatsapp":
		se.Kind = KindPermanent
	case hub.CodeBadRequest:
		se.Kind, se.Code = KindPermanent, FailRejected
	case hub.CodeConflict:
		if strings.Contains(he.Message, "being sent right now") {
			se.Kind = KindBusy
		} else {
			se.Kind, se.Code = KindPermanent, FailRejected
		}
	case "not_connected", "not_linked", "qr_not_ready", hub.CodeUnavailable, hub.CodeNotFound:
		// not_found: the cliente vanished from the configuration mid-send.
		se.Kind = KindWait
	default: // timeout (504), internal (500), anything unexpected
		se.Kind = KindTransient
	}
	return se
}
