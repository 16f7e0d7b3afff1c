package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub/api"
	"github.com/leadmaster/leadmaster/internal/hub/auth"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/hub/proxy"
	"github.com/leadmaster/leadmaster/internal/hub/sender"
	"github.com/leadmaster/leadmaster/internal/hub/web"
	"github.com/leadmaster/leadmaster/internal/hub/webhook"
	"github.com/leadmaster/leadmaster/internal/logging"
	"github.com/leadmaster/leadmaster/internal/sd"
	"github.com/leadmaster/leadmaster/internal/store"
	"github.com/leadmaster/leadmaster/internal/version"
)

// shutdownGrace bounds the graceful drain; TimeoutStopSec in the unit is longer.
const shutdownGrace = 20 * time.Second

// openDB opens and migrates the hub database: hub.database, else hub.db in the state directory.
func openDB(ctx context.Context, cfg *config.Config, getenv func(string) string) (*store.DB, string, error) {
	dsn := cfg.Hub.Database
	if dsn == "" {
		dsn = filepath.Join(cfg.HubStateDir(getenv), "hub.db")
	}
	db, err := store.Open(ctx, dsn, "")
	if err != nil {
		return nil, dsn, fmt.Errorf("open hub database: %w", err)
	}
	if err := api.Migrate(ctx, db); err != nil {
		db.Close()
		return nil, dsn, err
	}
	return db, dsn, nil
}

// eventSource reads a session manager's event log through the pool (events.Source).
type eventSource struct{ pool *proxy.Pool }

func (s eventSource) Events(ctx context.Context, id string, after int64, wait time.Duration) (events.Batch, error) {
	var b events.Batch
	err := s.pool.Call(ctx, id, http.MethodGet, fmt.Sprintf("/events?after=%d&limit=200&wait=%s", after, wait), nil, &b, wait+15*time.Second)
	return b, err
}

func contactFetcher(pool *proxy.Pool) contacts.Fetcher {
	return func(ctx context.Context, id string) ([]contacts.WAContact, error) {
		var resp struct {
			Contacts []contacts.WAContact `json:"contacts"`
		}
		err := pool.Call(ctx, id, http.MethodGet, "/contacts", nil, &resp, 45*time.Second)
		return resp.Contacts, err
	}
}

// beat is a loop's last sign of life.
type beat struct{ at atomic.Int64 }

func (b *beat) mark() { b.at.Store(time.Now().UnixNano()) }

func (b *beat) check(name string, limit time.Duration) error {
	if since := time.Since(time.Unix(0, b.at.Load())); since > limit {
		return fmt.Errorf("%s loop silent for %s", name, since.Round(time.Second))
	}
	return nil
}

func (a *app) serve(ctx context.Context, cfgPath, listen string, cfg *config.Config) error {
	if a.getenv("GOGC") == "" {
		// The hub's live heap is a few MiB, so the default GC target has it collecting
		// every few thousand requests; a 4x target costs tens of MiB and buys about 15%
		// of /health throughput on 2 cores. $GOGC still wins.
		debug.SetGCPercent(400)
	}
	level := new(slog.LevelVar)
	level.Set(logging.ParseLevel(cfg.Log.Level))
	log := logging.New(level, a.getenv, a.stderr, "central-hub")
	notify := sd.NewNotifier(log)

	var current atomic.Pointer[config.Config]
	current.Store(cfg)

	db, dsn, err := openDB(ctx, cfg, a.getenv)
	if err != nil {
		return err
	}
	defer db.Close()

	pool := proxy.New(log, proxy.Options{})
	pool.Configure(cfg, a.getenv)
	authSvc := auth.New(db, auth.Options{TTL: func() time.Duration { return current.Load().Hub.SessionTTL.Duration }})
	hooks := webhook.New(db, current.Load, log)
	evStore := events.NewStore(db, hooks)
	outbox := sender.New(sender.Options{DB: db, Config: current.Load, Gateway: sender.PoolGateway(pool), Log: log})
	evStore.AddSink(outbox)
	consumer := events.NewConsumer(evStore, eventSource{pool}, log)
	consumer.OnStored = func(string, []events.Stored) { hooks.Wake() }
	people := contacts.New(db, contactFetcher(pool), log)

	var syncBeat, hookBeat beat
	syncBeat.mark()
	hookBeat.mark()
	health := func(ctx context.Context) error {
		if err := db.PingContext(ctx); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		if err := db.QueryRow(ctx, `SELECT 1`).Scan(new(int)); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		return errors.Join(consumer.Check(), syncBeat.check("contact sync", 2*time.Minute), hookBeat.check("webhook", 2*time.Minute))
	}

	srv := api.New(api.Deps{
		Log: log, Config: current.Load, Auth: authSvc, Pool: pool, Contacts: people, Events: evStore, Webhooks: hooks, Sender: outbox,
		Health: health,
		UI:     web.New(web.Deps{Log: log, Config: current.Load, Auth: authSvc, Sessions: pool, Contacts: people, Events: evStore, Sender: outbox}),
		Metrics: func(m *api.MetricsWriter) {
			m.Sample("leadmaster_hub_events_stored_total", "counter", "Session-manager events stored since start.", float64(consumer.Consumed()))
			ok, failed := hooks.Sent()
			m.Sample("leadmaster_hub_webhook_attempts_total", "counter", "Webhook delivery attempts since start.", float64(ok), "result", "ok")
			m.Sample("leadmaster_hub_webhook_attempts_total", "counter", "Webhook delivery attempts since start.", float64(failed), "result", "failed")
			if counts, err := hooks.Counts(context.Background()); err == nil {
				for _, st := range []string{webhook.StatePending, webhook.StateDelivered, webhook.StateDead} {
					m.Sample("leadmaster_hub_webhook_outbox", "gauge", "Webhook outbox entries by state.", float64(counts[st]), "state", st)
				}
			}
			outbox.Metrics(context.Background(), m.Sample)
			for id, st := range consumer.States() {
				v := 0.0
				if st == "following" {
					v = 1
				}
				m.Sample("leadmaster_hub_event_stream_up", "gauge", "1 while the hub follows the cliente's event log.", v, "cliente", id)
			}
		},
	})

	ls := a.listeners
	if ls == nil {
		sls, err := sd.Listeners(listen)
		if err != nil {
			return err
		}
		for _, l := range sls {
			ls = append(ls, l)
		}
	}
	hs := srv.HTTPServer()
	// Stop without dropping a request: stop accepting (systemd keeps the socket), answer what
	// was accepted, then close idle connections.
	drain := sd.NewDrainer(hs)
	serveErr := make(chan error, len(ls))
	var addrs []net.Addr
	for _, l := range ls {
		addrs = append(addrs, l.Addr())
		go func() { serveErr <- hs.Serve(drain.Listener(l)) }()
	}

	loopsCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	var loops sync.WaitGroup
	consumer.Reconcile(loopsCtx, cfg.ClienteIDs())
	loops.Go(func() { hooks.Run(loopsCtx, hookBeat.mark) })
	loops.Go(func() { outbox.Run(loopsCtx) })
	loops.Go(func() {
		people.RunSync(loopsCtx, func() []string { return current.Load().ClienteIDs() },
			func() time.Duration { return current.Load().Hub.ContactSyncInterval.Duration }, 30*time.Second, syncBeat.mark)
	})
	loops.Go(func() { notify.RunWatchdog(loopsCtx, health) })

	status := func() string {
		following := 0
		for _, st := range consumer.States() {
			if st == "following" {
				following++
			}
		}
		line := fmt.Sprintf("serving on %s; %d clientes, %d event streams followed", addrList(addrs), len(current.Load().Clientes), following)
		if counts, err := hooks.Counts(context.Background()); err == nil && counts[webhook.StatePending]+counts[webhook.StateDead] > 0 {
			line += fmt.Sprintf("; webhooks: %d queued, %d dead", counts[webhook.StatePending], counts[webhook.StateDead])
		}
		if n, err := outbox.Queued(context.Background()); err == nil && n > 0 {
			line += fmt.Sprintf("; outbox: %d queued", n)
		}
		return line
	}
	log.Info("central-hub serving", "version", version.Version, "addrs", addrList(addrs), "database", redact(dsn), "clientes", len(cfg.Clientes))
	notify.Ready()
	notify.Status(status())
	if a.ready != nil {
		a.ready(addrs)
	}

	reload := a.reload
	if reload == nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		reload = hup
	}
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()

	var runErr error
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping: draining requests", "grace", shutdownGrace)
			break wait
		case err := <-serveErr:
			runErr = fmt.Errorf("serve: %w", err)
			log.Error("server failed", "err", err)
			break wait
		case <-tick.C:
			notify.Status(status())
		case <-reload:
			notify.Reloading()
			next, err := config.Load(cfgPath)
			if err != nil {
				log.Error("reload failed; keeping the previous configuration", "err", err)
				notify.Status("reload failed (see journal); still " + status())
				notify.Ready()
				continue
			}
			if next.Hub.Database != current.Load().Hub.Database || next.Hub.Listen != current.Load().Hub.Listen {
				log.Warn("hub.database and hub.listen apply only after a restart")
			}
			level.Set(logging.ParseLevel(next.Log.Level))
			current.Store(next)
			pool.Configure(next, a.getenv)
			consumer.Reconcile(loopsCtx, next.ClienteIDs())
			log.Info("configuration reloaded", "clientes", len(next.Clientes))
			notify.Ready()
			notify.Status(status())
		}
	}

	notify.Stopping()
	notify.Status("stopping")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	if err := drain.Shutdown(sctx); err != nil {
		log.Warn("graceful shutdown cut short", "err", err)
		hs.Close()
	}
	cancel()
	stopLoops()
	consumer.Stop()
	loops.Wait()
	log.Info("central-hub stopped")
	return runErr
}

func addrList(addrs []net.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func redact(dsn string) string {
	if store.IsPostgres(dsn) {
		if i := strings.Index(dsn, "@"); i > 0 {
			if j := strings.Index(dsn, "://"); j > 0 && j < i {
				return dsn[:j+3] + "…" + dsn[i:]
			}
		}
	}
	return dsn
}
