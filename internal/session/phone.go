package session

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidPhone is returned for a recipient that is not a phone number with country code.
var ErrInvalidPhone = errors.New("invalid phone number")

// parsePhone accepts a phone number in international form in any common spelling
// ("+54 9 11 5555-0000", "0054 (9) 11 5555.0000", "5491155550000") and returns +DIGITS.
// It checks only the E.164 shape (8 to 15 digits): WhatsApp itself then says whether the
// number has an account. The session manager deliberately does not load libphonenumber's
// metadata (7 ms and 2.5 MB at start, in every one of many processes); the hub, which stores
// leads, validates numbers with it.
func parsePhone(s string) (string, error) {
	raw := strings.TrimSpace(s)
	in := raw
	switch {
	case strings.HasPrefix(in, "+"):
		in = in[1:]
	case strings.HasPrefix(in, "00"):
		in = in[2:]
	}
	var digits strings.Builder
	for _, c := range in {
		switch {
		case c >= '0' && c <= '9':
			digits.WriteRune(c)
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '\u00a0':
		default:
			return "", fmt.Errorf("%w %q: unexpected character %q", ErrInvalidPhone, raw, c)
		}
	}
	d := digits.String()
	switch {
	case d == "":
		return "", fmt.Errorf("%w: empty", ErrInvalidPhone)
	case d[0] == '0':
		return "", fmt.Errorf("%w %q: give the number with its country code, like +54 9 11 5555 0000", ErrInvalidPhone, raw)
	case len(d) < 8 || len(d) > 15:
		return "", fmt.Errorf("%w %q: an international number has 8 to 15 digits, this has %d", ErrInvalidPhone, raw, len(d))
	}
	return "+" + d, nil
}
