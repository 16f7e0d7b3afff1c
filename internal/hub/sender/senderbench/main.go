// Command senderbench measures the sender against the goals of issue 5: enqueueing a
// 100,000-recipient campaign on SQLite, pacing accuracy at 60 messages a minute over five
// minutes, and the unpaced rate from the outbox to the fake WhatsApp server's recipients for
// one cliente and for ten at once (real session-manager processes built with -tags fakewa).
// scripts/bench-sender runs it; BENCH_QUICK=1 shortens the pacing run to 30 seconds.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/leadmaster/leadmaster/internal/config"
	"github.com/leadmaster/leadmaster/internal/fakewa"
	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/hub/api"
	"github.com/leadmaster/leadmaster/internal/hub/events"
	"github.com/leadmaster/leadmaster/internal/hub/proxy"
	"github.com/leadmaster/leadmaster/internal/hub/sender"
	"github.com/leadmaster/leadmaster/internal/sdexec"
	"github.com/leadmaster/leadmaster/internal/store"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "senderbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("senderbench", flag.ContinueOnError)
	smBin := fs.String("sm", "build/session-manager-fakewa", "session-manager built with -tags fakewa")
	only := fs.String("only", "", "run one part: enqueue, pacing, rate")
	recipients := fs.Int("recipients", 100000, "campaign size for the enqueue benchmark")
	pacingFor := fs.Duration("pacing", 5*time.Minute, "length of the pacing run")
	perCliente := fs.Int("messages", 2000, "messages per cliente for the send rate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Getenv("BENCH_QUICK") != "" {
		*pacingFor = 30 * time.Second
		*perCliente = min(*perCliente, 500)
	}
	work, err := os.MkdirTemp("/var/tmp", "senderbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	parts := []struct {
		name string
		fn   func() error
	}{
		{"enqueue", func() error { return benchEnqueue(filepath.Join(work, "enqueue"), *recipients) }},
		{"pacing", func() error { return benchPacing(*smBin, filepath.Join(work, "pacing"), *pacingFor) }},
		{"rate", func() error {
			if err := benchRate(*smBin, filepath.Join(work, "rate1"), 1, *perCliente); err != nil {
				return err
			}
			return benchRate(*smBin, filepath.Join(work, "rate10"), 10, *perCliente/2)
		}},
	}
	for _, p := range parts {
		if *only != "" && *only != p.name {
			continue
		}
		if err := p.fn(); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

// hubDB opens and migrates a hub database in dir (SQLite).
func hubDB(ctx context.Context, dir string) (*store.DB, error) {
	db, err := store.Open(ctx, filepath.Join(dir, "hub.db"), "")
	if err != nil {
		return nil, err
	}
	if err := api.Migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func benchEnqueue(dir string, n int) error {
	ctx := context.Background()
	db, err := hubDB(ctx, dir)
	if err != nil {
		return err
	}
	defer db.Close()
	cfg, _ := config.Parse("bench.toml", []byte("[clientes.51]\nname = \"Bench\"\n"))
	svc := sender.New(sender.Options{DB: db, Config: func() *config.Config { return cfg }})

	// n leads with a tag, put in directly (this is set-up, not measured).
	now := hub.Millis(time.Now())
	err = db.InTx(ctx, func(tx *store.Tx) error {
		for start := 0; start < n; start += 500 {
			var b strings.Builder
			var args []any
			b.WriteString(`INSERT INTO leads (cliente_id, phone, name, source, tags, created_at, updated_at) VALUES `)
			for i := start; i < min(start+500, n); i++ {
				if i > start {
					b.WriteString(",")
				}
				b.WriteString("(?, ?, ?, 'csv', ?, ?, ?)")
				args = append(args, "51", fmt.Sprintf("+54911%08d", i), fmt.Sprintf("Persona %d", i), `["promo"]`, now, now)
			}
			if _, err := tx.Exec(ctx, b.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("insert leads: %w", err)
	}
	fmt.Printf("enqueue a %d-recipient campaign on SQLite (goal < 2 s)\n", n)
	t0 := time.Now()
	c, err := svc.CreateCampaign(ctx, "51", sender.CampaignRequest{Name: "bench", Template: "Hola {{nombre}}, tenemos novedades para vos.", Recipients: sender.Recipients{Tag: "promo"}})
	if err != nil {
		return err
	}
	byTag := time.Since(t0)
	if c.Total != n {
		return fmt.Errorf("campaign has %d messages, want %d", c.Total, n)
	}
	fmt.Printf("  leads by tag:        %6.2f s  (%d messages rendered and written, progress read back)\n", byTag.Seconds(), c.Total)

	list := make([]map[string]string, n)
	for i := range list {
		list[i] = map[string]string{"phone": fmt.Sprintf("+54 9 11 %04d-%04d", 6000+i/10000, i%10000), "producto": "plan " + fmt.Sprint(i%7)}
	}
	t0 = time.Now()
	c, err = svc.CreateCampaign(ctx, "51", sender.CampaignRequest{Name: "bench list", Template: "Hola {{nombre|amigo}}, tu {{producto}} está listo.", Recipients: sender.Recipients{List: list}})
	if err != nil {
		return err
	}
	fromList := time.Since(t0)
	fmt.Printf("  uploaded list:       %6.2f s  (%d numbers parsed with libphonenumber, joined with leads)\n", fromList.Seconds(), c.Total)
	return nil
}

// sm is one session-manager process with its socket passed in, linked to the fake server.
type sm struct {
	id     string
	cmd    *exec.Cmd
	exited chan error
	http   *http.Client
}

func startSM(bin, dir, sockDir, cfgPath, id, fakeURL string) (*sm, error) {
	sock := filepath.Join(sockDir, id+".sock")
	lf, _, err := sdexec.ListenFile("unix", sock)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	s := &sm{id: id, exited: make(chan error, 1), http: sdexec.UnixClient(sock, 10*time.Second)}
	s.cmd = sdexec.Command("session-manager", lf, []string{"LEADMASTER_FAKEWA_URL=" + fakeURL}, bin, "--cliente", id, "--config", cfgPath)
	logf, _ := os.Create(filepath.Join(dir, "sm-"+id+".log"))
	s.cmd.Stderr = logf
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.exited <- s.cmd.Wait() }()
	return s, nil
}

// link scans the QR with the fake phone and waits until connected.
func (s *sm) link(fake *fakewa.Server, phone string) error {
	if err := sdexec.Link(s.http, fake, phone, 30*time.Second); err != nil {
		return fmt.Errorf("cliente %s: %w", s.id, err)
	}
	return nil
}

func (s *sm) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// rig is a hub's sender (in this process, as central-hub wires it: the pool, the event
// consumer with the sender as a sink) and n linked session managers.
type rig struct {
	fake    *fakewa.Server
	db      *store.DB
	svc     *sender.Service
	sms     []*sm
	stop    func()
	phoneOf map[string]string // cliente -> linked phone
}

type eventSource struct{ pool *proxy.Pool }

func (s eventSource) Events(ctx context.Context, id string, after int64, wait time.Duration) (events.Batch, error) {
	var b events.Batch
	err := s.pool.Call(ctx, id, http.MethodGet, fmt.Sprintf("/events?after=%d&limit=200&wait=%s", after, wait), nil, &b, wait+15*time.Second)
	return b, err
}

func newRig(smBin, dir string, n int, pacing string) (*rig, error) {
	ctx := context.Background()
	sockDir := filepath.Join(dir, "run")
	os.MkdirAll(sockDir, 0o755)
	var b strings.Builder
	fmt.Fprintf(&b, "[log]\nlevel = \"warn\"\n[session_manager]\nstate_dir = %q\nsocket_dir = %q\n[sender]\n%s\n", filepath.Join(dir, "clientes"), sockDir, pacing)
	for i := range n {
		fmt.Fprintf(&b, "[clientes.%d]\nname = \"Bench %d\"\n", 51+i, i)
	}
	cfgPath := filepath.Join(dir, "leadmaster.toml")
	os.WriteFile(cfgPath, []byte(b.String()), 0o644)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	fake, err := fakewa.New(fakewa.Options{})
	if err != nil {
		return nil, err
	}
	r := &rig{fake: fake, phoneOf: map[string]string{}}
	for i := range n {
		id := fmt.Sprint(51 + i)
		s, err := startSM(smBin, dir, sockDir, cfgPath, id, fake.URL())
		if err != nil {
			r.close()
			return nil, err
		}
		r.sms = append(r.sms, s)
		phone := fmt.Sprintf("54911550%05d", i)
		if err := s.link(fake, phone); err != nil {
			r.close()
			return nil, err
		}
		r.phoneOf[id] = phone
	}
	if r.db, err = hubDB(ctx, dir); err != nil {
		r.close()
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pool := proxy.New(log, proxy.Options{})
	pool.Configure(cfg, os.Getenv)
	r.svc = sender.New(sender.Options{DB: r.db, Config: func() *config.Config { return cfg }, Gateway: sender.PoolGateway(pool), Log: log})
	consumer := events.NewConsumer(events.NewStore(r.db, r.svc), eventSource{pool}, log)
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.svc.Run(rctx) })
	consumer.Reconcile(rctx, cfg.ClienteIDs())
	r.stop = func() { cancel(); consumer.Stop(); wg.Wait() }
	time.Sleep(500 * time.Millisecond) // the dispatchers start
	return r, nil
}

func (r *rig) close() {
	if r.stop != nil {
		r.stop()
	}
	for _, s := range r.sms {
		s.stop()
	}
	if r.db != nil {
		r.db.Close()
	}
	r.fake.Close()
}

// campaign creates and starts a campaign of n messages for cliente to fresh numbers.
func (r *rig) campaign(cliente string, base, n int) (sender.Campaign, error) {
	list := make([]map[string]string, n)
	for i := range list {
		list[i] = map[string]string{"phone": fmt.Sprintf("+5491%09d", base+i), "n": fmt.Sprint(i)}
	}
	return r.svc.CreateCampaign(context.Background(), cliente, sender.CampaignRequest{Name: "bench", Template: "Mensaje {{n}} de la prueba de envío",
		Recipients: sender.Recipients{List: list}})
}

// arrivals returns the time each distinct message ID reached a recipient whose number starts
// with prefix, sorted.
func (r *rig) arrivals(prefix string) []time.Time {
	seen := map[string]bool{}
	var out []time.Time
	for _, p := range r.fake.Recipients() {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		for _, m := range r.fake.Received(p) {
			if !seen[m.ID] {
				seen[m.ID] = true
				out = append(out, m.Time)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

func benchPacing(smBin, dir string, length time.Duration) error {
	r, err := newRig(smBin, dir, 1, "per_minute = 60\nmin_gap = \"0s\"\nmax_gap = \"0s\"\ndaily_cap = 0\nquiet_hours = \"\"")
	if err != nil {
		return err
	}
	defer r.close()
	n := int(length/time.Second) + 1 // n messages span n-1 intervals of 1 s
	c, err := r.campaign("51", 100000000, n)
	if err != nil {
		return err
	}
	fmt.Printf("pacing at 60 per minute, %d messages over %s (goal: within 2%%)\n", n, length)
	if _, err := r.svc.Act(context.Background(), "51", c.ID, sender.ActionStart); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), length+2*time.Minute)
	defer cancel()
	if err := r.fake.WaitFor(ctx, func() bool { return len(r.arrivals("5491100")) >= n }); err != nil {
		return fmt.Errorf("only %d of %d messages arrived", len(r.arrivals("5491100")), n)
	}
	ts := r.arrivals("5491100")
	elapsed := ts[len(ts)-1].Sub(ts[0])
	want := time.Duration(n-1) * time.Second
	rate := float64(n-1) / elapsed.Minutes()
	var worst time.Duration
	var gaps []float64
	for i, t := range ts {
		if d := t.Sub(ts[0].Add(time.Duration(i) * time.Second)); d.Abs() > worst.Abs() {
			worst = d
		}
		if i > 0 {
			gaps = append(gaps, t.Sub(ts[i-1]).Seconds())
		}
	}
	mean, sd := stats(gaps)
	fmt.Printf("  first to last arrival: %.3f s for %d intervals (ideal %.0f s): %.2f per minute, error %.3f%%\n",
		elapsed.Seconds(), n-1, want.Seconds(), rate, 100*math.Abs(elapsed.Seconds()-want.Seconds())/want.Seconds())
	fmt.Printf("  gap between arrivals: mean %.3f s, sd %.3f s; largest offset from the 1 s grid: %v\n", mean, sd, worst.Round(time.Millisecond))
	return nil
}

func stats(xs []float64) (mean, sd float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(xs)))
}

func benchRate(smBin, dir string, clientes, perCliente int) error {
	r, err := newRig(smBin, dir, clientes, "per_minute = 0\nmin_gap = \"0s\"\nmax_gap = \"0s\"\ndaily_cap = 0\nquiet_hours = \"\"")
	if err != nil {
		return err
	}
	defer r.close()
	ctx := context.Background()
	var ids []int64
	for i := range clientes {
		c, err := r.campaign(fmt.Sprint(51+i), 200000000+i*1000000, perCliente)
		if err != nil {
			return err
		}
		ids = append(ids, c.ID)
	}
	total := clientes * perCliente
	t0 := time.Now()
	for i, id := range ids {
		if _, err := r.svc.Act(ctx, fmt.Sprint(51+i), id, sender.ActionStart); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := r.fake.WaitFor(wctx, func() bool { return len(r.arrivals("54912")) >= total }); err != nil {
		return fmt.Errorf("only %d of %d messages arrived", len(r.arrivals("54912")), total)
	}
	elapsed := time.Since(t0)
	ts := r.arrivals("54912")
	fmt.Printf("unpaced, outbox to fake recipient, %d cliente(s) × %d messages (new recipient each)\n", clientes, perCliente)
	fmt.Printf("  %d messages in %.2f s: %.0f messages/s", total, elapsed.Seconds(), float64(total)/elapsed.Seconds())
	if clientes > 1 {
		fmt.Printf(" (%.0f per cliente)", float64(total)/elapsed.Seconds()/float64(clientes))
	}
	fmt.Printf("; first arrival after %v\n", ts[0].Sub(t0).Round(time.Millisecond))
	// Wait for the dispatchers to record every answer, so the figures include the outbox work.
	for i, id := range ids {
		for {
			c, err := r.svc.Campaign(ctx, fmt.Sprint(51+i), id)
			if err != nil {
				return err
			}
			if c.State == sender.CampaignDone {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}
