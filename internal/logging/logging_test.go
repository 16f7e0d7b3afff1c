package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestFieldName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"cliente_id", "CLIENTE_ID"},
		{"message_id", "MESSAGE_ID"},
		{"err", "ERR"},
		{"http.status", "HTTP_STATUS"},
		{"_private", "PRIVATE"},
		{"9lives", "LIVES"},
		{"message", "LM_MESSAGE"}, // MESSAGE is the journal's own field
		{"priority", "LM_PRIORITY"},
	}
	for _, tt := range tests {
		if got := fieldName(tt.in); got != tt.want {
			t.Errorf("fieldName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestTextOutsideTheJournal(t *testing.T) {
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	level.Set(ParseLevel("warn"))
	// JOURNAL_STREAM names a stream, but stderr is a buffer: text it is.
	log := New(level, func(k string) string {
		if k == "JOURNAL_STREAM" {
			return "8:12345"
		}
		return ""
	}, &buf, "session-manager").With("cliente_id", "51")
	log.Info("hidden at warn")
	log.Warn("session state", "state", "disconnected")
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("info line logged at level warn: %q", out)
	}
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "cliente_id=51") || !strings.Contains(out, "state=disconnected") {
		t.Errorf("text log = %q, want level, cliente_id and state", out)
	}
	level.Set(ParseLevel("debug"))
	log.Debug("now visible")
	if !strings.Contains(buf.String(), "now visible") {
		t.Error("raising the level at run time (SIGHUP) did not take effect")
	}
}
