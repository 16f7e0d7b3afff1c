package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEmptyFileIsValid(t *testing.T) {
	cfg, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatalf("Parse(empty) error = %v", err)
	}
	want := Default()
	want.Path = "empty.toml"
	if diff := cmp.Diff(cfg, want); diff != "" {
		t.Errorf("empty file (-got +want):\n%s", diff)
	}
}

func TestShippedConfigIsValidAndDefault(t *testing.T) {
	path := filepath.Join("..", "..", "config", "leadmaster.toml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s) error = %v", path, err)
	}
	want := Default()
	want.Path = path
	if diff := cmp.Diff(cfg, want); diff != "" {
		t.Errorf("the shipped file must only show defaults (-got +want):\n%s", diff)
	}
	// Every commented key must parse and equal the default once uncommented.
	data, _ := os.ReadFile(path)
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "# One table per cliente") {
			break // the cliente example is illustrative, not defaults
		}
		if strings.HasPrefix(line, "#") && strings.Contains(line, " = ") && !strings.HasPrefix(line, "# ") {
			line = line[1:]
		}
		if strings.HasPrefix(line, "#[") {
			line = line[1:]
		}
		b.WriteString(line + "\n")
	}
	uncommented, err := Parse(path, []byte(b.String()))
	if err != nil {
		t.Fatalf("uncommented shipped config: %v", err)
	}
	if uncommented.Log != want.Log || uncommented.Hub != want.Hub || uncommented.SessionManager != want.SessionManager || uncommented.Sender != want.Sender {
		t.Errorf("uncommented defaults differ from Default():\n%s", cmp.Diff(uncommented, want))
	}
}

func TestParse(t *testing.T) {
	cfg, err := Parse("lm.toml", []byte(`
[hub]
listen = "127.0.0.1:4000"
database = "postgres://u@h/db"

[clientes.51]
name = "Sur"
port = 3001
time_zone = "America/Argentina/Buenos_Aires"
[clientes.51.pacing]
per_minute = 10

[clientes."acme-2"]
name = "Acme"
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ClienteIDs(); !cmp.Equal(got, []string{"51", "acme-2"}) {
		t.Errorf("ClienteIDs() = %v", got)
	}
	p := cfg.Merged("51")
	if p.PerMinute != 10 || p.DailyCap != 1000 || p.MinGap.Duration != 2*time.Second {
		t.Errorf("Merged(51) = %+v, want per_minute 10 and defaults elsewhere", p)
	}
	if got := cfg.SocketPath("51"); got != "/run/leadmaster/session-manager/51.sock" {
		t.Errorf("SocketPath = %q", got)
	}
	env := map[string]string{"STATE_DIRECTORY": "/var/lib/leadmaster/clientes/51"}
	if got := cfg.ClienteStateDir("51", func(k string) string { return env[k] }); got != "/var/lib/leadmaster/clientes/51" {
		t.Errorf("ClienteStateDir under systemd = %q", got)
	}
	if got := cfg.ClienteStateDir("51", func(string) string { return "" }); got != "/var/lib/leadmaster/clientes/51" {
		t.Errorf("ClienteStateDir by hand = %q", got)
	}
}

func TestErrorsNameFileLineAndKey(t *testing.T) {
	tests := []struct {
		name, toml string
		want       []string // each a full error line
	}{
		{"syntax", "[hub]\nlisten = \n", []string{"lm.toml:2: key hub.listen: "}},
		{"unknown key", "[hub]\nlisten = \"0.0.0.0:3012\"\nlistn = \"x\"\n", []string{"lm.toml:3: key hub.listn: unknown key"}},
		{"bad port", "[clientes.51]\nname = \"a\"\nport = 70000\n", []string{"lm.toml:3: key clientes.51.port: must be between 1 and 65535, not 70000"}},
		{"duplicate port", "[clientes.51]\nport = 3001\n[clientes.52]\nport = 3001\n", []string{"lm.toml:4: key clientes.52.port: port 3001 is already given to cliente 51"}},
		{"hub port", "[clientes.51]\nport = 3012\n", []string{"lm.toml:2: key clientes.51.port: port 3012 is the hub's (hub.listen)"}},
		{"bad duration", "[hub]\n\nsession_ttl = \"forever\"\n", []string{"lm.toml:3: key hub.session_ttl: "}},
		{"bad level", "[log]\nlevel = \"loud\"\n", []string{`lm.toml:2: key log.level: must be debug, info, warn or error, not "loud"`}},
		{"bad zone", "[clientes.51]\ntime_zone = \"Mars/Olympus\"\n", []string{`lm.toml:2: key clientes.51.time_zone: unknown time zone "Mars/Olympus"`}},
		{"bad quiet hours", "[sender]\nquiet_hours = \"late\"\n", []string{`lm.toml:2: key sender.quiet_hours: must look like 22:00-08:00, not "late"`}},
		{"bad id", "[clientes.\"a b\"]\nname = \"x\"\n", []string{`lm.toml:1: key clientes.a b: cliente ID "a b" must be`}},
		{"wrong type", "[clientes.51]\nport = \"3001\"\n", []string{"lm.toml:2: key clientes.51.port: "}},
		{"two problems", "[log]\nlevel = \"x\"\n[hub]\nlanguage = \"fr\"\n", []string{"lm.toml:2: key log.level", "lm.toml:4: key hub.language: must be es or en"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("lm.toml", []byte(tt.toml))
			if err == nil {
				t.Fatal("Parse() error = nil, want an error")
			}
			var ce *Error
			var ces Errors
			if !errors.As(err, &ce) && !errors.As(err, &ces) {
				t.Fatalf("error %T is not a config error", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d error lines, want %d:\n%s", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.toml")); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("Load(missing explicit file) error = %v, want cannot read", err)
	}
}
