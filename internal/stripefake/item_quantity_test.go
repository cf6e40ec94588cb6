package stripefake

import (
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

// TestSubscriptionItemQuantity: POST /v1/subscription_items/{id} with quantity is stateful, emits
// customer.subscription.updated when it changes something (and only then), replays under its
// idempotency key, and is refused where Stripe refuses it.
func TestSubscriptionItemQuantity(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	_, subID := subscribe(t, sf, sc, c, 0)
	sf.Drain()
	var licensed, metered string
	for _, it := range sf.Subscription(subID).Items.Data {
		if it.Price.ID == c.metered {
			metered = it.ID
		} else {
			licensed = it.ID
		}
	}

	set := func(qty int64, key string) (*stripe.SubscriptionItem, error) {
		p := &stripe.SubscriptionItemParams{Quantity: stripe.Int64(qty)}
		if key != "" {
			p.SetIdempotencyKey(key)
		}
		return sc.SubscriptionItems.Update(licensed, p)
	}
	it, err := set(7, "seats-7")
	if err != nil {
		t.Fatal(err)
	}
	if it.Quantity != 7 || it.Subscription != subID || it.Price.ID != c.basic {
		t.Errorf("answer %+v", it)
	}
	sub := sf.Subscription(subID)
	if got := sub.Items.Data[slices.IndexFunc(sub.Items.Data, func(i *stripe.SubscriptionItem) bool { return i.ID == licensed })].Quantity; got != 7 {
		t.Errorf("the subscription holds quantity %d, want 7", got)
	}
	evs := sf.Drain()
	if len(evs) != 1 || evs[0].Type != "customer.subscription.updated" {
		t.Fatalf("events %v, want one customer.subscription.updated", types(evs))
	}
	var obj stripe.Subscription
	prev := eventObject(t, evs[0], &obj)
	if _, ok := prev["items"]; !ok {
		t.Errorf("previous_attributes %v lack the items", prev)
	}

	// The same key again: a replay, nothing runs. The same quantity under a new key: it runs,
	// changes nothing, emits nothing, and is counted as a write that changed nothing.
	if again, err := set(7, "seats-7"); err != nil || again.Quantity != 7 {
		t.Fatalf("replay: %v %v", again, err)
	}
	if n := sf.Replayed(http.MethodPost, "/v1/subscription_items/"+licensed); n != 1 {
		t.Errorf("%d replays, want 1", n)
	}
	if _, err := set(7, "seats-7-again"); err != nil {
		t.Fatal(err)
	}
	if evs := sf.Drain(); len(evs) != 0 {
		t.Errorf("setting the quantity it has emitted %v", types(evs))
	}
	if ran, unchanged := sf.SetQuantityRequests(); ran != 2 || unchanged != 1 {
		t.Errorf("SetQuantityRequests = %d ran, %d unchanged; want 2 and 1", ran, unchanged)
	}

	// Refusals.
	if _, err := set(-1, ""); err == nil {
		t.Error("a negative quantity was accepted")
	} else {
		stripeErr(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
	}
	_, err = sc.SubscriptionItems.Update(metered, &stripe.SubscriptionItemParams{Quantity: stripe.Int64(2)})
	stripeErr(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
	_, err = sc.SubscriptionItems.Update("si_missing", &stripe.SubscriptionItemParams{Quantity: stripe.Int64(2)})
	if se := stripeErr(t, err, http.StatusNotFound, stripe.ErrorTypeInvalidRequest); se.Code != stripe.ErrorCodeResourceMissing {
		t.Errorf("unknown item: code %s", se.Code)
	}
	status, _, body := raw(t, sf, http.MethodPost, "/v1/subscription_items/"+licensed, url.Values{"price": {c.pro}}, "Bearer "+TestKey, "")
	if status != http.StatusBadRequest {
		t.Errorf("an unmodelled parameter: %d %v", status, body)
	}
	if _, err := sc.Subscriptions.Cancel(subID, nil); err != nil {
		t.Fatal(err)
	}
	sf.Drain()
	_, err = set(3, "")
	stripeErr(t, err, http.StatusBadRequest, stripe.ErrorTypeInvalidRequest)
	if evs := sf.Drain(); len(evs) != 0 {
		t.Errorf("refused updates emitted %v", types(evs))
	}
}
