package sender

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestPacerNoDrift sends 600 messages at 60 a minute, each taking a random 0-400ms after
// its slot before it actually goes: the 600th still goes at slot 599, not 599 slots plus the
// sum of the delays.
func TestPacerNoDrift(t *testing.T) {
	p := Pacing{PerMinute: 60}
	var pc pacer
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	now := t0
	rng := rand.New(rand.NewPCG(1, 2))
	var last time.Time
	for i := range 600 {
		slot := pc.next(now, p)
		now = later(now, slot)
		pc.commit(now, p, rng.Float64())
		last = now
		if want := t0.Add(time.Duration(i) * time.Second); now.Sub(want) > 400*time.Millisecond || now.Before(want) {
			t.Fatalf("message %d went at +%v, want +%v (within the 400ms latency)", i, now.Sub(t0), want.Sub(t0))
		}
		now = now.Add(time.Duration(rng.Int64N(int64(400 * time.Millisecond)))) // the send itself
	}
	if got, want := last.Sub(t0), 599*time.Second; got.Round(100*time.Millisecond) > want+400*time.Millisecond {
		t.Errorf("600 messages took %v, want %v: the schedule drifted", got, want)
	}
}

func TestPacerGapsAndRestart(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	t.Run("gap longer than the interval wins", func(t *testing.T) {
		p := Pacing{PerMinute: 60, MinGap: 2 * time.Second, MaxGap: 4 * time.Second}
		var pc pacer
		pc.commit(t0, p, 0.5) // gap 3s
		if got := pc.next(t0, p).Sub(t0); got != 3*time.Second {
			t.Errorf("next after a 3s gap = +%v, want +3s", got)
		}
	})
	t.Run("gap shorter than the interval", func(t *testing.T) {
		p := Pacing{PerMinute: 30, MinGap: 500 * time.Millisecond, MaxGap: time.Second}
		var pc pacer
		pc.commit(t0, p, 0.9)
		if got := pc.next(t0, p).Sub(t0); got != 2*time.Second {
			t.Errorf("next = +%v, want +2s (the rate's slot)", got)
		}
	})
	t.Run("no burst after idling", func(t *testing.T) {
		p := Pacing{PerMinute: 60}
		var pc pacer
		pc.commit(t0, p, 0)
		later := t0.Add(10 * time.Minute)
		if got := pc.next(later, p); !got.Equal(later) {
			t.Fatalf("next after 10 idle minutes = %v, want now", got)
		}
		pc.commit(later, p, 0)
		if got := pc.next(later, p).Sub(later); got != time.Second {
			t.Errorf("the message after that waits %v, want 1s (no catching up)", got)
		}
	})
	t.Run("unpaced", func(t *testing.T) {
		var pc pacer
		pc.commit(t0, Pacing{}, 0.7)
		if got := pc.next(t0, Pacing{}); !got.Equal(t0) {
			t.Errorf("next = %v, want now", got)
		}
	})
}

func TestQuietHours(t *testing.T) {
	ba, err := time.LoadLocation("America/Argentina/Buenos_Aires") // UTC-3, no DST
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	night := []Window{{22 * 60, 8 * 60}}
	day := []Window{{12 * 60, 14 * 60}}
	at := func(h, m int) time.Time { return time.Date(2026, 3, 2, h, m, 0, 0, ba) }
	for _, tt := range []struct {
		name    string
		ws      []Window
		t       time.Time
		want    bool
		wantEnd time.Time
	}{
		{"before night", night, at(21, 59), false, time.Time{}},
		{"night start", night, at(22, 0), true, at(32, 0)},
		{"after midnight", night, at(3, 0), true, at(8, 0)},
		{"morning", night, at(8, 0), false, time.Time{}},
		{"lunch", day, at(13, 0), true, at(14, 0)},
		{"chained windows", []Window{{22 * 60, 8 * 60}, {8 * 60, 9 * 60}}, at(23, 0), true, at(33, 0)},
		{"empty window", []Window{{0, 0}}, at(12, 0), false, time.Time{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in, end := quietUntil(tt.t.In(time.UTC), tt.ws, ba)
			if in != tt.want || !end.Equal(tt.wantEnd) {
				t.Errorf("quietUntil(%v) = %v, %v; want %v, %v", tt.t, in, end, tt.want, tt.wantEnd)
			}
		})
	}
}

func TestEstimate(t *testing.T) {
	ba, err := time.LoadLocation("America/Argentina/Buenos_Aires")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	at := func(d, h, m int) time.Time { return time.Date(2026, 3, d, h, m, 0, 0, ba) }
	night := []Window{{22 * 60, 8 * 60}}
	for _, tt := range []struct {
		name            string
		start           time.Time
		n               int
		per             time.Duration
		capLeft, capDay int
		quiet           []Window
		want            time.Time
	}{
		{"same hour", at(2, 10, 0), 60, 3 * time.Second, 0, 0, nil, at(2, 10, 0).Add(59 * 3 * time.Second)},
		{"into the quiet night", at(2, 21, 0), 180, 30 * time.Second, 0, 0, night, at(3, 8, 29).Add(30 * time.Second)},
		{"daily cap", at(2, 10, 0), 2500, time.Second, 500, 1000, nil, at(4, 0, 0).Add(999 * time.Second)},
		{"cap used up today", at(2, 10, 0), 10, time.Second, 0, 1000, nil, at(3, 0, 0).Add(9 * time.Second)},
		{"cap and quiet", at(2, 10, 0), 1500, time.Second, 1000, 1000, night, at(3, 8, 0).Add(499 * time.Second)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := estimate(tt.start, tt.n, tt.per, tt.capLeft, tt.capDay, tt.quiet, ba)
			if !got.Equal(tt.want) {
				t.Errorf("estimate = %v, want %v", got.In(ba), tt.want.In(ba))
			}
		})
	}
}
