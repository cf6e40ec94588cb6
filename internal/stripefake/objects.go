package stripefake

import (
	"strconv"
	"time"
)

// The objects the double keeps, and their JSON as API version 2023-10-16 renders them. Field sets
// follow the object references (https://docs.stripe.com/api/customers/object,
// /api/products/object, /api/prices/object, /api/checkout/sessions/object,
// /api/customer_portal/sessions/object, /api/subscriptions/object, /api/subscription_items/object,
// /api/invoices/object, /api/usage_records/object) as fixed by stripe/openapi's fixtures3.json of
// April 2024 (the spec stripe-go v76.25.0 was generated from); fields the double does not model
// are rendered with their empty values (null, [], {}).

type customer struct {
	seq         int
	id          string
	created     int64
	name, email string
	description string
	metadata    map[string]string
	// balance: https://docs.stripe.com/api/customers/object#customer_object-balance, "Current
	// balance, if any, being stored on the customer. If negative, the customer has credit to apply
	// to their next invoice."
	balance int64
	// country is the customer's address (its country only; "" when it has none).
	country string
}

type product struct {
	seq      int
	id       string
	created  int64
	updated  int64
	name     string
	active   bool
	metadata map[string]string
}

type recurring struct {
	interval       string // day, week, month, year
	intervalCount  int64
	usageType      string // licensed, metered
	aggregateUsage string // metered only: sum (default), last_during_period, last_ever, max
}

type price struct {
	seq               int
	id                string
	created           int64
	product           string
	currency          string
	unitAmount        *int64 // null when unit_amount_decimal has a fraction
	unitAmountDecimal string
	recurring         *recurring
	lookupKey         string
	nickname          string
	active            bool
	metadata          map[string]string
}

func (p *price) metered() bool { return p.recurring != nil && p.recurring.usageType == "metered" }

type lineItem struct {
	id       string
	price    string
	quantity int64 // 0: none (metered)
	hasQty   bool
}

type session struct {
	seq              int
	id               string
	created          int64
	expiresAt        int64
	mode             string
	status           string // open, complete, expired
	paymentStatus    string // unpaid, paid, no_payment_required
	customer         string
	customerEmail    string
	clientReference  string
	successURL       string
	cancelURL        string
	metadata         map[string]string
	lines            []lineItem
	subMetadata      map[string]string
	trialDays        int64
	subscription     string
	invoice          string
	paymentLink      string
	detailsEmail     string
	detailsName      string
	customerCreation string
	amountSubtotal   int64
	currency         string
	// allow_promotion_codes, automatic_tax[enabled], customer_update[address] (checkout.go)
	allowPromotionCodes bool
	automaticTax        bool
	updateAddress       string
}

type portalSession struct {
	id        string
	created   int64
	customer  string
	returnURL string
}

type subItem struct {
	id       string
	created  int64
	price    string
	quantity int64
	metadata map[string]string
}

type subscription struct {
	seq               int
	id                string
	created           int64
	customer          string
	status            string
	items             []*subItem
	metadata          map[string]string
	cancelAtPeriodEnd bool
	cancelAt          int64
	canceledAt        int64
	endedAt           int64
	cancelReason      string // cancellation_details.reason
	cancelComment     string
	cancelFeedback    string
	trialStart        int64
	trialEnd          int64
	periodStart       int64
	periodEnd         int64
	anchor            int64 // billing_cycle_anchor
	latestInvoice     string
	currency          string
	// pending are proration lines not invoiced yet (pending invoice items,
	// https://docs.stripe.com/billing/subscriptions/prorations): billed with the next invoice.
	pending []invoiceLine
	// automaticTax: automatic_tax.enabled, from the checkout that created it.
	automaticTax bool
}

type invoiceLine struct {
	id          string
	item        string
	price       string
	quantity    int64
	amount      int64
	periodStart int64
	periodEnd   int64
	proration   bool   // https://docs.stripe.com/api/invoices/line_item#invoice_line_item_object-proration
	kind        string // type: "subscription" (default) or "invoiceitem" (a pending item, e.g. a proration)
	description string
}

type invoice struct {
	seq           int
	id            string
	created       int64
	customer      string
	subscription  string
	billingReason string
	status        string // draft, open, paid, void, uncollectible
	lines         []invoiceLine
	currency      string
	total         int64
	attemptCount  int64
	attempted     bool
	nextAttempt   int64
	periodStart   int64
	periodEnd     int64
	finalizedAt   int64
	paidAt        int64
	voidedAt      int64
	number        string
	subMetadata   map[string]string
	// startingBalance and amountDue: the customer's balance applied when the invoice was finalized
	// (https://docs.stripe.com/api/invoices/object#invoice_object-amount_due); a draft owes total.
	startingBalance int64
	amountDue       int64
}

// UsageRecord is a usage record the double accepted
// (https://docs.stripe.com/api/usage_records/create).
type UsageRecord struct {
	ID               string
	SubscriptionItem string
	Quantity         int64
	Timestamp        int64
	Action           string // increment or set
	Created          int64  // the double's clock when it was reported
}

// ---- rendering helpers ----

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullInt(i int64) any {
	if i == 0 {
		return nil
	}
	return i
}

func meta(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ---- renderers ----

func (c *customer) render() map[string]any {
	return map[string]any{
		"id": c.id, "object": "customer", "address": renderAddress(c.country), "balance": c.balance, "created": c.created, "currency": nil,
		"default_source": nil, "delinquent": false, "description": nullStr(c.description), "discount": nil,
		"email": nullStr(c.email), "invoice_prefix": "SF" + strconv.Itoa(c.seq),
		"invoice_settings": map[string]any{"custom_fields": nil, "default_payment_method": nil, "footer": nil, "rendering_options": nil},
		"livemode":         false, "metadata": meta(c.metadata), "name": nullStr(c.name), "next_invoice_sequence": 1,
		"phone": nil, "preferred_locales": []any{}, "shipping": nil, "tax_exempt": "none", "test_clock": nil,
	}
}

func (p *product) render() map[string]any {
	return map[string]any{
		"id": p.id, "object": "product", "active": p.active, "created": p.created, "default_price": nil,
		"description": nil, "features": []any{}, "images": []any{}, "livemode": false, "metadata": meta(p.metadata),
		"name": p.name, "package_dimensions": nil, "shippable": nil, "statement_descriptor": nil, "tax_code": nil,
		"unit_label": nil, "updated": p.updated, "url": nil,
	}
}

func (p *price) render() map[string]any {
	m := map[string]any{
		"id": p.id, "object": "price", "active": p.active, "billing_scheme": "per_unit", "created": p.created,
		"currency": p.currency, "custom_unit_amount": nil, "livemode": false, "lookup_key": nullStr(p.lookupKey),
		"metadata": meta(p.metadata), "nickname": nullStr(p.nickname), "product": p.product, "recurring": nil,
		"tax_behavior": "unspecified", "tiers_mode": nil, "transform_quantity": nil, "type": "one_time",
		"unit_amount": nil, "unit_amount_decimal": p.unitAmountDecimal,
	}
	if p.unitAmount != nil {
		m["unit_amount"] = *p.unitAmount
	}
	if r := p.recurring; r != nil {
		m["type"] = "recurring"
		m["recurring"] = map[string]any{"aggregate_usage": nullStr(r.aggregateUsage), "interval": r.interval,
			"interval_count": r.intervalCount, "trial_period_days": nil, "usage_type": r.usageType}
	}
	return m
}

// plan renders the legacy plan object Stripe still puts on subscription items
// (https://docs.stripe.com/api/plans/object) for a recurring price.
func (p *price) plan() map[string]any {
	if p.recurring == nil {
		return nil
	}
	m := map[string]any{
		"id": p.id, "object": "plan", "active": p.active, "aggregate_usage": nullStr(p.recurring.aggregateUsage),
		"amount": nil, "amount_decimal": p.unitAmountDecimal, "billing_scheme": "per_unit", "created": p.created,
		"currency": p.currency, "interval": p.recurring.interval, "interval_count": p.recurring.intervalCount,
		"livemode": false, "metadata": meta(p.metadata), "nickname": nullStr(p.nickname), "product": p.product,
		"tiers_mode": nil, "transform_usage": nil, "trial_period_days": nil, "usage_type": p.recurring.usageType,
	}
	if p.unitAmount != nil {
		m["amount"] = *p.unitAmount
	}
	return m
}

func (s *Server) renderSession(cs *session, withLines bool) map[string]any {
	m := map[string]any{
		"id": cs.id, "object": "checkout.session", "after_expiration": nil, "allow_promotion_codes": nullBool(cs.allowPromotionCodes),
		"amount_subtotal": cs.amountSubtotal, "amount_total": cs.amountSubtotal,
		"automatic_tax":              renderSessionTax(cs),
		"billing_address_collection": nil, "cancel_url": nullStr(cs.cancelURL), "client_reference_id": nullStr(cs.clientReference),
		"client_secret": nil, "consent": nil, "consent_collection": nil, "created": cs.created, "currency": cs.currency,
		"currency_conversion": nil, "custom_fields": []any{},
		"custom_text": map[string]any{"after_submit": nil, "shipping_address": nil, "submit": nil, "terms_of_service_acceptance": nil},
		"customer":    nullStr(cs.customer), "customer_creation": nullStr(cs.customerCreation), "customer_details": nil,
		"customer_email": nullStr(cs.customerEmail), "expires_at": cs.expiresAt, "invoice": nullStr(cs.invoice),
		"invoice_creation": nil, "livemode": false, "locale": nil, "metadata": meta(cs.metadata), "mode": cs.mode,
		"payment_intent": nil, "payment_link": nullStr(cs.paymentLink), "payment_method_collection": "always",
		"payment_method_configuration_details": nil, "payment_method_options": map[string]any{},
		"payment_method_types": []any{"card"}, "payment_status": cs.paymentStatus,
		"phone_number_collection": map[string]any{"enabled": false}, "recovered_from": nil, "setup_intent": nil,
		"shipping_address_collection": nil, "shipping_cost": nil, "shipping_details": nil, "shipping_options": []any{},
		"status": cs.status, "submit_type": nil, "subscription": nullStr(cs.subscription), "success_url": nullStr(cs.successURL),
		"total_details": map[string]any{"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
		"ui_mode":       "hosted", "url": nil,
	}
	// https://docs.stripe.com/api/checkout/sessions/object#checkout_session_object-url: "This value
	// is only present when the session is active."
	if cs.status == "open" {
		m["url"] = "https://checkout.stripe.test/c/pay/" + cs.id
	}
	if cs.status == "complete" {
		m["customer_details"] = map[string]any{"address": nil, "email": nullStr(cs.detailsEmail), "name": nullStr(cs.detailsName),
			"phone": nil, "tax_exempt": "none", "tax_ids": []any{}}
	}
	if cs.trialDays > 0 && cs.status == "complete" {
		m["amount_total"] = 0
	}
	if withLines {
		// https://docs.stripe.com/api/checkout/sessions/object#checkout_session_object-line_items:
		// expandable, a list of items.
		data := []any{}
		for _, li := range cs.lines {
			p := s.prices[li.price]
			it := map[string]any{"id": li.id, "object": "item", "amount_discount": 0, "amount_tax": 0,
				"currency": p.currency, "description": s.products[p.product].name, "price": p.render(), "quantity": nil,
				"amount_subtotal": 0, "amount_total": 0}
			if li.hasQty {
				it["quantity"] = li.quantity
				if p.unitAmount != nil {
					it["amount_subtotal"], it["amount_total"] = *p.unitAmount*li.quantity, *p.unitAmount*li.quantity
				}
			}
			data = append(data, it)
		}
		m["line_items"] = map[string]any{"object": "list", "data": data, "has_more": false,
			"url": "/v1/checkout/sessions/" + cs.id + "/line_items"}
	}
	return m
}

func (ps *portalSession) render() map[string]any {
	return map[string]any{
		"id": ps.id, "object": "billing_portal.session", "configuration": "bpc_stripefake_default", "created": ps.created,
		"customer": ps.customer, "flow": nil, "livemode": false, "locale": nil, "on_behalf_of": nil,
		"return_url": nullStr(ps.returnURL), "url": "https://billing.stripe.test/p/session/" + ps.id,
	}
}

func (s *Server) renderItem(sub *subscription, it *subItem) map[string]any {
	p := s.prices[it.price]
	m := map[string]any{
		"id": it.id, "object": "subscription_item", "billing_thresholds": nil, "created": it.created, "discounts": []any{},
		"metadata": meta(it.metadata), "plan": p.plan(), "price": p.render(), "subscription": sub.id, "tax_rates": []any{},
	}
	// https://docs.stripe.com/api/subscription_items/object#subscription_item_object-quantity: "The
	// quantity of the plan to which the customer should be subscribed"; metered items carry none.
	if !p.metered() {
		m["quantity"] = it.quantity
	}
	return m
}

func (s *Server) renderSub(sub *subscription) map[string]any {
	items := make([]any, 0, len(sub.items))
	for _, it := range sub.items {
		items = append(items, s.renderItem(sub, it))
	}
	return map[string]any{
		"id": sub.id, "object": "subscription", "application": nil, "application_fee_percent": nil,
		"automatic_tax": renderSubTax(sub.automaticTax), "billing_cycle_anchor": sub.anchor,
		"billing_cycle_anchor_config": nil, "billing_thresholds": nil, "cancel_at": nullInt(sub.cancelAt),
		"cancel_at_period_end": sub.cancelAtPeriodEnd, "canceled_at": nullInt(sub.canceledAt),
		"cancellation_details": map[string]any{"comment": nullStr(sub.cancelComment), "feedback": nullStr(sub.cancelFeedback), "reason": nullStr(sub.cancelReason)},
		"collection_method":    "charge_automatically", "created": sub.created, "currency": sub.currency,
		"current_period_end": sub.periodEnd, "current_period_start": sub.periodStart, "customer": sub.customer,
		"days_until_due": nil, "default_payment_method": nil, "default_source": nil, "default_tax_rates": []any{},
		"description": nil, "discount": nil, "discounts": []any{}, "ended_at": nullInt(sub.endedAt),
		"items": map[string]any{"object": "list", "data": items, "has_more": false,
			"url": "/v1/subscription_items?subscription=" + sub.id},
		"latest_invoice": nullStr(sub.latestInvoice), "livemode": false, "metadata": meta(sub.metadata),
		"next_pending_invoice_item_invoice": nil, "on_behalf_of": nil, "pause_collection": nil,
		"payment_settings":              map[string]any{"payment_method_options": nil, "payment_method_types": nil, "save_default_payment_method": "off"},
		"pending_invoice_item_interval": nil, "pending_setup_intent": nil, "pending_update": nil, "schedule": nil,
		"start_date": sub.created, "status": sub.status, "test_clock": nil, "transfer_data": nil,
		"trial_end": nullInt(sub.trialEnd), "trial_settings": map[string]any{"end_behavior": map[string]any{"missing_payment_method": "create_invoice"}},
		"trial_start": nullInt(sub.trialStart),
	}
}

func (s *Server) renderInvoice(in *invoice) map[string]any {
	// https://docs.stripe.com/api/invoices/object#invoice_object-lines: a list object; like every
	// embedded list, its first page (10 lines), with has_more when there are more.
	lines := make([]any, 0, min(len(in.lines), invoiceLinesPage))
	for _, l := range in.lines[:min(len(in.lines), invoiceLinesPage)] {
		lines = append(lines, renderLine(in.id, in.currency, in.subscription, l, s.prices[l.price]))
	}
	linesURL := "/v1/invoices/" + in.id + "/lines"
	if in.id == "" {
		linesURL = "/v1/invoices/upcoming/lines"
	}
	c := s.customers[in.customer]
	paid := in.status == "paid"
	amountPaid, remaining := int64(0), in.amountDue
	if paid {
		amountPaid, remaining = in.amountDue, 0
	}
	finalized := in.status != "draft"
	m := map[string]any{
		"id": in.id, "object": "invoice", "account_country": "US", "account_name": "stripefake", "account_tax_ids": nil,
		"amount_due": in.amountDue, "amount_paid": amountPaid, "amount_remaining": remaining, "amount_shipping": 0,
		"application": nil, "application_fee_amount": nil, "attempt_count": in.attemptCount, "attempted": in.attempted,
		"auto_advance": in.status == "draft" || in.status == "open", "automatic_tax": map[string]any{"enabled": false, "liability": nil, "status": nil},
		"billing_reason": in.billingReason, "charge": nil, "collection_method": "charge_automatically", "created": in.created,
		"currency": in.currency, "custom_fields": nil, "customer": in.customer, "customer_address": nil,
		"customer_email": nullStr(c.email), "customer_name": nullStr(c.name), "customer_phone": nil, "customer_shipping": nil,
		"customer_tax_exempt": "none", "customer_tax_ids": []any{}, "default_payment_method": nil, "default_source": nil,
		"default_tax_rates": []any{}, "description": nil, "discount": nil, "discounts": []any{}, "due_date": nil,
		"effective_at": nullInt(in.finalizedAt), "ending_balance": nil, "footer": nil, "from_invoice": nil,
		"hosted_invoice_url": nil, "invoice_pdf": nil, "issuer": map[string]any{"type": "self"}, "last_finalization_error": nil,
		"latest_revision": nil,
		"lines":           map[string]any{"object": "list", "data": lines, "has_more": len(in.lines) > invoiceLinesPage, "url": linesURL},
		"livemode":        false, "metadata": map[string]any{}, "next_payment_attempt": nullInt(in.nextAttempt),
		"number": nullStr(in.number), "on_behalf_of": nil, "paid": paid, "paid_out_of_band": false, "payment_intent": nil,
		"payment_settings": map[string]any{"default_mandate": nil, "payment_method_options": nil, "payment_method_types": nil},
		"period_end":       in.periodEnd, "period_start": in.periodStart, "post_payment_credit_notes_amount": 0,
		"pre_payment_credit_notes_amount": 0, "quote": nil, "receipt_number": nil, "rendering": nil, "shipping_cost": nil,
		"shipping_details": nil, "starting_balance": in.startingBalance, "statement_descriptor": nil, "status": in.status,
		"status_transitions": map[string]any{"finalized_at": nullInt(in.finalizedAt), "marked_uncollectible_at": nil,
			"paid_at": nullInt(in.paidAt), "voided_at": nullInt(in.voidedAt)},
		"subscription": nullStr(in.subscription), "subscription_details": map[string]any{"metadata": meta(in.subMetadata)},
		"subtotal": in.total, "subtotal_excluding_tax": in.total, "tax": nil, "test_clock": nil, "total": in.total,
		"total_discount_amounts": []any{}, "total_excluding_tax": in.total, "total_tax_amounts": []any{},
		"transfer_data": nil, "webhooks_delivered_at": nil,
	}
	if finalized {
		m["ending_balance"] = endingBalance(in.total, in.startingBalance)
		m["hosted_invoice_url"] = "https://invoice.stripe.test/i/" + in.id
		m["invoice_pdf"] = "https://pay.stripe.test/invoice/" + in.id + "/pdf"
	}
	return m
}

// invoiceLinesPage is how many lines an invoice object embeds.
const invoiceLinesPage = 10

func renderUsage(u UsageRecord) map[string]any {
	return map[string]any{"id": u.ID, "object": "usage_record", "livemode": false, "quantity": u.Quantity,
		"subscription_item": u.SubscriptionItem, "timestamp": u.Timestamp}
}

// ---- billing periods ----

// addInterval is anchor plus n intervals, in UTC. Months and years keep the anchor's day of month,
// clamped to the month's last day (a 31 January anchor bills on 29 February, then 31 March):
// https://docs.stripe.com/billing/subscriptions/billing-cycle ("a monthly subscription with a
// billing cycle anchor date of January 31 bills the last day of the month closest to the anchor
// date, so February 28 (or February 29 in a leap year), then March 31, April 30, and so on").
func addInterval(anchor int64, interval string, count int64, n int) int64 {
	t := time.Unix(anchor, 0).UTC()
	k := int(count) * n
	switch interval {
	case "day":
		return t.AddDate(0, 0, k).Unix()
	case "week":
		return t.AddDate(0, 0, 7*k).Unix()
	case "year":
		k *= 12
	}
	y, mo, d := t.Date()
	first := time.Date(y, mo+time.Month(k), 1, t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
	last := first.AddDate(0, 1, -1).Day()
	if d > last {
		d = last
	}
	return time.Date(first.Year(), first.Month(), d, t.Hour(), t.Minute(), t.Second(), 0, time.UTC).Unix()
}
