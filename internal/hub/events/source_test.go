package events

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"
)

// socketSource reads /events from a stand-in session manager on a unix socket.
type socketSource struct{ socket string }

func (s *socketSource) Events(ctx context.Context, _ string, after int64, wait time.Duration) (Batch, error) {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", s.socket)
	}}}
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://sm/events?after=%d&wait=%s", after, wait), nil)
	resp, err := c.Do(req)
	if err != nil {
		return Batch{}, err
	}
	defer resp.Body.Close()
	var b Batch
	err = json.NewDecoder(resp.Body).Decode(&b)
	return b, err
}
