package postgres

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
)

var _ tenantkit.PlanService = (*DB)(nil)

// planColumns are the columns of a tenantkit.Plan in the order planFields scans them, for the
// subscription_plans row aliased as alias ("$." below). The flags are sorted and distinct. A
// missing row (a LEFT JOIN that found none) scans as the zero Plan.
func planColumns(alias string) string {
	cols := `coalesce($.id::text, ''), coalesce($.key, ''), coalesce($.name, ''), coalesce($.description, ''),
		coalesce($.unit_amount, 0), coalesce($.currency, ''), coalesce($."interval", ''), coalesce($.features, '[]'),
		ARRAY(SELECT DISTINCT f FROM unnest($.feature_flags) f ORDER BY f), coalesce($.limits, '{}'),
		coalesce($.is_default, false)`
	return strings.ReplaceAll(cols, "$.", alias+".")
}

// planFields are the scan targets of planColumns.
func planFields(p *tenantkit.Plan) []any {
	return []any{&p.ID, &p.Key, &p.Name, &p.Description, &p.UnitAmount, &p.Currency, &p.Interval, &p.Features,
		&p.Flags, &p.Limits, &p.IsDefault}
}

// ActivePlans implements tenantkit.PlanService. Plans are readable by everyone, so it reads as
// tenantkit_app with no caller.
func (db *DB) ActivePlans(ctx context.Context) ([]tenantkit.Plan, error) {
	var plans []tenantkit.Plan
	err := db.WithUser(ctx, tenantkit.Session{}, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			SELECT `+planColumns("p")+`
			FROM subscription_plans p
			WHERE p.is_active
			ORDER BY p.sort_order, p.name`)
		var err error
		plans, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (tenantkit.Plan, error) {
			var p tenantkit.Plan
			err := row.Scan(planFields(&p)...)
			return p, err
		})
		return err
	})
	return plans, err
}
