package stripefake

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

// verify checks every event as the service's webhook handler would: signed with Sign, accepted
// by webhook.ConstructEvent (signature, age and API version 2023-10-16), and well formed.
func verify(t *testing.T, evs []Event) []stripe.Event {
	t.Helper()
	out := make([]stripe.Event, 0, len(evs))
	for _, ev := range evs {
		se, err := webhook.ConstructEvent(ev.Payload, Sign(ev.Payload, testSecret), testSecret)
		if err != nil {
			t.Fatalf("%s %s: %v", ev.Type, ev.ID, err)
		}
		if se.ID != ev.ID || string(se.Type) != ev.Type || se.Created != ev.Created || se.APIVersion != "2023-10-16" ||
			se.Object != "event" || !strings.HasPrefix(se.ID, "evt_") || se.Data == nil || se.Data.Object["object"] == nil {
			t.Fatalf("event %+v", se)
		}
		if _, err := webhook.ConstructEvent(ev.Payload, Sign(ev.Payload, "whsec_other"), testSecret); err == nil {
			t.Fatal("a payload signed with another secret was accepted")
		}
		out = append(out, se)
	}
	return out
}

// checked verifies evs and returns them.
func checked(t *testing.T, evs []Event) []Event {
	t.Helper()
	verify(t, evs)
	return evs
}

func TestLifecycleEvents(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	if got := strings.Join(types(sf.Drain()), " "); got != "product.created price.created price.created price.created" {
		t.Fatalf("catalog events %s", got)
	}
	cus, subID := subscribe(t, sf, sc, c, 0)
	now := start.Unix()

	// 1. Checkout completes: subscription, first invoice paid, session completed.
	evs := sf.Drain()
	want := "customer.created customer.subscription.created invoice.created invoice.finalized invoice.paid invoice.payment_succeeded checkout.session.completed"
	if got := strings.Join(types(evs), " "); got != want {
		t.Fatalf("checkout events\n got %s\nwant %s", got, want)
	}
	verify(t, evs)
	for _, ev := range evs {
		if ev.Created != now {
			t.Fatalf("%s created %d, want the double's clock %d", ev.Type, ev.Created, now)
		}
	}
	var sub stripe.Subscription
	eventObject(t, evs[1], &sub)
	if sub.ID != subID || sub.Customer.ID != cus || sub.Status != "active" || sub.Metadata["plan_id"] != "basic" ||
		sub.CurrentPeriodStart != now || sub.CurrentPeriodEnd != time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC).Unix() ||
		len(sub.Items.Data) != 2 || sub.Items.Data[0].Price.ID != c.basic || sub.Items.Data[0].Quantity != 1 ||
		sub.Items.Data[1].Price.Recurring.UsageType != stripe.PriceRecurringUsageTypeMetered || sub.Created != now {
		t.Fatalf("customer.subscription.created %+v", sub)
	}
	var draft, paid stripe.Invoice
	eventObject(t, evs[2], &draft)
	eventObject(t, evs[4], &paid)
	if draft.Status != "draft" || paid.Status != "paid" || !paid.Paid || paid.ID != draft.ID || paid.Subscription.ID != subID ||
		paid.Customer.ID != cus || paid.AttemptCount != 1 || paid.BillingReason != "subscription_create" || paid.AmountPaid != 1000 {
		t.Fatalf("invoice.created %+v / invoice.paid %+v", draft, paid)
	}
	var cs stripe.CheckoutSession
	eventObject(t, evs[6], &cs)
	if cs.Status != "complete" || cs.PaymentStatus != "paid" || cs.Customer.ID != cus || cs.Subscription.ID != subID ||
		cs.ClientReferenceID != "t1" || cs.Metadata["tenant_id"] != "t1" {
		t.Fatalf("checkout.session.completed %+v", cs)
	}
	if got := strings.Join(types(evs[:1]), ""); got != "customer.created" {
		t.Fatal(got)
	}

	// 2. The customer moves to pro in the portal: same item, new price, metadata untouched.
	sf.Advance(time.Hour)
	if err := sf.PortalChangePrice(subID, c.pro); err != nil {
		t.Fatal(err)
	}
	got, err := sc.Subscriptions.Get(subID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Items.Data[0].Price.ID != c.pro || got.Items.Data[0].ID != sub.Items.Data[0].ID || got.Metadata["plan_id"] != "basic" {
		t.Fatalf("GET after portal change: %s %s", got.Items.Data[0].Price.ID, got.Metadata["plan_id"])
	}
	evs = sf.Drain()
	if len(evs) != 1 || evs[0].Type != "customer.subscription.updated" || evs[0].Created != now+3600 {
		t.Fatalf("portal events %v", types(evs))
	}
	prev := eventObject(t, evs[0], &sub)
	items, _ := prev["items"].(map[string]any)
	oldData, _ := items["data"].([]any)
	if len(oldData) != 2 || oldData[0].(map[string]any)["price"].(map[string]any)["id"] != c.basic || prev["metadata"] != nil {
		t.Fatalf("previous_attributes %v", prev)
	}
	verify(t, evs)

	// 3. The renewal payment fails: new period, invoice, payment_failed, past_due.
	periodEnd := sub.CurrentPeriodEnd
	if err := sf.FailPayment(subID); err != nil {
		t.Fatal(err)
	}
	if sf.Now().Unix() != periodEnd {
		t.Fatalf("clock %v, want the period end", sf.Now())
	}
	evs = sf.Drain()
	want = "customer.subscription.updated invoice.created invoice.finalized invoice.payment_failed customer.subscription.updated"
	if got := strings.Join(types(evs), " "); got != want {
		t.Fatalf("failed renewal\n got %s\nwant %s", got, want)
	}
	verify(t, evs)
	prev = eventObject(t, evs[0], &sub)
	if sub.CurrentPeriodStart != periodEnd || sub.CurrentPeriodEnd != time.Date(2024, 3, 31, 12, 0, 0, 0, time.UTC).Unix() ||
		prev["current_period_start"] == nil || sub.Status != "active" {
		t.Fatalf("renewal %+v %v", sub, prev)
	}
	var failed stripe.Invoice
	eventObject(t, evs[3], &failed)
	if failed.AttemptCount != 1 || failed.NextPaymentAttempt == 0 || failed.Status != "open" || failed.BillingReason != "subscription_cycle" ||
		failed.Subscription.ID != subID || failed.AmountDue != 2500 || failed.Paid {
		t.Fatalf("invoice.payment_failed %+v", failed)
	}
	prev = eventObject(t, evs[4], &sub)
	if sub.Status != "past_due" || prev["status"] != "active" {
		t.Fatalf("past_due %s, previous %v", sub.Status, prev)
	}
	// A retry fails on the same invoice: attempt 2, no second status change.
	if err := sf.FailPayment(subID); err != nil {
		t.Fatal(err)
	}
	evs = sf.Drain()
	if len(evs) != 1 || evs[0].Type != "invoice.payment_failed" || evs[0].Created != failed.NextPaymentAttempt {
		t.Fatalf("retry events %v", types(evs))
	}
	var retry stripe.Invoice
	eventObject(t, evs[0], &retry)
	if retry.ID != failed.ID || retry.AttemptCount != 2 || retry.NextPaymentAttempt <= failed.NextPaymentAttempt {
		t.Fatalf("retry %+v", retry)
	}

	// 4. Recovery: the invoice is paid, the subscription is active again.
	if err := sf.RecoverPayment(subID); err != nil {
		t.Fatal(err)
	}
	evs = sf.Drain()
	if got := strings.Join(types(evs), " "); got != "invoice.paid invoice.payment_succeeded customer.subscription.updated" {
		t.Fatalf("recovery %s", got)
	}
	verify(t, evs)
	eventObject(t, evs[0], &paid)
	if paid.ID != failed.ID || paid.AttemptCount != 3 || paid.NextPaymentAttempt != 0 || !paid.Paid {
		t.Fatalf("recovered invoice %+v", paid)
	}
	if prev := eventObject(t, evs[2], &sub); sub.Status != "active" || prev["status"] != "past_due" {
		t.Fatalf("recovered %s %v", sub.Status, prev)
	}

	// 5. The service schedules the cancellation through the API.
	up := &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)}
	up.SetIdempotencyKey("tk-cancel-1")
	if _, err := sc.Subscriptions.Update(subID, up); err != nil {
		t.Fatal(err)
	}
	evs = sf.Drain()
	if len(evs) != 1 || evs[0].Type != "customer.subscription.updated" {
		t.Fatalf("cancel events %v", types(evs))
	}
	prev = eventObject(t, evs[0], &sub)
	if !sub.CancelAtPeriodEnd || prev["cancel_at_period_end"] != false || sub.CancelAt != sub.CurrentPeriodEnd {
		t.Fatalf("cancel_at_period_end %+v %v", sub, prev)
	}
	requestedAt := sf.Now().Unix()

	// 6. The period ends: the subscription is deleted.
	if err := sf.Renew(subID); err != nil {
		t.Fatal(err)
	}
	evs = sf.Drain()
	if len(evs) != 1 || evs[0].Type != "customer.subscription.deleted" {
		t.Fatalf("renew events %v", types(evs))
	}
	verify(t, evs)
	eventObject(t, evs[0], &sub)
	if sub.Status != "canceled" || sub.EndedAt != sub.CurrentPeriodEnd || sub.CanceledAt != requestedAt || evs[0].Created != sub.CurrentPeriodEnd {
		t.Fatalf("deleted %+v", sub)
	}
	if s := sf.Subscription(subID); s.Status != "canceled" {
		t.Fatalf("state %s", s.Status)
	}
	// Events() keeps the whole history; every event decodes and verifies.
	all := verify(t, sf.Events())
	if len(all) != 4+7+1+5+1+3+1+1 {
		t.Fatalf("%d events in the history", len(all))
	}
}

func TestEventRequestField(t *testing.T) {
	sf, sc := newFake(t)
	p := &stripe.CustomerParams{Name: stripe.String("Acme")}
	p.SetIdempotencyKey("k-req")
	c, err := sc.Customers.New(p)
	if err != nil {
		t.Fatal(err)
	}
	evs := verify(t, sf.Drain())
	if evs[0].Request == nil || evs[0].Request.ID != c.LastResponse.RequestID || evs[0].Request.IdempotencyKey != "k-req" {
		t.Fatalf("request %+v, response request id %s", evs[0].Request, c.LastResponse.RequestID)
	}
	// Stripe's own changes carry a null request id.
	cat := makeCatalog(t, sc)
	sf.Drain()
	if _, _, err := sf.StrangerCheckout("t9", cat.basic); err != nil {
		t.Fatal(err)
	}
	for _, ev := range verify(t, sf.Drain()) {
		if ev.Request.ID != "" {
			t.Fatalf("%s has request %s", ev.Type, ev.Request.ID)
		}
	}
}

func TestTiesAndClock(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	sf.Drain()
	cus, sub, err := sf.StrangerCheckout("t7", c.basic)
	if err != nil {
		t.Fatal(err)
	}
	evs := sf.Drain()
	if len(evs) < 2 {
		t.Fatal(types(evs))
	}
	// Several events of one operation share their second, as Stripe's do.
	for _, ev := range evs {
		if ev.Created != evs[0].Created || ev.Created != start.Unix() {
			t.Fatalf("%s created %d, %s created %d", evs[0].Type, evs[0].Created, ev.Type, ev.Created)
		}
	}
	if got := strings.Join(types(evs), " "); got != "customer.created customer.subscription.created invoice.created invoice.finalized invoice.paid invoice.payment_succeeded checkout.session.completed" {
		t.Fatalf("stranger checkout %s", got)
	}
	var cs stripe.CheckoutSession
	eventObject(t, evs[len(evs)-1], &cs)
	if cs.ClientReferenceID != "t7" || cs.Customer.ID != cus || cs.Subscription.ID != sub || cs.PaymentLink == nil ||
		!strings.HasPrefix(cs.PaymentLink.ID, "plink_") || len(sf.Customer(cus).Metadata) != 0 {
		t.Fatalf("payment link session %+v", cs)
	}
	// Two API calls in one second tie; after Advance the next one is later.
	if err := sf.PortalSetQuantity(sub, 3); err != nil {
		t.Fatal(err)
	}
	if err := sf.PortalCancelAtPeriodEnd(sub, true); err != nil {
		t.Fatal(err)
	}
	sf.Advance(1500 * time.Millisecond)
	if err := sf.PortalCancelAtPeriodEnd(sub, false); err != nil {
		t.Fatal(err)
	}
	evs = sf.Drain()
	if len(evs) != 3 || evs[0].Created != evs[1].Created || evs[2].Created != evs[1].Created+1 {
		t.Fatalf("created %v", []int64{evs[0].Created, evs[1].Created, evs[2].Created})
	}
	if sf.Subscription(sub).Items.Data[0].Quantity != 3 {
		t.Fatal("quantity")
	}
	sf.SetNow(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	cu, _ := sc.Customers.New(&stripe.CustomerParams{})
	if cu.Created != time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Unix() {
		t.Fatalf("created %d", cu.Created)
	}
}

func TestTrialPauseAndRetries(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	_, subID := subscribe(t, sf, sc, c, 14)
	evs := sf.Drain()
	var sub stripe.Subscription
	eventObject(t, evs[len(evs)-6], &sub) // customer.subscription.created
	trialEnd := start.Unix() + 14*86400
	if sub.Status != "trialing" || sub.TrialEnd != trialEnd || sub.TrialStart != start.Unix() || sub.CurrentPeriodEnd != trialEnd {
		t.Fatalf("trial %+v", sub)
	}
	var cs stripe.CheckoutSession
	eventObject(t, evs[len(evs)-1], &cs)
	var first stripe.Invoice
	eventObject(t, evs[len(evs)-3], &first)
	if cs.PaymentStatus != "no_payment_required" || first.Total != 0 || first.AttemptCount != 0 || !first.Paid {
		t.Fatalf("trial checkout %s, invoice %+v", cs.PaymentStatus, first)
	}
	if err := sf.TrialWillEnd(subID); err != nil {
		t.Fatal(err)
	}
	evs = checked(t, sf.Drain())
	if len(evs) != 1 || evs[0].Type != "customer.subscription.trial_will_end" || evs[0].Created != trialEnd-3*86400 {
		t.Fatalf("trial_will_end %v", evs)
	}
	// The trial ends unpaid: active for the new period, then past_due.
	if err := sf.EndTrial(subID, false); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(types(sf.Drain()), " "); got != "customer.subscription.updated invoice.created invoice.finalized invoice.payment_failed customer.subscription.updated" {
		t.Fatalf("trial end unpaid %s", got)
	}
	if s := sf.Subscription(subID); s.Status != "past_due" || s.CurrentPeriodStart != trialEnd {
		t.Fatalf("after trial %+v", s)
	}
	// Retries exhausted: canceled for payment_failed.
	if err := sf.ExhaustRetries(subID, "canceled"); err != nil {
		t.Fatal(err)
	}
	evs = checked(t, sf.Drain())
	if got := strings.Join(types(evs), " "); got != "invoice.payment_failed customer.subscription.deleted" {
		t.Fatalf("exhausted %s", got)
	}
	var last stripe.Invoice
	eventObject(t, evs[0], &last)
	eventObject(t, evs[1], &sub)
	if last.NextPaymentAttempt != 0 || last.AttemptCount != 2 || sub.Status != "canceled" ||
		sub.CancellationDetails.Reason != stripe.SubscriptionCancellationDetailsReasonPaymentFailed {
		t.Fatalf("exhausted invoice %+v sub %+v", last, sub)
	}

	// unpaid instead; then a paid renewal does not happen (unpaid invoices are not attempted).
	cus2, _ := sc.Customers.New(&stripe.CustomerParams{})
	s2, _ := sf.CreateSubscription(cus2.ID, []Item{{Price: c.basic, Quantity: 2}}, map[string]string{"k": "v"}, 0, "")
	sf.Drain()
	if err := sf.ExhaustRetries(s2, "unpaid"); err == nil {
		t.Fatal("exhausted retries of a subscription without a failed payment")
	}
	sf.FailPayment(s2)
	if err := sf.ExhaustRetries(s2, "unpaid"); err != nil {
		t.Fatal(err)
	}
	if s := sf.Subscription(s2); s.Status != "unpaid" {
		t.Fatal(s.Status)
	}
	sf.Drain()
	sf.Renew(s2)
	if got := strings.Join(types(sf.Drain()), " "); got != "customer.subscription.updated invoice.created invoice.finalized" {
		t.Fatalf("unpaid renewal %s", got)
	}
	if err := sf.RecoverPayment(s2); err != nil || sf.Subscription(s2).Status != "active" {
		t.Fatalf("recover unpaid: %v", err)
	}

	// Pause at the trial end (no payment method), then resume.
	cus3, _ := sc.Customers.New(&stripe.CustomerParams{})
	s3, _ := sf.CreateSubscription(cus3.ID, []Item{{Price: c.basic}}, nil, 7, "")
	sf.Drain()
	if err := sf.Pause(s3); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(types(checked(t, sf.Drain())), " "); got != "customer.subscription.updated customer.subscription.paused" {
		t.Fatalf("pause %s", got)
	}
	if err := sf.Renew(s3); err == nil {
		t.Fatal("a paused subscription renewed")
	}
	sf.Advance(48 * time.Hour)
	if err := sf.Resume(s3); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(types(sf.Drain()), " "); got != "customer.subscription.updated customer.subscription.resumed invoice.created invoice.finalized invoice.paid invoice.payment_succeeded" {
		t.Fatalf("resume %s", got)
	}
	if s := sf.Subscription(s3); s.Status != "active" || s.CurrentPeriodStart != sf.Now().Unix() {
		t.Fatalf("resumed %+v", s)
	}
}

func TestIncompleteAndExpire(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	cus, _ := sc.Customers.New(&stripe.CustomerParams{})
	sf.Drain()
	id, err := sf.CreateSubscription(cus.ID, []Item{{Price: c.basic}, {Price: c.metered}}, nil, 0, "incomplete")
	if err != nil {
		t.Fatal(err)
	}
	evs := checked(t, sf.Drain())
	if got := strings.Join(types(evs), " "); got != "customer.subscription.created invoice.created invoice.finalized invoice.payment_failed" {
		t.Fatalf("incomplete %s", got)
	}
	var in stripe.Invoice
	eventObject(t, evs[3], &in)
	if in.NextPaymentAttempt != 0 || in.AttemptCount != 1 {
		t.Fatalf("first invoice %+v", in)
	}
	if err := sf.FailPayment(id); err == nil {
		t.Fatal("an incomplete subscription's first invoice was retried")
	}
	if err := sf.Expire(id); err != nil {
		t.Fatal(err)
	}
	evs = checked(t, sf.Drain())
	if got := strings.Join(types(evs), " "); got != "invoice.voided customer.subscription.updated" {
		t.Fatalf("expire %s", got)
	}
	var sub stripe.Subscription
	prev := eventObject(t, evs[1], &sub)
	if sub.Status != "incomplete_expired" || prev["status"] != "incomplete" || evs[1].Created != start.Unix()+23*3600 {
		t.Fatalf("expired %+v %v", sub, prev)
	}
	if err := sf.RecoverPayment(id); err == nil {
		t.Fatal("an expired subscription recovered")
	}
}

func TestDeliver(t *testing.T) {
	sf, sc := newFake(t)
	if _, err := sc.Customers.New(&stripe.CustomerParams{Name: stripe.String("Acme")}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			http.Error(w, "bad request", 400)
			return
		}
		ev, err := webhook.ConstructEvent(body, r.Header.Get("Stripe-Signature"), testSecret)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var c stripe.Customer
		if err := json.Unmarshal(ev.Data.Raw, &c); err != nil || c.Name != "Acme" {
			http.Error(w, "object", http.StatusUnprocessableEntity)
			return
		}
		mu.Lock()
		got = append(got, string(ev.Type))
		mu.Unlock()
	}))
	defer endpoint.Close()
	for _, ev := range sf.Drain() {
		status, err := Deliver(endpoint.URL, testSecret, ev)
		if err != nil || status != 200 {
			t.Fatalf("deliver %s: %d %v", ev.Type, status, err)
		}
		if status, _ := Deliver(endpoint.URL, "whsec_wrong", ev); status != 400 {
			t.Fatalf("wrong secret accepted: %d", status)
		}
	}
	if len(got) != 1 || got[0] != "customer.created" {
		t.Fatalf("delivered %v", got)
	}
}

// TestFailPaymentAfterRetriesExhausted: once an invoice's automatic retries are exhausted
// (next_payment_attempt null) Stripe no longer retries it; the next failing payment is the next
// renewal's invoice, not an error.
func TestFailPaymentAfterRetriesExhausted(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	_, subID := subscribe(t, sf, sc, c, 0)
	for range maxRetries {
		if err := sf.FailPayment(subID); err != nil {
			t.Fatal(err)
		}
	}
	sf.Drain()
	exhausted := sf.Subscription(subID).LatestInvoice.ID
	if err := sf.FailPayment(subID); err != nil {
		t.Fatalf("a failing payment after the retries were exhausted: %v", err)
	}
	evs := checked(t, sf.Drain())
	if got := strings.Join(types(evs), " "); got != "customer.subscription.updated invoice.created invoice.finalized invoice.payment_failed" {
		t.Fatalf("the next renewal %s", got)
	}
	var in stripe.Invoice
	eventObject(t, evs[3], &in)
	if in.ID == exhausted || in.AttemptCount != 1 || in.BillingReason != "subscription_cycle" {
		t.Fatalf("failed invoice %+v, want a new renewal invoice (exhausted: %s)", in, exhausted)
	}
}
