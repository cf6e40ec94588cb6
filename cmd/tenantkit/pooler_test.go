package main

import (
	"context"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/mail/mailtest"
	"github.com/tenantkit/tenantkit/internal/pgbouncer"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// poolerEnv set to "pgbouncer" runs every service that start() starts on the test's own database
// through a PgBouncer of its own (transaction pooling, DATABASE_POOLER=transaction), so that the
// end-to-end suites prove the service behind a transaction pooler: `.ci/run` runs them so. Test
// fixtures keep reading and writing directly (directURL).
const poolerEnv = "TENANTKIT_TEST_POOLER"

// directURLs maps a *Main started through PgBouncer to its database's direct URL.
var directURLs sync.Map

// throughPooler rewrites env (start's) to go through a new PgBouncer when poolerEnv asks for it and
// DATABASE_URL is the test's own database (dbURL), and reports whether it did.
func throughPooler(t testing.TB, env map[string]string, dbURL string) bool {
	t.Helper()
	switch v := os.Getenv(poolerEnv); v {
	case "":
		return false
	case "pgbouncer":
	default:
		t.Fatalf("%s=%q: the only value is pgbouncer", poolerEnv, v)
	}
	if env["DATABASE_URL"] != dbURL {
		return false // another server (a test's own cluster)
	}
	var users []string
	for _, k := range []string{"DATABASE_URL", "APP_DATABASE_URL"} {
		if u, err := neturl.Parse(env[k]); err == nil && u.User != nil {
			users = append(users, u.User.Username())
		}
	}
	// As many server connections as the service's system pool has clients: the race tests hold
	// 16 transactions open at once behind a lock (a smaller pool serializes them in PgBouncer,
	// which is correct but not what they test).
	b := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{Users: users, PoolSize: 16})
	env["DATABASE_URL"] = b.URL(dbURL)
	if env["APP_DATABASE_URL"] != "" {
		env["APP_DATABASE_URL"] = b.URL(env["APP_DATABASE_URL"])
	}
	env["DATABASE_POOLER"] = "transaction"
	usePooledPolicies(t, dbURL)
	return true
}

// usePooledPolicies installs the policies' form `tenantkit migrate up` installs for
// DATABASE_POOLER=transaction on the test's database (dbURL, direct).
func usePooledPolicies(t testing.TB, dbURL string) {
	t.Helper()
	if _, err := postgres.SetPolicyForm(context.Background(), dbURL, postgres.PolicyFormFor(postgres.TransactionPooler)); err != nil {
		t.Fatal(err)
	}
}

// directURL is the URL of m's database without a pooler in between, for fixtures and checks.
func directURL(m *Main) string {
	if u, ok := directURLs.Load(m); ok {
		return u.(string)
	}
	return m.Config.DatabaseURL
}

// commandEnv is the environment of an operator command (plans sync, usage report) run beside m, as
// a deployment would run it: m's DATABASE_URL and DATABASE_POOLER, and kv (name, value, …).
func commandEnv(m *Main, kv ...string) map[string]string {
	env := map[string]string{"DATABASE_URL": m.Config.DatabaseURL, "DATABASE_POOLER": string(m.Config.Pooler)}
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return env
}

// pooledStack starts the service on a fresh database through b with DATABASE_POOLER=transaction,
// both logins going through it; params (name, value, …) are added to both database URLs.
func pooledStack(t *testing.T, b *pgbouncer.Bouncer, params []string, env ...string) *stack {
	t.Helper()
	smtp := mailtest.Start(t)
	dbURL := pgtest.NewDB(t)
	usePooledPolicies(t, dbURL)
	withParams := func(u string) string {
		pu, err := neturl.Parse(b.URL(u))
		if err != nil {
			t.Fatal(err)
		}
		q := pu.Query()
		for i := 0; i+1 < len(params); i += 2 {
			q.Set(params[i], params[i+1])
		}
		pu.RawQuery = q.Encode()
		return pu.String()
	}
	vars := map[string]string{
		"DATABASE_URL":     withParams(dbURL),
		"APP_DATABASE_URL": withParams(pgtest.AppURL(t, dbURL)),
		"DATABASE_POOLER":  "transaction",
		"TENANTKIT_SECRET": testSecret,
		"APP_URL":          "http://app.test",
		"LISTEN_ADDR":      "127.0.0.1:0",
		"SMTP_URL":         smtp.URL(),
	}
	for i := 0; i+1 < len(env); i += 2 {
		vars[env[i]] = env[i+1]
	}
	cfg, err := LoadConfig(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	m := &Main{Config: cfg, Log: zerolog.New(io.Discard)}
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	directURLs.Store(m, dbURL)
	t.Cleanup(func() { _ = m.Close() })
	return stackOn(t, m, smtp)
}

// TestPoolerStatementTimeout: behind PgBouncer (transaction pooling), a request whose statement is
// stuck behind a lock ends at the statement_timeout DATABASE_URL sets (1 s here; 25 s by default)
// and answers unavailable, changing nothing; it is served again once the lock is gone. Both
// transaction shapes: a team action (a user transaction) and checkPermission (one round trip as
// the system role).
func TestPoolerStatementTimeout(t *testing.T) {
	t.Parallel()
	b := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{Users: []string{pgtest.AppLogin}})
	s := pooledStack(t, b, []string{"statement_timeout", "1s"})
	ctx := context.Background()
	tenant, owner := s.tenant(t)
	member := s.user(t, "")
	if _, err := s.admin.Exec(ctx, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'member')`, tenant, member); err != nil {
		t.Fatal(err)
	}
	holder, err := s.admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `SELECT 1 FROM tenant_users WHERE tenant_id = $1 AND user_id = $2 FOR UPDATE`, tenant, member); err != nil {
		t.Fatal(err)
	}
	timed := func(name string, input map[string]any, user string) {
		t.Helper()
		start := time.Now()
		r := s.action(t, name, input, user)
		took := time.Since(start)
		if r.status != http.StatusFailedDependency || r.code != tenantkit.Unavailable {
			t.Errorf("%s behind a lock: %d %s %q, want 424 unavailable", name, r.status, r.code, r.msg)
		}
		if took < 900*time.Millisecond || took > 10*time.Second {
			t.Errorf("%s behind a lock answered after %s, want about the 1 s statement_timeout", name, took)
		}
	}
	change := map[string]any{"tenantId": tenant, "userId": member, "role": "admin"}
	timed("changeMemberRole", change, owner)
	if _, err := holder.Exec(ctx, `LOCK TABLE tenant_users IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	check := map[string]any{"tenantId": tenant, "permission": "users:invite"}
	timed("checkPermission", check, owner)
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1 AND user_id = $2 AND role = 'member'`, tenant, member); n != 1 {
		t.Error("the change that timed out was applied")
	}
	s.ok(t, "changeMemberRole", change, owner)
	if out := s.ok(t, "checkPermission", check, member); out["allowed"] != true || out["role"] != "admin" {
		t.Errorf("checkPermission after the change: %v", out)
	}
}

// TestPoolerFaultsAreUnavailable: under load through PgBouncer, the pooler dropping every client and
// server connection of the database (KILL, then RESUME) makes actions answer 424 unavailable,
// never 500, and the remote schema answer an unavailable error; the service serves again after.
func TestPoolerFaultsAreUnavailable(t *testing.T) {
	t.Parallel()
	b := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{Users: []string{pgtest.AppLogin}})
	s := pooledStack(t, b, nil)
	ctx := context.Background()
	tenant, owner := s.tenant(t)
	dbName := strings.TrimPrefix(must(neturl.Parse(directURL(s.m))).Path, "/")
	check := map[string]any{"tenantId": tenant, "permission": "users:invite"}

	var stop atomic.Bool
	var mu sync.Mutex
	var wg sync.WaitGroup
	seen := map[string]int{}
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				var status int
				var code string
				switch (w + i) % 3 {
				case 0:
					res, err := s.hasura.Action(ctx, "checkPermission", check, session(owner))
					if err != nil {
						t.Error(err)
						return
					}
					status = res.Status
					if ae, err := res.ActionError(); err == nil && ae != nil {
						code = ae.Code
					}
				case 1:
					res, err := s.hasura.Action(ctx, "createTenant", map[string]any{"name": "Acme", "slug": "acme-" + uuid.NewString()[:8]}, session(owner))
					if err != nil {
						t.Error(err)
						return
					}
					status = res.Status
					if ae, err := res.ActionError(); err == nil && ae != nil {
						code = ae.Code
					}
				default:
					var body map[string]any
					status, body = post(t, s.m.HTTP.URL()+"/graphql", testSecret, `{"query":"{ plans { key } }"}`)
					if errs, _ := body["errors"].([]any); len(errs) > 0 {
						ext, _ := errs[0].(map[string]any)["extensions"].(map[string]any)
						code, _ = ext["code"].(string)
						status = 0 // a GraphQL error: the code says what it was
					}
				}
				mu.Lock()
				seen[http.StatusText(status)+" "+code]++
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := b.Admin(ctx, "KILL "+dbName); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := b.Admin(ctx, "RESUME "+dbName); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	t.Logf("answers: %v", seen)
	for answer, n := range seen {
		switch answer {
		case "OK ", "Failed Dependency unavailable", " unavailable":
		default:
			t.Errorf("%d answers %q, want only 200, 424 unavailable or a GraphQL unavailable error", n, answer)
		}
	}
	if seen["Failed Dependency unavailable"]+seen[" unavailable"] == 0 {
		t.Error("no request saw the fault: the test proves nothing")
	}
	if out := s.ok(t, "checkPermission", check, owner); out["allowed"] != true {
		t.Errorf("after RESUME: %v", out)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestPoolerConfig: DATABASE_POOLER is none (the default) or transaction, anything else a
// configuration error naming it; `tenantkit migrate` goes to DATABASE_DIRECT_URL when set, and
// refuses to go through a transaction pooler (its session-level lock would not hold).
func TestPoolerConfig(t *testing.T) {
	for _, c := range []struct{ value, want string }{{"", "none"}, {"none", "none"}, {"transaction", "transaction"}} {
		cfg, err := LoadConfig(validEnv("DATABASE_POOLER", c.value))
		if err != nil || string(cfg.Pooler) != c.want {
			t.Errorf("DATABASE_POOLER=%q: %q, %v; want %q", c.value, cfg.Pooler, err, c.want)
		}
	}
	for _, v := range []string{"session", "statement", "pgbouncer", "Transaction"} {
		_, err := LoadConfig(validEnv("DATABASE_POOLER", v))
		if lines := configLines(err, "DATABASE_POOLER"); len(lines) != 1 || !strings.Contains(lines[0], "none") || !strings.Contains(lines[0], "transaction") {
			t.Errorf("DATABASE_POOLER=%q: %v, want one line naming the values", v, err)
		}
	}
	for _, c := range []struct {
		env       []string
		url, fail string
	}{
		{[]string{"DATABASE_URL", "postgres://pooled/db"}, "postgres://pooled/db", ""},
		{[]string{"DATABASE_URL", "postgres://pooled/db", "DATABASE_DIRECT_URL", "postgres://direct/db"}, "postgres://direct/db", ""},
		{[]string{"DATABASE_URL", "postgres://pooled/db", "DATABASE_POOLER", "transaction", "DATABASE_DIRECT_URL", "postgres://direct/db"}, "postgres://direct/db", ""},
		{[]string{"DATABASE_URL", "postgres://pooled/db", "DATABASE_POOLER", "transaction"}, "", "DATABASE_DIRECT_URL is required with DATABASE_POOLER=transaction"},
		{[]string{"DATABASE_URL", "postgres://pooled/db", "DATABASE_POOLER", "bogus"}, "", "DATABASE_POOLER must be"},
		{nil, "", "DATABASE_URL is required"},
	} {
		u, err := migrationURL(envOf(c.env...))
		if c.fail != "" {
			if err == nil || !strings.Contains(err.Error(), c.fail) {
				t.Errorf("%v: %q, %v; want an error saying %q", c.env, u, err, c.fail)
			}
		} else if err != nil || u != c.url {
			t.Errorf("%v: %q, %v; want %q", c.env, u, err, c.url)
		}
	}
}

// TestMigrateInstallsPolicyForm: `tenantkit migrate up` installs the policies' form that suits
// DATABASE_POOLER, says so, and switches it back when run again with the other setting.
func TestMigrateInstallsPolicyForm(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	ctx := context.Background()
	form := func() postgres.PolicyForm {
		t.Helper()
		db, err := postgres.Open(ctx, dbURL, "")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		f, err := db.PolicyForm(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, c := range []struct {
		env  []string
		want postgres.PolicyForm
		line string
	}{
		{[]string{"DATABASE_URL", dbURL}, postgres.InlinePolicies, "policies: inline form for DATABASE_POOLER=none (0 rewritten)"},
		{[]string{"DATABASE_URL", "postgres://pooler.invalid/db", "DATABASE_POOLER", "transaction", "DATABASE_DIRECT_URL", dbURL},
			postgres.HelperPolicies, "policies: helper form for DATABASE_POOLER=transaction ("},
		{[]string{"DATABASE_URL", dbURL}, postgres.InlinePolicies, "policies: inline form for DATABASE_POOLER=none ("},
	} {
		for _, k := range []string{"DATABASE_URL", "DATABASE_POOLER", "DATABASE_DIRECT_URL"} {
			t.Setenv(k, "")
		}
		for i := 0; i+1 < len(c.env); i += 2 {
			t.Setenv(c.env[i], c.env[i+1])
		}
		var out strings.Builder
		if err := run(ctx, []string{"migrate", "up"}, &out); err != nil {
			t.Fatalf("%v: %v\n%s", c.env, err, out.String())
		}
		if !strings.Contains(out.String(), c.line) {
			t.Errorf("%v: output lacks %q:\n%s", c.env, c.line, out.String())
		}
		if f := form(); f != c.want {
			t.Errorf("%v: form %s, want %s", c.env, f, c.want)
		}
	}
}
