//go:build fakewa

package main

import (
	"fmt"
	"net/http"
	"net/url"

	"go.mau.fi/whatsmeow"

	"github.com/leadmaster/leadmaster/internal/fakewa"
)

// testWhatsApp points a test or demo build at the fake WhatsApp server named by
// $LEADMASTER_FAKEWA_URL and trusts the fake root. Only builds with -tags fakewa have this.
func testWhatsApp(getenv func(string) string) (*http.Client, error) {
	raw := getenv("LEADMASTER_FAKEWA_URL")
	if raw == "" {
		return nil, fmt.Errorf("this is a test build (-tags fakewa): set LEADMASTER_FAKEWA_URL to the fake WhatsApp server")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("LEADMASTER_FAKEWA_URL %q: not a URL", raw)
	}
	whatsmeow.WACertPubKey = fakewa.RootPublicKey()
	return &http.Client{Transport: rewrite{host: u.Host}}, nil
}

// rewrite sends every request (wss://web.whatsapp.com/ws/chat included) to the fake server.
type rewrite struct{ host string }

func (t rewrite) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host = "http", t.host
	return http.DefaultTransport.RoundTrip(r)
}
