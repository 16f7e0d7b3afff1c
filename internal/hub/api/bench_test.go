package api

import (
	"io"
	"net/http"
	"testing"

	"github.com/leadmaster/leadmaster/internal/store/storetest"
)

// BenchmarkProxyStatus measures an authenticated proxied GET /session-manager/51/status
// (hub, stand-in session manager and client in one process: compare runs, not absolutes).
func BenchmarkProxyStatus(b *testing.B) {
	e := newEnv(b, storetest.DSNs(b)["sqlite"])
	benchGet(b, e, "/session-manager/51/status", e.member51)
}

// BenchmarkHealth measures GET /health.
func BenchmarkHealth(b *testing.B) {
	e := newEnv(b, storetest.DSNs(b)["sqlite"])
	benchGet(b, e, "/health", "")
}

func benchGet(b *testing.B, e *env, path, token string) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", e.ts.URL+path, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
