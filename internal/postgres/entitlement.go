package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

// Both reads start from the tenant's row under RLS: a caller who is not a member sees no row, so
// tenantkit.entitlement and tenantkit.plan_usage (SECURITY DEFINER, granted to tenantkit_app) are
// asked only about tenants the caller belongs to, and a tenant that does not exist looks the same.

// entitlementQuery reads, in one statement: why the effective plan applies, the subscription row
// (none: NULLs), the effective and subscribed plans (the effective one when there is no
// subscription), the usage of every metric the effective plan limits that counts rows or is one
// of the gauges ($2, billing.Gauges; a counter's total over its period is billing's to add up), and
// every active plan's flags.
var entitlementQuery = `
SELECT e.reason, coalesce(s.status::text, ''), s.trial_ends_at, s.current_period_start, s.current_period_end,
       coalesce(s.cancel_at_period_end, false),
       ` + planColumns("ep") + `,
       ` + planColumns("sp") + `,
       (SELECT coalesce(jsonb_object_agg(m.metric, tenantkit.plan_usage(t.id, m.metric)), '{}')
        FROM jsonb_object_keys(ep.limits) m (metric)
        WHERE m.metric = ANY ($2) OR tenantkit.plan_metric_counts_rows(m.metric)),
       ARRAY(SELECT DISTINCT f FROM subscription_plans a, unnest(a.feature_flags) f WHERE a.is_active ORDER BY f)
FROM tenants t
CROSS JOIN LATERAL tenantkit.entitlement(t.id) e
LEFT JOIN tenant_subscriptions s ON s.tenant_id = t.id
LEFT JOIN subscription_plans ep ON ep.id = e.plan_id
LEFT JOIN subscription_plans sp ON sp.id = coalesce(s.plan_id, e.plan_id)
WHERE t.id = $1`

// Entitlement implements billing.Store under RLS: members of the tenant, whatever their role.
func (db *DB) Entitlement(ctx context.Context, s tenantkit.Session, tenantID string) (billing.Standing, bool, error) {
	var st billing.Standing
	found := false
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		dest := []any{&st.Reason, &st.Status, &st.TrialEndsAt, &st.CurrentPeriodStart, &st.CurrentPeriodEnd, &st.CancelAtPeriodEnd}
		dest = append(dest, planFields(&st.Plan)...)
		dest = append(dest, planFields(&st.SubscribedPlan)...)
		dest = append(dest, &st.Used, &st.Flags)
		err := tx.QueryRow(ctx, entitlementQuery, tenantID, slices.Sorted(maps.Keys(billing.Gauges))).Scan(dest...)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil || !found {
		return billing.Standing{}, false, err
	}
	if st.Plan.ID == "" {
		// tenantkit.entitlement falls back to the default plan: without one, no plan applies.
		return billing.Standing{}, false, fmt.Errorf("tenant %s has no effective plan: no plan is the default", tenantID)
	}
	return st, true, nil
}

// Feature implements billing.Store under RLS, like Entitlement.
func (db *DB) Feature(ctx context.Context, s tenantkit.Session, tenantID, flag string) (billing.FeatureStanding, bool, error) {
	var st billing.FeatureStanding
	found := false
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			SELECT e.reason, coalesce($2 = ANY (p.feature_flags), false),
			       EXISTS (SELECT 1 FROM subscription_plans a WHERE a.is_active AND $2 = ANY (a.feature_flags))
			FROM tenants t
			CROSS JOIN LATERAL tenantkit.entitlement(t.id) e
			LEFT JOIN subscription_plans p ON p.id = e.plan_id
			WHERE t.id = $1`, tenantID, flag).Scan(&st.Reason, &st.InPlan, &st.Known)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	return st, found, err
}
