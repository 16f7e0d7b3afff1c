//go:build !fakewa

package main

import "net/http"

// testWhatsApp returns nil: production builds talk to WhatsApp itself and trust only its
// certificate root. Builds with -tags fakewa (tests, make demo) replace this file.
func testWhatsApp(func(string) string) (*http.Client, error) { return nil, nil }
