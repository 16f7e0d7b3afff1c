// Command fakewa runs the fake WhatsApp server for demos and manual testing.
//
//	fakewa --listen 127.0.0.1:8790
//
// A whatsmeow client reaches it only when built to trust the fake certificate root
// (whatsmeow.WACertPubKey = fakewa.RootPublicKey()) and to send its websocket to this
// address; production binaries never do that. The control API under /_fake/ plays the
// phones:
//
//	curl -s localhost:8790/_fake/recipients                  # what each contact received
//	curl -s -d '{"qr":"2@...","phone":"5491155550000"}' localhost:8790/_fake/scan
//	curl -s -d '{"from":"5491166660001","to":"5491155550000","text":"hola","push_name":"Juan"}' localhost:8790/_fake/send
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/leadmaster/leadmaster/internal/fakewa"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "fakewa:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakewa", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8790", "address to listen on (host:port)")
	verbose := fs.Bool("verbose", false, "log every node sent and received")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	srv, err := fakewa.New(fakewa.Options{Addr: *listen, Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	root := fakewa.RootPublicKey()
	fmt.Fprintf(stdout, "fake WhatsApp server at %s\n", srv.URL())
	fmt.Fprintf(stdout, "certificate root (whatsmeow.WACertPubKey): %s\n", hex.EncodeToString(root[:]))
	fmt.Fprintf(stdout, "control API: %s/_fake/recipients, /_fake/devices, POST /_fake/scan, /_fake/pair-code, /_fake/send, /_fake/read, /_fake/unlink\n", srv.URL())
	<-ctx.Done()
	return nil
}
