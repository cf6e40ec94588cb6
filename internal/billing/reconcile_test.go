package billing

import (
	"testing"
)

func snapshotEvent(s Subscription, over string) StripeEvent {
	snap := s
	return StripeEvent{ID: "tkrec_1_" + s.ID, Type: ReconcileEventType, Created: at(100), Snapshot: &snap, Fetched: &snap,
		FetchedOver: over, CanFetch: true}
}

func TestDecideSnapshot(t *testing.T) {
	stored := known(sub("sub_1", "active", "price_starter", 1), "starter", 10, "evt_10")
	base := account(stored)

	t.Run("Stripe's state differs: applied over the state compared, the watermark kept", func(t *testing.T) {
		s := sub("sub_1", "canceled", "price_starter", 1)
		end := at(50)
		s.EndedAt, s.CanceledAt = &end, &end
		d := Decide(base, cat, snapshotEvent(s, base.Version("sub_1")))
		if d.Outcome != Applied || view(d) != "sub_1 canceled starter" || !d.Changed {
			t.Fatalf("decision %+v (%s)", d, view(d))
		}
		if d.Save.EventAt != at(10) || d.Save.EventID != "evt_10" {
			t.Errorf("watermark moved to %v %s: a later real event must still apply", d.Save.EventAt, d.Save.EventID)
		}
		// and a real event newer than the watermark still applies over it
		a := d.Account
		after := Decide(a, cat, subEvent("evt_20", "customer.subscription.updated", 20, sub("sub_1", "active", "price_pro", 1)))
		if after.Outcome != Applied || view(after) != "sub_1 active pro" {
			t.Errorf("event after the snapshot: %+v (%s)", after, view(after))
		}
	})
	t.Run("the stored state changed since it was compared: fetched again, never the listing applied", func(t *testing.T) {
		listed := sub("sub_1", "active", "price_starter", 1) // what Stripe listed before a webhook moved it on
		over := base.Version("sub_1")
		moved := account(known(sub("sub_1", "active", "price_pro", 1), "pro", 11, "evt_11"))
		if d := Decide(moved, cat, snapshotEvent(listed, over)); d.NeedFetch != "sub_1" || d.Save != nil {
			t.Errorf("decision %+v, want a fetch", d)
		}
		// a state fetched without an event changes the version too
		fetchedOnly := stored
		fetchedOnly.Status = "past_due"
		if d := Decide(account(fetchedOnly), cat, snapshotEvent(listed, over)); d.NeedFetch != "sub_1" {
			t.Errorf("decision %+v over a state changed without an event, want a fetch", d)
		}
		ev := snapshotEvent(listed, over)
		ev.CanFetch = false
		if d := Decide(moved, cat, ev); d.Outcome != Ignored || d.Save != nil {
			t.Errorf("without Stripe: %+v", d)
		}
	})
	t.Run("the same state: nothing to do", func(t *testing.T) {
		if d := Decide(base, cat, snapshotEvent(stored.Subscription, base.Version("sub_1"))); d.Outcome != Ignored || d.Save != nil || d.Changed {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("a subscription of the tenant's customer never heard of: learnt, without a watermark", func(t *testing.T) {
		n := sub("sub_2", "active", "price_ent", 50)
		d := Decide(base, cat, snapshotEvent(n, "new"))
		if d.Outcome != Applied || view(d) != "sub_2 active ent" || !d.Save.EventAt.IsZero() {
			t.Errorf("decision %+v (%s)", d, view(d))
		}
	})
	t.Run("a stranger's subscription, whatever its metadata", func(t *testing.T) {
		s := sub("sub_x", "active", "price_ent", 50)
		s.CustomerID, s.PlanID = "cus_stranger", "ent"
		if d := Decide(base, cat, snapshotEvent(s, "new")); d.Outcome != NotOurs || d.Save != nil {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("an older subscription's state is stored without touching the current one", func(t *testing.T) {
		a := account(stored, known(sub("sub_2", "active", "price_ent", 50), "ent", 50, "evt_50"))
		s := sub("sub_1", "past_due", "price_starter", 1)
		d := Decide(a, cat, snapshotEvent(s, a.Version("sub_1")))
		if d.Outcome != NotCurrent || view(d) != "sub_2 active ent" || d.Save == nil || d.Save.Status != "past_due" {
			t.Errorf("decision %+v (%s)", d, view(d))
		}
	})
}

func TestDiff(t *testing.T) {
	a := sub("sub_1", "active", "price_starter", 1)
	amount := 2900.0
	a.UnitAmount, a.Currency, a.Interval, a.IntervalCount = &amount, "usd", "month", 1
	if d := Diff(a, a); len(d) != 0 {
		t.Errorf("a subscription differs from itself: %v", d)
	}
	b := a
	b.Status, b.Quantity, b.UnitAmount = "past_due", 3, nil
	end := at(9)
	b.EndedAt = &end
	got := map[string][2]string{}
	for _, f := range Diff(a, b) {
		got[f.Field] = [2]string{f.Ours, f.Stripe}
	}
	want := map[string][2]string{"status": {"active", "past_due"}, "quantity": {"1", "3"}, "unit_amount": {"2900", "-"},
		"ended_at": {"-", "2026-11-01T12:00:09Z"}}
	if len(got) != len(want) {
		t.Errorf("diff %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %v, want %v", k, got[k], v)
		}
	}
	b = a
	b.PlanID = "another hint"
	if d := Diff(a, b); len(d) != 0 {
		t.Errorf("metadata.plan_id is a hint, not state: %v", d)
	}
}

func TestReconcileStateTenant(t *testing.T) {
	st := ReconcileState{
		Customers:     map[string]string{"cus_1": "T1", "cus_2": "T2"},
		Subscriptions: map[string]LinkedSubscription{"sub_a": {TenantID: "T1"}},
	}
	for _, c := range []struct{ sub, customer, want string }{
		{"sub_a", "cus_2", "T1"}, // a linked subscription wins over the customer
		{"sub_b", "cus_2", "T2"}, // else the customer tenantkit created
		{"sub_b", "cus_x", ""},   // a stranger's
		{"", "", ""},
		{"sub_b", "", ""},
	} {
		if got := st.Tenant(c.sub, c.customer); got != c.want {
			t.Errorf("Tenant(%q, %q) = %q, want %q", c.sub, c.customer, got, c.want)
		}
	}
}

func TestMonthlyRecurring(t *testing.T) {
	got := MonthlyRecurring([]Recurring{
		{Currency: "usd", Interval: "month", IntervalCount: 1, Amount: 2900 * 3, Subscriptions: 1}, // 3 seats
		{Currency: "usd", Interval: "year", IntervalCount: 1, Amount: 99000, Subscriptions: 2},     // 8250
		{Currency: "usd", Interval: "month", IntervalCount: 3, Amount: 9000, Subscriptions: 1},     // quarterly: 3000
		{Currency: "usd", Interval: "week", IntervalCount: 2, Amount: 1400, Subscriptions: 1},      // 1400 × 365/7/12/2 = 3041.67
		{Currency: "eur", Interval: "year", IntervalCount: 2, Amount: 240000, Subscriptions: 1},    // 10000
		{Currency: "eur", Interval: "day", IntervalCount: 1, Amount: 100, Subscriptions: 1},        // 3041.67
		{Currency: "gbp", Interval: "fortnight", IntervalCount: 1, Amount: 5, Subscriptions: 1},    // unknown interval: left out
	})
	want := []MRR{{Currency: "eur", Amount: 13042, Subscriptions: 2}, {Currency: "usd", Amount: 8700 + 8250 + 3000 + 3042, Subscriptions: 5}}
	if len(got) != len(want) {
		t.Fatalf("MRR %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("MRR[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}
