package api

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"

	"github.com/leadmaster/leadmaster/internal/version"
)

// MetricsWriter writes Prometheus text-format samples.
type MetricsWriter struct {
	w    io.Writer
	seen map[string]bool
}

// Sample writes one sample; help and kind (counter or gauge) are written once per name.
// labels are name, value pairs.
func (m *MetricsWriter) Sample(name, kind, help string, value float64, labels ...string) {
	if !m.seen[name] {
		m.seen[name] = true
		fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
	}
	var lb strings.Builder
	for i := 0; i+1 < len(labels); i += 2 {
		if lb.Len() > 0 {
			lb.WriteByte(',')
		}
		fmt.Fprintf(&lb, "%s=%q", labels[i], labels[i+1])
	}
	if lb.Len() > 0 {
		fmt.Fprintf(m.w, "%s{%s} %g\n", name, lb.String(), value)
	} else {
		fmt.Fprintf(m.w, "%s %g\n", name, value)
	}
}

func (s *Server) handleMetricsGet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	m := &MetricsWriter{w: w, seen: map[string]bool{}}
	m.Sample("leadmaster_hub_build_info", "gauge", "Build of this central-hub.", 1, "version", version.Version, "go", runtime.Version())
	for c := 1; c <= 5; c++ {
		m.Sample("leadmaster_hub_http_responses_total", "counter", "HTTP responses by status class.",
			float64(s.stats.byClass[c].Load()), "class", fmt.Sprintf("%dxx", c))
	}
	up := 1.0
	if s.health(r.Context()) != nil {
		up = 0
	}
	m.Sample("leadmaster_hub_healthy", "gauge", "1 when the health check passes.", up)
	m.Sample("leadmaster_hub_goroutines", "gauge", "Goroutines.", float64(runtime.NumGoroutine()))
	if s.Metrics != nil {
		s.Metrics(m)
	}
}
