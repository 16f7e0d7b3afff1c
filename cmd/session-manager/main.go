// Command session-manager owns one cliente's WhatsApp connection and serves its API on the
// sockets systemd passes in (or binds --listen when run by hand).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/footprint"
	"github.com/leadmaster/leadmaster/internal/logging"
	"github.com/leadmaster/leadmaster/internal/sd"
	"github.com/leadmaster/leadmaster/internal/session"
	"github.com/leadmaster/leadmaster/internal/store"
	"github.com/leadmaster/leadmaster/internal/version"
	"github.com/leadmaster/leadmaster/internal/whatsapp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a command-line mistake (exit 2).
type usageError struct{ error }

func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "session-manager:", err)
	var ce *config.Error
	var ces config.Errors
	var ue usageError
	switch {
	case errors.As(err, &ce), errors.As(err, &ces):
		return config.ExitConfig
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

const usage = `Usage: session-manager --cliente ID [--config FILE] [--listen ADDR]... [--check-config]

Owns cliente ID's WhatsApp connection (QR linking, sending, receiving) and serves its HTTP
API. Under systemd (session-manager@ID.service) the sockets come from session-manager@ID.socket;
run by hand it binds each --listen ADDR (host:port or unix:/path), by default
unix:SOCKET_DIR/ID.sock plus 127.0.0.1:PORT when the cliente has a port.

Options:
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("session-manager", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	var (
		cliente     = fs.String("cliente", "", "cliente `ID` (letters, digits, - and _)")
		configPath  = fs.String("config", config.DefaultPath, "configuration `FILE`")
		checkConfig = fs.Bool("check-config", false, "validate the configuration and exit (78 when invalid)")
		showVersion = fs.Bool("version", false, "print the version and exit")
		listens     listFlag
	)
	fs.Var(&listens, "listen", "bind `ADDR` when systemd passes no socket (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if *showVersion {
		fmt.Fprintln(stdout, "session-manager", version.Version)
		return nil
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *cliente == "" {
		return usageError{errors.New("--cliente ID is required")}
	}
	if !config.ValidClienteID(*cliente) {
		return usageError{fmt.Errorf("--cliente %q: must be 1-64 letters, digits, '-' or '_'", *cliente)}
	}
	for _, l := range listens {
		if err := config.CheckListen(l); err != nil {
			return usageError{fmt.Errorf("--listen: %v", err)}
		}
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if *checkConfig {
		fmt.Fprintf(stdout, "%s: ok\n", *configPath)
		return nil
	}
	id := *cliente

	level := new(slog.LevelVar)
	level.Set(logging.ParseLevel(cfg.Log.Level))
	log := logging.New(level, getenv, stderr, "session-manager").With("cliente_id", id)
	notify := sd.NewNotifier(log)

	if len(listens) == 0 {
		listens = append(listens, "unix:"+cfg.SocketPath(id))
		if cl := cfg.Clientes[id]; cl.Port != 0 {
			host := cl.ListenAddress
			if host == "" {
				host = "127.0.0.1"
			}
			listens = append(listens, net.JoinHostPort(host, strconv.Itoa(cl.Port)))
		}
	}
	for _, l := range listens {
		if path, ok := strings.CutPrefix(l, "unix:"); ok {
			if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
				return fmt.Errorf("socket directory: %w", err)
			}
		}
	}
	lns, err := sd.Listeners(listens...)
	if err != nil {
		return err
	}

	var tokenMu sync.Mutex
	token := readToken(getenv, cfg.Clientes[id].TokenFile, log)
	api := session.NewServer(log, func() string {
		tokenMu.Lock()
		defer tokenMu.Unlock()
		return token
	})
	// Serve first: requests wait in the API until the store is open (see session.Server).
	var drainers []*sd.Drainer
	serveErr := make(chan error, len(lns))
	for _, l := range lns {
		srv := &http.Server{
			Handler:           api.Handler(l.Local()),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		d := sd.NewDrainer(srv)
		drainers = append(drainers, d)
		go func() {
			if err := srv.Serve(d.Listener(l)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
		}()
	}
	// shutdown stops accepting (systemd keeps the socket: new connections wait for the next
	// process), ends long polls, and answers every request already accepted.
	shutdown := func() {
		api.Stopping()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, d := range drainers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.Shutdown(shutdownCtx)
			}()
		}
		wg.Wait()
	}
	notify.Ready()
	notify.Status("opening store")

	stateDir := cfg.ClienteStateDir(id, getenv)
	mgr, events, db, wa, err := open(ctx, cfg, id, stateDir, getenv, log, notify)
	if err != nil {
		api.Fail(err)
		shutdown()
		return err
	}
	defer db.Close()
	api.Attach(mgr, events)

	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		mgr.Run(runCtx, wa)
	}()
	go notify.RunWatchdog(runCtx, mgr.Check)
	go pruneEvents(runCtx, events, cfg.SessionManager.EventRetention.Duration, log)
	// Start-up is over: give back the pages only it needed (see internal/footprint).
	time.AfterFunc(2*time.Second, func() {
		if n, err := footprint.Trim(); err != nil {
			log.Debug("footprint trim", "err", err)
		} else {
			log.Debug("footprint trimmed", "advised_bytes", n)
		}
	})
	addrs := make([]string, len(lns))
	for i, l := range lns {
		addrs[i] = l.Addr().String()
	}
	log.Info("session manager ready", "listen", strings.Join(addrs, ","), "state_dir", stateDir, "version", version.Version)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case err := <-serveErr:
			stopRun()
			<-loopDone
			return err
		case <-hup:
			notify.Reloading()
			if newCfg, err := config.Load(*configPath); err != nil {
				log.Error("reload: configuration invalid, keeping the running one", "err", err)
			} else {
				level.Set(logging.ParseLevel(newCfg.Log.Level))
				mgr.SetReconnectMaxDelay(newCfg.SessionManager.ReconnectMaxDelay.Duration)
				t := readToken(getenv, newCfg.Clientes[id].TokenFile, log)
				tokenMu.Lock()
				token = t
				tokenMu.Unlock()
				log.Info("configuration reloaded")
			}
			notify.Ready()
			notify.Status(statusLine(mgr.Status()))
		}
	}

	notify.Stopping()
	log.Info("stopping: draining requests and disconnecting from WhatsApp")
	shutdown()
	stopRun()
	<-loopDone
	log.Info("stopped")
	return nil
}

// open opens the cliente's store (SQLite in its state directory, or its schema in
// PostgreSQL), the event log, the session manager and the WhatsApp client.
func open(ctx context.Context, cfg *config.Config, id, stateDir string, getenv func(string) string, log *slog.Logger, notify *sd.Notifier) (*session.Manager, *session.EventLog, *store.DB, *whatsapp.Client, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("state directory: %w", err)
	}
	dsn, schema := filepath.Join(stateDir, "session.db"), ""
	if cfg.SessionManager.Database != "" {
		dsn, schema = cfg.SessionManager.Database, "cliente_"+strings.ToLower(strings.ReplaceAll(id, "-", "_"))
	}
	db, err := store.Open(ctx, dsn, schema)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	fail := func(err error) (*session.Manager, *session.EventLog, *store.DB, *whatsapp.Client, error) {
		db.Close()
		return nil, nil, nil, nil, err
	}
	if err := session.Migrate(ctx, db); err != nil {
		return fail(err)
	}
	events, err := session.OpenEventLog(ctx, db)
	if err != nil {
		return fail(err)
	}
	mgr := session.NewManager(session.Options{
		Cliente: id, DB: db, Events: events, Log: log,
		ReconnectMaxDelay: cfg.SessionManager.ReconnectMaxDelay.Duration,
		OnStatus:          func(st session.Status) { notify.Status(statusLine(st)) },
	})
	waHTTP, err := testWhatsApp(getenv)
	if err != nil {
		return fail(err)
	}
	wa, err := whatsapp.Open(ctx, whatsapp.Options{DB: db, Log: log, HTTPClient: waHTTP, OnEvent: mgr.HandleEvent})
	if err != nil {
		return fail(err)
	}
	return mgr, events, db, wa, nil
}

// statusLine is the human line systemctl status shows.
func statusLine(st session.Status) string {
	switch st.State {
	case session.StateConnected:
		return "connected as " + st.Phone
	case session.StateQR:
		return "waiting for QR scan"
	case session.StatePairing:
		return "pairing with phone"
	case session.StateConnecting:
		return "connecting to WhatsApp"
	case session.StateLoggedOut:
		return "logged out; a new QR follows"
	}
	if st.LastError != "" {
		return "disconnected: " + st.LastError
	}
	return st.State
}

// readToken returns the TCP bearer token: the systemd credential session-manager-token
// when present, else the cliente's token_file, else "" (TCP refused but for /health).
func readToken(getenv func(string) string, tokenFile string, log *slog.Logger) string {
	var paths []string
	if dir := getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		paths = append(paths, filepath.Join(dir, "session-manager-token"))
	}
	if tokenFile != "" {
		paths = append(paths, tokenFile)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			log.Error("token unreadable", "file", p, "err", err)
			continue
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t
		}
	}
	return ""
}

func pruneEvents(ctx context.Context, events *session.EventLog, keep time.Duration, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := events.Prune(ctx, keep); err != nil {
				log.Warn("prune event log", "err", err)
			} else if n > 0 {
				log.Debug("event log pruned", "deleted", n)
			}
		}
	}
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
