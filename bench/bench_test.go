// Package bench_test holds tenantkit's benchmarks (`make bench`, see README.md here):
//
//   - BenchmarkListProjects: what row-level security costs the hottest read, "list my projects in
//     tenant T", against the very same query run by a role that bypasses RLS and against the
//     guide's style of policy, at 1,000, 10,000 and 100,000 tenants (1,000,000 projects each);
//   - the service benchmarks (service_test.go): checkPermission over HTTP, usage ingestion,
//     Stripe webhooks and the service's memory, against `tenantkit serve` in a second process.
//
// `go test ./bench` runs only the correctness tests (small datasets, a few seconds).
package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// listSQL is the query under test; projects_tenant_created_idx (tenant_id, created_at DESC) serves it.
const listSQL = `SELECT id, name, created_at FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 10`

// setSQL starts every measured transaction, whatever the role: one round trip, both settings
// transaction-local, exactly as postgres.DB.WithUser does. hasura.user.id is for the naive role's
// policy only (the guide's setting name; set_config accepts it where SET does not parse).
const setSQL = `SELECT set_config('role', $1, true), set_config('hasura.user', $2, true), set_config('hasura.user.id', $3, true)`

// bypassRole is the baseline: it may read projects and is exempt from RLS. Roles are cluster-wide,
// so it is created when missing and never dropped.
const bypassRole = "tenantkit_bench_bypass"

// naiveRole is the guide's style of policy, minimally repaired so that it runs (see load): a
// membership subquery on tenant_users with a bare current_setting('hasura.user.id').
const naiveRole = "tenantkit_bench_naive"

// pageSize is the query's LIMIT; every tenant has at least that many projects.
const pageSize = 10

type sizes struct {
	tenants           int // each with one owner
	projectsPerTenant int
	extraUsers        int // each a member or guest of 1 to 3 random tenants
}

// rlsSizes are the benchmark's datasets: 1,000,000 projects at each size, so that only the number
// of tenants (and of members: three users per tenant) changes from one to the next.
var rlsSizes = []sizes{
	{tenants: 1_000, projectsPerTenant: 1_000, extraUsers: 2_000},
	{tenants: 10_000, projectsPerTenant: 100, extraUsers: 20_000},
	{tenants: 100_000, projectsPerTenant: 10, extraUsers: 200_000},
}

type dataset struct {
	url     string
	size    sizes
	tenants []string // tenant ids, in slug order
	owners  []string // owners[i] owns tenants[i]
}

type project struct {
	ID        pgtype.UUID
	Name      string
	CreatedAt time.Time
}

// connect opens one connection (not a pool: no pool noise in the measurements). Every statement
// is bounded by statement_timeout.
func connect(tb testing.TB, url, statementTimeout string) *pgx.Conn {
	tb.Helper()
	return connectWith(tb, url, statementTimeout, pgx.QueryExecModeCacheStatement)
}

// connectWith is connect with the statements sent in mode.
func connectWith(tb testing.TB, url, statementTimeout string, mode pgx.QueryExecMode) *pgx.Conn {
	tb.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	cfg.RuntimeParams["statement_timeout"] = statementTimeout
	cfg.RuntimeParams["application_name"] = "tenantkit-bench"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// claimsOf is hasura.user for a user session, as Hasura (and postgres.DB.WithUser) sets it.
func claimsOf(user string) string {
	b, err := json.Marshal(map[string]string{"x-hasura-role": "user", "x-hasura-user-id": user})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// load fills the (freshly migrated) database at url as the superuser, with set-based SQL, and
// returns the tenants and their owners. Ids are derived from md5 of a counter and everything else
// from a seeded random(), so the same sizes give the same data. Projects are inserted in creation
// order, interleaving tenants the way a live system writes them, so one tenant's projects are
// spread over many heap pages (the query fetches its 50 rows from up to 50 pages).
func load(tb testing.TB, url string, s sizes) *dataset {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	conn := connect(tb, url, "10min")
	exec := func(q pgx.Tx, sql string, args ...any) {
		tb.Helper()
		var err error
		if q != nil {
			_, err = q.Exec(ctx, sql, args...)
		} else {
			_, err = conn.Exec(ctx, sql, args...)
		}
		if err != nil {
			tb.Fatalf("load: %v\n%s", err, sql)
		}
	}

	// The baseline role. Concurrent processes may race to create it: either error means it exists.
	exec(nil, `DO $$ BEGIN
	  CREATE ROLE `+bypassRole+` NOLOGIN BYPASSRLS;
	EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
	END $$`)
	exec(nil, `GRANT USAGE ON SCHEMA public TO `+bypassRole)
	exec(nil, `GRANT SELECT ON projects TO `+bypassRole)
	// The guide's policy on projects, for naiveRole only. Minimal repairs: the guide's recursive
	// policy on tenant_users is replaced by plain read access for this role (else every policy that
	// reads tenant_users fails), and hasura.user.id is set by set_config (see setSQL).
	exec(nil, `DO $$ BEGIN
	  CREATE ROLE `+naiveRole+` NOLOGIN;
	EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
	END $$`)
	exec(nil, `GRANT USAGE ON SCHEMA public TO `+naiveRole)
	exec(nil, `GRANT SELECT ON projects, tenant_users TO `+naiveRole)
	exec(nil, `CREATE POLICY bench_naive_read ON tenant_users FOR SELECT TO `+naiveRole+` USING (true)`)
	exec(nil, `CREATE POLICY bench_naive ON projects FOR SELECT TO `+naiveRole+` USING (
	    tenant_id IN (
	      SELECT tenant_id
	      FROM tenant_users
	      WHERE user_id = current_setting('hasura.user.id', true)::UUID
	    ))`)

	exec(nil, `CREATE FUNCTION pg_temp.bench_id(kind text, n bigint) RETURNS uuid
	  LANGUAGE sql IMMUTABLE AS $$ SELECT md5('tenantkit-bench/' || kind || '/' || n)::uuid $$`)
	tx, err := conn.Begin(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	// Skip triggers (foreign-key checks, plan limits): the data is consistent by construction, and
	// every tenant is on the unlimited enterprise plan anyway.
	exec(tx, `SET LOCAL session_replication_role = replica`)
	exec(tx, `SET LOCAL work_mem = '256MB'`)
	exec(tx, `SELECT setseed(0.2026)`)
	exec(tx, `INSERT INTO auth.users (id, email, display_name, created_at, updated_at)
	  SELECT pg_temp.bench_id('user', u), 'bench-user-' || u || '@example.com', 'Bench user ' || u,
	         timestamptz '2024-01-01 00:00:00+00', timestamptz '2024-01-01 00:00:00+00'
	  FROM generate_series(1, $1::bigint + $2::bigint) u`, s.tenants, s.extraUsers)
	exec(tx, `INSERT INTO tenants (id, slug, name, created_at, updated_at)
	  SELECT pg_temp.bench_id('tenant', t), 'bench-' || lpad(t::text, 6, '0'), 'Bench tenant ' || t,
	         timestamptz '2024-01-01 00:00:00+00', timestamptz '2024-01-01 00:00:00+00'
	  FROM generate_series(1, $1::bigint) t`, s.tenants)
	// Each tenant has the Stripe customer tenantkit would have created for it (cus_<first 8 of its
	// id>, as stripetest.SubscriptionObject names it): webhooks find tenants only through it.
	exec(tx, `INSERT INTO tenant_subscriptions (tenant_id, plan_id, status, stripe_customer_id)
	  SELECT pg_temp.bench_id('tenant', t), (SELECT id FROM subscription_plans WHERE key = 'enterprise'), 'active',
	         'cus_' || left(pg_temp.bench_id('tenant', t)::text, 8)
	  FROM generate_series(1, $1::bigint) t`, s.tenants)
	// user t owns tenant t; users tenants+1 … tenants+extraUsers join 1 to 3 random tenants
	exec(tx, `INSERT INTO tenant_users (tenant_id, user_id, role, joined_at)
	  SELECT pg_temp.bench_id('tenant', t), pg_temp.bench_id('user', t), 'owner', timestamptz '2024-01-01 00:00:00+00'
	  FROM generate_series(1, $1::bigint) t`, s.tenants)
	exec(tx, `WITH x AS MATERIALIZED (
	    SELECT u, 1 + floor(random() * 3)::int AS k FROM generate_series(1, $2::bigint) u)
	  INSERT INTO tenant_users (tenant_id, user_id, role, joined_at)
	  SELECT pg_temp.bench_id('tenant', 1 + floor(random() * $1::bigint)::bigint), pg_temp.bench_id('user', $1::bigint + x.u),
	         (CASE WHEN random() < 0.75 THEN 'member' ELSE 'guest' END)::tenant_role, timestamptz '2024-01-01 00:00:00+00'
	  FROM x CROSS JOIN LATERAL generate_series(1, x.k) j
	  ON CONFLICT DO NOTHING`, s.tenants, s.extraUsers)
	exec(tx, `WITH t AS MATERIALIZED (
	    SELECT t, pg_temp.bench_id('tenant', t) AS tenant_id, pg_temp.bench_id('user', t) AS owner_id
	    FROM generate_series(1, $1::bigint) t)
	  INSERT INTO projects (id, tenant_id, name, owner_id, created_at, updated_at)
	  SELECT pg_temp.bench_id('project', p * $1::bigint + t.t), t.tenant_id, 'Project ' || p, t.owner_id,
	         timestamptz '2024-01-01 00:00:00+00' + (p * $1::bigint + t.t) * interval '1 second',
	         timestamptz '2024-01-01 00:00:00+00' + (p * $1::bigint + t.t) * interval '1 second'
	  FROM generate_series(1, $2::bigint) p CROSS JOIN t
	  ORDER BY p, t.t`, s.tenants, s.projectsPerTenant)
	if err := tx.Commit(ctx); err != nil {
		tb.Fatal(err)
	}
	// Statistics for the planner, hint bits and the visibility map, so the first measured queries
	// do not pay for them.
	exec(nil, `VACUUM (ANALYZE) auth.users, tenants, tenant_subscriptions, tenant_users, projects`)

	ds := &dataset{url: url, size: s}
	rows, err := conn.Query(ctx, `SELECT t.id::text, m.user_id::text FROM tenants t
	  JOIN tenant_users m ON m.tenant_id = t.id AND m.role = 'owner' ORDER BY t.slug`)
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var tenant, owner string
		if err := rows.Scan(&tenant, &owner); err != nil {
			tb.Fatal(err)
		}
		ds.tenants = append(ds.tenants, tenant)
		ds.owners = append(ds.owners, owner)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(ds.tenants) != s.tenants {
		tb.Fatalf("load: %d tenants with an owner, want %d", len(ds.tenants), s.tenants)
	}
	return ds
}

// list runs the query under test in q and appends its rows to buf.
func list(ctx context.Context, q pgx.Tx, tenant string, buf []project) ([]project, error) {
	rows, err := q.Query(ctx, listSQL, tenant)
	if err != nil {
		return buf, err
	}
	defer rows.Close()
	for rows.Next() {
		var p project
		if err := rows.Scan(&p.ID, &p.Name, &p.CreatedAt); err != nil {
			return buf, err
		}
		buf = append(buf, p)
	}
	return buf, rows.Err()
}

// claimsFor returns the settings the role's policies read for user: hasura.user for
// tenantkit_app, hasura.user.id for the naive role, nothing for the bypass role.
func claimsFor(role, user string) (claims, userID string) {
	switch role {
	case postgres.AppRole:
		return claimsOf(user), ""
	case naiveRole:
		return "", user
	}
	return "", ""
}

// listAs runs the query in its own transaction as role for user.
func listAs(ctx context.Context, conn *pgx.Conn, role, user, tenant string) ([]project, error) {
	var out []project
	claims, userID := claimsFor(role, user)
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, setSQL, role, claims, userID); err != nil {
			return err
		}
		var err error
		out, err = list(ctx, tx, tenant, nil)
		return err
	})
	return out, err
}

// explain returns EXPLAIN (ANALYZE, BUFFERS) of the query for tenant, run as role for user on a
// warmed-up connection: the custom plan (the tenant as a literal) or the generic plan (as the plan
// cache may choose for a prepared statement after five executions).
func explain(ctx context.Context, tb testing.TB, url string, role, user, tenant string, generic bool) string {
	tb.Helper()
	conn := connect(tb, url, "1min")
	defer conn.Close(ctx)
	var plan []string
	claims, userID := claimsFor(role, user)
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, setSQL, role, claims, userID); err != nil {
			return err
		}
		// Warm the session first (catalog caches, the policy function's compiled body), so that
		// the timings are those of the benchmark's steady state, not of a new connection.
		for range 10 {
			if _, err := list(ctx, tx, tenant, nil); err != nil {
				return err
			}
		}
		sql := "EXPLAIN (ANALYZE, BUFFERS) " + strings.Replace(listSQL, "$1", "'"+tenant+"'::uuid", 1)
		if generic {
			if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "PREPARE bench_list(uuid) AS "+listSQL); err != nil {
				return err
			}
			sql = "EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_list('" + tenant + "')"
		}
		rows, err := tx.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		tb.Fatalf("explain as %s: %v", role, err)
	}
	return strings.Join(plan, "\n")
}

// checkPlan reports a plan that does not read projects through projects_tenant_created_idx, or
// (under RLS) evaluates the policy other than once per statement. whole: the tenant has no more
// rows than the page, so reading them all through the index and sorting them (a bitmap scan) is as
// good as an ordered index scan, and the planner may choose it, with or without RLS.
func checkPlan(tb testing.TB, name, plan string, rls, whole bool) {
	tb.Helper()
	if !strings.Contains(plan, "Index Scan using projects_tenant_created_idx on projects") &&
		!(whole && strings.Contains(plan, "Bitmap Index Scan on projects_tenant_created_idx")) {
		tb.Errorf("%s: the plan does not use projects_tenant_created_idx:\n%s", name, plan)
	}
	if strings.Contains(plan, "Seq Scan") {
		tb.Errorf("%s: the plan has a Seq Scan:\n%s", name, plan)
	}
	if strings.Contains(plan, "Sort") && !whole {
		tb.Errorf("%s: the plan sorts instead of reading the index in order:\n%s", name, plan)
	}
	if rls != onceOnly(plan) {
		tb.Errorf("%s: policy run once per statement (InitPlan, no SubPlan) = %v, want %v:\n%s", name, !rls, rls, plan)
	}
}

// onceOnly reports whether the plan evaluates the policy once per statement (an InitPlan) and
// nothing per row (a SubPlan).
func onceOnly(plan string) bool {
	return strings.Contains(plan, "InitPlan") && !strings.Contains(plan, "SubPlan")
}

// TestListProjectsSameRows: under RLS and under the naive policy, every member of a tenant (owner,
// member or guest) gets exactly the rows the bypass role gets with the explicit tenant filter, and
// a non-member gets none. It also checks the loader's shape and, structurally, the RLS plan.
func TestListProjectsSameRows(t *testing.T) {
	t.Parallel()
	s := sizes{tenants: 20, projectsPerTenant: 30, extraUsers: 40}
	url := pgtest.NewDB(t)
	ds := load(t, url, s)
	ctx := t.Context()
	conn := connect(t, url, "30s")

	var badTenants, badUsers int
	err := conn.QueryRow(ctx, `SELECT
	    (SELECT count(*) FROM tenants t WHERE (SELECT count(*) FROM projects p WHERE p.tenant_id = t.id) <> $1),
	    (SELECT count(*) FROM (SELECT user_id FROM tenant_users WHERE role <> 'owner' GROUP BY user_id
	                           HAVING count(*) NOT BETWEEN 1 AND 3) x)
	    + (SELECT count(*) FROM auth.users u WHERE NOT EXISTS (SELECT FROM tenant_users m WHERE m.user_id = u.id))`,
		s.projectsPerTenant).Scan(&badTenants, &badUsers)
	if err != nil {
		t.Fatal(err)
	}
	if badTenants != 0 || badUsers != 0 {
		t.Fatalf("dataset: %d tenants without exactly %d projects, %d users without 1 to 3 memberships",
			badTenants, s.projectsPerTenant, badUsers)
	}

	members := map[string][]string{} // tenant -> user ids
	rows, err := conn.Query(ctx, `SELECT tenant_id::text, user_id::text FROM tenant_users ORDER BY tenant_id, user_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var tenant, user string
		if err := rows.Scan(&tenant, &user); err != nil {
			t.Fatal(err)
		}
		members[tenant] = append(members[tenant], user)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	sameRow := func(a, b project) bool { return a.ID == b.ID && a.Name == b.Name && a.CreatedAt.Equal(b.CreatedAt) }
	checked := 0
	for i, tenant := range ds.tenants {
		want, err := listAs(ctx, conn, bypassRole, "", tenant)
		if err != nil {
			t.Fatalf("bypass, tenant %s: %v", tenant, err)
		}
		if len(want) != pageSize {
			t.Fatalf("bypass, tenant %s: %d rows, want %d", tenant, len(want), pageSize)
		}
		if len(members[tenant]) < 1 {
			t.Fatalf("tenant %s has no members", tenant)
		}
		outsider := ds.owners[(i+1)%len(ds.owners)]
		if slices.Contains(members[tenant], outsider) {
			t.Fatalf("owner %s of another tenant is a member of %s", outsider, tenant)
		}
		for _, role := range []string{postgres.AppRole, naiveRole} {
			for _, user := range members[tenant] {
				got, err := listAs(ctx, conn, role, user, tenant)
				if err != nil {
					t.Fatalf("%s, tenant %s, member %s: %v", role, tenant, user, err)
				}
				if !slices.EqualFunc(got, want, sameRow) {
					t.Errorf("%s, tenant %s, member %s: got %d rows %v…, want the bypass role's %d rows %v…",
						role, tenant, user, len(got), head(got), len(want), head(want))
				}
				checked++
			}
			got, err := listAs(ctx, conn, role, outsider, tenant)
			if err != nil {
				t.Fatalf("%s, tenant %s, non-member %s: %v", role, tenant, outsider, err)
			}
			if len(got) != 0 {
				t.Errorf("%s, tenant %s, non-member %s: got %d rows, want none", role, tenant, outsider, len(got))
			}
		}
	}
	if checked < 2*len(ds.tenants) {
		t.Fatalf("only %d member sessions checked", checked)
	}

	// The policy's function runs once per statement (an InitPlan), never per row.
	plan := explain(ctx, t, url, postgres.AppRole, ds.owners[0], ds.tenants[0], false)
	if !onceOnly(plan) {
		t.Errorf("rls plan: want the policy as an InitPlan only:\n%s", plan)
	}
}

func head(ps []project) []string {
	var out []string
	for _, p := range ps[:min(len(ps), 2)] {
		out = append(out, p.Name)
	}
	return out
}

// rlsRounds is how many times each sub-benchmark runs per size, interleaved (rls, bypass, naive,
// rls, …) so that drift on the shared machine spreads over all of them; the report takes medians.
const rlsRounds = 3

// BenchmarkListProjects, for each size: the query as the owner of a random tenant under RLS
// (tenantkit_app with hasura.user set), against the same query as a role with BYPASSRLS, and as
// the naive role under the guide's policy. All pay the same four round trips (begin, set_config,
// query, commit), so their ratios are what the policies cost; the *-query-only sub-benchmarks set
// role and claims once and time the query alone. TENANTKIT_BENCH_SIZES (e.g. "10000") limits the
// sizes.
func BenchmarkListProjects(b *testing.B) {
	only := os.Getenv("TENANTKIT_BENCH_SIZES")
	for _, size := range rlsSizes {
		if only != "" && !slices.Contains(strings.Split(only, ","), strconv.Itoa(size.tenants)) {
			continue
		}
		url := pgtest.NewDB(b) // dropped when the benchmark ends
		start := time.Now()
		ds := load(b, url, size)
		b.Logf("dataset: %d tenants, %d projects, %d users; loaded (inserts, VACUUM ANALYZE) in %s",
			size.tenants, size.tenants*size.projectsPerTenant, size.tenants+size.extraUsers, time.Since(start).Round(time.Millisecond))

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		k := len(ds.tenants) / 2
		for _, c := range []struct {
			name, role, user string
			generic, rls     bool
		}{
			{"rls, custom plan", postgres.AppRole, ds.owners[k], false, true},
			{"rls, generic plan", postgres.AppRole, ds.owners[k], true, true},
			{"bypass, custom plan", bypassRole, "", false, false},
			{"bypass, generic plan", bypassRole, "", true, false},
		} {
			plan := explain(ctx, b, ds.url, c.role, c.user, ds.tenants[k], c.generic)
			b.Logf("tenants=%d: EXPLAIN (ANALYZE, BUFFERS), %s:\n%s", size.tenants, c.name, plan)
			checkPlan(b, c.name, plan, c.rls, size.projectsPerTenant <= pageSize)
		}
		b.Logf("tenants=%d: EXPLAIN (ANALYZE, BUFFERS), naive:\n%s", size.tenants,
			explain(ctx, b, ds.url, naiveRole, ds.owners[k], ds.tenants[k], false))
		cancel()

		prefix := fmt.Sprintf("tenants=%d/", size.tenants)
		roles := []struct{ name, role string }{{"rls", postgres.AppRole}, {"bypass", bypassRole}, {"naive", naiveRole}}
		for range rlsRounds {
			for _, role := range roles {
				b.Run(prefix+role.name, func(b *testing.B) { benchTx(b, ds, role.role, pgx.QueryExecModeCacheStatement) })
			}
			// Without prepared statements, RLS runs under the policies' form `tenantkit migrate up`
			// installs for DATABASE_POOLER=transaction (the helper form), and once more under the
			// inline form for comparison; the inline form is back for the rows that follow.
			setPolicyForm(b, ds.url, postgres.PolicyFormFor(postgres.TransactionPooler))
			for _, role := range roles {
				b.Run(prefix+role.name+"-unprepared", func(b *testing.B) { benchTx(b, ds, role.role, pgx.QueryExecModeExec) })
			}
			setPolicyForm(b, ds.url, postgres.InlinePolicies)
			b.Run(prefix+"rls-unprepared-inline", func(b *testing.B) { benchTx(b, ds, postgres.AppRole, pgx.QueryExecModeExec) })
			for _, role := range roles {
				b.Run(prefix+role.name+"-query-only", func(b *testing.B) { benchQueryOnly(b, ds, role.role) })
			}
		}
		buf := sharedBuffers(b, ds.url)
		b.Logf("tenants=%d: shared_buffers %.0f MiB; the RLS statement's relations %.1f MiB, of them in shared buffers %.1f MiB (pg_buffercache: %t)",
			size.tenants, buf.settingMiB, buf.relationsMiB, buf.cachedMiB, buf.cachedKnown)
		b.Run(prefix+"buffers", func(b *testing.B) {
			for range b.N {
			}
			b.ReportMetric(buf.settingMiB, "shared-buffers-MiB")
			b.ReportMetric(buf.relationsMiB, "relations-MiB")
			if buf.cachedKnown {
				b.ReportMetric(buf.cachedMiB, "cached-MiB")
			}
		})
	}
}

// setPolicyForm installs form in the database at url (as its owner), as `tenantkit migrate up`
// would for a deployment.
func setPolicyForm(tb testing.TB, url string, form postgres.PolicyForm) {
	tb.Helper()
	if _, err := postgres.SetPolicyForm(context.Background(), url, form); err != nil {
		tb.Fatal(err)
	}
}

// rlsRelations are the relations the RLS statement reads: the table and the index the query
// uses, and what the policy's sub-select reads (memberships through their covering index, the
// deleted tenants).
var rlsRelations = []string{"projects", "projects_tenant_created_idx", "tenant_users", "tenant_users_user_id_idx",
	"tenants", "tenants_deleted_idx"}

type buffers struct {
	settingMiB, relationsMiB, cachedMiB float64
	cachedKnown                         bool // pg_buffercache was available
}

// sharedBuffers reads the server's shared_buffers, the size of rlsRelations, and, where the
// pg_buffercache extension can be created, how much of them the buffers hold after the runs.
func sharedBuffers(tb testing.TB, url string) buffers {
	tb.Helper()
	ctx := context.Background()
	conn := connect(tb, url, "60s")
	defer conn.Close(ctx)
	var out buffers
	const mib = 1 << 20
	if err := conn.QueryRow(ctx, `SELECT pg_size_bytes(current_setting('shared_buffers'))::float8 / $2,
	    (SELECT sum(pg_relation_size(c.oid))::float8 / $2 FROM pg_class c
	     WHERE c.relname = ANY($1) AND c.relnamespace = 'public'::regnamespace)`, rlsRelations, mib).Scan(&out.settingMiB, &out.relationsMiB); err != nil {
		tb.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_buffercache`); err != nil {
		tb.Logf("pg_buffercache is not available (%v): the cached size is not reported", err)
		return out
	}
	if err := conn.QueryRow(ctx, `SELECT count(*)::float8 * current_setting('block_size')::int / $2
	    FROM pg_buffercache b JOIN pg_class c ON b.relfilenode = pg_relation_filenode(c.oid)
	    WHERE b.reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
	      AND c.relname = ANY($1) AND c.relnamespace = 'public'::regnamespace`, rlsRelations, mib).Scan(&out.cachedMiB); err != nil {
		tb.Fatal(err)
	}
	out.cachedKnown = true
	return out
}

// benchTx: each iteration is a whole user transaction for a random tenant (fixed seed, so every
// role visits the same tenants in the same order): begin; set role and claims; the query; commit.
// mode is how pgx sends the statements: QueryExecModeCacheStatement prepares each once per
// connection (tenantkit on a direct connection), so PostgreSQL reuses its plan; QueryExecModeExec
// prepares none, so every statement is planned again (tenantkit behind a transaction pooler).
// Hasura's own role bypasses RLS (README, "Hasura's database role"): these costs are not its.
func benchTx(b *testing.B, ds *dataset, role string, mode pgx.QueryExecMode) {
	ctx := b.Context()
	conn := connectWith(b, ds.url, "10s", mode)
	once := func(rng *rand.Rand, buf []project) ([]project, error) {
		k := rng.IntN(len(ds.tenants))
		claims, userID := claimsFor(role, ds.owners[k])
		tx, err := conn.Begin(ctx)
		if err != nil {
			return buf, err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, setSQL, role, claims, userID); err != nil {
			return buf, err
		}
		if buf, err = list(ctx, tx, ds.tenants[k], buf[:0]); err != nil {
			return buf, err
		}
		if len(buf) != pageSize {
			return buf, fmt.Errorf("tenant %s: %d rows, want %d", ds.tenants[k], len(buf), pageSize)
		}
		return buf, tx.Commit(ctx)
	}
	var buf []project
	var err error
	warm := rand.New(rand.NewPCG(7, 7))
	for range 20 { // prepare the statements (pgx caches them per connection)
		if buf, err = once(warm, buf); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(2026, 1))
	for b.Loop() {
		if buf, err = once(rng, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// benchQueryOnly: one transaction with role and claims set once, for one tenant (fixed seed) and
// its owner; only the query is timed. It isolates the planner's and executor's cost of the policy.
func benchQueryOnly(b *testing.B, ds *dataset, role string) {
	ctx := b.Context()
	conn := connect(b, ds.url, "10s")
	k := rand.New(rand.NewPCG(2026, 2)).IntN(len(ds.tenants))
	claims, userID := claimsFor(role, ds.owners[k])
	tx, err := conn.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, setSQL, role, claims, userID); err != nil {
		b.Fatal(err)
	}
	var buf []project
	for range 20 {
		if buf, err = list(ctx, tx, ds.tenants[k], buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if buf, err = list(ctx, tx, ds.tenants[k], buf[:0]); err != nil {
			b.Fatal(err)
		}
		if len(buf) != pageSize {
			b.Fatalf("tenant %s: %d rows, want %d", ds.tenants[k], len(buf), pageSize)
		}
	}
}
