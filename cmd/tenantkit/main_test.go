package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	graphql "github.com/hasura/go-graphql-client"
	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

func TestMain(m *testing.M) {
	// Every test database carries Hasura's event catalog and triggers, installed by Hasura's own
	// role, with the grants `tenantkit hasura grant` gives.
	pgtest.Migrate, pgtest.TemplateKey = hasuratest.WithEventTriggers("../../hasura/metadata", postgres.HasuraGrants,
		postgres.MigrateUp, postgres.MigrationsKey())
	pgtest.Main(m)
}

const testSecret = "test-secret-0123456789"

// start runs the whole service on a free port against a fresh database, as serve does, with
// separate logins for user and system work (APP_DATABASE_URL is pgtest.AppLogin's); extra
// overrides the environment ("APP_DATABASE_URL", "" for one login; one login too when it sets
// DATABASE_URL alone).
func start(t testing.TB, extra ...string) *Main {
	t.Helper()
	dbURL := pgtest.NewDB(t)
	env := map[string]string{
		"DATABASE_URL":     dbURL,
		"APP_DATABASE_URL": pgtest.AppURL(t, dbURL),
		"TENANTKIT_SECRET": testSecret,
		"APP_URL":          "http://app.test",
		"LISTEN_ADDR":      "127.0.0.1:0",
	}
	setApp := false
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
		setApp = setApp || extra[i] == "APP_DATABASE_URL"
	}
	if env["DATABASE_URL"] != dbURL && !setApp {
		delete(env, "APP_DATABASE_URL") // another server, where pgtest's login role may not exist: one login
	}
	pooled := throughPooler(t, env, dbURL) // TENANTKIT_TEST_POOLER=pgbouncer
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	logs := &serviceLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the service's notable log lines (warnings, errors, requests of a second or more; the last %d kB at most):\n%s",
				tailLogKeep/1024, logs.notable.tail())
			t.Logf("the service's log (its last %d kB at most):\n%s", tailLogKeep/1024, logs.all.tail())
		}
	})
	m := &Main{Config: cfg, Log: zerolog.New(logs).Level(zerolog.InfoLevel).With().Timestamp().Logger()}
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pooled {
		directURLs.Store(m, dbURL)
	}
	t.Cleanup(func() { _ = m.Close() }) // before the log is printed: cleanups run last first
	return m
}

// serviceLog is the service's log in a test, printed when the test fails: its last lines, and
// apart from them, so that a long run's request lines cannot push them out, its notable lines.
type serviceLog struct {
	all, notable tailLog
}

func (l *serviceLog) Write(p []byte) (int, error) { return l.WriteLevel(zerolog.NoLevel, p) }

// WriteLevel implements zerolog.LevelWriter.
func (l *serviceLog) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	if notableLine(level, p) {
		_, _ = l.notable.Write(p)
	}
	return l.all.Write(p)
}

// notableLine reports whether a log line is a warning or an error other than a request's line,
// or a request's line with a latency of a second or more (zerolog writes durations in ms).
func notableLine(level zerolog.Level, p []byte) bool {
	if !bytes.Contains(p, []byte(`"message":"request"`)) {
		return level >= zerolog.WarnLevel && level <= zerolog.PanicLevel
	}
	_, rest, ok := bytes.Cut(p, []byte(`"latency":`))
	if end := bytes.IndexAny(rest, ",}"); ok && end > 0 {
		ms, err := strconv.ParseFloat(string(rest[:end]), 64)
		return err == nil && ms >= 1000
	}
	return false
}

// tailLogKeep is how much of the service's log a test keeps.
const tailLogKeep = 256 << 10

// tailLog keeps the last tailLogKeep bytes (at least) written to it: the service's log in a test,
// printed only when the test fails.
type tailLog struct {
	mu  sync.Mutex
	buf []byte
}

func (l *tailLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if len(l.buf) > 2*tailLogKeep {
		l.buf = append(l.buf[:0:0], l.buf[len(l.buf)-tailLogKeep:]...)
	}
	return len(p), nil
}

// tail is what the log kept, from its first whole line.
func (l *tailLog) tail() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf
	if len(b) > tailLogKeep {
		b = b[len(b)-tailLogKeep:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return bytes.Clone(b)
}

// scrapeMetrics returns the body of the service's GET /metrics (no METRICS_TOKEN).
func scrapeMetrics(t *testing.T, m *Main) string {
	t.Helper()
	res, err := http.Get(m.HTTP.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", res.StatusCode, err)
	}
	return string(body)
}

// metricValue is the value of an unlabelled sample in a /metrics body; the test fails without it.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return 0
}

func post(t *testing.T, url, secret, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("X-Tenantkit-Secret", secret)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("decode %s response: %v", url, err)
	}
	return res.StatusCode, out
}

func TestService(t *testing.T) {
	t.Parallel()
	m := start(t)
	base := m.HTTP.URL()

	t.Run("health and readiness", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz"} {
			res, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"ok"`) {
				t.Errorf("GET %s = %d %s", path, res.StatusCode, body)
			}
		}
	})

	t.Run("graphql refuses calls without the shared secret", func(t *testing.T) {
		for _, secret := range []string{"", "wrong", testSecret + "x", testSecret[:len(testSecret)-1]} {
			status, body := post(t, base+"/graphql", secret, `{"query":"{ plans { key } }"}`)
			ext, _ := body["extensions"].(map[string]any)
			if status != http.StatusUnauthorized || ext["code"] != "unauthorized" {
				t.Errorf("secret %q: got %d %v, want 401 unauthorized", secret, status, body)
			}
		}
	})

	t.Run("graphql serves the plans", func(t *testing.T) {
		status, body := post(t, base+"/graphql", testSecret, `{"query":"{ plans { key unitAmount currency interval limits { metric limit } } }"}`)
		if status != http.StatusOK || body["errors"] != nil {
			t.Fatalf("got %d %v", status, body)
		}
		plans := body["data"].(map[string]any)["plans"].([]any)
		var keys []string
		for _, p := range plans {
			keys = append(keys, p.(map[string]any)["key"].(string))
		}
		if strings.Join(keys, ",") != "free,starter,professional,enterprise" {
			t.Errorf("plans = %v", keys)
		}
		starter, _ := json.Marshal(plans[1])
		want := `{"currency":"usd","interval":"month","key":"starter","limits":[{"limit":10,"metric":"projects"},{"limit":5,"metric":"storage_gb"},{"limit":5,"metric":"users"}],"unitAmount":2900}`
		if string(starter) != want {
			t.Errorf("starter = %s\nwant      %s", starter, want)
		}
	})

	t.Run("a GraphQL client reads the plans through the shared secret", func(t *testing.T) {
		client := graphql.NewClient(base+"/graphql", http.DefaultClient).WithRequestModifier(func(r *http.Request) {
			r.Header.Set("X-Tenantkit-Secret", testSecret)
		})
		var q struct {
			Plans []struct {
				Key        string
				UnitAmount int
				Limits     []struct {
					Metric string
					Limit  int
				}
			}
		}
		if err := client.Query(context.Background(), &q, nil); err != nil {
			t.Fatal(err)
		}
		if len(q.Plans) != 4 || q.Plans[3].Key != "enterprise" || q.Plans[3].UnitAmount != 29900 || len(q.Plans[3].Limits) != 3 {
			t.Errorf("plans = %+v", q.Plans)
		}
	})

	t.Run("graphql errors carry a code", func(t *testing.T) {
		status, body := post(t, base+"/graphql", testSecret, `{"query":"{ nope }"}`)
		errs, _ := body["errors"].([]any)
		if status != http.StatusUnprocessableEntity || len(errs) != 1 {
			t.Fatalf("got %d %v", status, body)
		}
		if code := errs[0].(map[string]any)["extensions"].(map[string]any)["code"]; code != "GRAPHQL_VALIDATION_FAILED" {
			t.Errorf("code = %v", code)
		}
	})
}

func TestReadinessFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	m := start(t)
	m.DB.Close() // the database goes away
	res, err := http.Get(m.HTTP.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz with the database gone = %d, want 503", res.StatusCode)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	t.Run("reports every problem on its own line without values", func(t *testing.T) {
		_, err := LoadConfig(env("TENANTKIT_SECRET", "short-s3cret", "LOG_LEVEL", "loud", "SMTP_URL", "::", "INVITATION_TTL", "5m"))
		if err == nil {
			t.Fatal("want an error")
		}
		lines := strings.Split(err.Error(), "\n")
		for _, want := range []string{"DATABASE_URL", "TENANTKIT_SECRET", "APP_URL", "LOG_LEVEL", "SMTP_URL", "INVITATION_TTL"} {
			found := 0
			for _, l := range lines {
				if strings.HasPrefix(l, "config: "+want) {
					found++
				}
			}
			if found != 1 {
				t.Errorf("want one line about %s in:\n%s", want, err)
			}
		}
		if strings.Contains(err.Error(), "short-s3cret") {
			t.Error("the error echoes the secret")
		}
	})
	t.Run("defaults", func(t *testing.T) {
		cfg, err := LoadConfig(env("DATABASE_URL", "postgres://x@h/db", "TENANTKIT_SECRET", testSecret, "APP_URL", "https://app.example.com/"))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ListenAddr != ":8081" || cfg.AppURL != "https://app.example.com" || cfg.LogLevel != zerolog.InfoLevel || cfg.InvitationTTL != 168*time.Hour {
			t.Errorf("cfg = %+v", cfg)
		}
	})
}

func TestOpenChecksTheServiceRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	admin := connect(t, url)
	// Login roles are cluster-wide: create them once, never drop them.
	for _, stmt := range []string{
		`DO $$ BEGIN CREATE ROLE tk_test_outsider LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
		`DO $$ BEGIN CREATE ROLE tk_test_service LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
		`GRANT tenantkit_app, tenantkit_system TO tk_test_service`,
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	as := func(role string) string { return strings.Replace(url, "postgres@", role+"@", 1) }

	if _, err := postgres.Open(ctx, as("tk_test_outsider"), ""); err == nil || !strings.Contains(err.Error(), "cannot switch to role tenantkit_app") {
		t.Errorf("a login role outside tenantkit_app: err = %v, want a refusal naming the role", err)
	}
	db, err := postgres.Open(ctx, as("tk_test_service"), "")
	if err != nil {
		t.Fatalf("a login role granted both roles: %v", err)
	}
	db.Close()
	if _, err := postgres.Open(ctx, as("tk_test_service"), as("tk_test_service")); err == nil || !strings.Contains(err.Error(), "APP_DATABASE_URL: login role tk_test_service is a member of tenantkit_system") {
		t.Errorf("APP_DATABASE_URL with a member of both roles: err = %v, want a refusal", err)
	}
	if _, err := postgres.Open(ctx, url, url); err == nil || !strings.Contains(err.Error(), "is a superuser") {
		t.Errorf("APP_DATABASE_URL with a superuser: err = %v, want a refusal", err)
	}
	db, err = postgres.Open(ctx, as("tk_test_service"), pgtest.AppURL(t, url))
	if err != nil {
		t.Fatalf("separate logins: %v", err)
	}
	db.Close()
}

// TestServeWarnsWithOneLogin: without APP_DATABASE_URL the service starts, on one pool, and says at
// start that the separation of user and system logins is off; with it, it says nothing of the kind.
func TestServeWarnsWithOneLogin(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDB(t)
	for _, c := range []struct {
		appURL string
		warns  bool
	}{{"", true}, {pgtest.AppURL(t, dbURL), false}} {
		env := map[string]string{"DATABASE_URL": dbURL, "APP_DATABASE_URL": c.appURL, "TENANTKIT_SECRET": testSecret,
			"APP_URL": "http://app.test", "LISTEN_ADDR": "127.0.0.1:0"}
		cfg, err := LoadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var out syncBuffer
		done := make(chan error, 1)
		go func() { done <- serve(ctx, cfg, &out) }()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), "tenantkit listening") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("APP_DATABASE_URL %q: serve: %v", c.appURL, err)
		}
		if warned := strings.Contains(out.String(), "APP_DATABASE_URL is unset"); warned != c.warns {
			t.Errorf("APP_DATABASE_URL %q: warned = %v, want %v; log:\n%s", c.appURL, warned, c.warns, out.String())
		}
	}
}

// TestSmoke runs the smoke check against the service's own /graphql, behind a minimal stand-in for
// Hasura that forwards every GraphQL request to the remote schema the way Hasura forwards a
// remote-schema field (shared secret, session as X-Hasura-* headers). Here only the remote-schema
// step can pass; the next one needs Hasura's tables and fails, and every later step must then be
// reported failed without running.
func TestSmoke(t *testing.T) {
	t.Parallel()
	m := start(t)
	hasura := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/graphql" || r.Header.Get("X-Hasura-Admin-Secret") != "adm" {
			http.Error(w, "not Hasura", http.StatusNotFound)
			return
		}
		req, _ := http.NewRequest(http.MethodPost, m.HTTP.URL()+"/graphql", r.Body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Tenantkit-Secret", testSecret)
		for _, h := range []string{"X-Hasura-Role", "X-Hasura-User-Id"} {
			req.Header.Set(h, r.Header.Get(h))
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(res.StatusCode)
		_, _ = io.Copy(w, res.Body)
	}))
	defer hasura.Close()

	var out bytes.Buffer
	err := run(context.Background(), []string{"smoke", "--hasura-url", hasura.URL, "--admin-secret", "adm"}, &out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err == nil || len(lines) != 9 {
		t.Fatalf("err %v, output:\n%s", err, out.String())
	}
	if lines[0] != "PASS remote schema lists the plans" || !strings.HasPrefix(lines[1], "FAIL two users exist") {
		t.Errorf("first steps:\n%s\n%s", lines[0], lines[1])
	}
	for _, l := range lines[2:8] {
		if !strings.HasPrefix(l, "FAIL ") || !strings.HasSuffix(l, ": an earlier step failed") {
			t.Errorf("a step after the failure: %q", l)
		}
	}
	if lines[8] != "smoke: 1 passed, 7 failed" {
		t.Errorf("summary %q", lines[8])
	}
}

func TestTailLogKeepsTheLastWholeLines(t *testing.T) {
	l := &tailLog{}
	var last string
	for i := range 3 * tailLogKeep / 20 {
		last = fmt.Sprintf("line %09d\n", i) // 15 bytes
		if n, err := l.Write([]byte(last)); n != len(last) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	got := l.tail()
	if len(got) > tailLogKeep || len(got) < tailLogKeep-20 {
		t.Errorf("kept %d bytes, want at most %d and close to it", len(got), tailLogKeep)
	}
	if !bytes.HasPrefix(got, []byte("line ")) || !bytes.HasSuffix(got, []byte(last)) {
		t.Errorf("kept %q … %q, want whole lines ending with %q", got[:20], got[len(got)-20:], last)
	}
	if len(l.buf) > 2*tailLogKeep {
		t.Errorf("holds %d bytes, want at most %d", len(l.buf), 2*tailLogKeep)
	}
}

func TestServiceLogKeepsNotableLinesApart(t *testing.T) {
	l := &serviceLog{}
	log := zerolog.New(l)
	log.Warn().Msg("database unreachable")
	log.Error().Str("method", "POST").Int("status", 503).Dur("latency", 12*time.Millisecond).Msg("request")
	log.Info().Dur("latency", 1500*time.Millisecond).Msg("request")
	log.Info().Dur("latency", 999*time.Millisecond).Msg("request")
	log.Info().Msg("listening")
	for range 2 * tailLogKeep / 40 {
		log.Info().Dur("latency", time.Millisecond).Msg("request")
	}
	notable := string(l.notable.tail())
	want := `{"level":"warn","message":"database unreachable"}` + "\n" + `{"level":"info","latency":1500,"message":"request"}` + "\n"
	if notable != want {
		t.Errorf("notable lines:\n%s\nwant:\n%s", notable, want)
	}
	if all := l.all.tail(); bytes.Contains(all, []byte("listening")) || !bytes.HasSuffix(all, []byte(`{"level":"info","latency":1,"message":"request"}`+"\n")) {
		t.Errorf("the tail holds old lines or misses the last: %q", all[max(0, len(all)-200):])
	}
}
