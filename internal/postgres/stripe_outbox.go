package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/billing"
)

var _ billing.OutboxStore = (*DB)(nil)

// queueWrites adds queued Stripe writes in tx, the transaction of the change that needs them. A
// cancellation already queued under its key is not queued again.
func queueWrites(ctx context.Context, tx pgx.Tx, writes []billing.StripeWrite) error {
	if len(writes) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, w := range writes {
		b.Queue(`
			INSERT INTO tenantkit.stripe_outbox (kind, tenant_id, subscription_id, idempotency_key)
			VALUES ($1, $2, nullif($3, ''), nullif($4, ''))
			ON CONFLICT (idempotency_key) WHERE kind = 'cancel_subscription' DO NOTHING`,
			w.Kind, w.TenantID, w.SubscriptionID, w.Key)
	}
	return tx.SendBatch(ctx, b).Close()
}

// ClaimStripeWrites implements billing.OutboxStore: due writes that no sender holds are leased in
// one statement; SKIP LOCKED keeps concurrent claims apart and the lease keeps a write away from
// other senders while its Stripe call runs, also after a seat change made it due again.
func (db *DB) ClaimStripeWrites(ctx context.Context, limit int, lease time.Duration) ([]billing.StripeWrite, error) {
	var writes []billing.StripeWrite
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			UPDATE tenantkit.stripe_outbox SET leased_until = now() + make_interval(secs => $2),
			  attempts = attempts + 1, updated_at = now()
			WHERE id IN (SELECT id FROM tenantkit.stripe_outbox
			             WHERE done_at IS NULL AND next_at <= now() AND (leased_until IS NULL OR leased_until <= now())
			             ORDER BY next_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
			RETURNING id, kind, tenant_id::text, coalesce(subscription_id, ''), coalesce(idempotency_key, ''), version, attempts`,
			limit, lease.Seconds())
		var err error
		writes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.StripeWrite, error) {
			var w billing.StripeWrite
			return w, r.Scan(&w.ID, &w.Kind, &w.TenantID, &w.SubscriptionID, &w.Key, &w.Version, &w.Attempts)
		})
		return err
	})
	return writes, err
}

// FinishStripeWrite implements billing.OutboxStore. A seats write is done only at the version it
// was decided at; otherwise it is released, due again for the newer change. The quantity Stripe
// answered is stored on the subscription (tenant's row first: the lock order of ApplyStripeEvent).
func (db *DB) FinishStripeWrite(ctx context.Context, w billing.StripeWrite, outcome string) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		if w.Quantity > 0 && w.SubscriptionID != "" {
			b.Queue(`UPDATE tenant_subscriptions SET stripe_quantity = $2
				WHERE stripe_subscription_id = $1 AND stripe_quantity IS DISTINCT FROM $2`, w.SubscriptionID, w.Quantity)
			b.Queue(`UPDATE tenantkit.stripe_subscriptions SET quantity = $2, updated_at = now()
				WHERE id = $1 AND quantity <> $2`, w.SubscriptionID, w.Quantity)
		}
		b.Queue(`
			UPDATE tenantkit.stripe_outbox SET leased_until = NULL, updated_at = now(),
			  done_at = CASE WHEN kind <> 'sync_seats' OR version = $2 THEN now() END,
			  outcome = $3, last_error = NULL,
			  subscription_id = coalesce(nullif($4, ''), subscription_id),
			  idempotency_key = coalesce(nullif($5, ''), idempotency_key),
			  attempts = CASE WHEN kind <> 'sync_seats' OR version = $2 THEN attempts ELSE 0 END
			WHERE id = $1`, w.ID, w.Version, outcome, w.SubscriptionID, w.Key)
		return tx.SendBatch(ctx, b).Close()
	})
}

// RetryStripeWrite implements billing.OutboxStore.
func (db *DB) RetryStripeWrite(ctx context.Context, w billing.StripeWrite, retryIn time.Duration, outcome, problem string) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			UPDATE tenantkit.stripe_outbox SET leased_until = NULL, updated_at = now(),
			  next_at = now() + make_interval(secs => $2), outcome = $3, last_error = left($4, 2000)
			WHERE id = $1`, w.ID, retryIn.Seconds(), outcome, problem)
		return err
	})
}

// SeatState implements billing.OutboxStore: the seat version and the members in one statement
// (one snapshot), with the tenant's current subscription as its billing row holds it.
func (db *DB) SeatState(ctx context.Context, tenantID string) (billing.SeatState, error) {
	var st billing.SeatState
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `
			SELECT o.version, (SELECT count(*) FROM tenant_users m WHERE m.tenant_id = o.tenant_id),
			       coalesce(t.deleted_at IS NOT NULL, true), coalesce(s.stripe_subscription_id, ''),
			       coalesce(s.status::text, ''), coalesce(s.stripe_quantity, 0), coalesce(p.per_seat, false)
			FROM tenantkit.stripe_outbox o
			LEFT JOIN tenants t ON t.id = o.tenant_id
			LEFT JOIN tenant_subscriptions s ON s.tenant_id = o.tenant_id
			LEFT JOIN subscription_plans p ON p.id = s.plan_id
			WHERE o.tenant_id = $1 AND o.kind = 'sync_seats'`, tenantID).Scan(
			&st.Version, &st.Members, &st.TenantDeleted, &st.SubscriptionID, &st.Status, &st.Quantity, &st.PerSeat)
	})
	return st, err
}
