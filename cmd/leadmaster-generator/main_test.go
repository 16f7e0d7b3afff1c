package main

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/leadmaster/leadmaster/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden runs the generator on every testdata/*.toml and compares what an operator would
// see (the exit status, the log lines and every drop-in written) with testdata/NAME.golden.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.toml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no testdata/*.toml (err %v)", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".toml")
		t.Run(name, func(t *testing.T) {
			got := generate(t, in)
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("generator output (-want +got):\n%s", diff)
			}
		})
	}
}

// generate runs the generator with --config in on a fresh directory and returns a readable
// transcript of the result.
func generate(tb testing.TB, in string) string {
	tb.Helper()
	dir := tb.TempDir()
	normal, early, late := filepath.Join(dir, "normal"), filepath.Join(dir, "early"), filepath.Join(dir, "late")
	var logs []string
	log := func(prio int, msg string) { logs = append(logs, fmt.Sprintf("<%d> %s", prio, msg)) }
	// Configurations name their file as testdata/NAME.toml, so error lines are stable.
	status := run([]string{"--config", in, normal, early, late}, log)

	var b strings.Builder
	fmt.Fprintf(&b, "exit status %d\n", status)
	for _, l := range logs {
		fmt.Fprintf(&b, "log %s\n", l)
	}
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	sort.Strings(files)
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&b, "=== %s\n%s", rel, data)
	}
	if len(files) == 0 {
		b.WriteString("(no files written)\n")
	}
	return b.String()
}

func TestUsage(t *testing.T) {
	var logs []string
	log := func(_ int, msg string) { logs = append(logs, msg) }
	if got := run(nil, log); got != 2 {
		t.Errorf("run() with no directory = %d, want 2", got)
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "usage:") {
		t.Errorf("logs = %q, want one usage line", logs)
	}
}

// TestDefaultsOnly: with no /etc/leadmaster/leadmaster.toml at all (for example a
// fresh install where the admin removed it) the hub still listens on the default address.
func TestDefaultsOnly(t *testing.T) {
	files, warnings := dropIns(mustDefault())
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	got := files["central-hub.socket.d/50-leadmaster-listen.conf"]
	if !strings.Contains(got, "\nListenStream=\nListenStream=0.0.0.0:3012\n") {
		t.Errorf("hub drop-in = %q, want a reset and 0.0.0.0:3012", got)
	}
	if len(files) != 1 {
		t.Errorf("wrote %d files, want only the hub's", len(files))
	}
}

func mustDefault() *config.Config { return config.Default() }
