package stripe

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// lastRequest is the last request the double answered with this method and a path starting with
// prefix.
func lastRequest(t *testing.T, fake *stripefake.Server, method, prefix string) stripefake.Request {
	t.Helper()
	reqs := fake.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Method == method && strings.HasPrefix(reqs[i].Path, prefix) {
			return reqs[i]
		}
	}
	t.Fatalf("no %s %s request", method, prefix)
	return stripefake.Request{}
}

// wantForm checks the parameters of a request against want ("" = absent).
func wantForm(t *testing.T, what string, form url.Values, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := form.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

// TestRequestsWeSend: the parameters and idempotency keys the adapter chooses for each call, and
// what they make of Stripe's state, read from the stateful double.
func TestRequestsWeSend(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	fake := stripefake.New(stripefake.Options{Now: at})
	t.Cleanup(fake.Close)
	c := New(stripefake.TestKey, fake.URL)
	ctx := context.Background()
	const tenant, plan = "7d0c8a52-3f0e-4a59-9d55-0b6f2f1d7e11", "b5f7f0f4-0d0a-4c2b-8f3e-6a8f3c1e2d44"

	t.Run("customer: one per tenant, whatever the retries", func(t *testing.T) {
		first, err := c.CreateCustomer(ctx, tenant, "Acme")
		if err != nil {
			t.Fatal(err)
		}
		again, err := c.CreateCustomer(ctx, tenant, "Acme")
		if err != nil || again != first {
			t.Fatalf("second CreateCustomer = %q, %v; want the same customer %q", again, err, first)
		}
		r := lastRequest(t, fake, http.MethodPost, "/v1/customers")
		if r.IdempotencyKey != "tk-customer-"+tenant || !r.Replayed {
			t.Errorf("key %q replayed %v; want tk-customer-<tenant>, replayed", r.IdempotencyKey, r.Replayed)
		}
		if cus := fake.Customer(first); cus.Name != "Acme" || cus.Metadata["tenant_id"] != tenant {
			t.Errorf("customer name %q metadata %v", cus.Name, cus.Metadata)
		}
	})

	var productID, priceID, meteredID string
	pp := billing.PlanPrice{Key: "pro", Name: "Pro", UnitAmount: 2900, Currency: "usd", Interval: "month", APICallsUnitAmount: "0.05"}
	t.Run("plan price: found again by lookup key, replaced when its terms change", func(t *testing.T) {
		var err error
		productID, priceID, err = c.EnsurePrice(ctx, pp)
		if err != nil {
			t.Fatal(err)
		}
		r := lastRequest(t, fake, http.MethodPost, "/v1/prices")
		if want := fmt.Sprintf("tk-price-pro-%s-2900-usd-month", productID); r.IdempotencyKey != want {
			t.Errorf("price key %q, want %q", r.IdempotencyKey, want)
		}
		wantForm(t, "price", r.Form, map[string]string{"lookup_key": "tenantkit_pro_month", "transfer_lookup_key": "true",
			"unit_amount": "2900", "currency": "usd", "recurring[interval]": "month", "metadata[plan_key]": "pro"})
		if k := lastRequest(t, fake, http.MethodPost, "/v1/products").IdempotencyKey; k != "tk-product-pro" {
			t.Errorf("product key %q", k)
		}
		prices := fake.Executed(http.MethodPost, "/v1/prices")
		if sameProduct, samePrice, err := c.EnsurePrice(ctx, pp); err != nil || sameProduct != productID || samePrice != priceID {
			t.Errorf("same terms: %s %s %v, want %s %s", sameProduct, samePrice, err, productID, priceID)
		}
		if n := fake.Executed(http.MethodPost, "/v1/prices"); n != prices {
			t.Errorf("same terms created %d prices", n-prices)
		}
		dearer := pp
		dearer.UnitAmount, dearer.ProductID = 3900, productID
		_, newPrice, err := c.EnsurePrice(ctx, dearer)
		if err != nil || newPrice == priceID {
			t.Fatalf("new terms: price %s (%v), want a new one", newPrice, err)
		}
		if p := fake.Price(newPrice); p.LookupKey != "tenantkit_pro_month" || p.UnitAmount != 3900 {
			t.Errorf("new price: lookup key %q amount %d", p.LookupKey, p.UnitAmount)
		}
		if p := fake.Price(priceID); p.LookupKey != "" {
			t.Errorf("old price keeps lookup key %q", p.LookupKey)
		}
		priceID = newPrice
	})

	t.Run("metered price: sum of usage, its own lookup key", func(t *testing.T) {
		mp := pp
		mp.ProductID = productID
		id, err := c.EnsureMeteredPrice(ctx, mp)
		meteredID = id
		if err != nil {
			t.Fatal(err)
		}
		r := lastRequest(t, fake, http.MethodPost, "/v1/prices")
		if want := fmt.Sprintf("tk-metered-pro-%s-0.05-usd-month", productID); r.IdempotencyKey != want {
			t.Errorf("metered key %q, want %q", r.IdempotencyKey, want)
		}
		wantForm(t, "metered price", r.Form, map[string]string{"lookup_key": "tenantkit_pro_api_calls_month",
			"recurring[usage_type]": "metered", "recurring[aggregate_usage]": "sum", "unit_amount_decimal": "0.05",
			"metadata[metric]": "api_calls", "unit_amount": ""})
		if again, err := c.EnsureMeteredPrice(ctx, mp); err != nil || again != id {
			t.Errorf("again: %s %v, want %s", again, err, id)
		}
	})

	var customerID string
	t.Run("checkout: the tenant and plan travel with the session and the subscription", func(t *testing.T) {
		var err error
		if customerID, err = c.CreateCustomer(ctx, tenant, "Acme"); err != nil {
			t.Fatal(err)
		}
		co := billing.Checkout{TenantID: tenant, PlanID: plan, CustomerID: customerID, PriceID: priceID, Quantity: 3, MeteredPriceID: meteredID,
			SuccessURL: "https://app.test/ok", CancelURL: "https://app.test/no", At: at, AutomaticTax: true}
		u, err := c.CreateCheckoutSession(ctx, co)
		if err != nil || !strings.HasPrefix(u, "https://") {
			t.Fatalf("checkout url %q, %v", u, err)
		}
		r := lastRequest(t, fake, http.MethodPost, "/v1/checkout/sessions")
		if want := fmt.Sprintf("tk-checkout-%s-%s-%d-taxtrue-q3", tenant, plan, at.Unix()/60); r.IdempotencyKey != want {
			t.Errorf("checkout key %q, want %q", r.IdempotencyKey, want)
		}
		wantForm(t, "checkout", r.Form, map[string]string{"mode": "subscription", "customer": customerID, "client_reference_id": tenant,
			"metadata[tenant_id]": tenant, "metadata[plan_id]": plan, "subscription_data[metadata][tenant_id]": tenant,
			"subscription_data[metadata][plan_id]": plan, "line_items[0][price]": priceID, "line_items[0][quantity]": "3",
			"line_items[1][price]": meteredID, "line_items[1][quantity]": "",
			"allow_promotion_codes": "true", "automatic_tax[enabled]": "true", "customer_update[address]": "auto"})
		// A second click within the minute: the same open session.
		if again, err := c.CreateCheckoutSession(ctx, co); err != nil || again != u {
			t.Errorf("retry: %q %v, want the same session %q", again, err, u)
		}
		sessions := fake.CheckoutSessions()
		if len(sessions) != 1 || sessions[0].ClientReferenceID != tenant {
			t.Errorf("%d sessions, want 1 for the tenant", len(sessions))
		}
		// Completed meanwhile: a new session, under a key naming the old one.
		if _, err := fake.CompleteCheckout(sessions[0].ID); err != nil {
			t.Fatal(err)
		}
		if again, err := c.CreateCheckoutSession(ctx, co); err != nil || again == u {
			t.Errorf("after completion: %q %v, want a new session", again, err)
		}
		if k := lastRequest(t, fake, http.MethodPost, "/v1/checkout/sessions").IdempotencyKey; !strings.HasSuffix(k, "-after-"+sessions[0].ID) {
			t.Errorf("key after completion %q", k)
		}
		if subs := fake.SubscriptionsOf(customerID); len(subs) != 1 || subs[0].Metadata["tenant_id"] != tenant || subs[0].Metadata["plan_id"] != plan {
			t.Errorf("subscriptions of the customer: %+v", subs)
		}
	})

	t.Run("checkout: sessions completed within the minute are followed to an open one", func(t *testing.T) {
		// Each checkout of the minute completes at once (as when each subscription it makes ends at
		// once): every new click gets an open session, never a completed one, and a retry of a
		// click gets the same session.
		other := "0c1e5b2a-8d3f-4e6a-9b7c-2f4d6e8a0b13"
		cus, err := c.CreateCustomer(ctx, other, "Other")
		if err != nil {
			t.Fatal(err)
		}
		co := billing.Checkout{TenantID: other, PlanID: plan, CustomerID: cus, PriceID: priceID, Quantity: 1,
			SuccessURL: "https://app.test/ok", CancelURL: "https://app.test/no", At: at}
		seen := map[string]bool{}
		for click := range maxCheckoutChain + 1 {
			u, err := c.CreateCheckoutSession(ctx, co)
			if err != nil || seen[u] {
				t.Fatalf("click %d: %q %v (seen before: %v)", click, u, err, seen[u])
			}
			if again, err := c.CreateCheckoutSession(ctx, co); err != nil || again != u {
				t.Fatalf("click %d retried: %q %v, want %q", click, again, err, u)
			}
			seen[u] = true
			var open []string
			for _, cs := range fake.CheckoutSessions() {
				if cs.Customer != nil && cs.Customer.ID == cus && cs.Status == "open" {
					open = append(open, cs.ID)
				}
			}
			if len(open) != 1 {
				t.Fatalf("click %d: open sessions %v, want 1", click, open)
			}
			if _, err := fake.CompleteCheckout(open[0]); err != nil {
				t.Fatal(err)
			}
		}
		// A further click in the same minute would follow more links than the bound: unavailable,
		// and no session made.
		before := len(fake.CheckoutSessions())
		if _, err := c.CreateCheckoutSession(ctx, co); tenantkit.ErrorCode(err) != tenantkit.Unavailable || len(fake.CheckoutSessions()) != before {
			t.Errorf("click past the bound: %v, %d sessions made", err, len(fake.CheckoutSessions())-before)
		}
	})

	t.Run("portal: per customer and minute", func(t *testing.T) {
		if _, err := c.CreatePortalSession(ctx, customerID, "https://app.test/billing"); err != nil {
			t.Fatal(err)
		}
		r := lastRequest(t, fake, http.MethodPost, "/v1/billing_portal/sessions")
		if !strings.HasPrefix(r.IdempotencyKey, "tk-portal-"+customerID+"-") {
			t.Errorf("portal key %q", r.IdempotencyKey)
		}
		wantForm(t, "portal", r.Form, map[string]string{"customer": customerID, "return_url": "https://app.test/billing"})
	})

	t.Run("cancel at period end, then resume: Stripe's subscription follows", func(t *testing.T) {
		sub := fake.SubscriptionsOf(customerID)[0].ID
		for i, cancel := range []bool{true, false} {
			got, err := c.SetCancelAtPeriodEnd(ctx, sub, cancel, fmt.Sprint("intent", i))
			if err != nil || got.ID != sub || got.CancelAtPeriodEnd != cancel {
				t.Fatalf("SetCancelAtPeriodEnd(%v) = %+v, %v", cancel, got, err)
			}
			if fake.Subscription(sub).CancelAtPeriodEnd != cancel {
				t.Errorf("Stripe's cancel_at_period_end is not %v", cancel)
			}
			if k, want := lastRequest(t, fake, http.MethodPost, "/v1/subscriptions/"+sub).IdempotencyKey, fmt.Sprintf("tk-cancel-%s-%t-intent%d", sub, cancel, i); k != want {
				t.Errorf("key %q, want %q", k, want)
			}
		}
	})

	t.Run("usage: set once per item, period and total", func(t *testing.T) {
		sub := fake.Subscription(fake.SubscriptionsOf(customerID)[0].ID)
		var item string
		for _, it := range sub.Items.Data {
			if it.Price.ID == meteredID {
				item = it.ID
			}
		}
		start := time.Unix(sub.CurrentPeriodStart, 0)
		for range 2 {
			if err := c.ReportUsage(ctx, item, start, 7); err != nil {
				t.Fatal(err)
			}
		}
		r := lastRequest(t, fake, http.MethodPost, "/v1/subscription_items/"+item+"/usage_records")
		if want := fmt.Sprintf("tk-usage-%s-%d-7", item, start.Unix()); r.IdempotencyKey != want || !r.Replayed {
			t.Errorf("usage key %q replayed %v, want %q replayed", r.IdempotencyKey, r.Replayed, want)
		}
		wantForm(t, "usage", r.Form, map[string]string{"quantity": "7", "action": "set", "timestamp": fmt.Sprint(start.Unix())})
	})
}
