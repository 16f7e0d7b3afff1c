package sender

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/events"
)

func TestSingleMessage(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, unpaced)
		ctx := context.Background()
		e.run()

		m, err := e.s.Enqueue(ctx, "51", SendRequest{To: "+54 9 11 5555-1234", Text: "Hola"})
		if err != nil {
			t.Fatal(err)
		}
		if m.State != StateQueued || !strings.HasPrefix(m.ID, "3EB0") || m.To != "+5491155551234" {
			t.Errorf("Enqueue = %+v, want queued to +5491155551234 with a 3EB0 ID", m)
		}
		got := e.waitState("51", m.ID, StateSent)
		if got.SentAt == nil || got.Attempts != 1 || got.Error != "" {
			t.Errorf("sent message = %+v, want sent_at set, 1 attempt, no error", got)
		}
		if n := e.gw.sent("51", m.ID); n != 1 {
			t.Errorf("session manager sent it %d times, want 1", n)
		}
		// The conversation view shows the text.
		var text string
		if err := e.db.QueryRow(ctx, `SELECT text FROM messages WHERE cliente_id = '51' AND wa_id = ?`, m.ID).Scan(&text); err != nil || text != "Hola" {
			t.Errorf("conversation row text = %q, %v; want Hola", text, err)
		}

		// A caller-chosen ID; repeating it is harmless, reusing it for another text is not.
		m2, err := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551234", Text: "Segundo", ID: "PEDIDO42"})
		if err != nil || m2.ID != "PEDIDO42" || m2.Duplicate {
			t.Fatalf("Enqueue with id = %+v, %v", m2, err)
		}
		again, err := e.s.Enqueue(ctx, "51", SendRequest{To: "+54 9 11 5555 1234", Text: "Segundo", ID: "PEDIDO42"})
		if err != nil || !again.Duplicate || again.ID != "PEDIDO42" {
			t.Errorf("repeated Enqueue = %+v, %v; want the same message with duplicate", again, err)
		}
		if _, err := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551234", Text: "Otro texto", ID: "PEDIDO42"}); hub.ErrorCode(err) != hub.CodeConflict {
			t.Errorf("reused id: err = %v, want conflict", err)
		}
		// The same ID at another cliente is another message.
		if _, err := e.s.Enqueue(ctx, "52", SendRequest{To: "+5491155551234", Text: "Otro texto", ID: "PEDIDO42"}); err != nil {
			t.Errorf("same id at cliente 52: %v", err)
		}
		e.waitState("51", "PEDIDO42", StateSent)
		if n := e.gw.sent("51", "PEDIDO42"); n != 1 {
			t.Errorf("PEDIDO42 sent %d times, want 1", n)
		}

		for _, tt := range []struct {
			name string
			req  SendRequest
			want string
		}{
			{"no to", SendRequest{Text: "x"}, "to"},
			{"no text", SendRequest{To: "+5491155551234", Text: "  "}, "text"},
			{"no country code", SendRequest{To: "5555-1234", Text: "x"}, "country code"},
			{"bad id", SendRequest{To: "+5491155551234", Text: "x", ID: "no spaces"}, "id must be"},
			{"too long", SendRequest{To: "+5491155551234", Text: strings.Repeat("x", MaxTextLen+1)}, "bytes"},
		} {
			_, err := e.s.Enqueue(ctx, "51", tt.req)
			if hub.ErrorCode(err) != hub.CodeInvalid || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: err = %v, want invalid mentioning %q", tt.name, err, tt.want)
			}
		}
		e.lead("51", "+5491155550001", "Baja", nil, true)
		if _, err := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155550001", Text: "x"}); hub.ErrorCode(err) != hub.CodeInvalid || !strings.Contains(err.Error(), "opted out") {
			t.Errorf("opted-out lead: err = %v, want invalid (opted out)", err)
		}
	})
}

func TestCampaign(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, unpaced)
		ctx := context.Background()
		for i := range 20 {
			e.lead("51", fmt.Sprintf("+54911555510%02d", i), fmt.Sprintf("Lead %d", i), []string{"clientes"}, i%10 == 9)
		}
		e.lead("51", "+5491155559999", "", []string{"otros"}, false)
		e.lead("52", "+5491155551000", "Of another cliente", []string{"clientes"}, false)

		_, err := e.s.CreateCampaign(ctx, "51", CampaignRequest{Name: "Promo", Template: "Hola {{apellido}}", Recipients: Recipients{Tag: "clientes"}})
		var he *hub.Error
		if hub.ErrorCode(err) != hub.CodeInvalid || !strings.Contains(err.Error(), "{{apellido}}") {
			t.Fatalf("unknown field: err = %v, want invalid naming {{apellido}}", err)
		}
		if ok := asHubError(err, &he); !ok || he.Details.(map[string]any)["field"] != "apellido" {
			t.Errorf("unknown field: details = %+v, want field apellido", he)
		}
		for _, bad := range []CampaignRequest{
			{Template: "x", Recipients: Recipients{All: true}},
			{Name: "n", Recipients: Recipients{All: true}},
			{Name: "n", Template: "{{nombre", Recipients: Recipients{All: true}},
			{Name: "n", Template: "x"},
			{Name: "n", Template: "x", Recipients: Recipients{All: true, Tag: "a"}},
			{Name: "n", Template: "x", Recipients: Recipients{Tag: "nadie"}},
			{Name: "n", Template: "x", Recipients: Recipients{All: true}, Pacing: PacingOverride{QuietHours: "tarde"}},
		} {
			if _, err := e.s.CreateCampaign(ctx, "51", bad); hub.ErrorCode(err) != hub.CodeInvalid {
				t.Errorf("CreateCampaign(%+v) err = %v, want invalid", bad, err)
			}
		}

		c, err := e.s.CreateCampaign(ctx, "51", CampaignRequest{Name: "Promo", Template: "Hola {{nombre|amigo}}, te escribe Acme", Recipients: Recipients{Tag: "clientes"}})
		if err != nil {
			t.Fatal(err)
		}
		if c.State != CampaignDraft || c.Total != 18 || c.Skipped != (Skipped{OptedOut: 2}) || c.Progress[StateQueued] != 18 {
			t.Errorf("created campaign = state %s, total %d, skipped %+v, progress %v; want draft, 18, 2 opted out, 18 queued", c.State, c.Total, c.Skipped, c.Progress)
		}
		pv, err := e.s.Preview(ctx, "51", c.ID, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(pv) != 2 || pv[0].Text != "Hola Lead 0, te escribe Acme" || pv[1].To != "+5491155551001" {
			t.Errorf("preview = %+v", pv)
		}
		if _, err := e.s.Act(ctx, "51", c.ID, ActionResume); hub.ErrorCode(err) != hub.CodeConflict {
			t.Errorf("resume a draft: err = %v, want conflict", err)
		}
		if _, err := e.s.Campaign(ctx, "52", c.ID); hub.ErrorCode(err) != hub.CodeNotFound {
			t.Errorf("campaign of 51 read as 52: err = %v, want not found", err)
		}

		// Nothing goes while it is a draft.
		e.run()
		time.Sleep(200 * time.Millisecond)
		if n := e.gw.total(); n != 0 {
			t.Fatalf("%d messages went out of a draft campaign", n)
		}
		if c, err = e.s.Act(ctx, "51", c.ID, ActionStart); err != nil || c.State != CampaignRunning {
			t.Fatalf("start: %+v, %v", c.State, err)
		}
		waitFor(t, 10*time.Second, "campaign done", func() bool {
			c, err = e.s.Campaign(ctx, "51", c.ID)
			return err == nil && c.State == CampaignDone
		})
		if c.Progress[StateSent] != 18 || c.FinishedAt == nil || e.gw.total() != 18 {
			t.Errorf("done campaign: progress %v, finished %v, gateway sent %d; want 18 sent", c.Progress, c.FinishedAt, e.gw.total())
		}

		// An uploaded list: duplicates, invalid numbers and opted-out leads are skipped and
		// counted; list columns are fields; the lead's name fills in.
		c2, err := e.s.CreateCampaign(ctx, "51", CampaignRequest{Name: "Lista", Template: "{{nombre}}: tu {{producto}}",
			Recipients: Recipients{List: []map[string]string{
				{"phone": "+5491155551000", "producto": "auto"},
				{"Telefono": "+54 9 11 5555 1000", "producto": "otra vez"},
				{"phone": "+5491155551009", "producto": "baja"},
				{"phone": "no es un número"},
				{"phone": "+5491155557777", "nombre": "Zoe", "producto": "casa"},
			}}, Start: true})
		if err != nil {
			t.Fatal(err)
		}
		if c2.Total != 2 || c2.Skipped != (Skipped{OptedOut: 1, Duplicate: 1, Invalid: 1}) {
			t.Errorf("list campaign total %d, skipped %+v; want 2 and one of each", c2.Total, c2.Skipped)
		}
		if len(c2.Warnings) != 1 || !strings.Contains(c2.Warnings[0], "list[3]") {
			t.Errorf("warnings = %q, want the bad row named", c2.Warnings)
		}
		pv, _ = e.s.Preview(ctx, "51", c2.ID, 5)
		if diff := cmp.Diff([]string{"Lead 0: tu auto", "Zoe: tu casa"}, []string{pv[0].Text, pv[1].Text}); diff != "" {
			t.Errorf("list texts (-want +got):\n%s", diff)
		}

		// Cancel fails what is still queued, with a reason of its own.
		c3, err := e.s.CreateCampaign(ctx, "51", CampaignRequest{Name: "Luego", Template: "x", Recipients: Recipients{All: true},
			StartAt: ptr(time.Now().Add(time.Hour)), Start: true})
		if err != nil {
			t.Fatal(err)
		}
		if c3.State != CampaignScheduled || c3.EstimatedFinish == nil || c3.EstimatedFinish.Before(time.Now().Add(59*time.Minute)) {
			t.Errorf("campaign starting in an hour: state %s, estimated finish %v", c3.State, c3.EstimatedFinish)
		}
		if c3, err = e.s.Act(ctx, "51", c3.ID, ActionCancel); err != nil {
			t.Fatal(err)
		}
		if c3.State != CampaignCancelled || c3.Progress[StateFailed] != 19 || c3.FailedByReason[FailCancelled] != 19 {
			t.Errorf("cancelled: %s %v %v; want 19 failed (cancelled)", c3.State, c3.Progress, c3.FailedByReason)
		}
		if _, err := e.s.Act(ctx, "51", c3.ID, ActionStart); hub.ErrorCode(err) != hub.CodeConflict {
			t.Errorf("start a cancelled campaign: err = %v, want conflict", err)
		}
		list, err := e.s.Campaigns(ctx, "51", CampaignFilter{})
		if err != nil || len(list) != 3 || list[0].ID != c3.ID {
			t.Errorf("Campaigns = %d, %v; want 3 newest first", len(list), err)
		}
		n := map[string]int{}
		for _, state := range []string{CampaignDraft, CampaignScheduled, CampaignRunning, CampaignDone, CampaignCancelled} {
			list, err := e.s.Campaigns(ctx, "51", CampaignFilter{State: state})
			if err != nil {
				t.Fatal(err)
			}
			n[state] = len(list)
		}
		if n[CampaignCancelled] != 1 || n[CampaignScheduled]+n[CampaignDraft] != 0 || n[CampaignDone]+n[CampaignRunning] != 2 {
			t.Errorf("campaigns by state = %v, want 1 cancelled and 2 done or running", n)
		}
	})
}

func asHubError(err error, he **hub.Error) bool {
	e, ok := err.(*hub.Error)
	*he = e
	return ok
}

func ptr[T any](v T) *T { return &v }

func TestCampaignPauseAndOptOut(t *testing.T) {
	e := newEnv(t, t.TempDir()+"/hub.db", strings.Replace(unpaced, "per_minute = 0", "per_minute = 600", 1))
	ctx := context.Background()
	var leads []int64
	for i := range 30 {
		leads = append(leads, e.lead("51", fmt.Sprintf("+54911555520%02d", i), "", []string{"t"}, false))
	}
	c, err := e.s.CreateCampaign(ctx, "51", CampaignRequest{Name: "P", Template: "Hola", Recipients: Recipients{Tag: "t"}, Start: true})
	if err != nil {
		t.Fatal(err)
	}
	e.run()
	waitFor(t, 10*time.Second, "a few messages", func() bool { return e.gw.total() >= 3 })
	if _, err := e.s.Act(ctx, "51", c.ID, ActionPause); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	paused := e.gw.total()
	time.Sleep(500 * time.Millisecond)
	if n := e.gw.total(); n != paused || n >= 30 {
		t.Fatalf("paused campaign went on sending: %d then %d", paused, n)
	}
	// A lead that opts out while the campaign is paused is skipped when it resumes.
	last := leads[len(leads)-1]
	if _, err := e.db.Exec(ctx, `UPDATE leads SET opted_out = 1 WHERE id = ?`, last); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Act(ctx, "51", c.ID, ActionResume); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "campaign done", func() bool {
		c, err = e.s.Campaign(ctx, "51", c.ID)
		return err == nil && c.State == CampaignDone
	})
	if c.Progress[StateSent] != 29 || c.FailedByReason[FailOptedOut] != 1 {
		t.Errorf("progress %v, failed %v; want 29 sent and 1 opted out", c.Progress, c.FailedByReason)
	}
}

func TestSendFailures(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, unpaced)
		ctx := context.Background()
		e.gw.fail = func(cliente string, m Outgoing, try int) error {
			switch {
			case strings.HasPrefix(m.Text, "nowa"):
				return &SendError{Kind: KindPermanent, Code: FailNotOnWhatsApp, Message: "that number has no WhatsApp account"}
			case strings.HasPrefix(m.Text, "wait") && try <= 3:
				return &SendError{Kind: KindWait, Code: "not_connected", Message: "cliente 51 is not connected"}
			case strings.HasPrefix(m.Text, "busy") && try == 1:
				return &SendError{Kind: KindBusy, Code: hub.CodeConflict, Message: "message is being sent right now"}
			case strings.HasPrefix(m.Text, "flaky") && try <= 2:
				return &SendError{Kind: KindTransient, Code: hub.CodeTimeout, Message: "WhatsApp did not answer in time"}
			case strings.HasPrefix(m.Text, "broken"):
				return &SendError{Kind: KindTransient, Code: hub.CodeInternal, Message: "internal error"}
			}
			return nil
		}
		e.run()
		send := func(text string) string {
			m, err := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551234", Text: text})
			if err != nil {
				t.Fatal(err)
			}
			return m.ID
		}
		nowa, wait, busy, flaky, broken := send("nowa"), send("wait"), send("busy"), send("flaky"), send("broken")
		if m := e.waitState("51", nowa, StateFailed); m.ErrorCode != FailNotOnWhatsApp || m.Attempts != 1 {
			t.Errorf("not on WhatsApp: %+v, want failed not_on_whatsapp after 1 attempt", m)
		}
		if m := e.waitState("51", wait, StateSent); m.Attempts != 1 {
			t.Errorf("after waiting for the session manager: attempts = %d, want 1 (waits are no attempts)", m.Attempts)
		}
		if m := e.waitState("51", busy, StateSent); m.Attempts != 1 {
			t.Errorf("busy: attempts = %d, want 1", m.Attempts)
		}
		if m := e.waitState("51", flaky, StateSent); m.Attempts != 3 {
			t.Errorf("flaky: attempts = %d, want 3", m.Attempts)
		}
		m := e.waitState("51", broken, StateFailed)
		if m.ErrorCode != FailAttempts || m.Attempts != 3 || !strings.Contains(m.Error, "gave up after 3 attempts") {
			t.Errorf("broken: %+v, want failed after max_attempts (3)", m)
		}
		for _, id := range []string{wait, busy, flaky} {
			if n := e.gw.sent("51", id); n != 1 {
				t.Errorf("%s went out %d times, want 1", id, n)
			}
		}

		// Ten failures in a row pause the cliente, with the reason; resuming lifts it.
		for range 4 {
			send("broken")
		}
		var st SendingStatus
		waitFor(t, 10*time.Second, "sending paused", func() bool {
			st, _ = e.s.Sending(ctx, "51")
			return st.Paused
		})
		if !strings.Contains(st.Reason, "failed in a row") || !strings.HasPrefix(st.Status, "paused: ") {
			t.Errorf("paused status = %+v", st)
		}
		e.gw.mu.Lock()
		e.gw.fail = nil
		e.gw.mu.Unlock()
		ok := send("ok")
		time.Sleep(200 * time.Millisecond)
		if m := e.message("51", ok); m.State != StateQueued {
			t.Errorf("message while paused is %s, want queued", m.State)
		}
		if err := e.s.ResumeSending(ctx, "51"); err != nil {
			t.Fatal(err)
		}
		e.waitState("51", ok, StateSent)
	})
}

// TestRecovery starts the sender on an outbox a crash left behind: a message marked sending
// that the session manager had in fact sent, and one it had not. Both are resent with their
// IDs; the first comes back as a duplicate, and nobody gets anything twice.
func TestRecovery(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, unpaced)
		ctx := context.Background()
		a, _ := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551234", Text: "uno"})
		b, _ := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551235", Text: "dos"})
		c, _ := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551236", Text: "tres"})
		if _, err := e.db.Exec(ctx, `UPDATE sender_messages SET state = 'sending', attempts = 1 WHERE id IN (?, ?)`, a.ID, b.ID); err != nil {
			t.Fatal(err)
		}
		// c ran out of attempts in the crash.
		if _, err := e.db.Exec(ctx, `UPDATE sender_messages SET state = 'sending', attempts = 3 WHERE id = ?`, c.ID); err != nil {
			t.Fatal(err)
		}
		e.gw.Send(ctx, "51", Outgoing{ID: a.ID, To: a.To, Text: a.Text}) // it did go out before the crash
		e.run()
		e.waitState("51", a.ID, StateSent)
		e.waitState("51", b.ID, StateSent)
		mc := e.waitState("51", c.ID, StateFailed)
		if mc.ErrorCode != FailInterrupted {
			t.Errorf("message out of attempts: %+v, want failed interrupted", mc)
		}
		if e.gw.sent("51", a.ID) != 1 || e.gw.sent("51", b.ID) != 1 || e.gw.triesOf("51", a.ID) != 2 {
			t.Errorf("sends a=%d (tries %d) b=%d; want each once, a asked twice", e.gw.sent("51", a.ID), e.gw.triesOf("51", a.ID), e.gw.sent("51", b.ID))
		}
		// The session manager's sent event corrects a message the hub had given up on.
		e.apply("51", events.Event{Type: events.TypeSent, Data: mustJSON(events.SentData{ID: c.ID, To: "5491155551236@s.whatsapp.net"})})
		if m := e.message("51", c.ID); m.State != StateSent || m.ErrorCode != "" {
			t.Errorf("after the sent event: %+v, want sent without error", m)
		}
	})
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func TestEvents(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, unpaced) // not running: only events move messages
		ctx := context.Background()
		m1, _ := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551234", Text: "uno"})
		m2, _ := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551234", Text: "dos"})
		m3, _ := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551234", Text: "tres"})
		e.apply("51",
			events.Event{Type: events.TypeSent, Data: mustJSON(events.SentData{ID: m1.ID, To: "5491155551234@s.whatsapp.net"})},
			events.Event{Type: events.TypeSent, Data: mustJSON(events.SentData{ID: "NOTOURS1", To: "5491155551234@s.whatsapp.net"})},
			events.Event{Type: events.TypeReceipt, Data: mustJSON(events.ReceiptData{MessageIDs: []string{m1.ID, m2.ID}, Type: "delivered"})},
			events.Event{Type: events.TypeReceipt, Data: mustJSON(events.ReceiptData{MessageIDs: []string{m3.ID}, Type: "read"})},
			events.Event{Type: events.TypeReceipt, Data: mustJSON(events.ReceiptData{MessageIDs: []string{m3.ID}, Type: "delivered"})}, // late
		)
		for _, tt := range []struct{ id, want string }{{m1.ID, StateDelivered}, {m2.ID, StateDelivered}, {m3.ID, StateRead}} {
			m := e.message("51", tt.id)
			if m.State != tt.want || m.SentAt == nil || m.DeliveredAt == nil {
				t.Errorf("%s: state %s sent %v delivered %v; want %s with both times", tt.id, m.State, m.SentAt, m.DeliveredAt, tt.want)
			}
		}
		// The same IDs at cliente 52 are not touched.
		if _, err := e.s.Enqueue(ctx, "52", SendRequest{To: "+5491155551234", Text: "uno", ID: "SAMEID1"}); err != nil {
			t.Fatal(err)
		}
		e.apply("51", events.Event{Type: events.TypeReceipt, Data: mustJSON(events.ReceiptData{MessageIDs: []string{"SAMEID1"}, Type: "read"})})
		if m := e.message("52", "SAMEID1"); m.State != StateQueued {
			t.Errorf("cliente 52's message moved by 51's receipt: %s", m.State)
		}

		state := func(st events.StateData, at time.Time) {
			e.apply("51", events.Event{Type: events.TypeState, Time: at, Data: mustJSON(st)})
		}
		sending := func() SendingStatus {
			st, err := e.s.Sending(ctx, "51")
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		state(events.StateData{State: "logged_out"}, time.Now()) // the cliente unlinked it from the UI
		state(events.StateData{State: "logged_out", Error: "logged out: banned"}, time.Now().Add(-2*time.Hour))
		if st := sending(); st.Paused {
			t.Errorf("paused by a chosen logout or an old event: %+v", st)
		}
		state(events.StateData{State: "disconnected", Error: "You've been temporarily banned: 101"}, time.Now())
		st := sending()
		if !st.Paused || !strings.Contains(st.Reason, "temporarily banned") {
			t.Errorf("after a ban: %+v, want paused naming the ban", st)
		}
		state(events.StateData{State: "logged_out", Error: "logged out: 401"}, time.Now())
		if st2 := sending(); st2.Reason != st.Reason {
			t.Errorf("second restriction replaced the first reason: %q", st2.Reason)
		}
		if err := e.s.ResumeSending(ctx, "51"); err != nil {
			t.Fatal(err)
		}
		if st := sending(); st.Paused {
			t.Errorf("still paused after resume")
		}
	})
}

// TestPickRules checks what the dispatcher may send at a given moment: single messages go
// in quiet hours and past the daily cap, campaign messages wait.
func TestPickRules(t *testing.T) {
	cfgText := strings.NewReplacer(`quiet_hours = ""`, `quiet_hours = "22:00-08:00"`, "daily_cap = 0", "daily_cap = 2").Replace(unpaced)
	e := newEnv(t, t.TempDir()+"/hub.db", cfgText)
	ctx := context.Background()
	ba, _ := time.LoadLocation("America/Argentina/Buenos_Aires")
	night := time.Date(2026, 3, 2, 23, 0, 0, 0, ba)
	noon := time.Date(2026, 3, 3, 12, 0, 0, 0, ba)
	clock := night
	e.s.now = func() time.Time { return clock }
	for i := range 3 {
		e.lead("51", fmt.Sprintf("+54911555530%02d", i), "", []string{"t"}, false)
	}
	c, err := e.s.CreateCampaign(ctx, "51", CampaignRequest{Name: "C", Template: "x", Recipients: Recipients{Tag: "t"}, Start: true})
	if err != nil {
		t.Fatal(err)
	}
	single, _ := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551234", Text: "ya"})
	d := newDispatcher(e.s, "51")
	cfg := e.cfg.Load()
	p := clientePacing(cfg, "51")
	next := func() (*candidate, time.Time, string) {
		t.Helper()
		cand, at, why, err := d.pick(ctx, clock, cfg, p)
		if err != nil {
			t.Fatal(err)
		}
		if cand != nil {
			if m, err := d.claim(ctx, cand, clock, cfg, p); err != nil || m == nil {
				t.Fatalf("claim %s: %v, %v", cand.id, m, err)
			}
			e.db.Exec(ctx, `UPDATE sender_messages SET state = 'sent' WHERE id = ?`, cand.id)
		}
		return cand, at, why
	}
	if cand, _, _ := next(); cand == nil || cand.id != single.ID {
		t.Fatalf("at 23:00 the single message should go, got %+v", cand)
	}
	cand, at, why := next()
	if cand != nil || !strings.Contains(why, "quiet hours until 08:00") || !at.Equal(time.Date(2026, 3, 3, 8, 0, 0, 0, ba)) {
		t.Errorf("at 23:00: %+v, %v, %q; want quiet hours until 08:00", cand, at, why)
	}
	clock = noon
	for i := range 2 {
		if cand, _, _ := next(); cand == nil || cand.campaign != c.ID {
			t.Fatalf("campaign message %d at noon: %+v", i, cand)
		}
	}
	cand, at, why = next()
	if cand != nil || !strings.Contains(why, "daily cap of 2") || !at.Equal(time.Date(2026, 3, 4, 0, 0, 0, 0, ba)) {
		t.Errorf("after 2 messages: %+v, %v, %q; want daily cap until midnight", cand, at, why)
	}
	st, _ := e.s.Sending(ctx, "51")
	if st.Today.CampaignMessages != 2 || st.Today.Day != "2026-03-03" {
		t.Errorf("today = %+v, want 2 messages on 2026-03-03", st.Today)
	}
	single2, _ := e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551234", Text: "igual sale"})
	if cand, _, _ := next(); cand == nil || cand.id != single2.ID {
		t.Errorf("past the cap a single message should still go, got %+v", cand)
	}
	c, _ = e.s.Campaign(ctx, "51", c.ID)
	if c.EstimatedFinish == nil || !c.EstimatedFinish.Equal(time.Date(2026, 3, 4, 8, 0, 0, 0, ba)) {
		t.Errorf("estimated finish = %v, want the next morning at 08:00 (cap reached, then quiet until 08:00)", c.EstimatedFinish)
	}
	clock = time.Date(2026, 3, 4, 9, 0, 0, 0, ba)
	if cand, _, _ := next(); cand == nil || cand.campaign != c.ID {
		t.Errorf("next day: %+v, want the last campaign message", cand)
	}
	_ = config.Default
}
