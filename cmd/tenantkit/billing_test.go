package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/stripetest"
)

func serviceSession() map[string]string { return map[string]string{"x-hasura-role": "service"} }

// record sends one recordUsage batch as a trusted backend.
func (s *stack) record(t *testing.T, events ...map[string]any) result {
	t.Helper()
	list := make([]any, len(events))
	for i, e := range events {
		list[i] = e
	}
	res, err := s.hasura.Action(context.Background(), "recordUsage", map[string]any{"events": list}, serviceSession())
	if err != nil {
		t.Fatal(err)
	}
	if res.HasuraError != nil {
		t.Fatalf("Hasura would reject: %v", res.HasuraError)
	}
	r := result{status: res.Status}
	if res.Status >= 400 {
		ae, _ := res.ActionError()
		r.code, r.msg = ae.Code, ae.Message
		return r
	}
	_ = res.JSON(&r.out)
	return r
}

func (s *stack) graph(t *testing.T, q string, vars map[string]any, sess map[string]string) (data map[string]any, code string) {
	t.Helper()
	res, err := s.hasura.RemoteSchema(context.Background(), "tenantkit", q, vars, sess)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Data   map[string]any
		Errors []struct{ Extensions struct{ Code string } }
	}
	if err := res.JSON(&body); err != nil {
		t.Fatal(err)
	}
	if len(body.Errors) > 0 {
		return nil, body.Errors[0].Extensions.Code
	}
	return body.Data, ""
}

func TestUsage(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	// Two hours back, so that every event below (up to 50 minutes later) lies in the past.
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	ev := func(tenant, metric, key string, q float64, at time.Time) map[string]any {
		return map[string]any{"tenantId": tenant, "metric": metric, "quantity": q, "idempotencyKey": key, "occurredAt": at.Format(time.RFC3339Nano)}
	}
	usage := func(t *testing.T, tenant, user, granularity string) map[string]float64 {
		t.Helper()
		q := `query($t: ID!, $g: String, $from: Time, $to: Time) {
			usage(tenantId: $t, granularity: $g, from: $from, to: $to) { metric periodStart periodEnd quantity } }`
		data, code := s.graph(t, q, map[string]any{"t": tenant, "g": granularity,
			"from": hour.AddDate(0, 0, -2).Format(time.RFC3339), "to": hour.AddDate(0, 0, 2).Format(time.RFC3339)}, session(user))
		if code != "" {
			t.Fatalf("usage: %s", code)
		}
		out := map[string]float64{}
		for _, row := range data["usage"].([]any) {
			r := row.(map[string]any)
			out[fmt.Sprintf("%s@%s", r["metric"], r["periodStart"])] = r["quantity"].(float64)
		}
		return out
	}

	t.Run("each event counts once, across retries and concurrent batches", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var batch []map[string]any
				for i := range 200 { // workers overlap: keys 0..399 sent by two workers each
					k := (w/2)*200 + i
					batch = append(batch, ev(tenant, "api_calls", fmt.Sprint("k", k), 1, hour.Add(time.Duration(k%50)*time.Minute)))
				}
				if r := s.record(t, batch...); r.status != 200 {
					t.Errorf("batch: %d %s", r.status, r.code)
				}
			}()
		}
		wg.Wait()
		again := s.record(t, ev(tenant, "api_calls", "k0", 1, hour))
		if again.out["recorded"] != float64(0) || again.out["duplicates"] != float64(1) {
			t.Errorf("a retried event: %v", again.out)
		}
		got := usage(t, tenant, owner, "day")
		var total float64
		for k, v := range got {
			if len(k) > 9 && k[:9] == "api_calls" {
				total += v
			}
		}
		if total != 800 {
			t.Errorf("api_calls = %v, want 800 (distinct keys): %v", total, got)
		}
	})

	t.Run("a gauge keeps the latest observation, whatever the arrival order", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		s.record(t, ev(tenant, "storage_gb", "g2", 7, hour.Add(20*time.Minute)))
		s.record(t, ev(tenant, "storage_gb", "g1", 9, hour.Add(10*time.Minute))) // older, arrives late
		s.record(t, ev(tenant, "storage_gb", "g3", 5, hour.Add(30*time.Minute)))
		got := usage(t, tenant, owner, "hour")
		if v := got["storage_gb@"+hour.Format(time.RFC3339)]; v != 5 {
			t.Errorf("storage_gb = %v, want 5 (the latest): %v", v, got)
		}
	})

	t.Run("bad batches are refused whole", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		for name, events := range map[string][]map[string]any{
			"unknown tenant": {ev(tenant, "api_calls", "ok", 1, hour), ev("00000000-0000-4000-8000-000000000000", "api_calls", "x", 1, hour)},
			"bad metric":     {ev(tenant, "API Calls", "x", 1, hour)},
			"negative":       {ev(tenant, "api_calls", "x", -1, hour)},
			"no key":         {ev(tenant, "api_calls", "", 1, hour)},
			"too old":        {ev(tenant, "api_calls", "x", 1, hour.AddDate(0, 0, -60))},
		} {
			if r := s.record(t, events...); r.code != "invalid" {
				t.Errorf("%s: %d %q", name, r.status, r.code)
			}
		}
		big := make([]map[string]any, 1001)
		for i := range big {
			big[i] = ev(tenant, "api_calls", fmt.Sprint(i), 1, hour)
		}
		if r := s.record(t, big...); r.code != "invalid" {
			t.Errorf("1,001 events: %d %q", r.status, r.code)
		}
		if got := usage(t, tenant, owner, "day"); len(got) != 0 {
			t.Errorf("usage after refusals: %v", got)
		}
	})

	t.Run("only trusted backends record; only members read", func(t *testing.T) {
		t.Parallel()
		tenant, _ := s.tenant(t)
		// Hasura would refuse role user (no permission); the handler refuses it too.
		body, _ := json.Marshal(map[string]any{
			"action": map[string]string{"name": "recordUsage"}, "input": map[string]any{"events": []any{ev(tenant, "api_calls", "x", 1, hour)}},
			"session_variables": session(s.user(t, "")),
		})
		req, _ := http.NewRequest(http.MethodPost, s.m.HTTP.URL()+"/actions/recordUsage", bytes.NewReader(body))
		req.Header.Set("X-Tenantkit-Secret", testSecret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("recordUsage as a user: %d, want 403", res.StatusCode)
		}
		s.record(t, ev(tenant, "api_calls", "y", 3, hour))
		if got := usage(t, tenant, s.user(t, ""), "day"); len(got) != 0 {
			t.Errorf("a stranger sees usage: %v", got)
		}
		if _, code := s.graph(t, `query($t: ID!) { usage(tenantId: $t, granularity: "week") { metric } }`, map[string]any{"t": tenant}, session(s.user(t, ""))); code != "invalid" {
			t.Errorf("granularity week: %q", code)
		}
	})
}

func TestActionsAreMetered(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	tenant, owner := s.tenant(t)
	for range 5 {
		s.ok(t, "checkPermission", map[string]any{"tenantId": tenant, "permission": "projects:read"}, owner)
	}
	s.fails(t, "invalid", "checkPermission", map[string]any{"tenantId": tenant, "permission": "bad"}, owner) // failures do not count
	s.ok(t, "checkPermission", map[string]any{"tenantId": "00000000-0000-4000-8000-000000000000", "permission": "projects:read"}, owner)
	if err := s.m.Meter.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := s.count(t, `SELECT coalesce(sum(quantity), 0)::int FROM tenantkit.usage_hours($1) WHERE metric = 'api_calls'`, tenant); n != 5 {
		t.Errorf("api_calls = %d, want 5", n)
	}
	if err := s.m.Meter.Flush(context.Background()); err != nil { // nothing new: nothing added
		t.Fatal(err)
	}
	if n := s.count(t, `SELECT coalesce(sum(quantity), 0)::int FROM tenantkit.usage_hours($1) WHERE metric = 'api_calls'`, tenant); n != 5 {
		t.Errorf("api_calls after an empty flush = %d, want 5", n)
	}
}

func TestStripeCustomer(t *testing.T) {
	t.Parallel()

	t.Run("a new tenant gets one Stripe customer, whatever the deliveries", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, withStripe(t)...)
		tenant, _ := s.tenant(t)
		row := s.row(t, "tenants", "id = $1", tenant)
		if st := s.deliver(t, "tenant_created", "INSERT", row["id"]); st != http.StatusOK {
			t.Fatalf("event: %d", st)
		}
		customer := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["stripe_customer_id"]
		if c, _ := customer.(string); len(c) < 5 || c[:4] != "cus_" {
			t.Fatalf("stripe_customer_id = %v", customer)
		}
		// the same delivery, and another delivery of the same row: the customer stays the same
		s.deliver(t, "tenant_created", "INSERT", row["id"])
		if st := s.manualEvent(t, "tenant_created", row); st != http.StatusOK {
			t.Fatalf("manual redelivery: %d", st)
		}
		if again := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["stripe_customer_id"]; again != customer {
			t.Errorf("customer changed from %v to %v", customer, again)
		}
	})

	t.Run("Stripe unreachable: 5xx so Hasura retries, nothing written", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, "STRIPE_SECRET_KEY", stripetest.TestKey, "STRIPE_API_URL", "http://127.0.0.1:1", "STRIPE_WEBHOOK_SECRET", testWebhookSecret)
		tenant, _ := s.tenant(t)
		row := s.row(t, "tenants", "id = $1", tenant)
		if st := s.deliver(t, "tenant_created", "INSERT", row["id"]); st != http.StatusServiceUnavailable {
			t.Errorf("event with Stripe down: %d, want 503", st)
		}
		if c := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["stripe_customer_id"]; c != nil {
			t.Errorf("stripe_customer_id = %v, want none", c)
		}
	})

	t.Run("billing off: the event is acknowledged and does nothing", func(t *testing.T) {
		t.Parallel()
		s := newStack(t)
		tenant, _ := s.tenant(t)
		if st := s.deliver(t, "tenant_created", "INSERT", s.row(t, "tenants", "id = $1", tenant)["id"]); st != http.StatusOK {
			t.Errorf("event without Stripe: %d", st)
		}
	})
}

func TestCheckoutAndPortal(t *testing.T) {
	t.Parallel()
	s := newStack(t, withStripe(t)...)
	tenant, owner := s.tenant(t)
	admin, member := s.user(t, ""), s.user(t, "")
	exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'admin'), ($1, $3, 'member')`, tenant, admin, member)
	pro := s.row(t, "subscription_plans", "key = 'professional'")["id"].(string)
	checkout := map[string]any{"tenantId": tenant, "planId": pro}

	s.fails(t, "invalid", "createCheckoutSession", checkout, owner) // not linked to Stripe yet

	sm, _ := stripeMock()
	var out bytes.Buffer
	env := commandEnv(s.m, "STRIPE_SECRET_KEY", stripetest.TestKey, "STRIPE_API_URL", sm.URL)
	if err := plansSync(context.Background(), func(k string) string { return env[k] }, &out); err != nil {
		t.Fatalf("plans sync: %v", err)
	}
	if n := s.count(t, `SELECT count(*) FROM subscription_plans WHERE stripe_product_id LIKE 'prod_%' AND stripe_price_id LIKE 'price_%'`); n != 3 {
		t.Fatalf("%d plans linked after sync (%s)", n, out.String())
	}

	for _, u := range []string{owner, admin} {
		r := s.ok(t, "createCheckoutSession", checkout, u)
		if url, _ := r["url"].(string); len(url) < 8 || url[:8] != "https://" {
			t.Errorf("checkout url = %v", r)
		}
		if r := s.ok(t, "createBillingPortalSession", map[string]any{"tenantId": tenant}, u); r["url"] == "" {
			t.Errorf("portal = %v", r)
		}
	}
	if c := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["stripe_customer_id"]; c == nil {
		t.Error("checkout did not give the tenant a customer")
	}
	s.fails(t, "forbidden", "createCheckoutSession", checkout, member)
	s.fails(t, "forbidden", "createBillingPortalSession", map[string]any{"tenantId": tenant}, member)
	s.fails(t, "not_found", "createCheckoutSession", checkout, s.user(t, ""))
	s.fails(t, "not_found", "createCheckoutSession", map[string]any{"tenantId": tenant, "planId": "00000000-0000-4000-8000-000000000000"}, owner)
	s.fails(t, "invalid", "createCheckoutSession", map[string]any{"tenantId": tenant, "planId": "pro"}, owner)

	down := newStack(t, "STRIPE_SECRET_KEY", stripetest.TestKey, "STRIPE_API_URL", "http://127.0.0.1:1", "STRIPE_WEBHOOK_SECRET", testWebhookSecret)
	exec(t, down, `UPDATE subscription_plans SET stripe_product_id = 'prod_x', stripe_price_id = 'price_x' WHERE key = 'professional'`)
	dt, downOwner := down.tenant(t)
	proDown := down.row(t, "subscription_plans", "key = 'professional'")["id"].(string)
	r := down.action(t, "createCheckoutSession", map[string]any{"tenantId": dt, "planId": proDown}, downOwner)
	if r.status != http.StatusFailedDependency || r.code != "billing_unavailable" {
		t.Errorf("checkout with Stripe down: %d %q", r.status, r.code)
	}
	offline := newStack(t)
	ot, oo := offline.tenant(t)
	if r := offline.action(t, "createBillingPortalSession", map[string]any{"tenantId": ot}, oo); r.code != "billing_unavailable" {
		t.Errorf("portal with billing off: %d %q", r.status, r.code)
	}
}

func TestSubscriptionChanges(t *testing.T) {
	t.Parallel()
	s := newStack(t, withStripe(t)...)
	tenant, owner := s.tenant(t)
	member := s.user(t, "")
	exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'member')`, tenant, member)
	enterprise := s.row(t, "subscription_plans", "key = 'enterprise'")["id"].(string)
	in := map[string]any{"tenantId": tenant}

	s.fails(t, "invalid", "cancelSubscription", in, owner) // no paid subscription yet
	exec(t, s, `UPDATE tenant_subscriptions SET stripe_subscription_id = 'sub_live1', status = 'active' WHERE tenant_id = $1`, tenant)
	exec(t, s, `UPDATE subscription_plans SET stripe_product_id = 'prod_e', stripe_price_id = 'price_enterprise' WHERE key = 'enterprise'`)

	// What cancel and resume do at Stripe: subscription_test.go, against the stateful double.
	for _, action := range []string{"cancelSubscription", "resumeSubscription"} {
		s.fails(t, "forbidden", action, in, member)
	}
	// The plan follows the price Stripe bills, once Stripe's webhook says so (stripe-mock sends
	// none): changePlan alone leaves the stored plan as it was ...
	before := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["plan_id"]
	s.ok(t, "changePlan", map[string]any{"tenantId": tenant, "planId": enterprise}, owner)
	if got := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["plan_id"]; got != before {
		t.Errorf("plan after changePlan, before any webhook = %v, want %v", got, before)
	}
	// ... and the webhook of the change lifts the limits: Starter allows 10 projects, Enterprise
	// unlimited.
	obj := stripetest.SubscriptionObject(tenant, "", "active", time.Now().Unix())
	obj["id"], obj["customer"] = "sub_live1", s.linkCustomer(t, tenant)
	obj["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["price"].(map[string]any)["id"] = "price_enterprise"
	if st := s.stripeEvent(t, testWebhookSecret, stripetest.APIVersion, "evt_change_"+tenant[:8], "customer.subscription.updated", time.Now().Unix(), obj); st != 200 {
		t.Fatalf("customer.subscription.updated: %d", st)
	}
	if got := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["plan_id"]; got != enterprise {
		t.Errorf("plan after the webhook = %v", got)
	}
	ctx := context.Background()
	for i := range 12 {
		err := s.m.DB.WithUser(ctx, tenantkit.UserSession(owner), func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO projects (tenant_id, name, owner_id) VALUES ($1, 'p', $2)`, tenant, owner)
			return err
		})
		if err != nil {
			t.Fatalf("project %d under Enterprise: %v", i+1, err)
		}
	}
	s.fails(t, "forbidden", "changePlan", map[string]any{"tenantId": tenant, "planId": enterprise}, member)
	s.fails(t, "not_found", "changePlan", map[string]any{"tenantId": tenant, "planId": "00000000-0000-4000-8000-000000000000"}, owner)
}

func TestMeteredUsageReport(t *testing.T) {
	t.Parallel()
	s := newStack(t, withStripe(t)...)
	sm, _ := stripeMock()
	env := commandEnv(s.m, "STRIPE_SECRET_KEY", stripetest.TestKey, "STRIPE_API_URL", sm.URL)
	getenv := func(k string) string { return env[k] }
	exec(t, s, `UPDATE subscription_plans SET api_calls_unit_amount = 0.05 WHERE key = 'professional'`)
	var out bytes.Buffer
	if err := plansSync(context.Background(), getenv, &out); err != nil {
		t.Fatal(err)
	}
	if n := s.count(t, `SELECT count(*) FROM subscription_plans WHERE stripe_api_calls_price_id LIKE 'price_%'`); n != 1 {
		t.Fatalf("%d plans with a metered price, want 1 (professional)", n)
	}

	tenant, _ := s.tenant(t)
	start := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Hour)
	exec(t, s, `UPDATE tenant_subscriptions SET status = 'active', stripe_subscription_id = 'sub_m', stripe_usage_item_id = 'si_m',
		current_period_start = $2, current_period_end = $2::timestamptz + interval '30 days' WHERE tenant_id = $1`, tenant, start)
	s.record(t,
		map[string]any{"tenantId": tenant, "metric": "api_calls", "quantity": 2.5, "idempotencyKey": "a", "occurredAt": start.Add(time.Hour).Format(time.RFC3339)},
		map[string]any{"tenantId": tenant, "metric": "api_calls", "quantity": 4, "idempotencyKey": "b", "occurredAt": start.Add(30 * time.Hour).Format(time.RFC3339)},
		map[string]any{"tenantId": tenant, "metric": "api_calls", "quantity": 100, "idempotencyKey": "c", "occurredAt": start.Add(-time.Hour).Format(time.RFC3339)}, // before the period
	)
	for i, want := range []string{"1 subscription(s) reported, 0 unchanged", "0 subscription(s) reported, 1 unchanged"} {
		out.Reset()
		if err := usageReport(context.Background(), getenv, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), "usage report: "+want) {
			t.Errorf("run %d: output %q, want %q", i+1, out.String(), want)
		}
	}
	// stripe-mock accepted the usage record (its shape is valid): the period's ceil(2.5 + 4) = 7
	// calls, the 100 before the period excluded
	if n := s.count(t, `SELECT count(*) FROM tenantkit.usage_reports WHERE subscription_id = 'sub_m' AND item_id = 'si_m'
		AND period_start = $1 AND due = 7 AND reported = 7`, start); n != 1 {
		t.Errorf("usage_reports: %d rows with 7 calls reported", n)
	}
}
