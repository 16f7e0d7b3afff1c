package contacts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/store"
	"github.com/leadmaster/leadmaster/internal/store/storetest"
)

func TestNormalize(t *testing.T) {
	for _, tt := range []struct {
		raw, region string
		strict      bool
		want        string // "" for an error
	}{
		{"+54 9 11 5555-0000", "", true, "+5491155550000"},
		{"+5491155550000", "", true, "+5491155550000"},
		{"0054 9 11 5555 0000", "", true, "+5491155550000"},
		{"011 15-5555-0000", "AR", true, "+5491155550000"}, // national mobile form
		{"(11) 5555-0000", "ar", true, "+541155550000"},
		{"5491155550000", "", true, "+5491155550000"}, // WhatsApp ID form
		{"+34 612 34 56 78", "", true, "+34612345678"},
		{"612 34 56 78", "", true, ""},  // no country code, no region
		{"+54 9 11 5555", "", true, ""}, // too short
		{"hello", "AR", true, ""},
		{"", "AR", true, ""},
		{"+1 555 0100", "", true, ""},                  // fictional range: not valid
		{"+1 202 555 0100", "", false, "+12025550100"}, // but possible, as WhatsApp may report
	} {
		got, err := Normalize(tt.raw, tt.region, tt.strict)
		if tt.want == "" {
			if err == nil || hub.ErrorCode(err) != hub.CodeInvalid {
				t.Errorf("Normalize(%q, %q) = %q, %v; want an invalid error", tt.raw, tt.region, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%q, %q) = %q, %v; want %q", tt.raw, tt.region, got, err, tt.want)
		}
	}
}

func newService(t *testing.T, dsn string, fetch Fetcher) *Service {
	t.Helper()
	db, err := store.Open(context.Background(), dsn, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background(), Component, Migrations); err != nil {
		t.Fatal(err)
	}
	return New(db, fetch, nil)
}

func phones(p Page) []string {
	var out []string
	for _, l := range p.Leads {
		out = append(out, l.Phone)
	}
	return out
}

func TestImport(t *testing.T) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := newService(t, dsn, nil)
			// Semicolons and accents, as a Spanish-locale Excel writes them, with a BOM.
			good := "\ufeffNombre;Teléfono;Etiquetas;Baja\n" +
				"Ana;+54 9 11 5555-0001;vip,2024;no\n" +
				"Beto;011 15-5555-0002;;si\n" +
				";;;\n" + // blank lines are skipped
				"Ana again;+5491155550001;nuevo;\n"
			res, err := s.Import(ctx, "51", strings.NewReader(good), ImportOptions{Region: "AR"})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(res, ImportResult{Rows: 3, Created: 2, Repeated: 1}); diff != "" {
				t.Errorf("result (-got +want):\n%s", diff)
			}
			ana, err := s.GetByPhone(ctx, "51", "+5491155550001")
			if err != nil {
				t.Fatal(err)
			}
			if ana.Name != "Ana again" || !cmp.Equal(ana.Tags, []string{"2024", "nuevo", "vip"}) || ana.Source != SourceCSV {
				t.Errorf("merged lead = %+v", ana)
			}
			beto, _ := s.GetByPhone(ctx, "51", "+5491155550002")
			if !beto.OptedOut {
				t.Errorf("Beto opted_out = false, want true from the Baja column")
			}

			// A file with bad rows imports nothing and names every bad line.
			bad := "phone,name\n" +
				"+5491155550003,Carla\n" +
				"not a phone,Dora\n" +
				"+5491155550004,Eva,extra\n" +
				"+34 612 34 56 78,Fer\n" +
				"+54 9 11,Gus\n"
			_, err = s.Import(ctx, "51", strings.NewReader(bad), ImportOptions{})
			var he *hub.Error
			if !errors.As(err, &he) || he.Code != hub.CodeInvalid {
				t.Fatalf("Import(bad) = %v, want an invalid error", err)
			}
			var lines []int
			for _, re := range he.Details.([]RowError) {
				lines = append(lines, re.Line)
			}
			if diff := cmp.Diff(lines, []int{3, 4, 6}); diff != "" {
				t.Errorf("error lines (-got +want):\n%s", diff)
			}
			if !strings.Contains(he.Message, "nothing was imported") {
				t.Errorf("message = %q", he.Message)
			}
			if _, err := s.GetByPhone(ctx, "51", "+5491155550003"); hub.ErrorCode(err) != hub.CodeNotFound {
				t.Errorf("a good row of a bad file was imported (err %v)", err)
			}

			for _, tt := range []struct{ name, csv, want string }{
				{"no phone column", "nombre,email\nAna,a@x\n", "no phone column"},
				{"broken quote", "phone,name\n+5491155550005,\"Ana\n+5491155550006,Beto\n", "malformed CSV"},
				{"empty", "", "empty"},
				{"header only", "phone\n", "no rows"},
			} {
				_, err := s.Import(ctx, "51", strings.NewReader(tt.csv), ImportOptions{})
				if !errors.As(err, &he) || !strings.Contains(he.Message+detailText(he), tt.want) {
					t.Errorf("%s: err = %v (%v), want it to say %q", tt.name, err, detailText(he), tt.want)
				}
			}

			// An explicit mapping for unusual headers.
			_, err = s.Import(ctx, "51", strings.NewReader("Cel,Cliente\n+5491155550007,Hugo\n"), ImportOptions{Columns: map[string]string{"phone": "Cel", "name": "Cliente"}})
			if err != nil {
				t.Fatal(err)
			}
			// Other clientes never see these leads.
			if p, _ := s.List(ctx, "52", Filter{}); p.Total != 0 {
				t.Errorf("cliente 52 sees %d leads of 51", p.Total)
			}
		})
	}
}

func detailText(he *hub.Error) string {
	if he == nil || he.Details == nil {
		return ""
	}
	var b strings.Builder
	for _, r := range he.Details.([]RowError) {
		b.WriteString(r.Message + ";")
	}
	return b.String()
}

func TestListAndUpdate(t *testing.T) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := newService(t, dsn, nil)
			str := func(s string) *string { return &s }
			for i, n := range []string{"Ana María", "Beto", "Carla", "ana_b"} {
				tags := []string{"lead"}
				if i%2 == 0 {
					tags = []string{"vip", "lead"}
				}
				if _, err := s.Create(ctx, "51", Input{Phone: str(fmt.Sprintf("+54911555500%d", 10+i)), Name: str(n), Tags: &tags}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Create(ctx, "51", Input{Phone: str("+5491155550010")}); hub.ErrorCode(err) != hub.CodeConflict {
				t.Errorf("duplicate phone: err = %v, want conflict", err)
			}
			p, err := s.List(ctx, "51", Filter{Q: "ANA"})
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != 2 {
				t.Errorf("search ANA: %d leads, want 2 (case-insensitive)", p.Total)
			}
			p, _ = s.List(ctx, "51", Filter{Q: "_"}) // a LIKE wildcard, searched literally
			if p.Total != 1 {
				t.Errorf("search _: %d leads, want 1", p.Total)
			}
			p, _ = s.List(ctx, "51", Filter{Tag: "vip"})
			if p.Total != 2 {
				t.Errorf("tag vip: %d leads, want 2", p.Total)
			}
			p, _ = s.List(ctx, "51", Filter{Limit: 3})
			if len(p.Leads) != 3 || p.NextOffset != 3 || p.Total != 4 {
				t.Errorf("page 1: %d leads, next %d, total %d; want 3, 3, 4", len(p.Leads), p.NextOffset, p.Total)
			}
			opted := true
			l, err := s.Update(ctx, "51", p.Leads[0].ID, Input{OptedOut: &opted})
			if err != nil || !l.OptedOut || l.Name != p.Leads[0].Name {
				t.Errorf("update = %+v, %v", l, err)
			}
			if _, err := s.Update(ctx, "52", p.Leads[0].ID, Input{OptedOut: &opted}); hub.ErrorCode(err) != hub.CodeNotFound {
				t.Errorf("update another cliente's lead: err = %v, want not_found", err)
			}
			p, _ = s.List(ctx, "51", Filter{OptedOut: &opted})
			if p.Total != 1 {
				t.Errorf("opted out: %d, want 1", p.Total)
			}
		})
	}
}

func TestSync(t *testing.T) {
	for name, dsn := range storetest.DSNs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			list := []WAContact{
				{JID: "5491155550001@s.whatsapp.net", Phone: "+5491155550001", Name: "Ana (agenda)", PushName: "Anita"},
				{JID: "5491155550002@s.whatsapp.net", PushName: "", BusinessName: "Beto SRL"},
				{JID: "120363000000000000@g.us", Name: "A group"},
				{JID: "12345@lid", Name: "hidden number"},
			}
			s := newService(t, dsn, func(context.Context, string) ([]WAContact, error) { return list, nil })
			name := "Ana from CSV"
			if _, err := s.Create(ctx, "51", Input{Phone: &list[0].Phone, Name: &name}); err != nil {
				t.Fatal(err)
			}
			res, err := s.Sync(ctx, "51")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(res, SyncResult{Contacts: 4, Created: 1, Updated: 1, Skipped: 2}); diff != "" {
				t.Errorf("sync (-got +want):\n%s", diff)
			}
			ana, _ := s.GetByPhone(ctx, "51", "+5491155550001")
			if ana.Name != "Ana from CSV" || ana.PushName != "Anita" {
				t.Errorf("Ana = %q/%q, want the CSV name kept and the push name added", ana.Name, ana.PushName)
			}
			beto, _ := s.GetByPhone(ctx, "51", "+5491155550002")
			if beto.Source != SourceWhatsApp || beto.PushName != "Beto SRL" {
				t.Errorf("Beto = %+v", beto)
			}
			res, _ = s.Sync(ctx, "51")
			if res.Created+res.Updated != 0 {
				t.Errorf("second sync changed %d/%d, want nothing", res.Created, res.Updated)
			}
		})
	}
}
