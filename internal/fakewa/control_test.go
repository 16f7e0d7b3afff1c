package fakewa_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/leadmaster/leadmaster/internal/fakewa"
)

// call does one control API request and decodes the JSON answer into out.
func call(tb testing.TB, srv *fakewa.Server, method, path string, body any, out any) int {
	tb.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, srv.URL()+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			tb.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// TestControlAPI drives a demo the way a person with curl would: scan, watch what a lead
// received, answer as the lead, read, unlink.
func TestControlAPI(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, filepath.Join(t.TempDir(), "wa.db"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qrs, err := c.GetQRChannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	qr := <-qrs
	if qr.Event != whatsmeow.QRChannelEventCode {
		t.Fatalf("QR item = %+v", qr)
	}

	var errBody struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if st := call(t, srv, "POST", "/_fake/scan", map[string]string{"qr": "2@nope,a,b,c", "phone": linkedPhone}, &errBody); st != http.StatusNotFound || errBody.Error.Code != "not_found" {
		t.Errorf("scan of an unknown QR = %d %+v, want 404 not_found", st, errBody)
	}
	if st := call(t, srv, "POST", "/_fake/scan", map[string]string{"qr": qr.Code, "phone": "+54 9 11 5555-0000"}, nil); st != http.StatusOK {
		t.Fatalf("POST /_fake/scan = %d, want 200", st)
	}
	waitEvent[*events.Connected](t, c, nil)

	var devices struct{ Devices []fakewa.Device }
	call(t, srv, "GET", "/_fake/devices", nil, &devices)
	if len(devices.Devices) != 1 || devices.Devices[0].Phone != linkedPhone || !devices.Devices[0].Connected {
		t.Errorf("GET /_fake/devices = %+v, want %s connected", devices, linkedPhone)
	}

	sent := sendText(t, c, leadPhone, "Hola, ¿cómo estás?", "")
	var list struct {
		Recipients []fakewa.RecipientJSON `json:"recipients"`
	}
	call(t, srv, "GET", "/_fake/recipients", nil, &list)
	want := []fakewa.RecipientJSON{{Phone: leadPhone, Received: []fakewa.Received{{
		ID: sent.ID, From: linkedPhone, To: leadPhone, Text: "Hola, ¿cómo estás?", EncType: "pkmsg",
	}}}}
	if diff := cmp.Diff(list.Recipients, want, ignoreTime); diff != "" {
		t.Errorf("GET /_fake/recipients (-got +want):\n%s", diff)
	}
	var one fakewa.RecipientJSON
	call(t, srv, "GET", "/_fake/recipients/"+leadPhone, nil, &one)
	if diff := cmp.Diff(one, want[0], ignoreTime); diff != "" {
		t.Errorf("GET /_fake/recipients/%s (-got +want):\n%s", leadPhone, diff)
	}

	var sendResp struct{ ID string }
	st := call(t, srv, "POST", "/_fake/send", map[string]string{
		"from": leadPhone, "to": linkedPhone, "text": "Bien, gracias", "push_name": "Juan",
	}, &sendResp)
	if st != http.StatusOK || sendResp.ID == "" {
		t.Fatalf("POST /_fake/send = %d %+v", st, sendResp)
	}
	msg := waitEvent(t, c, func(m *events.Message) bool { return m.Info.ID == sendResp.ID })
	if msg.Message.GetConversation() != "Bien, gracias" || msg.Info.PushName != "Juan" {
		t.Errorf("message = %q from %q, want %q from Juan", msg.Message.GetConversation(), msg.Info.PushName, "Bien, gracias")
	}

	if st := call(t, srv, "POST", "/_fake/read", map[string]any{"phone": leadPhone, "ids": []string{sent.ID}}, nil); st != http.StatusOK {
		t.Errorf("POST /_fake/read = %d, want 200", st)
	}
	read := waitEvent(t, c, func(r *events.Receipt) bool { return r.Type == types.ReceiptTypeRead })
	if diff := cmp.Diff(read.MessageIDs, []types.MessageID{sent.ID}); diff != "" {
		t.Errorf("read receipt IDs (-got +want):\n%s", diff)
	}

	if st := call(t, srv, "POST", "/_fake/send", "not an object", &errBody); st != http.StatusBadRequest || errBody.Error.Code != "invalid" {
		t.Errorf("POST /_fake/send with a bad body = %d %+v, want 400 invalid", st, errBody)
	}

	if st := call(t, srv, "POST", "/_fake/unlink", map[string]string{"phone": linkedPhone}, nil); st != http.StatusOK {
		t.Errorf("POST /_fake/unlink = %d, want 200", st)
	}
	waitEvent[*events.LoggedOut](t, c, nil)
}

func TestWebsocketChecksOrigin(t *testing.T) {
	srv := newServer(t)
	ctx := ctxT(t)
	tests := []struct {
		origin string
		ok     bool
	}{
		{origin: "https://web.whatsapp.com", ok: true},
		{origin: "https://evil.example", ok: false},
	}
	for _, tt := range tests {
		conn, resp, err := websocket.Dial(ctx, "ws://web.whatsapp.com/ws/chat", &websocket.DialOptions{
			HTTPClient: srv.HTTPClient(),
			HTTPHeader: http.Header{"Origin": {tt.origin}},
		})
		if (err == nil) != tt.ok {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Errorf("dial with Origin %s: err = %v (status %d), want ok %v", tt.origin, err, status, tt.ok)
		}
		if conn != nil {
			conn.CloseNow()
		}
	}
}
