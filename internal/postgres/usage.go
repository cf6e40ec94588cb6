package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/billing"
)

var _ billing.UsageStore = (*DB)(nil)

// usageReportLock is the advisory lock key of the usage report ("tkusage").
const usageReportLock int64 = 0x746b7573616765

// LockUsageReport implements billing.UsageStore with a transaction-level advisory lock held for
// the whole run (holdXactLock); a second run waits for it.
func (db *DB) LockUsageReport(ctx context.Context) (func(), error) {
	unlock, _, err := db.holdXactLock(ctx, usageReportLock, true)
	return unlock, err
}

// holdXactLock takes the transaction-level advisory lock key in a transaction of its own on one
// connection of the system pool, left open, idle, until the returned unlock ends it: a
// transaction-level lock holds behind a transaction pooler too (PgBouncer keeps the server
// connection for the transaction; a session lock would stay on a server connection others then
// use). The wait and the idle transaction are exempt from the pool's timeouts (SET LOCAL). With
// wait, it waits for the lock; without, ok is false when another transaction holds it.
func (db *DB) holdXactLock(ctx context.Context, key int64, wait bool) (unlock func(), ok bool, err error) {
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return nil, false, translate(err)
	}
	tx, err := conn.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, `SELECT set_config('statement_timeout', '0', true), set_config('idle_in_transaction_session_timeout', '0', true)`)
	}
	if err == nil {
		if wait {
			_, err = tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key)
			ok = err == nil
		} else {
			err = tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, key).Scan(&ok)
		}
	}
	if err != nil || !ok {
		if err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) // the wait may still be queued on it
		} else {
			_ = tx.Rollback(ctx)
		}
		conn.Release()
		return nil, false, translate(err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tx.Commit(uctx); err != nil {
			conn.Conn().Close(uctx) // closing the session ends the transaction and its lock
		}
		conn.Release()
	}, true, nil
}

// MeteredSubscriptions implements billing.UsageStore on the system path.
func (db *DB) MeteredSubscriptions(ctx context.Context) ([]billing.MeteredSubscription, error) {
	return db.meteredSubscriptions(ctx, `
		SELECT tenant_id::text, stripe_subscription_id, stripe_usage_item_id, current_period_start, current_period_end
		FROM tenant_subscriptions
		WHERE stripe_subscription_id IS NOT NULL AND stripe_usage_item_id IS NOT NULL
		  AND current_period_start IS NOT NULL AND current_period_end > current_period_start
		  AND status IN ('active', 'trialing', 'past_due')
		ORDER BY tenant_id`)
}

// BilledSubscription implements billing.UsageStore on the system path, from the subscription's
// own state (tenantkit.stripe_subscriptions): a deleted tenant's billing row no longer names it.
func (db *DB) BilledSubscription(ctx context.Context, subscriptionID string) (billing.MeteredSubscription, bool, error) {
	subs, err := db.meteredSubscriptions(ctx, `
		SELECT tenant_id::text, id, usage_item_id, current_period_start, current_period_end
		FROM tenantkit.stripe_subscriptions
		WHERE id = $1 AND usage_item_id IS NOT NULL
		  AND current_period_start IS NOT NULL AND current_period_end > current_period_start
		  AND status IN ('active', 'trialing', 'past_due')`, subscriptionID)
	if err != nil || len(subs) == 0 {
		return billing.MeteredSubscription{}, false, err
	}
	return subs[0], true, nil
}

// meteredSubscriptions reads the subscriptions q selects (tenant, subscription, metered item,
// period) and their open usage periods, in one transaction.
func (db *DB) meteredSubscriptions(ctx context.Context, q string, args ...any) ([]billing.MeteredSubscription, error) {
	var subs []billing.MeteredSubscription
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, q, args...)
		var err error
		subs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.MeteredSubscription, error) {
			var m billing.MeteredSubscription
			err := r.Scan(&m.TenantID, &m.SubscriptionID, &m.ItemID, &m.PeriodStart, &m.PeriodEnd)
			return m, err
		})
		if err != nil || len(subs) == 0 {
			return err
		}
		tenants, ids := make([]string, len(subs)), make([]string, len(subs))
		for i, m := range subs {
			tenants[i], ids[i] = m.TenantID, m.SubscriptionID
		}
		open := map[[2]string][]billing.UsagePeriod{}
		rows, _ = tx.Query(ctx, `
			SELECT tenant_id::text, subscription_id, item_id, period_start, period_end, due, carried_in, reported, reported_at
			FROM tenantkit.usage_reports
			WHERE closed_at IS NULL
			  AND (tenant_id, subscription_id) IN (SELECT t::uuid, s FROM unnest($1::text[], $2::text[]) AS u (t, s))
			ORDER BY tenant_id, subscription_id, period_start`, tenants, ids)
		var p billing.UsagePeriod
		_, err = pgx.ForEachRow(rows, []any{&p.TenantID, &p.SubscriptionID, &p.ItemID, &p.Start, &p.End, &p.Due, &p.CarriedIn,
			&p.Reported, &p.ReportedAt}, func() error {
			k := [2]string{p.TenantID, p.SubscriptionID}
			open[k] = append(open[k], p)
			p = billing.UsagePeriod{}
			return nil
		})
		for i := range subs {
			subs[i].Open = open[[2]string{subs[i].TenantID, subs[i].SubscriptionID}]
		}
		return err
	})
	return subs, err
}

// hoursTotal sums a metric's hourly rows from from's hour up to to's hour (excluded): the counters
// and the events not folded into them yet (tenantkit.usage_hours).
const hoursTotal = `
SELECT coalesce(sum(quantity), 0)::float8 FROM tenantkit.usage_hours($1)
WHERE metric = $2
  AND period_start >= date_trunc('hour', $3::timestamptz, 'UTC') AND period_start < date_trunc('hour', $4::timestamptz, 'UTC')`

// belowCut is the metric's usage from the start of cut's hour up to cut: from tenantkit.usage_cuts
// while the hour's exact total (tenantkit.usage_hours) is the one it was counted at, else counted from the
// events (found by the BRIN index on occurred_at) and cached. One statement, one snapshot: the
// hour's total and the events it sums are read together, so a cached value is never stale. The
// events of an hour were recorded in the months $4 to $5 (recordingMonths): only their partitions
// are read.
const belowCut = `
WITH h AS (
  SELECT coalesce(sum(quantity), 0) AS total FROM tenantkit.usage_hours($1)
  WHERE metric = $2 AND period_start = date_trunc('hour', $3::timestamptz, 'UTC')
), cached AS (
  SELECT c.below FROM tenantkit.usage_cuts c, h
  WHERE c.tenant_id = $1 AND c.metric = $2 AND c.cut = $3 AND c.hour_total = h.total
), counted AS (
  SELECT coalesce(sum(e.quantity), 0) AS below FROM tenantkit.usage_events e
  WHERE NOT EXISTS (SELECT FROM cached)
    AND e.tenant_id = $1 AND e.metric = $2
    AND e.occurred_at >= date_trunc('hour', $3::timestamptz, 'UTC') AND e.occurred_at < $3
    AND e.recorded_month BETWEEN $4::date AND $5::date
), saved AS (
  INSERT INTO tenantkit.usage_cuts (tenant_id, metric, cut, hour_total, below)
  SELECT $1, $2, $3, h.total, counted.below FROM h, counted
  WHERE NOT EXISTS (SELECT FROM cached)
  ON CONFLICT (tenant_id, metric, cut) DO UPDATE SET hour_total = EXCLUDED.hour_total, below = EXCLUDED.below
)
SELECT coalesce((SELECT below FROM cached), (SELECT below FROM counted))::float8`

// recordingMonths are the first and last UTC months (as dates) in which an event that occurred in
// [from, to) can have been recorded: billing accepts an occurredAt up to billing.MaxEventSkew after
// and billing.MaxEventAge before the time it is recorded.
func recordingMonths(from, to time.Time) (first, last string) {
	month := func(t time.Time) string {
		t = t.UTC()
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
	}
	return month(from.Add(-billing.MaxEventSkew)), month(to.Add(billing.MaxEventAge))
}

// UsageTotals implements billing.UsageStore on the system path: for each range, whole hours from
// tenantkit.usage_hours, plus the part of To's hour before To, minus the part of From's hour before From
// (belowCut). Every statement of every range goes in one batch, in one transaction: one round trip.
func (db *DB) UsageTotals(ctx context.Context, ranges []billing.UsageRange) ([]float64, error) {
	if len(ranges) == 0 {
		return nil, nil
	}
	type parts struct{ total, upTo, before float64 }
	got := make([]parts, len(ranges))
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for i, r := range ranges {
			p := &got[i]
			b.Queue(hoursTotal, r.TenantID, r.Metric, r.From, r.To).QueryRow(func(row pgx.Row) error { return row.Scan(&p.total) })
			below := func(cut time.Time, q *float64) {
				if cut.Truncate(time.Hour).Equal(cut) {
					return // on the hour: nothing of its hour lies before it
				}
				lo, hi := recordingMonths(cut.Truncate(time.Hour), cut)
				b.Queue(belowCut, r.TenantID, r.Metric, cut, lo, hi).QueryRow(func(row pgx.Row) error { return row.Scan(q) })
			}
			below(r.To, &p.upTo)
			below(r.From, &p.before)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, err
	}
	totals := make([]float64, len(ranges))
	for i, p := range got {
		totals[i] = p.total + (p.upTo - p.before)
	}
	return totals, nil
}

// SaveUsagePeriods implements billing.UsageStore on the system path. A period once closed stays
// closed, at the time it was first.
func (db *DB) SaveUsagePeriods(ctx context.Context, periods []billing.UsagePeriod) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, p := range periods {
			b.Queue(`
				INSERT INTO tenantkit.usage_reports AS r (tenant_id, subscription_id, period_start, period_end, item_id, due,
				  carried_in, reported, reported_at, closed_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $10 THEN now() END)
				ON CONFLICT (tenant_id, subscription_id, period_start) DO UPDATE SET period_end = EXCLUDED.period_end,
				  item_id = EXCLUDED.item_id, due = EXCLUDED.due, carried_in = EXCLUDED.carried_in, reported = EXCLUDED.reported,
				  reported_at = EXCLUDED.reported_at,
				  closed_at = coalesce(r.closed_at, EXCLUDED.closed_at)`,
				p.TenantID, p.SubscriptionID, p.Start, p.End, p.ItemID, p.Due, p.CarriedIn, p.Reported,
				p.ReportedAt, p.Closed)
		}
		return tx.SendBatch(ctx, b).Close()
	})
}

// UsageLimits implements billing.UsageStore on the system path. Pairs whose metric no plan limits
// are dropped first, before the effective plan is looked up.
func (db *DB) UsageLimits(ctx context.Context, keys []billing.TenantMetric) ([]billing.UsageLimit, error) {
	tenants, metrics := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		tenants[i], metrics[i] = k.TenantID, k.Metric
	}
	var out []billing.UsageLimit
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			WITH k AS (
			  SELECT DISTINCT k.tenant_id, k.metric FROM unnest($1::uuid[], $2::text[]) k (tenant_id, metric)
			  WHERE k.metric IN (`+limitedMetrics+`)
			)
			SELECT t.id::text, t.name, k.metric, (p.limits ->> k.metric)::bigint, s.current_period_start, s.current_period_end,
			       coalesce((SELECT u.quantity FROM billing_usage u WHERE u.tenant_id = t.id AND u.metric = k.metric
			                 ORDER BY u.period_start DESC, u.quantity DESC LIMIT 1), 0)::float8
			FROM k
			JOIN tenants t ON t.id = k.tenant_id
			JOIN subscription_plans p ON p.id = tenantkit.effective_plan(t.id)
			LEFT JOIN tenant_subscriptions s ON s.tenant_id = t.id
			WHERE (p.limits ->> k.metric)::bigint > 0
			ORDER BY t.id, k.metric`, uuidArray(tenants), metrics)
		var err error
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.UsageLimit, error) {
			var l billing.UsageLimit
			err := r.Scan(&l.TenantID, &l.TenantName, &l.Metric, &l.Limit, &l.PeriodStart, &l.PeriodEnd, &l.Latest)
			return l, err
		})
		return err
	})
	return out, err
}

// QueueOwnerEmail implements billing.UsageStore on the system path, in one statement (as
// saveDecision queues billing emails): one row per owner with an email address.
func (db *DB) QueueOwnerEmail(ctx context.Context, tenantID string, e billing.Email, unless []string) (bool, error) {
	queued := false
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO tenantkit.email_outbox (tenant_id, to_email, subject, body, dedupe_key)
			SELECT m.tenant_id, u.email, $2, $3, $4
			FROM tenant_users m JOIN auth.users u ON u.id = m.user_id AND u.email IS NOT NULL
			WHERE m.tenant_id = $1 AND m.role = 'owner'
			  AND NOT EXISTS (SELECT FROM tenantkit.email_outbox o WHERE o.dedupe_key = ANY ($5::text[]))
			ON CONFLICT (dedupe_key, to_email) WHERE dedupe_key IS NOT NULL DO NOTHING`,
			tenantID, e.Subject, e.Text, e.DedupeKey, unless)
		queued = tag.RowsAffected() > 0
		return err
	})
	return queued, err
}
