package stripefake

import (
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// expectedProration is amount × qty × (end − at) / (end − start), rounded half away from zero:
// computed here independently of the double's code.
func expectedProration(amount, qty, start, end, at int64) int64 {
	r := big.NewRat(amount*qty*(end-at), end-start)
	f, _ := r.Float64()
	if f < 0 {
		return -int64(-f + 0.5)
	}
	return int64(f + 0.5)
}

func TestMeteredItemDeletion(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	_, subID := subscribe(t, sf, sc, c, 0)
	sub := sf.Subscription(subID)
	licensed, metered := sub.Items.Data[0].ID, sub.Items.Data[1].ID
	if _, err := sc.UsageRecords.New(&stripe.UsageRecordParams{SubscriptionItem: stripe.String(metered), Quantity: stripe.Int64(7)}); err != nil {
		t.Fatal(err)
	}
	del := func(item string, clear *bool, deleted bool) error {
		p := &stripe.SubscriptionItemsParams{ID: stripe.String(item), ClearUsage: clear}
		if deleted {
			p.Deleted = stripe.Bool(true)
		}
		_, err := sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{p}})
		return err
	}
	// A metered item with usage is deleted only with clear_usage (stripe/stripe-go#743).
	se := stripeErr(t, del(metered, nil, true), 400, stripe.ErrorTypeInvalidRequest)
	if !strings.Contains(se.Msg, "clear_usage=true") {
		t.Errorf("message %q", se.Msg)
	}
	// clear_usage needs deleted and a metered item.
	stripeErr(t, del(licensed, stripe.Bool(true), true), 400, stripe.ErrorTypeInvalidRequest)
	stripeErr(t, del(metered, stripe.Bool(true), false), 400, stripe.ErrorTypeInvalidRequest)
	if n := len(sf.Subscription(subID).Items.Data); n != 2 || len(sf.UsageRecords(metered)) != 1 {
		t.Fatalf("refused deletions changed the subscription: %d items, %d usage records", n, len(sf.UsageRecords(metered)))
	}
	if err := del(metered, stripe.Bool(true), true); err != nil {
		t.Fatal(err)
	}
	if n := len(sf.Subscription(subID).Items.Data); n != 1 || len(sf.UsageRecords(metered)) != 0 {
		t.Fatalf("after deletion with clear_usage: %d items, %d usage records", n, len(sf.UsageRecords(metered)))
	}
	// The item is gone: naming it again is a resource_missing about items[0][id].
	se = stripeErr(t, del(metered, stripe.Bool(true), true), 400, stripe.ErrorTypeInvalidRequest)
	if se.Code != stripe.ErrorCodeResourceMissing || se.Param != "items[0][id]" {
		t.Errorf("deleting a deleted item: %s %s", se.Code, se.Param)
	}
}

func TestProrations(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	cus, subID := subscribe(t, sf, sc, c, 0)
	licensed := sf.Subscription(subID).Items.Data[0].ID
	if _, err := sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{ProrationBehavior: stripe.String("none"),
		Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(licensed), Quantity: stripe.Int64(2)}}}); err != nil {
		t.Fatal(err)
	}
	sub := sf.Subscription(subID)
	start, end := sub.CurrentPeriodStart, sub.CurrentPeriodEnd
	sf.Advance(9*24*time.Hour + 7*time.Hour + 13*time.Second)
	at := sf.Now().Unix()
	sf.Advance(time.Hour) // the change is applied an hour after the preview, at the previewed date

	// Preview the upgrade basic → pro (quantity 2 kept) at a fixed date.
	sf.Drain()
	q := url.Values{"subscription": {subID}, "subscription_items[0][id]": {licensed}, "subscription_items[0][price]": {c.pro},
		"subscription_items[0][quantity]": {"2"}, "subscription_proration_date": {strconv.FormatInt(at, 10)}}
	status, _, preview := raw(t, sf, http.MethodGet, "/v1/invoices/upcoming", q, "Bearer "+TestKey, "")
	if status != 200 {
		t.Fatalf("upcoming: %d %v", status, preview)
	}
	credit, charge := expectedProration(1000, 2, start, end, at), expectedProration(2500, 2, start, end, at)
	var prorated int64
	for _, l := range preview["lines"].(map[string]any)["data"].([]any) {
		l := l.(map[string]any)
		if l["proration"] == true {
			if got := l["period"].(map[string]any)["start"].(float64); int64(got) != at {
				t.Errorf("proration line starts %v, want the proration date %d", got, at)
			}
			prorated += int64(l["amount"].(float64))
		}
	}
	if _, hasID := preview["id"]; hasID || preview["billing_reason"] != "upcoming" || int64(preview["subscription_proration_date"].(float64)) != at {
		t.Errorf("upcoming invoice: id present %v, billing_reason %v, subscription_proration_date %v", hasID, preview["billing_reason"], preview["subscription_proration_date"])
	}
	if prorated != charge-credit || int64(preview["total"].(float64)) != charge-credit+2*2500 {
		t.Fatalf("preview prorates %d (total %v), want %d − %d, plus the renewal 2 × 2500", prorated, preview["total"], charge, credit)
	}
	if evs := sf.Drain(); len(evs) != 0 {
		t.Errorf("a preview emitted %v", types(evs))
	}

	// Apply it with the same date and always_invoice: the same lines are invoiced and paid at once.
	if _, err := sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{ProrationBehavior: stripe.String("always_invoice"),
		ProrationDate: stripe.Int64(at), Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(licensed),
			Price: stripe.String(c.pro), Quantity: stripe.Int64(2)}}}); err != nil {
		t.Fatal(err)
	}
	ins := sf.Invoices(subID)
	up := ins[len(ins)-1]
	if up.BillingReason != "subscription_update" || up.Total != prorated || up.AmountDue != prorated || up.AmountPaid != prorated || !up.Paid {
		t.Fatalf("update invoice %s: total %d due %d paid %d, want the previewed %d", up.BillingReason, up.Total, up.AmountDue, up.AmountPaid, prorated)
	}
	for _, l := range up.Lines.Data {
		if !l.Proration || l.Period.Start != at || l.Type != "invoiceitem" {
			t.Errorf("update invoice line %+v", l)
		}
	}

	// Downgrade pro → basic a day later with always_invoice: a negative invoice, nothing charged,
	// the credit kept on the customer's balance and used by the renewal.
	sf.Advance(24 * time.Hour)
	at2 := sf.Now().Unix()
	if _, err := sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{ProrationBehavior: stripe.String("always_invoice"),
		Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(licensed), Price: stripe.String(c.basic), Quantity: stripe.Int64(2)}}}); err != nil {
		t.Fatal(err)
	}
	ins = sf.Invoices(subID)
	down := ins[len(ins)-1]
	want := expectedProration(1000, 2, start, end, at2) - expectedProration(2500, 2, start, end, at2)
	if down.Total != want || down.AmountDue != 0 || down.AmountPaid != 0 {
		t.Fatalf("downgrade invoice total %d due %d paid %d, want total %d, nothing due", down.Total, down.AmountDue, down.AmountPaid, want)
	}
	if bal := sf.Customer(cus).Balance; bal != want {
		t.Fatalf("customer balance %d, want the credit %d", bal, want)
	}
	// The renewal preview and the renewal agree: 2 × 1000 less the credit (plus no usage).
	status, _, next := raw(t, sf, http.MethodGet, "/v1/invoices/upcoming", url.Values{"subscription": {subID}}, "Bearer "+TestKey, "")
	if status != 200 || int64(next["amount_due"].(float64)) != max(0, 2000+want) || int64(next["starting_balance"].(float64)) != want {
		t.Fatalf("renewal preview %d: due %v, starting balance %v", status, next["amount_due"], next["starting_balance"])
	}
	if err := sf.Renew(subID); err != nil {
		t.Fatal(err)
	}
	ins = sf.Invoices(subID)
	renewal := ins[len(ins)-1]
	if renewal.Total != 2000 || renewal.StartingBalance != want || renewal.AmountDue != max(0, 2000+want) {
		t.Fatalf("renewal total %d, starting balance %d, due %d", renewal.Total, renewal.StartingBalance, renewal.AmountDue)
	}
	if bal := sf.Customer(cus).Balance; bal != min(0, 2000+want) {
		t.Fatalf("balance after the renewal %d", bal)
	}
}

func TestPendingProrationsAndUpcomingRefusals(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	_, subID := subscribe(t, sf, sc, c, 0)
	licensed := sf.Subscription(subID).Items.Data[0].ID
	sub := sf.Subscription(subID)
	// Six changes with create_prorations (the portal's way): twelve pending lines, more than the
	// ten an invoice embeds.
	for i := range 6 {
		sf.Advance(time.Hour)
		price := []string{c.pro, c.basic}[i%2]
		if _, err := sc.Subscriptions.Update(subID, &stripe.SubscriptionParams{
			Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(licensed), Price: stripe.String(price)}}}); err != nil {
			t.Fatal(err)
		}
	}
	inv, err := sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Subscription: stripe.String(subID)})
	if err != nil {
		t.Fatal(err)
	}
	if !inv.Lines.HasMore || len(inv.Lines.Data) != 10 {
		t.Fatalf("upcoming invoice embeds %d lines, has_more %v", len(inv.Lines.Data), inv.Lines.HasMore)
	}
	it := sc.Invoices.UpcomingLines(&stripe.InvoiceUpcomingLinesParams{Subscription: stripe.String(subID)})
	var sum int64
	n, prorations := 0, 0
	for it.Next() {
		l := it.InvoiceLineItem()
		sum += l.Amount
		n++
		if l.Proration {
			prorations++
		}
	}
	// 12 prorations, the licensed item's next period, the metered item's usage
	if it.Err() != nil || n != 14 || prorations != 12 || sum != inv.Total {
		t.Fatalf("upcoming lines: %d lines (%d prorations), sum %d, total %d, %v", n, prorations, sum, inv.Total, it.Err())
	}
	// The renewal bills the pending lines, then nothing is pending.
	if err := sf.Renew(subID); err != nil {
		t.Fatal(err)
	}
	ins := sf.Invoices(subID)
	if r := ins[len(ins)-1]; r.Total != inv.Total {
		t.Fatalf("renewal total %d, the preview said %d", r.Total, inv.Total)
	}

	get := func(q url.Values) (int, map[string]any) {
		status, _, body := raw(t, sf, http.MethodGet, "/v1/invoices/upcoming", q, "Bearer "+TestKey, "")
		return status, body
	}
	sub = sf.Subscription(subID)
	items := url.Values{"subscription": {subID}, "subscription_items[0][id]": {licensed}, "subscription_items[0][price]": {c.pro}}
	with := func(k, v string) url.Values {
		q := url.Values{}
		for a, b := range items {
			q[a] = b
		}
		q.Set(k, v)
		return q
	}
	for name, q := range map[string]url.Values{
		"date before the period":   with("subscription_proration_date", strconv.FormatInt(sub.CurrentPeriodStart-1, 10)),
		"date at the period's end": with("subscription_proration_date", strconv.FormatInt(sub.CurrentPeriodEnd, 10)),
		"always_invoice":           with("subscription_proration_behavior", "always_invoice"),
		"date without items":       {"subscription": {subID}, "subscription_proration_date": {strconv.FormatInt(sf.Now().Unix(), 10)}},
		"no subscription":          {"customer": {sub.Customer.ID}},
		"unknown parameter":        with("coupon", "X"),
	} {
		if status, body := get(q); status != 400 {
			t.Errorf("%s: %d %v, want 400", name, status, body)
		}
	}
	if _, err := sc.Subscriptions.Cancel(subID, nil); err != nil {
		t.Fatal(err)
	}
	if status, body := get(url.Values{"subscription": {subID}}); status != 404 || body["error"].(map[string]any)["code"] != "invoice_upcoming_none" {
		t.Errorf("ended subscription: %d %v", status, body)
	}
}
