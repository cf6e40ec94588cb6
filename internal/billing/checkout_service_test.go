package billing_test

import (
	"context"
	"testing"

	"github.com/tenantkit/tenantkit"
)

// lastCheckout is the form of the last checkout session requested from the double.
func (w *stripeWorld) lastCheckout(t *testing.T) (form map[string]string, n int) {
	t.Helper()
	posts := w.posts("/v1/checkout/sessions")
	if len(posts) == 0 {
		t.Fatal("no checkout session requested")
	}
	form = map[string]string{}
	for k := range posts[len(posts)-1].Form {
		form[k] = posts[len(posts)-1].Form.Get(k)
	}
	return form, len(posts)
}

// TestCheckout drives billing.Service.CreateCheckout (checkout.go) against PostgreSQL and the
// double: a per-seat plan opens at the number of members (pending invitations not counted), any
// other plan at 1; a tenant whose subscription lives gets conflict and no session, unless Stripe
// says it has ended (its webhook not applied yet).
func TestCheckout(t *testing.T) {
	t.Parallel()
	w := newStripeWorld(t)
	ctx := context.Background()
	w.exec(t, `UPDATE subscription_plans SET per_seat = true WHERE key = 'professional'`)
	tenant, owner := w.tenant(t)
	sess := tenantkit.UserSession(owner)
	w.join(t, tenant, 2)
	w.exec(t, `INSERT INTO tenant_invitations (tenant_id, email, role, token_hash) VALUES ($1, 'pending@example.com', 'member', sha256('x'))`, tenant)

	t.Run("a per-seat checkout opens at the member count, another at 1", func(t *testing.T) {
		if _, err := w.bills.CreateCheckout(ctx, sess, tenant, w.plans["professional"].ID); err != nil {
			t.Fatal(err)
		}
		if f, _ := w.lastCheckout(t); f["line_items[0][price]"] != w.plans["professional"].PriceID || f["line_items[0][quantity]"] != "3" {
			t.Errorf("per-seat checkout %v; want professional's price at the 3 members", f)
		}
		if _, err := w.bills.CreateCheckout(ctx, sess, tenant, w.plans["enterprise"].ID); err != nil {
			t.Fatal(err)
		}
		if f, _ := w.lastCheckout(t); f["line_items[0][price]"] != w.plans["enterprise"].PriceID || f["line_items[0][quantity]"] != "1" {
			t.Errorf("checkout %v; want enterprise's price at 1", f)
		}
	})

	t.Run("a live subscription refuses a second checkout; one ended at Stripe does not", func(t *testing.T) {
		sub := w.subscribe(t, tenant, owner, "professional")
		_, before := w.lastCheckout(t)
		_, err := w.bills.CreateCheckout(ctx, sess, tenant, w.plans["enterprise"].ID)
		if tenantkit.ErrorCode(err) != tenantkit.Conflict {
			t.Errorf("second checkout: %v, want conflict", err)
		}
		if _, n := w.lastCheckout(t); n != before {
			t.Errorf("%d sessions requested for a refused checkout", n-before)
		}
		// Stripe ends the subscription; its webhook is not applied yet.
		if err := w.fake.FailPayment(sub); err != nil {
			t.Fatal(err)
		}
		if err := w.fake.ExhaustRetries(sub, "canceled"); err != nil {
			t.Fatal(err)
		}
		w.fake.Drain()
		if _, err := w.bills.CreateCheckout(ctx, sess, tenant, w.plans["enterprise"].ID); err != nil {
			t.Errorf("checkout after Stripe ended the subscription: %v", err)
		}
	})
}
