package sender

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTemplate(t *testing.T) {
	fields := map[string]string{"nombre": "Ana", "telefono": "+5491155551234", "producto": "", "nombre_whatsapp": "Anita"}
	for _, tt := range []struct {
		name, in   string
		want       string
		wantFields []string
		wantEmpty  []string
		wantErr    string
	}{
		{name: "plain", in: "Hola", want: "Hola"},
		{name: "field", in: "Hola {{nombre}}!", want: "Hola Ana!", wantFields: []string{"nombre"}},
		{name: "spaces and case", in: "Hola {{ Nombre }}, tu número {{TELEFONO}}", want: "Hola Ana, tu número +5491155551234", wantFields: []string{"nombre", "telefono"}},
		{name: "alias", in: "{{name}} {{push_name}}", want: "Ana Anita", wantFields: []string{"nombre", "nombre_whatsapp"}},
		{name: "default used", in: "Hola {{producto|amigo}}", want: "Hola amigo", wantFields: []string{"producto"}},
		{name: "default unused", in: "Hola {{nombre | amigo}}", want: "Hola Ana", wantFields: []string{"nombre"}},
		{name: "empty without default", in: "Tu {{producto}}.", want: "Tu .", wantFields: []string{"producto"}, wantEmpty: []string{"producto"}},
		{name: "repeated field", in: "{{nombre}} {{nombre}}", want: "Ana Ana", wantFields: []string{"nombre"}},
		{name: "lone closing braces", in: "a }} b", want: "a }} b"},
		{name: "unclosed", in: "Hola {{nombre", wantErr: "character 6 has no closing }}"},
		{name: "empty placeholder", in: "Hola {{}}", wantErr: "field name"},
		{name: "bad name", in: "Hola {{nom bre}}", wantErr: "field name"},
		{name: "digit first", in: "{{1a}}", wantErr: "field name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := ParseTemplate(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTemplate(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantFields, tmpl.Fields()); diff != "" {
				t.Errorf("Fields() (-want +got):\n%s", diff)
			}
			got, empty := tmpl.Render(func(f string) string { return fields[f] })
			if got != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
			if diff := cmp.Diff(tt.wantEmpty, empty); diff != "" {
				t.Errorf("empty fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewMessageID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewMessageID()
		if len(id) != 22 || !strings.HasPrefix(id, "3EB0") || strings.ToUpper(id) != id || !ValidMessageID(id) {
			t.Fatalf("NewMessageID() = %q, want 3EB0 and 18 upper-case hex digits", id)
		}
		if seen[id] {
			t.Fatalf("NewMessageID() repeated %q", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "abc", "has space", "ñandú1234", strings.Repeat("A", 65)} {
		if ValidMessageID(bad) {
			t.Errorf("ValidMessageID(%q) = true, want false", bad)
		}
	}
}
