// Package logging builds the daemons' slog loggers: straight to the systemd journal with
// structured fields when stderr is the journal, text on stderr elsewhere.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/coreos/go-systemd/v22/journal"
)

// ParseLevel turns debug, info, warn or error into a slog level (info for anything else;
// the config package has already rejected anything else).
func ParseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// New returns a logger at level. When stderr is connected to the journal ($JOURNAL_STREAM
// names the same device and inode) records go to the journal natively, each attribute as a
// field (cliente_id becomes CLIENTE_ID, so `journalctl CLIENTE_ID=51` works).
func New(level *slog.LevelVar, getenv func(string) string, stderr io.Writer, identifier string) *slog.Logger {
	if toJournal(getenv, stderr) {
		return slog.New(&journalHandler{level: level, identifier: identifier, mu: new(sync.Mutex)})
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

func toJournal(getenv func(string) string, stderr io.Writer) bool {
	stream := getenv("JOURNAL_STREAM")
	f, ok := stderr.(*os.File)
	if stream == "" || !ok || !journal.Enabled() {
		return false
	}
	var dev, ino uint64
	if _, err := fmt.Sscanf(stream, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

type journalHandler struct {
	level      slog.Leveler
	identifier string
	attrs      []slog.Attr
	group      string
	mu         *sync.Mutex
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := map[string]string{}
	if h.identifier != "" {
		vars["SYSLOG_IDENTIFIER"] = h.identifier
	}
	// The message line keeps the attributes too, so plain `journalctl -u` shows them.
	var text strings.Builder
	text.WriteString(r.Message)
	var add func(prefix string, a slog.Attr)
	add = func(prefix string, a slog.Attr) {
		a.Value = a.Value.Resolve()
		if a.Equal(slog.Attr{}) {
			return
		}
		key := a.Key
		if prefix != "" {
			key = prefix + "_" + key
		}
		if a.Value.Kind() == slog.KindGroup {
			for _, g := range a.Value.Group() {
				add(key, g)
			}
			return
		}
		val := a.Value.String()
		vars[fieldName(key)] = val
		fmt.Fprintf(&text, " %s=%s", key, quote(val))
	}
	for _, a := range h.attrs {
		add(h.group, a)
	}
	r.Attrs(func(a slog.Attr) bool {
		add(h.group, a)
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	return journal.Send(text.String(), priority(r.Level), vars)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return &c
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	c := *h
	if c.group != "" {
		name = c.group + "_" + name
	}
	c.group = name
	return &c
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}

// fieldName maps an attribute key to a journal field: uppercase letters, digits and '_',
// not starting with '_' (those are trusted fields) or a digit.
func fieldName(key string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(key) {
		if (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), "_0123456789")
	if s == "" || s == "MESSAGE" || s == "PRIORITY" {
		s = "LM_" + b.String()
	}
	return s
}

func quote(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\"=") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
