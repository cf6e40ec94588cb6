package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/maintenance"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// TestUsageKeyOnceAcrossMonthEnd: two attempts of one event in flight at once on both sides of a
// month's end record it once. The attempt in last month is written here as recordUsage writes it
// near a month's end (its key claimed, its event in last month's partition), in a transaction
// left open; the attempt in this month is recordUsage itself, with every moment treated as near a
// month's end. It must wait for the first to end, then record the event only if the first rolled
// back.
func TestUsageKeyOnceAcrossMonthEnd(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	postgres.SetUsageBoundaryWindow(db, 40*24*time.Hour)
	tn := fxTenant(t, admin)
	last := maintenance.Month(time.Now()).AddDate(0, -1, 0)
	if _, err := db.EnsureUsagePartitions(ctx, []time.Time{last}); err != nil {
		t.Fatal(err)
	}
	for _, commit := range []bool{true, false} {
		key := fmt.Sprint("month-end-", commit)
		occurred := time.Now().Add(-time.Minute)
		first, err := admin.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fxTxExec(t, first, `INSERT INTO tenantkit.usage_boundary_keys (tenant_id, idempotency_key) VALUES ($1, $2)`, tn.id, key)
		fxTxExec(t, first, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, recorded_month)
			VALUES ($1, $2, 'api_calls', 1, $3, $4)`, tn.id, key, occurred, last.Format(time.DateOnly))
		type result struct {
			n   int
			err error
		}
		second := make(chan result, 1)
		go func() {
			n, _, err := db.RecordUsage(ctx, []billing.UsageEvent{{TenantID: tn.id, Metric: "api_calls", Quantity: 1, IdempotencyKey: key, OccurredAt: occurred}})
			second <- result{n, err}
		}()
		fxWaiters(t, admin, 1) // the second attempt waits for the first's claim
		select {
		case r := <-second:
			t.Fatalf("commit=%v: the second attempt ended (%d recorded, %v) while the first was in flight", commit, r.n, r.err)
		default:
		}
		if commit {
			err = first.Commit(ctx)
		} else {
			err = first.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		r := <-second
		if r.err != nil {
			t.Fatalf("commit=%v: second attempt: %v", commit, r.err)
		}
		if want := map[bool]int{true: 0, false: 1}[commit]; r.n != want {
			t.Errorf("first attempt committed=%v: the second recorded %d, want %d", commit, r.n, want)
		}
		if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_events WHERE tenant_id = $1 AND idempotency_key = $2`, tn.id, key); n != 1 {
			t.Errorf("first attempt committed=%v: %d events of key %s, want 1", commit, n, key)
		}
	}
	if total := fxCount(t, admin, `SELECT coalesce(sum(quantity), 0)::bigint FROM tenantkit.usage_hours($1)`, tn.id); total != 1 {
		t.Errorf("usage counts %d, want 1 (the event whose first attempt rolled back)", total)
	}
}

// TestUsageKeysClaimedNearMonthEndOnly: recordUsage claims its keys near a month's end (the
// claims the test above relies on), and only there; deleting the tenant deletes its claims.
func TestUsageKeysClaimedNearMonthEndOnly(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin)
	claims := func() int64 {
		return fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_boundary_keys WHERE tenant_id = $1`, tn.id)
	}
	postgres.SetUsageBoundaryWindow(db, time.Nanosecond) // no moment is near a month's end
	if _, _, err := db.RecordUsage(ctx, fxUsageBatch(tn.id, 5, "far-")); err != nil {
		t.Fatal(err)
	}
	if n := claims(); n != 0 {
		t.Errorf("%d keys claimed away from a month's end, want 0", n)
	}
	postgres.SetUsageBoundaryWindow(db, 40*24*time.Hour)
	batch := fxUsageBatch(tn.id, 5, "near-")
	batch = append(batch, batch[0]) // a key twice in one batch is one event and one claim
	if n, _, err := db.RecordUsage(ctx, batch); err != nil || n != 5 {
		t.Fatalf("near a month's end: recorded %d, %v; want 5", n, err)
	}
	if n := claims(); n != 5 {
		t.Errorf("%d keys claimed near a month's end, want 5", n)
	}
	if n, _, err := db.RecordUsage(ctx, batch); err != nil || n != 0 {
		t.Errorf("retried near a month's end: recorded %d, %v; want 0", n, err)
	}
	if n, _, err := db.RecordUsage(ctx, fxUsageBatch(tn.id, 5, "far-")); err != nil || n != 0 {
		t.Errorf("keys recorded away from a month's end, retried near it: recorded %d, %v; want 0", n, err)
	}
	fxExec(t, admin, `DELETE FROM tenants WHERE id = $1`, tn.id)
	if n := claims(); n != 0 {
		t.Errorf("%d claims outlive their tenant", n)
	}
}
