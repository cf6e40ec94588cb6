package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	neturl "net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit/internal/pgbouncer"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// poolerSoakEnv names the duration of TestSoakThroughPgBouncer (e.g. 45s); unset, it is skipped,
// like the other long runs of this package (`.ci/run` sets it).
const poolerSoakEnv = "TENANTKIT_POOLER_SOAK"

// TestSoakThroughPgBouncer is `make soak`'s mixed traffic — every kind of transaction the service
// runs: permission checks (one round trip), usage batches, Stripe webhooks (batched statements),
// invitations (a user transaction, the invitation_email event and its email), acceptances and new
// tenants (system transactions on the caller's behalf), plus the meter and the outbox in the
// background — through PgBouncer in transaction pooling mode (DATABASE_POOLER=transaction, both
// logins through it, 8 server connections each), for TENANTKIT_POOLER_SOAK at 100 operations/s.
// It fails on any unexpected answer and on any total that differs from what was acknowledged.
func TestSoakThroughPgBouncer(t *testing.T) {
	v := os.Getenv(poolerSoakEnv)
	if v == "" {
		t.Skipf("set %s to a duration (e.g. 45s) to run the soak through PgBouncer; .ci/run does", poolerSoakEnv)
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 10*time.Second {
		t.Fatalf("%s=%q: want a duration of at least 10s", poolerSoakEnv, v)
	}
	b := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{PoolSize: 8, Users: []string{pgtest.AppLogin}})
	var dbName string
	runSoak(t, soakConfig{duration: d, rate: 100, env: func(db string) []string {
		u, err := neturl.Parse(db)
		if err != nil {
			t.Fatal(err)
		}
		dbName = u.Path[1:]
		setPolicyForm(t, db, postgres.PolicyFormFor(postgres.TransactionPooler))
		return []string{"DATABASE_URL=" + b.URL(db), "APP_DATABASE_URL=" + b.URL(pgtest.AppURL(t, db)), "DATABASE_POOLER=transaction"}
	}})
	// The traffic went through the pooler: its transactions are in PgBouncer's statistics (updated
	// every stats_period, 1 s here).
	time.Sleep(1500 * time.Millisecond)
	rows, err := b.Admin(t.Context(), "SHOW STATS")
	if err != nil {
		t.Fatal(err)
	}
	var xacts int
	for _, r := range rows {
		if r["database"] == dbName {
			xacts, _ = strconv.Atoi(r["total_xact_count"])
		}
	}
	t.Logf("PgBouncer counted %d transactions on %s", xacts, dbName)
	if min := int(d.Seconds()) * 100; xacts < min {
		t.Errorf("PgBouncer counted %d transactions on the soak's database, want at least %d: the traffic did not go through it", xacts, min)
	}
}

// poolerRounds is how many times BenchmarkPooler measures each process and request kind, in turn:
// on a shared 2-core machine one phase in three can be disturbed, so the median of five.
const poolerRounds = 5

// poolerRate is the fixed rate of BenchmarkPooler: far below what the service sustains, so that the
// figures are the latency of one request, not queueing.
const poolerRate = 400

// poolerConfigs are the `tenantkit serve` processes BenchmarkPooler compares: the baseline (direct,
// pgx's default mode, cache_statement: statements prepared once per connection), each mode a
// transaction pooler allows without a pooler (what the mode costs), and both through PgBouncer.
var poolerConfigs = []struct{ name, mode string }{
	{"direct", ""},
	{"direct-exec", "exec"},
	{"direct-simple", "simple_protocol"},
	{"pgbouncer-exec", ""}, // the default behind a pooler
	{"pgbouncer-simple", "simple_protocol"},
}

// BenchmarkPooler: what PgBouncer in transaction pooling mode costs per request, and what each query
// mode costs. Five `tenantkit serve` processes on one database (poolerConfigs), each driven in turn
// at a fixed 400 requests/s with two kinds of request: checkPermission (one round trip, as the
// system role) and the remote schema's checkEntitlement (a user transaction: begin with the role,
// the caller and, behind the pooler, the timeouts; one query; commit), 2 s each, under the policies'
// form each deployment gets (helper behind PgBouncer, inline otherwise). Five rounds, interleaved;
// each figure is the median of the rounds' p50 (p99 in the log).
func BenchmarkPooler(b *testing.B) {
	ctx := b.Context()
	db := newDB(b)
	ds := load(b, db, sizes{tenants: 200, projectsPerTenant: 1, extraUsers: 400})
	bouncer := pgbouncer.Start(b, pgtest.AdminURL(), pgbouncer.Options{PoolSize: 8})
	type target struct {
		name  string
		kinds map[string][][]byte // request kind → raw requests
		conns rawPool
		form  postgres.PolicyForm // the policies' form `tenantkit migrate up` installs for it
	}
	var targets []target
	for _, c := range poolerConfigs {
		url := db
		var env []string
		pooler := postgres.NoPooler
		if strings.HasPrefix(c.name, "pgbouncer") {
			url = bouncer.URL(db)
			pooler = postgres.TransactionPooler
			env = append(env, "DATABASE_POOLER="+string(pooler))
		}
		if c.mode != "" {
			url = withQuery(b, url, "default_query_exec_mode", c.mode)
		}
		svc := startService(b, db, append(env, "DATABASE_URL="+url)...)
		hc := hasura(b, svc)
		tg := target{name: c.name, kinds: map[string][][]byte{}, conns: newRawPool(svc.url, 64), form: postgres.PolicyFormFor(pooler)}
		for i, tenant := range ds.tenants {
			owner := ds.owners[i]
			req, err := hc.ActionRequest("checkPermission", map[string]any{"tenantId": tenant, "permission": "users:invite"},
				map[string]string{"x-hasura-role": "user", "x-hasura-user-id": owner})
			if err != nil {
				b.Fatal(err)
			}
			tg.kinds["check"] = append(tg.kinds["check"], rawRequest(http.MethodPost, req.URL, headerMap(req), req.Body))
			body := fmt.Appendf(nil, `{"query":"query($t: ID!) { checkEntitlement(tenantId: $t, feature: \"sso\") { allowed reason } }","variables":{"t":%q}}`, tenant)
			tg.kinds["tx"] = append(tg.kinds["tx"], rawRequest(http.MethodPost, svc.url+"/graphql", map[string]string{
				"Content-Type": "application/json", "X-Tenantkit-Secret": benchSecret, "X-Hasura-Role": "user", "X-Hasura-User-Id": owner}, body))
		}
		targets = append(targets, tg)
	}
	wants := map[string][]byte{"check": []byte(`"allowed":true`), "tx": []byte(`"allowed":true`)}
	do := func(tg target, kind string) func(context.Context, int) error {
		reqs := tg.kinds[kind]
		return func(_ context.Context, i int) error {
			status, body, err := tg.conns.do(reqs[i%len(reqs)])
			if err != nil {
				return err
			}
			if status != http.StatusOK || !bytes.Contains(body, wants[kind]) {
				return fmt.Errorf("%s %s: %w", tg.name, kind, statusError(status, body))
			}
			return nil
		}
	}
	// The services share one database: before each one's phases, the policies' form its own
	// deployment would have.
	for _, tg := range targets { // warm-up: connections, caches
		setPolicyForm(b, db, tg.form)
		for _, kind := range []string{"check", "tx"} {
			if st := closedLoop(ctx, 4, time.Second, do(tg, kind)); st.failed > 0 {
				b.Fatalf("warm-up %s %s: %d failed, first: %v", tg.name, kind, st.failed, st.firstErr)
			}
		}
	}
	runs := map[string][]*stats{}
	for round := range poolerRounds {
		for _, tg := range targets {
			setPolicyForm(b, db, tg.form)
			for _, kind := range []string{"check", "tx"} {
				st := openLoop(ctx, poolerRate, 2*time.Second, 32, do(tg, kind))
				b.Logf("pooler round %d, %s %s: %s", round+1, tg.name, kind, st)
				if st.failed > 0 {
					b.Fatalf("%s %s: %d failed, first: %v", tg.name, kind, st.failed, st.firstErr)
				}
				runs[tg.name+"-"+kind] = append(runs[tg.name+"-"+kind], st)
			}
		}
	}
	metrics := map[string]float64{}
	for key, sts := range runs {
		metrics[key+"-p50-ms"] = median(sts, func(s *stats) float64 { return s.pct(50) })
		metrics[key+"-p99-ms"] = median(sts, func(s *stats) float64 { return s.pct(99) })
	}
	report(b, metrics)
}

// withQuery returns url with the query parameter name set to value.
func withQuery(tb testing.TB, url, name, value string) string {
	tb.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set(name, value)
	u.RawQuery = q.Encode()
	return u.String()
}
