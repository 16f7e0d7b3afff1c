package sender

import (
	"fmt"
	"slices"
	"strings"
)

// Template is a campaign text with placeholders: {{nombre}} is replaced by the recipient's
// field, {{nombre|amigo}} uses "amigo" when the field is empty. Field names are letters,
// digits and underscores, matched without regard to case; spaces inside the braces are ignored.
type Template struct {
	parts []part
}

type part struct {
	literal string
	field   string // "" for a literal
	def     string
	hasDef  bool
}

// Standard fields every recipient has, and the aliases accepted for them.
const (
	FieldNombre         = "nombre"          // the contact's name, else its WhatsApp push name
	FieldTelefono       = "telefono"        // +5491155550000
	FieldNombreWhatsApp = "nombre_whatsapp" // the push name the person chose in WhatsApp
)

var fieldAliases = map[string]string{
	"name":      FieldNombre,
	"phone":     FieldTelefono,
	"push_name": FieldNombreWhatsApp,
}

// StandardFields lists the fields every recipient has.
var StandardFields = []string{FieldNombre, FieldTelefono, FieldNombreWhatsApp}

// ParseTemplate parses s. An unclosed or empty placeholder is an error that says where.
func ParseTemplate(s string) (*Template, error) {
	t := &Template{}
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, part{literal: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, part{literal: rest[:i]})
		}
		pos := len(s) - len(rest) + i
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("placeholder at character %d has no closing }}", pos+1)
		}
		inner := rest[i+2 : i+2+j]
		name, def, hasDef := strings.Cut(inner, "|")
		name = strings.ToLower(strings.TrimSpace(name))
		if !validField(name) {
			return nil, fmt.Errorf("placeholder {{%s}} at character %d: a field name is letters, digits and _", inner, pos+1)
		}
		if a, ok := fieldAliases[name]; ok {
			name = a
		}
		t.parts = append(t.parts, part{field: name, def: strings.TrimSpace(def), hasDef: hasDef})
		rest = rest[i+2+j+2:]
	}
}

func validField(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r == '_':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Fields returns the fields the template uses, sorted, each once.
func (t *Template) Fields() []string {
	var out []string
	for _, p := range t.parts {
		if p.field != "" && !slices.Contains(out, p.field) {
			out = append(out, p.field)
		}
	}
	slices.Sort(out)
	return out
}

// Check returns the first field the template uses that is not in known, or "".
func (t *Template) Check(known func(string) bool) string {
	for _, f := range t.Fields() {
		if !known(f) {
			return f
		}
	}
	return ""
}

// Render fills the placeholders with get's values. It also returns the fields that were
// empty and had no default (they render as nothing).
func (t *Template) Render(get func(field string) string) (string, []string) {
	var b strings.Builder
	var empty []string
	for _, p := range t.parts {
		if p.field == "" {
			b.WriteString(p.literal)
			continue
		}
		v := strings.TrimSpace(get(p.field))
		if v == "" {
			if p.hasDef {
				v = p.def
			} else if !slices.Contains(empty, p.field) {
				empty = append(empty, p.field)
			}
		}
		b.WriteString(v)
	}
	return b.String(), empty
}
