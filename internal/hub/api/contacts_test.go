package api

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/leadmaster/leadmaster/internal/store/storetest"
)

func TestContactsImportOverHTTP(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		bad := "telefono,nombre\n+5491155550001,Ana\n12,Beto\n+5491155550003,Carla,extra\n"
		r := e.do("POST", "/api/clientes/51/contacts/import", e.member51, bad, "Content-Type", "text/csv")
		var body struct {
			Error struct {
				Code, Message string
				Details       []struct {
					Line    int
					Column  string
					Message string
				}
			}
		}
		r.decode(t, &body)
		if r.status != 422 || body.Error.Code != "invalid" || len(body.Error.Details) != 2 ||
			body.Error.Details[0].Line != 3 || body.Error.Details[0].Column != "telefono" || body.Error.Details[1].Line != 4 {
			t.Fatalf("bad CSV: %d %s", r.status, r.body)
		}
		var page struct{ Total int }
		e.do("GET", "/api/clientes/51/contacts", e.member51, nil).decode(t, &page)
		if page.Total != 0 {
			t.Errorf("a rejected file left %d contacts", page.Total)
		}

		// The same file fixed, as a browser form upload.
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormFile("file", "leads.csv")
		fw.Write([]byte("telefono,nombre\n+5491155550001,Ana\n11 5555-0002,Beto\n"))
		mw.Close()
		req, _ := http.NewRequest("POST", e.ts.URL+"/api/clientes/51/contacts/import?region=AR", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Authorization", "Bearer "+e.member51)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("multipart import: %d", resp.StatusCode)
		}
		e.do("GET", "/api/clientes/51/contacts?q=beto", e.member51, nil).decode(t, &page)
		if page.Total != 1 {
			t.Errorf("search beto after import: %d", page.Total)
		}
		// Cliente 52 sees none of it.
		e.do("GET", "/api/clientes/52/contacts", e.member52, nil).decode(t, &page)
		if page.Total != 0 {
			t.Errorf("cliente 52 sees %d of 51's contacts", page.Total)
		}
		if r := e.do("GET", "/api/clientes/51/contacts?q=ana", e.member51, nil); !strings.Contains(string(r.body), `"source":"csv"`) {
			t.Errorf("imported lead = %s", r.body)
		}
	})
}

func TestWebhookSettingsOverHTTP(t *testing.T) {
	e := newEnv(t, storetest.DSNs(t)["sqlite"])
	var set struct{ URL, Secret, Source string }
	r := e.do("PUT", "/api/clientes/51/webhook", e.member51, map[string]string{"url": "https://crm.example/hook"})
	r.decode(t, &set)
	if r.status != 200 || set.Source != "api" || len(set.Secret) < 16 {
		t.Fatalf("PUT webhook: %d %s", r.status, r.body)
	}
	var got struct{ URL, Secret string }
	e.do("GET", "/api/clientes/51/webhook", e.member51, nil).decode(t, &got)
	if got.URL != "https://crm.example/hook" || got.Secret == set.Secret {
		t.Errorf("GET webhook = %+v, want the URL and a masked secret", got)
	}
	// A member cannot aim the hub at this host or a private network; an admin can.
	for _, u := range []string{"http://127.0.0.1:8080/x", "http://localhost/x", "http://10.1.2.3/x", "http://[::1]/x", "http://169.254.169.254/latest"} {
		if r := e.do("PUT", "/api/clientes/51/webhook", e.member51, map[string]string{"url": u}); r.status != 422 || !strings.Contains(string(r.body), "only an admin") {
			t.Errorf("member PUT %s: %d %s, want 422", u, r.status, r.body)
		}
	}
	if r := e.do("PUT", "/api/clientes/51/webhook", e.adminToken, map[string]string{"url": "http://127.0.0.1:8080/x"}); r.status != 200 {
		t.Errorf("admin PUT a local webhook: %d %s, want 200", r.status, r.body)
	}
	if r := e.do("PUT", "/api/clientes/51/webhook", e.member51, map[string]string{"url": "gopher://x"}); r.status != 422 {
		t.Errorf("bad URL: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/api/clientes/51/webhook/deliveries?state=dead", e.member51, nil); r.status != 200 || !strings.Contains(string(r.body), `"deliveries":[]`) {
		t.Errorf("dead letters: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/api/clientes/51/webhook/deliveries?state=lost", e.member51, nil); r.status != 400 {
		t.Errorf("bad state filter: %d", r.status)
	}
}
