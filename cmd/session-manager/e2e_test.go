package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/leadmaster/leadmaster/internal/daemontest"
	"github.com/leadmaster/leadmaster/internal/fakewa"
	"github.com/leadmaster/leadmaster/internal/store/storetest"
)

// The end-to-end tests run the real session-manager binary, built with -tags fakewa, with
// its socket passed the way systemd passes it (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) and a
// NOTIFY_SOCKET to read sd_notify from, against the fake WhatsApp server.

func TestMain(m *testing.M) { os.Exit(daemontest.Main(m)) }

const (
	linkedPhone = "5491155550000"
	leadPhone   = "5491155551234"
	replyPhone  = "5491155559876"
)

// daemon is one run of the binary, with an HTTP client on its socket.
type daemon struct {
	*daemontest.Proc
	tb   testing.TB
	http *http.Client
}

// startDaemon binds the cliente's unix socket itself, as session-manager@ID.socket would,
// and starts the binary (built with -tags fakewa) with the socket as fd 3.
func startDaemon(tb testing.TB, dir, fakeURL string, extraEnv ...string) *daemon {
	tb.Helper()
	sock := filepath.Join(dir, "sm.sock")
	os.Remove(sock)
	f, _ := daemontest.Socket(tb, "unix", sock)
	cfg := filepath.Join(dir, "leadmaster.toml")
	if _, err := os.Stat(cfg); err != nil {
		os.WriteFile(cfg, []byte(fmt.Sprintf("[session_manager]\nstate_dir = %q\nsocket_dir = %q\n\n[clientes.51]\nname = \"Test\"\n", filepath.Join(dir, "state"), dir)), 0o644)
	}
	env := append([]string{"LEADMASTER_FAKEWA_URL=" + fakeURL, "WATCHDOG_USEC=2000000"}, extraEnv...)
	p := daemontest.Start(tb, "session-manager", f, dir, env, daemontest.Build(tb).SessionManager, "--cliente", "51", "--config", cfg)
	return &daemon{Proc: p, tb: tb, http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}}
}

func (d *daemon) do(method, path string, body any) (int, []byte, http.Header) {
	d.tb.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://sm"+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.http.Do(req)
	if err != nil {
		d.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func (d *daemon) getJSON(path string, v any) int {
	d.tb.Helper()
	code, b, _ := d.do("GET", path, nil)
	if err := json.Unmarshal(b, v); err != nil {
		d.tb.Fatalf("GET %s: %d %s: %v", path, code, b, err)
	}
	return code
}

type status struct {
	State, JID, Phone, LastError string
}

func (d *daemon) waitState(want string, timeout time.Duration) status {
	d.tb.Helper()
	deadline := time.Now().Add(timeout)
	var st status
	for time.Now().Before(deadline) {
		d.getJSON("/status", &st)
		if st.State == want {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.tb.Fatalf("state = %q (last error %q), want %q within %v", st.State, st.LastError, want, timeout)
	return st
}

type event struct {
	Seq  int64
	Type string
	Data map[string]any
}

// waitEvent long-polls /events until one matches.
func (d *daemon) waitEvent(after int64, match func(event) bool) event {
	d.tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var page struct {
			Events []event
			Next   int64
		}
		d.getJSON(fmt.Sprintf("/events?after=%d&wait=5s", after), &page)
		for _, e := range page.Events {
			if match(e) {
				return e
			}
		}
		after = page.Next
	}
	d.tb.Fatal("expected event did not arrive")
	return event{}
}

func (d *daemon) qrText() string {
	d.tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		code, b, h := d.do("GET", "/qr?format=text", nil)
		if code == 200 {
			return string(b)
		}
		if code != 503 || h.Get("Retry-After") == "" {
			d.tb.Fatalf("GET /qr?format=text: %d %s, want 200 or 503 with Retry-After", code, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.tb.Fatal("no QR code within 15s")
	return ""
}

func newFake(tb testing.TB) *fakewa.Server {
	tb.Helper()
	srv, err := fakewa.New(fakewa.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	return srv
}

func TestLinkSendReceiveRestartLogout(t *testing.T) {
	fake := newFake(t)
	dir := t.TempDir()
	ctx := t.Context()

	d := startDaemon(t, dir, fake.URL())
	d.WaitNotify("READY=1", 10*time.Second)
	if code, b, _ := d.do("GET", "/health", nil); code != 200 {
		t.Fatalf("/health = %d %s", code, b)
	}

	// No device yet: a QR, as PNG, text and JSON.
	code := d.qrText()
	if n := len(strings.Split(code, ",")); n != 4 {
		t.Fatalf("QR text %q has %d parts, want ref,noise,identity,adv", code, n)
	}
	d.WaitNotify("STATUS=waiting for QR scan", 5*time.Second)
	// Health checks (the watchdog's, the hub's) leave the QR alone.
	for i := 0; i < 3; i++ {
		if st, b, _ := d.do("GET", "/health", nil); st != 200 {
			t.Fatalf("/health while showing a QR = %d %s", st, b)
		}
	}
	if st, b, _ := d.do("GET", "/qr?format=text", nil); st != 200 || string(b) != code {
		t.Fatalf("after /health the QR is %d %q, want 200 and the same code", st, b)
	}
	st, b, h := d.do("GET", "/qr", nil)
	if st != 200 || h.Get("Content-Type") != "image/png" {
		t.Fatalf("GET /qr = %d %s", st, h.Get("Content-Type"))
	}
	if img, err := png.Decode(bytes.NewReader(b)); err != nil || img.Bounds().Dx() < 100 {
		t.Fatalf("GET /qr is not a usable PNG: %v", err)
	}
	var qrJSON struct {
		Code      string
		ExpiresAt time.Time `json:"expires_at"`
	}
	req, _ := http.NewRequest("GET", "http://sm/qr", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := d.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&qrJSON)
	resp.Body.Close()
	if qrJSON.Code == "" || !qrJSON.ExpiresAt.After(time.Now()) {
		t.Errorf("QR JSON = %+v, want a code with a future expiry", qrJSON)
	}

	// The fake phone scans it.
	if err := fake.ScanQR(ctx, code, linkedPhone); err != nil {
		t.Fatalf("ScanQR: %v", err)
	}
	linked := d.waitState("connected", 20*time.Second)
	if linked.Phone != "+"+linkedPhone {
		t.Errorf("linked phone = %q, want +%s", linked.Phone, linkedPhone)
	}
	d.WaitNotify("STATUS=connected as +"+linkedPhone, 5*time.Second)
	if st, _, _ := d.do("GET", "/qr", nil); st != 409 {
		t.Errorf("GET /qr when linked = %d, want 409", st)
	}

	// A message to a phone number in a human format arrives decrypted, then its receipt.
	st, b, _ = d.do("POST", "/messages", map[string]string{"to": "+54 9 11 5555-1234", "text": "Hola Carla, ¿seguís interesada?", "id": "LEADMASTER0001"})
	if st != 200 {
		t.Fatalf("POST /messages = %d %s", st, b)
	}
	got := fake.Received(leadPhone)
	if len(got) != 1 || got[0].Text != "Hola Carla, ¿seguís interesada?" || got[0].ID != "LEADMASTER0001" {
		t.Fatalf("recipient got %+v, want the text once", got)
	}
	d.waitEvent(0, func(e event) bool {
		ids, _ := e.Data["message_ids"].([]any)
		return e.Type == "receipt" && e.Data["type"] == "delivered" && len(ids) == 1 && ids[0] == "LEADMASTER0001"
	})

	// The same ID again is answered from the ledger: nothing reaches WhatsApp.
	st, b, _ = d.do("POST", "/messages", map[string]string{"to": leadPhone, "text": "Hola Carla, ¿seguís interesada?", "id": "LEADMASTER0001"})
	var dup struct{ Duplicate bool }
	json.Unmarshal(b, &dup)
	if st != 200 || !dup.Duplicate {
		t.Fatalf("repeated POST /messages = %d %s, want 200 duplicate", st, b)
	}
	if n := fake.Arrivals("LEADMASTER0001"); n != 1 {
		t.Errorf("message arrived %d times at the server, want 1", n)
	}
	if n := len(fake.Received(leadPhone)); n != 1 {
		t.Errorf("recipient has %d messages, want 1", n)
	}

	// An incoming message lands in the event log, and its sender among the contacts.
	if _, err := fake.SendText(ctx, replyPhone, linkedPhone, "Sí, mandame precios", "Carla"); err != nil {
		t.Fatalf("SendText: %v", err)
	}
	in := d.waitEvent(0, func(e event) bool { return e.Type == "message" })
	if in.Data["text"] != "Sí, mandame precios" || in.Data["from"] != "+"+replyPhone || in.Data["push_name"] != "Carla" {
		t.Errorf("message event = %v", in.Data)
	}
	var contacts struct {
		Contacts []struct {
			Phone    string
			PushName string `json:"push_name"`
		}
	}
	d.getJSON("/contacts", &contacts)
	found := false
	for _, c := range contacts.Contacts {
		found = found || (c.Phone == "+"+replyPhone && c.PushName == "Carla")
	}
	if !found {
		t.Errorf("contacts = %+v, want +%s (Carla)", contacts.Contacts, replyPhone)
	}

	// A restart keeps the link: connected again, no QR.
	d.Stop()
	d = startDaemon(t, dir, fake.URL())
	d.WaitNotify("READY=1", 10*time.Second)
	d.waitState("connected", 20*time.Second)
	if st, _, _ := d.do("GET", "/qr", nil); st != 409 {
		t.Errorf("GET /qr after restart = %d, want 409 (still linked)", st)
	}
	// The event log survived the restart too.
	var page struct{ Events []event }
	d.getJSON("/events?after=0&limit=1000", &page)
	var messages int
	for _, e := range page.Events {
		if e.Type == "message" {
			messages++
		}
	}
	if messages != 1 {
		t.Errorf("after restart the log holds %d incoming messages, want 1", messages)
	}

	// Logout goes back to QR without a restart.
	if st, b, _ := d.do("POST", "/logout", nil); st != 200 {
		t.Fatalf("POST /logout = %d %s", st, b)
	}
	d.waitState("qr", 20*time.Second)
	newCode := d.qrText()
	if newCode == code {
		t.Error("QR after logout equals the first one; want a fresh device")
	}
	// And the new device can be linked again.
	if err := fake.ScanQR(ctx, newCode, linkedPhone); err != nil {
		t.Fatalf("second ScanQR: %v", err)
	}
	d.waitState("connected", 20*time.Second)

	// Unlinked from the phone: logged_out is recorded, then a QR again.
	if err := fake.Unlink(linkedPhone); err != nil {
		t.Fatalf("Unlink: %v", err)
	}
	d.waitEvent(0, func(e event) bool { return e.Type == "state" && e.Data["state"] == "logged_out" })
	d.waitState("qr", 20*time.Second)
	d.Stop()
}

func TestConfigErrorExits78(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.toml")
	os.WriteFile(cfg, []byte("[session_manager]\nreconnect_max_delay = \"soon\"\n"), 0o644)
	var stderr bytes.Buffer
	cmd := exec.Command(daemontest.Build(t).SessionManager, "--cliente", "51", "--config", cfg)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 78 {
		t.Fatalf("exit = %v, want 78", err)
	}
	if want := cfg + ":2: key session_manager.reconnect_max_delay: "; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr = %q, want it to name %q", stderr.String(), want)
	}
	out, err := exec.Command(daemontest.Build(t).SessionManager, "--cliente", "51", "--config", cfg, "--check-config").CombinedOutput()
	if err == nil || !strings.Contains(string(out), ":2: key session_manager.reconnect_max_delay") {
		t.Errorf("--check-config on a bad file: %v %s", err, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"--cliente", "a b"}, {"--cliente", "51", "--listen", "nowhere"}, {"--bogus"}} {
		err := exec.Command(daemontest.Build(t).SessionManager, args...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("session-manager %v: exit %v, want 2", args, err)
		}
	}
}

func TestLinkWithPhoneCode(t *testing.T) {
	fake := newFake(t)
	d := startDaemon(t, t.TempDir(), fake.URL())
	d.WaitNotify("READY=1", 10*time.Second)
	d.qrText() // a QR connection is what a pairing code rides on

	st, b, _ := d.do("POST", "/pair-code", map[string]string{"phone": "12"})
	if st != 422 {
		t.Errorf("POST /pair-code with a bad number = %d %s, want 422", st, b)
	}
	st, b, _ = d.do("POST", "/pair-code", map[string]string{"phone": "+54 9 11 5555-0000"})
	if st != 200 {
		t.Fatalf("POST /pair-code = %d %s", st, b)
	}
	var res struct{ Code string }
	json.Unmarshal(b, &res)
	if len(strings.ReplaceAll(res.Code, "-", "")) != 8 {
		t.Fatalf("pair code %q, want 8 characters", res.Code)
	}
	if err := fake.PairWithCode(t.Context(), linkedPhone, res.Code); err != nil {
		t.Fatalf("PairWithCode: %v", err)
	}
	linked := d.waitState("connected", 20*time.Second)
	if linked.Phone != "+"+linkedPhone {
		t.Errorf("linked as %q, want +%s", linked.Phone, linkedPhone)
	}
}

func TestReloadOnSIGHUP(t *testing.T) {
	fake := newFake(t)
	dir := t.TempDir()
	d := startDaemon(t, dir, fake.URL())
	d.WaitNotify("READY=1", 10*time.Second)
	d.qrText()
	// A bad edit is reported and the running configuration kept.
	cfg := filepath.Join(dir, "leadmaster.toml")
	good, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(good, []byte("[log]\nlevel = \"loud\"\n")...), 0o644)
	d.Signal(syscall.SIGHUP)
	d.WaitNotify("RELOADING=1", 5*time.Second)
	d.WaitNotify("READY=1", 5*time.Second)
	if st, _, _ := d.do("GET", "/health", nil); st != 200 {
		t.Fatalf("/health after a bad reload = %d", st)
	}
	if !strings.Contains(d.Stderr.String(), "key log.level") {
		t.Errorf("a bad reload must name the key; stderr:\n%s", d.Stderr.String())
	}
	// A good edit takes effect: debug logging appears.
	os.WriteFile(cfg, append(good, []byte("[log]\nlevel = \"debug\"\n")...), 0o644)
	d.Signal(syscall.SIGHUP)
	d.WaitNotify("RELOADING=1", 5*time.Second)
	d.WaitNotify("READY=1", 5*time.Second)
	if st, _, _ := d.do("GET", "/qr?format=text", nil); st != 200 {
		t.Errorf("QR after reload = %d, want 200 (the session keeps running)", st)
	}
}

// TestPostgresStore runs a session on PostgreSQL: device store, ledger and event log in the
// cliente's own schema, a link that survives a restart.
func TestPostgresStore(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	if dsn == "" {
		t.Skip("no PostgreSQL: set " + storetest.EnvPostgres + " (make test does)")
	}
	fake := newFake(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "leadmaster.toml"), []byte(fmt.Sprintf("[session_manager]\ndatabase = %q\nstate_dir = %q\n", dsn, filepath.Join(dir, "state"))), 0o644)
	d := startDaemon(t, dir, fake.URL())
	if err := fake.ScanQR(t.Context(), d.qrText(), linkedPhone); err != nil {
		t.Fatal(err)
	}
	d.waitState("connected", 20*time.Second)
	if st, b, _ := d.do("POST", "/messages", map[string]string{"to": "+" + leadPhone, "text": "hola desde PostgreSQL", "id": "PGMSG0001"}); st != 200 {
		t.Fatalf("POST /messages = %d %s", st, b)
	}
	d.Stop()
	d = startDaemon(t, dir, fake.URL())
	d.waitState("connected", 20*time.Second)
	st, b, _ := d.do("POST", "/messages", map[string]string{"to": "+" + leadPhone, "text": "hola desde PostgreSQL", "id": "PGMSG0001"})
	if st != 200 || !strings.Contains(string(b), `"duplicate":true`) {
		t.Errorf("repeated id after restart = %d %s, want a duplicate from the ledger", st, b)
	}
	if n := fake.Arrivals("PGMSG0001"); n != 1 {
		t.Errorf("arrivals = %d, want 1", n)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM cliente_51.whatsmeow_device`).Scan(&n); err != nil || n != 1 {
		t.Errorf("cliente_51.whatsmeow_device rows = %d, %v; want the device in the cliente's schema", n, err)
	}
}

func TestStopAnswersLongPoll(t *testing.T) {
	fake := newFake(t)
	d := startDaemon(t, t.TempDir(), fake.URL())
	d.WaitNotify("READY=1", 10*time.Second)
	d.qrText()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := d.http.Get("http://sm/events?after=1000000&wait=60s")
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{code: resp.StatusCode}
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	d.Stop()
	select {
	case r := <-done:
		if r.err != nil || r.code != 200 {
			t.Errorf("long poll across SIGTERM: %d %v, want 200", r.code, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll not answered within 5s of SIGTERM")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v with a long poll open, want well under TimeoutStopSec", d)
	}
}
