package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
)

var _ tenantkit.PlanService = (*DB)(nil)

// ActivePlans implements tenantkit.PlanService. Plans are readable by everyone, so it reads as
// tenantkit_app with no caller.
func (db *DB) ActivePlans(ctx context.Context) ([]tenantkit.Plan, error) {
	var plans []tenantkit.Plan
	err := db.WithUser(ctx, tenantkit.Session{}, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			SELECT id::text, key, name, description, unit_amount, currency, "interval", features, limits, is_default
			FROM subscription_plans
			WHERE is_active
			ORDER BY sort_order, name`)
		var err error
		plans, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (tenantkit.Plan, error) {
			var p tenantkit.Plan
			err := row.Scan(&p.ID, &p.Key, &p.Name, &p.Description, &p.UnitAmount, &p.Currency, &p.Interval, &p.Features, &p.Limits, &p.IsDefault)
			return p, err
		})
		return err
	})
	return plans, err
}
