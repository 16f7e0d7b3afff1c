package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub/webhook"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// newReceiver is a webhook receiver that verifies signatures and sends each payload to out.
func newReceiver(t *testing.T, secret string, out chan<- webhook.Payload) string {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header, body, time.Minute, time.Now()); err != nil {
			t.Errorf("webhook signature: %v", err)
			http.Error(w, err.Error(), 400)
			return
		}
		var p webhook.Payload
		json.Unmarshal(body, &p)
		out <- p
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}
