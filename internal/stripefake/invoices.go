package stripefake

import (
	"fmt"
	"net/http"
)

// Invoices beyond a subscription's own cycle: the immediate invoice of prorations
// (proration_behavior=always_invoice), the customer's credit balance invoices draw on, and the
// preview of the next invoice (GET /v1/invoices/upcoming).

// renderLine renders an invoice line item (https://docs.stripe.com/api/invoices/line_item).
func renderLine(invoiceID, currency, subscription string, l invoiceLine, p *price) map[string]any {
	kind := l.kind
	if kind == "" {
		kind = "subscription"
	}
	return map[string]any{
		"id": l.id, "object": "line_item", "amount": l.amount, "amount_excluding_tax": l.amount, "currency": currency,
		"description": nullStr(l.description), "discount_amounts": []any{}, "discountable": !l.proration, "discounts": []any{},
		"invoice": nullStr(invoiceID), "livemode": false, "metadata": map[string]any{},
		"period": map[string]any{"end": l.periodEnd, "start": l.periodStart},
		"plan":   p.plan(), "price": p.render(), "proration": l.proration, "proration_details": map[string]any{"credited_items": nil},
		"quantity": l.quantity, "subscription": nullStr(subscription), "subscription_item": l.item, "tax_amounts": []any{},
		"tax_rates": []any{}, "type": kind, "unit_amount_excluding_tax": p.unitAmountDecimal,
	}
}

// applyBalance applies the customer's balance to an invoice being finalized
// (https://docs.stripe.com/billing/customer/balance: a negative balance is credit "applied to the
// next invoice", a positive one is owed and added to it;
// https://docs.stripe.com/api/invoices/object#invoice_object-amount_due: "if there is account
// credit that can be applied to the invoice, the amount_due may be 0. If there is a positive
// starting_balance … the amount_due will also take that into account"). An invoice whose total is
// negative (a downgrade's credit) adds to the credit balance instead of being paid out.
func (s *Server) applyBalance(in *invoice) {
	c := s.customers[in.customer]
	if c == nil {
		return
	}
	in.startingBalance = c.balance
	if sum := in.total + c.balance; sum > 0 {
		in.amountDue, c.balance = sum, 0
	} else {
		in.amountDue, c.balance = 0, sum
	}
}

// endingBalance is the customer's balance after an invoice with this total and starting balance
// (https://docs.stripe.com/api/invoices/object#invoice_object-ending_balance).
func endingBalance(total, starting int64) int64 {
	if sum := total + starting; sum < 0 {
		return sum
	}
	return 0
}

// invoicePending invoices the subscription's pending lines at once (proration_behavior
// always_invoice: "Always invoice immediately for prorations",
// https://docs.stripe.com/api/subscriptions/update#update_subscription-proration_behavior),
// billing_reason subscription_update
// (https://docs.stripe.com/api/invoices/object#invoice_object-billing_reason), and pays it:
// invoice.created, invoice.finalized, invoice.paid, invoice.payment_succeeded. Payments succeed
// unless a test fails them with FailPayment.
func (s *Server) invoicePending(sub *subscription) {
	in := &invoice{seq: s.seq, id: s.newID("in_"), created: s.unix(), customer: sub.customer, subscription: sub.id,
		billingReason: "subscription_update", status: "draft", currency: sub.currency, subMetadata: meta(sub.metadata)}
	in.periodStart, in.periodEnd = in.created, in.created
	for i := len(sub.pending) - 1; i >= 0; i-- {
		in.total += sub.pending[i].amount
		in.lines = append(in.lines, sub.pending[i])
	}
	sub.pending = nil
	in.amountDue = in.total
	s.invoices[in.id] = in
	sub.latestInvoice = in.id
	s.openInvoice(in)
	s.payInvoice(in)
}

// finalInvoice is the invoice a cancellation with invoice_now makes
// (https://docs.stripe.com/api/subscriptions/cancel: "Will generate a final invoice that invoices
// for any un-invoiced metered usage and new/pending proration invoice items"): the pending items,
// and each metered item's usage over the period (none for a trial, as at a renewal); the licensed
// items were paid for in advance and are not billed again. It is finalized and left open: "By
// default, upon subscription cancellation, Stripe stops automatic collection of all finalized
// invoices for the customer" (same page); one with nothing due is paid at once, as Stripe settles
// zero invoices. Its billing_reason is not documented; the double says subscription_cycle.
func (s *Server) finalInvoice(sub *subscription, trialing bool) {
	var usage *[2]int64
	if !trialing {
		usage = &[2]int64{sub.periodStart, sub.periodEnd}
	}
	in := s.newInvoice(sub, "subscription_cycle", nil, usage)
	in.periodStart, in.periodEnd = sub.periodStart, sub.endedAt
	s.openInvoice(in)
	if in.amountDue <= 0 {
		s.payInvoice(in)
	}
}

// upcomingInvoice: GET /v1/invoices/upcoming (https://docs.stripe.com/api/invoices/upcoming) for
// an existing subscription, optionally previewing a change of its items (subscription_items, as
// items on an update) at subscription_proration_date: "You can preview the effects of updating a
// subscription, including a preview of what proration will take place. To ensure that the actual
// proration is calculated exactly the same as the previewed proration, you should pass a
// proration_date parameter when doing the actual subscription update. … The recommended way to get
// only the prorations being previewed is to consider only proration line items where period[start]
// is equal to the subscription_proration_date on the upcoming invoice resource."
//
// The preview is the subscription's next invoice: the change's prorations (create_prorations, the
// default) and its pending lines, then the licensed items of the next period at the new prices and
// quantities, then the metered items' usage of the current period (none for an item the change
// adds). It has no id ("always present unless the invoice is an upcoming invoice"), billing_reason
// upcoming, status draft, the customer's balance as starting_balance; its lines not yet created
// have ids il_tmp_…, stable while nothing changes, so that GET /v1/invoices/upcoming/lines pages
// through them. Nothing is saved. Not modelled (refused): previews of a new subscription or of a
// customer's invoices without a subscription, and subscription_proration_behavior=always_invoice
// (what Stripe previews then is not documented).
func (s *Server) upcomingInvoice(f *fnode) response {
	if err := f.only("", upcomingParams...); err != nil {
		return paramResp(err)
	}
	in, date, resp, ok1 := s.upcoming(f)
	if !ok1 {
		return resp
	}
	m := s.renderInvoice(in)
	delete(m, "id")
	m["subscription_proration_date"] = nullInt(date)
	return ok(m)
}

// upcomingLines: GET /v1/invoices/upcoming/lines (https://docs.stripe.com/api/invoices/upcoming_invoice_lines),
// the same parameters as the upcoming invoice, and a page of its lines (limit, starting_after,
// ending_before).
func (s *Server) upcomingLines(f *fnode) response {
	if err := f.only("", append([]string{"limit", "starting_after", "ending_before"}, upcomingParams...)...); err != nil {
		return paramResp(err)
	}
	in, _, resp, ok1 := s.upcoming(f)
	if !ok1 {
		return resp
	}
	objs := make([]map[string]any, 0, len(in.lines))
	for _, l := range in.lines {
		objs = append(objs, renderLine("", in.currency, in.subscription, l, s.prices[l.price]))
	}
	return listObject("/v1/invoices/upcoming/lines", objs, f)
}

var upcomingParams = []string{"customer", "subscription", "subscription_items", "subscription_proration_date",
	"subscription_proration_behavior", "expand"}

// upcoming builds the upcoming invoice the parameters describe, and the proration date it used
// (0 when it prorates nothing).
func (s *Server) upcoming(f *fnode) (in *invoice, date int64, resp response, ok1 bool) {
	cus, _, err := f.scalar("", "customer")
	if err != nil {
		return nil, 0, paramResp(err), false
	}
	subID, _, err := f.scalar("", "subscription")
	if err != nil {
		return nil, 0, paramResp(err), false
	}
	behavior, hasBehavior, err := f.scalar("", "subscription_proration_behavior")
	if err != nil {
		return nil, 0, paramResp(err), false
	}
	switch behavior {
	case "create_prorations", "none":
	case "always_invoice":
		return nil, 0, invalid("subscription_proration_behavior", "stripefake previews create_prorations and none only"), false
	case "":
		if hasBehavior {
			return nil, 0, invalid("subscription_proration_behavior", "Invalid subscription_proration_behavior: must be one of always_invoice, create_prorations, or none"), false
		}
		behavior = "create_prorations"
	default:
		return nil, 0, invalid("subscription_proration_behavior", "Invalid subscription_proration_behavior: must be one of always_invoice, create_prorations, or none"), false
	}
	at, hasDate, err := f.integer("", "subscription_proration_date")
	if err != nil {
		return nil, 0, paramResp(err), false
	}
	changes, resp, parsed := parseItemChanges(f, "subscription_items")
	if !parsed {
		return nil, 0, resp, false
	}
	if subID == "" {
		return nil, 0, invalid("subscription", "stripefake previews the upcoming invoice of an existing subscription only: subscription is required"), false
	}
	// subscription_proration_date: "If set, subscription, and one of subscription_items, or
	// subscription_trial_end are required. Also, subscription_proration_behavior cannot be set to
	// 'none'."
	if hasDate && len(changes) == 0 {
		return nil, 0, invalid("subscription_proration_date", "subscription_proration_date requires subscription_items."), false
	}
	if hasDate && behavior == "none" {
		return nil, 0, invalid("subscription_proration_behavior", "subscription_proration_behavior cannot be none when subscription_proration_date is set."), false
	}
	sub := s.subs[subID]
	if sub == nil {
		return nil, 0, missingParam("subscription", subID, "subscription"), false
	}
	if cus != "" && cus != sub.customer {
		return nil, 0, invalid("customer", fmt.Sprintf("The subscription %s does not belong to the customer %s.", subID, cus)), false
	}
	// Only a subscription that invoices again has an upcoming invoice; otherwise Stripe answers
	// invoice_upcoming_none (https://docs.stripe.com/error-codes#invoice-upcoming-none: "There is no
	// upcoming invoice on the specified customer to preview").
	none := errResp(http.StatusNotFound, apiError{Type: "invalid_request_error", Code: "invoice_upcoming_none",
		Message: "There is no upcoming invoice on the specified subscription to preview."}, true)
	switch sub.status {
	case "active", "trialing", "past_due", "unpaid":
	default:
		return nil, 0, none, false
	}
	if !hasDate {
		at = s.unix()
	} else if at < sub.periodStart || at >= sub.periodEnd {
		// "The time given must be within the current subscription period" (wording of the refusal
		// not documented).
		return nil, 0, refused("subscription_proration_date", "subscription_proration_date must be within the subscription's current period."), false
	}
	plan, _, resp, planned := s.planItems(sub, changes)
	if !planned {
		return nil, 0, resp, false
	}
	in = &invoice{created: sub.periodEnd, customer: sub.customer, subscription: sub.id, billingReason: "upcoming",
		status: "draft", currency: sub.currency, subMetadata: meta(sub.metadata), periodStart: sub.periodStart, periodEnd: sub.periodEnd}
	tmp := 0
	tmpID := func() string { tmp++; return fmt.Sprintf("il_tmp_%s%03d", sub.id, tmp) }
	if len(changes) > 0 && behavior == "create_prorations" {
		date = at
		lines := s.prorations(sub, plan, at)
		for i := len(lines) - 1; i >= 0; i-- {
			lines[i].id = tmpID()
			in.lines = append(in.lines, lines[i])
		}
	}
	for i := len(sub.pending) - 1; i >= 0; i-- {
		in.lines = append(in.lines, sub.pending[i])
	}
	interval, count := s.interval(sub)
	next := nextBoundary(sub.anchor, sub.periodEnd, interval, count)
	if sub.status == "trialing" {
		next = addInterval(sub.periodEnd, interval, count, 1) // the anchor moves to the trial end (cycle)
	}
	for _, pl := range plan {
		p := s.prices[pl.price]
		if p.metered() || sub.cancelAtPeriodEnd {
			continue
		}
		l := invoiceLine{id: tmpID(), item: pl.id, price: p.id, quantity: pl.qty, periodStart: sub.periodEnd, periodEnd: next}
		if p.unitAmount != nil {
			l.amount = *p.unitAmount * pl.qty
		}
		in.lines = append(in.lines, l)
	}
	for _, pl := range plan {
		p := s.prices[pl.price]
		if !p.metered() || sub.status == "trialing" { // usage during a trial is not billed (cycle)
			continue
		}
		l := invoiceLine{id: tmpID(), item: pl.id, price: p.id, periodStart: sub.periodStart, periodEnd: sub.periodEnd}
		if !pl.isNew {
			l.quantity = s.usageTotal(pl.id, sub.periodStart, sub.periodEnd)
		}
		l.amount = meteredAmount(p.unitAmountDecimal, l.quantity)
		in.lines = append(in.lines, l)
	}
	if len(in.lines) == 0 {
		return nil, 0, none, false
	}
	for _, l := range in.lines {
		in.total += l.amount
	}
	in.startingBalance = s.customers[sub.customer].balance
	in.amountDue = max(0, in.total+in.startingBalance)
	return in, date, response{}, true
}
