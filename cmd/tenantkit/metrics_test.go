package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// TestSaasMetrics checks MRR and churn against what the stateful Stripe double bills: each
// subscription at its own price, quantity and interval, as its webhooks delivered them.
func TestSaasMetrics(t *testing.T) {
	t.Parallel()
	b := newBillingStack(t, time.Now().Add(-50*24*time.Hour))
	sc := b.fake.Client("")
	product := b.row(t, "subscription_plans", "key = 'starter'")["stripe_product_id"].(string)
	price := func(currency, interval string, count, amount int64) string {
		p, err := sc.Prices.New(&stripego.PriceParams{Product: stripego.String(product), Currency: stripego.String(currency),
			UnitAmount: stripego.Int64(amount), Recurring: &stripego.PriceRecurringParams{Interval: stripego.String(interval),
				IntervalCount: stripego.Int64(count)}})
		if err != nil {
			t.Fatal(err)
		}
		return p.ID
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Starter × 3 seats: 8,700 usd a month, even after Starter's list price changes.
	_, _, seats := b.subscribe(t, "starter")
	must(b.fake.PortalSetQuantity(seats, 3))
	// A yearly euro price no plan knows: 120,000 a year, 10,000 a month.
	_, _, cus := b.customer(t)
	_, err := b.fake.CreateSubscription(cus, []stripefake.Item{{Price: price("eur", "year", 1, 120000)}}, nil, 0, "")
	must(err)
	// Every two weeks, 1,000 usd × 2: 2,000 × 365 / 7 / 12 / 2 = 4,345.24 a month.
	_, _, cus = b.customer(t)
	_, err = b.fake.CreateSubscription(cus, []stripefake.Item{{Price: price("usd", "week", 2, 1000), Quantity: 2}}, nil, 0, "")
	must(err)
	// A trial is not revenue.
	_, _, cus = b.customer(t)
	_, err = b.fake.CreateSubscription(cus, []stripefake.Item{{Price: price("usd", "month", 1, 5000)}}, nil, 14, "")
	must(err)
	// Canceled at once, 50 days ago: ended long ago, not churn of the last 30 days.
	_, _, gone := b.subscribe(t, "starter")
	_, err = sc.Subscriptions.Cancel(gone, nil)
	must(err)
	// Cancellation requested 50 days ago, effective at the period end (20 days ago): churn now.
	_, _, leaving := b.subscribe(t, "starter")
	must(b.fake.PortalCancelAtPeriodEnd(leaving, true))
	// Professional, its renewal failing: past_due still counts (9,900).
	_, _, failing := b.subscribe(t, "professional")
	// Stored before tenantkit kept prices: counted apart, not in MRR.
	_, _, unpriced := b.subscribe(t, "enterprise")
	must(b.fake.Renew(leaving))
	must(b.fake.FailPayment(failing))
	b.deliver(t)
	exec(t, b.stack, `UPDATE tenantkit.stripe_subscriptions SET unit_amount = NULL WHERE id = $1`, unpriced)
	// Set by hand, without Stripe: not billed, not revenue.
	manual, _ := b.tenant(t)
	exec(t, b.stack, `UPDATE tenant_subscriptions SET status = 'active', plan_id = (SELECT id FROM subscription_plans WHERE key = 'enterprise') WHERE tenant_id = $1`, manual)
	// Starter's list price changes; subscriptions keep the price they are billed at.
	exec(t, b.stack, `UPDATE subscription_plans SET unit_amount = 3900 WHERE key = 'starter'`)
	var out bytes.Buffer
	must(plansSync(context.Background(), b.getenv, &out))

	q := `{ saasMetrics { tenantsChurned30d unpricedSubscriptions mrr { currency amount subscriptions } } }`
	data, code := b.graph(t, q, nil, map[string]string{"x-hasura-role": "admin"})
	if code != "" {
		t.Fatalf("saasMetrics: %s", code)
	}
	m := data["saasMetrics"].(map[string]any)
	mrr, _ := json.Marshal(m["mrr"])
	// usd: 8,700 + 4,345.24 + 9,900 = 22,945.24
	if want := `[{"amount":10000,"currency":"eur","subscriptions":1},{"amount":22945,"currency":"usd","subscriptions":3}]`; string(mrr) != want {
		t.Errorf("mrr = %s, want %s", mrr, want)
	}
	if m["tenantsChurned30d"] != float64(1) || m["unpricedSubscriptions"] != float64(1) {
		t.Errorf("churned %v (want 1: ended 20 days ago, canceled 50), unpriced %v (want 1)", m["tenantsChurned30d"], m["unpricedSubscriptions"])
	}
	if _, code := b.graph(t, q, nil, session(b.user(t, ""))); code != "forbidden" {
		t.Errorf("as a user: code %q", code)
	}
}

// TestSaasMetricsCounts checks the tenant counts, on rows set by hand.
func TestSaasMetricsCounts(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	statuses := []string{"active", "active", "active", "trialing", "past_due", "canceled"}
	for _, st := range statuses {
		tenant, _ := s.tenant(t)
		for range 2 {
			exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'member')`, tenant, s.user(t, ""))
		}
		exec(t, s, `UPDATE tenant_subscriptions SET status = $2::subscription_status WHERE tenant_id = $1`, tenant, st)
	}
	exec(t, s, `UPDATE tenants SET created_at = now() - interval '100 days' WHERE slug IN (SELECT slug FROM tenants ORDER BY slug LIMIT 2)`)
	// A deleted tenant (with members of its own) counts nowhere.
	gone, _ := s.tenant(t)
	exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'member')`, gone, s.user(t, ""))
	exec(t, s, `UPDATE tenants SET deleted_at = now() WHERE id = $1`, gone)
	q := `{ saasMetrics { tenantsTotal tenantsActive tenantsTrialing tenantsPastDue usersTotal tenantsCreated30d tenantsChurned30d averageTenantAgeDays mrr { currency } } }`
	data, code := s.graph(t, q, nil, map[string]string{"x-hasura-role": "admin"})
	if code != "" {
		t.Fatalf("saasMetrics: %s", code)
	}
	m := data["saasMetrics"].(map[string]any)
	want := map[string]float64{"tenantsTotal": 6, "tenantsActive": 3, "tenantsTrialing": 1, "tenantsPastDue": 1, "usersTotal": 18,
		"tenantsCreated30d": 4, "tenantsChurned30d": 0}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if age := m["averageTenantAgeDays"].(float64); age < 33 || age > 34 {
		t.Errorf("averageTenantAgeDays = %v, want 33.3 (two of six tenants 100 days old)", age)
	}
	if mrr, _ := json.Marshal(m["mrr"]); string(mrr) != `[]` {
		t.Errorf("mrr without Stripe subscriptions = %s, want none", mrr)
	}
}
