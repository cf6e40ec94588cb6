package stripefake

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

func TestIdempotentReplay(t *testing.T) {
	sf, sc := newFake(t)
	p := func(name string) *stripe.CustomerParams {
		cp := &stripe.CustomerParams{Name: stripe.String(name), Metadata: map[string]string{"tenant_id": "t1"}}
		cp.SetIdempotencyKey("tk-customer-t1")
		return cp
	}
	first, err := sc.Customers.New(p("Acme"))
	if err != nil {
		t.Fatal(err)
	}
	if first.LastResponse.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("first request marked as replayed")
	}
	second, err := sc.Customers.New(p("Acme"))
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || string(second.LastResponse.RawJSON) != string(first.LastResponse.RawJSON) {
		t.Fatalf("replay answered another customer: %s vs %s", second.ID, first.ID)
	}
	if got := second.LastResponse.Header.Get("Idempotent-Replayed"); got != "true" {
		t.Fatalf("Idempotent-Replayed = %q", got)
	}
	if got := second.LastResponse.IdempotencyKey; got != "tk-customer-t1" {
		t.Fatalf("echoed Idempotency-Key = %q", got)
	}
	// Not re-run: one customer, one customer.created event, one executed request.
	if n := len(sf.Events()); n != 1 {
		t.Fatalf("%d events after a replay, want 1 customer.created", n)
	}
	if ex, re := sf.Executed("POST", "/v1/customers"), sf.Replayed("POST", "/v1/customers"); ex != 1 || re != 1 {
		t.Fatalf("executed %d, replayed %d; want 1, 1", ex, re)
	}
	// Same key, other parameters: 400 idempotency_error, nothing created.
	_, err = sc.Customers.New(p("Other"))
	se := stripeErr(t, err, 400, stripe.ErrorTypeIdempotency)
	if !strings.Contains(se.Msg, "same parameters") {
		t.Fatalf("message %q", se.Msg)
	}
	// Same key on another endpoint: idempotency_error too.
	pp := &stripe.ProductParams{Name: stripe.String("Acme")}
	pp.SetIdempotencyKey("tk-customer-t1")
	_, err = sc.Products.New(pp)
	if se := stripeErr(t, err, 400, stripe.ErrorTypeIdempotency); !strings.Contains(se.Msg, "same endpoint") {
		t.Fatalf("message %q", se.Msg)
	}
	if ex := sf.Executed("POST", "/v1/"); ex != 1 {
		t.Fatalf("%d requests executed, want 1", ex)
	}
	// Keys are pruned after 24 hours: the same request then runs again.
	sf.Advance(24*time.Hour - time.Second)
	if again, err := sc.Customers.New(p("Acme")); err != nil || again.ID != first.ID {
		t.Fatalf("within 24 h: %v %v", again, err)
	}
	sf.Advance(time.Second)
	later, err := sc.Customers.New(p("Acme"))
	if err != nil {
		t.Fatal(err)
	}
	if later.ID == first.ID {
		t.Fatal("a key older than 24 h still replayed")
	}
}

func TestIdempotencyErrorsAndKeylessRequests(t *testing.T) {
	sf, sc := newFake(t)
	// A response to a parameter validation failure is not saved: the corrected request may reuse
	// the key (https://docs.stripe.com/api/idempotent_requests).
	pp := &stripe.ProductParams{}
	pp.SetIdempotencyKey("k1")
	_, err := sc.Products.New(pp)
	stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest)
	pp = &stripe.ProductParams{Name: stripe.String("Plans")}
	pp.SetIdempotencyKey("k1")
	if _, err := sc.Products.New(pp); err != nil {
		t.Fatalf("the key of a refused invalid request could not be reused: %v", err)
	}
	// A refusal after the endpoint ran (a state conflict) is saved and replayed.
	prod, _ := sc.Products.New(&stripe.ProductParams{Name: stripe.String("Other")})
	mk := func(key string) error {
		p := &stripe.PriceParams{Product: stripe.String(prod.ID), Currency: stripe.String("usd"), UnitAmount: stripe.Int64(1),
			LookupKey: stripe.String("dup")}
		p.SetIdempotencyKey(key)
		_, err := sc.Prices.New(p)
		return err
	}
	if err := mk("p1"); err != nil {
		t.Fatal(err)
	}
	stripeErr(t, mk("p2"), 400, stripe.ErrorTypeInvalidRequest)
	err = mk("p2")
	stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest)
	if sf.Replayed("POST", "/v1/prices") != 1 {
		t.Fatal("the saved refusal was not replayed")
	}
	// stripe-go adds its own key to every POST: distinct calls are distinct requests.
	a, _ := sc.Customers.New(&stripe.CustomerParams{Name: stripe.String("A")})
	b, _ := sc.Customers.New(&stripe.CustomerParams{Name: stripe.String("A")})
	if a.ID == b.ID {
		t.Fatal("two keyless creations made one customer")
	}
}

func TestFailuresAndNetworkRetries(t *testing.T) {
	sf, _ := newFake(t)
	// A response lost on the network: the request ran; stripe-go retries with the same key and
	// gets the replay; one customer exists.
	sf.Fail(Failure{Method: "POST", PathPrefix: "/v1/customers", Drop: true})
	sc := newClient(sf, 1)
	cp := &stripe.CustomerParams{Name: stripe.String("Acme")}
	cp.SetIdempotencyKey("drop-1")
	c, err := sc.Customers.New(cp)
	if err != nil {
		t.Fatal(err)
	}
	reqs := sf.Requests()
	if len(reqs) != 2 || !reqs[0].Executed || reqs[0].Status != 0 || !reqs[1].Replayed || reqs[1].IdempotencyKey != "drop-1" {
		t.Fatalf("requests %+v", reqs)
	}
	if n := len(sf.Events()); n != 1 || sf.Customer(c.ID).ID != c.ID {
		t.Fatalf("%d events", n)
	}
	// A saved 500: the retry with the key replays it and the endpoint never runs.
	sf.Fail(Failure{Method: "POST", PathPrefix: "/v1/products", Status: 500, Saved: true})
	sc0 := newClient(sf, 0)
	for i := 0; i < 2; i++ {
		pp := &stripe.ProductParams{Name: stripe.String("Plans")}
		pp.SetIdempotencyKey("p-500")
		_, err := sc0.Products.New(pp)
		stripeErr(t, err, 500, stripe.ErrorTypeAPI)
	}
	if sf.Executed("POST", "/v1/products") != 0 || sf.Replayed("POST", "/v1/products") != 1 {
		t.Fatal("a saved 500 was not replayed")
	}
	// An unsaved refusal (429): the same key runs the request next time.
	sf.FailNext("POST", "/v1/products", 429, "")
	pp := &stripe.ProductParams{Name: stripe.String("Plans")}
	pp.SetIdempotencyKey("p-429")
	_, err = sc0.Products.New(pp)
	if se := stripeErr(t, err, 429, stripe.ErrorTypeInvalidRequest); se.Code != stripe.ErrorCodeRateLimit {
		t.Fatalf("code %s", se.Code)
	}
	pp = &stripe.ProductParams{Name: stripe.String("Plans")}
	pp.SetIdempotencyKey("p-429")
	if _, err := sc0.Products.New(pp); err != nil {
		t.Fatal(err)
	}
	// A custom body.
	sf.FailNext("", "/v1/customers/", 503, `{"error":{"type":"api_error","message":"down"}}`)
	_, err = sc0.Customers.Get(c.ID, nil)
	if se := stripeErr(t, err, 503, stripe.ErrorTypeAPI); se.Msg != "down" {
		t.Fatalf("message %q", se.Msg)
	}
	if _, err := sc0.Customers.Get(c.ID, nil); err != nil {
		t.Fatalf("the failure outlived its one use: %v", err)
	}
}

func TestAuthAndErrorShapes(t *testing.T) {
	sf, _ := newFake(t)
	status, _, body := raw(t, sf, "GET", "/v1/customers/cus_x", nil, "", "")
	if status != 401 || body["error"].(map[string]any)["type"] != "invalid_request_error" {
		t.Fatalf("no key: %d %v", status, body)
	}
	status, _, body = raw(t, sf, "GET", "/v1/customers/cus_x", nil, "Bearer sk_live_123456789012", "")
	if status != 401 || !strings.Contains(body["error"].(map[string]any)["message"].(string), "Invalid API Key") {
		t.Fatalf("live key: %d %v", status, body)
	}
	status, hdr, body := raw(t, sf, "GET", "/v1/customers/cus_nope", nil, "Bearer "+TestKey, "")
	e := body["error"].(map[string]any)
	if status != 404 || e["type"] != "invalid_request_error" || e["code"] != "resource_missing" || e["param"] != "id" ||
		e["message"] != "No such customer: 'cus_nope'" || !strings.HasPrefix(hdr.Get("Request-Id"), "req_") {
		t.Fatalf("unknown id: %d %v", status, body)
	}
	for _, path := range []string{"/v1/subscriptions/sub_nope", "/v1/prices/price_nope", "/v1/checkout/sessions/cs_nope"} {
		if status, _, _ := raw(t, sf, "GET", path, nil, "Bearer "+TestKey, ""); status != 404 {
			t.Fatalf("%s: %d", path, status)
		}
	}
	// Unknown parameters are refused, naming the parameter.
	status, _, body = raw(t, sf, "POST", "/v1/customers", url.Values{"nmae": {"x"}}, "Bearer "+TestKey, "")
	if status != 400 || body["error"].(map[string]any)["param"] != "nmae" {
		t.Fatalf("unknown parameter: %d %v", status, body)
	}
	// HTTP Basic with the key as user name (curl -u sk_test_…:) works too.
	status, _, _ = raw(t, sf, "POST", "/v1/customers", url.Values{"name": {"x"}}, "Basic c2tfdGVzdF9hYmM6", "")
	if status != 200 {
		t.Fatalf("basic auth: %d", status)
	}
}

func TestLookupKeysAndTransfer(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	list := func(keys ...string) []*stripe.Price {
		it := sc.Prices.List(&stripe.PriceListParams{LookupKeys: stripe.StringSlice(keys), Active: stripe.Bool(true)})
		var out []*stripe.Price
		for it.Next() {
			out = append(out, it.Price())
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := list("basic_month")
	if len(got) != 1 || got[0].ID != c.basic || got[0].UnitAmount != 1000 || got[0].Product.ID != c.product ||
		got[0].Recurring.Interval != "month" || got[0].Recurring.UsageType != stripe.PriceRecurringUsageTypeLicensed {
		t.Fatalf("lookup basic_month: %+v", got)
	}
	if got := list("basic_month", "pro_month"); len(got) != 2 || got[0].ID != c.pro {
		t.Fatalf("two keys, newest first: %v", got)
	}
	if got := list("nope"); len(got) != 0 {
		t.Fatalf("unknown key matched %d prices", len(got))
	}
	// The metered price decodes with its decimal amount and usage type.
	m := sf.Price(c.metered)
	if m.UnitAmountDecimal != 0.05 || m.UnitAmount != 0 || m.Recurring.UsageType != stripe.PriceRecurringUsageTypeMetered ||
		m.Recurring.AggregateUsage != stripe.PriceRecurringAggregateUsageSum {
		t.Fatalf("metered price %+v %+v", m, m.Recurring)
	}

	// A key in use is refused without transfer_lookup_key…
	np := func(transfer bool) (*stripe.Price, error) {
		return sc.Prices.New(&stripe.PriceParams{Product: stripe.String(c.product), Currency: stripe.String("usd"),
			UnitAmount: stripe.Int64(1200), Recurring: &stripe.PriceRecurringParams{Interval: stripe.String("month")},
			LookupKey: stripe.String("basic_month"), TransferLookupKey: stripe.Bool(transfer)})
	}
	_, err := np(false)
	if se := stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest); se.Param != "lookup_key" || !strings.Contains(se.Msg, c.basic) {
		t.Fatalf("refusal %+v", se)
	}
	sf.Drain()
	// …and moved with it.
	moved, err := np(true)
	if err != nil {
		t.Fatal(err)
	}
	if moved.LookupKey != "basic_month" {
		t.Fatalf("new price lookup_key %q", moved.LookupKey)
	}
	old, err := sc.Prices.Get(c.basic, nil)
	if err != nil || old.LookupKey != "" || !old.Active {
		t.Fatalf("old price keeps lookup_key %q (%v)", old.LookupKey, err)
	}
	if got := list("basic_month"); len(got) != 1 || got[0].ID != moved.ID || got[0].UnitAmount != 1200 {
		t.Fatalf("after transfer: %v", got)
	}
	evs := sf.Drain()
	if got := strings.Join(types(evs), " "); got != "price.updated price.created" {
		t.Fatalf("events %s", got)
	}
	var p stripe.Price
	prev := eventObject(t, evs[0], &p)
	if p.ID != c.basic || p.LookupKey != "" || prev["lookup_key"] != "basic_month" {
		t.Fatalf("price.updated %s %q previous %v", p.ID, p.LookupKey, prev)
	}
}

func TestCheckoutAndPortalSessions(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	cus, _ := sc.Customers.New(&stripe.CustomerParams{Name: stripe.String("Acme")})
	cs, err := sc.CheckoutSessions.New(&stripe.CheckoutSessionParams{
		Mode: stripe.String("subscription"), Customer: stripe.String(cus.ID), ClientReferenceID: stripe.String("t1"),
		LineItems:  []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(c.basic), Quantity: stripe.Int64(2)}, {Price: stripe.String(c.metered)}},
		SuccessURL: stripe.String("https://app.test/ok"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cs.ID, "cs_test_") || cs.Status != "open" || cs.URL != "https://checkout.stripe.test/c/pay/"+cs.ID ||
		cs.Customer.ID != cus.ID || cs.ClientReferenceID != "t1" || cs.Created != start.Unix() || cs.AmountTotal != 2000 {
		t.Fatalf("session %+v", cs)
	}
	got, err := sc.CheckoutSessions.Get(cs.ID, &stripe.CheckoutSessionParams{Expand: stripe.StringSlice([]string{"line_items"})})
	if err != nil || got.LineItems == nil || len(got.LineItems.Data) != 2 || got.LineItems.Data[0].Quantity != 2 {
		t.Fatalf("get with line_items: %+v %v", got, err)
	}
	// Checkout refuses a quantity on a metered price and a missing one on a licensed price.
	_, err = sc.CheckoutSessions.New(&stripe.CheckoutSessionParams{Mode: stripe.String("subscription"), SuccessURL: stripe.String("https://x"),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(c.metered), Quantity: stripe.Int64(1)}}})
	if se := stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest); se.Param != "line_items[0][quantity]" {
		t.Fatalf("param %s", se.Param)
	}
	_, err = sc.CheckoutSessions.New(&stripe.CheckoutSessionParams{Mode: stripe.String("subscription"), SuccessURL: stripe.String("https://x"),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String("price_nope"), Quantity: stripe.Int64(1)}}})
	if se := stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest); se.Code != stripe.ErrorCodeResourceMissing || se.Param != "line_items[0][price]" {
		t.Fatalf("unknown price: %+v", se)
	}
	ps, err := sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{Customer: stripe.String(cus.ID), ReturnURL: stripe.String("https://app.test")})
	if err != nil || !strings.HasPrefix(ps.ID, "bps_") || ps.URL == "" || ps.Customer != cus.ID || ps.ReturnURL != "https://app.test" {
		t.Fatalf("portal %+v %v", ps, err)
	}
	// A session left open past expires_at (24 h) expires and cannot be completed.
	sf.Advance(24 * time.Hour)
	if _, err := sf.CompleteCheckout(cs.ID); err == nil {
		t.Fatal("an expired session completed")
	}
	if got := sf.CheckoutSessions(); len(got) != 1 || got[0].Status != "expired" || got[0].URL != "" {
		t.Fatalf("sessions %+v", got)
	}
}

func TestSubscriptionUpdates(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	_, subID := subscribe(t, sf, sc, c, 0)
	sub := sf.Subscription(subID)
	licensed, metered := sub.Items.Data[0].ID, sub.Items.Data[1].ID
	sf.Drain()

	// Swap the licensed item's price: same item id, quantity reset to 1, metadata merged.
	if _, err := sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{
		Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(licensed), Quantity: stripe.Int64(4)}}}); err != nil {
		t.Fatal(err)
	}
	sf.Drain()
	up := &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(licensed), Price: stripe.String(c.pro)}},
		ProrationBehavior: stripe.String("create_prorations"), Metadata: map[string]string{"plan_id": "pro"}}
	up.SetIdempotencyKey("plan-pro")
	got, err := sc.Subscriptions.Update(subID, up)
	if err != nil {
		t.Fatal(err)
	}
	if got.Items.Data[0].ID != licensed || got.Items.Data[0].Price.ID != c.pro || got.Items.Data[0].Quantity != 1 ||
		got.Metadata["plan_id"] != "pro" || got.Metadata["tenant_id"] != "t1" {
		t.Fatalf("after swap %+v", got.Items.Data[0])
	}
	evs := sf.Drain()
	if len(evs) != 1 || evs[0].Type != "customer.subscription.updated" {
		t.Fatalf("events %v", types(evs))
	}
	var ev struct {
		Request struct {
			ID             string `json:"id"`
			IdempotencyKey string `json:"idempotency_key"`
		} `json:"request"`
	}
	if err := json.Unmarshal(evs[0].Payload, &ev); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ev.Request.ID, "req_") || ev.Request.IdempotencyKey != "plan-pro" {
		t.Fatalf("event request %+v", ev.Request)
	}
	var snap stripe.Subscription
	prev := eventObject(t, evs[0], &snap)
	if prev["metadata"].(map[string]any)["plan_id"] != "basic" || prev["items"] == nil || snap.Items.Data[0].Price.ID != c.pro {
		t.Fatalf("previous_attributes %v", prev)
	}
	// Add an item, set a quantity, remove an item.
	got, err = sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{
		{ID: stripe.String(licensed), Quantity: stripe.Int64(3)},
		{ID: stripe.String(metered), Deleted: stripe.Bool(true)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Items.Data) != 1 || got.Items.Data[0].Quantity != 3 {
		t.Fatalf("items %+v", got.Items.Data)
	}
	got, err = sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{{Price: stripe.String(c.metered)}}})
	if err != nil || len(got.Items.Data) != 2 || got.Items.Data[1].ID == metered || got.Items.Data[1].Price.Recurring.UsageType != "metered" {
		t.Fatalf("add item: %+v %v", got, err)
	}
	// A refused request changes nothing.
	_, err = sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{
		{ID: stripe.String(licensed), Quantity: stripe.Int64(5)}, {ID: stripe.String("si_nope"), Price: stripe.String(c.basic)}}})
	stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest)
	if q := sf.Subscription(subID).Items.Data[0].Quantity; q != 3 {
		t.Fatalf("a refused update changed the quantity to %d", q)
	}
	// An update that changes nothing emits nothing.
	sf.Drain()
	if _, err := sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{Metadata: map[string]string{"plan_id": "pro"}}); err != nil {
		t.Fatal(err)
	}
	if evs := sf.Drain(); len(evs) != 0 {
		t.Fatalf("a no-op update emitted %v", types(evs))
	}
	// cancel_at_period_end sets cancel_at and canceled_at; false clears them.
	got, _ = sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)})
	if !got.CancelAtPeriodEnd || got.CancelAt != got.CurrentPeriodEnd || got.CanceledAt != sf.Now().Unix() ||
		got.CancellationDetails.Reason != "cancellation_requested" {
		t.Fatalf("cancel at period end %+v", got)
	}
	got, _ = sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(false)})
	if got.CancelAtPeriodEnd || got.CancelAt != 0 || got.CanceledAt != 0 {
		t.Fatalf("withdrawn %+v", got)
	}
	// always_invoice bills a change at once.
	sf.Drain()
	if _, err := sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{ProrationBehavior: stripe.String("always_invoice"),
		Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(licensed), Price: stripe.String(c.basic)}}}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(types(sf.Drain()), " "); got != "customer.subscription.updated invoice.created invoice.finalized invoice.paid invoice.payment_succeeded" {
		t.Fatalf("always_invoice events %s", got)
	}
	// List: by customer; canceled ones only with status=all (or canceled/ended).
	cus := sf.Subscription(subID).Customer.ID
	count := func(status string) int {
		p := &stripe.SubscriptionListParams{Customer: stripe.String(cus)}
		if status != "" {
			p.Status = stripe.String(status)
		}
		it := sc.Subscriptions.List(p)
		n := 0
		for it.Next() {
			n++
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		return n
	}
	if count("") != 1 || count("all") != 1 {
		t.Fatal("list before cancel")
	}
	if _, err := sc.Subscriptions.Cancel(subID, nil); err != nil {
		t.Fatal(err)
	}
	if count("") != 0 || count("all") != 1 || count("ended") != 1 || count("canceled") != 1 || count("active") != 0 {
		t.Fatal("list after cancel")
	}
}

func TestUpdateEndedSubscription(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	_, subID := subscribe(t, sf, sc, c, 0)
	sf.Drain()
	cp := &stripe.SubscriptionCancelParams{}
	cp.SetIdempotencyKey("cancel-1")
	canceled, err := sc.Subscriptions.Cancel(subID, cp)
	if err != nil {
		t.Fatal(err)
	}
	now := sf.Now().Unix()
	if canceled.Status != "canceled" || canceled.EndedAt != now || canceled.CanceledAt != now {
		t.Fatalf("canceled %+v", canceled)
	}
	if got := types(sf.Drain()); len(got) != 1 || got[0] != "customer.subscription.deleted" {
		t.Fatalf("events %v", got)
	}
	_, err = sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(false)})
	se := stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest)
	if se.Msg != "A canceled subscription can only update its cancellation_details and metadata." {
		t.Fatalf("message %q", se.Msg)
	}
	_, err = sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{
		Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(canceled.Items.Data[0].ID), Price: stripe.String(c.pro)}}})
	stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest)
	if p := sf.Subscription(subID).Items.Data[0].Price.ID; p != c.basic {
		t.Fatalf("a refused update changed the price to %s", p)
	}
	// Metadata (and cancellation_details) may still change.
	if got, err := sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{Metadata: map[string]string{"note": "x"}}); err != nil || got.Metadata["note"] != "x" {
		t.Fatalf("metadata on a canceled subscription: %v", err)
	}
	// Canceling again: resource_missing; the DELETE's idempotency key has no effect.
	cp = &stripe.SubscriptionCancelParams{}
	cp.SetIdempotencyKey("cancel-1")
	_, err = sc.Subscriptions.Cancel(subID, cp)
	if se := stripeErr(t, err, 404, stripe.ErrorTypeInvalidRequest); se.Code != stripe.ErrorCodeResourceMissing {
		t.Fatalf("code %s", se.Code)
	}

	// incomplete_expired is terminal too.
	cus, _ := sc.Customers.New(&stripe.CustomerParams{Name: stripe.String("B")})
	inc, err := sf.CreateSubscription(cus.ID, []Item{{Price: c.basic}}, nil, 0, "incomplete")
	if err != nil {
		t.Fatal(err)
	}
	_, err = sc.Subscriptions.Update(inc, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)})
	stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest) // incomplete: metadata only
	if err := sf.Expire(inc); err != nil {
		t.Fatal(err)
	}
	_, err = sc.Subscriptions.Update(inc, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)})
	stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest)
	if s := sf.Subscription(inc); s.Status != "incomplete_expired" || s.EndedAt == 0 {
		t.Fatalf("expired %+v", s)
	}
}

func TestUsageRecords(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	_, subID := subscribe(t, sf, sc, c, 0)
	sub := sf.Subscription(subID)
	licensed, metered := sub.Items.Data[0].ID, sub.Items.Data[1].ID
	if sub.Items.Data[1].Quantity != 0 || sub.Items.Data[1].Price.Recurring.UsageType != stripe.PriceRecurringUsageTypeMetered {
		t.Fatalf("metered item %+v", sub.Items.Data[1])
	}
	// A metered item carries no quantity at all; a licensed one does.
	_, _, body := raw(t, sf, "GET", "/v1/subscriptions/"+subID, nil, "Bearer "+TestKey, "")
	data := body["items"].(map[string]any)["data"].([]any)
	if _, has := data[1].(map[string]any)["quantity"]; has {
		t.Fatalf("metered item rendered with a quantity: %v", data[1])
	}
	if q := data[0].(map[string]any)["quantity"]; q != 1.0 {
		t.Fatalf("licensed item quantity %v", q)
	}
	report := func(item string, qty, ts int64, action string) (*stripe.UsageRecord, error) {
		return sc.UsageRecords.New(&stripe.UsageRecordParams{SubscriptionItem: stripe.String(item), Quantity: stripe.Int64(qty),
			Timestamp: stripe.Int64(ts), Action: stripe.String(action)})
	}
	t0 := sub.CurrentPeriodStart
	sf.Advance(time.Hour)
	ur, err := report(metered, 10, t0, "increment")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ur.ID, "mbur_") || ur.SubscriptionItem != metered || ur.Quantity != 10 || ur.Timestamp != t0 {
		t.Fatalf("usage record %+v", ur)
	}
	report(metered, 5, t0, "increment")
	report(metered, 7, t0+60, "increment")
	if got := sf.Usage(metered, sub.CurrentPeriodStart, sub.CurrentPeriodEnd); got != 22 {
		t.Fatalf("usage %d, want 22", got)
	}
	report(metered, 100, t0, "set") // overwrites the usage at t0 (15)
	if got := sf.Usage(metered, sub.CurrentPeriodStart, sub.CurrentPeriodEnd); got != 107 {
		t.Fatalf("usage after set %d, want 107", got)
	}
	if n := len(sf.UsageRecords(metered)); n != 4 {
		t.Fatalf("%d records", n)
	}
	// Refusals: a timestamp in the future or before the period, a licensed item, an unknown item.
	_, err = report(metered, 1, sf.Now().Unix()+10, "set")
	if se := stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest); se.Param != "timestamp" {
		t.Fatalf("param %s", se.Param)
	}
	_, err = report(metered, 1, t0-1, "set")
	stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest)
	_, err = report(licensed, 1, t0, "set")
	stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest)
	_, err = report("si_nope", 1, t0, "set")
	stripeErr(t, err, 404, stripe.ErrorTypeInvalidRequest)
	// An injected 404 on one item's usage records only.
	sf.FailNext("POST", "/v1/subscription_items/"+metered+"/usage_records", 404, "")
	_, err = report(metered, 1, t0, "increment")
	stripeErr(t, err, 404, stripe.ErrorTypeInvalidRequest)
	if got := sf.Usage(metered, sub.CurrentPeriodStart, sub.CurrentPeriodEnd); got != 107 {
		t.Fatalf("an injected failure recorded usage: %d", got)
	}
	// Usage is billed in arrears at the renewal: 107 × 0.05 cents = 5.35, rounded half up: 5 cents.
	sf.Drain()
	if err := sf.Renew(subID); err != nil {
		t.Fatal(err)
	}
	ins := sf.Invoices(subID)
	last := ins[len(ins)-1]
	var usageLine *stripe.InvoiceLineItem
	for _, l := range last.Lines.Data {
		if l.Price.ID == c.metered {
			usageLine = l
		}
	}
	if last.BillingReason != "subscription_cycle" || usageLine == nil || usageLine.Quantity != 107 || usageLine.Amount != 5 ||
		last.Total != 1000+5 || last.PeriodStart != sub.CurrentPeriodStart || last.PeriodEnd != sub.CurrentPeriodEnd {
		t.Fatalf("renewal invoice %+v line %+v", last, usageLine)
	}
}

func TestConcurrentUse(t *testing.T) {
	sf, sc := newFake(t)
	var wg sync.WaitGroup
	ids := make([]string, 20)
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := &stripe.CustomerParams{Name: stripe.String("c")}
			p.SetIdempotencyKey("same") // one customer, whatever the interleaving
			c, err := sc.Customers.New(p)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = c.ID
			sf.Advance(0)
			sf.Events()
		}(i)
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent requests with one key made %s and %s", ids[0], id)
		}
	}
	if sf.Executed("POST", "/v1/customers") != 1 || sf.Replayed("POST", "/v1/customers") != 19 {
		t.Fatalf("executed %d replayed %d", sf.Executed("POST", "/v1/customers"), sf.Replayed("POST", "/v1/customers"))
	}
}

func TestFormParsing(t *testing.T) {
	v, _ := url.ParseQuery("items[0][price]=p0&items[1][id]=si&items[1][deleted]=true&metadata[tenant_id]=t&lookup_keys[]=a&lookup_keys[]=b&subscription_data[metadata][plan_id]=pro")
	f, err := parseForm(v)
	if err != nil {
		t.Fatal(err)
	}
	items, err := f.list("", "items")
	if err != nil || len(items) != 2 {
		t.Fatal(err)
	}
	if p, _ := items[0].str("price"); p != "p0" {
		t.Fatal(p)
	}
	if d, ok, _ := items[1].boolean("items[1]", "deleted"); !d || !ok {
		t.Fatal("deleted")
	}
	keys, _ := f.strs("", "lookup_keys")
	if len(keys) != 2 {
		t.Fatal(keys)
	}
	m, _ := f.child("subscription_data").metadata("subscription_data", "metadata", nil)
	if m["plan_id"] != "pro" {
		t.Fatal(m)
	}
	// metadata[k]= unsets k; metadata= unsets all.
	upd, _ := url.ParseQuery("metadata[a]=&metadata[c]=3")
	f, _ = parseForm(upd)
	if m, _ := f.metadata("", "metadata", map[string]string{"a": "1", "b": "2"}); len(m) != 2 || m["b"] != "2" || m["c"] != "3" {
		t.Fatal(m)
	}
	clear, _ := url.ParseQuery("metadata=")
	f, _ = parseForm(clear)
	if m, _ := f.metadata("", "metadata", map[string]string{"a": "1"}); len(m) != 0 {
		t.Fatal(m)
	}
	for _, bad := range []string{"a]=1", "a[b=1", "[a]=1"} {
		v, _ := url.ParseQuery(bad)
		if _, err := parseForm(v); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}

func TestBillingPeriods(t *testing.T) {
	jan31 := time.Date(2024, 1, 31, 12, 0, 0, 0, time.UTC).Unix()
	want := []time.Time{
		time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC),
		time.Date(2024, 3, 31, 12, 0, 0, 0, time.UTC),
		time.Date(2024, 4, 30, 12, 0, 0, 0, time.UTC),
	}
	for i, w := range want {
		if got := addInterval(jan31, "month", 1, i+1); got != w.Unix() {
			t.Fatalf("period %d ends %v, want %v", i+1, time.Unix(got, 0).UTC(), w)
		}
	}
	if got := addInterval(jan31, "year", 1, 1); got != time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC).Unix() {
		t.Fatal("year")
	}
	if got := addInterval(jan31, "week", 2, 1); got != jan31+14*86400 {
		t.Fatal("week")
	}
}

// TestCancelInvoiceNow: a cancellation with invoice_now bills the period's metered usage and the
// pending items on a final invoice, left open, and not the licensed items again; without it, no
// invoice; usage records are refused once the subscription has ended.
func TestCancelInvoiceNow(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	final := func(invoiceNow bool) (subID, latest string, n int) {
		_, subID = subscribe(t, sf, sc, c, 0)
		sub := sf.Subscription(subID)
		metered := sub.Items.Data[1].ID
		sf.Advance(time.Hour)
		if _, err := sc.UsageRecords.New(&stripe.UsageRecordParams{SubscriptionItem: stripe.String(metered), Quantity: stripe.Int64(300),
			Timestamp: stripe.Int64(sub.CurrentPeriodStart), Action: stripe.String("set")}); err != nil {
			t.Fatal(err)
		}
		before := len(sf.Invoices(subID))
		sf.Drain()
		canceled, err := sc.Subscriptions.Cancel(subID, &stripe.SubscriptionCancelParams{InvoiceNow: stripe.Bool(invoiceNow), Prorate: stripe.Bool(false)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sc.UsageRecords.New(&stripe.UsageRecordParams{SubscriptionItem: stripe.String(metered), Quantity: stripe.Int64(1),
			Timestamp: stripe.Int64(sub.CurrentPeriodStart), Action: stripe.String("set")}); err == nil {
			t.Error("a usage record was taken for an ended subscription")
		}
		if canceled.LatestInvoice != nil {
			latest = canceled.LatestInvoice.ID
		}
		return subID, latest, len(sf.Invoices(subID)) - before
	}
	subID, latest, n := final(true)
	ins := sf.Invoices(subID)
	in := ins[len(ins)-1]
	if n != 1 || in.ID != latest || in.Status != stripe.InvoiceStatusOpen || len(in.Lines.Data) != 1 {
		t.Fatalf("invoice_now: %d new invoices, latest %s, last %+v; want one open final invoice, the latest", n, latest, in)
	}
	if l := in.Lines.Data[0]; l.Price.ID != c.metered || l.Quantity != 300 || l.Amount != 15 || in.AmountDue != 15 {
		t.Errorf("final invoice line %+v, amount due %d; want the 300 calls at 0.05 cents, 15", l, in.AmountDue)
	}
	var types []string
	for _, e := range sf.Drain() {
		types = append(types, e.Type)
	}
	if want := "customer.subscription.deleted invoice.created invoice.finalized"; strings.Join(types, " ") != want {
		t.Errorf("events %v, want %s", types, want)
	}
	if _, _, n := final(false); n != 0 {
		t.Errorf("without invoice_now: %d new invoices, want none", n)
	}
}
