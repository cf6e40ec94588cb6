package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

// errFetch rolls back a transaction whose decision needs a fresher state from Stripe.
var errFetch = errors.New("decision needs the subscription fetched")

// ApplyStripeEvent implements billing.Store on the system path. It translates and stores; every
// decision is billing.Decide's. Three round trips inside the transaction: record the event and find
// its tenant; lock the tenant and load its state (a batch); save the decision (a batch).
func (db *DB) ApplyStripeEvent(ctx context.Context, ev billing.StripeEvent, decide func(billing.Account, billing.Catalog) billing.Decision) (billing.Decision, error) {
	var d billing.Decision
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		fresh, tenant, err := recordEvent(ctx, tx, ev)
		switch {
		case err != nil:
			return err
		case !fresh:
			d = billing.Decision{Outcome: billing.Duplicate}
			return nil
		case tenant == "":
			d = billing.Decision{Outcome: unlinkedOutcome(ev)}
			return nil
		}
		a, cat, err := lockAccount(ctx, tx, tenant, ev)
		if err != nil {
			return err
		}
		d = decide(a, cat)
		if d.NeedFetch != "" {
			return errFetch
		}
		return saveDecision(ctx, tx, ev.ID, a, d)
	})
	if errors.Is(err, errFetch) {
		return d, nil
	}
	if err != nil && tenantkit.ErrorCode(translate(err)) == tenantkit.Invalid {
		return d, &tenantkit.Error{Code: tenantkit.Internal, Message: "unexpected Stripe subscription", Err: err}
	}
	return d, err
}

// unlinkedOutcome is the outcome of an event that names no tenant of ours.
func unlinkedOutcome(ev billing.StripeEvent) string {
	if ev.Subscription == nil && ev.Invoice == nil && ev.Checkout == nil && ev.Snapshot == nil {
		return billing.Ignored
	}
	return billing.NotOurs
}

// recordEvent records the event id (fresh: the first time) and finds the tenant it is about through
// the ids tenantkit created or recorded: a subscription it linked, else the customer it created for
// the tenant ("" when none: the event is then recorded with its final outcome at once). A linked
// event is recorded as applied, the most common outcome; saveDecision corrects it when not.
func recordEvent(ctx context.Context, tx pgx.Tx, ev billing.StripeEvent) (fresh bool, tenant string, err error) {
	subscription, customer := ev.Subject()
	var t *string
	err = tx.QueryRow(ctx, `
		WITH t AS (
		  SELECT tenant_id FROM (
		    SELECT tenant_id, 1 AS o FROM tenantkit.stripe_subscriptions WHERE id = nullif($4, '')
		    UNION ALL
		    SELECT tenant_id, 2 FROM tenant_subscriptions WHERE stripe_customer_id = nullif($5, '')
		  ) x ORDER BY o LIMIT 1
		), recorded AS (
		  INSERT INTO tenantkit.stripe_events (id, type, created, outcome)
		  SELECT $1, $2, $3, CASE WHEN NOT EXISTS (SELECT 1 FROM t) THEN $6 ELSE $7 END
		  ON CONFLICT (id) DO NOTHING
		  RETURNING 1
		)
		SELECT EXISTS (SELECT 1 FROM recorded), (SELECT tenant_id::text FROM t)`,
		ev.ID, ev.Type, ev.Created, subscription, customer, unlinkedOutcome(ev), billing.Applied).Scan(&fresh, &t)
	if t != nil {
		tenant = *t
	}
	return fresh, tenant, err
}

const knownColumns = `id, customer_id, status::text, coalesce(plan_id::text, ''), coalesce(price_id, ''), quantity,
	coalesce(usage_item_id, ''), created, coalesce(current_period_start, 'epoch'), coalesce(current_period_end, 'epoch'),
	trial_end, cancel_at_period_end, cancel_at, canceled_at, ended_at, coalesce(event_at, 'epoch'), coalesce(event_id, ''),
	unit_amount::float8, coalesce(currency, ''), coalesce("interval", ''), coalesce(interval_count, 0)`

// knownFields are the destinations of knownColumns.
func knownFields(k *billing.Known) []any {
	return []any{&k.ID, &k.CustomerID, &k.Status, &k.PlanID, &k.PriceID, &k.Quantity,
		&k.UsageItemID, &k.Created, &k.CurrentPeriodStart, &k.CurrentPeriodEnd, &k.TrialEnd, &k.CancelAtPeriodEnd,
		&k.CancelAt, &k.CanceledAt, &k.EndedAt, &k.EventAt, &k.EventID,
		&k.UnitAmount, &k.Currency, &k.Interval, &k.IntervalCount}
}

// unepochKnown turns the zero times knownColumns reads as the epoch back into zero times.
func unepochKnown(k *billing.Known) {
	k.CurrentPeriodStart, k.CurrentPeriodEnd, k.EventAt = unepoch(k.CurrentPeriodStart), unepoch(k.CurrentPeriodEnd), unepoch(k.EventAt)
}

// lockAccount locks the tenant's subscription row and loads its billing state, and the plans of
// the prices and plan hints the event names, in one round trip.
func lockAccount(ctx context.Context, tx pgx.Tx, tenant string, ev billing.StripeEvent) (billing.Account, billing.Catalog, error) {
	a := billing.Account{TenantID: tenant, Subscriptions: map[string]billing.Known{}}
	cat := billing.Catalog{PlanOfPrice: map[string]string{}, Plans: map[string]bool{}, PerSeat: map[string]bool{}}
	var prices, hints []string
	for _, s := range []*billing.Subscription{ev.Subscription, ev.Fetched} {
		if s != nil {
			prices, hints = append(prices, s.PriceID), append(hints, s.PlanID)
		}
	}
	b := &pgx.Batch{}
	b.Queue(`
		SELECT t.name, coalesce(s.stripe_customer_id, ''), coalesce(s.stripe_subscription_id, ''), s.plan_id::text
		FROM tenant_subscriptions s JOIN tenants t ON t.id = s.tenant_id
		WHERE s.tenant_id = $1
		FOR UPDATE OF s`, tenant).QueryRow(func(row pgx.Row) error {
		return row.Scan(&a.TenantName, &a.CustomerID, &a.Current, &a.PlanID)
	})
	// A statement of its own, after the lock: it sees a deletion committed while this waited for
	// the lock (a deletion locks the same row first). With the members, and the per-seat plans.
	b.Queue(`SELECT deleted_at, (SELECT count(*) FROM tenant_users WHERE tenant_id = $1),
		  ARRAY(SELECT id::text FROM subscription_plans WHERE per_seat)
		FROM tenants WHERE id = $1`, tenant).QueryRow(func(row pgx.Row) error {
		var perSeat []string
		err := row.Scan(&a.DeletedAt, &a.Members, &perSeat)
		for _, p := range perSeat {
			cat.PerSeat[p] = true
		}
		return err
	})
	b.Queue(`SELECT `+knownColumns+` FROM tenantkit.stripe_subscriptions WHERE tenant_id = $1`, tenant).Query(func(rows pgx.Rows) error {
		var k billing.Known
		_, err := pgx.ForEachRow(rows, knownFields(&k), func() error {
			unepochKnown(&k)
			a.Subscriptions[k.ID] = k
			k = billing.Known{}
			return nil
		})
		return err
	})
	// Every price ever linked to a plan (a replaced price keeps its plan), and the hinted plans;
	// nothing to look up for an event that carries no subscription.
	if len(prices) == 0 {
		return a, cat, tx.SendBatch(ctx, b).Close()
	}
	b.Queue(`
		SELECT price_id, plan_id::text FROM tenantkit.plan_prices WHERE NOT metered AND price_id = ANY ($1)
		UNION
		SELECT stripe_price_id, id::text FROM subscription_plans WHERE stripe_price_id = ANY ($1)
		UNION ALL
		SELECT NULL, id::text FROM subscription_plans WHERE id::text = ANY ($2)`, prices, hints).Query(func(rows pgx.Rows) error {
		var price *string
		var plan string
		_, err := pgx.ForEachRow(rows, []any{&price, &plan}, func() error {
			if price != nil {
				cat.PlanOfPrice[*price] = plan
			} else {
				cat.Plans[plan] = true
			}
			return nil
		})
		return err
	})
	return a, cat, tx.SendBatch(ctx, b).Close()
}

func unepoch(t time.Time) time.Time {
	if t.Unix() == 0 {
		return time.Time{}
	}
	return t.UTC()
}

func zeroNull(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// saveDecision stores the subscription, projects the current one onto the tenant's row, queues the
// emails to the tenant's owners (at most once per dedupe key and owner) and records the outcome,
// in one round trip.
func saveDecision(ctx context.Context, tx pgx.Tx, eventID string, before billing.Account, d billing.Decision) error {
	b := &pgx.Batch{}
	if k := d.Save; k != nil {
		b.Queue(`
			INSERT INTO tenantkit.stripe_subscriptions AS s (id, tenant_id, customer_id, status, plan_id, price_id, quantity,
			  usage_item_id, created, current_period_start, current_period_end, trial_end, cancel_at_period_end, cancel_at,
			  canceled_at, ended_at, event_at, event_id, unit_amount, currency, "interval", interval_count)
			VALUES ($1, $2, $3, $4, nullif($5, '')::uuid, nullif($6, ''), $7, nullif($8, ''), $9, $10, $11, $12, $13, $14, $15, $16, $17, nullif($18, ''),
			  $19, nullif($20, ''), nullif($21, ''), nullif($22, 0))
			ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, plan_id = EXCLUDED.plan_id, price_id = EXCLUDED.price_id,
			  quantity = EXCLUDED.quantity, usage_item_id = EXCLUDED.usage_item_id, created = EXCLUDED.created,
			  current_period_start = EXCLUDED.current_period_start, current_period_end = EXCLUDED.current_period_end,
			  trial_end = EXCLUDED.trial_end, cancel_at_period_end = EXCLUDED.cancel_at_period_end, cancel_at = EXCLUDED.cancel_at,
			  canceled_at = EXCLUDED.canceled_at, ended_at = EXCLUDED.ended_at, event_at = EXCLUDED.event_at,
			  event_id = EXCLUDED.event_id, unit_amount = EXCLUDED.unit_amount, currency = EXCLUDED.currency,
			  "interval" = EXCLUDED."interval", interval_count = EXCLUDED.interval_count, updated_at = now()`,
			k.ID, before.TenantID, k.CustomerID, k.Status, k.PlanID, k.PriceID, k.Quantity, k.UsageItemID, k.Created,
			zeroNull(k.CurrentPeriodStart), zeroNull(k.CurrentPeriodEnd), k.TrialEnd, k.CancelAtPeriodEnd, k.CancelAt,
			k.CanceledAt, k.EndedAt, zeroNull(k.EventAt), k.EventID, k.UnitAmount, k.Currency, k.Interval, k.IntervalCount)
	}
	if d.Changed {
		c := d.Account.Subscriptions[d.Account.Current]
		b.Queue(`
			UPDATE tenant_subscriptions SET
			  status = $2::subscription_status, plan_id = $3::uuid,
			  stripe_subscription_id = $4, stripe_price_id = nullif($5, ''), stripe_quantity = $6,
			  stripe_usage_item_id = nullif($7, ''), current_period_start = $8, current_period_end = $9, trial_ends_at = $10,
			  cancel_at_period_end = $11, cancel_at = $12, canceled_at = $13,
			  stripe_event_at = $14, stripe_event_id = nullif($15, '')
			WHERE tenant_id = $1::uuid`,
			before.TenantID, c.Status, d.Account.PlanID, c.ID, c.PriceID, c.Quantity, c.UsageItemID,
			zeroNull(c.CurrentPeriodStart), zeroNull(c.CurrentPeriodEnd), c.TrialEnd, c.CancelAtPeriodEnd, c.CancelAt, c.CanceledAt,
			zeroNull(c.EventAt), c.EventID)
	}
	for _, e := range d.Emails {
		b.Queue(`
			INSERT INTO tenantkit.email_outbox (tenant_id, to_email, subject, body, dedupe_key)
			SELECT m.tenant_id, u.email, $2, $3, $4
			FROM tenant_users m JOIN auth.users u ON u.id = m.user_id AND u.email IS NOT NULL
			WHERE m.tenant_id = $1 AND m.role = 'owner'
			ON CONFLICT (dedupe_key, to_email) WHERE dedupe_key IS NOT NULL DO NOTHING`,
			before.TenantID, e.Subject, e.Text, e.DedupeKey)
	}
	if d.Outcome != billing.Applied { // recorded as applied (recordEvent)
		b.Queue(`UPDATE tenantkit.stripe_events SET outcome = $2 WHERE id = $1`, eventID, d.Outcome)
	}
	if d.SyncSeats { // after the tenant's row: bump_seats reads its plan and subscription
		b.Queue(`SELECT tenantkit.bump_seats($1)`, before.TenantID)
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
	}
	return queueWrites(ctx, tx, d.Writes)
}
