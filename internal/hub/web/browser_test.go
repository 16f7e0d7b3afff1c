package web_test

// The browser test drives the web UI in headless Chromium (Debian's chromium package) with
// chromedp, against the real thing: the central-hub binary, a session-manager binary built
// with -tags fakewa, and the fake WhatsApp server. Both daemons get their listening sockets
// passed the way systemd passes them (LISTEN_FDS). Screenshots of every page go to
// $LEADMASTER_ARTIFACTS/web-ui (or a temporary directory); -update-screenshots copies them
// into docs/screenshots.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/daemontest"
	"github.com/leadmaster/leadmaster/internal/fakewa"
	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/auth"
	"github.com/leadmaster/leadmaster/internal/hub/proxy"
	"github.com/leadmaster/leadmaster/internal/hub/web"
	"github.com/leadmaster/leadmaster/internal/store"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "copy the browser test's screenshots into docs/screenshots")

const (
	adminPassword    = "admin-password-ui"
	memberPassword   = "member-password-ui"
	outsiderPassword = "outsider-password-ui"
	linkedPhone      = "5491155550000"
	carlaPhone       = "5491155551234"
	luciaPhone       = "5491155554321"
)

// chromium returns the browser to drive, or "" when none is installed.
func chromium() string {
	if p := os.Getenv("LEADMASTER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func TestMain(m *testing.M) { os.Exit(daemontest.Main(m)) }

func userAdd(t *testing.T, hubBin, cfg, username, password string, role ...string) {
	t.Helper()
	cmd := exec.Command(hubBin, append([]string{"--config", cfg, "user", "add", "--username", username, "--password-stdin"}, role...)...)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user add %s: %v\n%s", username, err, out)
	}
}

// shots checks a page's accessibility and saves a full-page screenshot of it as a numbered PNG.
type shots struct {
	dir string
	n   int
	all []string
}

// a11yCheck lists what keeps a page from being usable with a keyboard and a screen reader,
// or hard to read: no lang attribute or skip link, form controls without a label, images
// without alt text, empty buttons, duplicate ids, not exactly one h1, and text whose
// contrast with its background is below WCAG AA (4.5:1, or 3:1 for large text).
const a11yCheck = `(() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push("no lang attribute");
  if (!document.querySelector('a.skip[href="#main"]') || !document.getElementById("main")) problems.push("no skip link to #main");
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby")) {
      problems.push("no label: " + el.outerHTML.slice(0, 80));
    }
  }
  for (const img of document.querySelectorAll("img")) if (!img.hasAttribute("alt")) problems.push("img without alt");
  for (const b of document.querySelectorAll("button")) if (!b.textContent.trim() && !b.getAttribute("aria-label")) problems.push("empty button");
  const ids = new Set();
  for (const el of document.querySelectorAll("[id]")) { if (ids.has(el.id)) problems.push("duplicate id " + el.id); ids.add(el.id); }
  const h1 = document.querySelectorAll("h1").length;
  if (h1 !== 1) problems.push(h1 + " h1 elements");
  const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const st = getComputedStyle(el);
    if (st.visibility === "hidden" || el.closest(".sr-only") || el.closest("[hidden]")) continue;
    const fg = rgb(st.color), bg = background(el);
    const [a, b] = [lum(fg.slice(0, 3)), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) problems.push("contrast " + ratio.toFixed(2) + " < " + need + ": " + el.textContent.trim().slice(0, 40));
  }
  return problems;
})()`

func (s *shots) take(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		problems, err := chromedp.Evaluate[[]string](a11yCheck)(ctx, t)
		if err != nil {
			return fmt.Errorf("accessibility check of %s: %w", name, err)
		}
		if len(problems) > 0 {
			return fmt.Errorf("accessibility problems on the %s page:\n  %s", name, strings.Join(problems, "\n  "))
		}
		png, err := chromedp.FullScreenshot(100)(ctx, t)
		if err != nil {
			return fmt.Errorf("screenshot %s: %w", name, err)
		}
		s.n++
		p := filepath.Join(s.dir, fmt.Sprintf("%02d-%s.png", s.n, name))
		s.all = append(s.all, p)
		return os.WriteFile(p, png, 0o644)
	})
}

// status fetches path from the page (with its cookie and the page's CSRF token) and
// returns the HTTP status.
func status(method, path, csrf string) chromedp.Action[int] {
	js := fmt.Sprintf(`fetch(%q, {method: %q, headers: {"X-CSRF-Token": %q, "Accept": "application/json"}}).then(r => r.status)`, path, method, csrf)
	return chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise)
}

// navigate opens path and checks the HTTP status of the page.
func navigate(base, path string, want int64) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		resp, err := chromedp.NavigateResponse(base+path)(ctx, t)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		if resp.Status != want {
			return fmt.Errorf("open %s: HTTP %d, want %d", path, resp.Status, want)
		}
		return nil
	})
}

// waitJS waits until expr is true in the page. A form submitted just before navigates while
// the poll runs; the poll then starts again in the new page.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	poll := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond))
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for {
			_, err := poll(ctx, t)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil || !strings.Contains(err.Error(), "navigated") && !strings.Contains(err.Error(), "context") {
				return fmt.Errorf("wait for %s: %w", expr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func login(base, user, password string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		navigate(base, "/login", 200),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`main form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".who")),
	)
}

// tab is a headless Chromium tab and the JavaScript errors its pages threw.
type tab struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	jsErrors []string
}

// openBrowser starts Chromium with the flags that work on a machine without network (no
// background requests, QUIC or component updates) and a fresh profile in dir.
func openBrowser(t *testing.T, ctx context.Context, path, dir string) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	b := &tab{t: t, ctx: bctx}
	if err := chromedp.Listen(bctx, func(ev any) {
		if ev, ok := ev.(*runtime.EventExceptionThrown); ok {
			b.mu.Lock()
			b.jsErrors = append(b.jsErrors, fmt.Sprintf("%s %s:%d", ev.ExceptionDetails.Text, ev.ExceptionDetails.URL, ev.ExceptionDetails.LineNumber))
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return b
}

func (b *tab) fail(step string, err error) {
	b.t.Helper()
	html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	b.t.Fatalf("%s: %v\npage:\n%s", step, err, html)
}

func (b *tab) do(step string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.fail(step, err)
	}
}

func (b *tab) text(step string, sel chromedp.CSS) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Text(sel))
	if err != nil {
		b.fail(step, err)
	}
	return strings.TrimSpace(v)
}

func (b *tab) attr(step string, sel chromedp.CSS, name string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.AttributeValue(sel, name))
	if err != nil {
		b.fail(step, err)
	}
	return v.Value
}

// location is the tab's path, without the query.
func (b *tab) location(base string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.fail("location", err)
	}
	return strings.TrimPrefix(strings.SplitN(v, "?", 2)[0], base)
}

func (b *tab) checkJS() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.jsErrors) > 0 {
		b.t.Errorf("JavaScript errors in the pages: %q", b.jsErrors)
	}
}

func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test builds the daemons and runs Chromium; skipped with -short")
	}
	browserPath := chromium()
	if browserPath == "" {
		t.Skip("Chromium is not installed (apt-get install chromium, or make test installs it): the web UI's browser test is skipped")
	}
	start := time.Now()
	dir := t.TempDir()
	bins := daemontest.Build(t)
	hubBin, smBin := bins.Hub, bins.SessionManager
	t.Logf("daemons built in %s", time.Since(start).Round(time.Millisecond))

	shotDir := t.TempDir()
	if a := os.Getenv("LEADMASTER_ARTIFACTS"); a != "" {
		shotDir = filepath.Join(a, "web-ui")
		if err := os.MkdirAll(shotDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sh := &shots{dir: shotDir}
	t.Logf("screenshots in %s", shotDir)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	fake, err := fakewa.New(fakewa.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()

	sockDir := filepath.Join(dir, "run")
	os.MkdirAll(sockDir, 0o755)
	cfg := filepath.Join(dir, "leadmaster.toml")
	// Pacing off: the test's campaign goes out as fast as the session manager sends.
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[hub]
state_dir = %q
contact_sync_interval = "0s"
[session_manager]
state_dir = %q
socket_dir = %q
[sender]
per_minute = 0
min_gap = "0s"
max_gap = "0s"
daily_cap = 0
quiet_hours = ""
[clientes.51]
name = "Inmobiliaria Sur"
time_zone = "America/Argentina/Buenos_Aires"
[clientes.52]
name = "Automotores Norte"
`, filepath.Join(dir, "hub"), filepath.Join(dir, "clientes"), sockDir)), 0o644)

	for _, id := range []string{"51", "52"} {
		smSock, _ := daemontest.Socket(t, "unix", filepath.Join(sockDir, id+".sock"))
		daemontest.Start(t, "session-manager-"+id, smSock, dir, []string{"LEADMASTER_FAKEWA_URL=" + fake.URL()}, smBin, "--cliente", id, "--config", cfg).WaitReady()
	}
	userAdd(t, hubBin, cfg, "admin", adminPassword, "--admin")
	userAdd(t, hubBin, cfg, "vendedora", memberPassword, "--cliente", "51")
	userAdd(t, hubBin, cfg, "otro", outsiderPassword, "--cliente", "52")
	hubSock, hubAddr := daemontest.Socket(t, "tcp", "127.0.0.1:0")
	daemontest.Start(t, "central-hub", hubSock, dir, nil, hubBin, "--config", cfg).WaitReady()
	base := "http://" + hubAddr

	b := openBrowser(t, ctx, browserPath, dir)

	// Log in as the cliente's member.
	b.do("login page", navigate(base, "/", 200), chromedp.WaitVisible(chromedp.ID("username")), sh.take("login"))
	// The accessibility check finds what it looks for (an unlabelled input, faint text).
	problems, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`(() => {
		const p = document.createElement("p"); p.style.color = "#bbb"; p.textContent = "faint";
		const i = document.createElement("input"); i.id = "unlabelled";
		document.querySelector("main").append(p, i);
		return `+a11yCheck+`; })()`))
	if err != nil || len(problems) != 2 || !strings.HasPrefix(problems[0], "no label") || !strings.HasPrefix(problems[1], "contrast") {
		t.Errorf("accessibility check of a spoiled page = %q (%v), want an unlabelled input and faint text", problems, err)
	}
	b.do("log in", login(base, "vendedora", memberPassword))

	// Link: the page shows the QR; the fake phone scans it; the page turns to linked by itself.
	b.do("link page",
		navigate(base, "/clientes/51/whatsapp", 200),
		waitJS(`document.getElementById("qr-image").dataset.qr.length > 10 && document.getElementById("qr-image").complete`),
		sh.take("link-qr"),
	)
	qr := b.attr("qr", "#qr-image", "data-qr")
	if err := fake.ScanQR(ctx, qr, linkedPhone); err != nil {
		t.Fatalf("the fake phone could not scan the QR shown on the page (%.30q...): %v", qr, err)
	}
	b.do("linked",
		waitJS(`!document.getElementById("panel-linked").hidden && document.getElementById("linked-text").textContent.includes("5555-0000")`),
		sh.take("link-linked"),
	)
	if got := b.text("linked text", "#linked-text"); got != "Vinculado como +54 9 11 5555-0000" {
		t.Errorf("linked text = %q", got)
	}

	// Leads: a CSV with one bad row shows that row's error with its line number.
	badCSV := filepath.Join(dir, "leads-con-error.csv")
	os.WriteFile(badCSV, []byte("telefono,nombre,etiquetas\n+"+carlaPhone+",Carla,palermo\n11-5555,Pedro,\n+"+luciaPhone+",Lucía,\"palermo,alquiler\"\n"), 0o644)
	goodCSV := filepath.Join(dir, "leads.csv")
	os.WriteFile(goodCSV, []byte("telefono,nombre,etiquetas\n+"+carlaPhone+",Carla,palermo\n+5491155557777,Pedro,centro\n+"+luciaPhone+",Lucía,\"palermo,alquiler\"\n"), 0o644)
	b.do("import with an error",
		navigate(base, "/clientes/51/leads", 200),
		chromedp.SetUploadFiles(chromedp.ID("import-file"), []string{badCSV}),
		chromedp.Click(chromedp.CSS(`#import form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("import-errors")),
		chromedp.ScrollIntoView(chromedp.ID("import")),
		sh.take("leads-import-error"),
	)
	if got := b.text("import error", `#import-errors tr[data-line="3"]`); !strings.Contains(got, "Línea 3") || !strings.Contains(got, "11-5555") {
		t.Errorf("import error row = %q, want line 3 with the bad value", got)
	}
	b.do("import",
		chromedp.SetUploadFiles(chromedp.ID("import-file"), []string{goodCSV}),
		chromedp.Click(chromedp.CSS(`#import form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("import-result")),
	)
	if got := b.text("import result", "#import-result"); !strings.Contains(got, "3 leads nuevos") {
		t.Errorf("import result = %q", got)
	}
	b.do("leads", navigate(base, "/clientes/51/leads", 200), sh.take("leads"))

	// Campaign: the live preview renders the message for real leads; start; progress to 100%.
	b.do("new campaign",
		navigate(base, "/clientes/51/campaigns", 200),
		chromedp.SendKeys(chromedp.ID("c-name"), "Palermo, marzo"),
		chromedp.Click(chromedp.ID("who-tag")),
		chromedp.SendKeys(chromedp.ID("c-tag"), "palermo"),
		chromedp.SendKeys(chromedp.ID("c-template"), "Hola {{nombre|vecino}}, ¿seguís buscando en Palermo? Tenemos novedades."),
		waitJS(`document.getElementById("preview-samples").textContent.includes("Hola Carla, ¿seguís buscando en Palermo?")`),
		chromedp.ScrollIntoView(chromedp.ID("new-campaign")),
		sh.take("campaign-new-preview"),
	)
	if got := b.text("preview", "#preview-body"); !strings.Contains(got, "Le llega a 2 leads") || !strings.Contains(got, "Hola Lucía") {
		t.Errorf("preview = %q", got)
	}
	b.do("create campaign",
		chromedp.Click(chromedp.CSS(`#campaign-form button[value="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[data-action="start"] button`)),
		sh.take("campaign-draft"),
		chromedp.Click(chromedp.CSS(`form[data-action="start"] button`)),
		waitJS(`document.getElementById("campaign-progress").value === 100`),
		sh.take("campaign-done"),
	)
	if got := b.text("progress", "#campaign-progress-text"); got != "2 de 2 procesados (100 %)" {
		t.Errorf("progress = %q", got)
	}
	if got := b.text("failed", `[data-count="failed"]`); got != "0" {
		t.Errorf("failed messages = %s, want 0", got)
	}
	for _, phone := range []string{carlaPhone, luciaPhone} {
		if got := fake.Received(phone); len(got) != 1 || !strings.HasPrefix(got[0].Text, "Hola ") {
			t.Errorf("%s received %+v, want the campaign message once", phone, got)
		}
	}
	campaignPath := b.location(base)

	// Conversations: Carla answers; her reply shows in her conversation by itself.
	b.do("conversations", navigate(base, "/clientes/51/conversations", 200))
	if _, err := fake.SendText(ctx, carlaPhone, linkedPhone, "¡Sí! ¿Tienen algo de dos ambientes?", "Carla"); err != nil {
		t.Fatal(err)
	}
	b.do("conversation",
		waitJS(`fetch(location.href).then(r => r.text()).then(t => t.includes("dos ambientes"))`),
		navigate(base, "/clientes/51/conversations", 200),
		sh.take("conversations"),
		chromedp.Click(chromedp.CSS(`ul.conversations a`)),
		waitJS(`document.querySelector("ol.thread") !== null && document.querySelector("ol.thread").textContent.includes("dos ambientes")`),
		sh.take("conversation"),
	)
	leadPath := b.location(base)

	// The clientes overview, as the admin sees it; users and API keys.
	b.do("admin",
		chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)),
		chromedp.WaitVisible(chromedp.ID("username")),
		login(base, "admin", adminPassword),
		navigate(base, "/clientes", 200),
		waitJS(`document.querySelector('tr[data-cliente="51"]').textContent.includes("5555-0000") && document.querySelector('tr[data-cliente="52"]').textContent.includes("QR")`),
		sh.take("clientes"),
		navigate(base, "/users", 200),
		sh.take("users"),
		navigate(base, "/apikeys", 200),
		chromedp.SetValue(chromedp.ID("nk-cliente"), "51"),
		chromedp.SendKeys(chromedp.ID("nk-name"), "CRM"),
		chromedp.Click(chromedp.CSS(`form[action="/apikeys"] button`)),
		chromedp.WaitVisible(chromedp.ID("new-key")),
		sh.take("apikeys"),
	)

	// A member of cliente 52 sees none of cliente 51: pages and fragments answer 403.
	b.do("outsider",
		chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)),
		chromedp.WaitVisible(chromedp.ID("username")),
		login(base, "otro", outsiderPassword),
		navigate(base, "/clientes", 200),
	)
	rows, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("tr[data-cliente]").length`))
	if err != nil || rows != 1 || strings.Contains(b.text("clientes", "main"), "Inmobiliaria") {
		t.Errorf("outsider's clientes page lists %d clientes (%v), want only its own", rows, err)
	}
	b.do("forbidden page", navigate(base, "/clientes/51/whatsapp", 403), sh.take("forbidden"))
	if body := b.text("forbidden", "main"); !strings.Contains(body, "No tenés acceso") || strings.Contains(body, "Inmobiliaria") {
		t.Errorf("403 page says %q", body)
	}
	csrf := b.attr("csrf", "body", "data-csrf")
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/clientes/51/whatsapp/state", 403},
		{"GET", "/clientes/51/leads", 403},
		{"GET", "/clientes/51/leads?q=carla", 403},
		{"GET", "/clientes/51/campaigns", 403},
		{"GET", "/clientes/51/campaigns/state", 403},
		{"GET", campaignPath, 403},
		{"GET", campaignPath + "/state", 403},
		{"GET", "/clientes/51/conversations", 403},
		{"GET", leadPath, 403},
		{"GET", leadPath + "/messages", 403},
		{"POST", campaignPath + "/cancel", 403},
		{"POST", "/clientes/51/whatsapp/logout", 403},
		{"GET", strings.Replace(campaignPath, "/51/", "/52/", 1), 404},
		{"GET", strings.Replace(leadPath, "/51/", "/52/", 1), 404},
		{"GET", "/users", 403},
		{"GET", "/apikeys", 403},
	} {
		got, err := chromedp.Run(b.ctx, status(tt.method, tt.path, csrf))
		if err != nil || got != tt.want {
			t.Errorf("outsider: %s %s = %d (%v), want %d", tt.method, tt.path, got, err, tt.want)
		}
	}

	// The language switch: the same pages in English.
	b.do("english",
		chromedp.SetValue(chromedp.ID("lang-select"), "en"),
		chromedp.Click(chromedp.CSS(`form[action="/lang"] button`)),
		waitJS(`document.documentElement.lang === "en"`),
		navigate(base, "/clientes", 200),
	)
	lang, heading, header := b.attr("lang", "html", "lang"), b.text("heading", "main h1"), b.text("header", "header")
	if lang != "en" || heading != "Clientes" || !strings.Contains(header, "Log out") {
		t.Errorf("after choosing English: <html lang=%q>, heading %q, header %q", lang, heading, header)
	}

	b.checkJS()
	t.Logf("browser scenario done in %s (with the build); %d screenshots", time.Since(start).Round(time.Millisecond), len(sh.all))

	if *updateScreenshots && !t.Failed() {
		dst := filepath.Join("..", "..", "..", "docs", "screenshots")
		os.MkdirAll(dst, 0o755)
		for _, p := range sh.all {
			b, _ := os.ReadFile(p)
			name := filepath.Base(p)[3:] // drop the step number
			if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("copied %d screenshots into %s", len(sh.all), dst)
	}
}

// rotatingSessions is a session manager whose QR code the test replaces, as WhatsApp does
// every 20 to 60 seconds, and that the test then links.
type rotatingSessions struct {
	mu                sync.Mutex
	state, qr, linked string
}

func (f *rotatingSessions) set(state, qr, linked string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state, f.qr, f.linked = state, qr, linked
}

func (f *rotatingSessions) Status(_ context.Context, id string, _ time.Duration) proxy.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return proxy.Status{Cliente: id, State: f.state, Phone: f.linked}
}

func (f *rotatingSessions) StatusAll(ctx context.Context, ids []string, d time.Duration) []proxy.Status {
	out := make([]proxy.Status, len(ids))
	for i, id := range ids {
		out[i] = f.Status(ctx, id, d)
	}
	return out
}

func (f *rotatingSessions) Call(_ context.Context, _, method, path string, _, out any, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if method != "GET" || path != "/qr" || f.state != "qr" {
		return hub.Errorf(hub.CodeConflict, "not showing a QR")
	}
	b, _ := json.Marshal(map[string]string{"code": f.qr, "expires_at": time.Now().Add(20 * time.Second).Format(time.RFC3339)})
	return json.Unmarshal(b, out)
}

// The link page redraws the QR code when the session manager's code changes, without a reload,
// and turns to linked when the phone scans.
func TestBrowserQRRotates(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Chromium; skipped with -short")
	}
	browserPath := chromium()
	if browserPath == "" {
		t.Skip("Chromium is not installed (apt-get install chromium, or make test installs it): the web UI's browser test is skipped")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	cfg, err := config.Parse("test.toml", []byte("[clientes.51]\nname = \"Inmobiliaria Sur\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, filepath.Join(dir, "hub.db"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, auth.Component, auth.Migrations); err != nil {
		t.Fatal(err)
	}
	authSvc := auth.New(db, auth.Options{Params: auth.Params{Memory: 64, Time: 1, Threads: 1}})
	if _, err := authSvc.CreateUser(ctx, auth.NewUser{Username: "vendedora", Password: memberPassword, Role: hub.RoleMember, ClienteID: "51"}); err != nil {
		t.Fatal(err)
	}
	sm := &rotatingSessions{}
	sm.set("qr", "2@first-code,AAAA,BBBB,CCCC", "")
	ts := httptest.NewServer(web.New(web.Deps{Config: func() *config.Config { return cfg }, Auth: authSvc, Sessions: sm}))
	defer ts.Close()

	b := openBrowser(t, ctx, browserPath, dir)
	b.do("login", login(ts.URL, "vendedora", memberPassword), navigate(ts.URL, "/clientes/51/whatsapp", 200))
	first := b.attr("first image", "#qr-image", "src")
	if got := b.attr("first code", "#qr-image", "data-qr"); got != "2@first-code,AAAA,BBBB,CCCC" || !strings.HasPrefix(first, "data:image/png;base64,") {
		t.Fatalf("QR shown = %q (src %.40q)", got, first)
	}
	sm.set("qr", "2@second-code,DDDD,EEEE,FFFF", "")
	b.do("rotation", waitJS(`document.getElementById("qr-image").dataset.qr === "2@second-code,DDDD,EEEE,FFFF"`))
	if second := b.attr("second image", "#qr-image", "src"); second == first || !strings.HasPrefix(second, "data:image/png;base64,") {
		t.Errorf("the image did not change with the code")
	}
	sm.set("connected", "", "+5491155550000")
	b.do("linked", waitJS(`document.getElementById("linked-text").textContent === "Vinculado como +54 9 11 5555-0000" && document.getElementById("panel-qr").hidden && document.getElementById("pair").hidden`))
	// Unlinked from the phone: a new code appears, and the page shows it again.
	sm.set("qr", "2@third-code,GGGG,HHHH,IIII", "")
	b.do("unlinked", waitJS(`!document.getElementById("panel-qr").hidden && document.getElementById("qr-image").dataset.qr === "2@third-code,GGGG,HHHH,IIII" && document.getElementById("panel-linked").hidden`))
	b.checkJS()
}
