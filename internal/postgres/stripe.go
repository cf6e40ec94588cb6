package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

// ApplyStripeEvent implements billing.Store on the system path: the event id is recorded in the
// transaction that applies it, and the subscription row is locked while its watermark is compared.
func (db *DB) ApplyStripeEvent(ctx context.Context, ev billing.StripeEvent, settle bool) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO tenantkit.stripe_events (id, type, created) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO NOTHING`, ev.ID, ev.Type, ev.Created)
		if err != nil || (tag.RowsAffected() == 0 && !settle) {
			return err // applied before: nothing to do
		}
		switch {
		case ev.Type == "customer.subscription.trial_will_end" && ev.Subscription != nil:
			if err := applySubscription(ctx, tx, ev, settle); err != nil {
				return err
			}
			return emailOwners(ctx, tx, ev.Subscription.TenantID, ev.Subscription.ID, "The trial of %s ends soon",
				"The trial of %s ends in three days. Choose a plan in the billing settings to keep your data and your team's access.")
		case ev.Subscription != nil && strings.HasPrefix(ev.Type, "customer.subscription."):
			return applySubscription(ctx, tx, ev, settle)
		case ev.Checkout != nil && uuid.Validate(ev.Checkout.TenantID) == nil:
			// Other checkouts (a Payment Link, another integration on the account) name no tenant
			// of ours: recorded below, ignored.
			_, err := tx.Exec(ctx, `
				UPDATE tenant_subscriptions
				SET stripe_customer_id = coalesce(stripe_customer_id, $2),
				    stripe_subscription_id = coalesce(stripe_subscription_id, nullif($3, ''))
				WHERE tenant_id = $1::uuid`, ev.Checkout.TenantID, ev.Checkout.CustomerID, ev.Checkout.SubscriptionID)
			return err
		case ev.Type == "invoice.payment_failed" && ev.InvoiceSubscriptionID != "":
			if err := applyStatus(ctx, tx, ev, "past_due", settle); err != nil {
				return err
			}
			return emailOwners(ctx, tx, "", ev.InvoiceSubscriptionID, "Payment failed for %s",
				"We could not collect the latest payment for %s. Please update the payment method in the billing settings to keep the subscription active.")
		}
		return nil // recorded; nothing else to apply (invoice.paid, trial_will_end, unknown types)
	})
}

// lockSubscription finds and locks the row an event is about: by tenant id from the metadata,
// else by subscription id, else by customer id. Missing: ("", nil). Absent ids are NULL, which
// matches nothing, so each condition is an index lookup.
func lockSubscription(ctx context.Context, tx pgx.Tx, tenantID, subscriptionID, customerID string) (tenant string, watermark *time.Time, lastEvent string, err error) {
	orNull := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	var tenantUUID *string
	if uuid.Validate(tenantID) == nil {
		tenantUUID = &tenantID
	}
	err = tx.QueryRow(ctx, `
		SELECT tenant_id::text, stripe_event_at, coalesce(stripe_event_id, '')
		FROM tenant_subscriptions
		WHERE tenant_id = $1::uuid OR stripe_subscription_id = $2 OR stripe_customer_id = $3
		ORDER BY tenant_id = $1::uuid DESC NULLS LAST
		LIMIT 1
		FOR UPDATE`, tenantUUID, orNull(subscriptionID), orNull(customerID)).Scan(&tenant, &watermark, &lastEvent)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, "", nil
	}
	return tenant, watermark, lastEvent, err
}

// stale reports whether ev must not be applied over the row's watermark; ErrTie when they tie.
func stale(ev billing.StripeEvent, watermark *time.Time, lastEvent string, settle bool) (bool, error) {
	switch {
	case watermark == nil || ev.Created.After(*watermark):
		return false, nil
	case ev.Created.Before(*watermark):
		return true, nil
	case settle:
		return false, nil
	case lastEvent == ev.ID:
		return true, nil
	}
	return false, billing.ErrTie
}

func applySubscription(ctx context.Context, tx pgx.Tx, ev billing.StripeEvent, settle bool) error {
	sub := ev.Subscription
	tenant, watermark, last, err := lockSubscription(ctx, tx, sub.TenantID, sub.ID, sub.CustomerID)
	if err != nil || tenant == "" {
		return err // not ours (or the tenant is gone): recorded, ignored
	}
	if skip, err := stale(ev, watermark, last, settle); skip || err != nil {
		return err
	}
	status := sub.Status
	if ev.Type == "customer.subscription.deleted" {
		status = "canceled"
	}
	_, err = tx.Exec(ctx, `
		UPDATE tenant_subscriptions SET
		  status = $2::subscription_status,
		  stripe_subscription_id = $3, stripe_customer_id = coalesce(nullif($4, ''), stripe_customer_id),
		  plan_id = coalesce((SELECT id FROM subscription_plans WHERE id::text = $5),
		                     (SELECT id FROM subscription_plans WHERE stripe_price_id = nullif($6, '')), plan_id),
		  stripe_price_id = nullif($6, ''), stripe_usage_item_id = nullif($7, ''),
		  current_period_start = $8, current_period_end = $9, trial_ends_at = $10,
		  cancel_at_period_end = $11, cancel_at = $12, canceled_at = $13,
		  stripe_event_at = $14, stripe_event_id = $15
		WHERE tenant_id = $1::uuid`,
		tenant, status, sub.ID, sub.CustomerID, sub.PlanID, sub.PriceID, sub.UsageItemID,
		sub.CurrentPeriodStart, sub.CurrentPeriodEnd, sub.TrialEnd, sub.CancelAtPeriodEnd, sub.CancelAt, sub.CanceledAt,
		ev.Created, ev.ID)
	if err != nil && tenantkit.ErrorCode(translate(err)) == tenantkit.Invalid {
		return &tenantkit.Error{Code: tenantkit.Internal, Message: "unexpected Stripe subscription", Err: err}
	}
	return err
}

func applyStatus(ctx context.Context, tx pgx.Tx, ev billing.StripeEvent, status string, settle bool) error {
	tenant, watermark, last, err := lockSubscription(ctx, tx, "", ev.InvoiceSubscriptionID, "")
	if err != nil || tenant == "" {
		return err
	}
	if skip, err := stale(ev, watermark, last, settle); skip || err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE tenant_subscriptions SET status = $2::subscription_status, stripe_event_at = $3, stripe_event_id = $4
		WHERE tenant_id = $1::uuid`, tenant, status, ev.Created, ev.ID)
	return err
}

// emailOwners queues one email to each owner of the tenant (found by id, else by subscription id),
// in the transaction that applies the event, so the email exists exactly when the event applied.
// subject and body take the tenant's name.
func emailOwners(ctx context.Context, tx pgx.Tx, tenantID, subscriptionID, subject, body string) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO tenantkit.email_outbox (tenant_id, to_email, subject, body)
		SELECT t.id, u.email, format($3, t.name), format($4, t.name)
		FROM tenants t
		JOIN tenant_subscriptions s ON s.tenant_id = t.id
		JOIN tenant_users m ON m.tenant_id = t.id AND m.role = 'owner'
		JOIN auth.users u ON u.id = m.user_id AND u.email IS NOT NULL
		WHERE ($1 <> '' AND t.id::text = $1) OR ($1 = '' AND s.stripe_subscription_id = $2)`,
		tenantID, subscriptionID, subject, body)
	return err
}
