package main

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/tenantkit/tenantkit/internal/pgtest"
)

// envOf is a getenv over key, value pairs.
func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// validEnv is a complete, valid configuration for serve; extra pairs override it.
func validEnv(extra ...string) func(string) string {
	return envOf(append([]string{"DATABASE_URL", "postgres://x@h/db", "TENANTKIT_SECRET", testSecret,
		"APP_URL", "https://app.example.com", "STRIPE_SECRET_KEY", "sk_test_123", "STRIPE_WEBHOOK_SECRET", testWebhookSecret}, extra...)...)
}

// configLines are the lines of LoadConfig's error that start with "config: "+name.
func configLines(err error, name string) []string {
	if err == nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if strings.HasPrefix(l, "config: "+name+" ") {
			out = append(out, l)
		}
	}
	return out
}

// dotEnv reads KEY=value lines (comments and blank lines skipped) as docker compose reads .env.
func dotEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			env[strings.TrimSpace(k)] = v
		}
	}
	return env
}

// composeEnv is the environment docker compose gives the tenantkit service of docker-compose.yml
// when dotenv is the project's .env: ${NAME}, ${NAME:-default} and ${NAME-default} substituted.
func composeEnv(t *testing.T, dotenv map[string]string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	svc, ok := compose.Services["tenantkit"]
	if !ok || !slices.Equal(svc.Command, []string{"serve"}) {
		t.Fatalf("docker-compose.yml: no tenantkit service running serve: %+v", svc)
	}
	ref := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}`)
	env := map[string]string{}
	for k, v := range svc.Environment {
		env[k] = ref.ReplaceAllStringFunc(v, func(s string) string {
			m := ref.FindStringSubmatch(s)
			val, set := dotenv[m[1]]
			if (m[2] == ":-" && val == "") || (m[2] == "-" && !set) {
				return m[3]
			}
			return val
		})
	}
	return env
}

func TestConfigPublishedSecrets(t *testing.T) {
	t.Parallel()

	t.Run("serve refuses every published value in every secret, naming the variable only", func(t *testing.T) {
		t.Parallel()
		for _, name := range secretVars {
			for value := range publishedSecrets {
				_, err := LoadConfig(validEnv(name, value))
				lines := slices.DeleteFunc(configLines(err, name), func(l string) bool { return !strings.Contains(l, "published") })
				if len(lines) != 1 {
					t.Errorf("%s set to a published value: err = %v, want one line saying it is published", name, err)
				}
				if err != nil && strings.Contains(err.Error(), value) {
					t.Errorf("%s: the error echoes the value: %v", name, err)
				}
			}
		}
	})

	t.Run("the list holds every secret the repository publishes", func(t *testing.T) {
		t.Parallel()
		published := map[string]string{} // value → where
		for name, v := range devDefaults {
			if slices.Contains(secretVars, name) {
				published[v] = "devDefaults " + name
			}
		}
		for name, v := range dotEnv(t, "../../.env.example") {
			if slices.Contains(secretVars, name) && v != "" {
				published[v] = ".env.example " + name
			}
		}
		for name, v := range composeEnv(t, nil) {
			if slices.Contains(secretVars, name) && v != "" {
				published[v] = "docker-compose.yml " + name
			}
		}
		readme, err := os.ReadFile("../../README.md")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`X-Tenantkit-Secret: ([^'"\s]+)`).FindAllStringSubmatch(string(readme), -1) {
			published[m[1]] = "README.md X-Tenantkit-Secret"
		}
		if len(published) < 2 {
			t.Fatalf("found only %v: is the parsing broken?", published)
		}
		for value, where := range published {
			if !publishedSecrets[value] {
				t.Errorf("%s publishes a secret missing from publishedSecrets", where)
			}
		}
	})

	t.Run("dev accepts its own defaults, serve refuses them", func(t *testing.T) {
		t.Parallel()
		defaults := []string{"DATABASE_URL", "postgres://x@h/db"}
		for k, v := range devDefaults {
			defaults = append(defaults, k, v)
		}
		cfg, err := loadDevConfig(envOf(defaults...))
		if err != nil {
			t.Fatalf("dev: %v", err)
		}
		if !slices.Equal(cfg.DevSecrets, []string{"TENANTKIT_SECRET"}) {
			t.Errorf("dev: DevSecrets = %v, want [TENANTKIT_SECRET]", cfg.DevSecrets)
		}
		if _, err := LoadConfig(envOf(defaults...)); len(configLines(err, "TENANTKIT_SECRET")) != 1 {
			t.Errorf("serve with dev's defaults: err = %v, want a line about TENANTKIT_SECRET", err)
		}
	})

	t.Run("TENANTKIT_ALLOW_DEV_SECRETS=1 lets serve start with them, listed for the warning", func(t *testing.T) {
		t.Parallel()
		cfg, err := LoadConfig(validEnv("TENANTKIT_SECRET", "dev-secret-change-me", "STRIPE_WEBHOOK_SECRET", "whsec_dev_change_me",
			"TENANTKIT_ALLOW_DEV_SECRETS", "1"))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cfg.DevSecrets, []string{"TENANTKIT_SECRET", "STRIPE_WEBHOOK_SECRET"}) {
			t.Errorf("DevSecrets = %v", cfg.DevSecrets)
		}
		cfg, err = LoadConfig(validEnv("TENANTKIT_ALLOW_DEV_SECRETS", "1"))
		if err != nil || len(cfg.DevSecrets) != 0 {
			t.Errorf("own secrets with the opt-in: %v, DevSecrets %v", err, cfg.DevSecrets)
		}
		for _, v := range []string{"0", ""} {
			if _, err := LoadConfig(validEnv("TENANTKIT_SECRET", "dev-secret-change-me", "TENANTKIT_ALLOW_DEV_SECRETS", v)); len(configLines(err, "TENANTKIT_SECRET")) != 1 {
				t.Errorf("TENANTKIT_ALLOW_DEV_SECRETS=%q: err = %v, want a refusal", v, err)
			}
		}
		if _, err := LoadConfig(validEnv("TENANTKIT_ALLOW_DEV_SECRETS", "yes")); len(configLines(err, "TENANTKIT_ALLOW_DEV_SECRETS")) != 1 {
			t.Errorf("TENANTKIT_ALLOW_DEV_SECRETS=yes: err = %v, want a line about it", err)
		}
	})

	t.Run("docker compose up works without a .env and stops on an unchanged copy of .env.example", func(t *testing.T) {
		t.Parallel()
		env := composeEnv(t, nil)
		env["DATABASE_URL"] = "postgres://x@h/db" // compose's host name is fine; keep the check about secrets
		cfg, err := LoadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatalf("compose without .env: %v", err)
		}
		if !slices.Contains(cfg.DevSecrets, "TENANTKIT_SECRET") || !slices.Contains(cfg.DevSecrets, "STRIPE_WEBHOOK_SECRET") {
			t.Errorf("compose without .env: DevSecrets = %v", cfg.DevSecrets)
		}
		env = composeEnv(t, dotEnv(t, "../../.env.example"))
		_, err = LoadConfig(func(k string) string { return env[k] })
		for _, name := range []string{"TENANTKIT_SECRET", "STRIPE_WEBHOOK_SECRET"} {
			if len(configLines(err, name)) != 1 {
				t.Errorf("compose with .env.example unchanged: want a line about %s in %v", name, err)
			}
		}
	})
}

func TestConfigMetricsToken(t *testing.T) {
	t.Parallel()
	const token = "scrape-0123456789abcdef"
	cfg, err := LoadConfig(validEnv("METRICS_TOKEN", token))
	if err != nil || cfg.MetricsToken != token {
		t.Fatalf("valid token: %v, MetricsToken %q", err, cfg.MetricsToken)
	}
	if cfg, err := LoadConfig(validEnv()); err != nil || cfg.MetricsToken != "" {
		t.Fatalf("unset: %v, MetricsToken %q", err, cfg.MetricsToken)
	}
	for name, bad := range map[string]string{
		"short":              "s3cret-short",
		"with a space":       "scrape 0123456789abcdef",
		"with a comma":       "scrape,0123456789abcdef",
		"with a newline":     "scrape0123456789abcdef\n",
		"the shared secret":  testSecret,
		"a published secret": "dev-secret-change-me",
		"padding inside":     "scrape=0123456789abcdef",
	} {
		_, err := LoadConfig(validEnv("METRICS_TOKEN", bad))
		if len(configLines(err, "METRICS_TOKEN")) != 1 {
			t.Errorf("%s: err = %v, want one line about METRICS_TOKEN", name, err)
		}
		if err != nil && strings.Contains(err.Error(), bad) {
			t.Errorf("%s: the error echoes the value", name)
		}
	}
}

// TestMetricsTokenServed starts the service as serve does with METRICS_TOKEN set.
func TestMetricsTokenServed(t *testing.T) {
	t.Parallel()
	const token = "scrape-0123456789abcdef"
	m := start(t, "METRICS_TOKEN", token)
	get := func(auth string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, m.HTTP.URL()+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := get(""); res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("without a token: %d %q, want 401 and a Bearer challenge", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	if res := get("Bearer " + testSecret); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("with the Hasura secret: %d, want 401", res.StatusCode)
	}
	if res := get("Bearer " + token); res.StatusCode != http.StatusOK {
		t.Errorf("with the token: %d, want 200", res.StatusCode)
	}
}

// TestServeWarnsAboutDevSecrets runs serve as docker-compose.yml does without a .env: the
// published secrets, opted in, and a warning naming them (never their values).
func TestServeWarnsAboutDevSecrets(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": pgtest.NewDB(t), "TENANTKIT_SECRET": "dev-secret-change-me",
		"APP_URL": "http://app.test", "LISTEN_ADDR": "127.0.0.1:0", "TENANTKIT_ALLOW_DEV_SECRETS": "1"}
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, cfg, &out) }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "tenantkit listening") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-served; err != nil {
		t.Fatalf("serve: %v\n%s", err, out.String())
	}
	warning := regexp.MustCompile(`"level":"warn".*"variables":\["TENANTKIT_SECRET"\].*DEVELOPMENT SECRETS`)
	if !warning.MatchString(out.String()) {
		t.Errorf("no warning naming TENANTKIT_SECRET:\n%s", out.String())
	}
	if strings.Contains(out.String(), "dev-secret-change-me") {
		t.Errorf("the log echoes the secret:\n%s", out.String())
	}
}

// TestConfigNumbers: the one parser of whole-number and duration variables keeps the default when
// unset, takes a value in range and names the range otherwise.
func TestConfigNumbers(t *testing.T) {
	env := map[string]string{"N": "7", "BIG": "400", "WORD": "x", "D": "90m", "SHORT": "30s"}
	getenv := func(k string) string { return env[k] }
	n := 3
	if p := configInt(getenv, "UNSET", "days", 0, 365, &n); p != nil || n != 3 {
		t.Errorf("unset: %v %d", p, n)
	}
	if p := configInt(getenv, "N", "days", 0, 365, &n); p != nil || n != 7 {
		t.Errorf("N=7: %v %d", p, n)
	}
	if p := configInt(getenv, "BIG", "days", 0, 365, &n); len(p) != 1 || p[0] != "BIG must be a whole number of days from 0 to 365" {
		t.Errorf("BIG=400: %v", p)
	}
	if p := configInt(getenv, "WORD", "", 1, 10, &n); len(p) != 1 || p[0] != "WORD must be a whole number from 1 to 10" {
		t.Errorf("WORD=x: %v", p)
	}
	d := time.Hour
	if p := configDuration(getenv, "D", time.Minute, 24*time.Hour, "1h", &d); p != nil || d != 90*time.Minute {
		t.Errorf("D=90m: %v %s", p, d)
	}
	if p := configDuration(getenv, "SHORT", 10*time.Minute, 2160*time.Hour, "168h", &d); len(p) != 1 || p[0] != "SHORT must be a duration from 10m to 2160h (e.g. 168h)" {
		t.Errorf("SHORT=30s: %v", p)
	}
}

// TestPprofAddr: PPROF_ADDR takes a loopback host:port only, and serves the profiles on a listener
// of their own, never through LISTEN_ADDR.
func TestPprofAddr(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:6060", "127.0.0.1:0"} {
		if cfg, err := LoadConfig(validEnv("PPROF_ADDR", ok)); err != nil || cfg.PprofAddr != ok {
			t.Errorf("PPROF_ADDR=%s: %v, PprofAddr %q", ok, err, cfg.PprofAddr)
		}
	}
	for _, bad := range []string{":6060", "0.0.0.0:6060", "10.0.0.1:6060", "example.com:6060", "127.0.0.1", "[::]:6060"} {
		if _, err := LoadConfig(validEnv("PPROF_ADDR", bad)); len(configLines(err, "PPROF_ADDR")) != 1 {
			t.Errorf("PPROF_ADDR=%s: err = %v, want one line about PPROF_ADDR", bad, err)
		}
	}
	get := func(url string) int {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if m := start(t); m.pprof != nil || get(m.HTTP.URL()+"/debug/pprof/") != http.StatusNotFound {
		t.Error("without PPROF_ADDR: a profiling listener, or /debug/pprof/ on the service's port")
	}
	m := start(t, "PPROF_ADDR", "127.0.0.1:0")
	if status := get("http://" + m.pprofAddr + "/debug/pprof/goroutine?debug=1"); status != http.StatusOK {
		t.Errorf("profiles on PPROF_ADDR: %d, want 200", status)
	}
	if status := get(m.HTTP.URL() + "/debug/pprof/"); status != http.StatusNotFound {
		t.Errorf("/debug/pprof/ on the service's port: %d, want 404", status)
	}
}
