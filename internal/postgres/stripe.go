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
// decision is billing.Decide's.
func (db *DB) ApplyStripeEvent(ctx context.Context, ev billing.StripeEvent, decide func(billing.Account, billing.Catalog) billing.Decision) (billing.Decision, error) {
	var d billing.Decision
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO tenantkit.stripe_events (id, type, created) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO NOTHING`, ev.ID, ev.Type, ev.Created)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			d = billing.Decision{Outcome: billing.Duplicate}
			return nil
		}
		tenant, err := eventTenant(ctx, tx, ev)
		if err != nil {
			return err
		}
		if tenant == "" {
			d = billing.Decision{Outcome: billing.NotOurs}
			if ev.Subscription == nil && ev.Invoice == nil && ev.Checkout == nil {
				d.Outcome = billing.Ignored
			}
			return recordOutcome(ctx, tx, ev.ID, d.Outcome)
		}
		a, err := lockAccount(ctx, tx, tenant)
		if err != nil {
			return err
		}
		cat, err := catalog(ctx, tx)
		if err != nil {
			return err
		}
		d = decide(a, cat)
		if d.NeedFetch != "" {
			return errFetch
		}
		if err := saveDecision(ctx, tx, a, d); err != nil {
			return err
		}
		return recordOutcome(ctx, tx, ev.ID, d.Outcome)
	})
	if errors.Is(err, errFetch) {
		return d, nil
	}
	if err != nil && tenantkit.ErrorCode(translate(err)) == tenantkit.Invalid {
		return d, &tenantkit.Error{Code: tenantkit.Internal, Message: "unexpected Stripe subscription", Err: err}
	}
	return d, err
}

func recordOutcome(ctx context.Context, tx pgx.Tx, id, outcome string) error {
	_, err := tx.Exec(ctx, `UPDATE tenantkit.stripe_events SET outcome = $2 WHERE id = $1`, id, outcome)
	return err
}

// eventTenant finds the tenant an event is about through the ids tenantkit created or recorded: a
// subscription it linked, else the customer it created for the tenant. "" when none.
func eventTenant(ctx context.Context, tx pgx.Tx, ev billing.StripeEvent) (string, error) {
	var subscription, customer string
	switch {
	case ev.Subscription != nil:
		subscription, customer = ev.Subscription.ID, ev.Subscription.CustomerID
	case ev.Invoice != nil:
		subscription, customer = ev.Invoice.SubscriptionID, ev.Invoice.CustomerID
	case ev.Checkout != nil:
		subscription, customer = ev.Checkout.SubscriptionID, ev.Checkout.CustomerID
	default:
		return "", nil
	}
	var tenant string
	err := tx.QueryRow(ctx, `
		SELECT tenant_id::text FROM (
		  SELECT tenant_id, 1 AS o FROM tenantkit.stripe_subscriptions WHERE id = nullif($1, '')
		  UNION ALL
		  SELECT tenant_id, 2 FROM tenant_subscriptions WHERE stripe_customer_id = nullif($2, '')
		) t ORDER BY o LIMIT 1`, subscription, customer).Scan(&tenant)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return tenant, err
}

const knownColumns = `id, customer_id, status::text, coalesce(plan_id::text, ''), coalesce(price_id, ''), quantity,
	coalesce(usage_item_id, ''), created, coalesce(current_period_start, 'epoch'), coalesce(current_period_end, 'epoch'),
	trial_end, cancel_at_period_end, cancel_at, canceled_at, ended_at, coalesce(event_at, 'epoch'), coalesce(event_id, '')`

// lockAccount locks the tenant's subscription row and loads its billing state.
func lockAccount(ctx context.Context, tx pgx.Tx, tenant string) (billing.Account, error) {
	a := billing.Account{TenantID: tenant, Subscriptions: map[string]billing.Known{}}
	err := tx.QueryRow(ctx, `
		SELECT t.name, coalesce(s.stripe_customer_id, ''), coalesce(s.stripe_subscription_id, ''), s.plan_id::text
		FROM tenant_subscriptions s JOIN tenants t ON t.id = s.tenant_id
		WHERE s.tenant_id = $1
		FOR UPDATE OF s`, tenant).Scan(&a.TenantName, &a.CustomerID, &a.Current, &a.PlanID)
	if err != nil {
		return a, err
	}
	rows, _ := tx.Query(ctx, `SELECT `+knownColumns+` FROM tenantkit.stripe_subscriptions WHERE tenant_id = $1`, tenant)
	var k billing.Known
	_, err = pgx.ForEachRow(rows, []any{&k.ID, &k.CustomerID, &k.Status, &k.PlanID, &k.PriceID, &k.Quantity,
		&k.UsageItemID, &k.Created, &k.CurrentPeriodStart, &k.CurrentPeriodEnd, &k.TrialEnd, &k.CancelAtPeriodEnd,
		&k.CancelAt, &k.CanceledAt, &k.EndedAt, &k.EventAt, &k.EventID}, func() error {
		k.CurrentPeriodStart, k.CurrentPeriodEnd, k.EventAt = unepoch(k.CurrentPeriodStart), unepoch(k.CurrentPeriodEnd), unepoch(k.EventAt)
		a.Subscriptions[k.ID] = k
		return nil
	})
	return a, err
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

// catalog loads every price ever linked to a plan, and the plans.
func catalog(ctx context.Context, tx pgx.Tx) (billing.Catalog, error) {
	cat := billing.Catalog{PlanOfPrice: map[string]string{}, Plans: map[string]bool{}}
	rows, _ := tx.Query(ctx, `
		SELECT p.id::text, pp.price_id FROM subscription_plans p
		LEFT JOIN (SELECT plan_id, price_id FROM tenantkit.plan_prices WHERE NOT metered
		           UNION SELECT id, stripe_price_id FROM subscription_plans WHERE stripe_price_id IS NOT NULL) pp
		  ON pp.plan_id = p.id`)
	var plan string
	var price *string
	_, err := pgx.ForEachRow(rows, []any{&plan, &price}, func() error {
		cat.Plans[plan] = true
		if price != nil {
			cat.PlanOfPrice[*price] = plan
		}
		return nil
	})
	return cat, err
}

// saveDecision stores the subscription, projects the current one onto the tenant's row and queues
// the emails to the tenant's owners.
func saveDecision(ctx context.Context, tx pgx.Tx, before billing.Account, d billing.Decision) error {
	if k := d.Save; k != nil {
		_, err := tx.Exec(ctx, `
			INSERT INTO tenantkit.stripe_subscriptions AS s (id, tenant_id, customer_id, status, plan_id, price_id, quantity,
			  usage_item_id, created, current_period_start, current_period_end, trial_end, cancel_at_period_end, cancel_at,
			  canceled_at, ended_at, event_at, event_id)
			VALUES ($1, $2, $3, $4, nullif($5, '')::uuid, nullif($6, ''), $7, nullif($8, ''), $9, $10, $11, $12, $13, $14, $15, $16, $17, nullif($18, ''))
			ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, plan_id = EXCLUDED.plan_id, price_id = EXCLUDED.price_id,
			  quantity = EXCLUDED.quantity, usage_item_id = EXCLUDED.usage_item_id, created = EXCLUDED.created,
			  current_period_start = EXCLUDED.current_period_start, current_period_end = EXCLUDED.current_period_end,
			  trial_end = EXCLUDED.trial_end, cancel_at_period_end = EXCLUDED.cancel_at_period_end, cancel_at = EXCLUDED.cancel_at,
			  canceled_at = EXCLUDED.canceled_at, ended_at = EXCLUDED.ended_at, event_at = EXCLUDED.event_at,
			  event_id = EXCLUDED.event_id, updated_at = now()`,
			k.ID, before.TenantID, k.CustomerID, k.Status, k.PlanID, k.PriceID, k.Quantity, k.UsageItemID, k.Created,
			zeroNull(k.CurrentPeriodStart), zeroNull(k.CurrentPeriodEnd), k.TrialEnd, k.CancelAtPeriodEnd, k.CancelAt,
			k.CanceledAt, k.EndedAt, zeroNull(k.EventAt), k.EventID)
		if err != nil {
			return err
		}
	}
	if d.Changed {
		c := d.Account.Subscriptions[d.Account.Current]
		_, err := tx.Exec(ctx, `
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
		if err != nil {
			return err
		}
	}
	for _, e := range d.Emails {
		if err := emailOwners(ctx, tx, before.TenantID, e); err != nil {
			return err
		}
	}
	return nil
}

// emailOwners queues the email to each owner of the tenant, in the transaction that applies the
// event, at most once per dedupe key and owner.
func emailOwners(ctx context.Context, tx pgx.Tx, tenantID string, e billing.Email) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO tenantkit.email_outbox (tenant_id, to_email, subject, body, dedupe_key)
		SELECT m.tenant_id, u.email, $2, $3, $4
		FROM tenant_users m JOIN auth.users u ON u.id = m.user_id AND u.email IS NOT NULL
		WHERE m.tenant_id = $1 AND m.role = 'owner'
		ON CONFLICT (dedupe_key, to_email) WHERE dedupe_key IS NOT NULL DO NOTHING`,
		tenantID, e.Subject, e.Text, e.DedupeKey)
	return err
}
