package billing

import (
	"context"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tenantkit/tenantkit"
)

// This file is what a tenant may do under its plan: which plan applies (the effective plan, decided
// by the database's tenantkit.entitlement so that the plan-limit triggers and Hasura's path obey
// the same rule), how much of each limit it uses, and which on/off features it has.

// Reasons a feature check gives besides the entitlement reasons (subscription_active,
// past_due_grace, trial, trial_ended, no_subscription, …).
const (
	NotInPlan      = "not_in_plan"     // a plan has the feature, the effective plan does not
	UnknownFeature = "unknown_feature" // no plan has the feature
	NotMember      = "not_member"      // the caller is not a member of the tenant (or it does not exist)
)

// NoSubscription is Entitlements.Status when the tenant has no subscription row at all.
const NoSubscription = "none"

// Entitlements are a tenant's plan as it applies now, and why.
type Entitlements struct {
	TenantID string
	// Plan is the effective plan: the one whose limits and features apply.
	Plan tenantkit.Plan
	// SubscribedPlan is the plan subscribed to or tried, even when it no longer applies (a canceled
	// subscription, an ended trial); the effective plan when the tenant has no subscription.
	SubscribedPlan tenantkit.Plan
	// Status is the subscription's status (trialing, active, past_due, canceled, …), NoSubscription
	// without one. Reason says why Plan applies: subscription_<status>, past_due_grace, trial,
	// trial_ended, manual_<status> or no_subscription.
	Status, Reason    string
	TrialEndsAt       *time.Time
	CurrentPeriodEnd  *time.Time
	CancelAtPeriodEnd bool
	// Limits are the effective plan's limits, by metric.
	Limits []Limit
	// Features are the flags of every active plan (and of the effective plan), by key.
	Features []Feature
}

// Limit is one metric of the effective plan: its maximum (-1: unlimited) and what the tenant uses
// (members plus pending invitations for users, rows for projects and registered tables, a gauge's
// latest value, a counter's total over the current billing period or else the calendar month).
type Limit struct {
	Metric      string
	Limit, Used int64
}

// Feature is an on/off feature and whether the effective plan grants it.
type Feature struct {
	Key     string
	Enabled bool
}

// Standing is what the Store reads of a tenant's entitlements; Service.Entitlements assembles it.
type Standing struct {
	Plan, SubscribedPlan tenantkit.Plan
	Status, Reason       string
	TrialEndsAt          *time.Time
	CurrentPeriodStart   *time.Time
	CurrentPeriodEnd     *time.Time
	CancelAtPeriodEnd    bool
	// Used is what the store measures of the metrics the effective plan limits: the count of rows
	// of those that count rows (users, projects, registered tables) and the latest value of the
	// Gauges. A counter has no entry: its use is its total over the allowance period, which
	// Service.Entitlements adds up.
	Used map[string]int64
	// Flags are the flags of every active plan: the features tenantkit knows.
	Flags []string
}

// FeatureStanding is what the Store reads for one feature check.
type FeatureStanding struct {
	Reason string // why the effective plan applies
	InPlan bool   // the effective plan has the flag
	Known  bool   // some active plan has the flag
}

// Entitlements returns a tenant's entitlements to its members, whatever their role. A non-member
// gets ok false, whether or not the tenant exists. Errors: unauthenticated, invalid, unavailable.
func (s *Service) Entitlements(ctx context.Context, sess tenantkit.Session, tenantID string) (Entitlements, bool, error) {
	if err := checkCaller(sess, tenantID); err != nil {
		return Entitlements{}, false, err
	}
	st, ok, err := s.Store.Entitlement(ctx, sess, tenantID)
	if err != nil || !ok {
		return Entitlements{}, false, err
	}
	e := Entitlements{
		TenantID: tenantID, Plan: st.Plan, SubscribedPlan: st.SubscribedPlan,
		Status: st.Status, Reason: st.Reason, TrialEndsAt: st.TrialEndsAt, CurrentPeriodEnd: st.CurrentPeriodEnd,
		CancelAtPeriodEnd: st.CancelAtPeriodEnd,
		Limits:            []Limit{}, Features: []Feature{},
	}
	if e.Status == "" {
		e.Status = NoSubscription
	}
	// A counter's limit is an allowance per period: its use is the period's total, as the usage
	// alerts count it, not the latest hour's.
	from, to := allowancePeriod(st.CurrentPeriodStart, st.CurrentPeriodEnd, s.now())
	var counters []UsageRange
	for _, m := range slices.Sorted(maps.Keys(st.Plan.Limits)) {
		if _, measured := st.Used[m]; !measured {
			counters = append(counters, UsageRange{TenantID: tenantID, Metric: m, From: from, To: to})
		}
	}
	totals, err := s.Store.UsageTotals(ctx, counters)
	if err != nil {
		return Entitlements{}, false, err
	}
	for i, r := range counters {
		st.Used[r.Metric] = int64(math.Ceil(totals[i]))
	}
	for _, m := range slices.Sorted(maps.Keys(st.Plan.Limits)) {
		e.Limits = append(e.Limits, Limit{Metric: m, Limit: st.Plan.Limits[m], Used: st.Used[m]})
	}
	keys := append(slices.Clone(st.Flags), st.Plan.Flags...)
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		e.Features = append(e.Features, Feature{Key: k, Enabled: slices.Contains(st.Plan.Flags, k)})
	}
	return e, true, nil
}

// CheckEntitlement reports whether the tenant's effective plan grants a feature, for its members.
// reason is the entitlement reason (subscription_active, trial, …) when allowed, else not_in_plan
// (a plan has it, the effective one does not), unknown_feature (no plan has it) or not_member (the
// caller is not a member, or the tenant does not exist). Errors: unauthenticated, invalid,
// unavailable.
func (s *Service) CheckEntitlement(ctx context.Context, sess tenantkit.Session, tenantID, feature string) (allowed bool, reason string, err error) {
	if err := checkCaller(sess, tenantID); err != nil {
		return false, "", err
	}
	if !metricPattern.MatchString(feature) { // feature keys are spelled like metrics
		return false, "", tenantkit.Errorf(tenantkit.Invalid, "feature must be lowercase letters, digits and underscores")
	}
	st, ok, err := s.Store.Feature(ctx, sess, tenantID, feature)
	switch {
	case err != nil:
		return false, "", err
	case !ok:
		return false, NotMember, nil
	case st.InPlan:
		return true, st.Reason, nil
	case !st.Known:
		return false, UnknownFeature, nil
	}
	return false, NotInPlan, nil
}

// checkCaller refuses a session without a signed-in user and a malformed tenant id.
func checkCaller(sess tenantkit.Session, tenantID string) error {
	if uuid.Validate(sess.UserID()) != nil {
		return tenantkit.Errorf(tenantkit.Unauthenticated, "sign in first")
	}
	if uuid.Validate(tenantID) != nil {
		return tenantkit.Errorf(tenantkit.Invalid, "tenantId must be a UUID")
	}
	return nil
}
