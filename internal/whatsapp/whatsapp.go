// Package whatsapp adapts go.mau.fi/whatsmeow to LeadMaster: one linked device per process,
// its store in our database, and our own event and error types out, so no whatsmeow type
// leaks into the rest of the code.
package whatsapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	wastore "go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	walog "go.mau.fi/whatsmeow/util/log"
	"google.golang.org/protobuf/proto"

	"github.com/leadmaster/leadmaster/internal/store"
)

// Errors callers tell apart.
var (
	ErrNotLinked     = errors.New("not linked to WhatsApp")
	ErrNotConnected  = errors.New("not connected to WhatsApp")
	ErrNotOnWhatsApp = errors.New("number is not on WhatsApp")
	ErrLinked        = errors.New("already linked")
)

// EventType tells what an Event carries.
type EventType string

// Event types.
const (
	EventQR           EventType = "qr"            // QR, QRExpires
	EventQRExhausted  EventType = "qr_exhausted"  // every code of this connection expired
	EventPairSuccess  EventType = "pair_success"  // JID
	EventPairError    EventType = "pair_error"    // Err
	EventConnected    EventType = "connected"     // JID, PushName
	EventDisconnected EventType = "disconnected"  // the connection dropped unexpectedly
	EventLoggedOut    EventType = "logged_out"    // Err: the reason; the device is gone
	EventConnectFail  EventType = "connect_error" // Err; TemporaryBan sets Banned
	EventMessage      EventType = "message"       // Message
	EventReceipt      EventType = "receipt"       // Receipt
)

// Event is something that happened on the WhatsApp connection.
type Event struct {
	Type      EventType
	QR        string
	QRExpires time.Time
	JID       string
	PushName  string
	Err       string
	Banned    bool
	Message   *Message
	Receipt   *Receipt
}

// Message is an incoming message.
type Message struct {
	ID       string
	From     string // the sender's JID (phone-number JID when known)
	Phone    string // +E.164 when known
	PushName string
	Kind     string // text, image, video, audio, document, sticker, location, contact, other
	Text     string
	Time     time.Time
}

// Receipt reports that messages we sent were delivered or read.
type Receipt struct {
	IDs   []string
	Type  string // delivered or read
	From  string
	Phone string
	Time  time.Time
}

// Contact is an entry of the linked account's address book.
type Contact struct {
	JID          string
	Phone        string
	Name         string
	PushName     string
	BusinessName string
}

// Options configures a Client.
type Options struct {
	DB  *store.DB
	Log *slog.Logger
	// HTTPClient, when set, carries every websocket and pre-login request. Left nil,
	// whatsmeow's defaults reach the real WhatsApp. Test and demo builds point it at the
	// fake server.
	HTTPClient *http.Client
	// OnEvent receives every event, from whatsmeow's event goroutine, in order. For messages
	// and receipts, returning an error makes WhatsApp redeliver later: return one when the
	// event could not be stored.
	OnEvent func(Event) error
	// QRTimeouts: the first code lasts QRFirst, the next ones QRNext (WhatsApp's own are
	// 60 s and 20 s).
	QRFirst, QRNext time.Duration
}

// Client is one linked (or linkable) WhatsApp device.
type Client struct {
	opts      Options
	container *sqlstore.Container

	mu      sync.Mutex
	cli     *whatsmeow.Client
	qrStop  chan struct{}
	handler uint32
}

// Open loads (or creates) the device store in opts.DB and returns a disconnected client.
func Open(ctx context.Context, opts Options) (*Client, error) {
	if opts.QRFirst == 0 {
		opts.QRFirst = 60 * time.Second
	}
	if opts.QRNext == 0 {
		opts.QRNext = 20 * time.Second
	}
	wastore.SetOSInfo("LeadMaster", [3]uint32{1, 0, 0})
	c := &Client{opts: opts}
	c.container = sqlstore.NewWithDB(opts.DB.DB, opts.DB.Dialect.String(), waLogger{opts.Log.With("module", "whatsmeow")})
	if err := c.container.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("upgrade device store: %w", err)
	}
	dev, err := c.container.GetFirstDevice(ctx)
	if err != nil {
		return nil, fmt.Errorf("load device: %w", err)
	}
	c.newClient(dev)
	return c, nil
}

func (c *Client) newClient(dev *wastore.Device) {
	cli := whatsmeow.NewClient(dev, waLogger{c.opts.Log.With("module", "whatsmeow")})
	// The session package owns reconnecting, with its own capped backoff and state.
	cli.EnableAutoReconnect = false
	cli.AutomaticMessageRerequestFromPhone = true
	if c.opts.HTTPClient != nil {
		cli.SetPreLoginHTTPClient(c.opts.HTTPClient)
		cli.SetWebsocketHTTPClient(c.opts.HTTPClient)
	}
	c.handler = cli.AddEventHandlerWithSuccessStatus(c.handle)
	c.cli = cli
}

func (c *Client) client() *whatsmeow.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cli
}

// Linked reports whether a device is stored (a QR was scanned and not logged out since).
func (c *Client) Linked() bool { return c.client().Store.ID != nil }

// Connected reports whether the client is connected and logged in.
func (c *Client) Connected() bool { return c.client().IsLoggedIn() }

// Self returns the linked device's JID and push name ("" when not linked).
func (c *Client) Self() (jid, pushName string) {
	st := c.client().Store
	if st.ID == nil {
		return "", ""
	}
	return st.ID.String(), st.PushName
}

// Connect dials WhatsApp. Unlinked, QR events follow; linked, Connected follows.
func (c *Client) Connect(ctx context.Context) error {
	err := c.client().ConnectContext(ctx)
	if errors.Is(err, whatsmeow.ErrAlreadyConnected) {
		return nil
	}
	return err
}

// Disconnect closes the connection without unlinking.
func (c *Client) Disconnect() {
	c.stopQR()
	c.client().Disconnect()
}

// Close disconnects; the database belongs to the caller.
func (c *Client) Close() { c.Disconnect() }

// PairPhone asks WhatsApp for a code to type on the phone (Linked devices, Link with phone
// number) instead of scanning the QR. It needs a connection that is showing QR codes.
func (c *Client) PairPhone(ctx context.Context, phone string) (string, error) {
	cli := c.client()
	if cli.Store.ID != nil {
		return "", ErrLinked
	}
	if !cli.IsConnected() {
		return "", ErrNotConnected
	}
	code, err := cli.PairPhone(ctx, phone, true, whatsmeow.PairClientChrome, "Chrome (Linux)")
	if err != nil {
		return "", fmt.Errorf("pair by phone: %w", err)
	}
	return code, nil
}

// Logout unlinks the device on WhatsApp and locally, and readies a fresh device for a new QR.
// If WhatsApp cannot be told (no connection), the local link is dropped anyway: the phone
// then shows a stale device that the user can remove.
func (c *Client) Logout(ctx context.Context) error {
	cli := c.client()
	if cli.Store.ID == nil {
		return ErrNotLinked
	}
	c.stopQR()
	if err := cli.Logout(ctx); err != nil {
		c.opts.Log.Warn("logout on WhatsApp failed, removing the local link only", "err", err)
		cli.Disconnect()
		if err := cli.Store.Delete(ctx); err != nil {
			return fmt.Errorf("delete device: %w", err)
		}
	}
	return c.Reset()
}

// Reset replaces a logged-out device by a fresh one, ready to show a QR on Connect.
func (c *Client) Reset() error {
	c.stopQR()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cli.Disconnect()
	c.cli.RemoveEventHandler(c.handler)
	c.newClient(c.container.NewDevice())
	return nil
}

// ResolvePhone asks WhatsApp whether the E.164 number (with +) has an account and returns its JID.
func (c *Client) ResolvePhone(ctx context.Context, phone string) (string, error) {
	cli := c.client()
	if !cli.IsLoggedIn() {
		return "", ErrNotConnected
	}
	res, err := cli.IsOnWhatsApp(ctx, []string{phone})
	if errors.Is(err, whatsmeow.ErrNotConnected) {
		return "", fmt.Errorf("check number: %w (%v)", ErrNotConnected, err)
	}
	if err != nil {
		return "", fmt.Errorf("check number: %w", err)
	}
	for _, r := range res {
		if r.IsIn {
			return r.JID.String(), nil
		}
	}
	return "", ErrNotOnWhatsApp
}

// SendText sends text to the JID with the given message ID and returns the server's timestamp.
func (c *Client) SendText(ctx context.Context, to, id, text string) (time.Time, error) {
	cli := c.client()
	if !cli.IsLoggedIn() {
		return time.Time{}, ErrNotConnected
	}
	jid, err := types.ParseJID(to)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid JID %q: %w", to, err)
	}
	resp, err := cli.SendMessage(ctx, jid, &waE2E.Message{Conversation: proto.String(text)}, whatsmeow.SendRequestExtra{ID: types.MessageID(id)})
	if errors.Is(err, whatsmeow.ErrNotConnected) || errors.Is(err, whatsmeow.ErrNotLoggedIn) {
		// The connection dropped under the send: the caller should wait, not count a failure.
		return time.Time{}, fmt.Errorf("send: %w (%v)", ErrNotConnected, err)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("send: %w", err)
	}
	return resp.Timestamp, nil
}

// NewMessageID returns a fresh ID in WhatsApp's own format.
func (c *Client) NewMessageID() string { return string(c.client().GenerateMessageID()) }

// Contacts lists the linked account's contacts known to this device.
func (c *Client) Contacts(ctx context.Context) ([]Contact, error) {
	cli := c.client()
	if cli.Store.ID == nil {
		return nil, ErrNotLinked
	}
	all, err := cli.Store.Contacts.GetAllContacts(ctx)
	if err != nil {
		return nil, fmt.Errorf("contacts: %w", err)
	}
	out := make([]Contact, 0, len(all))
	for jid, info := range all {
		if jid.Server != types.DefaultUserServer {
			continue // LIDs, groups, broadcast lists: not leads
		}
		name := info.FullName
		if name == "" {
			name = info.FirstName
		}
		out = append(out, Contact{JID: jid.String(), Phone: "+" + jid.User, Name: name, PushName: info.PushName, BusinessName: info.BusinessName})
	}
	return out, nil
}

// handle translates whatsmeow events. Its result tells whatsmeow whether the event was
// handled; false for a message makes WhatsApp deliver it again later.
func (c *Client) handle(raw any) bool {
	emit := func(e Event) bool {
		if c.opts.OnEvent == nil {
			return true
		}
		if err := c.opts.OnEvent(e); err != nil {
			c.opts.Log.Error("event not stored; WhatsApp will redeliver", "type", e.Type, "err", err)
			return false
		}
		return true
	}
	switch e := raw.(type) {
	case *events.QR:
		go c.emitQRs(e.Codes, emit)
	case *events.PairSuccess:
		c.stopQR()
		emit(Event{Type: EventPairSuccess, JID: e.ID.String(), PushName: e.BusinessName})
	case *events.PairError:
		emit(Event{Type: EventPairError, Err: e.Error.Error()})
	case *events.Connected:
		jid, push := c.Self()
		emit(Event{Type: EventConnected, JID: jid, PushName: push})
	case *events.Disconnected:
		c.stopQR()
		emit(Event{Type: EventDisconnected})
	case *events.StreamReplaced:
		emit(Event{Type: EventConnectFail, Err: "another client connected with this device"})
	case *events.KeepAliveTimeout:
		c.opts.Log.Warn("WhatsApp keepalive timed out", "errors", e.ErrorCount)
	case *events.LoggedOut:
		c.stopQR()
		emit(Event{Type: EventLoggedOut, Err: e.Reason.String()})
	case *events.ConnectFailure:
		emit(Event{Type: EventConnectFail, Err: fmt.Sprintf("connect failure %d: %s", int(e.Reason), e.Message)})
	case *events.TemporaryBan:
		emit(Event{Type: EventConnectFail, Err: e.String(), Banned: true})
	case *events.ClientOutdated:
		emit(Event{Type: EventConnectFail, Err: "WhatsApp says this client version is outdated; upgrade LeadMaster"})
	case *events.Message:
		return c.handleMessage(e, emit)
	case *events.Receipt:
		return c.handleReceipt(e, emit)
	}
	return true
}

func (c *Client) handleMessage(e *events.Message, emit func(Event) bool) bool {
	if e.Info.IsFromMe || e.Info.IsGroup || e.Info.Chat.Server == types.BroadcastServer || e.Info.Chat.Server == types.NewsletterServer {
		return true
	}
	from := c.phoneJID(e.Info.Sender, e.Info.SenderAlt)
	kind, text := describe(e.Message)
	return emit(Event{Type: EventMessage, Message: &Message{
		ID: string(e.Info.ID), From: from.String(), Phone: phoneOf(from), PushName: e.Info.PushName,
		Kind: kind, Text: text, Time: e.Info.Timestamp,
	}})
}

func (c *Client) handleReceipt(e *events.Receipt, emit func(Event) bool) bool {
	var kind string
	switch e.Type {
	case types.ReceiptTypeDelivered:
		kind = "delivered"
	case types.ReceiptTypeRead, types.ReceiptTypePlayed:
		kind = "read"
	default:
		return true
	}
	if e.IsFromMe || e.IsGroup {
		return true
	}
	from := c.phoneJID(e.Sender, e.MessageSource.SenderAlt)
	ids := make([]string, len(e.MessageIDs))
	for i, id := range e.MessageIDs {
		ids[i] = string(id)
	}
	return emit(Event{Type: EventReceipt, Receipt: &Receipt{IDs: ids, Type: kind, From: from.ToNonAD().String(), Phone: phoneOf(from), Time: e.Timestamp}})
}

// phoneJID prefers the phone-number JID of a sender WhatsApp addressed by LID.
func (c *Client) phoneJID(jid, alt types.JID) types.JID {
	jid = jid.ToNonAD()
	if jid.Server != types.HiddenUserServer {
		return jid
	}
	if alt.Server == types.DefaultUserServer {
		return alt.ToNonAD()
	}
	if pn, err := c.client().Store.LIDs.GetPNForLID(context.Background(), jid); err == nil && !pn.IsEmpty() {
		return pn.ToNonAD()
	}
	return jid
}

func phoneOf(jid types.JID) string {
	if jid.Server != types.DefaultUserServer {
		return ""
	}
	return "+" + jid.User
}

func describe(m *waE2E.Message) (kind, text string) {
	switch {
	case m.GetConversation() != "":
		return "text", m.GetConversation()
	case m.GetExtendedTextMessage() != nil:
		return "text", m.GetExtendedTextMessage().GetText()
	case m.GetImageMessage() != nil:
		return "image", m.GetImageMessage().GetCaption()
	case m.GetVideoMessage() != nil:
		return "video", m.GetVideoMessage().GetCaption()
	case m.GetAudioMessage() != nil:
		return "audio", ""
	case m.GetDocumentMessage() != nil:
		return "document", m.GetDocumentMessage().GetFileName()
	case m.GetStickerMessage() != nil:
		return "sticker", ""
	case m.GetLocationMessage() != nil:
		return "location", m.GetLocationMessage().GetName()
	case m.GetContactMessage() != nil:
		return "contact", m.GetContactMessage().GetDisplayName()
	}
	return "other", ""
}

// emitQRs shows each code for its lifetime, like whatsmeow's QR channel, then reports that
// the codes ran out so the caller can reconnect for fresh ones.
func (c *Client) emitQRs(codes []string, emit func(Event) bool) {
	stop := make(chan struct{})
	c.mu.Lock()
	if c.qrStop != nil {
		close(c.qrStop)
	}
	c.qrStop = stop
	c.mu.Unlock()
	for i, code := range codes {
		life := c.opts.QRNext
		if i == 0 {
			life = c.opts.QRFirst
		}
		emit(Event{Type: EventQR, QR: code, QRExpires: time.Now().Add(life)})
		select {
		case <-stop:
			return
		case <-time.After(life):
		}
	}
	c.mu.Lock()
	if c.qrStop == stop {
		c.qrStop = nil
	}
	c.mu.Unlock()
	emit(Event{Type: EventQRExhausted})
}

func (c *Client) stopQR() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.qrStop != nil {
		close(c.qrStop)
		c.qrStop = nil
	}
}

// waLogger sends whatsmeow's logs to slog. whatsmeow's info lines are chatty protocol detail,
// so they go to debug; nothing it logs reaches info level with message content.
type waLogger struct{ l *slog.Logger }

func (w waLogger) Warnf(msg string, args ...any) {
	w.l.Warn(strings.TrimSpace(fmt.Sprintf(msg, args...)))
}
func (w waLogger) Errorf(msg string, args ...any) {
	w.l.Error(strings.TrimSpace(fmt.Sprintf(msg, args...)))
}
func (w waLogger) Infof(msg string, args ...any) {
	if w.l.Enabled(context.Background(), slog.LevelDebug) {
		w.l.Debug(strings.TrimSpace(fmt.Sprintf(msg, args...)))
	}
}
func (w waLogger) Debugf(msg string, args ...any) {
	if w.l.Enabled(context.Background(), slog.LevelDebug-4) {
		w.l.Log(context.Background(), slog.LevelDebug-4, strings.TrimSpace(fmt.Sprintf(msg, args...)))
	}
}
func (w waLogger) Sub(module string) walog.Logger { return waLogger{w.l.With("sub", module)} }
