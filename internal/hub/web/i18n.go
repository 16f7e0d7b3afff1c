package web

import (
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
)

// languages the UI speaks; the first is the default when the configuration names none.
var languages = []string{"es", "en"}

// lang returns the language of r's page: the visitor's cookie (set by the language form),
// else hub.language, else Spanish.
func (s *Server) lang(r *http.Request) string {
	if c, err := r.Cookie(LangCookie); err == nil && validLang(c.Value) {
		return c.Value
	}
	if l := s.Config().Hub.Language; validLang(l) {
		return l
	}
	return languages[0]
}

func validLang(l string) bool { return l == "es" || l == "en" }

// translate returns the text of key in lang, formatted with args. A missing key shows as
// itself (a test makes sure none is missing).
func translate(lang, key string, args ...any) string {
	m, ok := catalog[key]
	if !ok {
		return key
	}
	text := m.es
	if lang == "en" {
		text = m.en
	}
	if len(args) > 0 {
		return fmt.Sprintf(text, args...)
	}
	return text
}

func hasKey(key string) bool { _, ok := catalog[key]; return ok }

// funcs are the template functions, bound to a language.
func funcs(lang string) template.FuncMap {
	return template.FuncMap{
		"t":          func(key string, args ...any) string { return translate(lang, key, args...) },
		"phone":      formatPhone,
		"when":       func(t any) string { return formatTime(lang, time.Local, t) },
		"stateLabel": func(state string) string { return stateLabel(lang, state) },
		"stateClass": stateClass,
		"pct":        percent,
		"join":       strings.Join,
		"add":        func(a, b int) int { return a + b },
		"sub":        func(a, b int) int { return a - b },
		"list":       func(xs ...string) []string { return xs },
		"has":        slices.Contains[[]string],
		"dataURL":    dataURL,
	}
}

// formatPhone writes an E.164 number the way people read it (+54 9 11 5555-0000).
func formatPhone(e164 string) string {
	if e164 == "" {
		return ""
	}
	if !strings.HasPrefix(e164, "+") {
		e164 = "+" + e164
	}
	n, err := phonenumbers.Parse(e164, "")
	if err != nil {
		return e164
	}
	return phonenumbers.Format(n, phonenumbers.INTERNATIONAL)
}

// formatTime writes a time in loc, day first in Spanish.
func formatTime(lang string, loc *time.Location, v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return ""
		}
		t = *x
	default:
		return ""
	}
	if t.IsZero() {
		return ""
	}
	if lang == "en" {
		return t.In(loc).Format("2006-01-02 15:04")
	}
	return t.In(loc).Format("02/01/2006 15:04")
}

func stateLabel(lang, state string) string {
	if hasKey("state." + state) {
		return translate(lang, "state."+state)
	}
	return state
}

// stateClass is the CSS class of a state badge: good, wait or bad.
func stateClass(state string) string {
	switch state {
	case "connected", "sent", "delivered", "read", "finished", "completed", "done":
		return "good"
	case "qr", "pairing", "connecting", "queued", "sending", "running", "paused", "draft", "scheduled":
		return "wait"
	}
	return "bad"
}

func percent(done, total int) int {
	if total <= 0 {
		return 0
	}
	p := done * 100 / total
	return min(max(p, 0), 100)
}

// messageRules turn the services' English messages into Spanish, for the errors people meet
// most (CSV rows, forms, login). Anything else is shown as it is.
var messageRules = []struct {
	re *regexp.Regexp
	es string
}{
	{regexp.MustCompile(`^phone number is empty$`), "el número de teléfono está vacío"},
	{regexp.MustCompile(`^phone number (".*") has no country code.*$`), "el número $1 no tiene código de país: escribilo como +54 9 ... o indicá una región"},
	{regexp.MustCompile(`^(".*") is not a valid phone number$`), "$1 no es un número de teléfono válido"},
	{regexp.MustCompile(`^(".*") is not a possible phone number$`), "$1 no es un número de teléfono posible"},
	{regexp.MustCompile(`^(".*") is not a phone number$`), "$1 no es un número de teléfono"},
	{regexp.MustCompile(`^has (\d+) fields, the header has (\d+)$`), "tiene $1 campos y el encabezado tiene $2"},
	{regexp.MustCompile(`^must be yes or no.*$`), "debe ser sí o no (si/no, true/false, 1/0, o vacío)"},
	{regexp.MustCompile(`^name is longer than 200 characters$`), "el nombre tiene más de 200 caracteres"},
	{regexp.MustCompile(`^the file is empty.*$`), "el archivo está vacío; se espera una línea de encabezado (por ejemplo telefono,nombre,etiquetas)"},
	{regexp.MustCompile(`^the file has a header but no rows$`), "el archivo tiene encabezado pero ninguna fila"},
	{regexp.MustCompile(`^the file is not UTF-8 text.*$`), "el archivo no es texto UTF-8; guardalo como CSV UTF-8"},
	{regexp.MustCompile(`^no phone column in the header (".*"):.*$`), "el encabezado $1 no tiene una columna de teléfono (telefono, celular, whatsapp o phone)"},
	{regexp.MustCompile(`^malformed CSV: (.*)$`), "CSV mal formado: $1"},
	{regexp.MustCompile(`^(\d+) rows have errors \(first at line (\d+)\); nothing was imported$`), "$1 filas tienen errores (la primera en la línea $2); no se importó nada"},
	{regexp.MustCompile(`^1 row has an error \(first at line (\d+)\); nothing was imported$`), "1 fila tiene un error (en la línea $1); no se importó nada"},
	{regexp.MustCompile(`^tag (".*") must be at most 50 characters.*$`), "la etiqueta $1 debe tener como máximo 50 caracteres, sin comillas ni barras invertidas"},
	{regexp.MustCompile(`^wrong username or password$`), "usuario o contraseña incorrectos"},
	{regexp.MustCompile(`^too many failed logins; try again in (.*)$`), "demasiados intentos fallidos; probá de nuevo en $1"},
	{regexp.MustCompile(`^user (".*") already exists$`), "el usuario $1 ya existe"},
	{regexp.MustCompile(`^password must be at least (\d+) characters$`), "la contraseña debe tener al menos $1 caracteres"},
	{regexp.MustCompile(`^username (".*") must be .*$`), "el usuario $1 debe tener de 1 a 64 letras, dígitos o . _ @ + - y empezar con letra o dígito"},
	{regexp.MustCompile(`^cliente (\S+) already has a contact (\S+)$`), "el cliente $1 ya tiene un lead con el número $2"},
	{regexp.MustCompile(`^you cannot delete yourself$`), "no podés borrar tu propio usuario"},
	// The sender's status and pause reasons.
	{regexp.MustCompile(`^idle$`), "sin mensajes pendientes"},
	{regexp.MustCompile(`^sending$`), "enviando"},
	{regexp.MustCompile(`^not running$`), "detenido"},
	{regexp.MustCompile(`^pacing: next message at (.*)$`), "respetando el ritmo: próximo mensaje a las $1"},
	{regexp.MustCompile(`^quiet hours until (.*)$`), "horario sin envíos hasta las $1"},
	{regexp.MustCompile(`^daily cap of (\d+) campaign messages reached; campaigns go on at (.*)$`), "se llegó al tope diario de $1 mensajes de campaña; siguen el $2"},
	{regexp.MustCompile(`^waiting for the session manager: (.*)$`), "esperando al servicio de WhatsApp: $1"},
	{regexp.MustCompile(`^paused: paused by (.*)$`), "pausado por $1"},
	{regexp.MustCompile(`^paused: (.*)$`), "pausado: $1"},
	{regexp.MustCompile(`^paused by (.*)$`), "pausado por $1"},
}

func translateMessage(lang, msg string) string {
	if lang != "es" {
		return msg
	}
	for _, rule := range messageRules {
		if rule.re.MatchString(msg) {
			return rule.re.ReplaceAllString(msg, rule.es)
		}
	}
	return msg
}

// dataURL lets a PNG data URI (a rendered QR code) through html/template, which refuses
// data: URLs it cannot vouch for; anything else becomes an empty URL.
func dataURL(s string) template.URL {
	if strings.HasPrefix(s, "data:image/png;base64,") && !strings.ContainsAny(s, "\"'<> ") {
		return template.URL(s)
	}
	return ""
}

// location is cliente's time zone (time_zone in leadmaster.toml), else the host's: the
// pages show a cliente's times as its people read them.
func (s *Server) location(cliente string) *time.Location {
	if tz := s.Config().Clientes[cliente].TimeZone; tz != "" {
		if loc, err := time.LoadLocation(tz); err == nil {
			return loc
		}
	}
	return time.Local
}
