package sender

import (
	"fmt"
	"slices"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
)

// Pacing is a pace in force: a cliente's (leadmaster.toml [sender] merged with
// [clientes.ID.pacing]) or the extra limits a campaign sets for itself.
type Pacing struct {
	PerMinute      int
	MinGap, MaxGap time.Duration
	DailyCap       int
	Quiet          []Window
	MaxAttempts    int
}

// Window is a daily quiet period in minutes after midnight; it may wrap midnight
// (22:00-08:00). From == To is no window at all.
type Window struct{ From, To int }

// clientePacing returns cliente's pacing from cfg.
func clientePacing(cfg *config.Config, cliente string) Pacing {
	return fromConfig(cfg.Merged(cliente))
}

func fromConfig(c config.Pacing) Pacing {
	p := Pacing{PerMinute: c.PerMinute, MinGap: c.MinGap.Duration, MaxGap: c.MaxGap.Duration, DailyCap: c.DailyCap, MaxAttempts: c.MaxAttempts}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 1
	}
	if p.MaxGap < p.MinGap {
		p.MaxGap = p.MinGap
	}
	if c.QuietHours != "" {
		if from, to, err := config.ParseQuietHours(c.QuietHours); err == nil && from != to {
			p.Quiet = []Window{{from, to}}
		}
	}
	return p
}

// Unpaced reports whether p sets no rate and no gap (messages go as fast as the session
// manager takes them).
func (p Pacing) Unpaced() bool { return p.PerMinute == 0 && p.MaxGap == 0 }

// interval is the time between two slots of the rate (0 without a rate).
func (p Pacing) interval() time.Duration {
	if p.PerMinute <= 0 {
		return 0
	}
	return time.Minute / time.Duration(p.PerMinute)
}

// effective is the average time per message p allows: the slower of the rate and the mean gap.
func (p Pacing) effective() time.Duration {
	return max(p.interval(), (p.MinGap+p.MaxGap)/2)
}

// pacer spaces one stream of messages: slots on an absolute schedule at the configured rate
// (anchor + k·interval, so per-send latency never accumulates into drift), and a random gap
// of min_gap..max_gap after each message. A message goes at the later of its slot and the end
// of its gap. After falling behind by more than one slot (an idle queue, a slow send, a wait
// for the session manager) the schedule starts afresh from now rather than catching up in a
// burst.
type pacer struct {
	anchor time.Time     // slot 0
	k      int64         // slots used since anchor
	iv     time.Duration // the interval the anchor was set with
	last   time.Time     // when the last message went
	gap    time.Duration // the gap drawn for the next message
}

// next returns when the next message may go under p.
func (pc *pacer) next(now time.Time, p Pacing) time.Time {
	t := now
	if iv := p.interval(); iv > 0 && !pc.anchor.IsZero() && iv == pc.iv {
		slot := pc.anchor.Add(time.Duration(pc.k) * iv)
		if now.Sub(slot) <= iv {
			t = later(t, slot)
		}
	}
	if !pc.last.IsZero() && p.MaxGap > 0 {
		gap := min(max(pc.gap, p.MinGap), p.MaxGap) // a reload may have moved the bounds
		t = later(t, pc.last.Add(gap))
	}
	return t
}

// commit records that a message went at, and draws the gap before the next one (r in [0,1)).
func (pc *pacer) commit(at time.Time, p Pacing, r float64) {
	if iv := p.interval(); iv > 0 {
		slot := pc.anchor.Add(time.Duration(pc.k) * iv)
		if pc.anchor.IsZero() || iv != pc.iv || at.Sub(slot) > iv || at.Before(slot) {
			pc.anchor, pc.k, pc.iv = at, 0, iv
		}
		pc.k++
	} else {
		pc.anchor, pc.k, pc.iv = time.Time{}, 0, 0
	}
	pc.last = at
	pc.gap = p.MinGap + time.Duration(r*float64(p.MaxGap-p.MinGap))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// quietUntil reports whether t falls in one of ws (in loc) and, if so, when the quiet ends
// (the latest end when windows overlap).
func quietUntil(t time.Time, ws []Window, loc *time.Location) (bool, time.Time) {
	var end time.Time
	for range 8 { // windows that chain into each other; 8 rounds are plenty
		in := false
		for _, w := range ws {
			if ok, e := w.until(t, loc); ok {
				in, t = true, e
			}
		}
		if !in {
			return !end.IsZero(), end
		}
		end = t
	}
	return true, end
}

// until reports whether t is inside w and when w ends.
func (w Window) until(t time.Time, loc *time.Location) (bool, time.Time) {
	if w.From == w.To {
		return false, time.Time{}
	}
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	y, mo, d := lt.Date()
	at := func(day, minute int) time.Time { return time.Date(y, mo, d+day, minute/60, minute%60, 0, 0, loc) }
	if w.From < w.To {
		if m >= w.From && m < w.To {
			return true, at(0, w.To)
		}
		return false, time.Time{}
	}
	switch {
	case m >= w.From:
		return true, at(1, w.To)
	case m < w.To:
		return true, at(0, w.To)
	}
	return false, time.Time{}
}

// String writes w as 22:00-08:00.
func (w Window) String() string {
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.From/60, w.From%60, w.To/60, w.To%60)
}

// dayKey names t's calendar day in loc, for daily caps.
func dayKey(t time.Time, loc *time.Location) string { return t.In(loc).Format("2006-01-02") }

// nextMidnight is the start of the day after t's in loc.
func nextMidnight(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

// nominalUnpaced is the time per message assumed for estimates when nothing slows sending
// but the session manager itself (a few hundred messages a second on the fake server; real
// WhatsApp is slower).
const nominalUnpaced = 20 * time.Millisecond

// estimate is when the last of remaining messages should go, starting no earlier than start,
// one every per (0: nominalUnpaced), at most capLeft more today and capPerDay a day after
// that (0: no cap), never in quiet windows. It looks ten years ahead at most.
func estimate(start time.Time, remaining int, per time.Duration, capLeft, capPerDay int, quiet []Window, loc *time.Location) time.Time {
	if remaining <= 0 {
		return start
	}
	if per <= 0 {
		per = nominalUnpaced
	}
	t := start
	if capPerDay > 0 && capLeft <= 0 {
		t, capLeft = nextMidnight(t, loc), capPerDay
	}
	for day := 0; day < 3660; day++ {
		end := nextMidnight(t, loc)
		for _, iv := range active(t, end, quiet, loc) {
			n := int((iv[1].Sub(iv[0]) + per - 1) / per)
			if capPerDay > 0 {
				n = min(n, capLeft)
			}
			if remaining <= n {
				return iv[0].Add(time.Duration(remaining-1) * per)
			}
			remaining -= n
			if capPerDay > 0 {
				if capLeft -= n; capLeft <= 0 {
					break
				}
			}
		}
		t, capLeft = end, capPerDay
	}
	return time.Time{}
}

// active splits [from, to) into the intervals outside the quiet windows.
func active(from, to time.Time, quiet []Window, loc *time.Location) [][2]time.Time {
	var out [][2]time.Time
	t := from
	for t.Before(to) {
		if in, end := quietUntil(t, quiet, loc); in {
			t = end
			continue
		}
		// The next quiet start after t, if before to.
		next := to
		for _, w := range quiet {
			if w.From == w.To {
				continue
			}
			y, m, d := t.In(loc).Date()
			for day := 0; day <= 1; day++ {
				s := time.Date(y, m, d+day, w.From/60, w.From%60, 0, 0, loc)
				if s.After(t) && s.Before(next) {
					next = s
				}
			}
		}
		out = append(out, [2]time.Time{t, next})
		t = next
	}
	return slices.Clip(out)
}
