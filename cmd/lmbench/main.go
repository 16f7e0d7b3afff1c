// Command lmbench measures session-manager the way the issues state their goals: start-up
// to the first HTTP answer and to READY=1 with the socket passed in, resident memory idle and
// linked, the total memory (PSS) of many idle session managers, and the send rate of one
// linked session against the fake WhatsApp server. `make bench` runs it; it is a development
// tool and is not installed by the package.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leadmaster/leadmaster/internal/fakewa"
	"github.com/leadmaster/leadmaster/internal/sdexec"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "lmbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("lmbench", flag.ContinueOnError)
	prod := fs.String("bin", "bin/session-manager", "production session-manager binary")
	test := fs.String("test-bin", "build/session-manager-fakewa", "session-manager built with -tags fakewa")
	starts := fs.Int("starts", 40, "start-up runs")
	many := fs.Int("many", 100, "idle session managers for the PSS total")
	sends := fs.Int("sends", 1000, "messages for the send rate")
	only := fs.String("only", "", "run one part: start, idle, many, linked")
	if err := fs.Parse(args); err != nil {
		return err
	}
	work, err := os.MkdirTemp("/var/tmp", "lmbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	parts := []struct {
		name string
		fn   func() error
	}{
		{"start", func() error { return benchStart(*prod, work, *starts) }},
		{"idle", func() error { return benchIdle(*prod, work) }},
		{"many", func() error { return benchMany(*prod, work, *many) }},
		{"linked", func() error { return benchLinked(*test, work, *sends) }},
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

// instance is one session-manager started with its socket passed in, as systemd does.
type instance struct {
	cmd    *exec.Cmd
	sock   string
	ready  chan time.Time
	exited chan error
	http   *http.Client
}

func startInstance(bin, dir, id string, env ...string) (*instance, time.Time, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, time.Time{}, err
	}
	cfg := filepath.Join(dir, "lm.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[log]\nlevel = \"warn\"\n[session_manager]\nstate_dir = %q\nsocket_dir = %q\n", filepath.Join(dir, "state"), dir)), 0o644)
	sock := filepath.Join(dir, "sm.sock")
	lf, _, err := sdexec.ListenFile("unix", sock)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer lf.Close()
	in := &instance{sock: sock, ready: make(chan time.Time, 1), exited: make(chan error, 1), http: sdexec.UnixClient(sock, 60*time.Second)}
	notifyPath := filepath.Join(dir, "notify.sock")
	nc, err := sdexec.ListenNotify(notifyPath, func(line string) {
		if line == "READY=1" {
			select {
			case in.ready <- time.Now():
			default:
			}
		}
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	in.cmd = sdexec.Command("session-manager", lf, append([]string{"NOTIFY_SOCKET=" + notifyPath}, env...), bin, "--cliente", id, "--config", cfg)
	t0 := time.Now()
	if err := in.cmd.Start(); err != nil {
		nc.Close()
		return nil, t0, err
	}
	go func() { in.exited <- in.cmd.Wait(); nc.Close() }()
	return in, t0, nil
}

func (in *instance) stop() {
	in.cmd.Process.Signal(os.Interrupt)
	select {
	case <-in.exited:
	case <-time.After(10 * time.Second):
		in.cmd.Process.Kill()
		<-in.exited
	}
}

// firstAnswer connects at once (the connection waits in the socket's backlog, as it would
// under systemd) and returns when /health has answered.
func firstAnswer(sock, path string) (time.Time, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return time.Time{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET "+path+" HTTP/1.0\r\nHost: sm\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return time.Time{}, err
	}
	if !strings.Contains(line, " 200 ") {
		return time.Time{}, fmt.Errorf("%s answered %q", path, strings.TrimSpace(line))
	}
	return time.Now(), nil
}

func benchStart(bin, work string, n int) error {
	var toHTTP, toReady, toStatus, shOnly []time.Duration
	for i := 0; i < n; i++ {
		dir := filepath.Join(work, fmt.Sprintf("start-%d", i))
		in, t0, err := startInstance(bin, dir, "51")
		if err != nil {
			return err
		}
		statusDone := make(chan time.Time, 1)
		go func() {
			t, err := firstAnswer(in.sock, "/status")
			if err != nil {
				fmt.Fprintln(os.Stderr, "lmbench: /status:", err)
			}
			statusDone <- t
		}()
		answered, err := firstAnswer(in.sock, "/health")
		if err != nil {
			in.stop()
			return err
		}
		var ready time.Time
		select {
		case ready = <-in.ready:
		case <-time.After(10 * time.Second):
			in.stop()
			return fmt.Errorf("no READY=1 within 10s")
		}
		toHTTP = append(toHTTP, answered.Sub(t0))
		toStatus = append(toStatus, (<-statusDone).Sub(t0))
		toReady = append(toReady, ready.Sub(t0))
		in.stop()
		os.RemoveAll(dir)
		t1 := time.Now()
		exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0"`, "/bin/true").Run()
		shOnly = append(shOnly, time.Since(t1))
	}
	fmt.Printf("session-manager start-up, socket passed in, no device (%d runs)\n", n)
	fmt.Printf("  exec to first HTTP answer: median %s  p90 %s   (goal < 30ms; wuzapi ~56ms, go-whatsapp-web-multidevice ~84ms, whatsapp-web.js tens of seconds)\n", ms(median(toHTTP)), ms(pct(toHTTP, 90)))
	fmt.Printf("  exec to READY=1:           median %s  p90 %s\n", ms(median(toReady)), ms(pct(toReady, 90)))
	fmt.Printf("  exec to /status answered (store created and open, WhatsApp client ready): median %s  p90 %s\n", ms(median(toStatus)), ms(pct(toStatus, 90)))
	fmt.Printf("  (includes the /bin/sh that sets LISTEN_PID: median %s)\n", ms(median(shOnly)))
	return nil
}

func benchIdle(bin, work string) error {
	dir := filepath.Join(work, "idle")
	in, _, err := startInstance(bin, dir, "51")
	if err != nil {
		return err
	}
	defer in.stop()
	<-in.ready
	time.Sleep(8 * time.Second)
	rss, pss, err := memory(in.cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("session-manager idle, unlinked (production build, 8s after start)\n")
	fmt.Printf("  RSS %s  PSS %s   (goal RSS < 20 MB; wuzapi 21 MB, go-whatsapp-web-multidevice 37 MB, WAHA 200 MB, whatsapp-web.js ~400 MB)\n", mb(rss), mb(pss))
	return nil
}

func benchMany(bin, work string, n int) error {
	var ins []*instance
	defer func() {
		var wg sync.WaitGroup
		for _, in := range ins {
			wg.Add(1)
			go func() { defer wg.Done(); in.stop() }()
		}
		wg.Wait()
	}()
	for i := 0; i < n; i++ {
		in, _, err := startInstance(bin, filepath.Join(work, fmt.Sprintf("many-%d", i)), strconv.Itoa(1000+i))
		if err != nil {
			return err
		}
		ins = append(ins, in)
		select {
		case <-in.ready:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("instance %d not ready", i)
		}
	}
	time.Sleep(8 * time.Second)
	var totalPSS, totalRSS int64
	for _, in := range ins {
		rss, pss, err := memory(in.cmd.Process.Pid)
		if err != nil {
			return err
		}
		totalPSS += pss
		totalRSS += rss
	}
	fmt.Printf("%d idle session managers on one host (production build, unlinked)\n", n)
	fmt.Printf("  total PSS %s (%s each); sum of RSS %s   (whatsapp-web.js: ~400 MB each, %s for %d)\n",
		mb(totalPSS), mb(totalPSS/int64(n)), mb(totalRSS), mb(int64(n)*400<<20), n)
	return nil
}

func benchLinked(bin, work string, n int) error {
	fake, err := fakewa.New(fakewa.Options{})
	if err != nil {
		return err
	}
	defer fake.Close()
	dir := filepath.Join(work, "linked")
	in, _, err := startInstance(bin, dir, "51", "LEADMASTER_FAKEWA_URL="+fake.URL())
	if err != nil {
		return err
	}
	defer in.stop()
	<-in.ready
	if err := sdexec.Link(in.http, fake, "5491155550000", 35*time.Second); err != nil {
		return err
	}
	time.Sleep(8 * time.Second)
	rssLinked, _, err := memory(in.cmd.Process.Pid)
	if err != nil {
		return err
	}

	send := func(i int, to string) error {
		body := fmt.Sprintf(`{"to":%q,"text":"Hola, mensaje %d de la prueba de envío"}`, to, i)
		resp, err := in.http.Post("http://sm/messages", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("POST /messages: %d %s", resp.StatusCode, b)
		}
		return nil
	}
	rate := func(conc int, recipient func(i int) string) (float64, error) {
		var next atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1))
					if i > n {
						return
					}
					if err := send(i, recipient(i)); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := firstErr.Load().(error); err != nil {
			return 0, err
		}
		return float64(n) / time.Since(t0).Seconds(), nil
	}
	base := 5491150000000
	seqNew, err := rate(1, func(i int) string { return "+" + strconv.Itoa(base+i) })
	if err != nil {
		return err
	}
	seqSame, err := rate(1, func(int) string { return "+5491155551234" })
	if err != nil {
		return err
	}
	conc, err := rate(8, func(i int) string { return "+" + strconv.Itoa(base+100000+i) })
	if err != nil {
		return err
	}
	rssAfter, _, _ := memory(in.cmd.Process.Pid)
	fmt.Printf("session-manager linked to the fake WhatsApp server (test build)\n")
	fmt.Printf("  RSS linked, idle: %s   (goal < 40 MB)\n", mb(rssLinked))
	fmt.Printf("  send rate, %d messages each, fake server in the same host:\n", n)
	fmt.Printf("    one at a time, a new recipient each (Signal session set-up every time): %.0f msg/s\n", seqNew)
	fmt.Printf("    one at a time, the same recipient:                                     %.0f msg/s\n", seqSame)
	fmt.Printf("    8 concurrent requests, new recipients:                                 %.0f msg/s\n", conc)
	fmt.Printf("  RSS after %d sends: %s\n", 3*n, mb(rssAfter))
	return nil
}

// memory returns a process's RSS and PSS in bytes.
func memory(pid int) (rss, pss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			rss = v << 10
		case "Pss:":
			pss = v << 10
		}
	}
	return rss, pss, nil
}

func median(d []time.Duration) time.Duration { return pct(d, 50) }

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
func mb(b int64) string         { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
