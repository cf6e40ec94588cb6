package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// Usage events have no foreign key to tenants (migration 00021): RecordUsage locks the batch's
// tenants in one statement and refuses a batch naming one that does not exist, and deleting a
// tenant deletes its events. These tests hold both halves, and the race between them.

func fxUsageBatch(tenant string, n int, prefix string) []billing.UsageEvent {
	at := time.Now().UTC().Add(-time.Minute)
	batch := make([]billing.UsageEvent, n)
	for i := range batch {
		batch[i] = billing.UsageEvent{TenantID: tenant, Metric: "api_calls", Quantity: 1, IdempotencyKey: fmt.Sprint(prefix, i), OccurredAt: at}
	}
	return batch
}

// fxWaiters waits until n backends of this database wait for a lock (or fails after 10 s).
func fxWaiters(t *testing.T, admin *pgxpool.Pool, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if fxCount(t, admin, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d backends wait for a lock", n)
		}
	}
}

func TestUsageUnknownTenantRefused(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin)
	batch := append(fxUsageBatch(tn.id, 3, "ok-"), fxUsageBatch(uuid.NewString(), 1, "ghost-")...)
	n, _, err := db.RecordUsage(ctx, batch)
	if tenantkit.ErrorCode(err) != tenantkit.Invalid {
		t.Fatalf("recorded %d, err %v; want invalid", n, err)
	}
	if got := fxCount(t, admin, `SELECT (SELECT count(*) FROM tenantkit.usage_events) + (SELECT count(*) FROM billing_usage)`); got != 0 {
		t.Errorf("%d rows stored by a refused batch, want none", got)
	}
	// The same tenant spelled twice (upper case) is one tenant, not a missing one.
	batch = append(fxUsageBatch(tn.id, 2, "a-"), fxUsageBatch(strings.ToUpper(tn.id), 1, "b-")...)
	if n, _, err := db.RecordUsage(ctx, batch); err != nil || n != 3 {
		t.Fatalf("recorded %d, err %v; want 3", n, err)
	}
}

func TestUsageEventsGoWithTheirTenant(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	gone, kept := fxTenant(t, admin), fxTenant(t, admin)
	for _, tn := range []fxTenantRef{gone, kept} {
		if _, _, err := db.RecordUsage(ctx, fxUsageBatch(tn.id, 5, "k")); err != nil {
			t.Fatal(err)
		}
	}
	// A REPEATABLE READ delete would not see events committed after its snapshot: refused.
	err := pgx.BeginTxFunc(ctx, admin, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM tenants WHERE id = $1`, gone.id)
		return err
	})
	if fxSQLState(err) != "40001" {
		t.Fatalf("delete in REPEATABLE READ: %v, want SQLSTATE 40001", err)
	}
	fxExec(t, admin, `DELETE FROM tenants WHERE id = $1`, gone.id)
	if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_events WHERE tenant_id = $1`, gone.id); n != 0 {
		t.Errorf("%d events of the deleted tenant remain", n)
	}
	if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_events WHERE tenant_id = $1`, kept.id); n != 5 {
		t.Errorf("the other tenant keeps %d events, want 5", n)
	}
}

// TestUsageBatchRacesTenantDelete: a batch and the deletion of its tenant, in both orders, never
// leave an event without its tenant.
func TestUsageBatchRacesTenantDelete(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()

	t.Run("the batch first: the delete waits for it and takes its events", func(t *testing.T) {
		tn := fxTenant(t, admin)
		// Hold the batch after its tenant lock: another transaction inserts one of its keys first,
		// so the batch's insert waits for that transaction to end.
		blocker, err := admin.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer blocker.Rollback(ctx)
		fxTxExec(t, blocker, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at)
			VALUES ($1, 'race-0', 'api_calls', 1, now())`, tn.id)
		recorded := make(chan error, 1)
		go func() {
			_, _, err := db.RecordUsage(ctx, fxUsageBatch(tn.id, 10, "race-"))
			recorded <- err
		}()
		fxWaiters(t, admin, 1)
		deleted := make(chan error, 1)
		go func() {
			_, err := admin.Exec(ctx, `DELETE FROM tenants WHERE id = $1`, tn.id)
			deleted <- err
		}()
		fxWaiters(t, admin, 2) // the delete waits for the batch's lock on the tenant
		if err := blocker.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-recorded; err != nil {
			t.Fatalf("batch: %v", err)
		}
		if err := <-deleted; err != nil {
			t.Fatalf("delete: %v", err)
		}
		if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_events e WHERE NOT EXISTS (SELECT FROM tenants t WHERE t.id = e.tenant_id)`); n != 0 {
			t.Errorf("%d events outlive their tenant", n)
		}
	})

	t.Run("the delete first: the batch is refused", func(t *testing.T) {
		tn := fxTenant(t, admin)
		del, err := admin.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer del.Rollback(ctx)
		fxTxExec(t, del, `DELETE FROM tenants WHERE id = $1`, tn.id)
		recorded := make(chan error, 1)
		go func() {
			_, _, err := db.RecordUsage(ctx, fxUsageBatch(tn.id, 10, "late-"))
			recorded <- err
		}()
		fxWaiters(t, admin, 1)
		if err := del.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-recorded; tenantkit.ErrorCode(err) != tenantkit.Invalid {
			t.Fatalf("batch for a tenant deleted meanwhile: %v, want invalid", err)
		}
		if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_events WHERE tenant_id = $1`, tn.id); n != 0 {
			t.Errorf("%d events outlive their tenant", n)
		}
	})
}

// TestUsageBatchSaysWhichMetricsAreLimited: RecordUsage names the batch's metrics that some plan
// limits above zero, read in its own transaction, so a limit set a moment ago counts at once;
// unlimited (-1), zero and absent limits do not.
func TestUsageBatchSaysWhichMetricsAreLimited(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin)
	seq := 0
	record := func(metrics ...string) []string {
		t.Helper()
		var batch []billing.UsageEvent
		for _, m := range metrics {
			seq++
			batch = append(batch, billing.UsageEvent{TenantID: tn.id, Metric: m, Quantity: 1, IdempotencyKey: fmt.Sprint("k", seq)})
		}
		_, limited, err := db.RecordUsage(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		return limited
	}
	// The seeded plans limit users, projects and storage_gb.
	if got := record("api_calls", "storage_gb", "emails_sent", "storage_gb", "api_calls"); !slices.Equal(got, []string{"storage_gb"}) {
		t.Errorf("seeded plans: limited %q, want [storage_gb]", got)
	}
	if _, err := admin.Exec(ctx, `UPDATE subscription_plans SET limits = limits || '{"emails_sent": 1000, "api_calls": -1}' WHERE key = 'enterprise'`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `UPDATE subscription_plans SET limits = limits || '{"api_calls": 0}' WHERE key = 'starter'`); err != nil {
		t.Fatal(err)
	}
	if got := record("api_calls", "emails_sent", "storage_gb"); !slices.Equal(got, []string{"emails_sent", "storage_gb"}) {
		t.Errorf("after a limit on emails_sent: limited %q, want [emails_sent storage_gb]", got)
	}
	if got := record("api_calls"); len(got) != 0 {
		t.Errorf("api_calls (limits -1 and 0 only): limited %q, want none", got)
	}
}

// TestUsageBatchInEveryQueryMode: a batch, its tenant check and its alerts' limits take the same
// parameters in every query mode the service may run in: with prepared statements (no pooler),
// and as pgx sends them behind a transaction pooler, where it knows no parameter types and
// encodes each by its Go type (exec, simple_protocol; here straight to PostgreSQL).
func TestUsageBatchInEveryQueryMode(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	ctx := context.Background()
	admin := connect(t, url)
	a, b := fxTenant(t, admin), fxTenant(t, admin)
	for _, mode := range []string{"cache_statement", "exec", "simple_protocol"} {
		opts, u := postgres.Options{Pooler: postgres.TransactionPooler}, withParams(t, url, "default_query_exec_mode", mode)
		if mode == "cache_statement" {
			opts, u = postgres.Options{}, url
		}
		db, err := postgres.OpenWith(ctx, u, pgtest.AppURL(t, url), opts)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		batch := []billing.UsageEvent{
			{TenantID: a.id, Metric: "api_calls", Quantity: 2, IdempotencyKey: mode + "-1"},
			{TenantID: b.id, Metric: "storage_gb", Quantity: 3, IdempotencyKey: mode + "-2"},
			{TenantID: a.id, Metric: "api_calls", Quantity: 0.5, IdempotencyKey: mode + "-3"},
		}
		n, limited, err := db.RecordUsage(ctx, batch)
		if err != nil || n != 3 || !slices.Equal(limited, []string{"storage_gb"}) {
			t.Errorf("%s: RecordUsage = %d, %q, %v; want 3, [storage_gb]", mode, n, limited, err)
		}
		if known, err := db.KnownTenants(ctx, []string{a.id, uuid.NewString()}); err != nil || len(known) != 1 || !known[a.id] {
			t.Errorf("%s: KnownTenants = %v, %v; want only %s", mode, known, err, a.id)
		}
		if limits, err := db.UsageLimits(ctx, []billing.TenantMetric{{TenantID: b.id, Metric: "storage_gb"}}); err != nil || len(limits) != 1 {
			t.Errorf("%s: UsageLimits = %+v, %v; want the default plan's storage_gb", mode, limits, err)
		}
		if _, _, err := db.RecordUsage(ctx, []billing.UsageEvent{{TenantID: uuid.NewString(), Metric: "api_calls", Quantity: 1, IdempotencyKey: "x"}}); tenantkit.ErrorCode(err) != tenantkit.Invalid {
			t.Errorf("%s: a batch for no tenant: %v, want invalid", mode, err)
		}
		db.Close()
	}
	if got := fxCount(t, admin, `SELECT (coalesce(sum(quantity), 0) * 2)::int FROM tenantkit.usage_hours($1) WHERE metric = 'api_calls'`, a.id); got != 15 {
		t.Errorf("api_calls of the three modes: %d half-units, want 15", got)
	}
}
