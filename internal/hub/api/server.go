// Package api is central-hub's HTTP server: every route (listed in routes.go), the auth and
// tenant checks in front of them, and the JSON in and out.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/hub/auth"
	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/hub/proxy"
	"github.com/leadmaster/leadmaster/internal/hub/sender"
	"github.com/leadmaster/leadmaster/internal/hub/webhook"
)

// Deps are what the server is built from.
type Deps struct {
	Log *slog.Logger
	// Config returns the configuration in force (it changes on reload).
	Config   func() *config.Config
	Auth     *auth.Service
	Pool     *proxy.Pool
	Contacts *contacts.Service
	Events   *events.Store
	Webhooks *webhook.Service
	// Sender is the outbox and campaigns (nil: the sending routes answer 503).
	Sender *sender.Service
	// Health is the real health check (database, loops); /health caches its answer briefly.
	Health func(context.Context) error
	// UI serves the web UI at / (nil: a short JSON note until the UI lands).
	UI http.Handler
	// Metrics are extra Prometheus lines appended to /metrics.
	Metrics func(w *MetricsWriter)
}

// Server is the hub's HTTP API.
type Server struct {
	Deps
	log     *slog.Logger
	handler http.Handler
	mux     *http.ServeMux
	stats   stats

	healthMu   sync.Mutex
	healthLast atomic.Pointer[healthResult]
	healthTTL  time.Duration
	// statusWait bounds a status probe; proxyTimeout and slowTimeout bound proxied requests.
	statusWait, proxyTimeout, slowTimeout time.Duration
}

// New builds the server and its routes.
func New(d Deps) *Server {
	s := &Server{Deps: d, log: d.Log, healthTTL: time.Second,
		statusWait: 3 * time.Second, proxyTimeout: proxyTimeout, slowTimeout: proxySlowTimeout}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mux = s.buildMux()
	s.handler = s.recoverer(s.count(s.mux))
	return s
}

// ServeHTTP makes Server an http.Handler. A healthy GET /health, polled by monitors and load
// balancers, is answered before the router and middleware (it needs neither).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" && r.Method == http.MethodGet && s.health(r.Context()) == nil {
		writeHealthy(w)
		s.stats.byClass[2].Add(1)
		return
	}
	s.handler.ServeHTTP(w, r)
}

// HTTPServer returns an *http.Server with the hub's timeouts around s. WriteTimeout is left
// unset because the proxied /events long-poll and CSV imports take their own bounded time.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

type healthResult struct {
	at  time.Time
	err error
}

// health runs the health check at most once per healthTTL; callers meanwhile get the last
// result without waiting.
func (s *Server) health(ctx context.Context) error {
	if last := s.healthLast.Load(); last != nil && time.Since(last.at) < s.healthTTL {
		return last.err
	}
	if !s.healthMu.TryLock() {
		if last := s.healthLast.Load(); last != nil {
			return last.err // another request is refreshing it
		}
		s.healthMu.Lock()
	}
	defer s.healthMu.Unlock()
	if last := s.healthLast.Load(); last != nil && time.Since(last.at) < s.healthTTL {
		return last.err
	}
	var err error
	if s.Health != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = s.Health(ctx)
		cancel()
	}
	s.healthLast.Store(&healthResult{at: time.Now(), err: err})
	return err
}
