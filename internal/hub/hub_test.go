package hub

import (
	"slices"
	"testing"
)

func TestAccessible(t *testing.T) {
	ids := []string{"51", "52", "53"}
	for _, c := range []struct {
		name string
		p    *Principal
		want []string
	}{
		{"admin", &Principal{Role: RoleAdmin}, ids},
		{"member of 52", &Principal{Role: RoleMember, ClienteID: "52"}, []string{"52"}},
		{"member of no listed cliente", &Principal{Role: RoleMember, ClienteID: "99"}, []string{}},
		{"member without cliente", &Principal{Role: RoleMember}, []string{}},
		{"nobody", nil, []string{}},
	} {
		if got := c.p.Accessible(ids); !slices.Equal(got, c.want) || got == nil {
			t.Errorf("%s: Accessible = %#v, want %#v", c.name, got, c.want)
		}
	}
}
