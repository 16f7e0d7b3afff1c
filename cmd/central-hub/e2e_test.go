package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/daemontest"
	"github.com/leadmaster/leadmaster/internal/fakewa"
	"github.com/leadmaster/leadmaster/internal/hub/webhook"
	"github.com/leadmaster/leadmaster/internal/store/storetest"
)

// The end-to-end test runs the real binaries: central-hub, and session-manager built with
// -tags fakewa against the fake WhatsApp server. Both get their sockets the way systemd passes
// them (LISTEN_FDS), and the test keeps the hub's listening socket open across a SIGKILL and
// restart of the hub, as central-hub.socket does.

var (
	e2eWebhookSecret   = "e2e-webhook-secret-0123456789"
	linkedPhone        = "5491155550000"
	leadPhone          = "5491155559876"
	otherClientePhone  = "5491166660000"
	e2eAdminPassword   = "admin-password-e2e"
	e2eMemberPassword  = "member-password-e2e"
	e2eOutsiderPasswrd = "outsider-password-e2e"
)

// hookLog is the webhook receiver: it checks every signature and counts deliveries per event ID.
type hookLog struct {
	mu       sync.Mutex
	byID     map[string]webhook.Payload
	attempts map[string]int
	bad      []string
}

func (h *hookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := webhook.Verify(e2eWebhookSecret, r.Header, body, 5*time.Minute, time.Now()); err != nil {
		h.bad = append(h.bad, err.Error())
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil || p.ID == "" || p.ID != r.Header.Get(webhook.HeaderEventID) {
		h.bad = append(h.bad, "malformed delivery: "+string(body))
		return
	}
	h.byID[p.ID] = p
	h.attempts[p.ID]++
}

// messages returns the texts of the message events received, deduplicated by event ID.
func (h *hookLog) messages() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, p := range h.byID {
		if p.Type == "message" {
			var d struct{ Text string }
			json.Unmarshal(p.Data, &d)
			out[d.Text]++
		}
	}
	return out
}

// client calls the hub's API (see daemontest.Client).
type client = daemontest.Client

func TestMain(m *testing.M) { os.Exit(daemontest.Main(m)) }

func TestEndToEnd(t *testing.T) {
	daemontest.Build(t)
	for name, dsn := range storetest.DSNs(t) {
		if name == "sqlite" {
			dsn = "" // the default: hub.db in the state directory
		}
		t.Run(name, func(t *testing.T) { testEndToEnd(t, dsn) })
	}
}

func testEndToEnd(t *testing.T, database string) {
	bins := daemontest.Build(t)
	hubBin, smBin := bins.Hub, bins.SessionManager
	ctx := context.Background()
	fake, err := fakewa.New(fakewa.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	hooks := &hookLog{byID: map[string]webhook.Payload{}, attempts: map[string]int{}}
	receiver := httptest.NewServer(hooks)
	defer receiver.Close()

	dir := t.TempDir()
	sockDir := filepath.Join(dir, "run")
	os.MkdirAll(sockDir, 0o755)
	cfgPath := filepath.Join(dir, "leadmaster.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`[hub]
state_dir = %q
database = %q
contact_sync_interval = "0s"
[session_manager]
state_dir = %q
socket_dir = %q
[clientes.51]
name = "Inmobiliaria"
webhook_url = %q
webhook_secret = %q
[clientes.52]
name = "Otra"
`, filepath.Join(dir, "hub"), database, filepath.Join(dir, "clientes"), sockDir, receiver.URL, e2eWebhookSecret)), 0o644)

	// session-manager@51, socket-activated style; 52 has no session manager running.
	smSock, _ := daemontest.Socket(t, "unix", filepath.Join(sockDir, "51.sock"))
	sm := daemontest.Start(t, "session-manager", smSock, dir, []string{"LEADMASTER_FAKEWA_URL=" + fake.URL()}, smBin, "--cliente", "51", "--config", cfgPath)
	sm.WaitReady()

	// The operator makes the first admin from the command line.
	cmd := exec.Command(hubBin, "--config", cfgPath, "user", "add", "--username", "admin", "--admin", "--password-stdin")
	cmd.Stdin = strings.NewReader(e2eAdminPassword + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	hubSock, hubAddr := daemontest.Socket(t, "tcp", "127.0.0.1:0")
	hub := daemontest.Start(t, "central-hub", hubSock, dir, nil, hubBin, "--config", cfgPath)
	hub.WaitReady()
	anon := &client{TB: t, Base: "http://" + hubAddr}

	// The admin creates a user for cliente 51 (and one for 52).
	admin := anon.Login("admin", e2eAdminPassword)
	for _, u := range []map[string]string{
		{"username": "vendedora", "password": e2eMemberPassword, "cliente": "51"},
		{"username": "otro", "password": e2eOutsiderPasswrd, "cliente": "52"},
	} {
		if code, body := admin.Do("POST", "/api/users", u, nil); code != 201 {
			t.Fatalf("create user: %d %s", code, body)
		}
	}
	member := anon.Login("vendedora", e2eMemberPassword)
	outsider := anon.Login("otro", e2eOutsiderPasswrd)

	// Tenant isolation and auth failures, against the running daemons.
	for _, tt := range []struct {
		c    *client
		path string
		want int
	}{
		{anon, "/api/whatsapp/51/qr", 401},
		{outsider, "/api/whatsapp/51/qr", 403},
		{outsider, "/session-manager/51/status", 403},
		{outsider, "/api/clientes/51/conversations", 403},
		{member, "/api/whatsapp/52/status", 403},
	} {
		if code, body := tt.c.Do("GET", tt.path, nil, nil); code != tt.want {
			t.Errorf("GET %s: %d %s, want %d", tt.path, code, body, tt.want)
		}
	}
	// Cliente 52 has no session manager: a clear answer at once.
	start := time.Now()
	if code, body := outsider.Do("GET", "/session-manager/52/status", nil, nil); code != 503 || !strings.Contains(body, "cliente 52") || time.Since(start) > 2*time.Second {
		t.Errorf("cliente 52 without a session manager: %d %s after %s", code, body, time.Since(start))
	}

	// The member gets the QR through the hub; the fake phone scans it.
	var qr string
	daemontest.Eventually(t, "QR through the hub", 20*time.Second, func() bool {
		code, body := member.Do("GET", "/api/whatsapp/51/qr?format=text", nil, nil)
		qr = body
		return code == 200
	})
	if err := fake.ScanQR(ctx, qr, linkedPhone); err != nil {
		t.Fatalf("ScanQR: %v", err)
	}
	daemontest.Eventually(t, "connected", 30*time.Second, func() bool {
		var st struct{ State, Phone string }
		member.Do("GET", "/api/whatsapp/51/status", nil, &st)
		return st.State == "connected" && st.Phone == "+"+linkedPhone
	})

	// A lead writes; the message reaches the conversation API and the signed webhook.
	if _, err := fake.SendText(ctx, leadPhone, linkedPhone, "Hola, ¿sigue disponible el depto?", "Carla"); err != nil {
		t.Fatal(err)
	}
	daemontest.Eventually(t, "message webhook", 20*time.Second, func() bool { return hooks.messages()["Hola, ¿sigue disponible el depto?"] == 1 })
	var conv struct {
		Leads []struct {
			ID       int64
			Phone    string
			PushName string `json:"push_name"`
		}
	}
	member.Do("GET", "/api/clientes/51/conversations", nil, &conv)
	if len(conv.Leads) != 1 || conv.Leads[0].Phone != "+"+leadPhone || conv.Leads[0].PushName != "Carla" {
		t.Fatalf("conversations = %+v, want Carla's", conv)
	}
	var msgs struct {
		Messages []struct{ Text, Direction string }
	}
	member.Do("GET", fmt.Sprintf("/api/clientes/51/contacts/%d/messages", conv.Leads[0].ID), nil, &msgs)
	if len(msgs.Messages) != 1 || msgs.Messages[0].Text != "Hola, ¿sigue disponible el depto?" {
		t.Errorf("messages = %+v", msgs)
	}

	// Contacts sync from the session manager.
	var sync struct{ Contacts int }
	if code, body := member.Do("POST", "/api/clientes/51/contacts/sync", nil, &sync); code != 200 || sync.Contacts < 1 {
		t.Errorf("sync: %d %s", code, body)
	}
	var page struct {
		Total int
		Leads []struct{ Phone, Source string }
	}
	member.Do("GET", "/api/clientes/51/contacts?q=carla", nil, &page)
	if page.Total != 1 || page.Leads[0].Phone != "+"+leadPhone {
		t.Errorf("contacts?q=carla = %+v", page)
	}
	if code, _ := outsider.Do("GET", "/api/clientes/52/contacts?q=carla", nil, &page); code != 200 || page.Total != 0 {
		t.Errorf("cliente 52 sees 51's contacts: %+v", page)
	}

	// Kill the hub mid-stream, restart it: every event reaches the receiver exactly once.
	const n = 12
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := fake.SendText(ctx, leadPhone, linkedPhone, fmt.Sprintf("mensaje %02d", i), "Carla"); err != nil {
				sent <- err
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
		sent <- nil
	}()
	daemontest.Eventually(t, "some of the burst delivered", 20*time.Second, func() bool { return len(hooks.messages()) >= 4 })
	hub.Kill()
	time.Sleep(500 * time.Millisecond) // messages keep arriving in the session manager's log
	hub = daemontest.Start(t, "central-hub", hubSock, dir, nil, hubBin, "--config", cfgPath)
	hub.WaitReady()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	daemontest.Eventually(t, "all messages delivered", 30*time.Second, func() bool { return len(hooks.messages()) == n+1 })
	time.Sleep(500 * time.Millisecond) // let any duplicate show up
	for text, count := range hooks.messages() {
		if count != 1 {
			t.Errorf("message %q delivered as %d distinct events, want 1", text, count)
		}
	}
	// Every event of the session manager's log (state changes, messages) reached the
	// receiver under exactly one event ID.
	var smLog struct{ Events []struct{ Seq int64 } }
	smClient := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(sockDir, "51.sock"))
	}}}
	resp, err := smClient.Get("http://sm/events?after=0&limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&smLog)
	resp.Body.Close()
	daemontest.Eventually(t, "every logged event delivered", 20*time.Second, func() bool {
		hooks.mu.Lock()
		defer hooks.mu.Unlock()
		return len(hooks.byID) >= len(smLog.Events)
	})
	hooks.mu.Lock()
	idsBySeq := map[int64][]string{}
	for id, p := range hooks.byID {
		idsBySeq[p.Seq] = append(idsBySeq[p.Seq], id)
	}
	for _, e := range smLog.Events {
		if len(idsBySeq[e.Seq]) != 1 {
			t.Errorf("event %d reached the receiver under %d event IDs, want 1", e.Seq, len(idsBySeq[e.Seq]))
		}
	}
	if len(hooks.bad) > 0 {
		t.Errorf("bad deliveries: %v", hooks.bad)
	}
	hooks.mu.Unlock()
	var msgs2 struct{ Messages []struct{ Text string } }
	member.Do("GET", fmt.Sprintf("/api/clientes/51/contacts/%d/messages?limit=100", conv.Leads[0].ID), nil, &msgs2)
	if len(msgs2.Messages) != n+1 {
		t.Errorf("conversation holds %d messages after the crash, want %d", len(msgs2.Messages), n+1)
	}
	hub.Stop()
	sm.Stop()
}
