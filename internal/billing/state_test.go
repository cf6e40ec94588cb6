package billing

import (
	"fmt"
	"testing"
	"time"
)

var (
	t0  = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	cat = Catalog{
		PlanOfPrice: map[string]string{"price_starter": "starter", "price_pro": "pro", "price_pro_2025": "pro", "price_ent": "ent"},
		Plans:       map[string]bool{"free": true, "starter": true, "pro": true, "ent": true},
	}
	statuses = []string{"trialing", "active", "past_due", "canceled", "unpaid", "incomplete", "incomplete_expired", "paused"}
)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// account is a tenant whose customer tenantkit created (cus_1), on its own trial of starter.
func account(subs ...Known) Account {
	a := Account{TenantID: "T", TenantName: "Acme", CustomerID: "cus_1", PlanID: "starter", Subscriptions: map[string]Known{}}
	for _, k := range subs {
		a.Subscriptions[k.ID] = k
	}
	if len(subs) > 0 {
		c := Current(a.Subscriptions)
		a.Current, a.PlanID = c.ID, c.PlanID
	}
	return a
}

func sub(id, status, price string, created int) Subscription {
	return Subscription{ID: id, CustomerID: "cus_1", Status: status, PriceID: price, Quantity: 1, Created: at(created),
		CurrentPeriodStart: at(created), CurrentPeriodEnd: at(created).AddDate(0, 1, 0)}
}

func known(s Subscription, plan string, eventAt int, eventID string) Known {
	return Known{Subscription: s, PlanID: plan, EventAt: at(eventAt), EventID: eventID}
}

func subEvent(id, typ string, created int, s Subscription) StripeEvent {
	return StripeEvent{ID: id, Type: typ, Created: at(created), Subscription: &s, CanFetch: true}
}

func invoiceEvent(id, typ string, created int, subID string, attempt int64) StripeEvent {
	return StripeEvent{ID: id, Type: typ, Created: at(created), CanFetch: true,
		Invoice: &Invoice{ID: "in_" + subID, CustomerID: "cus_1", SubscriptionID: subID, AttemptCount: attempt}}
}

// saved returns the decision's tenant view: current subscription, its status, the plan.
func view(d Decision) string {
	c := d.Account.Subscriptions[d.Account.Current]
	return fmt.Sprintf("%s %s %s", d.Account.Current, c.Status, d.Account.PlanID)
}

func TestDecideSubscriptionEvents(t *testing.T) {
	types := []string{"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
		"customer.subscription.paused", "customer.subscription.resumed", "customer.subscription.pending_update_applied",
		"customer.subscription.trial_will_end"}
	for _, typ := range types {
		for _, status := range statuses {
			t.Run(typ+"/"+status, func(t *testing.T) {
				a := account(known(sub("sub_1", "active", "price_starter", 1), "starter", 5, "evt_0"))
				d := Decide(a, cat, subEvent("evt_1", typ, 10, sub("sub_1", status, "price_pro", 1)))
				want := status
				if typ == "customer.subscription.deleted" && !ended(status) {
					want = "canceled" // a deleted subscription has ended, whatever the object says
				}
				if d.Outcome != Applied || d.NeedFetch != "" || d.Save == nil || !d.Changed {
					t.Fatalf("decision %+v", d)
				}
				if got := view(d); got != "sub_1 "+want+" pro" {
					t.Errorf("tenant = %s, want sub_1 %s pro", got, want)
				}
				if d.Save.EventAt != at(10) || d.Save.EventID != "evt_1" {
					t.Errorf("watermark = %v %s, want the event's", d.Save.EventAt, d.Save.EventID)
				}
				emails := len(d.Emails)
				if typ == "customer.subscription.trial_will_end" && status == "trialing" {
					if emails != 1 || d.Emails[0].Kind != TrialEndingEmail || d.Emails[0].Subject != "The trial of Acme ends soon" {
						t.Errorf("emails = %+v, want one trial-ending email", d.Emails)
					}
				} else if emails != 0 {
					t.Errorf("emails = %+v, want none", d.Emails)
				}
			})
		}
	}
}

func TestDecideOrder(t *testing.T) {
	base := account(known(sub("sub_1", "active", "price_starter", 1), "starter", 10, "evt_10"))
	t.Run("an older event is stale and changes nothing", func(t *testing.T) {
		d := Decide(base, cat, subEvent("evt_5", "customer.subscription.updated", 5, sub("sub_1", "canceled", "price_pro", 1)))
		if d.Outcome != Stale || d.Save != nil || d.Changed || len(d.Emails) != 0 {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("a stale trial_will_end still warns while the same trial runs", func(t *testing.T) {
		end := at(1000)
		trialing := sub("sub_1", "trialing", "price_starter", 1)
		trialing.TrialEnd = &end
		a := account(known(trialing, "starter", 10, "evt_10"))
		d := Decide(a, cat, subEvent("evt_5", "customer.subscription.trial_will_end", 5, trialing))
		if d.Outcome != Stale || d.Save != nil || len(d.Emails) != 1 {
			t.Errorf("decision %+v", d)
		}
		ended := sub("sub_1", "active", "price_starter", 1)
		d = Decide(account(known(ended, "starter", 10, "evt_10")), cat, subEvent("evt_5", "customer.subscription.trial_will_end", 5, trialing))
		if len(d.Emails) != 0 {
			t.Errorf("the trial is over, yet %+v", d.Emails)
		}
	})
	t.Run("a same-second tie asks for the subscription", func(t *testing.T) {
		d := Decide(base, cat, subEvent("evt_10b", "customer.subscription.updated", 10, sub("sub_1", "past_due", "price_starter", 1)))
		if d.NeedFetch != "sub_1" || d.Save != nil {
			t.Errorf("decision %+v, want NeedFetch sub_1", d)
		}
	})
	t.Run("a tie settled by the fetched state keeps the event's type and effects", func(t *testing.T) {
		f := sub("sub_1", "trialing", "price_ent", 1)
		ev := subEvent("evt_10b", "customer.subscription.trial_will_end", 10, sub("sub_1", "trialing", "price_starter", 1))
		ev.Fetched, ev.FetchedOver = &f, base.Version("sub_1")
		d := Decide(base, cat, ev)
		if d.Outcome != Applied || view(d) != "sub_1 trialing ent" {
			t.Fatalf("decision %+v (%s), want the fetched state", d, view(d))
		}
		if d.Save.EventAt != at(10) || d.Save.EventID != "evt_10b" {
			t.Errorf("watermark = %v %s", d.Save.EventAt, d.Save.EventID)
		}
		if len(d.Emails) != 1 || d.Emails[0].Kind != TrialEndingEmail {
			t.Errorf("emails = %+v, want the trial-ending email of the original event", d.Emails)
		}
	})
	t.Run("a state fetched over an older version is fetched again", func(t *testing.T) {
		f := sub("sub_1", "active", "price_ent", 1)
		ev := subEvent("evt_10b", "customer.subscription.updated", 10, sub("sub_1", "active", "price_starter", 1))
		ev.Fetched, ev.FetchedOver = &f, "evt_9@2026-11-01T12:00:09Z"
		if d := Decide(base, cat, ev); d.NeedFetch != "sub_1" {
			t.Errorf("decision %+v, want another fetch", d)
		}
	})
	t.Run("the same event again is not a tie", func(t *testing.T) {
		d := Decide(base, cat, subEvent("evt_10", "customer.subscription.updated", 10, sub("sub_1", "active", "price_starter", 1)))
		if d.NeedFetch != "" || d.Outcome != Applied {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("a state learnt without an event is replaced by any event", func(t *testing.T) {
		a := account(Known{Subscription: sub("sub_1", "active", "price_starter", 1), PlanID: "starter"})
		d := Decide(a, cat, subEvent("evt_1", "customer.subscription.updated", 1, sub("sub_1", "past_due", "price_starter", 1)))
		if d.Outcome != Applied || view(d) != "sub_1 past_due starter" {
			t.Errorf("decision %+v", d)
		}
	})
}

func TestDecideWhoseEvent(t *testing.T) {
	stranger := sub("sub_x", "active", "price_ent", 1)
	stranger.CustomerID, stranger.PlanID = "cus_stranger", "ent"
	for _, typ := range []string{"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"} {
		t.Run("a stranger's "+typ+" naming the tenant in its metadata", func(t *testing.T) {
			d := Decide(account(), cat, subEvent("evt_x", typ, 5, stranger))
			if d.Outcome != NotOurs || d.Save != nil || d.Changed {
				t.Errorf("decision %+v", d)
			}
		})
	}
	t.Run("a stranger's checkout naming the tenant as client_reference_id", func(t *testing.T) {
		ev := StripeEvent{ID: "evt_cs", Type: "checkout.session.completed", Created: at(5), CanFetch: true,
			Checkout: &CheckoutSession{ID: "cs_x", CustomerID: "cus_stranger", SubscriptionID: "sub_x", ClientReferenceID: "T"}}
		if d := Decide(account(), cat, ev); d.Outcome != NotOurs || d.NeedFetch != "" {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("a stranger's invoice", func(t *testing.T) {
		ev := invoiceEvent("evt_in", "invoice.payment_failed", 5, "sub_x", 1)
		ev.Invoice.CustomerID = "cus_stranger"
		if d := Decide(account(), cat, ev); d.Outcome != NotOurs || len(d.Emails) != 0 {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("a tenant without a customer links nothing", func(t *testing.T) {
		a := account()
		a.CustomerID = ""
		s := sub("sub_1", "active", "price_pro", 1)
		s.CustomerID = ""
		if d := Decide(a, cat, subEvent("evt_1", "customer.subscription.created", 5, s)); d.Outcome != NotOurs {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("the tenant's own checkout learns its subscription", func(t *testing.T) {
		ev := StripeEvent{ID: "evt_cs", Type: "checkout.session.completed", Created: at(5), CanFetch: true,
			Checkout: &CheckoutSession{ID: "cs_1", CustomerID: "cus_1", SubscriptionID: "sub_1"}}
		d := Decide(account(), cat, ev)
		if d.NeedFetch != "sub_1" {
			t.Fatalf("decision %+v, want a fetch", d)
		}
		f := sub("sub_1", "active", "price_pro", 4)
		ev.Fetched, ev.FetchedOver = &f, account().Version("sub_1")
		d = Decide(account(), cat, ev)
		if d.Outcome != Applied || view(d) != "sub_1 active pro" || !d.Save.EventAt.IsZero() {
			t.Errorf("decision %+v (%s)", d, view(d))
		}
		// its subscription events still apply over the fetched state
		a := d.Account
		d = Decide(a, cat, subEvent("evt_2", "customer.subscription.created", 4, sub("sub_1", "active", "price_pro", 4)))
		if d.Outcome != Applied {
			t.Errorf("subscription event after the checkout: %+v", d)
		}
	})
	t.Run("without Stripe the checkout is recorded only", func(t *testing.T) {
		ev := StripeEvent{ID: "evt_cs", Type: "checkout.session.completed", Created: at(5),
			Checkout: &CheckoutSession{ID: "cs_1", CustomerID: "cus_1", SubscriptionID: "sub_1"}}
		if d := Decide(account(), cat, ev); d.Outcome != Ignored || d.NeedFetch != "" || d.Save != nil {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("unknown event types are ignored", func(t *testing.T) {
		if d := Decide(account(), cat, StripeEvent{ID: "evt_u", Type: "customer.tax_id.created", Created: at(5)}); d.Outcome != Ignored {
			t.Errorf("decision %+v", d)
		}
	})
}

func TestDecidePlan(t *testing.T) {
	a := account(known(sub("sub_1", "active", "price_starter", 1), "starter", 1, "evt_1"))
	for _, c := range []struct {
		name, price, hint, want string
		unknown                 bool
	}{
		{"the billed price decides, not the metadata", "price_pro", "ent", "pro", false},
		{"a replaced price of a plan still names it", "price_pro_2025", "", "pro", false},
		{"an unknown price falls back to the hint", "price_other", "ent", "ent", false},
		{"an unknown price and a hint naming no plan keep the plan", "price_other", "gold", "starter", true},
		{"no licensed price at all keeps the plan", "", "", "starter", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := sub("sub_1", "active", c.price, 1)
			s.PlanID = c.hint
			d := Decide(a, cat, subEvent("evt_2", "customer.subscription.updated", 2, s))
			if d.Account.PlanID != c.want || d.Save.PlanID != c.want {
				t.Errorf("plan = %s (saved %s), want %s", d.Account.PlanID, d.Save.PlanID, c.want)
			}
			if (d.UnknownPrice != "") != c.unknown {
				t.Errorf("UnknownPrice = %q, want set: %t", d.UnknownPrice, c.unknown)
			}
		})
	}
	t.Run("the quantity is kept", func(t *testing.T) {
		s := sub("sub_1", "active", "price_pro", 1)
		s.Quantity = 7
		if d := Decide(a, cat, subEvent("evt_2", "customer.subscription.updated", 2, s)); d.Save.Quantity != 7 {
			t.Errorf("quantity %d", d.Save.Quantity)
		}
	})
}

func TestDecideSecondSubscription(t *testing.T) {
	old := known(sub("sub_old", "active", "price_starter", 1), "starter", 1, "evt_1")
	t.Run("a newer live subscription becomes current", func(t *testing.T) {
		d := Decide(account(old), cat, subEvent("evt_2", "customer.subscription.created", 50, sub("sub_new", "active", "price_pro", 50)))
		if d.Outcome != Applied || view(d) != "sub_new active pro" {
			t.Errorf("%s, %+v", view(d), d)
		}
	})
	withNew := account(old, known(sub("sub_new", "active", "price_pro", 50), "pro", 50, "evt_2"))
	t.Run("deleting the old one leaves the new one current", func(t *testing.T) {
		d := Decide(withNew, cat, subEvent("evt_3", "customer.subscription.deleted", 60, sub("sub_old", "canceled", "price_starter", 1)))
		if d.Outcome != NotCurrent || view(d) != "sub_new active pro" {
			t.Errorf("%s, %+v", view(d), d)
		}
		if d.Save == nil || d.Save.Status != "canceled" {
			t.Errorf("the old subscription's state is still recorded: %+v", d.Save)
		}
	})
	t.Run("an update of the old one does not touch the tenant", func(t *testing.T) {
		d := Decide(withNew, cat, subEvent("evt_3", "customer.subscription.updated", 60, sub("sub_old", "past_due", "price_ent", 1)))
		if d.Outcome != NotCurrent || view(d) != "sub_new active pro" {
			t.Errorf("%s, %+v", view(d), d)
		}
	})
	t.Run("a newer subscription that does not entitle does not replace a paid one", func(t *testing.T) {
		d := Decide(account(old), cat, subEvent("evt_2", "customer.subscription.created", 50, sub("sub_new", "incomplete", "price_pro", 50)))
		if d.Outcome != NotCurrent || view(d) != "sub_old active starter" {
			t.Errorf("%s, %+v", view(d), d)
		}
	})
	t.Run("when the current one ends, a paid older one takes over", func(t *testing.T) {
		d := Decide(withNew, cat, subEvent("evt_3", "customer.subscription.deleted", 60, sub("sub_new", "canceled", "price_pro", 50)))
		if view(d) != "sub_old active starter" {
			t.Errorf("%s, %+v", view(d), d)
		}
	})
	t.Run("when every one has ended, the newest is current", func(t *testing.T) {
		a := account(known(sub("sub_old", "canceled", "price_starter", 1), "starter", 1, "evt_1"), known(sub("sub_new", "active", "price_pro", 50), "pro", 50, "evt_2"))
		d := Decide(a, cat, subEvent("evt_3", "customer.subscription.deleted", 60, sub("sub_new", "canceled", "price_pro", 50)))
		if d.Outcome != Applied || view(d) != "sub_new canceled pro" {
			t.Errorf("%s, %+v", view(d), d)
		}
	})
}

func TestDecideInvoices(t *testing.T) {
	active := known(sub("sub_1", "active", "price_pro", 1), "pro", 10, "evt_10")
	t.Run("a failed payment of a subscription in good standing: past_due, owners emailed", func(t *testing.T) {
		d := Decide(account(active), cat, invoiceEvent("evt_20", "invoice.payment_failed", 20, "sub_1", 1))
		if d.Outcome != Applied || view(d) != "sub_1 past_due pro" {
			t.Errorf("%s, %+v", view(d), d)
		}
		if d.Save.EventAt != at(10) || d.Save.EventID != "evt_10" {
			t.Errorf("an invoice moved the watermark to %v %s", d.Save.EventAt, d.Save.EventID)
		}
		if len(d.Emails) != 1 || d.Emails[0].Kind != PaymentFailedEmail || d.Emails[0].DedupeKey != "payment_failed:in_sub_1:1" {
			t.Errorf("emails %+v", d.Emails)
		}
	})
	t.Run("each attempt emails once, a later attempt again", func(t *testing.T) {
		pd := known(sub("sub_1", "past_due", "price_pro", 1), "pro", 10, "evt_10")
		d1 := Decide(account(pd), cat, invoiceEvent("evt_20", "invoice.payment_failed", 20, "sub_1", 1))
		d2 := Decide(account(pd), cat, invoiceEvent("evt_30", "invoice.payment_failed", 30, "sub_1", 2))
		if len(d1.Emails) != 1 || len(d2.Emails) != 1 || d1.Emails[0].DedupeKey == d2.Emails[0].DedupeKey {
			t.Errorf("emails %+v / %+v", d1.Emails, d2.Emails)
		}
		if d1.NeedFetch != "" || d1.Save != nil {
			t.Errorf("already past_due: %+v", d1)
		}
	})
	t.Run("a failed payment older than the state emails but changes no status", func(t *testing.T) {
		d := Decide(account(active), cat, invoiceEvent("evt_5", "invoice.payment_failed", 5, "sub_1", 1))
		if view(d) != "sub_1 active pro" || d.Save != nil || len(d.Emails) != 1 {
			t.Errorf("%s, %+v", view(d), d)
		}
	})
	t.Run("a failed payment in the state's second asks Stripe", func(t *testing.T) {
		if d := Decide(account(active), cat, invoiceEvent("evt_x", "invoice.payment_failed", 10, "sub_1", 1)); d.NeedFetch != "sub_1" {
			t.Errorf("%+v", d)
		}
	})
	for _, status := range []string{"canceled", "incomplete_expired"} {
		t.Run("a failed payment never revives a subscription that is "+status, func(t *testing.T) {
			a := account(known(sub("sub_1", status, "price_pro", 1), "pro", 10, "evt_10"))
			d := Decide(a, cat, invoiceEvent("evt_20", "invoice.payment_failed", 20, "sub_1", 3))
			if view(d) != "sub_1 "+status+" pro" || d.Save != nil || len(d.Emails) != 0 || d.NeedFetch != "" {
				t.Errorf("%s, %+v", view(d), d)
			}
		})
	}
	t.Run("a failed payment of a subscription that is not current records its state only", func(t *testing.T) {
		a := account(active, known(sub("sub_2", "active", "price_ent", 50), "ent", 50, "evt_50"))
		d := Decide(a, cat, invoiceEvent("evt_60", "invoice.payment_failed", 60, "sub_1", 1))
		if d.Outcome != NotCurrent || len(d.Emails) != 0 || d.Changed || view(d) != "sub_2 active ent" {
			t.Errorf("%s, %+v", view(d), d)
		}
		if d.Save == nil || d.Save.ID != "sub_1" || d.Save.Status != "past_due" {
			t.Errorf("the subscription's own state is not recorded: %+v", d.Save)
		}
	})
	t.Run("an invoice teaches a subscription that is not current, without making it current", func(t *testing.T) {
		a := account(known(sub("sub_2", "active", "price_ent", 50), "ent", 50, "evt_50"))
		ev := invoiceEvent("evt_60", "invoice.paid", 60, "sub_1", 1)
		f := sub("sub_1", "active", "price_pro", 1)
		ev.Fetched, ev.FetchedOver = &f, a.Version("sub_1")
		d := Decide(a, cat, ev)
		if d.Outcome != NotCurrent || d.Changed || view(d) != "sub_2 active ent" || d.Save == nil || d.Save.ID != "sub_1" {
			t.Errorf("%s, %+v", view(d), d)
		}
	})
	t.Run("a paid invoice of a past_due subscription restores what Stripe says", func(t *testing.T) {
		pd := known(sub("sub_1", "past_due", "price_pro", 1), "pro", 10, "evt_10")
		ev := invoiceEvent("evt_20", "invoice.paid", 20, "sub_1", 2)
		d := Decide(account(pd), cat, ev)
		if d.NeedFetch != "sub_1" {
			t.Fatalf("%+v, want a fetch", d)
		}
		for _, now := range []string{"active", "past_due", "unpaid"} {
			f := sub("sub_1", now, "price_pro", 1)
			ev.Fetched, ev.FetchedOver = &f, account(pd).Version("sub_1")
			d := Decide(account(pd), cat, ev)
			if view(d) != "sub_1 "+now+" pro" || d.Save.EventAt != at(10) || len(d.Emails) != 0 {
				t.Errorf("fetched %s: %s, %+v", now, view(d), d)
			}
		}
	})
	t.Run("a paid invoice of an active subscription needs nothing", func(t *testing.T) {
		d := Decide(account(active), cat, invoiceEvent("evt_20", "invoice.paid", 20, "sub_1", 1))
		if d.Outcome != Ignored || d.NeedFetch != "" || d.Save != nil {
			t.Errorf("%+v", d)
		}
	})
	t.Run("an invoice of a subscription not yet known asks Stripe", func(t *testing.T) {
		for _, typ := range []string{"invoice.paid", "invoice.payment_failed"} {
			if d := Decide(account(), cat, invoiceEvent("evt_1", typ, 1, "sub_9", 1)); d.NeedFetch != "sub_9" {
				t.Errorf("%s: %+v", typ, d)
			}
		}
	})
	t.Run("an invoice without a subscription is ignored", func(t *testing.T) {
		ev := invoiceEvent("evt_1", "invoice.payment_failed", 1, "", 1)
		if d := Decide(account(active), cat, ev); d.Outcome != Ignored || len(d.Emails) != 0 {
			t.Errorf("%+v", d)
		}
	})
}

func TestCurrent(t *testing.T) {
	if c := Current(nil); c.ID != "" {
		t.Errorf("no subscriptions: %+v", c)
	}
	for _, c := range []struct {
		name string
		subs []Known
		want string
	}{
		{"newest entitling wins over a newer unpaid", []Known{known(sub("a", "past_due", "", 1), "", 0, ""), known(sub("b", "unpaid", "", 9), "", 0, "")}, "a"},
		{"newest of two entitling", []Known{known(sub("a", "active", "", 1), "", 0, ""), known(sub("b", "trialing", "", 9), "", 0, "")}, "b"},
		{"not ended wins over ended", []Known{known(sub("a", "paused", "", 1), "", 0, ""), known(sub("b", "canceled", "", 9), "", 0, "")}, "a"},
		{"same second: by id", []Known{known(sub("a", "active", "", 5), "", 0, ""), known(sub("b", "active", "", 5), "", 0, "")}, "b"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := map[string]Known{}
			for _, k := range c.subs {
				m[k.ID] = k
			}
			if got := Current(m).ID; got != c.want {
				t.Errorf("current %s, want %s", got, c.want)
			}
		})
	}
}
