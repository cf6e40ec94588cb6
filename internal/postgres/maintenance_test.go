package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/maintenance"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// usagePartitions lists the partitions of tenantkit.usage_events, by name.
func usagePartitions(t testing.TB, admin *pgxpool.Pool) []string {
	t.Helper()
	return queryStrings(context.Background(), admin, `SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'tenantkit.usage_events'::regclass ORDER BY 1`)
}

// TestUsagePartitionsRoutingAndRetention moves a controlled clock through 16 months, running the
// job at each: every month has its partition before it starts, each row lands in the partition of
// the month it was recorded in, and the partitions (and usage_cuts) older than the retention go.
func TestUsagePartitionsRoutingAndRetention(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin)
	clock := time.Date(2031, 1, 20, 12, 0, 0, 0, time.UTC)
	job := &maintenance.Service{Store: db, RetentionMonths: 13, Now: func() time.Time { return clock }}
	for i := range 16 {
		clock = time.Date(2031, time.Month(1+i), 20, 12, 0, 0, 0, time.UTC)
		r, err := job.Run(ctx)
		if err != nil || !r.Ran {
			t.Fatalf("%s: run %+v, %v", clock.Format("2006-01"), r, err)
		}
		month := maintenance.Month(clock)
		name := "usage_events_" + month.Format("200601")
		fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, recorded_at, recorded_month)
			VALUES ($1, $2, 'api_calls', 1, $3, $3, $4)`, tn.id, "k"+month.Format("200601"), clock, month.Format(time.DateOnly))
		fxExec(t, admin, `INSERT INTO tenantkit.usage_cuts (tenant_id, metric, cut, hour_total, below) VALUES ($1, 'api_calls', $2, 1, 1)`, tn.id, clock.Add(-30*time.Minute))
		if got := queryStrings(context.Background(), admin, `SELECT tableoid::regclass::text FROM tenantkit.usage_events WHERE idempotency_key = $1`, "k"+month.Format("200601")); !slices.Equal(got, []string{"tenantkit." + name}) {
			t.Errorf("%s: the row landed in %v, want %s", clock.Format("2006-01"), got, name)
		}
		parts := usagePartitions(t, admin)
		for ahead := range maintenance.MonthsAhead + 1 {
			if want := "usage_events_" + month.AddDate(0, ahead, 0).Format("200601"); !slices.Contains(parts, want) {
				t.Errorf("%s: partitions %v lack %s", clock.Format("2006-01"), parts, want)
			}
		}
		cutoff := maintenance.UsageCutoff(clock, 13)
		for _, p := range parts {
			if p < "usage_events_"+cutoff.Format("200601") {
				t.Errorf("%s: partition %s outlived the retention (cutoff %s)", clock.Format("2006-01"), p, cutoff.Format("2006-01"))
			}
		}
		if i == 14 && !slices.Equal(r.Dropped, []string{"usage_events_203101"}) { // 2032-03: 2031-01 is 14 months back
			t.Errorf("%s: dropped %v, want [usage_events_203101]", clock.Format("2006-01"), r.Dropped)
		}
		if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_cuts WHERE cut < $1`, cutoff); n != 0 {
			t.Errorf("%s: %d usage_cuts before the cutoff", clock.Format("2006-01"), n)
		}
	}
	// Months 2031-03 … 2032-04 remain: 13 before the current one and the current one.
	if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_events`); n != 14 {
		t.Errorf("%d events kept, want 14", n)
	}
	if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_cuts`); n != 14 {
		t.Errorf("%d usage_cuts kept, want 14", n)
	}
	// Each new partition carries the parent's walls.
	for _, p := range usagePartitions(t, admin) {
		if got := queryStrings(context.Background(), admin, `SELECT polname::text FROM pg_policy WHERE polrelid = ('tenantkit.' || $1)::regclass ORDER BY 1`, p); !slices.Equal(got, []string{"app_export", "system_all"}) {
			t.Errorf("%s: policies %v", p, got)
		}
	}
}

// TestUsageIdempotencyAcrossMonths: a retried event is recorded once although the month it was
// first recorded in is over, within the window billing.UsageIdempotencyMonths documents.
func TestUsageIdempotencyAcrossMonths(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin)
	now := time.Now().UTC()
	month := maintenance.Month(now)
	if _, err := db.EnsureUsagePartitions(ctx, []time.Time{month.AddDate(0, -2, 0), month.AddDate(0, -1, 0)}); err != nil {
		t.Fatal(err)
	}
	// earlier records a first attempt of key in the month monthsBack before this one.
	earlier := func(key string, occurred time.Time, monthsBack int) {
		fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, recorded_at, recorded_month)
			VALUES ($1, $2, 'api_calls', 1, $3, $4, $5)`, tn.id, key, occurred, month.AddDate(0, -monthsBack, 0),
			month.AddDate(0, -monthsBack, 0).Format(time.DateOnly))
	}
	record := func(key string, occurred time.Time) int {
		n, _, err := db.RecordUsage(ctx, []billing.UsageEvent{{TenantID: tn.id, Metric: "api_calls", Quantity: 1, IdempotencyKey: key, OccurredAt: occurred}})
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return n
	}
	// Without occurredAt, each attempt carries its own time: the first attempt last month is found.
	earlier("server-timed", month.AddDate(0, -1, 0), 1)
	if n := record("server-timed", now); n != 0 {
		t.Errorf("a retry of last month's event without occurredAt was recorded again (%d)", n)
	}
	// Two months back is outside the window of an event without occurredAt.
	earlier("too-late", month.AddDate(0, -2, 0), 2)
	if n := record("too-late", now); n != 1 {
		t.Errorf("an event first recorded two months ago, retried without occurredAt: recorded %d, want 1 (outside the window)", n)
	}
	// With occurredAt, every month from occurredAt's on is searched: here two months back (the store
	// does not check billing's 35 days, so the month is the same whatever today's date).
	occurred := month.AddDate(0, -2, 3)
	earlier("client-timed", occurred, 2)
	if n := record("client-timed", occurred); n != 0 {
		t.Errorf("a retry of an event with occurredAt %s, first recorded two months back, was recorded again", occurred.Format(time.RFC3339))
	}
	// The earliest occurredAt billing accepts, first recorded in its own month.
	occurred = now.Add(-billing.MaxEventAge + time.Hour)
	back := 0
	for m := month; m.After(maintenance.Month(occurred.Add(-billing.MaxEventSkew))); m = m.AddDate(0, -1, 0) {
		back++
	}
	earlier("client-timed-35d", occurred, back)
	if n := record("client-timed-35d", occurred); n != 0 {
		t.Errorf("a retry of an event with occurredAt %s, first recorded %d month(s) back, was recorded again", occurred.Format(time.RFC3339), back)
	}
	// A fresh key is recorded, once, and a retry in the same month is a duplicate.
	if n := record("fresh", now); n != 1 {
		t.Errorf("fresh event: recorded %d", n)
	}
	if n := record("fresh", now.Add(time.Second)); n != 0 {
		t.Errorf("fresh event retried: recorded %d", n)
	}
	if total := fxCount(t, admin, `SELECT coalesce(sum(quantity), 0)::bigint FROM tenantkit.usage_hours($1)`, tn.id); total != 2 {
		t.Errorf("usage counts %d, want 2 (too-late and fresh)", total)
	}
}

// TestRecordUsageCreatesMissingPartition: when the job has not created this month's partition,
// recordUsage creates it and records the batch, also when several batches find it missing at once.
func TestRecordUsageCreatesMissingPartition(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin)
	name := "usage_events_" + maintenance.Month(time.Now()).Format("200601")
	fxExec(t, admin, `ALTER TABLE tenantkit.usage_events DETACH PARTITION tenantkit.`+name)
	fxExec(t, admin, `DROP TABLE tenantkit.`+name)
	// Four batches at once find no partition: it is created once, and every batch is recorded.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			var n int
			n, _, errs[i] = db.RecordUsage(ctx, []billing.UsageEvent{{TenantID: tn.id, Metric: "api_calls", Quantity: 1,
				IdempotencyKey: fmt.Sprint("k", i), OccurredAt: time.Now()}})
			if errs[i] == nil && n != 1 {
				errs[i] = fmt.Errorf("recorded %d", n)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("batch %d without this month's partition: %v", i, err)
		}
	}
	if !slices.Contains(usagePartitions(t, admin), name) {
		t.Errorf("partition %s not created", name)
	}
}

// blockingStore holds the job inside its first step until released, to overlap two runs.
type blockingStore struct {
	*postgres.DB
	entered, release chan struct{}
}

func (s *blockingStore) EnsureUsagePartitions(ctx context.Context, months []time.Time) ([]string, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.DB.EnsureUsagePartitions(ctx, months)
}

// TestMaintenanceRunsOnOneReplica: of two replicas (two pools) running the job at once, one runs
// it and the other skips it; once the first is done, the next run runs.
func TestMaintenanceRunsOnOneReplica(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	ctx := context.Background()
	open := func() *postgres.DB {
		db, err := postgres.Open(ctx, url, pgtest.AppURL(t, url))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return db
	}
	first := &blockingStore{DB: open(), entered: make(chan struct{}), release: make(chan struct{})}
	second := open()
	var wg sync.WaitGroup
	var r1 maintenance.Report
	var err1 error
	wg.Add(1)
	go func() {
		defer wg.Done()
		r1, err1 = (&maintenance.Service{Store: first}).Run(ctx)
	}()
	<-first.entered // the first replica holds the lock
	r2, err2 := (&maintenance.Service{Store: second}).Run(ctx)
	close(first.release)
	wg.Wait()
	if err1 != nil || err2 != nil || !r1.Ran || r2.Ran {
		t.Fatalf("concurrent runs: first ran=%v (%v), second ran=%v (%v); want exactly the first", r1.Ran, err1, r2.Ran, err2)
	}
	if r3, err := (&maintenance.Service{Store: second}).Run(ctx); err != nil || !r3.Ran {
		t.Errorf("run after the first ended: ran=%v, %v", r3.Ran, err)
	}
}

// TestMaintenancePrunesOnlyWhatMayGo: each ledger loses its expired rows, in batches, and keeps
// the rest: a Stripe event redelivered inside its window is still a duplicate, unsent emails and
// pending Stripe writes and unfinished event claims stay whatever their age.
func TestMaintenancePrunesOnlyWhatMayGo(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin)
	stripeEvent := func(id string) string {
		d, err := db.ApplyStripeEvent(ctx, billing.StripeEvent{ID: id, Type: "customer.created", Created: time.Now()},
			func(billing.Account, billing.Catalog) billing.Decision { return billing.Decision{} })
		if err != nil {
			t.Fatal(err)
		}
		return d.Outcome
	}
	for _, id := range []string{"evt_recent", "evt_old1", "evt_old2"} {
		stripeEvent(id)
	}
	fxExec(t, admin, `UPDATE tenantkit.stripe_events SET received_at = now() - interval '34 days' WHERE id = 'evt_recent'`)
	fxExec(t, admin, `UPDATE tenantkit.stripe_events SET received_at = now() - interval '36 days' WHERE id LIKE 'evt_old%'`)
	fxExec(t, admin, `INSERT INTO tenantkit.processed_events (id, trigger_name, claimed_until, done_at, created_at) VALUES
		(gen_random_uuid(), 'kept-claim', now() - interval '99 days', NULL, now() - interval '100 days'),
		(gen_random_uuid(), 'kept-done', NULL, now() - interval '34 days', now() - interval '34 days'),
		(gen_random_uuid(), 'old-done', NULL, now() - interval '36 days', now() - interval '36 days'),
		(gen_random_uuid(), 'old-done', NULL, now() - interval '90 days', now() - interval '90 days')`)
	fxExec(t, admin, `INSERT INTO tenantkit.email_outbox (tenant_id, to_email, subject, body, sent_at, refused_at, created_at) VALUES
		($1, 'kept-unsent@example.com', 's', 'b', NULL, NULL, now() - interval '900 days'),
		($1, 'kept-sent@example.com', 's', 'b', now() - interval '399 days', NULL, now() - interval '399 days'),
		($1, 'old-sent@example.com', 's', 'b', now() - interval '401 days', NULL, now() - interval '401 days'),
		($1, 'old-refused@example.com', 's', 'b', NULL, now() - interval '401 days', now() - interval '401 days')`, tn.id)
	fxExec(t, admin, `INSERT INTO tenantkit.invitation_sends (tenant_id, invitation_id, resend, sent_at) VALUES
		($1, gen_random_uuid(), false, now() - interval '47 hours'),
		($1, gen_random_uuid(), false, now() - interval '49 hours'),
		($1, gen_random_uuid(), true, now() - interval '30 days')`, tn.id)
	fxExec(t, admin, `INSERT INTO tenantkit.stripe_outbox (kind, tenant_id, subscription_id, idempotency_key, done_at, outcome, created_at) VALUES
		('cancel_subscription', $1, 'sub_pending', 'kept-pending', NULL, NULL, now() - interval '90 days'),
		('cancel_subscription', $1, 'sub_recent', 'kept-done', now() - interval '34 days', 'sent', now() - interval '34 days'),
		('cancel_subscription', $1, 'sub_old', 'old-done', now() - interval '36 days', 'sent', now() - interval '36 days')`, tn.id)

	fxExec(t, admin, `INSERT INTO tenantkit.usage_boundary_keys (tenant_id, idempotency_key, claimed_at) VALUES
		($1, 'kept-claim', now() - interval '23 hours'), ($1, 'old-claim', now() - interval '25 hours')`, tn.id)

	r, err := (&maintenance.Service{Store: db, Batch: 1}).Run(ctx)
	if err != nil || !r.Ran {
		t.Fatalf("run: %+v, %v", r, err)
	}
	want := map[maintenance.Ledger]int{maintenance.StripeEvents: 2, maintenance.ProcessedEvents: 2, maintenance.EmailOutbox: 2,
		maintenance.InvitationSends: 2, maintenance.StripeOutbox: 1, maintenance.UsageCuts: 0, maintenance.UsageBoundaryKeys: 1}
	for l, n := range want {
		if r.Pruned[l] != n {
			t.Errorf("%s: %d deleted, want %d", l, r.Pruned[l], n)
		}
	}
	for sql, kept := range map[string][]string{
		`SELECT id FROM tenantkit.stripe_events ORDER BY 1`:                    {"evt_recent"},
		`SELECT trigger_name FROM tenantkit.processed_events ORDER BY 1`:       {"kept-claim", "kept-done"},
		`SELECT to_email FROM tenantkit.email_outbox ORDER BY 1`:               {"kept-sent@example.com", "kept-unsent@example.com"},
		`SELECT idempotency_key FROM tenantkit.stripe_outbox ORDER BY 1`:       {"kept-done", "kept-pending"},
		`SELECT idempotency_key FROM tenantkit.usage_boundary_keys ORDER BY 1`: {"kept-claim"},
	} {
		if got := queryStrings(ctx, admin, sql); !slices.Equal(got, kept) {
			t.Errorf("%s: %q kept, want %q", sql, got, kept)
		}
	}
	if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.invitation_sends`); n != 1 {
		t.Errorf("%d invitation sends kept, want 1 (the one inside 48 hours)", n)
	}
	if got := stripeEvent("evt_recent"); got != billing.Duplicate {
		t.Errorf("evt_recent redelivered inside the window: %q, want duplicate", got)
	}
	if got := stripeEvent("evt_old1"); got == billing.Duplicate {
		t.Errorf("evt_old1 redelivered after the window: duplicate (its id was not pruned)")
	}
}

// TestUsagePartitionMigrationMovesRows: 00022 moves the rows of the unpartitioned table into the
// partitions of the months they were recorded in, and its down moves them back.
func TestUsagePartitionMigrationMovesRows(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	admin := connect(t, url)
	ctx := context.Background()
	// Down, one migration at a time, to the unpartitioned table 00022 started from.
	partitioned := func() bool {
		return exists(t, admin, "SELECT FROM pg_class WHERE oid = 'tenantkit.usage_events'::regclass AND relkind = 'p'")
	}
	for range 30 {
		if !partitioned() {
			break
		}
		migrate(t, url, "down")
	}
	if partitioned() {
		t.Fatal("usage_events still partitioned after undoing the last thirty migrations")
	}
	tn := fxTenant(t, admin)
	fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, recorded_at)
		VALUES ($1, 'old', 'api_calls', 2, '2025-03-03T10:00:00Z', '2025-03-04T10:00:00Z'),
		       ($1, 'new', 'api_calls', 3, now(), now())`, tn.id)
	migrate(t, url, "up")
	got := queryStrings(ctx, admin, `SELECT idempotency_key || ' ' || tableoid::regclass::text || ' ' || recorded_month || ' ' || quantity
		FROM tenantkit.usage_events ORDER BY 1`)
	month := maintenance.Month(time.Now())
	want := []string{
		"new tenantkit.usage_events_" + month.Format("200601") + " " + month.Format(time.DateOnly) + " 3.0000",
		"old tenantkit.usage_events_202503 2025-03-01 2.0000",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows after up: %q, want %q", got, want)
	}
	migrate(t, url, "down")
	if got := queryStrings(ctx, admin, `SELECT idempotency_key || ' ' || quantity FROM tenantkit.usage_events ORDER BY 1`); !slices.Equal(got, []string{"new 3.0000", "old 2.0000"}) {
		t.Errorf("rows after down: %q", got)
	}
	migrate(t, url, "up")
}

// TestUsagePartitionsOnlyThroughParent: neither service role can read or write a partition
// directly (no grants; RLS forced with the parent's policies besides), so the parent's policies
// are the only way to the rows.
func TestUsagePartitionsOnlyThroughParent(t *testing.T) {
	t.Parallel()
	_, admin := setup(t)
	ctx := context.Background()
	name := "tenantkit.usage_events_" + maintenance.Month(time.Now()).Format("200601")
	for _, role := range []string{"tenantkit_app", "tenantkit_system"} {
		for _, sql := range []string{"SELECT count(*) FROM " + name, "DELETE FROM " + name} {
			tx, err := admin.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, "SET LOCAL ROLE "+role)
			if err == nil {
				_, err = tx.Exec(ctx, sql)
			}
			_ = tx.Rollback(ctx)
			if err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("%s: %s: %v, want permission denied", role, sql, err)
			}
		}
	}
	var rls, force bool
	if err := admin.QueryRow(ctx, `SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass`, name).Scan(&rls, &force); err != nil || !rls || !force {
		t.Errorf("%s: RLS enabled %v, forced %v (%v)", name, rls, force, err)
	}
}
