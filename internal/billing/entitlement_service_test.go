package billing_test

import (
	"context"
	"testing"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// TestEntitlementsFollowTheSubscription drives billing.Service.Entitlements and CheckEntitlement
// (entitlement.go, over tenantkit.entitlement) against PostgreSQL and the double: a new tenant is
// on its trial plan; trialing, active and past_due subscriptions grant their plan; one that is
// unpaid or canceled falls back to the default plan; features follow the effective plan.
func TestEntitlementsFollowTheSubscription(t *testing.T) {
	t.Parallel()
	w := newStripeWorld(t)
	ctx := context.Background()
	tenant, owner := w.tenant(t)
	sess := tenantkit.UserSession(owner)
	check := func(step, plan, status, reason string, analytics bool) {
		t.Helper()
		e, ok, err := w.bills.Entitlements(ctx, sess, tenant)
		if err != nil || !ok {
			t.Fatalf("%s: entitlements %v %v", step, ok, err)
		}
		if e.Plan.Key != plan || e.Status != status || e.Reason != reason {
			t.Errorf("%s: plan %s, status %s, reason %s; want %s, %s, %s", step, e.Plan.Key, e.Status, e.Reason, plan, status, reason)
		}
		allowed, _, err := w.bills.CheckEntitlement(ctx, sess, tenant, "advanced_analytics")
		if err != nil || allowed != analytics {
			t.Errorf("%s: advanced_analytics allowed %v (%v), want %v", step, allowed, err, analytics)
		}
	}
	check("new tenant", "starter", "trialing", "trial", false)

	sub := w.subscribe(t, tenant, owner, "professional")
	check("subscribed", "professional", "active", "subscription_active", true)

	if err := w.fake.FailPayment(sub); err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	check("a payment failed", "professional", "past_due", "past_due_grace", true)

	if err := w.fake.ExhaustRetries(sub, "unpaid"); err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	check("retries exhausted", "free", "unpaid", "subscription_unpaid", false)

	// A trialing subscription grants its plan too; a canceled one does not.
	other, otherOwner := w.tenant(t)
	cus, err := w.bills.EnsureCustomer(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	tsub, err := w.fake.CreateSubscription(cus, []stripefake.Item{{Price: w.plans["enterprise"].PriceID}}, nil, 7, "")
	if err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	tenant, sess = other, tenantkit.UserSession(otherOwner)
	check("a trialing subscription", "enterprise", "trialing", "subscription_trialing", true)
	if err := w.fake.EndTrial(tsub, false); err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	check("the trial ended unpaid", "enterprise", "past_due", "past_due_grace", true)
	if err := w.fake.ExhaustRetries(tsub, "canceled"); err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	check("canceled", "free", "canceled", "subscription_canceled", false)
}
