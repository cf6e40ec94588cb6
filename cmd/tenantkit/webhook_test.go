package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit/internal/stripetest"
)

// stripeEvent posts an event to /webhooks/stripe signed as Stripe signs it (secret "" leaves the
// signature off) and returns the status.
func (s *stack) stripeEvent(t *testing.T, secret, apiVersion, id, typ string, created int64, object map[string]any) int {
	t.Helper()
	payload := stripetest.Event(apiVersion, id, typ, created, object)
	req, _ := http.NewRequest(http.MethodPost, s.m.HTTP.URL()+"/webhooks/stripe", bytes.NewReader(payload))
	if secret != "" {
		req.Header.Set("Stripe-Signature", stripetest.Signature(payload, secret))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// linkCustomer records cus_<tenant[:8]> as the tenant's Stripe customer, as the tenant-created
// event does with the customer tenantkit creates: events are linked to a tenant only through it.
func (s *stack) linkCustomer(t *testing.T, tenant string) string {
	t.Helper()
	customer := "cus_" + tenant[:8]
	exec(t, s, `UPDATE tenant_subscriptions SET stripe_customer_id = $2 WHERE tenant_id = $1`, tenant, customer)
	return customer
}

// subscribe links the tenant's customer and delivers customer.subscription.created for a
// subscription of it (id sub, at created) in status.
func (s *stack) subscribe(t *testing.T, tenant, sub, status string, created int64) {
	t.Helper()
	obj := stripetest.SubscriptionObject(tenant, "", status, created)
	obj["id"], obj["customer"] = sub, s.linkCustomer(t, tenant)
	if st := s.stripeEvent(t, testWebhookSecret, "2023-10-16", "evt_sub_"+sub, "customer.subscription.created", created, obj); st != http.StatusOK {
		t.Fatalf("customer.subscription.created: %d", st)
	}
}

type subState struct {
	Status, Plan, Item string
}

func (s *stack) subState(t *testing.T, tenant string) subState {
	t.Helper()
	r := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)
	item, _ := r["stripe_usage_item_id"].(string)
	return subState{Status: r["status"].(string), Plan: r["plan_id"].(string), Item: item}
}

func TestStripeWebhooks(t *testing.T) {
	t.Parallel()
	s := newStack(t, withStripe(t)...)
	plan := func(key string) string {
		return s.row(t, "subscription_plans", "key = $1", key)["id"].(string)
	}
	pro, enterprise := plan("professional"), plan("enterprise")
	base := time.Now().Add(-time.Hour).Unix()

	t.Run("bad signatures and other API versions change nothing", func(t *testing.T) {
		t.Parallel()
		tenant, _ := s.tenant(t)
		obj := stripetest.SubscriptionObject(tenant, pro, "active", base)
		for name, st := range map[string]int{
			"unsigned":     s.stripeEvent(t, "", "2023-10-16", "evt_u_"+tenant[:8], "customer.subscription.updated", base, obj),
			"wrong secret": s.stripeEvent(t, "whsec_other", "2023-10-16", "evt_w_"+tenant[:8], "customer.subscription.updated", base, obj),
			"old version":  s.stripeEvent(t, testWebhookSecret, "2022-11-15", "evt_v_"+tenant[:8], "customer.subscription.updated", base, obj),
		} {
			if st != http.StatusBadRequest {
				t.Errorf("%s: %d, want 400", name, st)
			}
		}
		if st := s.subState(t, tenant); st.Status != "trialing" {
			t.Errorf("state changed to %v", st)
		}
		if n := s.count(t, `SELECT count(*) FROM tenantkit.stripe_events WHERE id LIKE 'evt___' || $1`, tenant[:8]); n != 0 {
			t.Errorf("%d refused events recorded", n)
		}
	})

	t.Run("duplicated and shuffled deliveries end as one clean delivery", func(t *testing.T) {
		t.Parallel()
		type ev struct {
			id, typ      string
			created      int64
			status, plan string
		}
		seq := []ev{
			{"created", "customer.subscription.created", base, "incomplete", pro},
			{"active", "customer.subscription.updated", base + 10, "active", pro},
			{"upgrade", "customer.subscription.updated", base + 20, "active", enterprise},
			{"failed", "invoice.payment_failed", base + 30, "", ""},
			{"paid", "invoice.paid", base + 35, "", ""},
			{"recovered", "customer.subscription.updated", base + 40, "active", enterprise},
			{"unknown", "customer.tax_id.created", base + 45, "", ""},
		}
		deliver := func(t *testing.T, tenant string, e ev) int {
			obj := stripetest.SubscriptionObject(tenant, e.plan, e.status, base)
			if e.typ == "invoice.payment_failed" || e.typ == "invoice.paid" {
				obj = map[string]any{"id": "in_" + e.id, "object": "invoice", "subscription": "sub_" + tenant[:8], "customer": "cus_" + tenant[:8]}
			}
			return s.stripeEvent(t, testWebhookSecret, "2023-10-16", fmt.Sprintf("evt_%s_%s", e.id, tenant[:8]), e.typ, e.created, obj)
		}
		clean, _ := s.tenant(t)
		s.linkCustomer(t, clean)
		for _, e := range seq {
			if st := deliver(t, clean, e); st != http.StatusOK {
				t.Fatalf("clean delivery of %s: %d", e.id, st)
			}
		}
		want := s.subState(t, clean)
		if want.Status != "active" || want.Plan != enterprise || want.Item != "si_met_"+clean[:8] {
			t.Fatalf("clean delivery ends in %+v", want)
		}
		seed := uint64(time.Now().UnixNano())
		rng := rand.New(rand.NewPCG(seed, 1))
		for round := range 5 {
			tenant, _ := s.tenant(t)
			s.linkCustomer(t, tenant)
			var deliveries []ev
			for _, e := range seq {
				deliveries = append(deliveries, e)
				if rng.IntN(5) == 0 { // 20% duplicates
					deliveries = append(deliveries, e)
				}
			}
			rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
			var wg sync.WaitGroup
			for i, e := range deliveries {
				wg.Add(1)
				go func() { // concurrently, too
					defer wg.Done()
					time.Sleep(time.Duration(i) * time.Millisecond)
					if st := deliver(t, tenant, e); st != http.StatusOK {
						t.Errorf("seed %d round %d: %s: %d", seed, round, e.id, st)
					}
				}()
			}
			wg.Wait()
			got := s.subState(t, tenant)
			got.Item = got.Item[:7] + clean[:8]
			if got != want {
				t.Errorf("seed %d round %d: ended in %+v, want %+v", seed, round, got, want)
			}
			if n := s.count(t, `SELECT count(*) FROM tenantkit.stripe_events WHERE id LIKE '%' || $1`, tenant[:8]); n != len(seq) {
				t.Errorf("seed %d round %d: %d events recorded, want %d", seed, round, n, len(seq))
			}
		}
	})

	t.Run("a same-second tie is settled by fetching the subscription", func(t *testing.T) {
		t.Parallel()
		tenant, _ := s.tenant(t)
		s.linkCustomer(t, tenant)
		s.stripeEvent(t, testWebhookSecret, "2023-10-16", "evt_t1_"+tenant[:8], "customer.subscription.updated", base, stripetest.SubscriptionObject(tenant, pro, "active", base))
		st := s.stripeEvent(t, testWebhookSecret, "2023-10-16", "evt_t2_"+tenant[:8], "customer.subscription.updated", base, stripetest.SubscriptionObject(tenant, pro, "past_due", base))
		if st != http.StatusOK {
			t.Fatalf("tie: %d", st)
		}
		// stripe-mock's subscription fixture is what Stripe says now; its status is applied
		sm, _ := stripeMock()
		fetched, err := sm.Client("").Subscriptions.Get("sub_"+tenant[:8], nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.subState(t, tenant).Status; got != string(fetched.Status) {
			t.Errorf("status after the tie = %s, want the fetched %s", got, fetched.Status)
		}
	})

	t.Run("a failed payment makes the tenant past_due and emails its owners once", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, withStripe(t)...) // its own SMTP peer, to count the emails
		tenant, _ := s.tenant(t)
		co := s.user(t, "co.owner.billing@example.com")
		exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner'), ($1, $3, 'member')`, tenant, co, s.user(t, ""))
		s.subscribe(t, tenant, "sub_pf", "active", base-10)
		obj := map[string]any{"id": "in_pf", "object": "invoice", "subscription": "sub_pf", "customer": "cus_" + tenant[:8], "attempt_count": 1}
		for range 2 { // a duplicate delivery queues nothing more
			if st := s.stripeEvent(t, testWebhookSecret, "2023-10-16", "evt_pf_"+tenant[:8], "invoice.payment_failed", base, obj); st != http.StatusOK {
				t.Fatalf("payment_failed: %d", st)
			}
		}
		if got := s.subState(t, tenant).Status; got != "past_due" {
			t.Errorf("status = %s, want past_due", got)
		}
		if _, err := s.m.Outbox.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		var to []string
		for _, m := range s.smtp.Messages() {
			d, _ := m.Decode()
			if strings.HasPrefix(d.Subject, "Payment failed for Acme") {
				to = append(to, m.To...)
			}
		}
		slices.Sort(to)
		if len(to) != 2 || to[0] != "co.owner.billing@example.com" {
			t.Errorf("payment-failed emails went to %v, want the two owners once each", to)
		}
		if n, _ := s.m.Outbox.Flush(context.Background()); n != 0 {
			t.Errorf("a second flush sent %d more", n)
		}
		trial := stripetest.SubscriptionObject(tenant, pro, "trialing", base)
		trial["id"] = "sub_pf"
		if st := s.stripeEvent(t, testWebhookSecret, "2023-10-16", "evt_tw_"+tenant[:8], "customer.subscription.trial_will_end", base+1, trial); st != http.StatusOK {
			t.Fatalf("trial_will_end: %d", st)
		}
		if n := s.count(t, `SELECT count(*) FROM tenantkit.email_outbox WHERE tenant_id = $1 AND subject = 'The trial of Acme ends soon'`, tenant); n != 2 {
			t.Errorf("trial-ending emails queued = %d, want 2 (the owners)", n)
		}
	})

	t.Run("a price no plan knows keeps the plan, and is logged and counted", func(t *testing.T) {
		s := newStack(t, withStripe(t)...) // its own /metrics
		tenant, _ := s.tenant(t)
		before := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["plan_id"]
		s.linkCustomer(t, tenant)
		obj := stripetest.SubscriptionObject(tenant, "", "active", base) // price_plan, linked to no plan; no hint
		if st := s.stripeEvent(t, testWebhookSecret, "2023-10-16", "evt_up_"+tenant[:8], "customer.subscription.created", base, obj); st != http.StatusOK {
			t.Fatalf("event: %d", st)
		}
		r := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)
		if r["plan_id"] != before || r["status"] != "active" || r["stripe_price_id"] != "price_plan" {
			t.Errorf("row = %v, want the plan kept (%v), the status and price applied", r, before)
		}
		body := scrapeMetrics(t, s.m)
		for _, want := range []string{`tenantkit_billing_total{what="stripe_unknown_price"} 1`, `tenantkit_billing_total{what="stripe_event_applied"} 1`} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})

	t.Run("a stranger's checkout naming the tenant links nothing", func(t *testing.T) {
		t.Parallel()
		tenant, _ := s.tenant(t)
		s.linkCustomer(t, tenant)
		before := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)
		// A Payment Link takes client_reference_id from its URL: anyone can name any tenant.
		obj := map[string]any{"id": "cs_" + tenant[:8], "object": "checkout.session", "client_reference_id": tenant,
			"customer": "cus_stranger_" + tenant[:8], "subscription": "sub_stranger_" + tenant[:8], "mode": "subscription", "status": "complete",
			"metadata": map[string]any{"tenant_id": tenant}}
		if st := s.stripeEvent(t, testWebhookSecret, "2023-10-16", "evt_co_"+tenant[:8], "checkout.session.completed", base, obj); st != http.StatusOK {
			t.Fatalf("checkout event: %d", st)
		}
		sub := stripetest.SubscriptionObject(tenant, enterprise, "active", base)
		sub["id"], sub["customer"] = "sub_stranger_"+tenant[:8], "cus_stranger_"+tenant[:8]
		if st := s.stripeEvent(t, testWebhookSecret, "2023-10-16", "evt_cs_"+tenant[:8], "customer.subscription.created", base, sub); st != http.StatusOK {
			t.Fatalf("subscription event: %d", st)
		}
		after := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)
		delete(before, "updated_at")
		delete(after, "updated_at")
		if fmt.Sprint(before) != fmt.Sprint(after) {
			t.Errorf("the tenant's row changed:\n%v\n%v", before, after)
		}
		if n := s.count(t, `SELECT count(*) FROM tenantkit.stripe_subscriptions WHERE tenant_id = $1`, tenant); n != 0 {
			t.Errorf("%d subscriptions linked to the tenant, want none", n)
		}
		if n := s.count(t, `SELECT count(*) FROM tenantkit.stripe_events WHERE id IN ($1, $2) AND outcome = 'not_ours'`, "evt_co_"+tenant[:8], "evt_cs_"+tenant[:8]); n != 2 {
			t.Errorf("%d of the stranger's events recorded as not_ours, want 2", n)
		}
	})
}
