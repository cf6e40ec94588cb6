package stripefake

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

func TestListCustomers(t *testing.T) {
	sf, sc := newFake(t)
	var ids []string
	for i := range 5 {
		c, err := sc.Customers.New(&stripe.CustomerParams{Email: stripe.String([]string{"a@x.test", "b@x.test"}[i%2])})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
		sf.Advance(time.Second)
	}
	// stripe-go's iterator follows has_more with starting_after, page after page, newest first
	p := &stripe.CustomerListParams{}
	p.Limit = stripe.Int64(2)
	var got []string
	it := sc.Customers.List(p)
	for it.Next() {
		got = append(got, it.Customer().ID)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Errorf("customers %v, want %v (newest first)", got, want)
	}
	if n := sf.Executed(http.MethodGet, "/v1/customers"); n != 3 {
		t.Errorf("%d list requests for 5 customers by 2, want 3", n)
	}
	// email and created filters
	p = &stripe.CustomerListParams{Email: stripe.String("b@x.test"), CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: start.Unix() + 2}}
	got = got[:0]
	for it := sc.Customers.List(p); it.Next(); {
		got = append(got, it.Customer().ID)
	}
	if !slices.Equal(got, []string{ids[3]}) {
		t.Errorf("email b@, created ≥ start+2: %v, want [%s]", got, ids[3])
	}
	if st, _, body := raw(t, sf, http.MethodGet, "/v1/customers", url.Values{"created[after]": {"1"}}, "Bearer "+TestKey, ""); st != http.StatusBadRequest {
		t.Errorf("unknown created key: %d %v", st, body)
	}
}

func TestListEventsAndLostWebhooks(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	_, sub := subscribe(t, sf, sc, c, 0)
	sf.Drain()
	sf.Advance(10 * 24 * time.Hour)
	if err := sf.PortalSetQuantity(sub, 3); err != nil {
		t.Fatal(err)
	}
	if err := sf.FailPayment(sub); err != nil { // renewal: the clock moves to 29 February
		t.Fatal(err)
	}
	sf.Advance(3 * 24 * time.Hour) // the checkout's events are now 32 days old
	if n := sf.LoseWebhooks(func(e Event) bool { return e.Type == "invoice.payment_failed" }); n != 1 {
		t.Fatalf("lost %d webhooks, want 1", n)
	}
	drained := types(sf.Drain())
	if slices.Contains(drained, "invoice.payment_failed") || !slices.Contains(drained, "customer.subscription.updated") {
		t.Errorf("drained %v: the lost webhook must not come, the others must", drained)
	}
	all := sf.Events()
	now := sf.Now().Unix()

	list := func(p *stripe.EventListParams) []string {
		t.Helper()
		p.Limit = stripe.Int64(3)
		var out []string
		it := sc.Events.List(p)
		for it.Next() {
			out = append(out, it.Event().ID)
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	expect := func(keep func(Event) bool) []string {
		var out []string
		for i := len(all) - 1; i >= 0; i-- {
			if keep(all[i]) {
				out = append(out, all[i].ID)
			}
		}
		return out
	}
	// Only the last 30 days are listed: the checkout's events are 32 days old by now.
	recent := func(e Event) bool { return e.Created >= now-30*24*3600 }
	if got, want := list(&stripe.EventListParams{}), expect(recent); !slices.Equal(got, want) || len(want) == 0 || len(want) == len(all) {
		t.Errorf("events %v, want the last 30 days %v (of %d)", got, want, len(all))
	}
	// The lost one is listed like any other.
	types := []string{"invoice.payment_failed", "customer.subscription.updated"}
	got := list(&stripe.EventListParams{Types: stripe.StringSlice(types)})
	want := expect(func(e Event) bool { return recent(e) && slices.Contains(types, e.Type) })
	if !slices.Equal(got, want) || len(want) < 3 {
		t.Errorf("types %v: %v, want %v", types, got, want)
	}
	// created[gte] and a type wildcard
	since := now - 4*24*3600 // the failed renewal, not the checkout
	got = list(&stripe.EventListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: since}, Type: stripe.String("invoice.*")})
	want = expect(func(e Event) bool { return e.Created >= since && len(e.Type) > 8 && e.Type[:8] == "invoice." })
	if !slices.Equal(got, want) || len(want) == 0 {
		t.Fatalf("invoice.* since %d: %v, want %v", since, got, want)
	}
	// a listed event decodes as the webhook did
	ev, err := sc.Events.Get(want[0], nil)
	if err != nil || ev.Type == "" || ev.Data == nil || ev.APIVersion != APIVersion {
		t.Errorf("GET event: %+v, %v", ev, err)
	}
	old := all[0].ID
	if _, err := sc.Events.Get(old, nil); err == nil {
		t.Errorf("event %s, 32 days old, still retrievable", old)
	}
	key := "Bearer " + TestKey
	if st, _, _ := raw(t, sf, http.MethodGet, "/v1/events", url.Values{"type": {"invoice.paid"}, "types[0]": {"invoice.paid"}}, key, ""); st != http.StatusBadRequest {
		t.Errorf("type and types together: %d", st)
	}
	many := url.Values{}
	for i := range 21 {
		many.Set("types["+string(rune('a'+i))+"]", "x")
	}
	if st, _, _ := raw(t, sf, http.MethodGet, "/v1/events", many, key, ""); st != http.StatusBadRequest {
		t.Errorf("21 types: %d", st)
	}
}

func TestListSubscriptionsAll(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	_, a := subscribe(t, sf, sc, c, 0)
	_, b := subscribe(t, sf, sc, c, 0)
	if _, err := sc.Subscriptions.Cancel(a, nil); err != nil {
		t.Fatal(err)
	}
	ids := func(status string) []string {
		p := &stripe.SubscriptionListParams{}
		if status != "" {
			p.Status = stripe.String(status)
		}
		p.Limit = stripe.Int64(1)
		var out []string
		for it := sc.Subscriptions.List(p); it.Next(); {
			out = append(out, it.Subscription().ID)
		}
		return out
	}
	if got := ids(""); !slices.Equal(got, []string{b}) {
		t.Errorf("default (not canceled): %v", got)
	}
	if got := ids("all"); !slices.Equal(got, []string{b, a}) {
		t.Errorf("status=all: %v, want [%s %s]", got, b, a)
	}
}
