package sender_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/daemontest"
	"github.com/leadmaster/leadmaster/internal/hub/sender"
)

// TestEndToEnd drives single messages through the real processes: queued → sent → delivered
// from the fake phone's receipt, read when the recipient reads it; a number without WhatsApp
// fails that message only; WhatsApp unlinking the number pauses the cliente's sending with the
// reason shown, until someone resumes it.
func TestEndToEnd(t *testing.T) {
	st := startStack(t, "")
	ctx := context.Background()
	api := st.api
	send := func(to, text string) sender.Message {
		t.Helper()
		var m sender.Message
		if code, body := api.Do("POST", "/api/clientes/51/messages", map[string]string{"to": to, "text": text}, &m); code != 202 {
			t.Fatalf("POST message: %d %s", code, body)
		}
		return m
	}
	waitState := func(id, want string) sender.Message {
		t.Helper()
		var m sender.Message
		daemontest.Eventually(t, fmt.Sprintf("message %s %s", id, want), 20*time.Second, func() bool {
			api.Do("GET", "/api/clientes/51/messages/"+id, nil, &m)
			return m.State == want
		})
		return m
	}

	m := send("+54 9 11 7777-0001", "Hola Ana")
	if m.State != sender.StateQueued || !strings.HasPrefix(m.ID, "3EB0") {
		t.Errorf("POST answer: %+v", m)
	}
	m = waitState(m.ID, sender.StateDelivered)
	if got := st.fake.Received("5491177770001"); len(got) != 1 || got[0].ID != m.ID || got[0].Text != "Hola Ana" {
		t.Errorf("the fake phone received %+v, want one message %s", got, m.ID)
	}
	if err := st.fake.SendReadReceipt(ctx, "5491177770001", m.ID); err != nil {
		t.Fatal(err)
	}
	if m = waitState(m.ID, sender.StateRead); m.ReadAt == nil || m.DeliveredAt == nil || m.SentAt == nil {
		t.Errorf("read message has times sent %v delivered %v read %v", m.SentAt, m.DeliveredAt, m.ReadAt)
	}

	st.fake.MarkNotOnWhatsApp("5491177770002")
	bad := send("+5491177770002", "¿Estás?")
	good := send("+5491177770003", "Hola Beto")
	if b := waitState(bad.ID, sender.StateFailed); b.ErrorCode != "not_on_whatsapp" || b.Attempts != 1 {
		t.Errorf("message to a number without WhatsApp: %+v, want failed not_on_whatsapp after one attempt", b)
	}
	waitState(good.ID, sender.StateDelivered)

	// WhatsApp removes the device: a restriction as far as sending is concerned.
	if err := st.fake.Unlink(linkedPhone); err != nil {
		t.Fatal(err)
	}
	var sending sender.SendingStatus
	daemontest.Eventually(t, "sending paused", 20*time.Second, func() bool {
		api.Do("GET", "/api/clientes/51/sending", nil, &sending)
		return sending.Paused
	})
	if !strings.Contains(sending.Reason, "logged the number out") || !strings.HasPrefix(sending.Status, "paused: ") {
		t.Errorf("paused with %+v, want the logout named", sending)
	}
	held := send("+5491177770004", "¿Sigue ahí?")
	time.Sleep(time.Second)
	var h sender.Message
	api.Do("GET", "/api/clientes/51/messages/"+held.ID, nil, &h)
	if h.State != sender.StateQueued || h.Attempts != 0 {
		t.Errorf("message while paused: %s after %d attempts, want queued untried", h.State, h.Attempts)
	}
	if code, body := api.Do("POST", "/api/clientes/51/sending/resume", nil, &sending); code != 200 || sending.Paused {
		t.Errorf("resume: %d %s", code, body)
	}
	st.hub.Stop()
	st.sm.Stop()
}
