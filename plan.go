package tenantkit

import "context"

// Plan is a subscription plan. UnitAmount is the price per Interval ("month" or "year") in the
// currency's smallest unit. Features is display text; Flags are the on/off features the plan grants
// (e.g. "sso"), sorted. Limits maps a metric ("users", "projects", "storage_gb") to its maximum;
// -1, or a metric the plan does not name, means unlimited.
type Plan struct {
	ID          string
	Key         string
	Name        string
	Description string
	UnitAmount  int64
	Currency    string
	Interval    string
	Features    []string
	Flags       []string
	Limits      map[string]int64
	IsDefault   bool
}

// PlanService reads subscription plans.
type PlanService interface {
	// ActivePlans returns the active plans in display order. Errors: unavailable.
	ActivePlans(ctx context.Context) ([]Plan, error)
}
