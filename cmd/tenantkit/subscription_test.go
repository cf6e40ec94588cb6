package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// TestSubscriptionRequests drives checkout, cancel, resume and changePlan against the stateful
// Stripe double (which replays idempotency keys and refuses changes to ended subscriptions as
// Stripe does), with webhooks held back where the point is what happens before they arrive.
func TestSubscriptionRequests(t *testing.T) {
	t.Parallel()
	b := newBillingStack(t, time.Now().Add(-time.Hour))
	s, fake := b.stack, b.fake
	starter, _ := b.plan(t, "starter")
	pro, proPrice := b.plan(t, "professional")
	ent, entPrice := b.plan(t, "enterprise")
	deliver := func() { t.Helper(); b.deliver(t) }
	// subscribe completes a checkout of the plan for the tenant and applies its webhooks.
	subscribe := func(tenant, owner, planID string) string {
		t.Helper()
		s.ok(t, "createCheckoutSession", map[string]any{"tenantId": tenant, "planId": planID}, owner)
		cs, err := fake.CompleteCheckout(lastCheckout(t, fake, tenant).ID)
		if err != nil {
			t.Fatal(err)
		}
		deliver()
		return cs.Subscription.ID
	}

	t.Run("a second checkout is refused while the subscription lives", func(t *testing.T) {
		tenant, owner := s.tenant(t)
		sub := subscribe(tenant, owner, starter)
		in := map[string]any{"tenantId": tenant, "planId": pro}
		msg := s.fails(t, "conflict", "createCheckoutSession", in, owner)
		if !strings.Contains(msg, "already has a subscription (status active)") {
			t.Errorf("message %q", msg)
		}
		// Ended at Stripe, its webhook not yet applied: Stripe's word lets the new checkout through.
		if _, err := fake.Client("").Subscriptions.Cancel(sub, nil); err != nil {
			t.Fatal(err)
		}
		s.ok(t, "createCheckoutSession", in, owner)
		deliver()
		s.ok(t, "createCheckoutSession", in, owner)
	})

	t.Run("cancel, resume, cancel before any webhook ends canceled at Stripe", func(t *testing.T) {
		tenant, owner := s.tenant(t)
		sub := subscribe(tenant, owner, starter)
		in := map[string]any{"tenantId": tenant}
		for i, action := range []string{"cancelSubscription", "resumeSubscription", "cancelSubscription"} {
			out := s.ok(t, action, in, owner)
			if want := i != 1; out["cancelAtPeriodEnd"] != want || out["subscriptionId"] != sub {
				t.Errorf("%s #%d answered %v, want subscription %s with cancelAtPeriodEnd %v", action, i, out, sub, want)
			}
			if want := i != 1; fake.Subscription(sub).CancelAtPeriodEnd != want {
				t.Errorf("after %s #%d, Stripe's cancel_at_period_end is not %v", action, i, want)
			}
		}
		if !fake.Subscription(sub).CancelAtPeriodEnd {
			t.Error("Stripe's subscription is not canceled at period end after cancel, resume, cancel")
		}
	})

	t.Run("a retry of one request replays it", func(t *testing.T) {
		tenant, owner := s.tenant(t)
		sub := subscribe(tenant, owner, starter)
		path := "/v1/subscriptions/" + sub
		fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: path, Drop: true})
		if got := s.ok(t, "cancelSubscription", map[string]any{"tenantId": tenant}, owner)["cancelAtPeriodEnd"]; got != true {
			t.Errorf("cancel answered cancelAtPeriodEnd %v", got)
		}
		if ex, re := fake.Executed(http.MethodPost, path), fake.Replayed(http.MethodPost, path); ex != 1 || re != 1 {
			t.Errorf("lost answer: %d executed, %d replayed; want stripe-go's retry to replay the one request", ex, re)
		}
	})

	t.Run("changePlan A, B, A before any webhook ends on A at Stripe", func(t *testing.T) {
		tenant, owner := s.tenant(t)
		sub := subscribe(tenant, owner, starter)
		for _, p := range []string{pro, ent, pro} {
			s.ok(t, "changePlan", map[string]any{"tenantId": tenant, "planId": p}, owner)
		}
		st := fake.Subscription(sub)
		if price, _ := licensed(&st); price != proPrice {
			t.Errorf("Stripe bills price %s after changePlan pro, enterprise, pro; want %s (enterprise is %s)", price, proPrice, entPrice)
		}
	})

	t.Run("an ended subscription cannot be changed", func(t *testing.T) {
		tenant, owner := s.tenant(t)
		sub := subscribe(tenant, owner, starter)
		if _, err := fake.Client("").Subscriptions.Cancel(sub, nil); err != nil {
			t.Fatal(err)
		}
		in := map[string]any{"tenantId": tenant}
		change := map[string]any{"tenantId": tenant, "planId": pro}
		actions := map[string]map[string]any{"cancelSubscription": in, "resumeSubscription": in, "changePlan": change,
			"previewPlanChange": change}
		// Before the webhook (the stored status is still active, Stripe refuses or says it ended)
		// and after it (decided from the stored status, without asking Stripe): the same answer.
		for _, when := range []string{"before the webhook", "after it"} {
			for name, input := range actions {
				if msg := s.fails(t, "conflict", name, input, owner); msg != "the subscription has ended; start a new checkout" {
					t.Errorf("%s, %s: message %q", name, when, msg)
				}
			}
			deliver()
		}
	})
}
