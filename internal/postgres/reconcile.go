package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/billing"
)

var _ billing.ReconcileStore = (*DB)(nil)

// ReconcileState implements billing.ReconcileStore on the system path: every tenant's customer,
// and every linked subscription with its stored state (knownColumns, the same columns
// ApplyStripeEvent loads, so that versions compare).
func (db *DB) ReconcileState(ctx context.Context) (billing.ReconcileState, error) {
	st := billing.ReconcileState{Customers: map[string]string{}, Subscriptions: map[string]billing.LinkedSubscription{}}
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT stripe_customer_id, tenant_id::text FROM tenant_subscriptions WHERE stripe_customer_id IS NOT NULL`)
		var customer, tenant string
		if _, err := pgx.ForEachRow(rows, []any{&customer, &tenant}, func() error {
			st.Customers[customer] = tenant
			return nil
		}); err != nil {
			return err
		}
		var s billing.LinkedSubscription
		rows, _ = tx.Query(ctx, `SELECT tenant_id::text, `+knownColumns+` FROM tenantkit.stripe_subscriptions`)
		_, err := pgx.ForEachRow(rows, append([]any{&s.TenantID}, knownFields(&s.Known)...), func() error {
			unepochKnown(&s.Known)
			st.Subscriptions[s.ID] = s
			s = billing.LinkedSubscription{}
			return nil
		})
		return err
	})
	return st, err
}

// RecordedEvents implements billing.ReconcileStore.
func (db *DB) RecordedEvents(ctx context.Context, ids []string) (map[string]bool, error) {
	recorded := map[string]bool{}
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT id FROM tenantkit.stripe_events WHERE id = ANY ($1)`, ids)
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, id := range found {
			recorded[id] = true
		}
		return err
	})
	return recorded, err
}
