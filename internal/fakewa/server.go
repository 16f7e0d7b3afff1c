// Package fakewa is a fake WhatsApp server that the real whatsmeow client can talk to offline.
//
// It speaks the client's wire protocol (websocket, Noise handshake, binary XML nodes) and plays
// the phone and the rest of the world: a simulated phone scans the QR code (or types a pairing
// code), every other phone number is a simulated contact with its own Signal store, so the server
// decrypts what the client sends and records the plain text, and contacts can write to the linked
// number. Tests point a whatsmeow client at it with HTTPClient and trust its certificate root:
//
//	srv, _ := fakewa.New(fakewa.Options{})
//	whatsmeow.WACertPubKey = fakewa.RootPublicKey() // tests and demos only
//	cli.SetPreLoginHTTPClient(srv.HTTPClient())
//	cli.SetWebsocketHTTPClient(srv.HTTPClient())
//
// The server keeps its state (linked devices, what each contact received) in memory for its
// lifetime, and the contacts' Signal stores in a temporary SQLite file removed by Close.
// A client whose device the server does not know (another server process, or unlinked) is
// refused at login with reason 401, which whatsmeow turns into events.LoggedOut.
//
// The same listener serves a JSON control API for demos (errors use the project's shape
// {"error": {"code", "message"}}):
//
//	GET  /_fake/recipients           every contact and what it received
//	GET  /_fake/recipients/{phone}   one contact
//	GET  /_fake/devices              linked devices
//	POST /_fake/scan                 {"qr": "...", "phone": "5491155550000"}
//	POST /_fake/pair-code            {"phone": "...", "code": "ABCD-EFGH"}
//	POST /_fake/send                 {"from": "...", "to": "...", "text": "...", "push_name": "..."}
//	POST /_fake/read                 {"phone": "<contact>", "ids": ["..."]}
//	POST /_fake/unlink               {"phone": "..."}
//	POST /_fake/not-on-whatsapp      {"phone": "..."}
//
// Not simulated: app state sync (so no contact full names and no own push name), history
// sync, groups, media, message retries, and copies of sent messages for the phone itself.
package fakewa

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // the contacts' Signal stores
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
)

// Errors returned by the Server. Check them with errors.Is.
var (
	// ErrUnknownQR means no connected client is showing that QR code.
	ErrUnknownQR = errors.New("fakewa: no client is showing this QR code")
	// ErrNoPairingCode means no client asked for a pairing code for that phone.
	ErrNoPairingCode = errors.New("fakewa: no pending pairing code for this phone")
	// ErrWrongCode means the pairing code does not match the one the client shows.
	ErrWrongCode = errors.New("fakewa: wrong pairing code")
	// ErrNotLinked means the phone number has no linked device.
	ErrNotLinked = errors.New("fakewa: phone has no linked device")
	// ErrInvalidPhone means a phone number is not E.164 digits.
	ErrInvalidPhone = errors.New("fakewa: invalid phone number")
	// ErrClientGone means the client disconnected in the middle of an operation.
	ErrClientGone = errors.New("fakewa: client disconnected")
	// ErrPairingRejected means the client refused the pairing (for example a bad signature).
	ErrPairingRejected = errors.New("fakewa: client rejected pairing")
)

// Options configure a Server. The zero value is ready to use.
type Options struct {
	// Addr is the TCP address to listen on; "127.0.0.1:0" when empty.
	Addr string
	// Logger receives the server's logs; unknown nodes are logged at debug level.
	// Nothing is logged when nil.
	Logger *slog.Logger
}

// Received is a message that a simulated contact decrypted.
type Received struct {
	ID   string    `json:"id"`
	From string    `json:"from"` // the linked phone that sent it, E.164 digits
	To   string    `json:"to"`   // the contact, E.164 digits
	Text string    `json:"text"` // conversation or extended text; empty for other kinds
	Time time.Time `json:"time"`
	// EncType is the Signal message type the client used: "pkmsg" (first messages of a
	// session) or "msg".
	EncType string `json:"enc_type"`
}

// Device is a linked (companion) device, as the fake phone sees it.
type Device struct {
	JID       string    `json:"jid"` // like "5491155550000:1@s.whatsapp.net"
	Phone     string    `json:"phone"`
	ID        int       `json:"device"`
	Connected bool      `json:"connected"` // logged in right now
	PairedAt  time.Time `json:"paired_at"`
}

// Server is a fake WhatsApp server. Its methods are safe for concurrent use.
type Server struct {
	log       *slog.Logger
	ln        net.Listener
	http      *http.Server
	url       string
	client    *http.Client
	transport *http.Transport
	static    *keys.KeyPair
	certs     []byte
	dir       string
	store     *sqlstore.Container

	mu         sync.Mutex
	changed    chan struct{}
	closed     bool
	conns      map[*conn]struct{}
	devices    map[string]*device // by AD JID string
	nextDevice map[string]uint16  // by phone
	refs       map[string]*conn   // QR refs shown by unpaired clients
	codes      map[string]*codePairing
	peers      map[string]*peer // simulated phones, by phone
	notOnWA    map[string]bool
	received   map[string][]Received // by contact phone
	arrivals   map[string]int        // message stanzas from clients, by message ID
	receipts   map[string][]string   // receipts clients sent, by message ID
	sentBy     map[string]types.JID  // message ID -> linked device that sent it
}

// New starts a Server listening on opts.Addr.
func New(opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s := &Server{
		log:        log,
		static:     keys.NewKeyPair(),
		changed:    make(chan struct{}),
		conns:      make(map[*conn]struct{}),
		devices:    make(map[string]*device),
		nextDevice: make(map[string]uint16),
		refs:       make(map[string]*conn),
		codes:      make(map[string]*codePairing),
		peers:      make(map[string]*peer),
		notOnWA:    make(map[string]bool),
		received:   make(map[string][]Received),
		arrivals:   make(map[string]int),
		receipts:   make(map[string][]string),
		sentBy:     make(map[string]types.JID),
	}
	var err error
	if s.certs, err = certChain(s.static); err != nil {
		return nil, fmt.Errorf("build certificates: %w", err)
	}
	if s.dir, err = os.MkdirTemp("", "fakewa-*"); err != nil {
		return nil, fmt.Errorf("create store dir: %w", err)
	}
	dsn := "file:" + filepath.Join(s.dir, "contacts.db") + "?_foreign_keys=on&_journal_mode=WAL&_busy_timeout=10000"
	if s.store, err = sqlstore.New(context.Background(), "sqlite3", dsn, nil); err != nil {
		os.RemoveAll(s.dir)
		return nil, fmt.Errorf("open contact store: %w", err)
	}
	if s.ln, err = net.Listen("tcp", addr); err != nil {
		s.store.Close()
		os.RemoveAll(s.dir)
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.url = "http://" + s.ln.Addr().String()
	s.transport = http.DefaultTransport.(*http.Transport).Clone()
	s.client = &http.Client{Transport: &rewriter{target: &url.URL{Scheme: "http", Host: s.ln.Addr().String()}, base: s.transport}}
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	s.log.Info("fake WhatsApp server listening", "url", s.url)
	return s, nil
}

// URL returns the server's base URL, like "http://127.0.0.1:41234". The websocket is at
// /ws/chat and the control API under /_fake/.
func (s *Server) URL() string { return s.url }

// HTTPClient returns a client that sends every request, whatever its URL, to this server.
// Give it to whatsmeow with SetPreLoginHTTPClient and SetWebsocketHTTPClient.
func (s *Server) HTTPClient() *http.Client {
	return s.client
}

type rewriter struct {
	target *url.URL
	base   http.RoundTripper
}

func (rw *rewriter) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.URL.Scheme = rw.target.Scheme
	r.URL.Host = rw.target.Host
	r.Host = ""
	return rw.base.RoundTrip(r)
}

// Close stops the server, drops every connection and deletes the contacts' stores.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	err := s.http.Close()
	s.transport.CloseIdleConnections()
	for _, c := range conns {
		c.closeNow()
	}
	if cerr := s.store.Close(); err == nil {
		err = cerr
	}
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

// notify wakes WaitFor callers; the caller holds s.mu.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// WaitFor blocks until cond returns true or ctx ends. cond is evaluated now and after every
// change of the server's state (a device linked or connected, a message or receipt arrived),
// so tests need no polling. cond must not block; it may call the Server's methods.
func (s *Server) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Devices returns the linked devices, sorted by JID.
func (s *Server) Devices() []Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Device, 0, len(s.devices))
	for _, d := range s.devices {
		out = append(out, Device{
			JID:       d.jid.String(),
			Phone:     d.jid.User,
			ID:        int(d.jid.Device),
			Connected: d.conn != nil,
			PairedAt:  d.pairedAt,
		})
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.JID, b.JID) })
	return out
}

// Recipients returns the contacts that received at least one message, sorted.
func (s *Server) Recipients() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.received))
	for phone := range s.received {
		out = append(out, phone)
	}
	slices.Sort(out)
	return out
}

// Received returns what the contact with this phone number decrypted, oldest first.
// A message the client sent twice with the same ID appears twice.
func (s *Server) Received(phone string) []Received {
	phone = digits(phone)
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.received[phone])
}

// Arrivals reports how many message stanzas with this ID clients sent, decryptable or not.
// More than one means the client sent the message again.
func (s *Server) Arrivals(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrivals[id]
}

// ClientReceipts returns the receipt types a client sent for a message it received (for
// example "delivered", "inactive" or "read"), in order.
func (s *Server) ClientReceipts(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.receipts[id])
}

// MarkNotOnWhatsApp makes the phone number unknown to WhatsApp: IsOnWhatsApp says so, it
// has no devices, and messages to it are accepted but never delivered.
func (s *Server) MarkNotOnWhatsApp(phone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notOnWA[digits(phone)] = true
}

// Unlink removes every device linked to the phone, as if the user unlinked them on the phone.
// A connected client gets a device_removed stream error (events.LoggedOut); an offline one is
// refused at its next login (events.LoggedOut with OnConnect).
func (s *Server) Unlink(phone string) error {
	phone = digits(phone)
	var gone []*device
	s.mu.Lock()
	for key, d := range s.devices {
		if d.jid.User == phone {
			delete(s.devices, key)
			gone = append(gone, d)
		}
	}
	if len(gone) > 0 {
		s.notify()
	}
	s.mu.Unlock()
	if len(gone) == 0 {
		return ErrNotLinked
	}
	for _, d := range gone {
		s.mu.Lock()
		c := d.conn
		d.conn = nil
		s.mu.Unlock()
		if c != nil {
			s.log.Info("unlinking connected device", "jid", d.jid)
			c.streamError("401", "device_removed")
		}
	}
	return nil
}

// digits keeps only the digits of a phone number, so "+54 9 11 5555-0000" works too.
func digits(phone string) string {
	var b strings.Builder
	for _, r := range phone {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func validPhone(phone string) bool {
	return len(phone) >= 7 && len(phone) <= 15 && phone[0] != '0'
}

// lidFor derives a stable fake LID user for a phone number.
func lidFor(phone string) string {
	sum := sha256.Sum256([]byte("lid:" + phone))
	n := binary.BigEndian.Uint64(sum[:8])%900_000_000_000_000 + 100_000_000_000_000
	return fmt.Sprint(n)
}

func userJID(phone string) types.JID {
	return types.NewJID(phone, types.DefaultUserServer)
}
