package billing

import (
	"strings"
	"testing"
	"time"
)

func TestSeatTarget(t *testing.T) {
	live := SeatState{Version: 3, Members: 7, PerSeat: true, SubscriptionID: "sub_1", Status: "active", Quantity: 5}
	for _, c := range []struct {
		name   string
		edit   func(*SeatState)
		target int64
		ok     bool
	}{
		{"members of a live per-seat subscription", func(*SeatState) {}, 7, true},
		{"past_due still bills", func(s *SeatState) { s.Status = "past_due" }, 7, true},
		{"trialing", func(s *SeatState) { s.Status = "trialing" }, 7, true},
		{"not per-seat", func(s *SeatState) { s.PerSeat = false }, 0, false},
		{"no subscription", func(s *SeatState) { s.SubscriptionID = "" }, 0, false},
		{"canceled", func(s *SeatState) { s.Status = "canceled" }, 0, false},
		{"incomplete_expired", func(s *SeatState) { s.Status = "incomplete_expired" }, 0, false},
		{"incomplete: Stripe refuses changes", func(s *SeatState) { s.Status = "incomplete" }, 0, false},
		{"deleted tenant", func(s *SeatState) { s.TenantDeleted = true }, 0, false},
		{"no members (a purged tenant)", func(s *SeatState) { s.Members = 0 }, 0, false},
	} {
		st := live
		c.edit(&st)
		if target, ok := SeatTarget(st); target != c.target || ok != c.ok {
			t.Errorf("%s: SeatTarget = %d, %v; want %d, %v", c.name, target, ok, c.target, c.ok)
		}
	}
	if k1, k2 := SeatsKey("sub_1", 3, 7), SeatsKey("sub_1", 4, 7); k1 == k2 || !strings.Contains(k1, "sub_1") {
		t.Errorf("keys %q and %q: a new seat version must have its own key", k1, k2)
	}
}

func TestCancelOnDeletion(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC)
	writes := CancelOnDeletion("t1", at, map[string]string{
		"sub_active": "active", "sub_trial": "trialing", "sub_due": "past_due", "sub_unpaid": "unpaid",
		"sub_paused": "paused", "sub_incomplete": "incomplete", "sub_done": "canceled", "sub_expired": "incomplete_expired",
	})
	got := map[string]string{}
	for _, w := range writes {
		if w.Kind != CancelSubscription || w.TenantID != "t1" {
			t.Errorf("write %+v", w)
		}
		got[w.SubscriptionID] = w.Key
	}
	if len(got) != 6 || got["sub_done"] != "" || got["sub_expired"] != "" {
		t.Errorf("cancellations %v: want every subscription that has not ended", got)
	}
	if got["sub_active"] != CancelWrite("t1", at, "sub_active").Key || got["sub_active"] == CancelWrite("t1", at.Add(time.Microsecond), "sub_active").Key {
		t.Error("the key must be the same for one deletion and differ for another")
	}
}

// A deleted tenant: events record the subscription's own state and never touch the tenant; a
// live subscription is canceled under the deletion's key.
func TestDecideDeletedTenant(t *testing.T) {
	deleted := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	a := Account{TenantID: "t1", TenantName: "Acme", CustomerID: "cus_1", Current: "sub_old", PlanID: "free",
		DeletedAt: &deleted, Members: 3, Subscriptions: map[string]Known{}}
	cat := Catalog{PlanOfPrice: map[string]string{"price_pro": "pro"}, Plans: map[string]bool{"pro": true, "free": true},
		PerSeat: map[string]bool{"pro": true}}
	ev := StripeEvent{ID: "evt_1", Type: "customer.subscription.created", Created: deleted.Add(time.Hour),
		Subscription: &Subscription{ID: "sub_new", CustomerID: "cus_1", Status: "active", PriceID: "price_pro", Quantity: 1,
			Created: deleted.Add(time.Hour)}}
	d := Decide(a, cat, ev)
	if d.Outcome != TenantDeleted || d.Changed || d.Save == nil || d.Save.ID != "sub_new" || len(d.Emails) != 0 || d.SyncSeats {
		t.Fatalf("decision %+v", d)
	}
	if len(d.Writes) != 1 || d.Writes[0] != CancelWrite("t1", deleted, "sub_new") {
		t.Errorf("writes %+v, want the cancellation of sub_new under the deletion's key", d.Writes)
	}
	if d.Account.Current != "sub_old" || d.Account.PlanID != "free" {
		t.Errorf("the deleted tenant's account moved: %+v", d.Account)
	}
	// Its cancellation comes back: recorded, nothing to queue.
	ev2 := ev
	ev2.ID, ev2.Type, ev2.Created = "evt_2", "customer.subscription.deleted", deleted.Add(2*time.Hour)
	s := *ev.Subscription
	s.Status = "canceled"
	ev2.Subscription = &s
	a.Subscriptions["sub_new"] = Known{Subscription: *ev.Subscription, PlanID: "pro", EventAt: ev.Created, EventID: ev.ID}
	if d := Decide(a, cat, ev2); d.Outcome != TenantDeleted || len(d.Writes) != 0 || d.Changed {
		t.Errorf("the cancellation's event: %+v", d)
	}
}

func TestDecideSeatsDrift(t *testing.T) {
	base := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	cat := Catalog{PlanOfPrice: map[string]string{"price_pro": "pro", "price_ent": "ent"}, Plans: map[string]bool{"pro": true, "ent": true},
		PerSeat: map[string]bool{"pro": true}}
	event := func(qty int64, price, status string) StripeEvent {
		return StripeEvent{ID: "evt", Type: "customer.subscription.updated", Created: base.Add(time.Hour),
			Subscription: &Subscription{ID: "sub_1", CustomerID: "cus_1", Status: status, PriceID: price, Quantity: qty, Created: base}}
	}
	a := Account{TenantID: "t1", CustomerID: "cus_1", Current: "sub_1", PlanID: "pro", Members: 4,
		Subscriptions: map[string]Known{"sub_1": {Subscription: Subscription{ID: "sub_1", CustomerID: "cus_1", Status: "active",
			PriceID: "price_pro", Quantity: 4, Created: base}, PlanID: "pro", EventAt: base, EventID: "evt_0"}}}
	for _, c := range []struct {
		name string
		ev   StripeEvent
		want bool
	}{
		{"the quantity tenantkit set comes back", event(4, "price_pro", "active"), false},
		{"another quantity (the portal, a checkout at one seat)", event(9, "price_pro", "active"), true},
		{"a plan that is not per-seat", event(9, "price_ent", "active"), false},
		{"an ended subscription", event(9, "price_pro", "canceled"), false},
		{"an incomplete one", event(1, "price_pro", "incomplete"), false},
	} {
		if d := Decide(a, cat, c.ev); d.SyncSeats != c.want {
			t.Errorf("%s: SyncSeats %v, want %v (%+v)", c.name, d.SyncSeats, c.want, d)
		}
	}
	stale := event(9, "price_pro", "active")
	stale.Created = base.Add(-time.Hour)
	if d := Decide(a, cat, stale); d.SyncSeats {
		t.Error("a stale event queued a seat sync")
	}
}
