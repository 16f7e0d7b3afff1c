package sender

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// mux mounts the handlers on the patterns package api gives them.
func mux(s *Service) *http.ServeMux {
	m := http.NewServeMux()
	for pattern, h := range map[string]http.HandlerFunc{
		"GET /api/clientes/{id}/messages":                s.HandleMessagesList,
		"POST /api/clientes/{id}/messages":               s.HandleMessageCreate,
		"GET /api/clientes/{id}/messages/{mid}":          s.HandleMessageGet,
		"GET /api/clientes/{id}/campaigns":               s.HandleCampaignsList,
		"POST /api/clientes/{id}/campaigns":              s.HandleCampaignCreate,
		"GET /api/clientes/{id}/campaigns/{cid}":         s.HandleCampaignGet,
		"GET /api/clientes/{id}/campaigns/{cid}/preview": s.HandleCampaignPreview,
		"POST /api/clientes/{id}/campaigns/{cid}/start":  s.HandleCampaignStart,
		"POST /api/clientes/{id}/campaigns/{cid}/pause":  s.HandleCampaignPause,
		"POST /api/clientes/{id}/campaigns/{cid}/resume": s.HandleCampaignResume,
		"POST /api/clientes/{id}/campaigns/{cid}/cancel": s.HandleCampaignCancel,
		"GET /api/clientes/{id}/sending":                 s.HandleSendingGet,
		"POST /api/clientes/{id}/sending/pause":          s.HandleSendingPause,
		"POST /api/clientes/{id}/sending/resume":         s.HandleSendingResume,
	} {
		m.HandleFunc(pattern, h)
	}
	return m
}

type answer struct {
	status int
	body   map[string]any
	raw    string
}

func (a answer) code() string {
	e, _ := a.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func call(t *testing.T, h http.Handler, method, path, body string) answer {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	b, _ := io.ReadAll(w.Result().Body)
	a := answer{status: w.Code, raw: string(b)}
	json.Unmarshal(b, &a.body)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return a
}

func TestHTTP(t *testing.T) {
	e := newEnv(t, t.TempDir()+"/hub.db", unpaced)
	h := mux(e.s)
	e.lead("51", "+5491155551234", "Ana", []string{"vip"}, false)

	for _, tt := range []struct {
		name, method, path, body string
		status                   int
		code                     string
		contains                 string
	}{
		{"queue", "POST", "/api/clientes/51/messages", `{"to": "+54 9 11 5555-1234", "text": "Hola", "id": "ABC123"}`, 202, "", `"state":"queued"`},
		{"repeat", "POST", "/api/clientes/51/messages", `{"to": "+5491155551234", "text": "Hola", "id": "ABC123"}`, 200, "", `"duplicate":true`},
		{"reuse", "POST", "/api/clientes/51/messages", `{"to": "+5491155551234", "text": "Chau", "id": "ABC123"}`, 409, "conflict", "already used"},
		{"unknown JSON field", "POST", "/api/clientes/51/messages", `{"to": "+5491155551234", "txt": "x"}`, 400, "bad_request", `unknown field \"txt\"`},
		{"not JSON", "POST", "/api/clientes/51/messages", `hola`, 400, "bad_request", "not valid JSON"},
		{"bad number", "POST", "/api/clientes/51/messages", `{"to": "abc", "text": "x"}`, 422, "invalid", "phone"},
		{"get", "GET", "/api/clientes/51/messages/ABC123", "", 200, "", `"to":"+5491155551234"`},
		{"get of another cliente", "GET", "/api/clientes/52/messages/ABC123", "", 404, "not_found", "cliente 52 has no message ABC123"},
		{"list", "GET", "/api/clientes/51/messages?state=queued&campaign=0", "", 200, "", `"ABC123"`},
		{"list bad state", "GET", "/api/clientes/51/messages?state=lost", "", 400, "bad_request", "state must be"},
		{"unknown field in template", "POST", "/api/clientes/51/campaigns", `{"name": "x", "template": "Hola {{apellido}}", "recipients": {"tag": "vip"}}`, 422, "invalid", "{{apellido}}"},
		{"campaign", "POST", "/api/clientes/51/campaigns", `{"name": "VIP", "template": "Hola {{nombre}}", "recipients": {"tag": "vip"}}`, 201, "", `"state":"draft"`},
		{"preview", "GET", "/api/clientes/51/campaigns/1/preview?n=1", "", 200, "", `"text":"Hola Ana"`},
		{"resume a draft", "POST", "/api/clientes/51/campaigns/1/resume", "", 409, "conflict", "campaign 1 is draft"},
		{"start", "POST", "/api/clientes/51/campaigns/1/start", "", 200, "", `"state":"running"`},
		{"campaign of another cliente", "GET", "/api/clientes/52/campaigns/1", "", 404, "not_found", "no campaign 1"},
		{"bad campaign id", "GET", "/api/clientes/51/campaigns/x", "", 404, "not_found", ""},
		{"campaigns", "GET", "/api/clientes/51/campaigns", "", 200, "", `"progress":{`},
		{"pause sending", "POST", "/api/clientes/51/sending/pause", `{"reason": "revisando el teléfono"}`, 200, "", `"reason":"revisando el teléfono"`},
		{"pause sending, no body", "POST", "/api/clientes/52/sending/pause", ``, 200, "", `"paused":true`},
		{"resume sending", "POST", "/api/clientes/51/sending/resume", ``, 200, "", `"paused":false`},
		{"sending", "GET", "/api/clientes/51/sending", "", 200, "", `"time_zone":"America/Argentina/Buenos_Aires"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, h, tt.method, tt.path, tt.body)
			if a.status != tt.status || a.code() != tt.code || !strings.Contains(a.raw, tt.contains) {
				t.Errorf("%s %s: %d %s; want %d %q containing %q", tt.method, tt.path, a.status, a.raw, tt.status, tt.code, tt.contains)
			}
		})
	}

	// A hub built without the sender answers every sending route 503.
	var none *Service
	if a := call(t, mux(none), "POST", "/api/clientes/51/messages", `{}`); a.status != 503 || a.code() != "unavailable" {
		t.Errorf("nil sender: %d %s, want 503 unavailable", a.status, a.raw)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, t.TempDir()+"/hub.db", unpaced)
	ctx := t.Context()
	e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551234", Text: "uno"})
	e.s.Enqueue(ctx, "51", SendRequest{To: "+5491155551234", Text: "dos"})
	e.s.PauseSending(ctx, "52", "")
	got := map[string]float64{}
	e.s.Metrics(ctx, func(name, kind, help string, v float64, labels ...string) {
		got[name+"{"+strings.Join(labels, ",")+"}"] = v
	})
	for k, want := range map[string]float64{
		"leadmaster_hub_outbox_messages{cliente,51,state,queued}": 2,
		"leadmaster_hub_sending_paused{cliente,51}":               0,
		"leadmaster_hub_sending_paused{cliente,52}":               1,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], want, got)
		}
	}
}
