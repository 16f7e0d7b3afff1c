package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leadmaster/leadmaster/internal/hub/contacts"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/hub/sender"
)

// Every key a template or handler uses exists, in both languages.
func TestCatalogComplete(t *testing.T) {
	for k, m := range catalog {
		if strings.TrimSpace(m.es) == "" || strings.TrimSpace(m.en) == "" {
			t.Errorf("catalog key %q lacks a language: %+v", k, m)
		}
		if strings.Count(m.es, "%") != strings.Count(m.en, "%") {
			t.Errorf("catalog key %q: Spanish and English take different arguments: %q / %q", k, m.es, m.en)
		}
	}
	used := map[string]bool{}
	keyRE := regexp.MustCompile(`\bt "([a-z0-9_.]+)"`)
	fs.WalkDir(templateFS, "templates", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(templateFS, p)
		for _, m := range keyRE.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
		return nil
	})
	// Keys built at run time.
	for _, prefix := range []struct {
		p  string
		of []string
	}{
		{"state.", []string{"connecting", "qr", "pairing", "connected", "disconnected", "logged_out", "down", "failed", "unresponsive", "error"}},
		{"campaign.state.", []string{"draft", "scheduled", "running", "paused", "cancelled", "done"}},
		{"campaign.action.", []string{"start", "pause", "resume", "cancel"}},
		{"done.campaign_", []string{"start", "pause", "resume", "cancel"}},
		{"msg.state.", progressStates},
		{"source.", []string{contacts.SourceWhatsApp, contacts.SourceCSV, contacts.SourceAPI}},
		{"role.", []string{"admin", "member"}},
	} {
		for _, s := range prefix.of {
			used[prefix.p+s] = true
		}
	}
	if len(used) < 100 {
		t.Fatalf("found only %d keys in the templates; is the pattern broken?", len(used))
	}
	for k := range used {
		if !hasKey(k) {
			t.Errorf("key %q is used but not in the catalog", k)
		}
	}
}

func TestLoginLogout(t *testing.T) {
	e := newEnv(t, "")
	b := e.browser()

	p := b.get("/clientes/51/leads?q=x")
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/login?next=%2Fclientes%2F51%2Fleads%3Fq%3Dx" {
		t.Fatalf("GET a page logged out = %d %q, want a redirect to the login page that comes back", p.status, p.header.Get("Location"))
	}
	lp := b.get("/login")
	for _, want := range []string{`<html lang="es">`, "Iniciar sesión", `<label for="username">Usuario</label>`, `href="#main"`} {
		if !lp.has(want) {
			t.Errorf("login page lacks %q", want)
		}
	}
	// Wrong password: the form again, in Spanish, 401.
	p = b.post("/login", "csrf", lp.csrf(t), "username", "ana", "password", "wrong password")
	if p.status != http.StatusUnauthorized || !p.has("Usuario o contraseña incorrectos.") {
		t.Errorf("wrong password = %d, want 401 with the message\n%s", p.status, p.body)
	}
	// Right password: the cookie, and back where the user wanted to go.
	p = b.post("/login", "csrf", p.csrf(t), "username", "ana", "password", testPassword, "next", "/clientes/51/leads?q=x")
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/clientes/51/leads?q=x" {
		t.Fatalf("login = %d %q", p.status, p.header.Get("Location"))
	}
	setCookie := p.header.Get("Set-Cookie")
	for _, want := range []string{CookieName + "=lms_", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(setCookie, want) {
			t.Errorf("session cookie %q lacks %q", setCookie, want)
		}
	}
	if strings.Contains(setCookie, "Secure") {
		t.Errorf("session cookie over plain HTTP without secure_cookies is Secure: %q", setCookie)
	}
	p = b.get("/clientes/51/leads?q=x")
	if p.status != 200 || !p.has("Sesión de ana") {
		t.Fatalf("page after login = %d", p.status)
	}
	// The session also works for the JSON API's cookie auth: the same cookie name.
	token := b.cookie(CookieName).Value
	if _, err := e.auth.Authenticate(context.Background(), token); err != nil {
		t.Fatalf("cookie token is not a hub session: %v", err)
	}
	// An open redirect is refused.
	b2 := e.browser()
	p = b2.post("/login", "csrf", b2.get("/login").csrf(t), "username", "ana", "password", testPassword, "next", "//evil.example/")
	if p.header.Get("Location") != "/clientes" {
		t.Errorf("login with next=//evil.example/ redirects to %q, want /clientes", p.header.Get("Location"))
	}

	// Logout revokes the session at once.
	p = b.post("/logout", "csrf", b.get("/clientes").csrf(t))
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/login") {
		t.Fatalf("logout = %d %q", p.status, p.header.Get("Location"))
	}
	if _, err := e.auth.Authenticate(context.Background(), token); err == nil {
		t.Error("the session still works after logout")
	}
	if p := b.get("/clientes"); p.status != http.StatusSeeOther {
		t.Errorf("GET /clientes after logout = %d, want 303 to login", p.status)
	}
	if p := b.get("/login?done=logged_out"); !p.has("Cerraste la sesión.") {
		t.Error("login page after logout does not say so")
	}
}

func TestSecureCookie(t *testing.T) {
	e := newEnv(t, "[hub]\nsecure_cookies = true\n")
	b := e.browser()
	p := b.post("/login", "csrf", b.get("/login").csrf(t), "username", "ana", "password", testPassword)
	if c := p.header.Get("Set-Cookie"); !strings.Contains(c, "Secure") {
		t.Errorf("with hub.secure_cookies the session cookie is %q, want Secure", c)
	}
}

func TestLoginThrottled(t *testing.T) {
	e := newEnv(t, "")
	b := e.browser()
	var p answer
	tok := b.get("/login").csrf(t)
	for range 6 {
		p = b.post("/login", "csrf", tok, "username", "ana", "password", "nope nope nope")
	}
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" || !p.has("Demasiados intentos fallidos") {
		t.Errorf("6th failed login = %d (Retry-After %q), want 429 with a message\n%s", p.status, p.header.Get("Retry-After"), p.body)
	}
}

// Every form is refused without the right CSRF token, and works with it.
func TestCSRF(t *testing.T) {
	e := newEnv(t, "")
	anon := e.browser()
	anon.get("/login")
	if p := anon.post("/login", "username", "ana", "password", testPassword); p.status != http.StatusForbidden {
		t.Errorf("login without a token = %d, want 403", p.status)
	}
	if p := anon.post("/login", "csrf", "forged", "username", "ana", "password", testPassword); p.status != http.StatusForbidden {
		t.Errorf("login with a wrong token = %d, want 403", p.status)
	}
	b := e.browser()
	tok := b.login("root")
	other := e.browser()
	otherTok := other.login("root")
	if tok == otherTok {
		t.Fatal("two sessions got the same CSRF token")
	}
	l := e.lead("51", "+5491155551111", "Ana")
	c, err := e.sender.CreateCampaign(context.Background(), "51", sender.CampaignRequest{Name: "c", Template: "hola", Recipients: sender.Recipients{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range e.ui.routes() {
		if rt.method != "POST" {
			continue
		}
		path := strings.NewReplacer("{id}", "51", "{lid}", fmt.Sprint(l.ID), "{uid}", "2", "{kid}", "1",
			"{cid}", fmt.Sprint(c.ID), "{action}", "pause").Replace(rt.pattern)
		for _, tt := range []struct {
			name  string
			field []string
		}{
			{"missing", nil},
			{"wrong", []string{"csrf", "x" + tok}},
			{"another session's", []string{"csrf", otherTok}},
		} {
			if p := b.post(path, tt.field...); p.status != http.StatusForbidden {
				t.Errorf("POST %s with a %s token = %d, want 403", path, tt.name, p.status)
			}
		}
	}
	if _, err := e.contacts.Get(context.Background(), "51", l.ID); err != nil {
		t.Errorf("the lead is gone after forged deletes: %v", err)
	}
	// The header works for scripts.
	req, _ := http.NewRequest("POST", e.ts.URL+"/clientes/51/campaigns/preview", strings.NewReader("template=hola&who=all"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(csrfHeader, tok)
	if p := b.do(req); p.status != 200 {
		t.Errorf("preview with the token in %s = %d, want 200", csrfHeader, p.status)
	}
	// And the right form field works.
	if p := b.post(fmt.Sprintf("/clientes/51/leads/%d/opt-out", l.ID), "csrf", tok, "opted_out", "1"); p.status != http.StatusSeeOther {
		t.Errorf("opt-out with the token = %d, want 303", p.status)
	}
}

// A member of another cliente gets 403 on every page and fragment of cliente 51; an admin
// gets 404 for a cliente that is not configured; nobody logged out gets anything.
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t, "")
	l := e.lead("51", "+5491155551111", "Ana")
	c, err := e.sender.CreateCampaign(context.Background(), "51", sender.CampaignRequest{Name: "c", Template: "hola", Recipients: sender.Recipients{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	beto := e.browser()
	betoTok := beto.login("beto")
	root := e.browser()
	rootTok := root.login("root")
	anon := e.browser()
	anon.get("/login")

	n := 0
	for _, rt := range e.ui.routes() {
		if rt.access != cliente {
			continue
		}
		n++
		fill := func(id string) string {
			return strings.NewReplacer("{id}", id, "{lid}", fmt.Sprint(l.ID), "{cid}", fmt.Sprint(c.ID), "{action}", "pause").Replace(rt.pattern)
		}
		send := func(b *browser, tok, path string) answer {
			if rt.method == "GET" {
				return b.get(path)
			}
			return b.post(path, "csrf", tok)
		}
		if p := send(beto, betoTok, fill("51")); p.status != http.StatusForbidden || strings.Contains(p.body, "Ana") {
			t.Errorf("beto (cliente 52): %s %s = %d, want 403 and nothing of cliente 51", rt.method, fill("51"), p.status)
		}
		if p := send(root, rootTok, fill("99")); p.status != http.StatusNotFound {
			t.Errorf("admin: %s %s = %d, want 404", rt.method, fill("99"), p.status)
		}
		want := http.StatusSeeOther
		if rt.kind == fragment || rt.method == "POST" {
			want = http.StatusUnauthorized
		}
		if p := send(anon, "", fill("51")); p.status != want {
			t.Errorf("logged out: %s %s = %d, want %d", rt.method, fill("51"), p.status, want)
		}
	}
	if n < 20 {
		t.Errorf("only %d cliente routes walked", n)
	}
	// Cliente 51's lead and campaign through cliente 52's own pages: not found.
	for _, path := range []string{fmt.Sprintf("/clientes/52/leads/%d", l.ID), fmt.Sprintf("/clientes/52/conversations/%d", l.ID),
		fmt.Sprintf("/clientes/52/campaigns/%d", c.ID), fmt.Sprintf("/clientes/52/campaigns/%d/state", c.ID)} {
		if p := beto.get(path); p.status != http.StatusNotFound || strings.Contains(p.body, "Ana") {
			t.Errorf("beto: GET %s = %d, want 404", path, p.status)
		}
	}
	// Admin pages.
	for _, path := range []string{"/users", "/apikeys"} {
		if p := beto.get(path); p.status != http.StatusForbidden {
			t.Errorf("member: GET %s = %d, want 403", path, p.status)
		}
	}
	if p := beto.post("/users", "csrf", betoTok, "username", "x", "password", "12345678", "role", "admin"); p.status != http.StatusForbidden {
		t.Errorf("member creating a user = %d, want 403", p.status)
	}
}

func TestClientesPage(t *testing.T) {
	e := newEnv(t, "")
	e.sm["51"].SetState("connected", "+5491155550000")
	root := e.browser()
	root.login("root")
	p := root.get("/clientes")
	for _, want := range []string{"Inmobiliaria Sur", "Beta", "Never started", "+54 9 11 5555-0000", "Conectado", "Servicio detenido", `data-poll-clientes="/clientes/state"`} {
		if !p.has(want) {
			t.Errorf("admin's clientes page lacks %q", want)
		}
	}
	ana := e.browser()
	ana.login("ana")
	p = ana.get("/clientes")
	if !p.has("Inmobiliaria Sur") || p.has("Beta") || p.has("Never started") {
		t.Errorf("member of 51 sees other clientes:\n%s", p.body)
	}
	if p.has(`href="/users"`) {
		t.Error("member sees the admin menu")
	}
	var st struct {
		Clientes []clienteRow
	}
	json.Unmarshal([]byte(ana.get("/clientes/state").body), &st)
	if len(st.Clientes) != 1 || st.Clientes[0].ID != "51" || st.Clientes[0].State != "connected" || st.Clientes[0].Queue != 0 {
		t.Errorf("member's clientes state = %+v", st.Clientes)
	}
	// Why a session manager is down is for the admin (it names sockets and units).
	var all struct{ Clientes []clienteRow }
	json.Unmarshal([]byte(root.get("/clientes/state").body), &all)
	if len(all.Clientes) != 3 || !strings.Contains(all.Clientes[2].Detail, "53.sock") {
		t.Errorf("admin's clientes state = %+v, want cliente 53's failure explained", all.Clientes)
	}
	e.sm["51"].Close()
	json.Unmarshal([]byte(ana.get("/clientes/state").body), &st)
	if st.Clientes[0].State != "down" || st.Clientes[0].Detail != "" {
		t.Errorf("member's view of a stopped session manager = %+v, want the state without the detail", st.Clientes[0])
	}
}

func TestFormatTime(t *testing.T) {
	at := time.Date(2026, 3, 9, 15, 4, 0, 0, time.UTC)
	ba, err := time.LoadLocation("America/Argentina/Buenos_Aires")
	if err != nil {
		t.Skip("no time zone data")
	}
	for _, tt := range []struct {
		lang string
		loc  *time.Location
		want string
	}{
		{"es", time.UTC, "09/03/2026 15:04"},
		{"en", time.UTC, "2026-03-09 15:04"},
		{"es", ba, "09/03/2026 12:04"},
	} {
		if got := formatTime(tt.lang, tt.loc, at); got != tt.want {
			t.Errorf("formatTime(%s, %s) = %q, want %q", tt.lang, tt.loc, got, tt.want)
		}
	}
	if got := formatTime("es", time.UTC, (*time.Time)(nil)); got != "" {
		t.Errorf("formatTime(nil) = %q", got)
	}
}

func TestLinkPage(t *testing.T) {
	e := newEnv(t, "")
	b := e.browser()
	tok := b.login("ana")
	p := b.get("/clientes/51/whatsapp")
	for _, want := range []string{`data-qr="2@fake-qr-51"`, `src="data:image/png;base64,`, "Esperando que se escanee el QR", `data-poll-link="/clientes/51/whatsapp/state"`,
		`<label for="pair-phone">`} {
		if !p.has(want) {
			t.Errorf("link page lacks %q", want)
		}
	}
	var st linkState
	json.Unmarshal([]byte(b.get("/clientes/51/whatsapp/state").body), &st)
	if st.State != "qr" || st.QR != "2@fake-qr-51" || !strings.HasPrefix(st.QRImage, "data:image/png;base64,") {
		t.Errorf("state = %+v, want the QR and its image", st)
	}
	st = linkState{}
	json.Unmarshal([]byte(b.get("/clientes/51/whatsapp/state?known=2@fake-qr-51").body), &st)
	if st.QR != "2@fake-qr-51" || st.QRImage != "" {
		t.Errorf("state with the code known = %+v, want no image again", st)
	}
	// Phone code.
	p = b.post("/clientes/51/whatsapp/pair-code", "csrf", tok, "phone", "+54 9 11 5555-0000")
	if p.status != 200 || !p.has(`<strong id="pair-code">ABCD-EFGH</strong>`) {
		t.Errorf("pair code = %d\n%s", p.status, p.body)
	}
	// The phone scans: the state turns to linked.
	e.sm["51"].SetState("connected", "+5491155550000")
	st = linkState{}
	json.Unmarshal([]byte(b.get("/clientes/51/whatsapp/state").body), &st)
	if st.State != "connected" || st.Linked != "Vinculado como +54 9 11 5555-0000" || st.QR != "" {
		t.Errorf("state once linked = %+v", st)
	}
	p = b.get("/clientes/51/whatsapp")
	if !p.has("Vinculado como +54 9 11 5555-0000") || !p.has(`id="panel-qr" class="panel" hidden`) {
		t.Errorf("linked page:\n%s", p.body)
	}
	// Unlink.
	p = b.post("/clientes/51/whatsapp/logout", "csrf", tok)
	if p.status != http.StatusSeeOther || !strings.Contains(p.header.Get("Location"), "done=unlinked") {
		t.Errorf("unlink = %d %q", p.status, p.header.Get("Location"))
	}
	// Cliente 53's session manager is not running: the page says so instead of failing.
	root := e.browser()
	root.login("root")
	p = root.get("/clientes/53/whatsapp")
	if p.status != 200 || !p.has("Servicio detenido") || !p.has("systemctl status session-manager@53") {
		t.Errorf("link page with the session manager down = %d\n%s", p.status, p.body)
	}
}

func TestLeadsAndImport(t *testing.T) {
	e := newEnv(t, "")
	b := e.browser()
	tok := b.login("ana")
	bad := "telefono,nombre,etiquetas\n+54 9 11 5555-1234,Carla,palermo\nno-es-un-numero,Pedro,\n+54 9 11 5555-4321,Lucía,\"palermo,alquiler\"\n"
	p := b.upload("/clientes/51/leads/import", "file", "leads.csv", bad, "csrf", tok)
	if p.status != http.StatusUnprocessableEntity {
		t.Fatalf("import with a bad row = %d, want 422\n%s", p.status, p.body)
	}
	for _, want := range []string{`<tr data-line="3"><th scope="row">Línea 3</th>`, "no-es-un-numero", "no se importó nada", "1 fila tiene un error"} {
		if !p.has(want) {
			t.Errorf("import errors lack %q\n%s", want, p.body)
		}
	}
	if pg, _ := e.contacts.List(context.Background(), "51", contacts.Filter{}); pg.Total != 0 {
		t.Errorf("a failed import wrote %d leads", pg.Total)
	}
	good := strings.Replace(bad, "no-es-un-numero", "+54 9 11 5555-9999", 1)
	p = b.upload("/clientes/51/leads/import", "file", "leads.csv", good, "csrf", tok)
	if p.status != 200 || !p.has("Importación terminada: 3 filas, 3 leads nuevos, 0 actualizados.") {
		t.Fatalf("good import = %d\n%s", p.status, p.body)
	}
	// Search, tag filter.
	p = b.get("/clientes/51/leads?q=luc")
	if !p.has("Lucía") || p.has("Carla") || !p.has(">1 lead<") {
		t.Errorf("search for luc:\n%s", p.body)
	}
	p = b.get("/clientes/51/leads?tag=alquiler")
	if !p.has("Lucía") || p.has("Carla") {
		t.Errorf("tag filter:\n%s", p.body)
	}
	// Opt out from the table, then filter by it.
	pg, _ := e.contacts.List(context.Background(), "51", contacts.Filter{Q: "carla"})
	carla := pg.Leads[0]
	p = b.post(fmt.Sprintf("/clientes/51/leads/%d/opt-out", carla.ID), "csrf", tok, "opted_out", "1", "next", "/clientes/51/leads?q=carla")
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/clientes/51/leads?q=carla") {
		t.Errorf("opt-out = %d %q", p.status, p.header.Get("Location"))
	}
	p = b.get("/clientes/51/leads?opted_out=yes")
	if !p.has("Carla") || p.has("Lucía") || !p.has("Dado de baja") {
		t.Errorf("opted-out filter:\n%s", p.body)
	}
	// Edit tags and name.
	p = b.post(fmt.Sprintf("/clientes/51/leads/%d", carla.ID), "csrf", tok, "name", "Carla Gómez", "tags", "vip, palermo")
	if p.status != http.StatusSeeOther {
		t.Fatalf("edit = %d\n%s", p.status, p.body)
	}
	got, _ := e.contacts.Get(context.Background(), "51", carla.ID)
	if got.Name != "Carla Gómez" || strings.Join(got.Tags, ",") != "palermo,vip" || got.OptedOut {
		t.Errorf("after edit = %+v (the form without the box checked clears opt-out)", got)
	}
	// Add one by hand; a duplicate is explained.
	p = b.post("/clientes/51/leads", "csrf", tok, "phone", "+54 9 11 5555-1234", "name", "Otra")
	if p.status != http.StatusConflict || !p.has("ya tiene un lead con el número") {
		t.Errorf("duplicate lead = %d\n%s", p.status, p.body)
	}
	p = b.post("/clientes/51/leads", "csrf", tok, "phone", "11 5555-7777", "name", "Local", "region", "AR")
	if p.status != http.StatusSeeOther {
		t.Errorf("lead with region = %d\n%s", p.status, p.body)
	}
	// Delete.
	p = b.post(fmt.Sprintf("/clientes/51/leads/%d/delete", carla.ID), "csrf", tok)
	if _, err := e.contacts.Get(context.Background(), "51", carla.ID); p.status != http.StatusSeeOther || err == nil {
		t.Errorf("delete = %d, lead still there: %v", p.status, err == nil)
	}
}

func TestLanguage(t *testing.T) {
	e := newEnv(t, "[hub]\nlanguage = \"en\"\n")
	b := e.browser()
	p := b.get("/login")
	if !p.has(`<html lang="en">`) || !p.has("Log in to LeadMaster") {
		t.Errorf("hub.language=en: login page not in English")
	}
	// The visitor's choice wins, and is kept in a cookie.
	p = b.post("/lang", "csrf", p.csrf(t), "lang", "es", "next", "/login")
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/login" {
		t.Fatalf("POST /lang = %d %q", p.status, p.header.Get("Location"))
	}
	if c := b.cookie(LangCookie); c == nil || c.Value != "es" {
		t.Fatalf("language cookie = %v", c)
	}
	if p := b.get("/login"); !p.has(`<html lang="es">`) || !p.has("Iniciar sesión en LeadMaster") {
		t.Error("after choosing Spanish the page is not in Spanish")
	}
	// Logged in, the form in the header works too (its token comes from the session).
	tok := b.login("ana")
	if p := b.post("/lang", "csrf", tok, "lang", "en", "next", "/clientes"); p.status != http.StatusSeeOther {
		t.Fatalf("POST /lang logged in = %d", p.status)
	}
	if p := b.get("/clientes/51/whatsapp"); !p.has("Waiting for the QR scan") || !p.has("Link a WhatsApp number") {
		t.Errorf("English link page:\n%s", p.body)
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, "")
	p := e.browser().get("/login")
	for h, want := range map[string]string{
		"Content-Security-Policy": "script-src 'self'",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Cache-Control":           "no-store",
	} {
		if !strings.Contains(p.header.Get(h), want) {
			t.Errorf("%s = %q, want %q in it", h, p.header.Get(h), want)
		}
	}
	if strings.Contains(p.body, "<script>") || regexp.MustCompile(`\son[a-z]+=`).MatchString(p.body) {
		t.Error("inline script or handler in a page (the CSP forbids it)")
	}
	js := e.browser().get("/static/app.js?v=" + e.ui.assetV)
	if js.status != 200 || !strings.Contains(js.header.Get("Content-Type"), "javascript") || !strings.Contains(js.header.Get("Cache-Control"), "immutable") {
		t.Errorf("app.js = %d %q %q", js.status, js.header.Get("Content-Type"), js.header.Get("Cache-Control"))
	}
	if p := e.browser().get("/static/../web.go"); p.status == 200 {
		t.Error("static serves files outside static/")
	}
}

func TestUsersAndKeys(t *testing.T) {
	e := newEnv(t, "")
	b := e.browser()
	tok := b.login("root")
	p := b.post("/users", "csrf", tok, "username", "carla", "password", "short", "role", "member", "cliente", "51")
	if p.status != http.StatusUnprocessableEntity || !p.has("la contraseña debe tener al menos 8 caracteres") || !p.has(`value="carla"`) {
		t.Errorf("short password = %d\n%s", p.status, p.body)
	}
	p = b.post("/users", "csrf", tok, "username", "carla", "password", testPassword, "role", "member", "cliente", "51")
	if p.status != http.StatusSeeOther {
		t.Fatalf("create user = %d\n%s", p.status, p.body)
	}
	users, _ := e.auth.ListUsers(context.Background(), "51")
	var carla int64
	for _, u := range users {
		if u.Username == "carla" {
			carla = u.ID
		}
	}
	if carla == 0 {
		t.Fatal("carla was not created as a member of 51")
	}
	if p := b.post(fmt.Sprintf("/users/%d/password", carla), "csrf", tok, "password", "another password"); p.status != http.StatusSeeOther {
		t.Errorf("set password = %d", p.status)
	}
	c := e.browser()
	lp := c.get("/login")
	if p := c.post("/login", "csrf", lp.csrf(t), "username", "carla", "password", "another password"); p.status != http.StatusSeeOther {
		t.Errorf("login with the new password = %d", p.status)
	}
	if p := b.post(fmt.Sprintf("/users/%d/delete", carla), "csrf", tok); p.status != http.StatusSeeOther {
		t.Errorf("delete user = %d", p.status)
	}
	if p := c.get("/clientes"); p.status != http.StatusSeeOther {
		t.Errorf("a deleted user's session still opens pages: %d", p.status)
	}
	// API keys: the secret is shown once, on the answer to the form.
	p = b.post("/apikeys", "csrf", tok, "cliente", "52", "name", "CRM")
	m := regexp.MustCompile(`value="(lmk_[^"]+)"`).FindStringSubmatch(p.body)
	if p.status != http.StatusCreated || m == nil {
		t.Fatalf("create key = %d\n%s", p.status, p.body)
	}
	pr, err := e.auth.Authenticate(context.Background(), m[1])
	if err != nil || pr.ClienteID != "52" {
		t.Fatalf("the key shown does not work for cliente 52: %v %+v", err, pr)
	}
	if p := b.get("/apikeys"); strings.Contains(p.body, m[1]) || !p.has("CRM") {
		t.Error("the key list shows the secret again, or not the key")
	}
	if p := b.post(fmt.Sprintf("/apikeys/52/%d/revoke", pr.APIKeyID), "csrf", tok); p.status != http.StatusSeeOther {
		t.Errorf("revoke = %d", p.status)
	}
	if _, err := e.auth.Authenticate(context.Background(), m[1]); err == nil {
		t.Error("a revoked key still works")
	}
}

func TestConversations(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	// The event consumer stores an incoming message.
	data, _ := json.Marshal(events.MessageData{ID: "3EB0AAA", From: "+5491155551234", PushName: "Carla",
		Text: "Hola, ¿sigue disponible el depto?", Timestamp: time.Now()})
	if _, err := e.events.Apply(ctx, "51", []events.Event{{Seq: 1, Type: events.TypeMessage, Time: time.Now(), Data: data}}); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	tok := b.login("ana")
	p := b.get("/clientes/51/conversations")
	if !p.has("Carla") || !p.has("Hola, ¿sigue disponible el depto?") {
		t.Fatalf("conversations:\n%s", p.body)
	}
	pg, _ := e.contacts.List(ctx, "51", contacts.Filter{Conversations: true})
	path := fmt.Sprintf("/clientes/51/conversations/%d", pg.Leads[0].ID)
	p = b.get(path)
	if !p.has(`class="msg in"`) || !p.has("Hola, ¿sigue disponible el depto?") || !p.has(`data-poll-thread="`+path+`/messages"`) {
		t.Errorf("conversation:\n%s", p.body)
	}
	if frag := b.get(path + "/messages"); frag.status != 200 || !frag.has("sigue disponible") || frag.has("<html") {
		t.Errorf("thread fragment = %d\n%s", frag.status, frag.body)
	}
	// A reply goes to the outbox.
	p = b.post(path, "csrf", tok, "text", "¡Sí! ¿Cuándo querés verlo?")
	if p.status != http.StatusSeeOther {
		t.Fatalf("reply = %d\n%s", p.status, p.body)
	}
	if n, _ := e.ui.queueSize(ctx, "51"); n != 1 {
		t.Errorf("queue after a reply = %d, want 1", n)
	}
}

func TestCampaigns(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	e.lead("51", "+5491155551111", "Ana", "palermo")
	e.lead("51", "+5491155552222", "", "palermo")
	e.lead("51", "+5491155553333", "Juan")
	b := e.browser()
	tok := b.login("ana")
	// Live preview for real leads.
	var pv campaignPreview
	req, _ := http.NewRequest("POST", e.ts.URL+"/clientes/51/campaigns/preview",
		strings.NewReader("who=tag&tag=palermo&template="+strings.ReplaceAll("Hola {{nombre|vecino}}, ¿seguís buscando?", " ", "+")))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(csrfHeader, tok)
	json.Unmarshal([]byte(b.do(req).body), &pv)
	if pv.Recipients != 2 || len(pv.Samples) != 2 || pv.Samples[0].Text != "Hola Ana, ¿seguís buscando?" || pv.Samples[1].Text != "Hola vecino, ¿seguís buscando?" {
		t.Errorf("preview = %+v", pv)
	}
	pv0 := pv
	req, _ = http.NewRequest("POST", e.ts.URL+"/clientes/51/campaigns/preview", strings.NewReader("who=all&template=Hola+{{apellido}}"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(csrfHeader, tok)
	pv = campaignPreview{}
	json.Unmarshal([]byte(b.do(req).body), &pv)
	if !strings.Contains(pv.Error, "{{apellido}} no es un campo") {
		t.Errorf("preview with an unknown field = %+v", pv)
	}
	// Without JavaScript, the preview button renders it under the form.
	p := b.post("/clientes/51/campaigns", "csrf", tok, "action", "preview", "name", "x", "template", "Hola {{nombre}}", "who", "all")
	if p.status != 200 || !p.has("Hola Juan") || !p.has("Le llega a 3 leads") {
		t.Errorf("no-JS preview:\n%s", p.body)
	}
	// Create: a draft, whose page shows the queued texts.
	p = b.post("/clientes/51/campaigns", "csrf", tok, "action", "create", "name", "Palermo", "template", "Hola {{nombre|vecino}}, ¿seguís buscando?", "who", "tag", "tag", "palermo")
	loc := p.header.Get("Location")
	if p.status != http.StatusSeeOther || !strings.HasPrefix(loc, "/clientes/51/campaigns/") {
		t.Fatalf("create = %d %q\n%s", p.status, loc, p.body)
	}
	path, _, _ := strings.Cut(loc, "?")
	// The live preview rendered the texts the sender queued.
	var cid int64
	fmt.Sscanf(path, "/clientes/51/campaigns/%d", &cid)
	queued, err := e.sender.Preview(ctx, "51", cid, 10)
	if err != nil || len(queued) != 2 {
		t.Fatalf("queued = %+v, %v", queued, err)
	}
	for i, q := range queued {
		if q.Text != pv0.Samples[i].Text || formatPhone(q.To) != pv0.Samples[i].To {
			t.Errorf("queued message %d = %s %q, the preview said %s %q", i, q.To, q.Text, pv0.Samples[i].To, pv0.Samples[i].Text)
		}
	}
	p = b.get(loc)
	for _, want := range []string{"Palermo", "Borrador", "Hola Ana", "Hola vecino", "0 de 2 procesados (0 %)", `data-action="start"`, "Campaña creada como borrador"} {
		if !p.has(want) {
			t.Errorf("campaign page lacks %q", want)
		}
	}
	// Start; the dispatcher sends through the stand-in session manager.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go e.sender.Run(runCtx)
	if p := b.post(path+"/start", "csrf", tok); p.status != http.StatusSeeOther {
		t.Fatalf("start = %d\n%s", p.status, p.body)
	}
	var st campaignState
	deadline := time.Now().Add(20 * time.Second)
	for st.Pct < 100 && time.Now().Before(deadline) {
		json.Unmarshal([]byte(b.get(path+"/state").body), &st)
		time.Sleep(100 * time.Millisecond)
	}
	if st.Pct != 100 || st.Done != 2 || st.Progress != "2 de 2 procesados (100 %)" {
		t.Errorf("campaign state = %+v, want 100%%", st)
	}
	// A finished campaign cannot be paused: the page explains.
	if p := b.post(path+"/pause", "csrf", tok); p.status != http.StatusConflict {
		t.Errorf("pause a finished campaign = %d, want 409", p.status)
	}
	p = b.get("/clientes/51/campaigns")
	if !p.has("Palermo") || !p.has(`<progress max="100" value="100"`) {
		t.Errorf("campaign list:\n%s", p.body)
	}
	// The cliente's sending: its pace, a pause with a reason, and resuming.
	if !p.has("sin límite por minuto") || !p.has("Envíos de este cliente") {
		t.Errorf("campaigns page lacks the sending card:\n%s", p.body)
	}
	if p := b.post("/clientes/51/sending/pause", "csrf", tok, "reason", "feriado"); p.status != http.StatusSeeOther {
		t.Fatalf("pause sending = %d", p.status)
	}
	if p := b.get("/clientes/51/campaigns"); !p.has("Todos los envíos de este cliente están pausados: feriado") || !p.has(`action="/clientes/51/sending/resume"`) {
		t.Errorf("paused sending not shown:\n%s", p.body)
	}
	if st, _ := e.sender.Sending(ctx, "51"); !st.Paused || st.Reason != "feriado" {
		t.Errorf("sending after the pause form = %+v", st)
	}
	b.post("/clientes/51/sending/resume", "csrf", tok)
	if st, _ := e.sender.Sending(ctx, "51"); st.Paused {
		t.Errorf("sending still paused after resume: %+v", st)
	}
	// An empty selection is refused with the reason.
	p = b.post("/clientes/51/campaigns", "csrf", tok, "action", "create", "name", "Nadie", "template", "Hola", "who", "tag", "tag", "nadie")
	if p.status != http.StatusUnprocessableEntity || !p.has("no one to write to") {
		t.Errorf("campaign with no recipients = %d\n%s", p.status, p.body)
	}
}
