package events

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Source reads a cliente's event log: GET /events?after=SEQ&wait=WAIT on its session manager.
type Source interface {
	Events(ctx context.Context, cliente string, after int64, wait time.Duration) (Batch, error)
}

// Consumer runs one loop per cliente that follows its event log into the Store.
type Consumer struct {
	store *Store
	src   Source
	log   *slog.Logger
	// Wait is the long-poll wait asked of the session manager.
	Wait time.Duration
	// MaxBackoff caps the pause after a failure (the session manager down, the store busy).
	MaxBackoff time.Duration
	// OnStored is called after a batch commits, with the events it stored.
	OnStored func(cliente string, evs []Stored)

	consumed atomic.Int64
	mu       sync.Mutex
	loops    map[string]*loop
}

type loop struct {
	cancel context.CancelFunc
	done   chan struct{}
	beat   atomic.Int64 // unix nanos of the last sign of life
	state  atomic.Value // string: "following", or why not
}

// NewConsumer returns a Consumer; call Reconcile to start loops.
func NewConsumer(st *Store, src Source, log *slog.Logger) *Consumer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Consumer{store: st, src: src, log: log, Wait: 25 * time.Second, MaxBackoff: 30 * time.Second, loops: map[string]*loop{}}
}

// Reconcile runs a loop for each of ids and stops loops for clientes no longer listed.
func (c *Consumer) Reconcile(ctx context.Context, ids []string) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, l := range c.loops {
		if !want[id] {
			l.cancel()
			<-l.done
			delete(c.loops, id)
			c.log.Info("event stream stopped", "cliente_id", id)
		}
	}
	for _, id := range ids {
		if _, ok := c.loops[id]; ok {
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		l := &loop{cancel: cancel, done: make(chan struct{})}
		l.beat.Store(time.Now().UnixNano())
		l.state.Store("starting")
		c.loops[id] = l
		go c.run(lctx, id, l)
	}
}

// Stop ends every loop and waits for them.
func (c *Consumer) Stop() { c.Reconcile(context.Background(), nil) }

// Consumed returns how many events have been stored since start.
func (c *Consumer) Consumed() int64 { return c.consumed.Load() }

// Check reports an error when a loop has shown no sign of life for too long (stuck rather than
// merely waiting on a session manager that is down, which still beats).
func (c *Consumer) Check() error {
	limit := 2*(c.Wait+15*time.Second) + c.MaxBackoff
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for id, l := range c.loops {
		if since := now.Sub(time.Unix(0, l.beat.Load())); since > limit {
			return fmt.Errorf("event loop for cliente %s stuck for %s", id, since.Round(time.Second))
		}
	}
	return nil
}

// States returns each loop's state line, by cliente.
func (c *Consumer) States() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for id, l := range c.loops {
		out[id], _ = l.state.Load().(string)
	}
	return out
}

// Clientes returns the clientes being followed, sorted.
func (c *Consumer) Clientes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.loops))
	for id := range c.loops {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (c *Consumer) run(ctx context.Context, id string, l *loop) {
	defer close(l.done)
	log := c.log.With("cliente_id", id)
	backoff := time.Second
	lastErr := ""
	for ctx.Err() == nil {
		n, err := c.step(ctx, id, l)
		l.beat.Store(time.Now().UnixNano())
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if lastErr != "" {
				log.Info("event stream resumed")
				lastErr = ""
			}
			l.state.Store("following")
			backoff = time.Second
			if n == 0 {
				// An empty answer before the wait ran out (a session manager that does not
				// long-poll, or one shutting down) must not become a busy loop.
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
			continue
		}
		if msg := err.Error(); msg != lastErr {
			log.Warn("event stream interrupted; retrying", "err", err)
			lastErr = msg
		}
		l.state.Store(err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.MaxBackoff)
	}
}

// step reads one batch and stores it. A panic (a bug) is turned into an error so the loop,
// and the other clientes' loops, carry on.
func (c *Consumer) step(ctx context.Context, id string, l *loop) (n int, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
			c.log.Error("event loop panic", "cliente_id", id, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	after, logID, err := c.store.Position(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("read cursor: %w", err)
	}
	b, err := c.src.Events(ctx, id, after, c.Wait)
	if err != nil {
		return 0, err
	}
	l.beat.Store(time.Now().UnixNano())
	if b.LogID != "" && b.LogID != logID {
		reset, err := c.store.Rebase(ctx, id, b.LogID)
		if err != nil {
			return 0, fmt.Errorf("record event log id: %w", err)
		}
		if reset {
			// A cursor into the old log means nothing in the new one: read it from the start.
			c.log.Warn("the session manager's event log was replaced (state wiped or moved); reading the new one from its start", "cliente_id", id)
			return 0, nil
		}
	}
	if len(b.Events) == 0 {
		return 0, nil
	}
	stored, err := c.store.Apply(ctx, id, b.Events)
	if err != nil {
		return 0, fmt.Errorf("store events: %w", err)
	}
	c.consumed.Add(int64(len(stored)))
	if len(stored) > 0 && c.OnStored != nil {
		c.OnStored(id, stored)
	}
	return len(b.Events), nil
}
