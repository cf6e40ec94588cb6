package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

var _ billing.Store = (*DB)(nil)

var errUnknownTenant = tenantkit.Errorf(tenantkit.Invalid, "the batch names a tenant that does not exist")

// insertUsage appends a batch of events, each once by tenant and idempotency key, in key order
// (concurrent batches would deadlock otherwise), and yields the newly inserted ones as "inserted"
// (counters only count them; gauges compute their UTC hour). xact is the SQL for usage_events.xact: the recording transaction's id for
// counters, which the fold adds to billing_usage later, NULL for gauges. recordCounters and
// recordGauges build on it.
//
// usage_events is partitioned by the UTC month a row is recorded in (recorded_month, now()'s
// month), and its primary key (tenant_id, idempotency_key, recorded_month) keeps a key once per
// month only: an event is also a duplicate when its key is in an earlier month a copy of it could
// have been recorded in. A copy of an event is recorded at or after its occurredAt minus the
// skew billing accepts ($6), so the months from that one on hold every copy of an event whose
// occurredAt the caller gave; an event without one (its occurred_at is the time of each attempt)
// is found in the month before at least ($7: billing.UsageIdempotencyMonths). docs/billing.md
// states the resulting window.
//
// That lookup sees committed rows only. Within $8 seconds of a UTC month's start or end
// (billing.UsageBoundaryWindow, by now(), the clock that picks the partition) each key is first
// claimed in tenantkit.usage_boundary_keys, whose key has no month: an attempt in flight on the
// other side of the month's end holds the claim, this one waits for it to end, and records the
// event only when its own claim went in (migration 00024). batch is NOT MATERIALIZED: the insert
// keeps the plan it had with one reference, and the claim reads the arrays only near a month's end.
func insertUsage(xact string) string {
	return `
WITH batch (tenant_id, idempotency_key, metric, quantity, occurred_at) AS NOT MATERIALIZED (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::numeric[], $5::timestamptz[])
), boundary AS (
  SELECT now() < (m AT TIME ZONE 'UTC') + w OR now() >= ((m + interval '1 month') AT TIME ZONE 'UTC') - w AS near
  FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AS m, $8::float8 * interval '1 second' AS w) x
), claimed AS (
  INSERT INTO tenantkit.usage_boundary_keys AS k (tenant_id, idempotency_key)
  SELECT DISTINCT b.tenant_id, b.idempotency_key FROM batch b WHERE (SELECT near FROM boundary)
  ORDER BY 1, 2
  ON CONFLICT DO NOTHING
  RETURNING k.tenant_id, k.idempotency_key
), inserted AS (
  INSERT INTO tenantkit.usage_events AS e (tenant_id, idempotency_key, metric, quantity, occurred_at, xact)
  SELECT b.tenant_id, b.idempotency_key, b.metric, b.quantity, b.occurred_at, ` + xact + ` FROM batch b
  WHERE NOT EXISTS (
    SELECT FROM tenantkit.usage_events p
    WHERE p.tenant_id = b.tenant_id AND p.idempotency_key = b.idempotency_key
      AND p.recorded_month < date_trunc('month', now() AT TIME ZONE 'UTC')::date
      AND p.recorded_month >= least(date_trunc('month', (b.occurred_at - $6::float8 * interval '1 second') AT TIME ZONE 'UTC'),
                                    date_trunc('month', now() AT TIME ZONE 'UTC') - $7::int * interval '1 month')::date)
    AND (NOT (SELECT near FROM boundary)
         OR EXISTS (SELECT FROM claimed c WHERE c.tenant_id = b.tenant_id AND c.idempotency_key = b.idempotency_key))
  ORDER BY b.tenant_id, b.idempotency_key
  ON CONFLICT (tenant_id, idempotency_key, recorded_month) DO NOTHING
  RETURNING e.tenant_id, e.metric, e.quantity, e.occurred_at
)`
}

// recordCounters appends counter events marked with their transaction's id and writes no counter:
// tenantkit.fold_usage adds them to billing_usage off the request path, and every reader adds the
// events it has not reached yet (migration 00029, docs/schema.md "Usage storage").
var recordCounters = insertUsage("pg_current_xact_id()") + `
SELECT count(*) FROM inserted`

// recordGauges keeps, per tenant, metric and hour, the latest observation (slot 0); an older
// observation arriving late changes nothing.
var recordGauges = insertUsage("NULL") + `, latest AS (
  SELECT DISTINCT ON (tenant_id, metric, period_start) *
  FROM (SELECT i.*, date_trunc('hour', i.occurred_at, 'UTC') AS period_start FROM inserted i) i
  ORDER BY tenant_id, metric, period_start, occurred_at DESC
), set AS (
  INSERT INTO billing_usage AS u (tenant_id, metric, period_start, period_end, slot, quantity, observed_at)
  SELECT tenant_id, metric, period_start, period_start + interval '1 hour', 0, quantity, occurred_at
  FROM latest
  ORDER BY tenant_id, metric, period_start
  ON CONFLICT (tenant_id, metric, period_start, slot) DO UPDATE
    SET quantity = EXCLUDED.quantity, observed_at = EXCLUDED.observed_at, updated_at = now()
    WHERE u.observed_at IS NULL OR u.observed_at < EXCLUDED.observed_at
  RETURNING 1
)
SELECT count(*) FROM inserted`

// Customer implements billing.Store.
func (db *DB) Customer(ctx context.Context, tenantID string) (name, customer string, err error) {
	err = db.WithSystem(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `
			SELECT t.name, coalesce(s.stripe_customer_id, '')
			FROM tenants t LEFT JOIN tenant_subscriptions s ON s.tenant_id = t.id
			WHERE t.id = $1 AND t.deleted_at IS NULL`, tenantID).Scan(&name, &customer)
	})
	return name, customer, err
}

// SetCustomer implements billing.Store. A tenant without a subscription row gets one on the
// default plan, trialing, so that the customer has a place to live.
func (db *DB) SetCustomer(ctx context.Context, tenantID, customer string) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO tenant_subscriptions (tenant_id, plan_id, status, stripe_customer_id)
			SELECT $1, id, 'trialing', $2 FROM subscription_plans WHERE is_default
			ON CONFLICT (tenant_id) DO UPDATE SET stripe_customer_id = EXCLUDED.stripe_customer_id
			WHERE tenant_subscriptions.stripe_customer_id IS NULL`, tenantID, customer)
		return err
	})
}

const planPriceColumns = `id::text, key, name, unit_amount, currency, "interval", coalesce(stripe_product_id, ''),
	coalesce(stripe_price_id, ''), coalesce(api_calls_unit_amount::text, ''), coalesce(stripe_api_calls_price_id, ''), per_seat`

func scanPlanPrice(r pgx.CollectableRow) (billing.PlanPrice, error) {
	var p billing.PlanPrice
	err := r.Scan(&p.ID, &p.Key, &p.Name, &p.UnitAmount, &p.Currency, &p.Interval, &p.ProductID, &p.PriceID,
		&p.APICallsUnitAmount, &p.APICallsPriceID, &p.PerSeat)
	return p, err
}

// MemberCount implements billing.Store.
func (db *DB) MemberCount(ctx context.Context, tenantID string) (int64, error) {
	var n int64
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, tenantID).Scan(&n)
	})
	return n, err
}

// PlanPrices implements billing.Store.
func (db *DB) PlanPrices(ctx context.Context) ([]billing.PlanPrice, error) {
	var plans []billing.PlanPrice
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		// A free plan is never a Stripe price: tenants on it have no subscription.
		rows, _ := tx.Query(ctx, `SELECT `+planPriceColumns+` FROM subscription_plans WHERE is_active AND unit_amount > 0 ORDER BY sort_order, key`)
		var err error
		plans, err = pgx.CollectRows(rows, scanPlanPrice)
		return err
	})
	return plans, err
}

// PlanPrice implements billing.Store.
func (db *DB) PlanPrice(ctx context.Context, planID string) (billing.PlanPrice, error) {
	var p billing.PlanPrice
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+planPriceColumns+` FROM subscription_plans WHERE is_active AND id = $1`, planID)
		var err error
		p, err = pgx.CollectExactlyOneRow(rows, scanPlanPrice)
		return err
	})
	if tenantkit.ErrorCode(err) == tenantkit.NotFound {
		return p, tenantkit.Errorf(tenantkit.NotFound, "plan not found")
	}
	return p, err
}

// StripeSubscription implements billing.Store.
func (db *DB) StripeSubscription(ctx context.Context, tenantID string) (id, status string, err error) {
	err = db.WithSystem(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT coalesce(stripe_subscription_id, ''), status::text
			FROM tenant_subscriptions WHERE tenant_id = $1`, tenantID).Scan(&id, &status)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if id == "" {
		status = ""
	}
	return id, status, err
}

// RecordIntent implements billing.Store.
func (db *DB) RecordIntent(ctx context.Context, subscriptionID, intent string) (seq int64, err error) {
	err = db.WithSystem(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO tenantkit.stripe_intents (subscription_id, intent) VALUES ($1, $2)
			RETURNING id`, subscriptionID, intent).Scan(&seq)
	})
	return seq, err
}

// PlansOfPrices implements billing.Store: every price ever linked to a plan (tenantkit.plan_prices,
// licensed and metered) and the plans' current prices.
func (db *DB) PlansOfPrices(ctx context.Context, priceIDs []string) (map[string]string, error) {
	plans := map[string]string{}
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			SELECT price_id, plan_id::text FROM tenantkit.plan_prices WHERE price_id = ANY ($1)
			UNION
			SELECT stripe_price_id, id::text FROM subscription_plans WHERE stripe_price_id = ANY ($1)
			UNION
			SELECT stripe_api_calls_price_id, id::text FROM subscription_plans WHERE stripe_api_calls_price_id = ANY ($1)`, priceIDs)
		var price, plan string
		_, err := pgx.ForEachRow(rows, []any{&price, &plan}, func() error {
			plans[price] = plan
			return nil
		})
		return err
	})
	return plans, err
}

// LinkPlan implements billing.Store.
func (db *DB) LinkPlan(ctx context.Context, planID, productID, priceID, meteredPriceID string) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		// Prices replaced by newer ones stay known: subscriptions billed at them keep their plan.
		_, err := tx.Exec(ctx, `
			WITH linked AS (
			  UPDATE subscription_plans SET stripe_product_id = $2, stripe_price_id = $3,
			    stripe_api_calls_price_id = nullif($4, '') WHERE id = $1 RETURNING id)
			INSERT INTO tenantkit.plan_prices (price_id, plan_id, metered)
			SELECT price, id, metered FROM linked, (VALUES ($3, false), (nullif($4, ''), true)) v (price, metered)
			WHERE price IS NOT NULL
			ON CONFLICT (price_id) DO NOTHING`, planID, productID, priceID, meteredPriceID)
		return err
	})
}

// KnownTenants implements billing.Store.
func (db *DB) KnownTenants(ctx context.Context, ids []string) (map[string]bool, error) {
	known := map[string]bool{}
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT id::text FROM tenants WHERE id = ANY ($1::uuid[])`, uuidArray(ids))
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, id := range found {
			known[id] = true
		}
		return err
	})
	return known, err
}

// lockUsageTenants locks the batch's distinct tenants FOR KEY SHARE, in id order, and says whether
// all of them exist. It stands in for a foreign key on usage_events (migration 00021): one
// set-based lock instead of a check and a lock per event; a tenant cannot be deleted while the
// batch's transaction holds it, and deleting one deletes its events (tenantkit.delete_usage_events).
// It also checks the usage fold's watermark (tenantkit.usage_fold_valid, migration 00031): after a
// logical copy into another server nothing is recorded below it, where no reader would see it.
// And it reads which of the batch's distinct metrics ($3) some plan limits (limitedMetrics), in
// the same round trip.
// The tenants are the counters' ($1) and the gauges' ($2), as the statements that record them get
// them.
const lockUsageTenants = `
WITH ids AS (
  SELECT DISTINCT id FROM unnest($1::uuid[] || $2::uuid[]) AS b (id)
), locked AS (
  SELECT t.id FROM tenants t JOIN ids USING (id) ORDER BY t.id FOR KEY SHARE OF t
)
SELECT (SELECT count(*) FROM locked) = (SELECT count(*) FROM ids)
  AND (SELECT tenantkit.usage_fold_valid(f.watermark) FROM tenantkit.usage_fold f),
  ARRAY(SELECT m FROM unnest($3::text[]) m WHERE m IN (` + limitedMetrics + `) ORDER BY m)`

// limitedMetrics is the metrics whose limit in some plan is a number above zero: the only ones
// usage alerts are about (billing.UsageLimit).
const limitedMetrics = `SELECT l.key FROM subscription_plans p, jsonb_each_text(p.limits) l WHERE l.value::bigint > 0`

// RecordUsage implements billing.Store on the system path (events come from trusted backends).
func (db *DB) RecordUsage(ctx context.Context, events []billing.UsageEvent) (int, []string, error) {
	if len(events) == 0 {
		return 0, nil, nil
	}
	type columns struct {
		tenants, keys, metrics []string
		quantities             []float64
		times                  []time.Time
		ids                    any // tenants as the uuid[] parameter (uuidArray), parsed once
	}
	var counters, gauges columns
	var metrics []string // the batch's distinct metrics
	seen := map[string]bool{}
	for _, e := range events {
		c := &counters
		if billing.Gauges[e.Metric] {
			c = &gauges
		}
		c.tenants = append(c.tenants, e.TenantID)
		c.keys = append(c.keys, e.IdempotencyKey)
		c.metrics = append(c.metrics, e.Metric)
		c.quantities = append(c.quantities, e.Quantity)
		c.times = append(c.times, e.OccurredAt)
		if !seen[e.Metric] {
			seen[e.Metric] = true
			metrics = append(metrics, e.Metric)
		}
	}
	counters.ids, gauges.ids = uuidArray(counters.tenants), uuidArray(gauges.tenants)
	recorded := 0
	var limited []string
	record := func(tx pgx.Tx) error {
		recorded = 0
		var known bool
		if err := tx.QueryRow(ctx, lockUsageTenants, counters.ids, gauges.ids, metrics).Scan(&known, &limited); err != nil {
			return err
		}
		if !known {
			return errUnknownTenant
		}
		// Always counters first, then gauges: a fixed order, so concurrent batches never take each
		// other's locks in opposite orders.
		for _, st := range []struct {
			sql string
			c   *columns
		}{{recordCounters, &counters}, {recordGauges, &gauges}} {
			sql, c := st.sql, st.c
			if len(c.keys) == 0 {
				continue
			}
			var n int
			if err := tx.QueryRow(ctx, sql, c.ids, c.keys, c.metrics, c.quantities, c.times,
				billing.MaxEventSkew.Seconds(), billing.UsageIdempotencyMonths, db.usageBoundaryWindow().Seconds()).Scan(&n); err != nil {
				var pe *pgconn.PgError
				if errors.As(err, &pe) && pe.Code == "23503" {
					return errUnknownTenant
				}
				return err
			}
			recorded += n
		}
		return nil
	}
	err := db.WithSystem(ctx, record)
	var created error
	for try := 0; try < partitionTries && isNoPartition(err); try++ {
		// This month's partition is missing (the maintenance job creates it ahead; it has not
		// run): create it (or let a concurrent batch do so), and record the batch again, on
		// another connection (db.in closes one whose insert found no partition).
		created = db.ensureCurrentUsagePartition(ctx)
		err = db.WithSystem(ctx, record)
	}
	if isNoPartition(err) {
		err = &tenantkit.Error{Code: tenantkit.Unavailable, Err: errors.Join(created, err),
			Message: "usage cannot be recorded until this month's partition exists (tenantkit maintenance run creates it): try again later"}
	}
	if err != nil {
		return 0, nil, err
	}
	return recorded, limited, nil
}

// callerUsageHours is tenant $1's hourly usage rows as the caller may read them under RLS: its
// billing_usage rows and the events not folded into them yet (tenantkit.caller_unfolded_usage),
// read in one statement. The usage query and the export's usage section read through it.
const callerUsageHours = `(
  SELECT metric, period_start, period_end, quantity, observed_at FROM billing_usage WHERE tenant_id = $1
  UNION ALL
  SELECT metric, period_start, period_start + interval '1 hour', quantity, NULL FROM tenantkit.caller_unfolded_usage($1))`

// Usage implements billing.Store under RLS: members of the tenant read its usage (callerUsageHours).
func (db *DB) Usage(ctx context.Context, s tenantkit.Session, tenantID string, from, to time.Time, granularity string) ([]billing.UsageTotal, error) {
	gauges := make([]string, 0, len(billing.Gauges))
	for g := range billing.Gauges {
		gauges = append(gauges, g)
	}
	var totals []billing.UsageTotal
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			SELECT metric, date_trunc($4, period_start, 'UTC') AS p,
			       CASE WHEN metric = ANY ($5::text[]) THEN max(quantity) ELSE sum(quantity) END::float8
			FROM `+callerUsageHours+` u
			WHERE period_start >= $2 AND period_start < $3
			GROUP BY metric, p
			ORDER BY metric, p`, tenantID, from, to, granularity, gauges)
		var err error
		totals, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.UsageTotal, error) {
			var t billing.UsageTotal
			err := r.Scan(&t.Metric, &t.PeriodStart, &t.Quantity)
			t.PeriodStart = t.PeriodStart.UTC()
			switch granularity {
			case "hour":
				t.PeriodEnd = t.PeriodStart.Add(time.Hour)
			case "day":
				t.PeriodEnd = t.PeriodStart.AddDate(0, 0, 1)
			default:
				t.PeriodEnd = t.PeriodStart.AddDate(0, 1, 0)
			}
			return t, err
		})
		return err
	})
	return totals, err
}

// Metrics implements billing.Store on the system path. Recurring groups the subscriptions
// Stripe bills (billing.BilledStatuses), every one of them once, whatever tenant row points at it,
// by the price terms stored from Stripe's events.
func (db *DB) Metrics(ctx context.Context, now time.Time) (billing.Metrics, error) {
	var m billing.Metrics
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			SELECT (SELECT count(*) FROM tenants WHERE deleted_at IS NULL),
			       live.active, live.trialing, live.past_due,
			       (SELECT count(DISTINCT m.user_id) FROM tenant_users m JOIN tenants t ON t.id = m.tenant_id AND t.deleted_at IS NULL),
			       (SELECT count(*) FROM tenants WHERE deleted_at IS NULL AND created_at > $1::timestamptz - interval '30 days'),
			       (SELECT count(*) FROM tenant_subscriptions t JOIN tenantkit.stripe_subscriptions s ON s.id = t.stripe_subscription_id
			        WHERE s.status IN ('canceled', 'incomplete_expired')
			          AND s.ended_at > $1::timestamptz - interval '30 days' AND s.ended_at <= $1::timestamptz),
			       (SELECT coalesce(avg(extract(epoch FROM $1::timestamptz - created_at)) / 86400, 0)::float8 FROM tenants
			        WHERE deleted_at IS NULL),
			       (SELECT count(*) FROM tenantkit.stripe_subscriptions
			        WHERE status::text = ANY ($2) AND (unit_amount IS NULL OR currency IS NULL OR "interval" IS NULL))
			FROM (SELECT count(*) FILTER (WHERE s.status = 'active') AS active,
			             count(*) FILTER (WHERE s.status = 'trialing'
			                              AND (s.stripe_subscription_id IS NOT NULL OR s.trial_ends_at > $1::timestamptz)) AS trialing,
			             count(*) FILTER (WHERE s.status = 'past_due') AS past_due
			      FROM tenant_subscriptions s JOIN tenants t ON t.id = s.tenant_id AND t.deleted_at IS NULL) live`,
			now, billing.BilledStatuses).Scan(&m.TenantsTotal, &m.TenantsActive, &m.TenantsTrialing, &m.TenantsPastDue, &m.UsersTotal,
			&m.TenantsCreated30d, &m.TenantsChurned30d, &m.AverageTenantAgeDays, &m.UnpricedSubscriptions)
		if err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `
			SELECT currency, "interval", coalesce(interval_count, 1)::bigint, sum(unit_amount * quantity)::float8, count(*)::int
			FROM tenantkit.stripe_subscriptions
			WHERE status::text = ANY ($1) AND unit_amount IS NOT NULL AND currency IS NOT NULL AND "interval" IS NOT NULL
			GROUP BY 1, 2, 3
			ORDER BY 1, 2, 3`, billing.BilledStatuses)
		m.Recurring, err = pgx.CollectRows(rows, pgx.RowToStructByPos[billing.Recurring])
		return err
	})
	return m, err
}

// CheckPlan reports a clear error when no active plan has the key (a misconfigured TRIAL_PLAN).
func (db *DB) CheckPlan(ctx context.Context, key string) error {
	var ok bool
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM subscription_plans WHERE key = $1 AND is_active)`, key).Scan(&ok)
	})
	if err == nil && !ok {
		err = fmt.Errorf("no active plan has the key %q (see subscription_plans)", key)
	}
	return err
}
