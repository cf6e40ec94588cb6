package bench_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/pgtest"
)

// This file is the load generator of the service benchmarks: `tenantkit serve` runs in a process
// of its own (built from this checkout), and this test process drives it over loopback HTTP, as
// Hasura and Stripe would.

const benchSecret = "bench-secret-0123456789"

var logLevel = cmp.Or(os.Getenv("BENCH_LOG_LEVEL"), "info")

// profileDir (BENCH_PROFILE_DIR), when set, is where the benchmarks that call service.profile write
// CPU profiles of a phase: the service's (through its PPROF_ADDR listener) and the load
// generator's (this process), e.g. checkPermission-service.pprof and checkPermission-generator.pprof.
var profileDir = os.Getenv("BENCH_PROFILE_DIR")

// service is one `tenantkit serve` process on a fresh database.
type service struct {
	url   string
	db    string
	admin *pgxpool.Pool
	cmd   *exec.Cmd
	pprof string // PPROF_ADDR, with BENCH_PROFILE_DIR set
	log   string // the file its log goes to
}

// logSize is how far the service's log has been written: handlers log each request before the
// response leaves the service, so once every answer of a phase is in, its lines lie below this.
func (s *service) logSize(b *testing.B) int64 {
	fi, err := os.Stat(s.log)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// handlerLatencies is the latency the service logged for each request to route between the log
// offsets from and to (logSize): the time inside its handler chain, from the request's headers
// read to the handler's return, without the trip over the loopback and the generator's own work.
func (s *service) handlerLatencies(b *testing.B, route string, from, to int64) *stats {
	f, err := os.Open(s.log)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var rec recorder
	sc := bufio.NewScanner(io.NewSectionReader(f, from, to-from))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Message string   `json:"message"`
			Route   string   `json:"route"`
			Latency *float64 `json:"latency"` // ms (zerolog's default duration unit)
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Message != "request" || line.Route != route || line.Latency == nil {
			continue
		}
		rec.add(time.Duration(*line.Latency*float64(time.Millisecond)), nil)
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return rec.stats(0)
}

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tenantkit-bench-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tenantkit")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/tenantkit").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// startService builds (once per process) and starts `tenantkit serve` on a free loopback port
// against db, with the production log level (info: one line per request, to a file), and waits
// until /readyz answers. env adds variables. The process gets SIGTERM when the benchmark ends.
func startService(b testing.TB, db string, env ...string) *service {
	b.Helper()
	bin, err := buildOnce()
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var pprofAddr string
	if profileDir != "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		pprofAddr = ln.Addr().String()
		ln.Close()
		env = append(env, "PPROF_ADDR="+pprofAddr)
	}
	logFile, err := os.Create(filepath.Join(b.TempDir(), "tenantkit.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+db, "TENANTKIT_SECRET="+benchSecret, "APP_URL=http://app.test",
		"LISTEN_ADDR="+addr, "LOG_LEVEL="+logLevel)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
		}
		logFile.Close()
	})
	s := &service{url: "http://" + addr, db: db, cmd: cmd, pprof: pprofAddr, log: logFile.Name()}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(s.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			log, _ := os.ReadFile(logFile.Name())
			b.Fatalf("tenantkit serve exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatal("tenantkit serve not ready after 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.admin, err = pgxpool.New(context.Background(), db)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.admin.Close)
	return s
}

// rssMiB is the resident memory of the service process (VmRSS), in MiB.
func (s *service) rssMiB(b testing.TB) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("memory of tenantkit serve: %v (needs Linux /proc)", err)
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatalf("VmRSS %q: %v", rest, err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

// profile runs phase, which lasts d, and with BENCH_PROFILE_DIR set records CPU profiles of its
// middle d-1 s: the service's (name-service.pprof) and this process's, the load generator
// (name-generator.pprof). Without BENCH_PROFILE_DIR it only runs phase.
func (s *service) profile(b testing.TB, name string, d time.Duration, phase func() *stats) *stats {
	b.Helper()
	if profileDir == "" || s.pprof == "" {
		return phase()
	}
	secs := max(1, int(d/time.Second)-1)
	done := make(chan error, 1)
	go func() {
		time.Sleep(500 * time.Millisecond) // past the phase's start
		gen, err := os.Create(filepath.Join(profileDir, name+"-generator.pprof"))
		if err != nil {
			done <- err
			return
		}
		defer gen.Close()
		if err := pprof.StartCPUProfile(gen); err != nil {
			done <- err
			return
		}
		defer pprof.StopCPUProfile()
		res, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.pprof, secs))
		if err != nil {
			done <- err
			return
		}
		defer res.Body.Close()
		svc, err := os.Create(filepath.Join(profileDir, name+"-service.pprof"))
		if err == nil {
			_, err = io.Copy(svc, res.Body)
			err = errors.Join(err, svc.Close())
		}
		done <- err
	}()
	st := phase()
	if err := <-done; err != nil {
		b.Fatalf("profile of %s: %v", name, err)
	}
	return st
}

// newDB is a freshly migrated database for one benchmark (dropped at its end).
func newDB(b testing.TB) string { return pgtest.NewDB(b) }

// client is the load generator's HTTP client: keep-alive connections, enough of them for the
// concurrency used here.
var client = &http.Client{
	Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute, DisableCompression: true},
	Timeout:   30 * time.Second,
}

// call POSTs body to url with the headers and returns the status and the body read in full.
func call(ctx context.Context, url string, body []byte, header map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	return res.StatusCode, out, err
}

// stats is what one load phase measured.
type stats struct {
	ok, failed int
	firstErr   error
	elapsed    time.Duration
	latencies  []time.Duration // one per request, sorted
	lag        *stats          // openLoop: from when a request was due to when it was sent
}

func (s *stats) rate() float64 { return float64(s.ok) / s.elapsed.Seconds() }

// pct returns the p-th percentile latency (p in 0..100), in milliseconds.
func (s *stats) pct(p float64) float64 {
	if len(s.latencies) == 0 {
		return 0
	}
	i := min(len(s.latencies)-1, int(float64(len(s.latencies))*p/100))
	return float64(s.latencies[i]) / float64(time.Millisecond)
}

func (s *stats) String() string {
	out := fmt.Sprintf("%d ok, %d failed in %s: %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms",
		s.ok, s.failed, s.elapsed.Round(time.Millisecond), s.rate(), s.pct(50), s.pct(99), s.pct(100))
	if s.lag != nil {
		out += fmt.Sprintf(" (of which the generator's own lag before sending: p50 %.2f ms, p99 %.2f ms)", s.lag.pct(50), s.lag.pct(99))
	}
	return out
}

// recorder collects the outcome of requests from many goroutines.
type recorder struct {
	mu        sync.Mutex
	latencies []time.Duration
	ok        int
	failed    int
	firstErr  error
}

func (r *recorder) add(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latencies = append(r.latencies, d)
	if err != nil {
		r.failed++
		if r.firstErr == nil {
			r.firstErr = err
		}
		return
	}
	r.ok++
}

func (r *recorder) stats(elapsed time.Duration) *stats {
	slices.Sort(r.latencies)
	return &stats{ok: r.ok, failed: r.failed, firstErr: r.firstErr, elapsed: elapsed, latencies: r.latencies}
}

// closedLoop runs do from workers goroutines, each starting its next request when the last one
// ends, for d: the highest rate the service sustains at that concurrency. i numbers the requests.
func closedLoop(ctx context.Context, workers int, d time.Duration, do func(ctx context.Context, i int) error) *stats {
	deadline := time.Now().Add(d)
	return workLoop(ctx, workers, func(int) bool { return time.Now().Before(deadline) }, do)
}

// fixedWork runs do for i = 0 … n-1 from workers goroutines and measures how long all took.
func fixedWork(ctx context.Context, workers, n int, do func(ctx context.Context, i int) error) *stats {
	return workLoop(ctx, workers, func(i int) bool { return i < n }, do)
}

// workLoop is closedLoop and fixedWork: workers goroutines take the next i while more(i) holds.
func workLoop(ctx context.Context, workers int, more func(i int) bool, do func(ctx context.Context, i int) error) *stats {
	var rec recorder
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if !more(i) {
					return
				}
				t := time.Now()
				err := do(ctx, i)
				rec.add(time.Since(t), err)
			}
		})
	}
	wg.Wait()
	return rec.stats(time.Since(start))
}

// openLoop starts requests at a fixed rate for d, whatever the answers' latency, and measures each
// latency from the moment the request was due (so a stall counts for every request it delays:
// no coordinated omission). Request i is due at start + i/rate and sent by worker i mod workers,
// which sleeps until then (no hand-off between goroutines); a worker still busy with an earlier
// request sends late, and that lateness counts. The lag from due to sent is reported apart.
func openLoop(ctx context.Context, rate int, d time.Duration, workers int, do func(ctx context.Context, i int) error) *stats {
	var rec, lag recorder
	interval := time.Second / time.Duration(rate)
	total := int(d / interval)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < total && ctx.Err() == nil; i += workers {
				at := start.Add(time.Duration(i) * interval)
				sleepUntil(at)
				lag.add(time.Since(at), nil)
				err := do(ctx, i)
				rec.add(time.Since(at), err)
			}
		})
	}
	wg.Wait()
	st := rec.stats(time.Since(start))
	st.lag = lag.stats(st.elapsed)
	return st
}

// sleepUntil returns at at, or as soon after as the kernel wakes the thread. time.Sleep alone
// oversleeps by up to a millisecond when the generator has nothing else to run: the Go runtime then
// waits for its next timer in epoll_wait, whose timeout is whole milliseconds (netpoll in
// runtime/netpoll_epoll.go turns a delay under 1 ms into 1 ms and truncates longer ones), and
// openLoop counts that lag in every latency it measures. So only the wait up to 2 ms before at is
// left to time.Sleep; the rest is slept with nanosleep(2), a high-resolution timer, on the worker's
// own thread (a blocking system call: the runtime lends the worker's P to others meanwhile).
func sleepUntil(at time.Time) {
	if wait := time.Until(at) - 2*time.Millisecond; wait > 0 {
		time.Sleep(wait)
	}
	for {
		wait := time.Until(at)
		if wait <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(int64(wait))
		_ = syscall.Nanosleep(&ts, nil) // EINTR (the runtime's preemption signal): sleep what is left
	}
}

// report adds the metrics to the benchmark's result line, which scripts/bench.sh turns into the
// table (units are the table's keys).
func report(b *testing.B, metrics map[string]float64) {
	for unit, v := range metrics {
		b.ReportMetric(v, unit)
	}
	// ns/op means nothing for these one-shot benchmarks; the metrics above are the results.
	b.ReportMetric(0, "ns/op")
}

// statusError is a response other than the one expected.
func statusError(status int, body []byte) error {
	return fmt.Errorf("status %d: %s", status, bytes.TrimSpace(body[:min(len(body), 300)]))
}

var errWrongAnswer = errors.New("wrong answer")

// loadWorkers is the concurrency of the closed-loop phases: enough to keep both cores busy.
func loadWorkers() int { return 16 * runtime.GOMAXPROCS(0) }

// rawConn is a minimal HTTP/1.1 keep-alive client for the high-rate phases: it writes prebuilt
// request bytes and reads the status line, the headers and a Content-Length body. net/http's
// client costs this 2-core machine about as much CPU per request as the service itself (GET
// /healthz: about 11,000/s through it, about 55,000/s through wrk), which would measure the load
// generator instead of the service.
type rawConn struct {
	addr string
	c    net.Conn
	r    *bufio.Reader
}

// rawPool hands each concurrent request a connection of its own.
type rawPool chan *rawConn

func newRawPool(url string, n int) rawPool {
	p := make(rawPool, n)
	for range n {
		p <- &rawConn{addr: strings.TrimPrefix(url, "http://")}
	}
	return p
}

// do sends req (from rawRequest) and returns the status and the body.
func (p rawPool) do(req []byte) (int, []byte, error) {
	rc := <-p
	defer func() { p <- rc }()
	return rc.roundTrip(req)
}

// rawRequest renders a request with a body (nil: none) and the headers.
func rawRequest(method, url string, header map[string]string, body []byte) []byte {
	host, path, _ := strings.Cut(strings.TrimPrefix(url, "http://"), "/")
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s /%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tenantkit-bench\r\n", method, path, host)
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

func (rc *rawConn) roundTrip(req []byte) (int, []byte, error) {
	if rc.c == nil {
		c, err := net.Dial("tcp", rc.addr)
		if err != nil {
			return 0, nil, err
		}
		rc.c, rc.r = c, bufio.NewReaderSize(c, 16<<10)
	}
	status, body, keep, err := rc.exchange(req)
	if err != nil || !keep {
		rc.c.Close()
		rc.c = nil
	}
	return status, body, err
}

func (rc *rawConn) exchange(req []byte) (status int, body []byte, keepAlive bool, err error) {
	if _, err := rc.c.Write(req); err != nil {
		return 0, nil, false, err
	}
	// Parsed in place, without allocating: the generator's CPU per request must stay small (and it
	// is the same for every phase).
	line, err := rc.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	// "HTTP/1.x NNN reason"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	if status, err = atoi(line[9:12]); err != nil || (len(line) > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n') {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	length, keepAlive := -1, true
	for {
		line, err := rc.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		h := bytes.TrimSpace(line)
		if len(h) == 0 {
			break
		}
		name, value, _ := bytes.Cut(h, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = atoi(value); err != nil {
				return 0, nil, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			keepAlive = !bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, nil, false, fmt.Errorf("unsupported Transfer-Encoding %q", value)
		}
	}
	if length < 0 {
		return 0, nil, false, errors.New("response without Content-Length")
	}
	body = make([]byte, length)
	if _, err := io.ReadFull(rc.r, body); err != nil {
		return 0, nil, false, err
	}
	return status, body, keepAlive, nil
}

// atoi parses a decimal number of 1 to 9 digits.
func atoi(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 9 {
		return 0, errors.New("not a number")
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errors.New("not a number")
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}
