package contacts

import (
	"strings"

	"github.com/nyaruka/phonenumbers"

	"github.com/leadmaster/leadmaster/internal/hub"
)

// Normalize returns raw as an E.164 number (+5491155550000). region (ISO 3166, such as AR) is
// used for numbers written without a country code; without it such numbers are refused, except
// that a bare run of 10-15 digits is read as international (the form WhatsApp IDs use).
// strict requires a number the numbering plan knows to be valid; otherwise a possible number
// (right length for its country) is enough, which suits numbers WhatsApp itself reported.
func Normalize(raw, region string, strict bool) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", hub.Errorf(hub.CodeInvalid, "phone number is empty")
	}
	if strings.HasPrefix(s, "00") {
		s = "+" + s[2:]
	}
	region = strings.ToUpper(strings.TrimSpace(region))
	if !strings.HasPrefix(s, "+") && region == "" {
		if d := digits(s); len(d) >= 10 && len(d) <= 15 && len(d) == len(strings.Map(keepDigit, s)) {
			s = "+" + d
		} else {
			return "", hub.Errorf(hub.CodeInvalid, "phone number %q has no country code: write it as +CC... or give a region", raw)
		}
	}
	n, err := phonenumbers.Parse(s, region)
	if err != nil {
		return "", hub.Errorf(hub.CodeInvalid, "%q is not a phone number", raw)
	}
	if strict && !phonenumbers.IsValidNumber(n) {
		return "", hub.Errorf(hub.CodeInvalid, "%q is not a valid phone number", raw)
	}
	if !strict && !phonenumbers.IsPossibleNumber(n) {
		return "", hub.Errorf(hub.CodeInvalid, "%q is not a possible phone number", raw)
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

func digits(s string) string { return strings.Map(keepDigit, strings.Map(dropSeparators, s)) }

func keepDigit(r rune) rune {
	if r >= '0' && r <= '9' {
		return r
	}
	return -1
}

// dropSeparators removes what people put between digits; anything else survives and makes
// the digit count differ, so "call 1155550000 ext 2" is not silently accepted.
func dropSeparators(r rune) rune {
	switch r {
	case ' ', '-', '.', '(', ')', '/':
		return -1
	}
	return r
}
