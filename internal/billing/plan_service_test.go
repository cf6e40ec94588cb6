package billing_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

// effectivePlan is the key of the tenant's effective plan, as its owner sees it.
func (w *stripeWorld) effectivePlan(t *testing.T, tenant, owner string) string {
	t.Helper()
	e, ok, err := w.bills.Entitlements(context.Background(), tenantkit.UserSession(owner), tenant)
	if err != nil || !ok {
		t.Fatalf("entitlements: %v %v", ok, err)
	}
	return e.Plan.Key
}

// TestChangePlan drives billing.Service.ChangePlan and PreviewPlanChange (plan.go) against
// PostgreSQL and the Stripe double: the whole subscription follows the plan (licensed item at its
// quantity, metered items swapped with their usage cleared); the stored plan follows Stripe's
// webhook, not the answer; a preview changes nothing and applying it sends its proration date,
// invoicing exactly what it previewed; a date outside the period is preview_expired, one that is no
// whole second invalid; an ended subscription cannot be changed.
func TestChangePlan(t *testing.T) {
	t.Parallel()
	w := newStripeWorld(t)
	ctx := context.Background()
	tenant, owner := w.tenant(t)
	sess := tenantkit.UserSession(owner)
	sub := w.subscribe(t, tenant, owner, "starter")
	if err := w.fake.PortalSetQuantity(sub, 2); err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	w.fake.Advance(5*24*time.Hour + 3*time.Hour + 11*time.Second)
	path := "/v1/subscriptions/" + sub

	t.Run("the whole subscription moves, the stored plan follows the webhook", func(t *testing.T) {
		view, err := w.bills.ChangePlan(ctx, sess, tenant, w.plans["professional"].ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if view.Plan != w.plans["professional"].ID || view.Quantity != 2 {
			t.Errorf("answer: plan %s quantity %d, want professional at 2", view.Plan, view.Quantity)
		}
		_, price, qty, metered := w.licensed(sub)
		if price != w.plans["professional"].PriceID || qty != 2 || !slices.Equal(metered, []string{w.plans["professional"].APICallsPriceID}) {
			t.Errorf("at Stripe: price %s × %d, metered %v; want professional's price × 2 and its metered price", price, qty, metered)
		}
		posts := w.posts(path)
		if f := posts[len(posts)-1].Form; f.Get("proration_behavior") != "always_invoice" || f.Get("proration_date") != "" {
			t.Errorf("change sent %v; want always_invoice, no proration date", f)
		}
		if got := w.effectivePlan(t, tenant, owner); got != "starter" {
			t.Errorf("before the webhook the stored plan is %s, want starter still", got)
		}
		w.deliver(t)
		if got := w.effectivePlan(t, tenant, owner); got != "professional" {
			t.Errorf("after the webhook the plan is %s, want professional", got)
		}

		// An upgrade's preview: its proration is charged now, the renewal bills the new plan.
		up, err := w.bills.PreviewPlanChange(ctx, sess, tenant, w.plans["enterprise"].ID)
		if err != nil {
			t.Fatal(err)
		}
		if up.Proration <= 0 || up.AmountDueNow != up.Proration || up.AmountDueAtRenewal != 2*29900 {
			t.Errorf("upgrade preview %+v; want a positive proration charged now, 2 × 29900 at renewal", up)
		}
		if _, err := w.bills.ChangePlan(ctx, sess, tenant, w.plans["enterprise"].ID, nil); err != nil {
			t.Fatal(err)
		}
		posts = w.posts(path)
		f := posts[len(posts)-1].Form
		if f.Get("items[1][deleted]") != "true" || f.Get("items[1][clear_usage]") != "true" || f.Get("items[2][price]") != w.plans["enterprise"].APICallsPriceID {
			t.Errorf("change sent %v; want professional's metered item deleted with its usage, enterprise's added", f)
		}
		_, price, qty, metered = w.licensed(sub)
		if price != w.plans["enterprise"].PriceID || qty != 2 || !slices.Equal(metered, []string{w.plans["enterprise"].APICallsPriceID}) {
			t.Errorf("at Stripe: price %s × %d, metered %v; want enterprise's price × 2 and its metered price only", price, qty, metered)
		}
		w.deliver(t)
	})

	t.Run("a preview changes nothing; applying it sends its proration date and invoices what it said", func(t *testing.T) {
		invoices, changes := len(w.fake.Invoices(sub)), len(w.posts(path))
		p, err := w.bills.PreviewPlanChange(ctx, sess, tenant, w.plans["professional"].ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, price, _, _ := w.licensed(sub); price != w.plans["enterprise"].PriceID || len(w.fake.Invoices(sub)) != invoices || len(w.posts(path)) != changes {
			t.Fatal("the preview changed the subscription")
		}
		if p.Proration >= 0 || p.AmountDueNow != 0 || p.ProrationDate.IsZero() || p.AmountDueAtRenewal != max(0, 2*9900+p.Proration) ||
			p.RenewsAt.Unix() != w.fake.Subscription(sub).CurrentPeriodEnd {
			t.Errorf("downgrade preview %+v; want a credit, nothing due now, 2 × 9900 less the credit at the period's end", p)
		}
		w.fake.Advance(47 * time.Second) // the owner reads the preview, then confirms
		at := p.ProrationDate
		if _, err := w.bills.ChangePlan(ctx, sess, tenant, w.plans["professional"].ID, &at); err != nil {
			t.Fatal(err)
		}
		posts := w.posts(path)
		if got := posts[len(posts)-1].Form.Get("proration_date"); got != strconv.FormatInt(at.Unix(), 10) {
			t.Errorf("proration_date %q, want the preview's %d", got, at.Unix())
		}
		ins := w.fake.Invoices(sub)
		if up := ins[len(ins)-1]; up.BillingReason != "subscription_update" || up.Total != p.Proration {
			t.Errorf("invoiced %d (%s), previewed %d", up.Total, up.BillingReason, p.Proration)
		}
		w.deliver(t)
	})

	t.Run("a proration date outside the period, or not a whole second, is refused", func(t *testing.T) {
		changes := len(w.posts(path))
		s := w.fake.Subscription(sub)
		before := time.Unix(s.CurrentPeriodStart, 0).Add(-time.Second)
		_, err := w.bills.ChangePlan(ctx, sess, tenant, w.plans["enterprise"].ID, &before)
		if code := tenantkit.ErrorCode(err); code != billing.PreviewExpired {
			t.Errorf("a date before the period: %v, want preview_expired", err)
		}
		end := time.Unix(s.CurrentPeriodEnd, 0)
		_, err = w.bills.ChangePlan(ctx, sess, tenant, w.plans["enterprise"].ID, &end)
		if code := tenantkit.ErrorCode(err); code != billing.PreviewExpired {
			t.Errorf("the period's end: %v, want preview_expired", err)
		}
		frac := time.Unix(s.CurrentPeriodStart, 0).Add(1500 * time.Millisecond)
		_, err = w.bills.ChangePlan(ctx, sess, tenant, w.plans["enterprise"].ID, &frac)
		if code := tenantkit.ErrorCode(err); code != tenantkit.Invalid {
			t.Errorf("a fraction of a second: %v, want invalid", err)
		}
		if n := len(w.posts(path)) - changes; n != 0 {
			t.Errorf("%d changes sent for refused calls", n)
		}
	})

	t.Run("a refused change reads the subscription once to explain it", func(t *testing.T) {
		reads := w.fake.Executed(http.MethodGet, path)
		w.fake.FailNext(http.MethodPost, path, http.StatusBadRequest,
			`{"error":{"type":"invalid_request_error","message":"This change is not allowed."}}`)
		_, err := w.bills.ChangePlan(ctx, sess, tenant, w.plans["enterprise"].ID, nil)
		if code := tenantkit.ErrorCode(err); code != tenantkit.Invalid {
			t.Errorf("a refused change: %v, want invalid", err)
		}
		// One read plans the change; one, after the refusal, finds the items unchanged and the
		// subscription live: the refusal stands as Stripe gave it.
		if n := w.fake.Executed(http.MethodGet, path) - reads; n != 2 {
			t.Errorf("%d reads of the subscription from Stripe, want 2", n)
		}
	})

	t.Run("an ended subscription cannot be changed", func(t *testing.T) {
		other, otherOwner := w.tenant(t)
		osub := w.subscribe(t, other, otherOwner, "starter")
		if err := w.fake.FailPayment(osub); err != nil {
			t.Fatal(err)
		}
		if err := w.fake.ExhaustRetries(osub, "canceled"); err != nil {
			t.Fatal(err)
		}
		// Stripe ended it; its webhook is not applied yet, then it is.
		for _, step := range []string{"ended at Stripe", "ended as stored"} {
			reads := w.fake.Executed(http.MethodGet, "/v1/subscriptions/"+osub)
			_, err := w.bills.ChangePlan(ctx, tenantkit.UserSession(otherOwner), other, w.plans["professional"].ID, nil)
			if tenantkit.ErrorCode(err) != tenantkit.Conflict {
				t.Errorf("%s: changing it: %v, want conflict", step, err)
			}
			if n := w.fake.Executed(http.MethodGet, "/v1/subscriptions/"+osub) - reads; step == "ended as stored" && n != 0 {
				t.Errorf("%s: %d reads from Stripe, want none", step, n)
			}
			w.deliver(t)
		}
		if n := len(w.posts("/v1/subscriptions/" + osub)); n != 0 {
			t.Errorf("%d changes sent for an ended subscription", n)
		}
	})
}
