package auth

import (
	"sync"
	"time"
)

// throttle counts failed logins per key (a username or an address) in a sliding window. It
// lives in memory: a restart forgets it, which costs an attacker a restart per few guesses.
type throttle struct {
	mu     sync.Mutex
	window time.Duration
	max    int
	fails  map[string][]time.Time
}

func newThrottle(max int, window time.Duration) *throttle {
	return &throttle{window: window, max: max, fails: map[string][]time.Time{}}
}

// blocked returns how long key must wait, or 0.
func (t *throttle) blocked(key string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.prune(key, now)
	if len(f) < t.max {
		return 0
	}
	return f[0].Add(t.window).Sub(now)
}

func (t *throttle) fail(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fails[key] = append(t.prune(key, now), now)
	if len(t.fails) > 100_000 { // a flood of distinct keys: forget rather than grow without bound
		t.fails = map[string][]time.Time{}
	}
}

func (t *throttle) reset(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.fails, key)
}

func (t *throttle) prune(key string, now time.Time) []time.Time {
	f := t.fails[key]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= t.window {
		i++
	}
	f = f[i:]
	if len(f) == 0 {
		delete(t.fails, key)
		return nil
	}
	t.fails[key] = f
	return f
}
