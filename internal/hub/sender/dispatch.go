package sender

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/store"
)

// failuresToPause is how many transient failures in a row (with no success between, over at
// least Service.failureWindow) pause a cliente's sending: the session manager keeps answering
// but WhatsApp keeps refusing, which is how a restriction often looks before WhatsApp says
// so. The time condition keeps a burst (every send in flight failing when a connection
// drops) from counting as a pattern.
const failuresToPause = 10

// maxRetryDelay caps the backoff between attempts of one message.
const maxRetryDelay = 10 * time.Minute

// busyRetry is how soon a message the session manager is still sending is asked about again.
const busyRetry = 2 * time.Second

// drainTime is how long in-flight sends may finish after the hub starts stopping.
const drainTime = 10 * time.Second

// ClienteState is a cliente's sending state kept in the database.
type ClienteState struct {
	Paused   bool
	Reason   string
	PausedAt time.Time
	// Day and DayCount count the campaign messages first tried on Day (cliente's time zone).
	Day      string
	DayCount int
}

func (s *Service) clienteState(ctx context.Context, q hub.Querier, cliente string) (ClienteState, error) {
	var st ClienteState
	var paused int
	var at int64
	err := q.QueryRow(ctx, `SELECT paused, reason, paused_at, day, day_count FROM sender_clientes WHERE cliente_id = ?`, cliente).
		Scan(&paused, &st.Reason, &at, &st.Day, &st.DayCount)
	if errors.Is(err, sql.ErrNoRows) {
		return ClienteState{}, nil
	}
	if err != nil {
		return ClienteState{}, fmt.Errorf("read sending state: %w", err)
	}
	st.Paused, st.PausedAt = paused != 0, hub.FromMillis(at)
	return st, nil
}

// pause stops cliente's sending with reason, unless it is already paused (the first reason stays).
func (s *Service) pause(ctx context.Context, q hub.Querier, cliente, reason string) (bool, error) {
	res, err := q.Exec(ctx, `INSERT INTO sender_clientes (cliente_id, paused, reason, paused_at) VALUES (?, 1, ?, ?)
		ON CONFLICT (cliente_id) DO UPDATE SET paused = 1, reason = excluded.reason, paused_at = excluded.paused_at
		WHERE sender_clientes.paused = 0`, cliente, reason, hub.Millis(s.now()))
	if err != nil {
		return false, fmt.Errorf("pause sending: %w", err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		s.log.Warn("sending paused", "cliente_id", cliente, "reason", reason)
	}
	return n > 0, nil
}

// PauseSending stops all of cliente's sending (single messages and campaigns) until ResumeSending.
func (s *Service) PauseSending(ctx context.Context, cliente, reason string) error {
	if reason == "" {
		reason = "paused by hand"
	}
	_, err := s.pause(ctx, s.db, cliente, reason)
	return err
}

// ResumeSending lifts a pause, whatever set it, and forgets the failure count.
func (s *Service) ResumeSending(ctx context.Context, cliente string) error {
	_, err := s.db.Exec(ctx, `UPDATE sender_clientes SET paused = 0, reason = '', paused_at = 0 WHERE cliente_id = ?`, cliente)
	if err != nil {
		return fmt.Errorf("resume sending: %w", err)
	}
	if d := s.dispatcher(cliente); d != nil {
		d.mu.Lock()
		d.failures, d.failSince, d.waitUntil, d.waitStep = 0, time.Time{}, time.Time{}, 0
		d.mu.Unlock()
	}
	s.log.Info("sending resumed", "cliente_id", cliente)
	s.wake(cliente)
	return nil
}

func (s *Service) dispatcher(cliente string) *dispatcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dispatchers[cliente]
}

// dispatcher sends one cliente's outbox.
type dispatcher struct {
	s       *Service
	cliente string
	log     *slog.Logger
	wake    chan struct{}

	// Owned by the run loop.
	pacer     pacer
	campaigns map[int64]*pacer    // campaigns with a pace of their own
	served    map[int64]time.Time // when each campaign last had a message taken (round robin)
	recovery  []string            // messages found "sending" at start, resent first

	wg sync.WaitGroup // sends in flight

	mu        sync.Mutex
	inflight  int
	waitUntil time.Time     // the session manager is unavailable until then
	waitStep  time.Duration // the current wait, doubled each time
	failures  int           // transient failures in a row
	failSince time.Time     // when the first of them happened
	status    string
	lastSent  time.Time
}

func newDispatcher(s *Service, cliente string) *dispatcher {
	return &dispatcher{s: s, cliente: cliente, log: s.log.With("cliente_id", cliente), wake: s.wakeChan(cliente),
		campaigns: map[int64]*pacer{}, served: map[int64]time.Time{}, status: "starting"}
}

func (d *dispatcher) setStatus(s string) {
	d.mu.Lock()
	d.status = s
	d.mu.Unlock()
}

// sleep waits for dur, a wake, or the end of ctx.
func (d *dispatcher) sleep(ctx context.Context, dur time.Duration) {
	if dur <= 0 {
		return
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-d.wake:
	case <-t.C:
	}
}

func (d *dispatcher) run(ctx context.Context) {
	// Sends in flight get drainTime after ctx ends; what they do not finish stays "sending"
	// and is resent with the same ID at the next start.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(drainTime, cancelSends) })
	defer func() {
		d.wg.Wait()
		stop()
		cancelSends()
	}()

	for ctx.Err() == nil {
		if err := d.loadRecovery(ctx); err == nil {
			break
		} else if ctx.Err() == nil {
			d.log.Error("read unfinished messages; retrying", "err", err)
			d.sleep(ctx, time.Second)
		}
	}
	if len(d.recovery) > 0 {
		d.log.Info("resending messages that were being sent when the hub stopped", "messages", len(d.recovery))
	}
	for ctx.Err() == nil {
		cfg := d.s.cfg()
		p := clientePacing(cfg, d.cliente)
		now := d.s.now()
		d.mu.Lock()
		waitUntil, inflight := d.waitUntil, d.inflight
		d.mu.Unlock()
		if now.Before(waitUntil) {
			d.sleep(ctx, waitUntil.Sub(now))
			continue
		}
		limit := 1
		if p.Unpaced() {
			limit = d.s.unpacedConc
		}
		if inflight >= limit {
			d.sleep(ctx, d.s.pollEvery) // a finishing send wakes the loop
			continue
		}
		c, next, why, err := d.pick(ctx, now, cfg, p)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("read outbox", "err", err)
				d.setStatus("error reading the outbox: " + err.Error())
				d.sleep(ctx, time.Second)
			}
			continue
		}
		if c == nil {
			if inflight == 0 {
				d.setStatus(why)
			}
			wait := d.s.pollEvery
			if !next.IsZero() {
				wait = min(wait, next.Sub(now))
			}
			d.sleep(ctx, max(wait, 10*time.Millisecond))
			continue
		}
		if slot := d.pacer.next(now, p); slot.After(now) {
			d.setStatus("pacing: next message at " + slot.In(d.s.location(cfg, d.cliente)).Format("15:04:05"))
			d.sleep(ctx, slot.Sub(now))
			continue
		}
		m, err := d.claim(ctx, c, now, cfg, p)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("claim message", "message_id", c.id, "err", err)
				d.sleep(ctx, time.Second)
			}
			continue
		}
		if c.recovery {
			d.recovery = d.recovery[1:]
		}
		if m == nil {
			continue // taken, cancelled, opted out or given up meanwhile: pick again
		}
		d.pacer.commit(now, p, d.s.rand())
		if c.campaign != 0 {
			d.served[c.campaign] = now
			if cp := d.campaigns[c.campaign]; cp != nil {
				cp.commit(now, c.pacing, d.s.rand())
			}
		}
		d.mu.Lock()
		d.inflight++
		d.status = "sending"
		d.mu.Unlock()
		d.wg.Go(func() {
			d.send(sendCtx, m, p)
			d.mu.Lock()
			d.inflight--
			d.mu.Unlock()
			select {
			case d.wake <- struct{}{}:
			default:
			}
		})
	}
}

func (d *dispatcher) loadRecovery(ctx context.Context) error {
	rows, err := d.s.db.Query(ctx, `SELECT id FROM sender_messages WHERE cliente_id = ? AND state = 'sending' ORDER BY campaign_id, seq`, d.cliente)
	if err != nil {
		return err
	}
	defer rows.Close()
	d.recovery = d.recovery[:0]
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		d.recovery = append(d.recovery, id)
	}
	return rows.Err()
}

// candidate is a message that may go next.
type candidate struct {
	id       string
	state    string // the state it must still be in when claimed
	campaign int64
	pacing   Pacing // the campaign's own pace
	recovery bool
}

type runningCampaign struct {
	id       int64
	startAt  int64
	pacing   Pacing
	day      string
	dayCount int
}

// pick chooses the next message: one left "sending" by a crash, then single messages (which
// ignore quiet hours and daily caps), then campaign messages in turn across the running
// campaigns. With nothing to send now it returns when to look again (zero: no idea) and why.
func (d *dispatcher) pick(ctx context.Context, now time.Time, cfg *config.Config, p Pacing) (*candidate, time.Time, string, error) {
	db := d.s.db
	st, err := d.s.clienteState(ctx, db, d.cliente)
	if err != nil {
		return nil, time.Time{}, "", err
	}
	if st.Paused {
		return nil, time.Time{}, "paused: " + st.Reason, nil
	}
	if len(d.recovery) > 0 {
		return &candidate{id: d.recovery[0], state: StateSending, recovery: true}, time.Time{}, "", nil
	}
	nowMS := hub.Millis(now)
	var next time.Time
	soonest := func(ms int64) {
		if t := hub.FromMillis(ms); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}

	var id string
	err = db.QueryRow(ctx, `SELECT id FROM sender_messages WHERE cliente_id = ? AND campaign_id = 0 AND state = 'queued' AND next_at <= ?
		ORDER BY seq LIMIT 1`, d.cliente, nowMS).Scan(&id)
	switch {
	case err == nil:
		return &candidate{id: id, state: StateQueued}, time.Time{}, "", nil
	case !errors.Is(err, sql.ErrNoRows):
		return nil, time.Time{}, "", fmt.Errorf("next message: %w", err)
	}
	var retryAt sql.NullInt64
	if err := db.QueryRow(ctx, `SELECT MIN(next_at) FROM sender_messages WHERE cliente_id = ? AND campaign_id = 0 AND state = 'queued'`, d.cliente).Scan(&retryAt); err != nil {
		return nil, time.Time{}, "", fmt.Errorf("next retry: %w", err)
	}
	soonest(retryAt.Int64)

	camps, err := d.running(ctx)
	if err != nil {
		return nil, time.Time{}, "", err
	}
	if len(camps) == 0 {
		return nil, next, d.idle(retryAt.Valid), nil
	}
	loc := d.s.location(cfg, d.cliente)
	if quiet, end := quietUntil(now, p.Quiet, loc); quiet {
		soonest(hub.Millis(end))
		return nil, next, "quiet hours until " + end.In(loc).Format("15:04 MST"), nil
	}
	today := dayKey(now, loc)
	if p.DailyCap > 0 && st.Day == today && st.DayCount >= p.DailyCap {
		mid := nextMidnight(now, loc)
		soonest(hub.Millis(mid))
		return nil, next, fmt.Sprintf("daily cap of %d campaign messages reached; campaigns go on at %s", p.DailyCap, mid.Format("2006-01-02 15:04 MST")), nil
	}
	why := ""
	// Round robin: the campaign served longest ago goes first.
	slices.SortStableFunc(camps, func(a, b runningCampaign) int { return d.served[a.id].Compare(d.served[b.id]) })
	for _, c := range camps {
		if c.startAt > nowMS {
			soonest(c.startAt)
			why = "campaign " + fmt.Sprint(c.id) + " starts at " + hub.FromMillis(c.startAt).In(loc).Format("2006-01-02 15:04 MST")
			continue
		}
		if quiet, end := quietUntil(now, c.pacing.Quiet, loc); quiet {
			soonest(hub.Millis(end))
			why = fmt.Sprintf("campaign %d: its quiet hours last until %s", c.id, end.In(loc).Format("15:04 MST"))
			continue
		}
		if c.pacing.DailyCap > 0 && c.day == today && c.dayCount >= c.pacing.DailyCap {
			soonest(hub.Millis(nextMidnight(now, loc)))
			why = fmt.Sprintf("campaign %d reached its daily cap of %d", c.id, c.pacing.DailyCap)
			continue
		}
		cp := d.campaigns[c.id]
		if !c.pacing.Unpaced() {
			if cp == nil {
				cp = &pacer{}
				d.campaigns[c.id] = cp
			}
			if slot := cp.next(now, c.pacing); slot.After(now) {
				soonest(hub.Millis(slot) + 1)
				why = fmt.Sprintf("campaign %d: pacing", c.id)
				continue
			}
		}
		err := db.QueryRow(ctx, `SELECT id FROM sender_messages WHERE cliente_id = ? AND campaign_id = ? AND state = 'queued' AND next_at <= ?
			ORDER BY seq LIMIT 1`, d.cliente, c.id, nowMS).Scan(&id)
		if err == nil {
			return &candidate{id: id, state: StateQueued, campaign: c.id, pacing: c.pacing}, time.Time{}, "", nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, time.Time{}, "", fmt.Errorf("next campaign message: %w", err)
		}
		var queued, sending int
		var retry sql.NullInt64
		if err := db.QueryRow(ctx, `SELECT COUNT(*), MIN(next_at) FROM sender_messages WHERE cliente_id = ? AND campaign_id = ? AND state = 'queued'`,
			d.cliente, c.id).Scan(&queued, &retry); err != nil {
			return nil, time.Time{}, "", fmt.Errorf("campaign remaining: %w", err)
		}
		if queued > 0 {
			soonest(retry.Int64)
			why = fmt.Sprintf("campaign %d: waiting to retry %d messages", c.id, queued)
			continue
		}
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM sender_messages WHERE cliente_id = ? AND campaign_id = ? AND state = 'sending'`,
			d.cliente, c.id).Scan(&sending); err != nil {
			return nil, time.Time{}, "", fmt.Errorf("campaign remaining: %w", err)
		}
		if sending == 0 {
			if err := d.finish(ctx, c.id); err != nil {
				return nil, time.Time{}, "", err
			}
		}
	}
	if why == "" {
		why = d.idle(retryAt.Valid)
	}
	return nil, next, why, nil
}

func (d *dispatcher) idle(retries bool) string {
	if retries {
		return "waiting to retry"
	}
	return "idle"
}

// running returns the cliente's running campaigns.
func (d *dispatcher) running(ctx context.Context) ([]runningCampaign, error) {
	rows, err := d.s.db.Query(ctx, `SELECT id, start_at, pacing, day, day_count FROM sender_campaigns WHERE cliente_id = ? AND state = 'running' ORDER BY id`, d.cliente)
	if err != nil {
		return nil, fmt.Errorf("running campaigns: %w", err)
	}
	defer rows.Close()
	var out []runningCampaign
	for rows.Next() {
		var c runningCampaign
		var pacing string
		if err := rows.Scan(&c.id, &c.startAt, &pacing, &c.day, &c.dayCount); err != nil {
			return nil, fmt.Errorf("running campaigns: %w", err)
		}
		var o PacingOverride
		jsonUnmarshal(pacing, &o)
		c.pacing = o.pacing()
		out = append(out, c)
	}
	return out, rows.Err()
}

// finish marks a running campaign with nothing left to send done.
func (d *dispatcher) finish(ctx context.Context, id int64) error {
	now := hub.Millis(d.s.now())
	res, err := d.s.db.Exec(ctx, `UPDATE sender_campaigns SET state = 'done', finished_at = ?, updated_at = ? WHERE id = ? AND state = 'running'
		AND NOT EXISTS (SELECT 1 FROM sender_messages WHERE cliente_id = ? AND campaign_id = ? AND state IN ('queued', 'sending'))`,
		now, now, id, d.cliente, id)
	if err != nil {
		return fmt.Errorf("finish campaign: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		d.log.Info("campaign done", "campaign", id)
		delete(d.campaigns, id)
		delete(d.served, id)
	}
	return nil
}

// claim marks c "sending" and counts it against the daily caps, in one transaction. It
// returns nil when the message is no longer to be sent (taken, cancelled, its campaign
// paused, its lead opted out, or a recovered message out of attempts).
func (d *dispatcher) claim(ctx context.Context, c *candidate, now time.Time, cfg *config.Config, p Pacing) (*Message, error) {
	var out *Message
	nowMS := hub.Millis(now)
	err := d.s.db.InTx(ctx, func(tx *store.Tx) error {
		out = nil
		m, err := getMessage(ctx, tx, d.cliente, c.id)
		if hub.ErrorCode(err) == hub.CodeNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		if m.State != c.state {
			return nil
		}
		if c.recovery {
			if m.Attempts >= p.MaxAttempts {
				_, err := tx.Exec(ctx, `UPDATE sender_messages SET state = 'failed', error_code = ?, updated_at = ?,
					error = 'the hub stopped during the last allowed attempt; if the message went out, the session manager''s events will mark it sent'
					WHERE cliente_id = ? AND id = ? AND state = 'sending'`, FailInterrupted, nowMS, d.cliente, m.ID)
				return err
			}
		} else {
			if m.Campaign != 0 {
				var state string
				if err := tx.QueryRow(ctx, `SELECT state FROM sender_campaigns WHERE id = ?`, m.Campaign).Scan(&state); err != nil {
					return fmt.Errorf("campaign state: %w", err)
				}
				if state != CampaignRunning {
					return nil
				}
			}
			if m.Lead != 0 && m.Campaign != 0 {
				var opted int
				err := tx.QueryRow(ctx, `SELECT opted_out FROM leads WHERE id = ?`, m.Lead).Scan(&opted)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("lead opt-out: %w", err)
				}
				if opted != 0 {
					_, err := tx.Exec(ctx, `UPDATE sender_messages SET state = 'failed', error_code = ?, error = 'the contact opted out after the campaign was created',
						updated_at = ? WHERE cliente_id = ? AND id = ? AND state = 'queued'`, FailOptedOut, nowMS, d.cliente, m.ID)
					return err
				}
			}
		}
		res, err := tx.Exec(ctx, `UPDATE sender_messages SET state = 'sending', attempts = attempts + 1, updated_at = ?,
			first_attempt_at = CASE WHEN first_attempt_at = 0 THEN ? ELSE first_attempt_at END
			WHERE cliente_id = ? AND id = ? AND state = ?`, nowMS, nowMS, d.cliente, m.ID, c.state)
		if err != nil {
			return fmt.Errorf("mark sending: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		if m.Campaign != 0 && m.firstAttemptAt == 0 {
			day := dayKey(now, d.s.location(cfg, d.cliente))
			if _, err := tx.Exec(ctx, `INSERT INTO sender_clientes (cliente_id, day, day_count) VALUES (?, ?, 1)
				ON CONFLICT (cliente_id) DO UPDATE SET day_count = CASE WHEN sender_clientes.day = excluded.day THEN sender_clientes.day_count + 1 ELSE 1 END,
					day = excluded.day`, d.cliente, day); err != nil {
				return fmt.Errorf("count daily cap: %w", err)
			}
			if _, err := tx.Exec(ctx, `UPDATE sender_campaigns SET day_count = CASE WHEN day = ? THEN day_count + 1 ELSE 1 END, day = ? WHERE id = ?`,
				day, day, m.Campaign); err != nil {
				return fmt.Errorf("count campaign daily cap: %w", err)
			}
		}
		m.State = StateSending
		m.Attempts++
		out = &m
		return nil
	})
	return out, err
}

// send asks the session manager to send m and records the outcome.
func (d *dispatcher) send(ctx context.Context, m *Message, p Pacing) {
	res, err := d.s.gw.Send(ctx, d.cliente, Outgoing{ID: m.ID, To: m.To, Text: m.Text})
	if err != nil && ctx.Err() != nil {
		return // the hub is stopping: the message stays "sending" and is resent at the next start
	}
	// Recording must not be cut short by shutdown once the answer is in.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err == nil {
		d.recordSent(rctx, m, res)
		return
	}
	se := classify(err)
	now := d.s.now()
	nowMS := hub.Millis(now)
	switch se.Kind {
	case KindPermanent:
		d.log.Info("message failed", "message_id", m.ID, "code", se.Code, "err", se.Message)
		d.exec(rctx, `UPDATE sender_messages SET state = 'failed', error = ?, error_code = ?, updated_at = ?
			WHERE cliente_id = ? AND id = ? AND state = 'sending'`, se.Message, se.Code, nowMS, d.cliente, m.ID)
	case KindWait, KindBusy:
		retry := now
		if se.Kind == KindBusy {
			retry = now.Add(busyRetry)
		}
		// Not an attempt: give it back.
		d.exec(rctx, `UPDATE sender_messages SET state = 'queued', attempts = attempts - 1, next_at = ?, error = ?, updated_at = ?
			WHERE cliente_id = ? AND id = ? AND state = 'sending'`, hub.Millis(retry), se.Message, nowMS, d.cliente, m.ID)
		if se.Kind == KindWait {
			d.mu.Lock()
			if !now.Before(d.waitUntil) { // several sends in flight fail together: one step
				d.waitStep = min(max(d.waitStep*2, time.Second), d.s.waitMax)
				d.waitUntil = now.Add(d.waitStep)
			}
			d.status = "waiting for the session manager: " + se.Message
			step := d.waitStep
			d.mu.Unlock()
			d.log.Debug("session manager unavailable; waiting", "wait", step, "err", se.Message)
		}
	default:
		// Every failure also slows the whole cliente down for a moment, so a session manager
		// in trouble is not hammered by the messages behind this one.
		d.mu.Lock()
		if d.failures == 0 {
			d.failSince = now
		}
		d.failures++
		failures, since := d.failures, now.Sub(d.failSince)
		if !now.Before(d.waitUntil) {
			d.waitStep = min(max(d.waitStep*2, time.Second), d.s.waitMax)
			d.waitUntil = now.Add(d.waitStep)
		}
		d.mu.Unlock()
		if m.Attempts >= p.MaxAttempts {
			d.log.Warn("message failed after its last attempt", "message_id", m.ID, "attempts", m.Attempts, "err", se.Message)
			d.exec(rctx, `UPDATE sender_messages SET state = 'failed', error = ?, error_code = ?, updated_at = ?
				WHERE cliente_id = ? AND id = ? AND state = 'sending'`,
				fmt.Sprintf("gave up after %d attempts: %s", m.Attempts, se.Message), FailAttempts, nowMS, d.cliente, m.ID)
		} else {
			delay := d.backoff(m.Attempts)
			d.log.Info("send failed; will retry", "message_id", m.ID, "attempt", m.Attempts, "retry_in", delay, "err", se.Message)
			d.exec(rctx, `UPDATE sender_messages SET state = 'queued', next_at = ?, error = ?, updated_at = ?
				WHERE cliente_id = ? AND id = ? AND state = 'sending'`, hub.Millis(now.Add(delay)), se.Message, nowMS, d.cliente, m.ID)
		}
		if failures >= failuresToPause && since >= d.s.failureWindow {
			if _, err := d.s.pause(rctx, d.s.db, d.cliente, fmt.Sprintf("%d sends failed in a row (last: %s); check the number on the phone, then resume", failures, se.Message)); err != nil {
				d.log.Error("pause sending", "err", err)
			}
		}
	}
}

// backoff is the wait before attempt n+1: retryBase doubled per attempt, ±20%, capped.
func (d *dispatcher) backoff(n int) time.Duration {
	b := d.s.retryBase << min(max(n-1, 0), 16)
	b = min(b, maxRetryDelay)
	return time.Duration(float64(b) * (0.8 + 0.4*d.s.rand()))
}

func (d *dispatcher) exec(ctx context.Context, q string, args ...any) {
	if _, err := d.s.db.Exec(ctx, q, args...); err != nil {
		d.log.Error("record send result", "err", err)
	}
}

func (d *dispatcher) recordSent(ctx context.Context, m *Message, res Result) {
	at := res.Timestamp
	if at.IsZero() {
		at = d.s.now()
	}
	d.mu.Lock()
	d.failures, d.waitStep = 0, 0
	d.lastSent = at
	d.mu.Unlock()
	err := d.s.db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE sender_messages SET state = 'sent', sent_at = ?, error = '', error_code = '', updated_at = ?
			WHERE cliente_id = ? AND id = ? AND state IN ('queued', 'sending', 'failed')`, hub.Millis(at), hub.Millis(d.s.now()), d.cliente, m.ID); err != nil {
			return err
		}
		// The conversation view gets the text (the session manager's sent event has none).
		return events.RecordOutgoing(ctx, tx, d.cliente, m.To, m.ID, m.Text, at)
	})
	if err != nil {
		d.log.Error("record sent message; the session manager's sent event will mark it", "message_id", m.ID, "err", err)
	}
}
