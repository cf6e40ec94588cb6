package postgres_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

// Entitlements follow the subscription's status: tenantkit.entitlement is the one home of the
// rule, effective_plan and plan_limit (hence the plan-limit triggers) follow it, and the store
// reads it for members only.

var subscriptionStatuses = []string{"trialing", "active", "past_due", "canceled", "unpaid", "incomplete", "incomplete_expired", "paused"}

func TestEntitlementRule(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()

	t.Run("the effective plan follows the status", func(t *testing.T) {
		t.Parallel()
		if got := fxStrings(t, admin, "SELECT enum_range(NULL::subscription_status)::text[]"); !slices.Equal(got, subscriptionStatuses) {
			t.Fatalf("subscription_status is %q, the table below covers %q", got, subscriptionStatuses)
		}
		const sub = "sub_123"
		soon, gone := time.Hour, -time.Hour
		cases := []struct {
			name      string
			stripeID  string         // "" : no Stripe subscription (tenantkit's own trial, or set by hand)
			status    string         // "" : no subscription row at all
			trialEnds *time.Duration // from now; nil: none
			plan      string         // the effective plan's key
			reason    string
		}{
			{"Stripe trialing", sub, "trialing", &soon, "professional", "subscription_trialing"},
			{"Stripe trialing past its trial_end (Stripe decides when it ends)", sub, "trialing", &gone, "professional", "subscription_trialing"},
			{"Stripe active", sub, "active", nil, "professional", "subscription_active"},
			{"Stripe past_due (grace while Stripe retries)", sub, "past_due", nil, "professional", "past_due_grace"},
			{"Stripe canceled", sub, "canceled", nil, "free", "subscription_canceled"},
			{"Stripe unpaid", sub, "unpaid", nil, "free", "subscription_unpaid"},
			{"Stripe incomplete", sub, "incomplete", nil, "free", "subscription_incomplete"},
			{"Stripe incomplete_expired", sub, "incomplete_expired", nil, "free", "subscription_incomplete_expired"},
			{"Stripe paused", sub, "paused", nil, "free", "subscription_paused"},
			{"own trial before its end", "", "trialing", &soon, "professional", "trial"},
			{"own trial after its end", "", "trialing", &gone, "free", "trial_ended"},
			{"own trial without an end", "", "trialing", nil, "free", "trial_ended"},
			{"manual active", "", "active", nil, "professional", "manual_active"},
			{"manual past_due (no Stripe retries, no grace)", "", "past_due", nil, "free", "manual_past_due"},
			{"manual canceled", "", "canceled", nil, "free", "manual_canceled"},
			{"manual unpaid", "", "unpaid", nil, "free", "manual_unpaid"},
			{"manual incomplete", "", "incomplete", nil, "free", "manual_incomplete"},
			{"manual incomplete_expired", "", "incomplete_expired", nil, "free", "manual_incomplete_expired"},
			{"manual paused", "", "paused", nil, "free", "manual_paused"},
			{"no subscription row", "", "", nil, "free", "no_subscription"},
		}
		covered := map[string]bool{}
		for _, c := range cases {
			if c.status != "" {
				covered[map[bool]string{true: "stripe ", false: "manual "}[c.stripeID != ""]+c.status] = true
			}
		}
		for _, s := range subscriptionStatuses {
			if !covered["stripe "+s] || !covered["manual "+s] {
				t.Errorf("status %s is not covered with and without a Stripe subscription", s)
			}
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tn := fxTenant(t, admin)
				if c.status != "" {
					var ends *time.Time
					if c.trialEnds != nil {
						at := time.Now().Add(*c.trialEnds)
						ends = &at
					}
					fxSubscribe(t, admin, tn.id, "professional", c.status, c.stripeID, ends)
				}
				var plan, reason, effective string
				var projects, users int64
				fxQueryRow(t, admin, `
					SELECT p.key, e.reason, (SELECT key FROM subscription_plans WHERE id = tenantkit.effective_plan($1)),
					       tenantkit.plan_limit($1, 'projects'), tenantkit.plan_limit($1, 'users')
					FROM tenantkit.entitlement($1) e JOIN subscription_plans p ON p.id = e.plan_id`, tn.id).
					Scan(&plan, &reason, &effective, &projects, &users)
				if plan != c.plan || reason != c.reason {
					t.Errorf("entitlement = %s (%s), want %s (%s)", plan, reason, c.plan, c.reason)
				}
				if effective != plan {
					t.Errorf("effective_plan = %s, entitlement says %s", effective, plan)
				}
				want := map[string][2]int64{"professional": {50, -1}, "free": {3, 3}}[c.plan]
				if projects != want[0] || users != want[1] {
					t.Errorf("plan_limit: %d projects, %d users; want %d and %d (%s)", projects, users, want[0], want[1], c.plan)
				}
			})
		}
	})

	t.Run("at decides whether the own trial has ended", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin)
		ends := time.Now().Add(time.Hour)
		fxSubscribe(t, admin, tn.id, "starter", "trialing", "", &ends)
		for _, c := range []struct {
			at           time.Time
			plan, reason string
		}{
			{ends.Add(-time.Minute), "starter", "trial"},
			{ends, "free", "trial_ended"}, // the trial ends at trial_ends_at, not a moment later
			{ends.Add(time.Minute), "free", "trial_ended"},
		} {
			var plan, reason string
			fxQueryRow(t, admin, `SELECT p.key, e.reason FROM tenantkit.entitlement($1, $2) e JOIN subscription_plans p ON p.id = e.plan_id`,
				tn.id, c.at).Scan(&plan, &reason)
			if plan != c.plan || reason != c.reason {
				t.Errorf("at trial end %+v: %s (%s), want %s (%s)", c.at.Sub(ends), plan, reason, c.plan, c.reason)
			}
		}
	})

	t.Run("a downgrade keeps the rows above the limit and refuses the next", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin)
		fxSubscribe(t, admin, tn.id, "professional", "active", "sub_down", nil)
		for i := range 5 {
			if err := fxNewProject(ctx, db, tn.id, tn.owner); err != nil {
				t.Fatalf("project %d on Professional: %v", i+1, err)
			}
		}
		for range 3 {
			fxMember(t, admin, tn.id, tenantkit.Member)
		}
		fxExec(t, admin, "UPDATE tenant_subscriptions SET status = 'canceled' WHERE tenant_id = $1", tn.id)
		if n := fxCount(t, admin, "SELECT count(*) FROM projects WHERE tenant_id = $1", tn.id); n != 5 {
			t.Errorf("%d projects after the downgrade, want the 5 kept", n)
		}
		err := fxNewProject(ctx, db, tn.id, tn.owner)
		if code := tenantkit.ErrorCode(err); code != tenantkit.PlanLimit {
			t.Fatalf("6th project on Free: %v (code %q), want %s", err, code, tenantkit.PlanLimit)
		}
		if msg := tenantkit.ErrorMessage(err); !strings.Contains(msg, "the Free plan allows 3 projects") {
			t.Errorf("message %q does not name the plan and its limit", msg)
		}
		// Seats too: owner + 3 members stay, above Free's 3, and no invitation goes out.
		if n := fxCount(t, admin, "SELECT count(*) FROM tenant_users WHERE tenant_id = $1", tn.id); n != 4 {
			t.Errorf("%d members after the downgrade, want the 4 kept", n)
		}
		if _, err := fxOwnerInvites(ctx, db, tn, "one-more@example.com"); tenantkit.ErrorCode(err) != tenantkit.PlanLimit {
			t.Errorf("invitation on Free with 4 members: %v, want %s", err, tenantkit.PlanLimit)
		}
		// Back under the limit, there is room again.
		fxExec(t, admin, "DELETE FROM projects WHERE id IN (SELECT id FROM projects WHERE tenant_id = $1 LIMIT 3)", tn.id)
		if err := fxNewProject(ctx, db, tn.id, tn.owner); err != nil {
			t.Errorf("3rd project on Free: %v", err)
		}
	})

	t.Run("past_due keeps the plan's limits; an ended own trial does not", func(t *testing.T) {
		t.Parallel()
		grace := fxTenant(t, admin)
		fxSubscribe(t, admin, grace.id, "professional", "past_due", "sub_grace", nil)
		fxProjects(t, admin, grace.id, grace.owner, 3)
		if err := fxNewProject(ctx, db, grace.id, grace.owner); err != nil {
			t.Errorf("4th project while past_due: %v", err)
		}
		ended := fxTenant(t, admin)
		ago := time.Now().Add(-time.Minute)
		fxSubscribe(t, admin, ended.id, "starter", "trialing", "", &ago)
		fxProjects(t, admin, ended.id, ended.owner, 3)
		if err := fxNewProject(ctx, db, ended.id, ended.owner); tenantkit.ErrorCode(err) != tenantkit.PlanLimit {
			t.Errorf("4th project after the trial: %v, want %s", err, tenantkit.PlanLimit)
		}
	})
}

func TestEntitlementStore(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	svc := &billing.Service{Store: db}

	// A Professional tenant billed through Stripe, with an owner, a guest, a pending invitation
	// (a seat), an expired one (none), 2 projects and two storage_gb readings (the latest counts).
	tn := fxTenant(t, admin)
	periodEnd := time.Now().Add(20 * 24 * time.Hour).Truncate(time.Second)
	fxSubscribe(t, admin, tn.id, "professional", "active", "sub_pro", nil)
	fxExec(t, admin, "UPDATE tenant_subscriptions SET current_period_end = $2, cancel_at_period_end = true WHERE tenant_id = $1", tn.id, periodEnd)
	guest := fxMember(t, admin, tn.id, tenantkit.Guest)
	fxInvite(t, admin, tn.id, "pending", time.Hour)
	fxInvite(t, admin, tn.id, "pending", -time.Hour)
	fxProjects(t, admin, tn.id, tn.owner, 2)
	fxExec(t, admin, `INSERT INTO billing_usage (tenant_id, metric, period_start, period_end, quantity) VALUES
		($1, 'storage_gb', date_trunc('hour', now()) - interval '2 hours', date_trunc('hour', now()) - interval '1 hour', 7),
		($1, 'storage_gb', date_trunc('hour', now()) - interval '1 hour', date_trunc('hour', now()), 3.2)`, tn.id)
	stranger := fxUser(t, admin)
	other := fxTenant(t, admin) // its owner is a member elsewhere, not here

	t.Run("a member reads the standing", func(t *testing.T) {
		t.Parallel()
		for _, who := range []string{tn.owner, guest} {
			st, ok, err := db.Entitlement(ctx, tenantkit.UserSession(who), tn.id)
			if err != nil || !ok {
				t.Fatalf("Entitlement: ok %v, %v", ok, err)
			}
			if st.Plan.Key != "professional" || st.SubscribedPlan.Key != "professional" || st.Status != "active" || st.Reason != "subscription_active" {
				t.Errorf("plan %s, subscribed %s, %s (%s)", st.Plan.Key, st.SubscribedPlan.Key, st.Status, st.Reason)
			}
			if st.CurrentPeriodEnd == nil || !st.CurrentPeriodEnd.Equal(periodEnd) || !st.CancelAtPeriodEnd || st.TrialEndsAt != nil {
				t.Errorf("period end %v, cancel at period end %v, trial end %v", st.CurrentPeriodEnd, st.CancelAtPeriodEnd, st.TrialEndsAt)
			}
			if want := map[string]int64{"users": 3, "projects": 2, "storage_gb": 4}; !maps.Equal(st.Used, want) {
				t.Errorf("used = %v, want %v (owner + guest + pending invitation; 2 projects; latest storage rounded up)", st.Used, want)
			}
			if !slices.Equal(st.Flags, []string{"advanced_analytics", "sso"}) || !slices.Equal(st.Plan.Flags, []string{"advanced_analytics"}) {
				t.Errorf("flags %q, plan flags %q", st.Flags, st.Plan.Flags)
			}
		}
	})

	t.Run("a non-member reads nothing, whether or not the tenant exists", func(t *testing.T) {
		t.Parallel()
		for name, c := range map[string]struct{ user, tenant string }{
			"a stranger":                  {stranger, tn.id},
			"another tenant's owner":      {other.owner, tn.id},
			"a tenant that never existed": {tn.owner, uuid.NewString()},
			"no user":                     {"", tn.id},
		} {
			sess := tenantkit.UserSession(c.user)
			if c.user == "" {
				sess = tenantkit.Session{}
			}
			if st, ok, err := db.Entitlement(ctx, sess, c.tenant); ok || err != nil {
				t.Errorf("%s: Entitlement ok %v, %v: %+v", name, ok, err, st)
			}
			if st, ok, err := db.Feature(ctx, sess, c.tenant, "advanced_analytics"); ok || err != nil {
				t.Errorf("%s: Feature ok %v, %v: %+v", name, ok, err, st)
			}
		}
	})

	t.Run("the service assembles limits and features", func(t *testing.T) {
		t.Parallel()
		e, ok, err := svc.Entitlements(ctx, tenantkit.UserSession(guest), tn.id)
		if err != nil || !ok {
			t.Fatalf("Entitlements: ok %v, %v", ok, err)
		}
		wantLimits := []billing.Limit{{Metric: "projects", Limit: 50, Used: 2}, {Metric: "storage_gb", Limit: 50, Used: 4}, {Metric: "users", Limit: -1, Used: 3}}
		wantFeatures := []billing.Feature{{Key: "advanced_analytics", Enabled: true}, {Key: "sso", Enabled: false}}
		if e.TenantID != tn.id || !slices.Equal(e.Limits, wantLimits) || !slices.Equal(e.Features, wantFeatures) {
			t.Errorf("tenant %s, limits %+v, features %+v; want %+v, %+v", e.TenantID, e.Limits, e.Features, wantLimits, wantFeatures)
		}
		if _, ok, err := svc.Entitlements(ctx, tenantkit.UserSession(stranger), tn.id); ok || err != nil {
			t.Errorf("a stranger's Entitlements: ok %v, %v", ok, err)
		}
	})

	t.Run("checks", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct {
			user, tenant, feature string
			allowed               bool
			reason                string
		}{
			{tn.owner, tn.id, "advanced_analytics", true, "subscription_active"},
			{guest, tn.id, "advanced_analytics", true, "subscription_active"},
			{guest, tn.id, "sso", false, billing.NotInPlan},
			{guest, tn.id, "teleportation", false, billing.UnknownFeature},
			{stranger, tn.id, "advanced_analytics", false, billing.NotMember},
			{stranger, tn.id, "teleportation", false, billing.NotMember},
			{tn.owner, uuid.NewString(), "sso", false, billing.NotMember},
		} {
			allowed, reason, err := svc.CheckEntitlement(ctx, tenantkit.UserSession(c.user), c.tenant, c.feature)
			if err != nil || allowed != c.allowed || reason != c.reason {
				t.Errorf("%s as %s: %v %q %v, want %v %q", c.feature, c.user, allowed, reason, err, c.allowed, c.reason)
			}
		}
	})

	t.Run("without a subscription, and after a cancellation", func(t *testing.T) {
		t.Parallel()
		bare := fxTenant(t, admin)
		e, ok, err := svc.Entitlements(ctx, tenantkit.UserSession(bare.owner), bare.id)
		if err != nil || !ok {
			t.Fatalf("Entitlements: ok %v, %v", ok, err)
		}
		if e.Plan.Key != "free" || e.SubscribedPlan.Key != "free" || e.Status != billing.NoSubscription || e.Reason != "no_subscription" ||
			e.TrialEndsAt != nil || e.CurrentPeriodEnd != nil {
			t.Errorf("no subscription: %+v", e)
		}
		if want := []billing.Limit{{Metric: "projects", Limit: 3, Used: 0}, {Metric: "storage_gb", Limit: 1, Used: 0}, {Metric: "users", Limit: 3, Used: 1}}; !slices.Equal(e.Limits, want) {
			t.Errorf("limits %+v, want %+v", e.Limits, want)
		}

		gone := fxTenant(t, admin)
		fxSubscribe(t, admin, gone.id, "enterprise", "canceled", "sub_gone", nil)
		e, _, err = svc.Entitlements(ctx, tenantkit.UserSession(gone.owner), gone.id)
		if err != nil || e.Plan.Key != "free" || e.SubscribedPlan.Key != "enterprise" || e.Status != "canceled" || e.Reason != "subscription_canceled" {
			t.Errorf("canceled: %v %+v", err, e)
		}
		if want := []billing.Feature{{Key: "advanced_analytics", Enabled: false}, {Key: "sso", Enabled: false}}; !slices.Equal(e.Features, want) {
			t.Errorf("features %+v, want %+v", e.Features, want)
		}
		if allowed, reason, _ := svc.CheckEntitlement(ctx, tenantkit.UserSession(gone.owner), gone.id, "sso"); allowed || reason != billing.NotInPlan {
			t.Errorf("sso after cancellation: %v %q", allowed, reason)
		}
	})
}

// The known features are the flags of the active plans: a retired plan's flag is unknown.
func TestEntitlementFeaturesOfActivePlans(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	svc := &billing.Service{Store: db}
	fxExec(t, admin, `INSERT INTO subscription_plans (key, name, unit_amount, currency, "interval", feature_flags, is_active)
		VALUES ('retired', 'Retired', 500, 'usd', 'month', '{legacy_export}', false),
		       ('team', 'Team', 4900, 'usd', 'month', '{audit_export,sso,audit_export}', true)`)
	tn := fxTenant(t, admin, fxPlanKey("team"))

	e, _, err := svc.Entitlements(ctx, tenantkit.UserSession(tn.owner), tn.id)
	want := []billing.Feature{{Key: "advanced_analytics", Enabled: false}, {Key: "audit_export", Enabled: true}, {Key: "sso", Enabled: true}}
	if err != nil || !slices.Equal(e.Features, want) {
		t.Errorf("features %+v (%v), want %+v", e.Features, err, want)
	}
	if len(e.Limits) != 0 {
		t.Errorf("a plan without limits lists %+v", e.Limits)
	}
	if _, reason, _ := svc.CheckEntitlement(ctx, tenantkit.UserSession(tn.owner), tn.id, "legacy_export"); reason != billing.UnknownFeature {
		t.Errorf("a retired plan's flag: %q, want %s", reason, billing.UnknownFeature)
	}
	plans, err := db.ActivePlans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string][]string{}
	for _, p := range plans {
		flags[p.Key] = p.Flags
	}
	if !slices.Equal(flags["team"], []string{"audit_export", "sso"}) || !slices.Equal(flags["enterprise"], []string{"advanced_analytics", "sso"}) ||
		flags["free"] == nil || len(flags["free"]) != 0 {
		t.Errorf("ActivePlans flags: %q", flags)
	}
}

// fxSubscribe gives the tenant a subscription row to the plan with that key, in that status, billed
// through Stripe when stripeID is set, its trial ending at trialEnds (nil: none).
func fxSubscribe(t testing.TB, admin *pgxpool.Pool, tenant, key, status, stripeID string, trialEnds *time.Time) {
	t.Helper()
	fxExec(t, admin, `INSERT INTO tenant_subscriptions (tenant_id, plan_id, status, stripe_subscription_id, trial_ends_at)
		VALUES ($1, (SELECT id FROM subscription_plans WHERE key = $2), $3, nullif($4, ''), $5)
		ON CONFLICT (tenant_id) DO UPDATE SET plan_id = EXCLUDED.plan_id, status = EXCLUDED.status,
		  stripe_subscription_id = EXCLUDED.stripe_subscription_id, trial_ends_at = EXCLUDED.trial_ends_at`,
		tenant, key, status, stripeID, trialEnds)
}

func fxStrings(t testing.TB, admin *pgxpool.Pool, sql string, args ...any) []string {
	t.Helper()
	var out []string
	fxQueryRow(t, admin, sql, args...).Scan(&out)
	return out
}
