package postgres_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/maintenance"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// TestUsageFold: counter events reach billing_usage through the fold (migration 00029), each once,
// and every tenantkit reader counts each committed event exactly once at every moment, before,
// during and after the fold.
func TestUsageFold(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	hour := time.Now().UTC().Truncate(time.Hour)
	record := func(t *testing.T, tenant, key string, q float64) {
		t.Helper()
		if _, _, err := db.RecordUsage(ctx, []billing.UsageEvent{{TenantID: tenant, Metric: "api_calls", Quantity: q,
			IdempotencyKey: key, OccurredAt: hour.Add(time.Minute)}}); err != nil {
			t.Fatal(err)
		}
	}
	counters := func(t *testing.T, tenant string) int64 {
		t.Helper()
		return fxCount(t, admin, `SELECT coalesce(sum(quantity), 0)::bigint FROM billing_usage WHERE tenant_id = $1`, tenant)
	}
	exact := func(t *testing.T, tenant string) int64 {
		t.Helper()
		totals, err := db.UsageTotals(ctx, []billing.UsageRange{{TenantID: tenant, Metric: "api_calls", From: hour, To: hour.Add(time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		return int64(totals[0])
	}
	// memberSees is the usage query's answer for the hour, as a member (or anyone) of the session.
	memberSees := func(t *testing.T, s tenantkit.Session, tenant string) int64 {
		t.Helper()
		totals, err := db.Usage(ctx, s, tenant, hour, hour.Add(time.Hour), "hour")
		if err != nil {
			t.Fatal(err)
		}
		var n float64
		for _, u := range totals {
			if u.Metric == "api_calls" {
				n += u.Quantity
			}
		}
		return int64(n)
	}

	t.Run("readers count events the fold has not reached", func(t *testing.T) {
		tn := fxTenant(t, admin)
		guest := fxMember(t, admin, tn.id, tenantkit.Guest)
		record(t, tn.id, "a", 2)
		record(t, tn.id, "b", 3)
		if got := counters(t, tn.id); got != 0 {
			t.Errorf("billing_usage holds %d before any fold, want 0 (the request path writes no counter)", got)
		}
		if got := exact(t, tn.id); got != 5 {
			t.Errorf("UsageTotals %d, want 5", got)
		}
		if got := memberSees(t, tenantkit.UserSession(guest), tn.id); got != 5 {
			t.Errorf("a member's usage query %d, want 5", got)
		}
		stranger := fxTenant(t, admin)
		if got := memberSees(t, tenantkit.UserSession(stranger.owner), tn.id); got != 0 {
			t.Errorf("another tenant's owner sees %d, want nothing", got)
		}
		pgtest.SettleUsage(t, admin)
		if got, e, m := counters(t, tn.id), exact(t, tn.id), memberSees(t, tenantkit.UserSession(guest), tn.id); got != 5 || e != 5 || m != 5 {
			t.Errorf("after the fold: counters %d, UsageTotals %d, member %d; want 5 each", got, e, m)
		}
		record(t, tn.id, "c", 4)
		record(t, tn.id, "a", 2) // a duplicate: nothing
		if e, m := exact(t, tn.id), memberSees(t, tenantkit.UserSession(guest), tn.id); e != 9 || m != 9 {
			t.Errorf("folded and unfolded: UsageTotals %d, member %d; want 9 each", e, m)
		}
		fxExec(t, admin, `UPDATE tenants SET deleted_at = now() WHERE id = $1`, tn.id)
		if got := memberSees(t, tenantkit.UserSession(guest), tn.id); got != 0 {
			t.Errorf("a member of a deleted tenant sees %d, want nothing (as billing_usage's policy)", got)
		}
	})

	t.Run("an open transaction's events are folded after it commits, and once", func(t *testing.T) {
		tn := fxTenant(t, admin)
		record(t, tn.id, "before", 1)
		// A recording transaction left open, its event written as recordUsage writes it.
		open, err := admin.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer open.Rollback(ctx) //nolint:errcheck // ended below
		var xact string
		if err := open.QueryRow(ctx, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, xact)
			VALUES ($1, 'open', 'api_calls', 10, $2, pg_current_xact_id()) RETURNING xact::text`, tn.id, hour.Add(time.Minute)).Scan(&xact); err != nil {
			t.Fatal(err)
		}
		record(t, tn.id, "after", 100) // recorded and committed while the first is open
		for range 3 {
			if _, err := db.FoldUsage(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var below bool
		fxQueryRow(t, admin, `SELECT watermark <= $1::xid8 FROM tenantkit.usage_fold`, xact).Scan(&below)
		if !below {
			t.Error("the watermark passed a transaction that is still open")
		}
		if got := exact(t, tn.id); got != 101 {
			t.Errorf("UsageTotals %d while a recording is open, want 101 (the committed events)", got)
		}
		if err := open.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if got := exact(t, tn.id); got != 111 {
			t.Errorf("UsageTotals %d after it committed, want 111", got)
		}
		pgtest.SettleUsage(t, admin)
		pgtest.SettleUsage(t, admin)
		if got, e := counters(t, tn.id), exact(t, tn.id); got != 111 || e != 111 {
			t.Errorf("after folding: counters %d, UsageTotals %d; want 111 each", got, e)
		}
	})

	t.Run("a rolled back event is never counted", func(t *testing.T) {
		tn := fxTenant(t, admin)
		rb, err := admin.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fxTxExec(t, rb, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, xact)
			VALUES ($1, 'gone', 'api_calls', 7, $2, pg_current_xact_id())`, tn.id, hour.Add(time.Minute))
		if _, err := db.FoldUsage(ctx); err != nil {
			t.Fatal(err)
		}
		if err := rb.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		record(t, tn.id, "kept", 1)
		pgtest.SettleUsage(t, admin)
		if got, e := counters(t, tn.id), exact(t, tn.id); got != 1 || e != 1 {
			t.Errorf("counters %d, UsageTotals %d; want 1 each", got, e)
		}
	})

	t.Run("concurrent folds during ingestion fold each event once", func(t *testing.T) {
		tn := fxTenant(t, admin)
		const writers, batches, per = 4, 20, 25
		stop := make(chan struct{})
		var folders sync.WaitGroup
		var foldErr error
		var mu sync.Mutex
		for range 3 {
			folders.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := db.FoldUsage(ctx); err != nil {
						mu.Lock()
						foldErr = err
						mu.Unlock()
						return
					}
				}
			})
		}
		var writersWG sync.WaitGroup
		for w := range writers {
			writersWG.Go(func() {
				for b := range batches {
					events := make([]billing.UsageEvent, per)
					for i := range events {
						events[i] = billing.UsageEvent{TenantID: tn.id, Metric: "api_calls", Quantity: 1,
							IdempotencyKey: fmt.Sprintf("w%d-b%d-%d", w, b, i), OccurredAt: hour.Add(time.Minute)}
					}
					if _, _, err := db.RecordUsage(ctx, events); err != nil {
						t.Error(err)
						return
					}
					// At least this writer's own batches (t.Fatal may not be called from here).
					totals, err := db.UsageTotals(ctx, []billing.UsageRange{{TenantID: tn.id, Metric: "api_calls", From: hour, To: hour.Add(time.Hour)}})
					if err != nil || int64(totals[0]) < int64(b+1)*per {
						t.Errorf("writer %d after batch %d: UsageTotals %v, %v", w, b, totals, err)
						return
					}
				}
			})
		}
		writersWG.Wait()
		close(stop)
		folders.Wait()
		if foldErr != nil {
			t.Fatal(foldErr)
		}
		want := int64(writers * batches * per)
		if got := exact(t, tn.id); got != want {
			t.Errorf("UsageTotals %d, want %d", got, want)
		}
		pgtest.SettleUsage(t, admin)
		if got := counters(t, tn.id); got != want {
			t.Errorf("counters %d after folding, want %d", got, want)
		}
	})

	t.Run("gauges stay on the request path", func(t *testing.T) {
		tn := fxTenant(t, admin)
		if _, _, err := db.RecordUsage(ctx, []billing.UsageEvent{{TenantID: tn.id, Metric: "storage_gb", Quantity: 42,
			IdempotencyKey: "g", OccurredAt: hour.Add(time.Minute)}}); err != nil {
			t.Fatal(err)
		}
		if got := fxCount(t, admin, `SELECT coalesce(max(quantity), 0)::bigint FROM billing_usage WHERE tenant_id = $1 AND metric = 'storage_gb'`, tn.id); got != 42 {
			t.Errorf("gauge %d in billing_usage, want 42 at once", got)
		}
		if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_events WHERE tenant_id = $1 AND xact IS NOT NULL`, tn.id); n != 0 {
			t.Errorf("%d gauge events marked for the fold", n)
		}
	})
}

// TestUsageRetentionWaitsForTheFold: a month's usage partition is not dropped while it holds an
// event the counters lack; the maintenance job folds first, so its run drops it.
func TestUsageRetentionWaitsForTheFold(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin)
	old := maintenance.Month(time.Now()).AddDate(0, -20, 0)
	if _, err := db.EnsureUsagePartitions(ctx, []time.Time{old}); err != nil {
		t.Fatal(err)
	}
	fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, recorded_month, xact)
		VALUES ($1, 'old', 'api_calls', 1, $2::timestamptz, $3::date, pg_current_xact_id())`, tn.id, old, old.Format(time.DateOnly))
	name := "usage_events_" + old.Format("200601")
	dropped, err := db.DropUsagePartitionsBefore(ctx, old.AddDate(0, 1, 0))
	if err == nil || !strings.Contains(err.Error(), "not folded") || len(dropped) > 0 {
		t.Fatalf("dropping a partition with an unfolded event: dropped %v, err %v; want a refusal", dropped, err)
	}
	if got := queryStrings(ctx, admin, `SELECT tableoid::regclass::text FROM tenantkit.usage_events WHERE idempotency_key = 'old'`); len(got) != 1 {
		t.Fatalf("the event is gone: %v", got)
	}
	// The job folds first, then drops. Another test's transaction (any database of the server) can
	// hold the fold back for a moment, and the drop then refuses: the next run drops it.
	job := &maintenance.Service{Store: db}
	var r maintenance.Report
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if r, err = job.Run(ctx); err == nil || !strings.Contains(err.Error(), "not folded") || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.Dropped, name) {
		t.Errorf("the job dropped %v, want %s", r.Dropped, name)
	}
	if got := fxCount(t, admin, `SELECT coalesce(sum(quantity), 0)::bigint FROM billing_usage WHERE tenant_id = $1`, tn.id); got != 1 {
		t.Errorf("counters %d after the drop, want 1 (the event was folded before its partition went)", got)
	}
}

// TestUsageFoldReadsTheIndex: the fold and the readers read only the unfolded events, through the
// index on xact: with 100,000 folded events of 1,000 tenants in the month's partition (analyzed),
// two folds and a reader scan no table and read a handful of index entries. Everything measured
// runs on one connection, whose statistics it flushes itself. Both are planned for the values at
// hand, without JIT: in 00029 the fold's statement was estimated over a third of the table, and a
// fold that found nothing spent 0.3–0.5 s compiling its plan (migration 00030).
func TestUsageFoldReadsTheIndex(t *testing.T) {
	t.Parallel()
	_, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin)
	fxExec(t, admin, `INSERT INTO tenants (id, slug, name) SELECT gen_random_uuid(), 'bulk-' || g, 'Bulk' FROM generate_series(1, 999) g`)
	fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, xact)
		SELECT t.id, 'bulk-' || g, 'api_calls', 1, now(), pg_current_xact_id() FROM generate_series(1, 100) g, tenants t`)
	pgtest.SettleUsage(t, admin)
	var part string
	fxQueryRow(t, admin, `SELECT tableoid::regclass::text FROM tenantkit.usage_events WHERE idempotency_key = 'bulk-1' LIMIT 1`).Scan(&part)
	fxExec(t, admin, `ANALYZE `+part)
	conn, err := admin.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	run := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// record appends a counter event as recordUsage does.
	record := func(key string) {
		run(`INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, xact)
			VALUES ($1, $2, 'api_calls', 1, now(), pg_current_xact_id())`, tn.id, key)
	}
	// reads is the partition's sequential scans and index entries read so far.
	reads := func() (seq, entries int64) {
		t.Helper()
		run(`SELECT pg_stat_force_next_flush()`) // this backend's counts are shared when it is next idle
		run(`SELECT pg_stat_clear_snapshot()`)
		if err := conn.QueryRow(ctx, `SELECT seq_scan, (SELECT sum(idx_tup_read)::bigint FROM pg_stat_all_indexes i WHERE i.relid = t.relid)
			FROM pg_stat_all_tables t WHERE t.relid = $1::regclass`, part).Scan(&seq, &entries); err != nil {
			t.Fatal(err)
		}
		return seq, entries
	}
	record("fresh")
	seq0, entries0 := reads()
	for i, q := range []string{`SELECT tenantkit.fold_usage()`, `SELECT tenantkit.fold_usage()`,
		`SELECT count(*) FROM tenantkit.usage_hours('` + tn.id + `')`} {
		run(`SET ROLE tenantkit_system; ` + q + `; RESET ROLE`)
		record(fmt.Sprint("during-", i))
	}
	seq, entries := reads()
	if seq != seq0 || entries-entries0 > 100 {
		t.Errorf("%s: two folds and a read scanned the table %d times and read %d index entries; want none and a few (4 events to find)",
			part, seq-seq0, entries-entries0)
	}
	var total int64
	if err := conn.QueryRow(ctx, `SELECT sum(quantity)::bigint FROM tenantkit.usage_hours($1)`, tn.id).Scan(&total); err != nil || total != 104 {
		t.Errorf("usage_hours: %d, %v; want 104", total, err)
	}
	for _, fn := range []string{"tenantkit.add_usage_events(xid8, xid8)", "tenantkit.unfolded_usage(uuid)"} {
		var config []string
		fxQueryRow(t, admin, `SELECT coalesce(proconfig, '{}') FROM pg_proc WHERE oid = $1::regprocedure`, fn).Scan(&config)
		for _, want := range []string{"plan_cache_mode=force_custom_plan", "jit=off"} {
			if !slices.Contains(config, want) {
				t.Errorf("%s runs with %v, want %s", fn, config, want)
			}
		}
	}
}

// TestUsageFoldDown: undoing the fold's migrations (00030, then 00029) folds what is left first,
// so billing_usage holds every counter event again for the code before them, which reads the
// counters alone, even while another transaction on the server holds the fold's xmin back.
func TestUsageFoldDown(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	admin := connect(t, url)
	tn := fxTenant(t, admin)
	fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, xact)
		VALUES ($1, 'a', 'api_calls', 2, now(), pg_current_xact_id())`, tn.id)
	fxExec(t, admin, `SELECT tenantkit.fold_usage()`)
	// A transaction with an xid, open on another database of the server, older than the events.
	other, err := pgx.Connect(context.Background(), pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	holder, err := other.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(context.Background()) //nolint:errcheck // ends with the test
	if _, err := holder.Exec(context.Background(), `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, xact)
		VALUES ($1, 'b', 'api_calls', 3, now(), pg_current_xact_id()), ($1, 'c', 'api_calls', 5, now(), pg_current_xact_id())`, tn.id)
	for !exists(t, admin, `SELECT FROM goose_db_version WHERE version_id = 28 AND is_applied`) ||
		exists(t, admin, `SELECT FROM pg_attribute WHERE attrelid = 'tenantkit.usage_events'::regclass AND attname = 'xact'`) {
		migrate(t, url, "down")
	}
	if got := fxCount(t, admin, `SELECT coalesce(sum(quantity), 0)::bigint FROM billing_usage WHERE tenant_id = $1`, tn.id); got != 10 {
		t.Errorf("billing_usage holds %d after the fold's migrations were undone, want 10 (every event)", got)
	}
	migrate(t, url, "up")
	if got := fxCount(t, admin, `SELECT coalesce(sum(quantity), 0)::bigint FROM tenantkit.usage_hours($1)`, tn.id); got != 10 {
		t.Errorf("usage_hours %d after migrating up again, want 10", got)
	}
}

// TestUsageFoldDownDuringFold: a fold that has added events but not yet committed when 00029's
// down starts: the down waits for it and adds only what it did not, so nothing counts twice.
func TestUsageFoldDownDuringFold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	admin := connect(t, url)
	tn := fxTenant(t, admin)
	fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, xact)
		VALUES ($1, 'a', 'api_calls', 2, now(), pg_current_xact_id())`, tn.id)
	fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, xact)
		VALUES ($1, 'b', 'api_calls', 3, now(), pg_current_xact_id()), ($1, 'c', 'api_calls', 5, now(), pg_current_xact_id())`, tn.id)
	for exists(t, admin, `SELECT FROM goose_db_version WHERE version_id = 30 AND is_applied`) {
		migrate(t, url, "down") // back to 00029's fold
	}
	// A fold that folds all three events, left open. Another test's transaction can hold it back
	// for a moment: it is tried again until it folds them.
	var fold pgx.Tx
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		tx, err := admin.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		if err := tx.QueryRow(ctx, `SELECT tenantkit.fold_usage()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 3 {
			fold = tx
			break
		}
		_ = tx.Rollback(ctx)
		if time.Now().After(deadline) {
			t.Fatalf("the fold folded %d of 3 events for 30 s", n)
		}
	}
	// 00029's down, while the fold is open: it must wait for the fold (a lock), which then commits.
	down := make(chan error, 1)
	go func() { down <- postgres.Migrate(ctx, url, "down", io.Discard) }()
	fxWaiters(t, admin, 1)
	if err := fold.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-down; err != nil {
		t.Fatalf("migrate down: %v", err)
	}
	if got := fxCount(t, admin, `SELECT coalesce(sum(quantity), 0)::bigint FROM billing_usage WHERE tenant_id = $1`, tn.id); got != 10 {
		t.Errorf("billing_usage holds %d after the down ran beside a fold, want 10", got)
	}
	migrate(t, url, "up")
}

// TestUsageFoldAfterLogicalCopy: a database copied into another server by a logical dump carries
// the old server's transaction ids in the watermark and the events, ahead of the new server's.
// Until the operator rebases the fold, recordUsage, the fold and the readers refuse (unavailable,
// TK003) instead of recording events below the watermark that nobody would count; after
// tenantkit.rebase_usage_fold(), the totals are the old server's, and new events count.
func TestUsageFoldAfterLogicalCopy(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin)
	guest := fxMember(t, admin, tn.id, tenantkit.Guest)
	hour := time.Now().UTC().Truncate(time.Hour)
	// The old server: 2 events folded (counters and a watermark at X), 5 not yet (xact >= X).
	fxExec(t, admin, `INSERT INTO billing_usage (tenant_id, metric, period_start, period_end, slot, quantity)
		VALUES ($1, 'api_calls', $2, $2::timestamptz + interval '1 hour', 0, 2)`, tn.id, hour)
	fxExec(t, admin, `UPDATE tenantkit.usage_fold SET watermark = (pg_current_xact_id()::text::numeric + 1000000)::text::xid8`)
	fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, xact)
		SELECT $1, 'old-folded', 'api_calls', 2, $2, (f.watermark::text::numeric - 10)::text::xid8 FROM tenantkit.usage_fold f`, tn.id, hour)
	fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, xact)
		SELECT $1, 'old-unfolded', 'api_calls', 5, $2, (f.watermark::text::numeric + 10)::text::xid8 FROM tenantkit.usage_fold f`, tn.id, hour)

	refused := func(what string, err error) {
		t.Helper()
		if tenantkit.ErrorCode(err) != tenantkit.Unavailable || fxSQLState(err) != "TK003" {
			t.Errorf("%s before the rebase: %v, want unavailable (TK003)", what, err)
		}
	}
	_, _, err := db.RecordUsage(ctx, []billing.UsageEvent{{TenantID: tn.id, Metric: "api_calls", Quantity: 1, IdempotencyKey: "new-1", OccurredAt: hour}})
	refused("recordUsage", err)
	_, err = db.FoldUsage(ctx)
	refused("the fold", err)
	_, err = db.UsageTotals(ctx, []billing.UsageRange{{TenantID: tn.id, Metric: "api_calls", From: hour, To: hour.Add(time.Hour)}})
	refused("UsageTotals", err)
	_, err = db.Usage(ctx, tenantkit.UserSession(guest), tn.id, hour, hour.Add(time.Hour), "hour")
	refused("the usage query", err)
	if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_events WHERE idempotency_key = 'new-1'`); n != 0 {
		t.Errorf("an event was recorded below the watermark")
	}

	var folded int64
	fxQueryRow(t, admin, `SELECT tenantkit.rebase_usage_fold()`).Scan(&folded)
	if folded != 1 {
		t.Errorf("the rebase folded %d events, want 1 (the one the old server had not)", folded)
	}
	if _, _, err := db.RecordUsage(ctx, []billing.UsageEvent{{TenantID: tn.id, Metric: "api_calls", Quantity: 1, IdempotencyKey: "new-1", OccurredAt: hour}}); err != nil {
		t.Fatal(err)
	}
	totals, err := db.UsageTotals(ctx, []billing.UsageRange{{TenantID: tn.id, Metric: "api_calls", From: hour, To: hour.Add(time.Hour)}})
	if err != nil || totals[0] != 8 {
		t.Errorf("UsageTotals after the rebase: %v, %v; want 8 (2 folded, 5 unfolded, 1 new)", totals, err)
	}
	pgtest.SettleUsage(t, admin)
	if got := fxCount(t, admin, `SELECT sum(quantity)::bigint FROM billing_usage WHERE tenant_id = $1`, tn.id); got != 8 {
		t.Errorf("billing_usage %d after the rebase and a fold, want 8", got)
	}
}

// TestUsageFoldBesideTenantDelete: a fold that meets a tenant's hard delete in flight waits for it
// and goes on without that tenant's events, instead of failing on the foreign key or deadlocking
// (migration 00032: the fold locks its tenants first, as a batch does).
func TestUsageFoldBesideTenantDelete(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	gone, kept := fxTenant(t, admin), fxTenant(t, admin)
	record := func(key string) {
		t.Helper()
		if _, _, err := db.RecordUsage(ctx, []billing.UsageEvent{
			{TenantID: gone.id, Metric: "api_calls", Quantity: 1, IdempotencyKey: key},
			{TenantID: kept.id, Metric: "api_calls", Quantity: 1, IdempotencyKey: key}}); err != nil {
			t.Fatal(err)
		}
	}
	record("a")
	pgtest.SettleUsage(t, admin) // both tenants have a counter row: the next fold updates them
	record("b")
	// Until no transaction older than the events is open anywhere on the server, so that the fold
	// below covers them (else it has nothing to fold and nothing to wait for).
	for deadline := time.Now().Add(30 * time.Second); fxCount(t, admin, `SELECT count(*) FROM tenantkit.usage_events
		WHERE xact >= pg_snapshot_xmin(pg_current_snapshot())`) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a transaction older than the events stayed open for 30 s")
		}
	}
	del, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer del.Rollback(ctx) //nolint:errcheck // committed below
	fxTxExec(t, del, `DELETE FROM tenants WHERE id = $1`, gone.id)
	type result struct {
		n   int64
		err error
	}
	folded := make(chan result, 1)
	go func() {
		n, err := db.FoldUsage(ctx)
		folded <- result{n, err}
	}()
	fxWaiters(t, admin, 1) // the fold waits for the delete
	if err := del.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-folded; r.err != nil || r.n != 1 {
		t.Fatalf("fold beside the delete: %d folded, %v; want 1 (the kept tenant's event) and no error", r.n, r.err)
	}
	if got := fxCount(t, admin, `SELECT coalesce(sum(quantity), 0)::bigint FROM billing_usage WHERE tenant_id = $1`, kept.id); got != 2 {
		t.Errorf("kept tenant's counters %d, want 2", got)
	}
	if n := fxCount(t, admin, `SELECT count(*) FROM billing_usage WHERE tenant_id = $1`, gone.id); n != 0 {
		t.Errorf("%d counter rows of the deleted tenant", n)
	}
}
