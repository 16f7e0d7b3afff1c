// Command leadmaster-generator is a systemd system generator. On boot and on every
// `systemctl daemon-reload` it reads /etc/leadmaster/leadmaster.toml and writes socket
// drop-ins into the generator's normal directory, so that the TOML is the one place where
// addresses live:
//
//   - central-hub.socket.d/50-leadmaster-listen.conf: the hub's listen address (hub.listen);
//   - session-manager@ID.socket.d/50-leadmaster-port.conf: a TCP listener for every cliente
//     that has a port;
//   - session-manager@.socket.d/40-leadmaster-socket-dir.conf: only when
//     session_manager.socket_dir is not the default.
//
// It never enables or starts anything, never touches the network, and never fails the boot:
// on a configuration error it logs file:line:key to /dev/kmsg (or stderr) and writes nothing,
// so the units keep their built-in defaults and the daemons exit 78 with the same message.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/leadmaster/leadmaster/internal/config"
)

const name = "leadmaster-generator"

func main() {
	os.Exit(run(os.Args[1:], logger(os.Stderr)))
}

// logger returns where messages go. Run by systemd ($SYSTEMD_SCOPE is set for generators),
// that is /dev/kmsg when it can be opened: early in boot the journal is not up yet, and
// journald reads the kernel log later. Elsewhere (by hand, in tests, in a container without
// /dev/kmsg) it is stderr.
func logger(stderr io.Writer) func(prio int, msg string) {
	if os.Getenv("SYSTEMD_SCOPE") != "" {
		if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
			return func(prio int, msg string) {
				for _, line := range strings.Split(msg, "\n") {
					fmt.Fprintf(f, "<%d>%s[%d]: %s\n", prio, name, os.Getpid(), line)
				}
			}
		}
	}
	return func(_ int, msg string) { fmt.Fprintf(stderr, "%s: %s\n", name, msg) }
}

// Priorities from syslog(3), for the kmsg prefix.
const (
	prioErr     = 3
	prioWarning = 4
)

// run is the whole generator; it returns the exit status.
func run(args []string, log func(prio int, msg string)) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configPath := fs.String("config", config.DefaultPath, "configuration `file` to read")
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 || fs.NArg() > 3 {
		log(prioErr, "usage: leadmaster-generator [--config FILE] NORMAL_DIR [EARLY_DIR LATE_DIR]")
		return 2
	}
	normalDir := fs.Arg(0)

	cfg, err := config.Load(*configPath)
	if err != nil {
		// Write nothing: the units' defaults stay, and the daemons refuse the same file with
		// exit status 78 and the same message, so there is no restart loop and one clear cause.
		log(prioErr, "configuration error, no socket drop-ins written (central-hub and session-manager@ will exit 78 until it is fixed):\n"+err.Error())
		return 0
	}
	files, warnings := dropIns(cfg)
	for _, w := range warnings {
		log(prioWarning, w)
	}
	if err := write(normalDir, files); err != nil {
		log(prioErr, err.Error())
		return 1
	}
	return 0
}

// dropIns returns the files to write, keyed by path relative to the generator directory.
func dropIns(cfg *config.Config) (map[string]string, []string) {
	files := map[string]string{}
	var warnings []string
	src := cfg.Path

	listen, err := listenStream(cfg.Hub.Listen)
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("%s: key hub.listen: %v; central-hub.socket keeps its default", src, err))
	} else {
		files["central-hub.socket.d/50-leadmaster-listen.conf"] = header(src, "hub.listen") +
			"[Socket]\nListenStream=\nListenStream=" + listen + "\n"
	}

	if dir := cfg.SessionManager.SocketDir; dir != config.Default().SessionManager.SocketDir {
		files["session-manager@.socket.d/40-leadmaster-socket-dir.conf"] = header(src, "session_manager.socket_dir") +
			"[Socket]\nListenStream=\nListenStream=" + filepath.Join(dir, "%i.sock") + "\n"
	}

	for _, id := range cfg.ClienteIDs() {
		cl := cfg.Clientes[id]
		if cl.Port == 0 {
			continue
		}
		host := cl.ListenAddress
		if host == "" {
			host = "127.0.0.1"
		}
		files["session-manager@"+id+".socket.d/50-leadmaster-port.conf"] = header(src, "clientes."+id+".port") +
			"[Socket]\nListenStream=" + net.JoinHostPort(host, strconv.Itoa(cl.Port)) + "\n"
	}
	return files, warnings
}

func header(src, key string) string {
	if src == "" {
		src = config.DefaultPath
	}
	return fmt.Sprintf("# Written by %s from %s (%s).\n# Change the TOML and run `systemctl daemon-reload`; edits here are lost.\n", name, src, key)
}

// listenStream turns hub.listen (host:port or unix:/path) into a ListenStream= value.
func listenStream(addr string) (string, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return path, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port == "0" {
		return "", errors.New("port 0 cannot be used for a socket unit")
	}
	switch host {
	case "":
		return port, nil // every address, IPv4 and IPv6
	case "localhost":
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// write creates the drop-ins under dir. systemd empties the generator directories before
// each run, so there is nothing to clean up.
func write(dir string, files map[string]string) error {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("write drop-in: %w", err)
		}
		if err := os.WriteFile(full, []byte(files[p]), 0o644); err != nil {
			return fmt.Errorf("write drop-in: %w", err)
		}
	}
	return nil
}
