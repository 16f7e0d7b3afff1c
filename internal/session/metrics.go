package session

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// handleMetrics writes Prometheus text format by hand: a dozen series do not justify the
// client library's memory in a process that runs once per cliente.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	b := bufio.NewWriter(w)
	defer b.Flush()
	st := s.m.Status()
	metric := func(name, typ, help string, v any, labels ...string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		l := ""
		if len(labels) > 0 {
			l = "{" + strings.Join(labels, ",") + "}"
		}
		fmt.Fprintf(b, "%s%s %v\n", name, l, v)
	}
	cl := fmt.Sprintf("cliente=%q", st.Cliente)
	fmt.Fprintf(b, "# HELP leadmaster_session_state 1 for the session's current state.\n# TYPE leadmaster_session_state gauge\n")
	for _, state := range []string{StateConnecting, StateQR, StatePairing, StateConnected, StateDisconnected, StateLoggedOut} {
		v := 0
		if state == st.State {
			v = 1
		}
		fmt.Fprintf(b, "leadmaster_session_state{%s,state=%q} %d\n", cl, state, v)
	}
	metric("leadmaster_messages_sent_total", "counter", "Messages sent to WhatsApp.", s.m.sent.Load(), cl)
	metric("leadmaster_messages_duplicate_total", "counter", "Send requests answered from the ledger without sending.", s.m.duplicates.Load(), cl)
	metric("leadmaster_send_errors_total", "counter", "Send attempts that failed.", s.m.sendErrors.Load(), cl)
	metric("leadmaster_messages_received_total", "counter", "Incoming messages stored in the event log.", s.m.received.Load(), cl)
	metric("leadmaster_receipts_total", "counter", "Delivery and read receipts stored in the event log.", s.m.receipts.Load(), cl)
	metric("leadmaster_reconnects_total", "counter", "Reconnects after a lost connection.", s.m.reconnects.Load(), cl)
	metric("leadmaster_event_log_last_seq", "gauge", "Newest event sequence number.", s.events.Last(), cl)
	metric("leadmaster_session_state_since_seconds", "gauge", "Unix time of the last state change.", st.Since.Unix(), cl)
	metric("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", s.start.Unix())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	metric("go_goroutines", "gauge", "Number of goroutines that currently exist.", runtime.NumGoroutine())
	metric("go_memstats_heap_alloc_bytes", "gauge", "Heap bytes allocated and in use.", ms.HeapAlloc)
	metric("go_memstats_sys_bytes", "gauge", "Bytes obtained from the OS.", ms.Sys)
	if rss := residentBytes(); rss > 0 {
		metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss)
	}
	metric("process_uptime_seconds", "gauge", "Seconds since start.", int64(time.Since(s.start).Seconds()))
}

func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
