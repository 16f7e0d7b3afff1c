package config

import (
	"strings"

	"github.com/BurntSushi/toml"
)

// locator maps dotted keys to the line that defines them. The TOML library reports lines for
// syntax errors only; validation errors need the same precision, so the common layouts
// (tables, [a.b] headers and key = value lines, with bare or quoted keys) are scanned here.
// A key it cannot place is reported without a line rather than with a wrong one.
type locator map[string]int

func newLocator(data []byte) locator {
	l := locator{}
	table := ""
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == '#':
			continue
		case strings.HasPrefix(line, "[["):
			end := strings.Index(line, "]]")
			if end < 0 {
				continue
			}
			table = normalizeKey(line[2:end])
			l.set(table, i+1)
		case line[0] == '[':
			end := strings.Index(line, "]")
			if end < 0 {
				continue
			}
			table = normalizeKey(line[1:end])
			l.set(table, i+1)
		default:
			k, _, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			key := normalizeKey(k)
			if table != "" {
				key = table + "." + key
			}
			l.set(key, i+1)
		}
	}
	return l
}

func (l locator) set(key string, line int) {
	if _, seen := l[key]; !seen {
		l[key] = line
	}
}

// find returns the line of key, or of its closest enclosing table, or 0.
func (l locator) find(key toml.Key) int {
	for n := len(key); n > 0; n-- {
		if line, ok := l[strings.Join(key[:n], ".")]; ok {
			return line
		}
	}
	return 0
}

func normalizeKey(s string) string {
	parts := splitKey(strings.TrimSpace(s))
	return strings.Join(parts, ".")
}

// splitKey splits a dotted TOML key, honouring quotes: clientes."51".port -> [clientes 51 port].
func splitKey(s string) toml.Key {
	var parts toml.Key
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}
