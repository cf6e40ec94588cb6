package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// billingWorld is a stack billing through the stateful Stripe double, with plans synced: starter
// bills no API calls, professional and enterprise do (a metered api_calls price each).
type billingWorld struct {
	s    *stack
	fake *stripefake.Server
	env  map[string]string
	plan map[string]planInfo // by key: id, price
	// calls is the metered price of each plan that has one, by key.
	calls map[string]string
}

func newBillingWorld(t *testing.T, extraEnv ...string) *billingWorld {
	t.Helper()
	fake := stripefake.New(stripefake.Options{Now: time.Now().Add(-24 * time.Hour)})
	t.Cleanup(fake.Close)
	s := newStack(t, append([]string{"STRIPE_SECRET_KEY", stripefake.TestKey, "STRIPE_API_URL", fake.URL,
		"STRIPE_WEBHOOK_SECRET", testWebhookSecret}, extraEnv...)...)
	exec(t, s, `UPDATE subscription_plans SET api_calls_unit_amount = CASE key WHEN 'professional' THEN 0.05 ELSE 0.02 END
		WHERE key IN ('professional', 'enterprise')`)
	w := &billingWorld{s: s, fake: fake, plan: map[string]planInfo{}, calls: map[string]string{},
		env: commandEnv(s.m, "STRIPE_SECRET_KEY", stripefake.TestKey, "STRIPE_API_URL", fake.URL)}
	var out bytes.Buffer
	if err := plansSync(context.Background(), func(k string) string { return w.env[k] }, &out); err != nil {
		t.Fatalf("plans sync: %v\n%s", err, out.String())
	}
	for _, key := range []string{"starter", "professional", "enterprise"} {
		r := s.row(t, "subscription_plans", "key = $1", key)
		w.plan[key] = planInfo{id: r["id"].(string), key: key, price: r["stripe_price_id"].(string)}
		if c, ok := r["stripe_api_calls_price_id"].(string); ok {
			w.calls[key] = c
		}
	}
	if len(w.calls) != 2 {
		t.Fatalf("metered prices %v, want professional's and enterprise's", w.calls)
	}
	return w
}

// deliver delivers every webhook the double generated since the last call, in order.
func (w *billingWorld) deliver(t *testing.T) {
	t.Helper()
	for _, e := range w.fake.Drain() {
		if st, err := stripefake.Deliver(w.s.m.HTTP.URL()+"/webhooks/stripe", testWebhookSecret, e); err != nil || st != http.StatusOK {
			t.Fatalf("delivery of %s %s: %d %v", e.Type, e.ID, st, err)
		}
	}
}

// subscribe checks a new tenant out on the plan and applies the webhooks; it returns the tenant,
// its owner and the subscription.
func (w *billingWorld) subscribe(t *testing.T, key string) (tenant, owner, sub string) {
	t.Helper()
	tenant, owner = w.s.tenant(t)
	w.s.ok(t, "createCheckoutSession", map[string]any{"tenantId": tenant, "planId": w.plan[key].id}, owner)
	cs, err := w.fake.CompleteCheckout(lastCheckout(t, w.fake, tenant).ID)
	if err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	return tenant, owner, cs.Subscription.ID
}

// items are the subscription's licensed price and quantity and its metered prices, at Stripe.
func (w *billingWorld) items(sub string) (price string, qty int64, metered []string) {
	s := w.fake.Subscription(sub)
	for _, it := range s.Items.Data {
		if it.Price.Recurring.UsageType == stripego.PriceRecurringUsageTypeMetered {
			metered = append(metered, it.Price.ID)
		} else if price == "" {
			price, qty = it.Price.ID, it.Quantity
		}
	}
	return price, qty, metered
}

// TestChangePlanMovesTheWholeSubscription: licensed and metered items follow the plan, the
// quantity stays, the metered usage moves to the new item (reported from the period's start), the
// stored plan follows Stripe's webhook, and concurrent changes end on one plan whole.
func TestChangePlanMovesTheWholeSubscription(t *testing.T) {
	t.Parallel()
	w := newBillingWorld(t)
	s := w.s
	tenant, owner, sub := w.subscribe(t, "starter")
	if err := w.fake.PortalSetQuantity(sub, 3); err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	usageItem := func() string {
		item, _ := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["stripe_usage_item_id"].(string)
		return item
	}
	// report flushes the api_calls meter and runs `tenantkit usage report`; it returns the period
	// total Stripe accepted for the tenant's metered item (-1 without one).
	report := func() int64 {
		t.Helper()
		if err := s.m.Meter.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := usageReport(context.Background(), func(k string) string { return w.env[k] }, &out); err != nil {
			t.Fatalf("usage report: %v (%s)", err, out.String())
		}
		total := int64(-1)
		if item := usageItem(); item != "" {
			if err := s.admin.QueryRow(context.Background(), `SELECT reported FROM tenantkit.usage_reports
				WHERE tenant_id = $1 AND item_id = $2 AND closed_at IS NULL`, tenant, item).Scan(&total); err != nil {
				t.Fatalf("usage report of %s: %v (%s)", item, err, out.String())
			}
		}
		return total
	}
	calls := 0
	for step, key := range []string{"professional", "enterprise", "starter", "enterprise"} {
		p := w.plan[key]
		before := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["plan_id"]
		out := s.ok(t, "changePlan", map[string]any{"tenantId": tenant, "planId": p.id}, owner)
		if out["planId"] != p.id || out["quantity"] != float64(3) || out["subscriptionId"] != sub {
			t.Errorf("→ %s: answer %v", key, out)
		}
		price, qty, metered := w.items(sub)
		wantMetered := []string{}
		if w.calls[key] != "" {
			wantMetered = []string{w.calls[key]}
		}
		if price != p.price || qty != 3 || len(metered) != len(wantMetered) || (len(metered) == 1 && metered[0] != wantMetered[0]) {
			t.Errorf("→ %s: Stripe bills %s × %d and metered %v; want %s × 3 and metered %v", key, price, qty, metered, p.price, wantMetered)
		}
		if got := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["plan_id"]; got != before {
			t.Errorf("→ %s: the stored plan changed to %v before Stripe's webhook", key, got)
		}
		w.deliver(t)
		if got := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["plan_id"]; got != p.id {
			t.Errorf("→ %s: stored plan %v after the webhook", key, got)
		}
		// The period's calls so far go to the plan's metered item, whole.
		calls += 7
		s.record(t, map[string]any{"tenantId": tenant, "metric": "api_calls", "quantity": 7, "idempotencyKey": fmt.Sprint("k", step)})
		total := report()
		item := usageItem()
		switch {
		case w.calls[key] == "" && (item != "" || total != -1):
			t.Errorf("→ %s: a usage item %q (total %d) for a plan that bills no calls", key, item, total)
		case w.calls[key] != "":
			st := w.fake.Subscription(sub)
			if got := w.fake.Usage(item, st.CurrentPeriodStart, st.CurrentPeriodEnd); got != total || total < int64(calls) {
				t.Errorf("→ %s: usage reported to %s = %d, want the period's total %d (≥ the %d calls recorded)", key, item, got, total, calls)
			}
		}
	}

	// Concurrent changes of one subscription (a double click, two admins): each answered 200,
	// Stripe ends on one plan with exactly that plan's items, and the stored plan follows.
	for round := range 4 {
		keys := []string{"professional", "enterprise", "starter"}
		if round == 3 { // the same change twice at once: both add the plan's metered price
			keys = []string{"enterprise", "enterprise"}
			s.ok(t, "changePlan", map[string]any{"tenantId": tenant, "planId": w.plan["starter"].id}, owner)
		}
		var wg sync.WaitGroup
		answers := make([]map[string]any, len(keys))
		for i, key := range keys {
			wg.Go(func() {
				answers[i] = s.ok(t, "changePlan", map[string]any{"tenantId": tenant, "planId": w.plan[key].id}, owner)
			})
		}
		wg.Wait()
		price, qty, metered := w.items(sub)
		var final string
		for key, p := range w.plan {
			if p.price == price {
				final = key
			}
		}
		found := false
		for _, a := range answers {
			found = found || a["planId"] == w.plan[final].id
		}
		if !found || qty != 3 || (w.calls[final] == "") != (len(metered) == 0) || (len(metered) == 1 && metered[0] != w.calls[final]) || len(metered) > 1 {
			t.Errorf("round %d: Stripe ends on %s × %d with metered %v; answers %v", round, final, qty, metered, answers)
		}
		w.deliver(t)
		if got := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["plan_id"]; got != w.plan[final].id {
			t.Errorf("round %d: stored plan %v, Stripe bills %s", round, got, final)
		}
	}
}
