// Package config loads and validates leadmaster.toml, the one configuration file shared by
// central-hub, every session-manager and the systemd generator.
//
// An empty file is valid: every key has a default. Errors name the file, the line and the key,
// so an operator can fix them from the journal line alone.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where the Debian package installs the configuration.
const DefaultPath = "/etc/leadmaster/leadmaster.toml"

// ExitConfig is the exit status for a configuration error (EX_CONFIG from sysexits.h). The
// units list it in RestartPreventExitStatus= so a bad file never causes a restart loop.
const ExitConfig = 78

// Config is the whole leadmaster.toml.
type Config struct {
	Log            Log                `toml:"log"`
	Hub            Hub                `toml:"hub"`
	SessionManager SessionManager     `toml:"session_manager"`
	Sender         Pacing             `toml:"sender"`
	Clientes       map[string]Cliente `toml:"clientes"`

	// Path is the file the configuration was read from ("" for defaults only).
	Path string `toml:"-"`
}

// Log configures logging for every daemon.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `toml:"level"`
}

// Hub configures central-hub.
type Hub struct {
	// Listen is the address used when systemd passes no listener (run by hand), and the
	// address the generator writes into central-hub.socket.
	Listen string `toml:"listen"`
	// StateDir holds hub.db when Database is empty. $STATE_DIRECTORY overrides it.
	StateDir string `toml:"state_dir"`
	// Database is empty (SQLite in StateDir), a file path or sqlite:PATH, or a postgres:// URL.
	Database string `toml:"database"`
	// Language of the web UI: es or en.
	Language string `toml:"language"`
	// ContactSyncInterval is how often contacts are pulled from each session manager (0: only on demand).
	ContactSyncInterval Duration `toml:"contact_sync_interval"`
	// SessionTTL is how long a login token stays valid.
	SessionTTL Duration `toml:"session_ttl"`
	// SecureCookies forces the Secure flag on the session cookie (set it behind TLS).
	SecureCookies bool `toml:"secure_cookies"`
}

// SessionManager configures every session-manager@ID.
type SessionManager struct {
	// StateDir is the parent of the per-cliente directories (StateDir/ID). Under systemd,
	// $STATE_DIRECTORY is the cliente's own directory and takes precedence.
	StateDir string `toml:"state_dir"`
	// SocketDir holds ID.sock, where the hub reaches each session manager.
	SocketDir string `toml:"socket_dir"`
	// Database is empty (SQLite in the cliente's directory) or a postgres:// URL; with
	// PostgreSQL each cliente gets its own schema, cliente_ID.
	Database string `toml:"database"`
	// ReconnectMaxDelay caps the backoff between WhatsApp reconnect attempts.
	ReconnectMaxDelay Duration `toml:"reconnect_max_delay"`
	// EventRetention is how long the event log keeps entries the hub has read.
	EventRetention Duration `toml:"event_retention"`
}

// Pacing controls how fast a cliente's messages leave; [sender] holds the defaults and each
// cliente may override any of them.
type Pacing struct {
	// PerMinute is the maximum number of messages a minute (0: no limit).
	PerMinute int `toml:"per_minute"`
	// MinGap and MaxGap bound the random pause between two messages.
	MinGap Duration `toml:"min_gap"`
	MaxGap Duration `toml:"max_gap"`
	// DailyCap is the maximum number of campaign messages a day (0: no cap).
	DailyCap int `toml:"daily_cap"`
	// QuietHours is "22:00-08:00" in the cliente's time zone, or empty.
	QuietHours string `toml:"quiet_hours"`
	// MaxAttempts is how many times a message is tried before it fails.
	MaxAttempts int `toml:"max_attempts"`
}

// Cliente is one [clientes.ID] table.
type Cliente struct {
	Name string `toml:"name"`
	// Port, when set, adds a TCP listener on 127.0.0.1:Port to session-manager@ID.socket.
	Port int `toml:"port"`
	// ListenAddress is the TCP host for Port (default 127.0.0.1).
	ListenAddress string `toml:"listen_address"`
	// Address points the hub at a session manager on another host (http://host:port).
	Address string `toml:"address"`
	// TokenFile holds the bearer token for TCP access; under systemd the credential
	// "session-manager-token" takes precedence.
	TokenFile string `toml:"token_file"`
	// TimeZone for quiet hours and daily caps (IANA name).
	TimeZone string `toml:"time_zone"`
	// Webhook receives this cliente's events, signed with WebhookSecret.
	WebhookURL    string `toml:"webhook_url"`
	WebhookSecret string `toml:"webhook_secret"`
	// Pacing overrides [sender] for this cliente.
	Pacing Pacing `toml:"pacing"`
}

// Duration is a time.Duration written as "30s", "5m" or "1h30m" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use a form like 30s, 5m or 1h)", string(b))
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Default returns the configuration an empty file yields.
func Default() *Config {
	return &Config{
		Log: Log{Level: "info"},
		Hub: Hub{
			Listen:              "0.0.0.0:3012",
			StateDir:            "/var/lib/leadmaster",
			Language:            "es",
			ContactSyncInterval: Duration{15 * time.Minute},
			SessionTTL:          Duration{7 * 24 * time.Hour},
		},
		SessionManager: SessionManager{
			StateDir:          "/var/lib/leadmaster/clientes",
			SocketDir:         "/run/leadmaster/session-manager",
			ReconnectMaxDelay: Duration{2 * time.Minute},
			EventRetention:    Duration{7 * 24 * time.Hour},
		},
		Sender: Pacing{
			PerMinute:   20,
			MinGap:      Duration{2 * time.Second},
			MaxGap:      Duration{6 * time.Second},
			DailyCap:    1000,
			QuietHours:  "22:00-08:00",
			MaxAttempts: 5,
		},
		Clientes: map[string]Cliente{},
	}
}

// Error is a configuration error that points at a file, a line and a key.
type Error struct {
	File string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": key %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// Errors is every problem found in one file.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Load reads and validates path. A missing file at DefaultPath is not an error (defaults
// apply); a missing file named explicitly is.
func Load(path string) (*Config, error) {
	cfg := Default()
	cfg.Path = path
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && path == DefaultPath {
		return cfg, nil
	}
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read: %v", errors.Unwrap(err))}
	}
	return Parse(path, data)
}

// Parse decodes and validates data read from path.
func Parse(path string, data []byte) (*Config, error) {
	cfg := Default()
	cfg.Path = path
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
		}
		if m := decodeErr.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, &Error{File: path, Line: line, Key: m[2], Msg: m[3]}
		}
		return nil, &Error{File: path, Msg: err.Error()}
	}
	lines := newLocator(data)
	var errs Errors
	for _, k := range md.Undecoded() {
		errs = append(errs, &Error{File: path, Line: lines.find(k), Key: k.String(), Msg: "unknown key"})
	}
	for _, v := range cfg.validate() {
		errs = append(errs, &Error{File: path, Line: lines.find(strings.Split(v.key, ".")), Key: v.key, Msg: v.msg})
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	return cfg, nil
}

// decodeErr matches the TOML library's type errors, which carry a line but are not ParseErrors.
var decodeErr = regexp.MustCompile(`^toml: line (\d+) \(last key "(.*?)"\): (.*)$`)

type problem struct{ key, msg string }

var clienteID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidClienteID reports whether id can name a cliente (it becomes a unit instance name, a
// directory and a socket file name).
func ValidClienteID(id string) bool { return clienteID.MatchString(id) }

func (c *Config) validate() []problem {
	var ps []problem
	add := func(key, format string, args ...any) {
		ps = append(ps, problem{key, fmt.Sprintf(format, args...)})
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	if err := checkListen(c.Hub.Listen); err != nil {
		add("hub.listen", "%v", err)
	}
	if err := checkDatabase(c.Hub.Database, true); err != nil {
		add("hub.database", "%v", err)
	}
	if err := checkDatabase(c.SessionManager.Database, false); err != nil {
		add("session_manager.database", "%v", err)
	}
	switch c.Hub.Language {
	case "es", "en":
	default:
		add("hub.language", "must be es or en, not %q", c.Hub.Language)
	}
	for key, dir := range map[string]string{"hub.state_dir": c.Hub.StateDir, "session_manager.state_dir": c.SessionManager.StateDir, "session_manager.socket_dir": c.SessionManager.SocketDir} {
		if dir == "" {
			add(key, "must not be empty")
		}
	}
	if c.Hub.SessionTTL.Duration < time.Minute {
		add("hub.session_ttl", "must be at least 1m")
	}
	if c.Hub.ContactSyncInterval.Duration < 0 {
		add("hub.contact_sync_interval", "must not be negative")
	}
	if c.SessionManager.ReconnectMaxDelay.Duration < time.Second {
		add("session_manager.reconnect_max_delay", "must be at least 1s")
	}
	ps = append(ps, c.Sender.validate("sender", true)...)
	ports := map[int]string{}
	ids := make([]string, 0, len(c.Clientes))
	for id := range c.Clientes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		cl := c.Clientes[id]
		prefix := "clientes." + id
		if !ValidClienteID(id) {
			add(prefix, "cliente ID %q must be 1-64 letters, digits, '-' or '_'", id)
			continue
		}
		if cl.Port != 0 {
			if cl.Port < 1 || cl.Port > 65535 {
				add(prefix+".port", "must be between 1 and 65535, not %d", cl.Port)
			} else if other, dup := ports[cl.Port]; dup {
				add(prefix+".port", "port %d is already given to cliente %s", cl.Port, other)
			} else if hubPort(c.Hub.Listen) == cl.Port {
				add(prefix+".port", "port %d is the hub's (hub.listen)", cl.Port)
			} else {
				ports[cl.Port] = id
			}
		}
		if cl.ListenAddress != "" && net.ParseIP(cl.ListenAddress) == nil {
			add(prefix+".listen_address", "must be an IP address, not %q", cl.ListenAddress)
		}
		if cl.Address != "" && !strings.HasPrefix(cl.Address, "http://") && !strings.HasPrefix(cl.Address, "https://") {
			add(prefix+".address", "must start with http:// or https://, not %q", cl.Address)
		}
		if cl.TimeZone != "" {
			if _, err := time.LoadLocation(cl.TimeZone); err != nil {
				add(prefix+".time_zone", "unknown time zone %q", cl.TimeZone)
			}
		}
		if cl.WebhookURL != "" && !strings.HasPrefix(cl.WebhookURL, "http://") && !strings.HasPrefix(cl.WebhookURL, "https://") {
			add(prefix+".webhook_url", "must start with http:// or https://")
		}
		if cl.WebhookURL != "" && len(cl.WebhookSecret) < 16 {
			add(prefix+".webhook_secret", "must be at least 16 characters when webhook_url is set")
		}
		ps = append(ps, cl.Pacing.validate(prefix+".pacing", false)...)
	}
	return ps
}

func (p Pacing) validate(prefix string, full bool) []problem {
	var ps []problem
	if p.PerMinute < 0 {
		ps = append(ps, problem{prefix + ".per_minute", "must not be negative"})
	}
	if p.DailyCap < 0 {
		ps = append(ps, problem{prefix + ".daily_cap", "must not be negative"})
	}
	if p.MinGap.Duration < 0 || p.MaxGap.Duration < 0 {
		ps = append(ps, problem{prefix + ".min_gap", "gaps must not be negative"})
	}
	if p.MaxGap.Duration != 0 && p.MaxGap.Duration < p.MinGap.Duration {
		ps = append(ps, problem{prefix + ".max_gap", "must not be below min_gap"})
	}
	if p.MaxAttempts < 0 || (full && p.MaxAttempts == 0) {
		ps = append(ps, problem{prefix + ".max_attempts", "must be at least 1"})
	}
	if p.QuietHours != "" {
		if _, _, err := ParseQuietHours(p.QuietHours); err != nil {
			ps = append(ps, problem{prefix + ".quiet_hours", err.Error()})
		}
	}
	return ps
}

// ParseQuietHours parses "HH:MM-HH:MM" into minutes after midnight. The range may wrap midnight.
func ParseQuietHours(s string) (from, to int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("must look like 22:00-08:00, not %q", s)
	}
	if from, err = parseClock(a); err == nil {
		to, err = parseClock(b)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("must look like 22:00-08:00, not %q", s)
	}
	return from, to, nil
}

func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, err
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Merged returns the cliente's pacing: its own values where set, [sender] elsewhere.
func (c *Config) Merged(id string) Pacing {
	p := c.Sender
	o := c.Clientes[id].Pacing
	if o.PerMinute != 0 {
		p.PerMinute = o.PerMinute
	}
	if o.MinGap.Duration != 0 {
		p.MinGap = o.MinGap
	}
	if o.MaxGap.Duration != 0 {
		p.MaxGap = o.MaxGap
	}
	if o.DailyCap != 0 {
		p.DailyCap = o.DailyCap
	}
	if o.QuietHours != "" {
		p.QuietHours = o.QuietHours
	}
	if o.MaxAttempts != 0 {
		p.MaxAttempts = o.MaxAttempts
	}
	return p
}

func checkListen(addr string) error {
	if strings.HasPrefix(addr, "unix:") {
		if !filepath.IsAbs(strings.TrimPrefix(addr, "unix:")) {
			return fmt.Errorf("unix socket path must be absolute, not %q", addr)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port or unix:/path, not %q", addr)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("host must be an IP address, not %q", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be between 0 and 65535, not %q", port)
	}
	return nil
}

// CheckListen validates an ADDR given on a command line: host:port or unix:/path.
func CheckListen(addr string) error { return checkListen(addr) }

func hubPort(listen string) int {
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		return -1
	}
	n, _ := strconv.Atoi(p)
	return n
}

func checkDatabase(s string, sqliteOK bool) error {
	switch {
	case s == "":
		return nil
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		return nil
	case sqliteOK && (strings.HasPrefix(s, "sqlite:") || filepath.IsAbs(s)):
		return nil
	case sqliteOK:
		return fmt.Errorf("must be empty, an absolute SQLite path, sqlite:PATH or a postgres:// URL")
	default:
		return fmt.Errorf("must be empty (SQLite per cliente) or a postgres:// URL")
	}
}

// HubStateDir is where the hub keeps its files: $STATE_DIRECTORY under systemd, else hub.state_dir.
func (c *Config) HubStateDir(getenv func(string) string) string {
	if d := firstStateDir(getenv); d != "" {
		return d
	}
	return c.Hub.StateDir
}

// ClienteStateDir is the session manager's own directory: $STATE_DIRECTORY under systemd,
// else session_manager.state_dir/ID.
func (c *Config) ClienteStateDir(id string, getenv func(string) string) string {
	if d := firstStateDir(getenv); d != "" {
		return d
	}
	return filepath.Join(c.SessionManager.StateDir, id)
}

// SocketPath is where the hub finds cliente id's session manager.
func (c *Config) SocketPath(id string) string {
	return filepath.Join(c.SessionManager.SocketDir, id+".sock")
}

// firstStateDir returns the first of the colon-separated $STATE_DIRECTORY entries.
func firstStateDir(getenv func(string) string) string {
	d, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":")
	return d
}

// ClienteIDs returns the configured cliente IDs, sorted.
func (c *Config) ClienteIDs() []string {
	ids := make([]string, 0, len(c.Clientes))
	for id := range c.Clientes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
