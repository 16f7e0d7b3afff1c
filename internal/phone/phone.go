// Package phone normalises phone numbers to E.164 with libphonenumber's rules
// (github.com/nyaruka/phonenumbers), so "+54 9 11 5555-0000", "0054 9 11 5555 0000" and
// "5491155550000" name the same lead.
package phone

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// ErrInvalid is returned for anything that is not a valid phone number.
var ErrInvalid = errors.New("invalid phone number")

// Normalize returns s as +E.164. Without a defaultRegion (ISO 3166 code such as "AR") the
// number must carry its country code, with or without a leading + or 00.
func Normalize(s, defaultRegion string) (string, error) {
	raw := strings.TrimSpace(s)
	if raw == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalid)
	}
	in := raw
	if strings.HasPrefix(in, "00") {
		in = "+" + in[2:]
	}
	if !strings.HasPrefix(in, "+") && defaultRegion == "" {
		in = "+" + in
	}
	n, err := phonenumbers.Parse(in, strings.ToUpper(defaultRegion))
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrInvalid, raw, err)
	}
	if !phonenumbers.IsValidNumber(n) {
		return "", fmt.Errorf("%w %q: not a valid number for its country (country code %d)", ErrInvalid, raw, n.GetCountryCode())
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}
