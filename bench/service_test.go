package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
	"github.com/tenantkit/tenantkit/internal/stripetest"
)

// The service benchmarks run once each (-benchtime=1x): every one is a fixed load with its own
// baseline measured in the same run, and reports its figures as metrics (see report).

// hasura returns a client that builds requests exactly as Hasura would from hasura/metadata.
func hasura(b testing.TB, svc *service) *hasuratest.Client {
	b.Helper()
	meta, err := hasuratest.Load("../hasura/metadata")
	if err != nil {
		b.Fatal(err)
	}
	return hasuratest.NewClient(meta, map[string]string{
		"TENANTKIT_URL": svc.url, "TENANTKIT_SECRET": benchSecret, "TENANTKIT_GRAPHQL_URL": svc.url + "/graphql",
	})
}

func headerMap(req *hasuratest.Request) map[string]string {
	h := map[string]string{}
	for _, kv := range req.Headers {
		h[kv[0]] = kv[1]
	}
	return h
}

// BenchmarkCheckPermission: checkPermission as Hasura calls it, from this process to `tenantkit
// serve` in another, for members (allowed or not by their role) and non-members of 1,000 tenants.
// Phases, in three interleaved rounds: the HTTP baseline (GET /healthz, the same server and
// client, no database); the database baseline (the service's membership statement, sent as the
// service sends a read that goes alone — role and statement in one pipeline — straight through pgx
// from this process, one per check, at the same concurrency over a pool of the service's size; the
// service itself sends concurrent reads together, docs/decisions.md); the highest checkPermission rate at
// full concurrency; and latency at a fixed rate of 25 % of that round's highest. Ratios are taken
// per round, then the median. Every answer is checked. Then a role change and a removal, committed
// directly in the database, must be seen by the very next check. The service's memory is read idle
// and after the load.
func BenchmarkCheckPermission(b *testing.B) {
	ctx := b.Context()
	db := newDB(b)
	ds := load(b, db, sizes{tenants: 1_000, projectsPerTenant: 1, extraUsers: 2_000})
	svc := startService(b, db)
	time.Sleep(time.Second)
	idle := svc.rssMiB(b)
	hc := hasura(b, svc)

	// Checks: every membership, and as many non-members (owner of tenant i, asking about i+1).
	type check struct {
		req  []byte // the HTTP request, as Hasura sends it
		want []byte
	}
	const perm = "projects:write"
	var checks []check
	var url string
	add := func(tenant, user string, allowed bool) {
		req, err := hc.ActionRequest("checkPermission", map[string]any{"tenantId": tenant, "permission": perm},
			map[string]string{"x-hasura-role": "user", "x-hasura-user-id": user})
		if err != nil {
			b.Fatal(err)
		}
		url = req.URL
		checks = append(checks, check{rawRequest(http.MethodPost, req.URL, headerMap(req), req.Body), fmt.Appendf(nil, `"allowed":%t`, allowed)})
	}
	member := map[[2]string]bool{}
	rows, err := svc.admin.Query(ctx, `SELECT tenant_id::text, user_id::text, role::text FROM tenant_users ORDER BY tenant_id, user_id`)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var tenant, user, role string
		if err := rows.Scan(&tenant, &user, &role); err != nil {
			b.Fatal(err)
		}
		member[[2]string{tenant, user}] = true
		add(tenant, user, tenantkit.Allows(tenantkit.Role(role), nil, perm))
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	for i, owner := range ds.owners {
		tenant := ds.tenants[(i+1)%len(ds.tenants)]
		if !member[[2]string{tenant, owner}] {
			add(tenant, owner, false)
		}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(checks), func(i, j int) { checks[i], checks[j] = checks[j], checks[i] })
	conns := newRawPool(svc.url, 256)
	do := func(_ context.Context, i int) error {
		c := checks[i%len(checks)]
		status, body, err := conns.do(c.req)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return statusError(status, body)
		}
		if !bytes.Contains(body, c.want) {
			return fmt.Errorf("%w: %s, want %s", errWrongAnswer, body, c.want)
		}
		return nil
	}
	healthzReq := rawRequest(http.MethodGet, svc.url+"/healthz", nil, nil)
	healthz := func(_ context.Context, _ int) error {
		status, body, err := conns.do(healthzReq)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return statusError(status, body)
		}
		return nil
	}

	// Three rounds of each phase, interleaved; the figures are the medians (single runs on a shared
	// 2-core machine vary by ±15 %).
	// The database baseline: the membership statement of every check, one per check, as the service
	// sends a read that finds no other in flight.
	pgxCfg, err := pgxpool.ParseConfig(db)
	if err != nil {
		b.Fatal(err)
	}
	pgxCfg.MaxConns = postgres.DefaultMaxConns
	direct, err := pgxpool.NewWithConfig(ctx, pgxCfg)
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	type pair struct{ tenant, user string }
	var pairs []pair
	for _, c := range checks {
		var in struct {
			Input            struct{ TenantID string }
			SessionVariables map[string]string `json:"session_variables"`
		}
		_, body, _ := bytes.Cut(c.req, []byte("\r\n\r\n"))
		if err := json.Unmarshal(body, &in); err != nil {
			b.Fatal(err)
		}
		pairs = append(pairs, pair{in.Input.TenantID, in.SessionVariables["x-hasura-user-id"]})
	}
	pgxDo := func(ctx context.Context, i int) error {
		p := pairs[i%len(pairs)]
		batch := &pgx.Batch{}
		batch.Queue(postgres.SystemRoleSQL, postgres.SystemRole)
		batch.Queue(postgres.MembershipSQL, p.tenant, p.user)
		br := direct.SendBatch(ctx, batch)
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return err
		}
		var role string
		var perms []byte
		if err := br.QueryRow().Scan(&role, &perms); err != nil && err != pgx.ErrNoRows {
			_ = br.Close()
			return err
		}
		return br.Close()
	}

	closedLoop(ctx, loadWorkers(), 2*time.Second, do) // warm-up: connections, prepared statements
	closedLoop(ctx, loadWorkers(), time.Second, pgxDo)
	var base, viaPgx, max, fixed, inside []*stats
	var toPgx, toHealthz, p99p50, insideP99p50 []float64
	for round := range 3 {
		// With BENCH_PROFILE_DIR, the second round's healthz and checkPermission phases are profiled.
		profile := func(name string, d time.Duration, do func(context.Context, int) error) *stats {
			if round != 1 {
				return closedLoop(ctx, loadWorkers(), d, do)
			}
			return svc.profile(b, name, d, func() *stats { return closedLoop(ctx, loadWorkers(), d, do) })
		}
		base = append(base, profile("healthz", 3*time.Second, healthz))
		viaPgx = append(viaPgx, closedLoop(ctx, loadWorkers(), 3*time.Second, pgxDo))
		max = append(max, profile("checkPermission", 5*time.Second, do))
		top := max[len(max)-1].rate()
		from := svc.logSize(b)
		fixed = append(fixed, openLoop(ctx, int(top/4), 6*time.Second, 256, do))
		inside = append(inside, svc.handlerLatencies(b, "/actions/checkPermission", from, svc.logSize(b)))
		f := fixed[len(fixed)-1]
		toPgx = append(toPgx, top/viaPgx[len(viaPgx)-1].rate())
		toHealthz = append(toHealthz, top/base[len(base)-1].rate())
		p99p50 = append(p99p50, f.pct(99)/f.pct(50))
		in := inside[len(inside)-1]
		if len(in.latencies) < f.ok {
			b.Fatalf("the service logged %d checkPermission requests of the %d answered at 25 %% (BENCH_LOG_LEVEL must log requests: info or below)",
				len(in.latencies), f.ok)
		}
		insideP99p50 = append(insideP99p50, in.pct(99)/in.pct(50))
	}
	loaded := svc.rssMiB(b)
	for i, in := range inside {
		b.Logf("checkPermission fixed at 25 %%, inside the service (its request log), round %d: p50 %.2f ms, p99 %.2f ms, max %.2f ms",
			i+1, in.pct(50), in.pct(99), in.pct(100))
	}
	for name, sts := range map[string][]*stats{"healthz": base, "pgx": viaPgx, "max": max, "fixed at 25 %": fixed} {
		for _, st := range sts {
			b.Logf("checkPermission %s: %s", name, st)
			if st.failed > 0 {
				b.Fatalf("checkPermission %s: %d requests failed, first: %v", name, st.failed, st.firstErr)
			}
		}
	}
	rate := func(s *stats) float64 { return s.rate() }
	p := func(q float64) func(*stats) float64 { return func(s *stats) float64 { return s.pct(q) } }

	// No stale grants: a committed change is seen by the next check.
	var tenant, user string
	if err := svc.admin.QueryRow(ctx, `SELECT tenant_id::text, user_id::text FROM tenant_users WHERE role = 'member' LIMIT 1`).Scan(&tenant, &user); err != nil {
		b.Fatal(err)
	}
	expect := func(step string, allowed bool) {
		req, err := hc.ActionRequest("checkPermission", map[string]any{"tenantId": tenant, "permission": perm},
			map[string]string{"x-hasura-role": "user", "x-hasura-user-id": user})
		if err != nil {
			b.Fatal(err)
		}
		status, body, err := call(ctx, url, req.Body, headerMap(req))
		if err != nil || status != http.StatusOK || !bytes.Contains(body, fmt.Appendf(nil, `"allowed":%t`, allowed)) {
			b.Fatalf("%s: %d %s (%v), want allowed=%t", step, status, body, err, allowed)
		}
	}
	expect("member before the change", true)
	if _, err := svc.admin.Exec(ctx, `UPDATE tenant_users SET role = 'guest' WHERE tenant_id = $1 AND user_id = $2`, tenant, user); err != nil {
		b.Fatal(err)
	}
	expect("right after the demotion to guest", false)
	if _, err := svc.admin.Exec(ctx, `UPDATE tenant_users SET role = 'member' WHERE tenant_id = $1 AND user_id = $2`, tenant, user); err != nil {
		b.Fatal(err)
	}
	expect("right after the promotion back", true)
	if _, err := svc.admin.Exec(ctx, `DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tenant, user); err != nil {
		b.Fatal(err)
	}
	expect("right after the removal", false)

	report(b, map[string]float64{
		"checks/s": median(max, rate), "healthz/s": median(base, rate), "pgx/s": median(viaPgx, rate),
		"ratio-pgx": medianOf(toPgx), "ratio-healthz": medianOf(toHealthz),
		"p50-ms@25%": median(fixed, p(50)), "p99-ms@25%": median(fixed, p(99)), "achieved/s@25%": median(fixed, rate),
		"p99/p50@25%":        medianOf(p99p50),
		"lag-p99-ms@25%":     median(fixed, func(s *stats) float64 { return s.lag.pct(99) }),
		"handler-p50-ms@25%": median(inside, p(50)), "handler-p99-ms@25%": median(inside, p(99)),
		"handler-p99/p50@25%": medianOf(insideP99p50),
		"idle-MiB":            idle, "loaded-MiB": loaded,
	})
}

// median of f over the runs.
func median(runs []*stats, f func(*stats) float64) float64 {
	vs := make([]float64, len(runs))
	for i, r := range runs {
		vs[i] = f(r)
	}
	return medianOf(vs)
}

func medianOf(vs []float64) float64 {
	vs = slices.Clone(vs)
	slices.Sort(vs)
	return vs[len(vs)/2]
}

// usageBatch is the number of events per recordUsage call.
const usageBatch = 1_000

// BenchmarkUsageIngestion: recordUsage as Hasura calls it for a backend (role service), in batches
// of 1,000 distinct events over 1,000 tenants, from 4 concurrent senders; each call answers only
// after its transaction committed. The service's usage fold runs meanwhile (every second); the
// time until it has added the last event to billing_usage is reported too ("folded-events/s").
// Afterwards the stored totals must equal what was acknowledged, exactly, in billing_usage alone. The baseline is the guide's per-event upsert (one statement and commit per event, with
// the unique key it lacks added), from as many concurrent connections, in the same run.
func BenchmarkUsageIngestion(b *testing.B) {
	ctx := b.Context()
	db := newDB(b)
	ds := load(b, db, sizes{tenants: 1_000, projectsPerTenant: 1, extraUsers: 0})
	svc := startService(b, db)
	hc := hasura(b, svc)
	const senders = 4
	const batches = 300
	const metric = "emails_sent"

	event := func(n int) map[string]any {
		return map[string]any{"tenantId": ds.tenants[n%len(ds.tenants)], "metric": metric, "quantity": 1,
			"idempotencyKey": fmt.Sprintf("bench-%d", n)}
	}
	first := make([]any, usageBatch)
	for j := range first {
		first[j] = event(j)
	}
	req, err := hc.ActionRequest("recordUsage", map[string]any{"events": first}, map[string]string{"x-hasura-role": "service"})
	if err != nil {
		b.Fatal(err)
	}
	header := headerMap(req)
	// The other batches: the same payload (as Hasura built it) with the next events as input.
	var payload map[string]any
	if err := json.Unmarshal(req.Body, &payload); err != nil {
		b.Fatal(err)
	}
	bodies := make([][]byte, batches)
	for i := range bodies {
		evs := make([]any, usageBatch)
		for j := range evs {
			evs[j] = event(i*usageBatch + j)
		}
		payload["input"] = map[string]any{"events": evs}
		if bodies[i], err = json.Marshal(payload); err != nil {
			b.Fatal(err)
		}
	}
	want := fmt.Appendf(nil, `{"recorded":%d,"duplicates":0}`, usageBatch)
	send := func(ctx context.Context, i int) error {
		status, body, err := call(ctx, req.URL, bodies[i], header)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return statusError(status, body)
		}
		if !bytes.Equal(bytes.TrimSpace(body), want) {
			return fmt.Errorf("%w: %s, want %s", errWrongAnswer, body, want)
		}
		return nil
	}
	// About 4 s on the 2-core machine: with BENCH_PROFILE_DIR, the service's CPU profile of the
	// ingestion (usage-service.pprof).
	ours := svc.profile(b, "usage", 4*time.Second, func() *stats { return fixedWork(ctx, senders, batches, send) })
	b.Logf("recordUsage: %s (batches of %d)", ours, usageBatch)
	if ours.failed > 0 {
		b.Fatalf("recordUsage: %d batches failed, first: %v", ours.failed, ours.firstErr)
	}
	var stored float64
	if err := svc.admin.QueryRow(ctx, `SELECT coalesce(sum(quantity), 0) FROM tenants t, tenantkit.usage_hours(t.id) h WHERE h.metric = $1`, metric).Scan(&stored); err != nil {
		b.Fatal(err)
	}
	if acked := float64(ours.ok * usageBatch); stored != acked {
		b.Fatalf("stored %v events, acknowledged %v", stored, acked)
	}
	// The fold's tail: until billing_usage alone holds every event (the guide then runs alone).
	tailStart := time.Now()
	for {
		left, err := pgtest.UnfoldedUsage(ctx, svc.admin)
		if err != nil {
			b.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Since(tailStart) > time.Minute {
			b.Fatalf("%d events still unfolded a minute after ingestion", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tail := time.Since(tailStart)
	if err := svc.admin.QueryRow(ctx, `SELECT coalesce(sum(quantity), 0) FROM billing_usage WHERE metric = $1`, metric).Scan(&stored); err != nil {
		b.Fatal(err)
	}
	if acked := float64(ours.ok * usageBatch); stored != acked {
		b.Fatalf("billing_usage holds %v events after the fold, acknowledged %v", stored, acked)
	}
	b.Logf("fold: billing_usage complete %s after the last batch", tail.Round(time.Millisecond))

	// The guide's way: one upsert per event.
	if _, err := svc.admin.Exec(ctx, `CREATE TABLE bench_guide_usage (
		tenant_id uuid NOT NULL, metric text NOT NULL, quantity numeric NOT NULL,
		period_start timestamptz NOT NULL, period_end timestamptz NOT NULL, metadata jsonb,
		UNIQUE (tenant_id, metric, period_start))`); err != nil {
		b.Fatal(err)
	}
	const guideEvents = 20_000
	guide := fixedWork(ctx, senders, guideEvents, func(ctx context.Context, i int) error {
		_, err := svc.admin.Exec(ctx, `
			INSERT INTO bench_guide_usage (tenant_id, metric, quantity, period_start, period_end, metadata)
			VALUES ($1, $2, 1, date_trunc('hour', NOW()), date_trunc('hour', NOW()) + INTERVAL '1 hour', $3)
			ON CONFLICT (tenant_id, metric, period_start)
			DO UPDATE SET quantity = bench_guide_usage.quantity + 1`,
			ds.tenants[i%len(ds.tenants)], metric, map[string]string{"key": fmt.Sprintf("bench-%d", i)})
		return err
	})
	b.Logf("guide's per-event upsert: %s", guide)
	if guide.failed > 0 {
		b.Fatalf("guide: %d failed, first: %v", guide.failed, guide.firstErr)
	}
	if err := svc.admin.QueryRow(ctx, `SELECT coalesce(sum(quantity), 0) FROM bench_guide_usage`).Scan(&stored); err != nil {
		b.Fatal(err)
	}
	if stored != guideEvents {
		b.Fatalf("guide stored %v events, sent %d", stored, guideEvents)
	}
	report(b, map[string]float64{
		"events/s": ours.rate() * usageBatch, "guide-events/s": guide.rate(),
		"folded-events/s": float64(ours.ok*usageBatch) / (ours.elapsed + tail).Seconds(),
		"batch-p99-ms":    ours.pct(99),
	})
}

const benchWebhookSecret = "whsec_bench_0123456789"

// BenchmarkWebhooks: signed Stripe events to /webhooks/stripe, five per subscription (created,
// three updates, a failed payment) for 1,000 tenants. The baseline is a clean delivery: each
// tenant's events once and in order (tenants in parallel). The measured run delivers another
// 1,000 tenants' events with 20% duplicates, all shuffled, from 16 concurrent senders. Both must
// end in the same state for every tenant.
func BenchmarkWebhooks(b *testing.B) {
	ctx := b.Context()
	sm, err := stripetest.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	db := newDB(b)
	ds := load(b, db, sizes{tenants: 2_000, projectsPerTenant: 1, extraUsers: 0})
	svc := startService(b, db, "STRIPE_SECRET_KEY="+stripetest.TestKey, "STRIPE_API_URL="+sm.URL, "STRIPE_WEBHOOK_SECRET="+benchWebhookSecret)
	plan := func(key string) string {
		var id string
		if err := svc.admin.QueryRow(ctx, `SELECT id::text FROM subscription_plans WHERE key = $1`, key).Scan(&id); err != nil {
			b.Fatal(err)
		}
		return id
	}
	pro, enterprise := plan("professional"), plan("enterprise")
	base := time.Now().Add(-time.Hour).Unix()

	type delivery struct{ tenant, body, signature []byte }
	events := func(tenant string) []delivery {
		seq := []struct {
			id, typ      string
			created      int64
			status, plan string
		}{
			{"created", "customer.subscription.created", base, "incomplete", pro},
			{"active", "customer.subscription.updated", base + 10, "active", pro},
			{"upgrade", "customer.subscription.updated", base + 20, "active", enterprise},
			{"failed", "invoice.payment_failed", base + 30, "", ""},
			{"pastdue", "customer.subscription.updated", base + 40, "past_due", enterprise},
		}
		var out []delivery
		for _, e := range seq {
			obj := stripetest.SubscriptionObject(tenant, e.plan, e.status, base)
			if e.typ == "invoice.payment_failed" {
				obj = map[string]any{"id": "in_" + e.id + tenant[:8], "object": "invoice", "subscription": "sub_" + tenant[:8], "customer": "cus_" + tenant[:8]}
			}
			payload := stripetest.Event(stripetest.APIVersion, "evt_"+e.id+"_"+tenant, e.typ, e.created, obj)
			out = append(out, delivery{[]byte(tenant), payload, []byte(stripetest.Signature(payload, benchWebhookSecret))})
		}
		return out
	}
	post := func(ctx context.Context, d delivery) error {
		status, body, err := call(ctx, svc.url+"/webhooks/stripe", d.body, map[string]string{"Stripe-Signature": string(d.signature)})
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return statusError(status, body)
		}
		return nil
	}
	half := len(ds.tenants) / 2
	const senders = 16

	// Baseline: clean, in order per tenant.
	var clean [][]delivery
	for _, tenant := range ds.tenants[:half] {
		clean = append(clean, events(tenant))
	}
	cleanRun := fixedWork(ctx, senders, len(clean), func(ctx context.Context, i int) error {
		for _, d := range clean[i] {
			if err := post(ctx, d); err != nil {
				return err
			}
		}
		return nil
	})
	cleanEvents := cleanRun.ok * 5
	// Measured: 20% duplicates, shuffled.
	rng := rand.New(rand.NewPCG(2026, 11))
	var mixed []delivery
	for _, tenant := range ds.tenants[half:] {
		for _, d := range events(tenant) {
			mixed = append(mixed, d)
			if rng.IntN(5) == 0 {
				mixed = append(mixed, d)
			}
		}
	}
	rng.Shuffle(len(mixed), func(i, j int) { mixed[i], mixed[j] = mixed[j], mixed[i] })
	mixedRun := fixedWork(ctx, senders, len(mixed), func(ctx context.Context, i int) error { return post(ctx, mixed[i]) })
	for name, st := range map[string]*stats{"clean": cleanRun, "shuffled": mixedRun} {
		b.Logf("webhooks %s: %s", name, st)
		if st.failed > 0 {
			b.Fatalf("webhooks %s: %d failed, first: %v", name, st.failed, st.firstErr)
		}
	}
	var wrong int
	if err := svc.admin.QueryRow(ctx, `SELECT count(*) FROM tenant_subscriptions s
		WHERE s.status <> 'past_due' OR s.plan_id <> $1 OR s.stripe_usage_item_id IS DISTINCT FROM 'si_met_' || left(s.tenant_id::text, 8)`,
		enterprise).Scan(&wrong); err != nil {
		b.Fatal(err)
	}
	if wrong != 0 {
		b.Fatalf("%d of %d subscriptions are not in the state of a clean delivery", wrong, len(ds.tenants))
	}
	cleanRate := float64(cleanEvents) / cleanRun.elapsed.Seconds()
	report(b, map[string]float64{
		"events/s": float64(len(mixed)) / mixedRun.elapsed.Seconds(), "clean-events/s": cleanRate,
	})
}
