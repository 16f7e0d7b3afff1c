package api

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"

	"github.com/leadmaster/leadmaster/internal/config"
)

type configCliente = config.Cliente

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

type netListenConfig struct{}

// stale leaves a socket file nobody accepts on, as a stopped or failed unit does.
func (netListenConfig) stale(path string) (func(), error) {
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	return func() { os.Remove(path) }, nil
}

// newTokenServer is a remote session manager that wants token and records the Authorization it got.
func newTokenServer(tb testing.TB, token string, got *string) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*got = r.Header.Get("Authorization")
		if *got != "Bearer "+token {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			w.Write([]byte(`{"error":{"code":"unauthorized","message":"bad token"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"cliente":"51","state":"connected"}`))
	}))
	tb.Cleanup(ts.Close)
	return ts
}
