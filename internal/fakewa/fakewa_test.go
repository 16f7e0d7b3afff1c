package fakewa_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	_ "github.com/mattn/go-sqlite3"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	waLog "go.mau.fi/whatsmeow/util/log"
	"google.golang.org/protobuf/proto"

	"github.com/leadmaster/leadmaster/internal/fakewa"
)

const (
	linkedPhone = "5491155550000"
	leadPhone   = "5491166660001"
)

// verbose turns on client and server logs: FAKEWA_TEST_LOG=1 go test ./internal/fakewa/
var verbose = os.Getenv("FAKEWA_TEST_LOG") != ""

func TestMain(m *testing.M) {
	// The client trusts the fake root, and pings often so keepalives are exercised.
	whatsmeow.WACertPubKey = fakewa.RootPublicKey()
	whatsmeow.KeepAliveIntervalMin = 100 * time.Millisecond
	whatsmeow.KeepAliveIntervalMax = 200 * time.Millisecond
	os.Exit(m.Run())
}

func newServer(tb testing.TB) *fakewa.Server {
	tb.Helper()
	opts := fakewa.Options{}
	if verbose {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := fakewa.New(opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	return srv
}

// client is a real whatsmeow client on a SQLite store, with its events in a channel.
type client struct {
	*whatsmeow.Client
	events chan any
}

// newClient opens (or reopens) the store at dbPath and points a new client at srv.
func newClient(tb testing.TB, srv *fakewa.Server, dbPath string) *client {
	tb.Helper()
	ctx := context.Background()
	container, err := sqlstore.New(ctx, "sqlite3", "file:"+dbPath+"?_foreign_keys=on", nil)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	dev, err := container.GetFirstDevice(ctx)
	if err != nil {
		tb.Fatalf("GetFirstDevice: %v", err)
	}
	log := waLog.Noop
	if verbose {
		log = waLog.Stdout("client", "DEBUG", false)
	}
	c := &client{Client: whatsmeow.NewClient(dev, log), events: make(chan any, 1024)}
	c.SetPreLoginHTTPClient(srv.HTTPClient())
	c.SetWebsocketHTTPClient(srv.HTTPClient())
	c.AddEventHandler(func(evt any) {
		select {
		case c.events <- evt:
		default:
		}
	})
	tb.Cleanup(func() {
		c.Disconnect()
		container.Close()
	})
	return c
}

// waitEvent returns the first event of type T that matches ok, failing after a timeout.
func waitEvent[T any](tb testing.TB, c *client, ok func(T) bool) T {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case evt := <-c.events:
			if e, isT := evt.(T); isT && (ok == nil || ok(e)) {
				return e
			}
		case <-timeout:
			var zero T
			tb.Fatalf("timed out waiting for %T", zero)
			return zero
		}
	}
}

// link shows a QR code on a fresh client, scans it as phone and waits until the client is
// connected with its new identity.
func link(tb testing.TB, srv *fakewa.Server, c *client, phone string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qrs, err := c.GetQRChannel(ctx)
	if err != nil {
		tb.Fatalf("GetQRChannel: %v", err)
	}
	if err := c.Connect(); err != nil {
		tb.Fatalf("Connect: %v", err)
	}
	item := <-qrs
	if item.Event != whatsmeow.QRChannelEventCode {
		tb.Fatalf("first QR channel item = %+v, want a code", item)
	}
	if err := srv.ScanQR(ctx, item.Code, phone); err != nil {
		tb.Fatalf("ScanQR: %v", err)
	}
	waitEvent[*events.Connected](tb, c, nil)
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func jid(phone string) types.JID { return types.NewJID(phone, types.DefaultUserServer) }

func sendText(tb testing.TB, c *client, to, text string, id types.MessageID) whatsmeow.SendResponse {
	tb.Helper()
	resp, err := c.SendMessage(ctxT(tb), jid(to), &waE2E.Message{Conversation: proto.String(text)},
		whatsmeow.SendRequestExtra{ID: id})
	if err != nil {
		tb.Fatalf("SendMessage(%q): %v", text, err)
	}
	return resp
}

var ignoreTime = cmpopts.IgnoreFields(fakewa.Received{}, "Time")

func TestQRLinkThenRestartWithoutQR(t *testing.T) {
	srv := newServer(t)
	db := filepath.Join(t.TempDir(), "wa.db")
	c := newClient(t, srv, db)
	link(t, srv, c, linkedPhone)

	if got, want := c.Store.ID.String(), linkedPhone+":1@s.whatsapp.net"; got != want {
		t.Errorf("Store.ID = %s, want %s", got, want)
	}
	if c.Store.LID.IsEmpty() {
		t.Errorf("Store.LID is empty, want the LID from pair-success")
	}
	want := []fakewa.Device{{JID: linkedPhone + ":1@s.whatsapp.net", Phone: linkedPhone, ID: 1, Connected: true}}
	if diff := cmp.Diff(srv.Devices(), want, cmpopts.IgnoreFields(fakewa.Device{}, "PairedAt")); diff != "" {
		t.Errorf("Devices() (-got +want):\n%s", diff)
	}

	// A restarted process: a new client on the same store logs in without a QR code.
	c.Disconnect()
	c2 := newClient(t, srv, db)
	if c2.Store.ID == nil {
		t.Fatal("reopened store has no ID")
	}
	if err := c2.Connect(); err != nil {
		t.Fatalf("Connect after restart: %v", err)
	}
	waitEvent[*events.Connected](t, c2, nil)
	for len(c2.events) > 0 {
		if qr, ok := (<-c2.events).(*events.QR); ok {
			t.Errorf("restarted client got a QR event %v", qr)
		}
	}
	if !c2.IsLoggedIn() {
		t.Error("IsLoggedIn() = false after reconnect")
	}
}

func TestSendDecryptedAckedAndDelivered(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, filepath.Join(t.TempDir(), "wa.db"))
	link(t, srv, c, linkedPhone)

	resp := sendText(t, c, leadPhone, "Hola Juan, ¿seguimos con el pedido?", "")
	if resp.Timestamp.IsZero() {
		t.Error("SendResponse.Timestamp is zero, want the server ack time")
	}
	want := []fakewa.Received{{
		ID: resp.ID, From: linkedPhone, To: leadPhone,
		Text: "Hola Juan, ¿seguimos con el pedido?", EncType: "pkmsg",
	}}
	if diff := cmp.Diff(srv.Received(leadPhone), want, ignoreTime); diff != "" {
		t.Errorf("Received (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(srv.Recipients(), []string{leadPhone}); diff != "" {
		t.Errorf("Recipients (-got +want):\n%s", diff)
	}

	delivered := waitEvent(t, c, func(r *events.Receipt) bool { return r.Type == types.ReceiptTypeDelivered })
	if diff := cmp.Diff(delivered.MessageIDs, []types.MessageID{resp.ID}); diff != "" {
		t.Errorf("delivered receipt IDs (-got +want):\n%s", diff)
	}
	if delivered.Chat != jid(leadPhone) {
		t.Errorf("delivered receipt chat = %s, want %s", delivered.Chat, jid(leadPhone))
	}

	if err := srv.SendReadReceipt(ctxT(t), leadPhone, resp.ID); err != nil {
		t.Fatalf("SendReadReceipt: %v", err)
	}
	read := waitEvent(t, c, func(r *events.Receipt) bool { return r.Type == types.ReceiptTypeRead })
	if diff := cmp.Diff(read.MessageIDs, []types.MessageID{resp.ID}); diff != "" {
		t.Errorf("read receipt IDs (-got +want):\n%s", diff)
	}
}

func TestConversationBothWays(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, filepath.Join(t.TempDir(), "wa.db"))
	link(t, srv, c, linkedPhone)
	ctx := ctxT(t)

	first := sendText(t, c, leadPhone, "primero", "")

	// The lead answers; its session came from the client's pkmsg, so this is a plain msg.
	replyID, err := srv.SendText(ctx, leadPhone, linkedPhone, "¡Hola! Sí, quiero", "Juan Pérez")
	if err != nil {
		t.Fatalf("SendText: %v", err)
	}
	msg := waitEvent(t, c, func(m *events.Message) bool { return m.Info.ID == replyID })
	if got := msg.Message.GetConversation(); got != "¡Hola! Sí, quiero" {
		t.Errorf("message text = %q, want %q", got, "¡Hola! Sí, quiero")
	}
	if msg.Info.PushName != "Juan Pérez" || msg.Info.Chat != jid(leadPhone) || msg.Info.IsFromMe {
		t.Errorf("message info = push %q chat %s fromMe %v, want Juan Pérez, %s, false",
			msg.Info.PushName, msg.Info.Chat, msg.Info.IsFromMe, jid(leadPhone))
	}

	// Now that the lead has written, the client's next message is a plain msg.
	second := sendText(t, c, leadPhone, "segundo", "")
	want := []fakewa.Received{
		{ID: first.ID, From: linkedPhone, To: leadPhone, Text: "primero", EncType: "pkmsg"},
		{ID: second.ID, From: linkedPhone, To: leadPhone, Text: "segundo", EncType: "msg"},
	}
	if diff := cmp.Diff(srv.Received(leadPhone), want, ignoreTime); diff != "" {
		t.Errorf("Received (-got +want):\n%s", diff)
	}

	// whatsmeow stores the push name of whoever writes, in its contact store.
	err = srv.WaitFor(ctx, func() bool {
		info, err := c.Store.Contacts.GetContact(ctx, jid(leadPhone))
		return err == nil && info.PushName == "Juan Pérez"
	})
	if err != nil {
		info, _ := c.Store.Contacts.GetContact(ctx, jid(leadPhone))
		t.Errorf("stored contact = %+v, want push name Juan Pérez", info)
	}
}

func TestIncomingFromNewContact(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, filepath.Join(t.TempDir(), "wa.db"))
	link(t, srv, c, linkedPhone)
	ctx := ctxT(t)

	for _, text := range []string{"Buenas, vi el anuncio", "¿Tienen stock?"} {
		id, err := srv.SendText(ctx, "5493515550123", linkedPhone, text, "Ana")
		if err != nil {
			t.Fatalf("SendText(%q): %v", text, err)
		}
		msg := waitEvent(t, c, func(m *events.Message) bool { return m.Info.ID == id })
		if got := msg.Message.GetConversation(); got != text {
			t.Errorf("message text = %q, want %q", got, text)
		}
		// The client acknowledges with a receipt, which is what lets the server forget it.
		err = srv.WaitFor(ctx, func() bool { return len(srv.ClientReceipts(id)) > 0 })
		if err != nil {
			t.Errorf("no client receipt for %s", id)
		}
	}

	// A reply goes back through the session the contact started.
	resp := sendText(t, c, "5493515550123", "¡Sí! Te paso precios", "")
	got := srv.Received("5493515550123")
	if len(got) != 1 || got[0].ID != resp.ID || got[0].Text != "¡Sí! Te paso precios" || got[0].EncType != "msg" {
		t.Errorf("Received = %+v, want the reply as a msg", got)
	}
}

func TestOfflineClientGetsMessageOnReconnect(t *testing.T) {
	srv := newServer(t)
	db := filepath.Join(t.TempDir(), "wa.db")
	c := newClient(t, srv, db)
	link(t, srv, c, linkedPhone)
	c.Disconnect()
	ctx := ctxT(t)
	if err := srv.WaitFor(ctx, func() bool { return !srv.Devices()[0].Connected }); err != nil {
		t.Fatalf("device still connected: %v", err)
	}

	id, err := srv.SendText(ctx, leadPhone, linkedPhone, "te escribí mientras no estabas", "Juan")
	if err != nil {
		t.Fatalf("SendText: %v", err)
	}
	c2 := newClient(t, srv, db)
	if err := c2.Connect(); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	msg := waitEvent(t, c2, func(m *events.Message) bool { return m.Info.ID == id })
	if got := msg.Message.GetConversation(); got != "te escribí mientras no estabas" {
		t.Errorf("message text = %q", got)
	}
}

func TestSameIDTwiceIsCounted(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, filepath.Join(t.TempDir(), "wa.db"))
	link(t, srv, c, linkedPhone)

	id := c.GenerateMessageID()
	sendText(t, c, leadPhone, "una vez", id)
	sendText(t, c, leadPhone, "una vez", id)
	if got := srv.Arrivals(id); got != 2 {
		t.Errorf("Arrivals(%s) = %d, want 2", id, got)
	}
	if got := len(srv.Received(leadPhone)); got != 2 {
		t.Errorf("len(Received) = %d, want 2 (the duplicate is visible)", got)
	}
}

func TestIsOnWhatsApp(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, filepath.Join(t.TempDir(), "wa.db"))
	link(t, srv, c, linkedPhone)
	srv.MarkNotOnWhatsApp("+54 9 11 7777-0000")

	got, err := c.IsOnWhatsApp(ctxT(t), []string{"+" + leadPhone, "+5491177770000"})
	if err != nil {
		t.Fatalf("IsOnWhatsApp: %v", err)
	}
	want := []types.IsOnWhatsAppResponse{
		{Query: "+" + leadPhone, JID: jid(leadPhone), IsIn: true},
		{Query: "+5491177770000", JID: jid("5491177770000"), IsIn: false},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("IsOnWhatsApp (-got +want):\n%s", diff)
	}

	// A message to a number without WhatsApp is accepted and never delivered.
	sendText(t, c, "5491177770000", "¿hola?", "")
	if got := srv.Received("5491177770000"); len(got) != 0 {
		t.Errorf("Received by a number without WhatsApp = %+v, want none", got)
	}
}

func TestLogoutForgetsDevice(t *testing.T) {
	srv := newServer(t)
	db := filepath.Join(t.TempDir(), "wa.db")
	c := newClient(t, srv, db)
	link(t, srv, c, linkedPhone)

	if err := c.Logout(ctxT(t)); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if got := srv.Devices(); len(got) != 0 {
		t.Errorf("Devices() after logout = %+v, want none", got)
	}
	if c.Store.ID != nil {
		t.Errorf("Store.ID after logout = %s, want nil", c.Store.ID)
	}

	// The next start shows a QR code again.
	c2 := newClient(t, srv, db)
	qrs, err := c2.GetQRChannel(ctxT(t))
	if err != nil {
		t.Fatalf("GetQRChannel: %v", err)
	}
	if err := c2.Connect(); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if item := <-qrs; item.Event != whatsmeow.QRChannelEventCode {
		t.Errorf("QR channel item = %+v, want a code", item)
	}
}

func TestUnlinkFromPhone(t *testing.T) {
	tests := []struct {
		name      string
		offline   bool // unlinked while the client is not connected
		onConnect bool // want LoggedOut.OnConnect
	}{
		{name: "connected", offline: false, onConnect: false},
		{name: "offline", offline: true, onConnect: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			db := filepath.Join(t.TempDir(), "wa.db")
			c := newClient(t, srv, db)
			link(t, srv, c, linkedPhone)
			if tt.offline {
				c.Disconnect()
				c = newClient(t, srv, db)
			}
			if err := srv.Unlink(linkedPhone); err != nil {
				t.Fatalf("Unlink: %v", err)
			}
			if tt.offline {
				if err := c.Connect(); err != nil {
					t.Fatalf("Connect: %v", err)
				}
			}
			out := waitEvent[*events.LoggedOut](t, c, nil)
			if out.OnConnect != tt.onConnect {
				t.Errorf("LoggedOut.OnConnect = %v, want %v", out.OnConnect, tt.onConnect)
			}
			if got := srv.Devices(); len(got) != 0 {
				t.Errorf("Devices() = %+v, want none", got)
			}
			if err := srv.Unlink(linkedPhone); !errors.Is(err, fakewa.ErrNotLinked) {
				t.Errorf("second Unlink = %v, want ErrNotLinked", err)
			}
		})
	}
}

func TestPairWithPhoneCode(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, filepath.Join(t.TempDir(), "wa.db"))
	ctx := ctxT(t)
	if err := c.Connect(); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	waitEvent[*events.QR](t, c, nil)
	code, err := c.PairPhone(ctx, "+"+linkedPhone, true, whatsmeow.PairClientChrome, "Chrome (Linux)")
	if err != nil {
		t.Fatalf("PairPhone: %v", err)
	}
	if err := srv.PairWithCode(ctx, linkedPhone, "AAAA-AAAA"); !errors.Is(err, fakewa.ErrWrongCode) {
		t.Fatalf("PairWithCode(wrong code) = %v, want ErrWrongCode", err)
	}
	// A wrong code burns the attempt, like on a real phone: ask for a new code.
	code, err = c.PairPhone(ctx, "+"+linkedPhone, true, whatsmeow.PairClientChrome, "Chrome (Linux)")
	if err != nil {
		t.Fatalf("PairPhone again: %v", err)
	}
	if err := srv.PairWithCode(ctx, linkedPhone, code); err != nil {
		t.Fatalf("PairWithCode(%s): %v", code, err)
	}
	waitEvent[*events.PairSuccess](t, c, nil)
	waitEvent[*events.Connected](t, c, nil)
	if got, want := c.Store.ID.User, linkedPhone; got != want {
		t.Errorf("Store.ID.User = %s, want %s", got, want)
	}
}

func TestServersShareRoot(t *testing.T) {
	// Parallel tests run many servers against the one whatsmeow.WACertPubKey.
	for _, phone := range []string{"5491155550001", "5491155550002", "5491155550003"} {
		t.Run(phone, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t)
			c := newClient(t, srv, filepath.Join(t.TempDir(), "wa.db"))
			link(t, srv, c, phone)
			sendText(t, c, leadPhone, "hola de "+phone, "")
			if got := srv.Received(leadPhone); len(got) != 1 || got[0].From != phone {
				t.Errorf("Received = %+v, want one message from %s", got, phone)
			}
		})
	}
}
