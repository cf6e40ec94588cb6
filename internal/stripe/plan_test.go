package stripe

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/stripefake"
	"github.com/tenantkit/tenantkit/internal/stripetest"
)

// stripeMock is one stripe-mock for the package's tests, started on first use.
var stripeMock = sync.OnceValues(func() (*stripetest.Server, error) { return stripetest.Start(context.Background()) })

// TestRequestsAcceptedByStripeMock: every request the adapter sends (the plan change and its
// preview, checkout, portal, customers, plan prices, usage, cancellation at period end) is one
// Stripe's API specification (stripe-mock validates against it) accepts. What the requests say is
// TestRequestsWeSend's, against the stateful double: stripe-mock's answers are canned.
func TestRequestsAcceptedByStripeMock(t *testing.T) {
	if testing.Short() {
		t.Skip("stripe-mock: not in -short")
	}
	sm, err := stripeMock()
	if err != nil {
		t.Fatal(err)
	}
	c := New(stripetest.TestKey, sm.URL)
	ctx := context.Background()
	u := billing.ItemsUpdate{SubscriptionID: "sub_123", PlanID: "plan", Intent: "1", ProrationBehavior: "always_invoice",
		ProrationDate: time.Now().Truncate(time.Second),
		Items:         []billing.ItemChange{{ID: "si_l", PriceID: "price_new", Quantity: 3}, {ID: "si_m", Delete: true, ClearUsage: true}, {PriceID: "price_calls"}}}
	if _, err := c.UpdateItems(ctx, u); err != nil {
		t.Errorf("update: %v", err)
	}
	u.ProrationBehavior = "create_prorations"
	if _, err := c.PreviewInvoice(ctx, u); err != nil {
		t.Errorf("preview with a date: %v", err)
	}
	u.ProrationDate = time.Time{}
	if _, err := c.PreviewInvoice(ctx, u); err != nil {
		t.Errorf("preview: %v", err)
	}
	for _, tax := range []bool{false, true} {
		if _, err := c.CreateCheckoutSession(ctx, billing.Checkout{TenantID: "t", PlanID: "p", CustomerID: "cus_1", PriceID: "price_1",
			MeteredPriceID: "price_2", SuccessURL: "https://app.test/ok", CancelURL: "https://app.test/no", At: time.Now(), AutomaticTax: tax}); err != nil {
			t.Errorf("checkout (automatic tax %v): %v", tax, err)
		}
	}
	if _, err := c.CreateCustomer(ctx, "t", "Acme"); err != nil {
		t.Errorf("customer: %v", err)
	}
	// stripe-mock ignores lookup_keys: its fixture price never matches, so both create.
	pp := billing.PlanPrice{Key: "pro", Name: "Pro", UnitAmount: 2900, Currency: "usd", Interval: "month", APICallsUnitAmount: "0.05"}
	product, _, err := c.EnsurePrice(ctx, pp)
	if err != nil {
		t.Errorf("plan price: %v", err)
	}
	pp.ProductID = product
	if _, err := c.EnsureMeteredPrice(ctx, pp); err != nil {
		t.Errorf("metered price: %v", err)
	}
	if err := c.ReportUsage(ctx, "si_m", time.Now().Truncate(time.Hour), 7); err != nil {
		t.Errorf("usage: %v", err)
	}
	if _, err := c.CreatePortalSession(ctx, "cus_1", "https://app.test/billing"); err != nil {
		t.Errorf("portal: %v", err)
	}
	for _, cancel := range []bool{true, false} {
		if _, err := c.SetCancelAtPeriodEnd(ctx, "sub_123", cancel, "i"); err != nil {
			t.Errorf("cancel at period end %v: %v", cancel, err)
		}
	}
}

// TestPlanRequestsAgainstTheDouble: what the adapter makes of Stripe's answers.
func TestPlanRequestsAgainstTheDouble(t *testing.T) {
	fake := stripefake.New(stripefake.Options{Now: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)})
	t.Cleanup(fake.Close)
	sc := fake.Client("")
	ctx := context.Background()
	prod, err := sc.Products.New(&stripego.ProductParams{Name: stripego.String("Plans")})
	if err != nil {
		t.Fatal(err)
	}
	price := func(amount int64) string {
		p, err := sc.Prices.New(&stripego.PriceParams{Product: stripego.String(prod.ID), Currency: stripego.String("usd"),
			UnitAmount: stripego.Int64(amount), Recurring: &stripego.PriceRecurringParams{Interval: stripego.String("month")}})
		if err != nil {
			t.Fatal(err)
		}
		return p.ID
	}
	basic, pro := price(1000), price(2500)
	cus, err := sc.Customers.New(&stripego.CustomerParams{Name: stripego.String("Acme")})
	if err != nil {
		t.Fatal(err)
	}
	subID, err := fake.CreateSubscription(cus.ID, []stripefake.Item{{Price: basic, Quantity: 2}}, nil, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	c := New(stripefake.TestKey, fake.URL)
	sub, err := c.GetSubscription(ctx, subID)
	if err != nil || len(sub.Items) != 1 || sub.Items[0].Quantity != 2 || sub.Items[0].Metered || sub.Items[0].Interval != "month" {
		t.Fatalf("subscription items %+v (%v)", sub.Items, err)
	}
	item := sub.Items[0].ID
	fake.Advance(5 * 24 * time.Hour)
	// Six portal-style changes leave twelve pending proration lines: the preview reads them all
	// through upcoming/lines.
	for i := range 6 {
		p := []string{pro, basic}[i%2]
		if _, err := c.UpdateItems(ctx, billing.ItemsUpdate{SubscriptionID: subID, Intent: fmt.Sprint("portal", i), ProrationBehavior: "create_prorations",
			Items: []billing.ItemChange{{ID: item, PriceID: p, Quantity: 2}}}); err != nil {
			t.Fatal(err)
		}
	}
	inv, err := c.PreviewInvoice(ctx, billing.ItemsUpdate{SubscriptionID: subID, ProrationBehavior: "create_prorations",
		Items: []billing.ItemChange{{ID: item, PriceID: pro, Quantity: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	prorations := 0
	for _, l := range inv.Lines {
		sum += l.Amount
		if l.Proration {
			prorations++
		}
	}
	if len(inv.Lines) != 15 || prorations != 14 || sum != inv.Total || inv.ProrationDate.Unix() != fake.Now().Unix() {
		t.Fatalf("preview: %d lines (%d prorations), sum %d, total %d, proration date %s", len(inv.Lines), prorations, sum, inv.Total, inv.ProrationDate)
	}

	// Refusals: an item removed meanwhile is a conflict (billing plans again); a state refusal is
	// invalid; nothing Stripe answers with a 4xx is internal.
	if _, err := c.UpdateItems(ctx, billing.ItemsUpdate{SubscriptionID: subID, Intent: "x", ProrationBehavior: "none",
		Items: []billing.ItemChange{{ID: "si_gone", Delete: true}}}); tenantkit.ErrorCode(err) != tenantkit.Conflict {
		t.Errorf("missing item: %v", err)
	}
	for status, want := range map[int]string{
		http.StatusUnauthorized: tenantkit.Unavailable, http.StatusForbidden: tenantkit.Unavailable,
		http.StatusNotFound: tenantkit.Unavailable, http.StatusConflict: tenantkit.Unavailable,
		http.StatusTooManyRequests: tenantkit.Unavailable, http.StatusPaymentRequired: tenantkit.Invalid,
		http.StatusBadRequest: tenantkit.Invalid, http.StatusInternalServerError: tenantkit.Unavailable,
	} {
		// Twice: stripe-go retries some (409, 5xx) once, with the same key.
		fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: "/v1/subscriptions/" + subID, Status: status, Times: 2})
		update := func(intent string) error {
			_, err := c.UpdateItems(ctx, billing.ItemsUpdate{SubscriptionID: subID, Intent: intent, ProrationBehavior: "none",
				Items: []billing.ItemChange{{ID: item, Quantity: 3}}})
			return err
		}
		if code := tenantkit.ErrorCode(update(fmt.Sprint("f", status))); code != want {
			t.Errorf("Stripe answering %d: code %s, want %s", status, code, want)
		}
		for i := 0; update(fmt.Sprint("drain", status, i)) != nil && i < 2; i++ {
		}
		fake.Fail(stripefake.Failure{Method: http.MethodGet, PathPrefix: "/v1/subscriptions/" + subID, Status: status, Times: 2})
		if _, err := c.GetSubscription(ctx, subID); tenantkit.ErrorCode(err) == tenantkit.Internal {
			t.Errorf("Stripe answering %d to a read: internal (%v)", status, err)
		}
		for i := 0; i < 2; i++ {
			if _, err := c.GetSubscription(ctx, subID); err == nil {
				break
			}
		}
	}
	// An idempotency key reused with other parameters (idempotency_error, 400): not the caller's.
	u := billing.ItemsUpdate{SubscriptionID: subID, Intent: "same", ProrationBehavior: "none", Items: []billing.ItemChange{{ID: item, Quantity: 4}}}
	if _, err := c.UpdateItems(ctx, u); err != nil {
		t.Fatal(err)
	}
	u.Items[0].Quantity = 5
	if _, err := c.UpdateItems(ctx, u); tenantkit.ErrorCode(err) != tenantkit.Unavailable {
		t.Errorf("idempotency_error: %v", err)
	}
	if _, err := sc.Subscriptions.Cancel(subID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateItems(ctx, billing.ItemsUpdate{SubscriptionID: subID, Intent: "after-cancel", ProrationBehavior: "always_invoice",
		Items: []billing.ItemChange{{ID: item, PriceID: pro, Quantity: 2}}}); tenantkit.ErrorCode(err) != tenantkit.Invalid {
		t.Errorf("update of a canceled subscription: %v", err)
	}
	if _, err := c.PreviewInvoice(ctx, billing.ItemsUpdate{SubscriptionID: subID, ProrationBehavior: "create_prorations",
		Items: []billing.ItemChange{{ID: item, PriceID: pro, Quantity: 2}}}); tenantkit.ErrorCode(err) != tenantkit.Invalid {
		t.Errorf("preview of a canceled subscription: %v", err)
	}
}
