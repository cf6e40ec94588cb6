package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
)

// TestPreviewPlanChange: the preview's amounts are what changePlan with its proration date then
// charges at once and what the renewal bills, for an upgrade and a downgrade (whose credit pays the
// renewal); a date outside the current period is preview_expired; nothing is charged by a preview.
func TestPreviewPlanChange(t *testing.T) {
	t.Parallel()
	w := newBillingWorld(t)
	s := w.s
	tenant, owner, sub := w.subscribe(t, "starter")
	if err := w.fake.PortalSetQuantity(sub, 2); err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	w.fake.Advance(6*24*time.Hour + 5*time.Hour + 17*time.Second)
	cus := w.fake.Subscription(sub).Customer.ID

	for _, step := range []struct{ to, what string }{{"enterprise", "upgrade"}, {"professional", "downgrade"}} {
		in := map[string]any{"tenantId": tenant, "planId": w.plan[step.to].id}
		invoices := len(w.fake.Invoices(sub))
		p := s.ok(t, "previewPlanChange", in, owner)
		if len(w.fake.Invoices(sub)) != invoices || w.fake.Subscription(sub).Items.Data[0].Price.ID == w.plan[step.to].price {
			t.Fatalf("%s: the preview changed the subscription", step.what)
		}
		proration, now, atRenewal := int64(p["proration"].(float64)), int64(p["amountDueNow"].(float64)), int64(p["amountDueAtRenewal"].(float64))
		if p["planId"] != w.plan[step.to].id || p["currency"] != "usd" || p["renewsAt"] != time.Unix(w.fake.Subscription(sub).CurrentPeriodEnd, 0).UTC().Format(time.RFC3339) {
			t.Errorf("%s: preview %v", step.what, p)
		}
		switch step.what {
		case "upgrade":
			if proration <= 0 || now != proration || atRenewal != 2*29900 {
				t.Errorf("upgrade preview: proration %d, now %d, at renewal %d; want a positive proration charged now, 2 × 29900 at renewal", proration, now, atRenewal)
			}
		case "downgrade":
			if proration >= 0 || now != 0 || atRenewal != max(0, 2*9900+proration) {
				t.Errorf("downgrade preview: proration %d, now %d, at renewal %d; want a credit, nothing now, 2 × 9900 less the credit", proration, now, atRenewal)
			}
		}
		w.fake.Advance(47 * time.Second) // the owner reads the preview, then confirms
		in["prorationDate"] = p["prorationDate"]
		out := s.ok(t, "changePlan", in, owner)
		if out["planId"] != w.plan[step.to].id || out["quantity"] != float64(2) {
			t.Errorf("%s: changePlan answered %v", step.what, out)
		}
		ins := w.fake.Invoices(sub)
		up := ins[len(ins)-1]
		if up.BillingReason != "subscription_update" || up.Total != proration || up.AmountDue != now || !up.Paid {
			t.Errorf("%s: invoiced at once %s: total %d, due %d (paid %v); previewed %d, %d", step.what, up.BillingReason, up.Total, up.AmountDue, up.Paid, proration, now)
		}
		w.deliver(t)
		if step.what == "downgrade" {
			if bal := w.fake.Customer(cus).Balance; bal != proration {
				t.Errorf("downgrade: customer balance %d, want the credit %d", bal, proration)
			}
			if err := w.fake.Renew(sub); err != nil {
				t.Fatal(err)
			}
			ins = w.fake.Invoices(sub)
			if r := ins[len(ins)-1]; r.BillingReason != "subscription_cycle" || r.AmountDue != atRenewal {
				t.Errorf("downgrade: the renewal bills %d (%s), the preview said %d", r.AmountDue, r.BillingReason, atRenewal)
			}
			w.deliver(t)
		}
	}

	// A preview from before the renewal no longer applies.
	in := map[string]any{"tenantId": tenant, "planId": w.plan["enterprise"].id}
	p := s.ok(t, "previewPlanChange", in, owner)
	if err := w.fake.Renew(sub); err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	in["prorationDate"] = p["prorationDate"]
	if msg := s.fails(t, "preview_expired", "changePlan", in, owner); !strings.Contains(msg, "preview the change again") {
		t.Errorf("stale preview: %q", msg)
	}
	r := s.action(t, "changePlan", in, owner)
	if r.status != http.StatusConflict {
		t.Errorf("preview_expired answered %d, want 409", r.status)
	}
	in["prorationDate"] = time.Unix(w.fake.Subscription(sub).CurrentPeriodStart, 0).Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	s.fails(t, "invalid", "changePlan", in, owner) // not a preview's date: not a whole second
	if w.fake.Subscription(sub).Items.Data[0].Price.ID != w.plan["professional"].price {
		t.Error("a refused changePlan changed the subscription")
	}
	// A member may not preview; a tenant without a subscription has nothing to preview.
	member := s.user(t, "")
	exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'member')`, tenant, member)
	s.fails(t, "forbidden", "previewPlanChange", map[string]any{"tenantId": tenant, "planId": w.plan["enterprise"].id}, member)
	other, otherOwner := s.tenant(t)
	s.fails(t, "invalid", "previewPlanChange", map[string]any{"tenantId": other, "planId": w.plan["enterprise"].id}, otherOwner)
}

// TestCheckoutExtras: checkouts accept promotion codes; with STRIPE_AUTOMATIC_TAX=true Stripe Tax is
// on for the session and the subscription it creates, and Checkout saves the customer's address
// (which Stripe Tax needs); checking out again in the same minute after a subscription ended gets a
// new, open session.
func TestCheckoutExtras(t *testing.T) {
	t.Parallel()
	for _, tax := range []bool{false, true} {
		w := newBillingWorld(t, "STRIPE_AUTOMATIC_TAX", map[bool]string{false: "false", true: "true"}[tax])
		tenant, owner, sub := w.subscribe(t, "professional")
		cs := lastCheckout(t, w.fake, tenant)
		if !cs.AllowPromotionCodes || cs.AutomaticTax == nil || cs.AutomaticTax.Enabled != tax {
			t.Errorf("tax %v: session allows promotion codes %v, automatic tax %+v", tax, cs.AllowPromotionCodes, cs.AutomaticTax)
		}
		st := w.fake.Subscription(sub)
		if st.AutomaticTax == nil || st.AutomaticTax.Enabled != tax {
			t.Errorf("tax %v: subscription automatic tax %+v", tax, st.AutomaticTax)
		}
		if c := w.fake.Customer(st.Customer.ID); (c.Address != nil) != tax {
			t.Errorf("tax %v: customer address %+v (saved by Checkout only with automatic tax)", tax, c.Address)
		}
		// Ended, then a new checkout within the same minute as the first one.
		if _, err := w.fake.Client("").Subscriptions.Cancel(sub, nil); err != nil {
			t.Fatal(err)
		}
		url := w.s.ok(t, "createCheckoutSession", map[string]any{"tenantId": tenant, "planId": w.plan["professional"].id}, owner)["url"]
		last := lastCheckout(t, w.fake, tenant)
		if url == "" || last.ID == cs.ID || last.Status != stripego.CheckoutSessionStatusOpen || !strings.HasSuffix(url.(string), last.ID) {
			t.Errorf("tax %v: checkout after the subscription ended: url %q, newest session %s (%s)", tax, url, last.ID, last.Status)
		}
	}
}
