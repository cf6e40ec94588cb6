// Package stripetest runs the official stripe-mock (github.com/stripe/stripe-mock,
// pinned to Version) for tests and points stripe-go v76 clients at it.
//
// stripe-mock is stateless: it validates each request against the OpenAPI
// spec it embeds (API version 2023-10-16, the one stripe-go v76 pins) and
// answers with fixtures. It stores nothing, enforces no idempotency and sends
// no webhooks; see docs/stripe.md.
//
// Start it once per test process, from TestMain or a sync.Once:
//
//	srv, err := stripetest.Start(ctx)
//	...
//	defer srv.Stop()
//	sc := srv.Client(stripetest.TestKey) // *client.API
package stripetest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	"github.com/stripe/stripe-go/v76/webhook"
)

const (
	// Module and Version identify the stripe-mock release tests run against:
	// the newest one that still serves the usage-record endpoints stripe-go
	// v76 calls.
	Module  = "github.com/stripe/stripe-mock"
	Version = "v0.183.0"

	// TestKey is a secret key stripe-mock accepts (any "sk_test_…" works).
	TestKey = "sk_test_123"

	// EnvURL names the variable that points tests at an already running
	// stripe-mock (e.g. http://127.0.0.1:12111) instead of starting one.
	EnvURL = "STRIPE_MOCK_URL"

	// readyTimeout bounds the wait for a server to answer after start.
	readyTimeout = 30 * time.Second
)

// Server is a running stripe-mock.
type Server struct {
	// URL is the base URL, e.g. http://127.0.0.1:41234 (no trailing slash,
	// no /v1).
	URL string
	// Source says where the server came from: "env:STRIPE_MOCK_URL",
	// "path:<binary>" (found on PATH or in GOBIN/GOPATH/bin) or
	// "cache:<binary>" (installed by this package).
	Source string

	cmd      *exec.Cmd     // nil for a server this process did not start
	exited   chan struct{} // closed once the process has exited
	waitErr  error         // cmd.Wait's result, set before exited is closed
	out      *tail         // last lines of stdout and stderr
	stopOnce sync.Once
	stopErr  error
}

// Start returns a stripe-mock for the test process:
//
//  1. the server at $STRIPE_MOCK_URL when set (shared: Stop leaves it
//     running); it must answer within 30 s;
//  2. otherwise a new process of the binary found by [Binary], listening on
//     a free port of 127.0.0.1, started with -strict-version-check so a
//     stripe-mock whose spec is not stripe.APIVersion refuses stripe-go's
//     requests, and ready once GET /v1/customers answers 200 (within 30 s).
//
// ctx bounds finding or installing the binary and the wait for readiness,
// not the life of the server: call Stop.
func Start(ctx context.Context) (*Server, error) {
	if u := strings.TrimSpace(os.Getenv(EnvURL)); u != "" {
		u = strings.TrimSuffix(strings.TrimSuffix(u, "/"), "/v1")
		s := &Server{URL: u, Source: "env:" + EnvURL}
		if err := s.waitReady(ctx, time.Now().Add(readyTimeout)); err != nil {
			return nil, fmt.Errorf("stripetest: stripe-mock from $%s=%s: %w", EnvURL, u, err)
		}
		return s, nil
	}
	bin, source, err := Binary(ctx)
	if err != nil {
		return nil, err
	}
	s, err := launch(ctx, bin)
	if err != nil {
		return nil, fmt.Errorf("stripetest: start %s: %w", bin, err)
	}
	s.Source = source + ":" + bin
	return s, nil
}

// Stop kills a stripe-mock this process started and waits for it to exit.
// It is a no-op for a server from $STRIPE_MOCK_URL, and safe to call more
// than once. It reports an error if the process had died on its own.
func (s *Server) Stop() error {
	if s == nil || s.cmd == nil {
		return nil
	}
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
			s.stopErr = fmt.Errorf("stripetest: stripe-mock had exited before Stop: %v\n%s", s.waitErr, s.out)
			return
		default:
		}
		if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			s.stopErr = fmt.Errorf("stripetest: kill stripe-mock: %w", err)
			return
		}
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			s.stopErr = errors.New("stripetest: stripe-mock did not exit within 10s of SIGKILL")
		}
	})
	return s.stopErr
}

// Output returns the last lines stripe-mock printed (it logs one line per
// request), for failure messages. Empty for a server from $STRIPE_MOCK_URL.
func (s *Server) Output() string {
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Backends returns stripe-go backends that send every request to the
// server, with no network retries (MaxNetworkRetries 0: a failure shows at
// once instead of after stripe-go's back-off), no telemetry header, a 30 s
// HTTP timeout and a logger that prints nothing (errors are returned).
func (s *Server) Backends() *stripe.Backends {
	return newBackends(s.URL, nil)
}

// Client returns a stripe-go client API whose every resource client talks to
// the server with the given secret key ("" means TestKey).
func (s *Server) Client(key string) *client.API {
	if key == "" {
		key = TestKey
	}
	return client.New(key, s.Backends())
}

// newBackends builds API, Connect and Uploads backends for url; cfg, when
// not nil, adjusts each config before the backend is built.
func newBackends(url string, cfg func(*stripe.BackendConfig)) *stripe.Backends {
	httpClient := &http.Client{Timeout: 30 * time.Second}
	backend := func(t stripe.SupportedBackend) stripe.Backend {
		c := &stripe.BackendConfig{
			URL:               stripe.String(url),
			HTTPClient:        httpClient,
			MaxNetworkRetries: stripe.Int64(0),
			EnableTelemetry:   stripe.Bool(false),
			LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		}
		if cfg != nil {
			cfg(c)
		}
		return stripe.GetBackendWithConfig(t, c)
	}
	return &stripe.Backends{
		API:     backend(stripe.APIBackend),
		Connect: backend(stripe.ConnectBackend),
		Uploads: backend(stripe.UploadsBackend),
	}
}

// listenRE matches the line stripe-mock prints once its HTTP listener is up.
var listenRE = regexp.MustCompile(`Listening for HTTP at address: (\S+)`)

// launch starts bin and waits until it serves requests.
//
// Flags: -http-addr 127.0.0.1:0 lets the kernel pick a free loopback port
// (no race between choosing a port and binding it); the address is read
// from stdout. In v0.183.0, -http-addr alone still starts HTTPS on the
// default port 12112 (only -http, -http-port, -http-unix and -port switch it
// off), which would collide between parallel test processes, so HTTPS gets a
// free loopback port too. -http-port N would switch HTTPS off but binds all
// interfaces and needs a port chosen beforehand.
func launch(ctx context.Context, bin string) (*Server, error) {
	deadline := time.Now().Add(readyTimeout)
	cmd := exec.Command(bin,
		"-http-addr", "127.0.0.1:0",
		"-https-addr", "127.0.0.1:0",
		"-strict-version-check",
	)
	cmd.Dir = os.TempDir()
	setPdeathsig(cmd)
	out := newTail(200)
	cmd.Stderr = out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{cmd: cmd, exited: make(chan struct{}), out: out}
	addr := make(chan string, 1)
	go func() {
		// Keep draining stdout for the life of the process: stripe-mock
		// logs every request there and would block on a full pipe.
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	fail := func(err error) (*Server, error) {
		cmd.Process.Kill()
		<-s.exited
		return nil, fmt.Errorf("%w\nstripe-mock output:\n%s", err, out)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case a := <-addr:
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fail(fmt.Errorf("unexpected listen address %q: %w", a, err))
		}
		if host == "" || host == "::" || host == "0.0.0.0" {
			host = "127.0.0.1"
		}
		s.URL = "http://" + net.JoinHostPort(host, port)
	case <-s.exited:
		return fail(fmt.Errorf("exited before listening: %v", s.waitErr))
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-timer.C:
		return fail(fmt.Errorf("no %q line within %v", "Listening for HTTP", readyTimeout))
	}
	if err := s.waitReady(ctx, deadline); err != nil {
		return fail(err)
	}
	return s, nil
}

// waitReady polls GET /v1/customers until it answers 200, the process
// exits, ctx ends or the deadline passes.
func (s *Server) waitReady(ctx context.Context, deadline time.Time) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		last = s.probe(ctx, hc)
		if last == nil {
			return nil
		}
		select {
		case <-s.exited: // nil, so never ready, for a server from $STRIPE_MOCK_URL
			return fmt.Errorf("exited while starting: %v (last probe: %v)", s.waitErr, last)
		case <-ctx.Done():
			return fmt.Errorf("%w (last probe: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %w", readyTimeout, last)
		}
	}
}

// probe makes the request stripe-go would make to list customers.
func (s *Server) probe(ctx context.Context, hc *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v1/customers", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+TestKey)
	req.Header.Set("Stripe-Version", stripe.APIVersion)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v1/customers: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// tail keeps the last n lines written to it.
type tail struct {
	mu      sync.Mutex
	n       int
	lines   []string
	partial []byte
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := strings.IndexByte(string(t.partial), '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, string(t.partial[:i]))
		t.partial = t.partial[i+1:]
		if len(t.lines) > t.n {
			t.lines = t.lines[len(t.lines)-t.n:]
		}
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.Join(t.lines, "\n")
	if len(t.partial) > 0 {
		s += "\n" + string(t.partial)
	}
	return s
}

// SubscriptionObject is a Stripe subscription as it appears in webhook events, for tenant (its
// metadata names the tenant and plan): ids derived from the tenant, a licensed plan price and a
// metered api_calls item, the period starting at periodStart (Unix seconds) for 30 days.
func SubscriptionObject(tenant, plan, status string, periodStart int64) map[string]any {
	return map[string]any{
		"id": "sub_" + tenant[:8], "object": "subscription", "customer": "cus_" + tenant[:8], "status": status, "created": periodStart,
		"current_period_start": periodStart, "current_period_end": periodStart + 30*86400, "cancel_at_period_end": false,
		"metadata": map[string]any{"tenant_id": tenant, "plan_id": plan},
		"items": map[string]any{"object": "list", "data": []any{
			map[string]any{"id": "si_lic_" + tenant[:8], "object": "subscription_item",
				"price": map[string]any{"id": "price_plan", "object": "price", "recurring": map[string]any{"interval": "month", "usage_type": "licensed"}}},
			map[string]any{"id": "si_met_" + tenant[:8], "object": "subscription_item",
				"price": map[string]any{"id": "price_api_calls", "object": "price", "recurring": map[string]any{"interval": "month", "usage_type": "metered"}}},
		}},
	}
}

// APIVersion is the API version of the events tenantkit accepts (the one stripe-go v76 pins).
const APIVersion = "2023-10-16"

// Event is a webhook event's body as Stripe sends it, with object as data.object.
func Event(apiVersion, id, typ string, created int64, object any) []byte {
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": apiVersion, "created": created, "type": typ,
		"data": map[string]any{"object": object}, "livemode": false, "pending_webhooks": 1,
		"request": map[string]any{"id": nil, "idempotency_key": nil},
	})
	if err != nil {
		panic(err) // maps of JSON values only
	}
	return b
}

// Signature is the Stripe-Signature header of payload signed with secret now, as Stripe signs.
func Signature(payload []byte, secret string) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: time.Now()}).Header
}
