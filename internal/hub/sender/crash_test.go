package sender_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub/sender"
)

// TestCrashExactlyOnce runs the real central-hub and session-manager (built with -tags
// fakewa) against the fake WhatsApp server, starts a campaign to 500 simulated recipients with
// pacing off, and SIGKILLs each process several times at random moments while it runs,
// restarting it at once the way systemd would (the listening sockets stay open, as a .socket
// unit keeps them). At the end every recipient has the message exactly once (one message ID,
// the right text), and the campaign's counts equal what the fake server saw.
//
// The same ID can still reach WhatsApp twice: when the session manager dies after WhatsApp
// accepted a message but before its ledger recorded it, and (today) when the hub dies
// mid-request, because the session manager then cancels the send and records it as failed
// although it may have left. The resend carries the same ID, which a real phone shows once.
// The fake server records every arrival (Received lists the repeat, Arrivals counts it), so
// the test counts distinct IDs per recipient and logs the raw repeats.
func TestCrashExactlyOnce(t *testing.T) {
	const recipients = 500
	// Generous max_attempts: a message in flight at several kills spends an attempt each
	// time, and this test is about losses and duplicates, not about giving up.
	st := startStack(t, "max_attempts = 10")
	fake, api, sm, hub := st.fake, st.api, st.sm, st.hub

	phone := func(i int) string { return fmt.Sprintf("+549114%07d", i) }
	want := map[string]string{} // digits -> text
	list := make([]map[string]string, recipients)
	for i := range recipients {
		list[i] = map[string]string{"phone": phone(i), "nombre": fmt.Sprintf("Persona %d", i), "n": fmt.Sprint(i)}
		want[strings.TrimPrefix(phone(i), "+")] = fmt.Sprintf("Hola Persona %d, este es el mensaje %d", i, i)
	}
	var c sender.Campaign
	if code, body := api.Do("POST", "/api/clientes/51/campaigns", map[string]any{
		"name": "crash", "template": "Hola {{nombre}}, este es el mensaje {{n}}",
		"recipients": map[string]any{"list": list}, "start": true,
	}, &c); code != 201 {
		t.Fatalf("create campaign: %d %s", code, body)
	}
	t.Logf("campaign %d: %d messages queued", c.ID, c.Total)

	// Kill at random moments while the campaign runs: each time a random amount of progress
	// has been made, one of the processes (or both) gets SIGKILL and is restarted at once.
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("kill schedule seed %d", seed)
	kills := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	distinct := func() int {
		n := 0
		for _, p := range fake.Recipients() {
			if strings.HasPrefix(p, "549114") {
				n++
			}
		}
		return n
	}
	plan := []string{"sm", "hub", "sm", "both", "hub", "sm", "hub", "sm"}
	for k, who := range plan {
		threshold := (k+1)*recipients/(len(plan)+2) + rng.IntN(recipients/(len(plan)+2))
		if err := fake.WaitFor(ctx, func() bool { return distinct() >= threshold }); err != nil {
			t.Fatalf("campaign stalled before %d recipients (have %d)", threshold, distinct())
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		if who == "sm" || who == "both" {
			sm.Kill()
			kills["session-manager"]++
		}
		if who == "hub" || who == "both" {
			hub.Kill()
			kills["central-hub"]++
		}
		t.Logf("kill %d (%s) at %d recipients reached", k+1, who, distinct())
		if who == "sm" || who == "both" {
			sm = st.startSM()
		}
		if who == "hub" || who == "both" {
			hub = st.startHub()
		}
		// Sometimes kill again before it is even ready.
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			if who == "hub" {
				hub.Kill()
				kills["central-hub"]++
				hub = st.startHub()
			} else {
				sm.Kill()
				kills["session-manager"]++
				sm = st.startSM()
			}
			t.Logf("kill %d again (%s) during start-up", k+1, who)
		}
		if who == "hub" || who == "both" {
			hub.WaitReady()
		}
		if who != "hub" {
			sm.WaitReady()
		}
	}
	t.Logf("kills: %v", kills)

	// The campaign finishes.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, _ := api.Do("GET", fmt.Sprintf("/api/clientes/51/campaigns/%d", c.ID), nil, &c)
		if code == 200 && c.State == sender.CampaignDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign not done: state %s, progress %v, failed %v", c.State, c.Progress, c.FailedByReason)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Every recipient received its message exactly once: one distinct ID, the right text,
	// the ID the hub's outbox holds for it.
	var page sender.MessagePage
	if code, body := api.Do("GET", fmt.Sprintf("/api/clientes/51/messages?campaign=%d&limit=1000", c.ID), nil, &page); code != 200 {
		t.Fatalf("list messages: %d %s", code, body)
	}
	outboxID := map[string]string{}
	for _, m := range page.Messages {
		outboxID[strings.TrimPrefix(m.To, "+")] = m.ID
	}
	rawRepeats, extraArrivals := 0, 0
	gotRecipients := 0
	for _, p := range fake.Recipients() {
		if !strings.HasPrefix(p, "549114") {
			continue
		}
		gotRecipients++
		ids := map[string]bool{}
		rs := fake.Received(p)
		for _, r := range rs {
			ids[r.ID] = true
			if r.Text != want[p] {
				t.Errorf("%s received %q, want %q", p, r.Text, want[p])
			}
			if r.From != linkedPhone {
				t.Errorf("%s received a message from %s", p, r.From)
			}
		}
		if len(ids) != 1 {
			t.Errorf("%s received %d distinct messages, want exactly 1: %v", p, len(ids), rs)
			continue
		}
		for id := range ids {
			if id != outboxID[p] {
				t.Errorf("%s received ID %s, the outbox says %s", p, id, outboxID[p])
			}
			if a := fake.Arrivals(id); a > 1 {
				extraArrivals += a - 1
			}
		}
		if len(rs) > 1 {
			rawRepeats++
		}
	}
	if gotRecipients != recipients {
		t.Errorf("%d of %d recipients received the message", gotRecipients, recipients)
	}
	done := c.Progress[sender.StateSent] + c.Progress[sender.StateDelivered] + c.Progress[sender.StateRead]
	if done != gotRecipients || c.Progress[sender.StateFailed] != 0 || c.Progress[sender.StateQueued]+c.Progress[sender.StateSending] != 0 {
		t.Errorf("campaign counts %v (failed %v) do not match the %d recipients the fake server saw", c.Progress, c.FailedByReason, gotRecipients)
	}
	t.Logf("result: %d recipients each received their message once (distinct IDs); campaign counts %v", gotRecipients, c.Progress)
	t.Logf("raw repeats (the same ID reaching WhatsApp twice, which a phone shows once; see the test's doc): %d recipients, %d extra arrivals", rawRepeats, extraArrivals)
	hub.Stop()
	sm.Stop()
}
