// Command central-hub is LeadMaster's API and web UI on port 3012: auth, clientes, the proxy
// to each cliente's session manager, contacts, the event consumer and outgoing webhooks.
//
//	central-hub [--config FILE] [--listen ADDR] [--check-config]
//	central-hub user add --username U (--admin | --cliente ID) --password-stdin
//	central-hub user passwd --username U --password-stdin
//	central-hub user list
//	central-hub apikey create --cliente ID [--name NAME]
//	central-hub version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/leadmaster/leadmaster/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err and maps it to the exit status: 78 (EX_CONFIG) for a configuration
// error, so systemd does not restart-loop, 2 for a usage error, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case isConfigError(err):
		fmt.Fprintf(stderr, "central-hub: configuration error:\n%v\n", err)
		return config.ExitConfig
	case errors.As(err, new(*usageError)):
		fmt.Fprintf(stderr, "central-hub: %v\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "central-hub: %v\n", err)
	return 1
}

func isConfigError(err error) bool {
	var one *config.Error
	var many config.Errors
	return errors.As(err, &one) || errors.As(err, &many)
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// run is main without the process: tests call it with their own arguments, environment and
// streams.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	a := &app{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	return a.run(ctx, args)
}

// app is one invocation. Tests may set listeners (served instead of binding), reload (in place
// of SIGHUP) and ready (called once serving).
type app struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer

	listeners []net.Listener
	reload    <-chan os.Signal
	ready     func(addrs []net.Addr)
}

func (a *app) run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("central-hub", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	cfgPath := fs.String("config", config.DefaultPath, "configuration `FILE`")
	listen := fs.String("listen", "", "listen on `ADDR` (host:port or unix:/path) when systemd passes no socket; default hub.listen")
	check := fs.Bool("check-config", false, "validate the configuration and exit (78 when invalid)")
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, `usage: central-hub [--config FILE] [--listen ADDR] [--check-config]
       central-hub user add --username U (--admin | --cliente ID) --password-stdin
       central-hub user passwd --username U --password-stdin
       central-hub user list
       central-hub apikey create --cliente ID [--name NAME]
       central-hub version

flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if rest := fs.Args(); len(rest) > 0 {
		return a.subcommand(ctx, *cfgPath, rest)
	}
	if *listen != "" {
		if err := config.CheckListen(*listen); err != nil {
			return usagef("--listen: %v", err)
		}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(a.stdout, "%s: OK (%d clientes)\n", *cfgPath, len(cfg.Clientes))
		return nil
	}
	if *listen == "" {
		*listen = cfg.Hub.Listen
	}
	return a.serve(ctx, *cfgPath, *listen, cfg)
}
