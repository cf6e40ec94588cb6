package stripefake

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"

	"github.com/stripe/stripe-go/v76"
)

// Control operations: what customers (Checkout, the billing portal), the Dashboard and Stripe's
// own billing cycle do. Each runs under the double's lock, changes its state and emits the events
// Stripe sends (https://docs.stripe.com/billing/subscriptions/webhooks), in the order the state
// changes happen in. Stripe itself does not guarantee that events arrive in the order they were
// created (https://docs.stripe.com/webhooks#event-ordering), so a consumer must cope with any
// order; tests can shuffle Drain's result. Operations that happen at a time Stripe picks (a period end, a trial end, a
// retry) first move the double's clock forward to that time, as a Stripe test clock does
// (https://docs.stripe.com/billing/testing/test-clocks).

// ErrNotFound is returned (wrapped) for an unknown id.
var ErrNotFound = errors.New("stripefake: no such object")

// retryDelay is the gap to the next automatic payment retry the double announces in
// next_payment_attempt. Stripe's Smart Retries choose the times themselves ("The recommended
// default is 8 tries within 2 weeks", https://docs.stripe.com/billing/revenue-recovery/smart-retries);
// the double uses a fixed 3 days.
const retryDelay = 3 * 24 * 3600

// maxRetries is the double's number of automatic attempts of one invoice, the first included; the
// last failing attempt leaves next_payment_attempt null
// (https://docs.stripe.com/api/invoices/object#invoice_object-next_payment_attempt: "The time at
// which payment will next be attempted"). ExhaustRetries ends retries whatever the count.
const maxRetries = 8

// trialWillEndLead: customer.subscription.trial_will_end "Occurs three days before a
// subscription's trial period is scheduled to end, or when a trial is ended immediately (using
// trial_end=now)" (https://docs.stripe.com/api/events/types,
// https://docs.stripe.com/billing/subscriptions/webhooks).
const trialWillEndLead = 3 * 24 * 3600

// incompleteExpiry: "If the first invoice is not paid within 23 hours, the subscription
// transitions to incomplete_expired"
// (https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses).
const incompleteExpiry = 23 * 3600

func (s *Server) sub(id string) (*subscription, error) {
	sub := s.subs[id]
	if sub == nil {
		return nil, fmt.Errorf("%w: subscription %q", ErrNotFound, id)
	}
	return sub, nil
}

// ---- invoices (https://docs.stripe.com/invoicing/overview#invoice-lifecycle: draft → open →
// paid, or void / uncollectible) ----

// newInvoice creates a draft invoice of sub (not yet emitted). Licensed items are billed in
// advance for the period in licensed (nil: not billed); metered items in arrears, for their usage
// in usage (the period that just ended; nil: not billed) — https://docs.stripe.com/billing/subscriptions/usage-based-legacy
// (metered usage is billed at the end of the period it was reported in). A trialing subscription's
// invoice is for 0 (https://docs.stripe.com/billing/subscriptions/trials).
// period_start/period_end: "Start [End] of the usage period during which invoice items were added
// to this invoice" (https://docs.stripe.com/api/invoices/object#invoice_object-period_start): the
// period that just ended for a renewal, the creation time otherwise.
func (s *Server) newInvoice(sub *subscription, reason string, licensed, usage *[2]int64) *invoice {
	in := &invoice{seq: s.seq, id: s.newID("in_"), created: s.unix(), customer: sub.customer, subscription: sub.id,
		billingReason: reason, status: "draft", currency: sub.currency, subMetadata: meta(sub.metadata)}
	in.periodStart, in.periodEnd = in.created, in.created
	if usage != nil {
		in.periodStart, in.periodEnd = usage[0], usage[1]
	}
	// Pending invoice items (prorations) come first, as Stripe sorts lines
	// (https://docs.stripe.com/api/invoices/object#invoice_object-lines: "(1) pending invoice items
	// (including prorations) in reverse chronological order, (2) subscription items…").
	for i := len(sub.pending) - 1; i >= 0; i-- {
		in.total += sub.pending[i].amount
		in.lines = append(in.lines, sub.pending[i])
	}
	sub.pending = nil
	for _, it := range sub.items {
		p := s.prices[it.price]
		l := invoiceLine{id: s.newID("il_"), item: it.id, price: p.id, quantity: it.quantity}
		switch {
		case p.metered() && usage == nil, !p.metered() && licensed == nil:
			continue
		case p.metered():
			l.quantity = s.usageTotal(it.id, usage[0], usage[1])
			l.periodStart, l.periodEnd = usage[0], usage[1]
			l.amount = meteredAmount(p.unitAmountDecimal, l.quantity)
		default:
			l.periodStart, l.periodEnd = licensed[0], licensed[1]
			if sub.status != "trialing" && p.unitAmount != nil {
				l.amount = *p.unitAmount * it.quantity
			}
		}
		in.total += l.amount
		in.lines = append(in.lines, l)
	}
	in.amountDue = in.total
	s.invoices[in.id] = in
	sub.latestInvoice = in.id
	return in
}

// meteredAmount is usage × unit_amount_decimal, rounded half up to the currency's minor unit.
func meteredAmount(decimal string, qty int64) int64 {
	r, ok := new(big.Rat).SetString(decimal)
	if !ok {
		return 0
	}
	r.Mul(r, new(big.Rat).SetInt64(qty))
	r.Add(r, big.NewRat(1, 2))
	q := new(big.Int).Quo(r.Num(), r.Denom())
	return q.Int64()
}

// openInvoice emits invoice.created (the draft) and finalizes it: invoice.finalized, status open
// (https://docs.stripe.com/api/events/types#event_types-invoice.finalized: a draft invoice was
// finalized and is now open). For a renewal Stripe waits about an hour after invoice.created
// before finalizing and charging (https://docs.stripe.com/billing/subscriptions/webhooks, on
// invoice.created); the double does both in the same second.
func (s *Server) openInvoice(in *invoice) {
	s.emit("invoice.created", s.renderInvoice(in), nil)
	in.status, in.finalizedAt = "open", s.unix()
	s.applyBalance(in)
	in.number = fmt.Sprintf("%s-%04d", s.tag, in.seq)
	s.emit("invoice.finalized", s.renderInvoice(in), nil)
}

// payInvoice pays an open invoice: invoice.paid then invoice.payment_succeeded
// (https://docs.stripe.com/billing/subscriptions/webhooks: invoice.paid is sent when the invoice is
// paid; https://docs.stripe.com/api/events/types#event_types-invoice.payment_succeeded).
// An invoice with nothing due (zero, or covered by the customer's credit balance) is paid without
// a payment attempt.
func (s *Server) payInvoice(in *invoice) {
	if in.amountDue > 0 {
		in.attemptCount++
	}
	in.attempted, in.status, in.paidAt, in.nextAttempt = true, "paid", s.unix(), 0
	obj := s.renderInvoice(in)
	s.emit("invoice.paid", obj, nil)
	s.emit("invoice.payment_succeeded", obj, nil)
}

// failInvoice records a failed payment attempt of an open invoice: attempt_count + 1,
// next_payment_attempt (null after the last attempt), invoice.payment_failed
// (https://docs.stripe.com/billing/subscriptions/webhooks: sent when a payment for an invoice
// fails).
func (s *Server) failInvoice(in *invoice, last bool) {
	in.attemptCount++
	in.attempted = true
	in.nextAttempt = s.unix() + retryDelay
	if last || in.attemptCount >= maxRetries {
		in.nextAttempt = 0
	}
	s.emit("invoice.payment_failed", s.renderInvoice(in), nil)
}

// openInvoiceOf returns sub's newest invoice that is open (awaiting payment), if any. (Not simply
// latest_invoice: an immediate invoice of prorations, paid at once, may be newer than a renewal
// still being retried.)
func (s *Server) openInvoiceOf(sub *subscription) *invoice {
	var open *invoice
	for _, in := range s.invoices {
		if in.subscription == sub.id && in.status == "open" && (open == nil || in.seq > open.seq) {
			open = in
		}
	}
	return open
}

// ---- subscription state changes ----

// setStatus changes sub's status and emits customer.subscription.updated with the previous values.
func (s *Server) setStatus(sub *subscription, status string) {
	before := normalize(s.renderSub(sub))
	sub.status = status
	s.emitUpdated("customer.subscription.updated", before, normalize(s.renderSub(sub)))
}

// endSubscription cancels sub: status canceled, ended_at, canceled_at, cancellation_details.reason;
// emits customer.subscription.deleted ("Occurs whenever a customer's subscription ends",
// https://docs.stripe.com/api/events/types; https://docs.stripe.com/billing/subscriptions/webhooks).
// The double sends no customer.subscription.updated for this change.
func (s *Server) endSubscription(sub *subscription, endedAt, canceledAt int64, reason string) {
	sub.status, sub.endedAt, sub.canceledAt = "canceled", endedAt, canceledAt
	if sub.cancelReason == "" || reason != "cancellation_requested" {
		sub.cancelReason = reason
	}
	s.emit("customer.subscription.deleted", s.renderSub(sub), nil)
}

// cycle starts sub's next billing period at the current period's end (or the trial end): the
// clock moves there, the period moves, a trialing subscription becomes active, and
// customer.subscription.updated is emitted; then the period's invoice is created and finalized
// (invoice.created, invoice.finalized), billing_reason subscription_cycle
// (https://docs.stripe.com/api/invoices/object#invoice_object-billing_reason). It returns the open
// invoice; the caller pays or fails it.
// https://docs.stripe.com/billing/subscriptions/overview#subscription-lifecycle,
// https://docs.stripe.com/billing/subscriptions/billing-cycle.
func (s *Server) cycle(sub *subscription) *invoice {
	boundary := sub.periodEnd
	s.advanceTo(boundary)
	before := normalize(s.renderSub(sub))
	interval, count := s.interval(sub)
	usage := &[2]int64{sub.periodStart, sub.periodEnd}
	if sub.status == "trialing" {
		// Usage reported during a trial is not billed: the trial is free
		// (https://docs.stripe.com/billing/subscriptions/trials). Not spelled out for metered
		// prices in the docs the double follows.
		usage = nil
		// "A subscription that is currently in a trial period is trialing and moves to active when
		// the trial period is over." The billing cycle anchor defaults to the trial end
		// (https://docs.stripe.com/billing/subscriptions/billing-cycle).
		sub.status = "active"
		sub.anchor = boundary
	}
	sub.periodStart = boundary
	sub.periodEnd = nextBoundary(sub.anchor, boundary, interval, count)
	in := s.newInvoice(sub, "subscription_cycle", &[2]int64{sub.periodStart, sub.periodEnd}, usage)
	s.emitUpdated("customer.subscription.updated", before, normalize(s.renderSub(sub)))
	s.openInvoice(in)
	return in
}

// nextBoundary is the first anchor-aligned boundary after from.
func nextBoundary(anchor, from int64, interval string, count int64) int64 {
	for n := 1; ; n++ {
		if b := addInterval(anchor, interval, count, n); b > from {
			return b
		}
	}
}

// interval is sub's billing interval (all its prices share it).
func (s *Server) interval(sub *subscription) (string, int64) {
	for _, it := range sub.items {
		if r := s.prices[it.price].recurring; r != nil {
			return r.interval, r.intervalCount
		}
	}
	return "month", 1
}

// Item is a subscription item for CreateSubscription: a price and, for licensed prices, a quantity
// (0 means 1; metered prices take none).
type Item struct {
	Price    string
	Quantity int64
}

// startSubscription creates a subscription and emits what Stripe emits when one starts:
// customer.subscription.created, then its first invoice (billing_reason subscription_create):
// invoice.created, invoice.finalized and, when paid, invoice.paid and invoice.payment_succeeded; an
// incomplete subscription's first payment fails instead (invoice.payment_failed).
// https://docs.stripe.com/billing/subscriptions/overview#how-payments-work-subscriptions,
// https://docs.stripe.com/billing/subscriptions/webhooks.
func (s *Server) startSubscription(customerID string, items []Item, metadata map[string]string, trialDays int64, status string, automaticTax bool) (*subscription, error) {
	if s.customers[customerID] == nil {
		return nil, fmt.Errorf("%w: customer %q", ErrNotFound, customerID)
	}
	if len(items) == 0 {
		return nil, errors.New("stripefake: a subscription needs at least one item")
	}
	switch status {
	case "":
		status = "active"
		if trialDays > 0 {
			status = "trialing"
		}
	case "active", "incomplete":
		if trialDays > 0 {
			return nil, fmt.Errorf("stripefake: status %s with a trial: a subscription with a trial starts trialing", status)
		}
	case "trialing":
		if trialDays <= 0 {
			return nil, errors.New("stripefake: status trialing needs trialDays > 0")
		}
	default:
		return nil, fmt.Errorf("stripefake: a subscription starts active, trialing or incomplete, not %q", status)
	}
	now := s.unix()
	sub := &subscription{id: s.newID("sub_"), created: now, customer: customerID, status: status,
		metadata: meta(metadata), anchor: now, periodStart: now, automaticTax: automaticTax}
	var interval string
	var count int64
	seen := map[string]bool{}
	for _, item := range items {
		p := s.prices[item.Price]
		if p == nil {
			return nil, fmt.Errorf("%w: price %q", ErrNotFound, item.Price)
		}
		if p.recurring == nil {
			return nil, fmt.Errorf("stripefake: price %s is not recurring", p.id)
		}
		if seen[p.id] {
			return nil, fmt.Errorf("stripefake: price %s given twice", p.id)
		}
		seen[p.id] = true
		if interval == "" {
			interval, count, sub.currency = p.recurring.interval, p.recurring.intervalCount, p.currency
		} else if p.recurring.interval != interval || p.recurring.intervalCount != count || p.currency != sub.currency {
			return nil, errors.New("stripefake: all prices of a subscription must share currency and interval")
		}
		it := &subItem{id: s.newID("si_"), created: now, price: p.id, metadata: map[string]string{}}
		if !p.metered() {
			it.quantity = item.Quantity
			if it.quantity == 0 {
				it.quantity = 1
			}
		} else if item.Quantity != 0 {
			return nil, fmt.Errorf("stripefake: metered price %s takes no quantity", p.id)
		}
		sub.items = append(sub.items, it)
	}
	sub.seq = s.seq
	if trialDays > 0 {
		// https://docs.stripe.com/billing/subscriptions/trials: the trial runs trial_period_days
		// from now; the first period is the trial.
		sub.trialStart, sub.trialEnd = now, now+trialDays*24*3600
		sub.periodEnd, sub.anchor = sub.trialEnd, sub.trialEnd
	} else {
		sub.periodEnd = addInterval(now, interval, count, 1)
	}
	s.subs[sub.id] = sub
	for _, it := range sub.items {
		s.itemSub[it.id] = sub.id
	}
	in := s.newInvoice(sub, "subscription_create", &[2]int64{sub.periodStart, sub.periodEnd}, nil)
	s.emit("customer.subscription.created", s.renderSub(sub), nil)
	s.openInvoice(in)
	if status == "incomplete" {
		// "For collection_method=charge_automatically a subscription moves into incomplete if the
		// initial payment attempt fails." No automatic retries: it expires after 23 hours.
		s.failInvoice(in, true)
	} else {
		s.payInvoice(in)
	}
	return sub, nil
}

// CreateSubscription creates a subscription as the Dashboard or the API would
// (https://docs.stripe.com/api/subscriptions/create): status "" (active, or trialing when
// trialDays > 0), "active", "trialing" or "incomplete" (the first payment failed). It returns the
// subscription id.
func (s *Server) CreateSubscription(customerID string, items []Item, metadata map[string]string, trialDays int, status string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.startSubscription(customerID, items, metadata, int64(trialDays), status, false)
	if err != nil {
		return "", err
	}
	return sub.id, nil
}

// CheckoutOption adjusts what the customer enters in Checkout.
type CheckoutOption func(*checkoutInput)

type checkoutInput struct{ email, name string }

// WithEmail is the email the customer enters (a new customer gets it).
func WithEmail(email string) CheckoutOption { return func(c *checkoutInput) { c.email = email } }

// WithName is the name the customer enters (a new customer gets it).
func WithName(name string) CheckoutOption { return func(c *checkoutInput) { c.name = name } }

// CompleteCheckout is the customer paying on the Checkout page of an open subscription-mode
// session (https://docs.stripe.com/payments/checkout/how-checkout-works#complete): a session
// without customer gets a new one (customer.created); the subscription is created on the customer
// with the session's line items (licensed with their quantity, metered without), metadata from
// subscription_data.metadata, trialing for subscription_data.trial_period_days, else active
// (customer.subscription.created, invoice.created, invoice.finalized, invoice.paid,
// invoice.payment_succeeded); then the session is complete (checkout.session.completed, with
// customer, subscription, client_reference_id; payment_status paid, or no_payment_required for a
// trial: https://docs.stripe.com/api/checkout/sessions/object#checkout_session_object-payment_status).
// Order: the state changes in the order they happen (https://docs.stripe.com/billing/subscriptions/webhooks
// lists the events; it does not fix their order).
func (s *Server) CompleteCheckout(sessionID string, opts ...CheckoutOption) (stripe.CheckoutSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.sessions[sessionID]
	if cs == nil {
		return stripe.CheckoutSession{}, fmt.Errorf("%w: checkout session %q", ErrNotFound, sessionID)
	}
	if err := s.completeSession(cs, opts); err != nil {
		return stripe.CheckoutSession{}, err
	}
	var out stripe.CheckoutSession
	decode(s.renderSession(cs, true), &out)
	return out, nil
}

func (s *Server) completeSession(cs *session, opts []CheckoutOption) error {
	s.expireSession(cs)
	if cs.status != "open" {
		return fmt.Errorf("stripefake: checkout session %s is %s, not open", cs.id, cs.status)
	}
	in := checkoutInput{email: cs.customerEmail}
	for _, o := range opts {
		o(&in)
	}
	if cs.customer == "" {
		c := &customer{seq: s.seq, id: s.newID("cus_"), created: s.unix(), name: in.name, email: in.email, metadata: map[string]string{}}
		if c.email == "" {
			c.email = "customer+" + c.id + "@example.com"
		}
		s.customers[c.id] = c
		s.emit("customer.created", c.render(), nil)
		cs.customer = c.id
	}
	c := s.customers[cs.customer]
	if c.email == "" && in.email != "" {
		// https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-customer:
		// "If the Customer does not have a valid email, Checkout will set the email entered during
		// the session on the Customer."
		before := normalize(c.render())
		c.email = in.email
		s.emitUpdated("customer.updated", before, normalize(c.render()))
	}
	cs.detailsEmail, cs.detailsName = c.email, c.name
	items := make([]Item, 0, len(cs.lines))
	for _, li := range cs.lines {
		items = append(items, Item{Price: li.price, Quantity: li.quantity})
	}
	s.completeTax(cs)
	sub, err := s.startSubscription(cs.customer, items, cs.subMetadata, cs.trialDays, "", cs.automaticTax)
	if err != nil {
		return err
	}
	cs.status, cs.subscription, cs.invoice = "complete", sub.id, sub.latestInvoice
	cs.paymentStatus = "paid"
	if cs.trialDays > 0 {
		cs.paymentStatus = "no_payment_required"
	}
	s.emit("checkout.session.completed", s.renderSession(cs, false), nil)
	return nil
}

// StrangerCheckout is a checkout through a Payment Link or pricing table
// (https://docs.stripe.com/payment-links/url-parameters: client_reference_id comes from the link's
// URL): a session with no customer and the price (quantity
// 1 unless metered) is completed at once, so a NEW customer subscribes (same events as
// CompleteCheckout). It returns the new customer and subscription.
func (s *Server) StrangerCheckout(clientReferenceID, priceID string) (customerID, subscriptionID string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.prices[priceID]
	if p == nil {
		return "", "", fmt.Errorf("%w: price %q", ErrNotFound, priceID)
	}
	if p.recurring == nil {
		return "", "", fmt.Errorf("stripefake: price %s is not recurring", priceID)
	}
	li := lineItem{id: s.newID("li_"), price: priceID}
	if !p.metered() {
		li.quantity, li.hasQty = 1, true
	}
	cs := &session{seq: s.seq, id: s.newID("cs_test_"), created: s.unix(), mode: "subscription", status: "open",
		paymentStatus: "unpaid", clientReference: clientReferenceID, metadata: map[string]string{},
		lines: []lineItem{li}, paymentLink: s.newID("plink_"), customerCreation: "always", currency: p.currency,
		successURL: "https://buy.stripe.test/success"}
	cs.expiresAt = cs.created + 24*3600
	if p.unitAmount != nil && li.hasQty {
		cs.amountSubtotal = *p.unitAmount
	}
	s.sessions[cs.id] = cs
	if err := s.completeSession(cs, nil); err != nil {
		return "", "", err
	}
	return cs.customer, cs.subscription, nil
}

// licensedItem is sub's first licensed item (the plan).
func (s *Server) licensedItem(sub *subscription) *subItem {
	for _, it := range sub.items {
		if !s.prices[it.price].metered() {
			return it
		}
	}
	return nil
}

// portalUpdatable refuses changes the portal does not offer: it manages live subscriptions, not
// ended or incomplete ones (https://docs.stripe.com/customer-management).
func portalUpdatable(sub *subscription) error {
	if ended(sub.status) || sub.status == "incomplete" {
		return fmt.Errorf("stripefake: the portal cannot change subscription %s in status %s", sub.id, sub.status)
	}
	return nil
}

// PortalChangePrice is the customer switching plans in the billing portal
// (https://docs.stripe.com/customer-management/configure-portal#configure-subscription-management):
// the licensed item's price is swapped (same item id, quantity kept), prorations are created as
// pending invoice items (the portal's default proration_behavior create_prorations, billed with the
// next invoice), and metadata is left alone (the portal never writes metadata). Emits
// customer.subscription.updated.
func (s *Server) PortalChangePrice(subID, newPriceID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	if err := portalUpdatable(sub); err != nil {
		return err
	}
	p := s.prices[newPriceID]
	if p == nil {
		return fmt.Errorf("%w: price %q", ErrNotFound, newPriceID)
	}
	if p.recurring == nil || p.metered() || p.currency != sub.currency {
		return fmt.Errorf("stripefake: the portal offers licensed recurring prices in %s only; %s is not one", sub.currency, newPriceID)
	}
	it := s.licensedItem(sub)
	if it == nil {
		return fmt.Errorf("stripefake: subscription %s has no licensed item", subID)
	}
	if it.price == newPriceID {
		return fmt.Errorf("stripefake: subscription %s is already on %s", subID, newPriceID)
	}
	before := normalize(s.renderSub(sub))
	it.price = newPriceID
	s.emitUpdated("customer.subscription.updated", before, normalize(s.renderSub(sub)))
	return nil
}

// PortalSetQuantity is the customer changing the plan's quantity in the portal
// (https://docs.stripe.com/customer-management/configure-portal: "update quantities"). Emits
// customer.subscription.updated.
func (s *Server) PortalSetQuantity(subID string, qty int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	if err := portalUpdatable(sub); err != nil {
		return err
	}
	if qty < 1 {
		return errors.New("stripefake: the portal's quantities start at 1")
	}
	it := s.licensedItem(sub)
	if it == nil {
		return fmt.Errorf("stripefake: subscription %s has no licensed item", subID)
	}
	before := normalize(s.renderSub(sub))
	it.quantity = qty
	if !s.emitUpdated("customer.subscription.updated", before, normalize(s.renderSub(sub))) {
		return fmt.Errorf("stripefake: subscription %s already has quantity %d", subID, qty)
	}
	return nil
}

// PortalCancelAtPeriodEnd is the customer canceling at the period end in the portal (cancel) or
// renewing a subscription scheduled to cancel (!cancel)
// (https://docs.stripe.com/customer-management/cancel-subscriptions). Emits
// customer.subscription.updated (cancel_at_period_end, cancel_at, canceled_at,
// cancellation_details).
func (s *Server) PortalCancelAtPeriodEnd(subID string, cancel bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	if err := portalUpdatable(sub); err != nil {
		return err
	}
	if sub.cancelAtPeriodEnd == cancel {
		return fmt.Errorf("stripefake: subscription %s already has cancel_at_period_end=%t", subID, cancel)
	}
	before := normalize(s.renderSub(sub))
	s.setCancelAtPeriodEnd(sub, cancel)
	s.emitUpdated("customer.subscription.updated", before, normalize(s.renderSub(sub)))
	return nil
}

// FailPayment is a payment attempt that fails
// (https://docs.stripe.com/billing/subscriptions/overview#failed-payments). With an open invoice
// that has a retry left it is the next automatic retry (the clock moves to its
// next_payment_attempt): attempt_count + 1, invoice.payment_failed. Otherwise (no open invoice, or
// one whose retries are exhausted: Stripe no longer retries it, next_payment_attempt null, and it
// stays open while a later invoice may be paid) it is the renewal at the period end (or the trial
// end) failing: customer.subscription.updated (new period), invoice.created, invoice.finalized,
// invoice.payment_failed. An active or trialing subscription then becomes past_due
// (customer.subscription.updated): "past_due: Payment on the latest finalized invoice either failed
// or wasn't attempted".
func (s *Server) FailPayment(subID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	in := s.openInvoiceOf(sub)
	switch {
	case in != nil && sub.status == "incomplete":
		return fmt.Errorf("stripefake: subscription %s is incomplete: its first invoice is not retried automatically (Expire or RecoverPayment)", subID)
	case in != nil && in.nextAttempt != 0:
		s.advanceTo(in.nextAttempt)
	case sub.status == "active" || sub.status == "trialing" || sub.status == "past_due":
		in = s.cycle(sub)
	default:
		return fmt.Errorf("stripefake: subscription %s in status %s has no payment to fail", subID, sub.status)
	}
	s.failInvoice(in, false)
	if sub.status == "active" || sub.status == "trialing" {
		s.setStatus(sub, "past_due")
	}
	return nil
}

// RecoverPayment is the open invoice getting paid (a retry succeeds, or the customer pays it):
// invoice.paid, invoice.payment_succeeded; a past_due, unpaid or incomplete subscription becomes
// active (customer.subscription.updated)
// (https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses: incomplete "Once
// the first invoice is paid, the subscription moves into an active status").
func (s *Server) RecoverPayment(subID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	in := s.openInvoiceOf(sub)
	if in == nil {
		return fmt.Errorf("stripefake: subscription %s has no open invoice", subID)
	}
	if ended(sub.status) {
		return fmt.Errorf("stripefake: subscription %s has ended (%s)", subID, sub.status)
	}
	s.payInvoice(in)
	switch sub.status {
	case "past_due", "unpaid", "incomplete":
		s.setStatus(sub, "active")
	}
	return nil
}

// ExhaustRetries is the last automatic retry failing
// (https://docs.stripe.com/billing/subscriptions/overview#failed-payments and the status field of
// https://docs.stripe.com/api/subscriptions/object: "Once Stripe has exhausted all payment retry
// attempts, the subscription will become canceled or unpaid (depending on your subscriptions
// settings)."): the clock
// moves to the invoice's next_payment_attempt, invoice.payment_failed with next_payment_attempt
// null; then the subscription becomes unpaid (customer.subscription.updated) or canceled
// (customer.subscription.deleted, cancellation_details.reason payment_failed).
// then is "unpaid" or "canceled".
func (s *Server) ExhaustRetries(subID, then string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if then != "unpaid" && then != "canceled" {
		return fmt.Errorf("stripefake: ExhaustRetries then %q: want unpaid or canceled", then)
	}
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	in := s.openInvoiceOf(sub)
	if in == nil || sub.status != "past_due" {
		return fmt.Errorf("stripefake: subscription %s (%s) has no failing payment to exhaust: FailPayment first", subID, sub.status)
	}
	if in.nextAttempt != 0 {
		s.advanceTo(in.nextAttempt)
	}
	s.failInvoice(in, true)
	if then == "unpaid" {
		s.setStatus(sub, "unpaid")
		return nil
	}
	s.endSubscription(sub, s.unix(), s.unix(), "payment_failed")
	return nil
}

// Pause is a trial ending without a payment method, with the subscription set to pause
// (trial_settings.end_behavior.missing_payment_method=pause):
// https://docs.stripe.com/billing/subscriptions/trials#create-free-trials-without-payment and the
// status field of https://docs.stripe.com/api/subscriptions/object ("A subscription can only enter
// a paused status when a trial ends without a payment method. A paused subscription doesn't
// generate invoices"). The clock moves to the trial end; status paused;
// customer.subscription.updated then customer.subscription.paused ("Occurs whenever a customer's
// subscription is paused. Only applies when subscriptions enter status=paused, not when payment
// collection is paused.", https://docs.stripe.com/api/events/types). The order of the two events is
// not documented.
func (s *Server) Pause(subID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	if sub.status != "trialing" {
		return fmt.Errorf("stripefake: only a trialing subscription pauses (at its trial end); %s is %s", subID, sub.status)
	}
	s.advanceTo(sub.trialEnd)
	s.setStatus(sub, "paused")
	s.emit("customer.subscription.paused", s.renderSub(sub), nil)
	return nil
}

// Resume is a paused subscription resumed once the customer added a payment method
// (https://docs.stripe.com/api/subscriptions/resume, billing_cycle_anchor=now: "Setting the value
// to now resets the subscription's billing cycle anchor to the current time (in UTC)"; the new
// period is invoiced and paid at once): status active, a new period from now,
// customer.subscription.updated, customer.subscription.resumed ("Occurs whenever a customer's
// subscription is no longer paused", https://docs.stripe.com/api/events/types), then
// invoice.created, invoice.finalized, invoice.paid, invoice.payment_succeeded. The order of the
// subscription and invoice events is not documented.
func (s *Server) Resume(subID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	if sub.status != "paused" {
		return fmt.Errorf("stripefake: subscription %s is %s, not paused", subID, sub.status)
	}
	before := normalize(s.renderSub(sub))
	interval, count := s.interval(sub)
	now := s.unix()
	sub.status, sub.anchor, sub.periodStart = "active", now, now
	sub.periodEnd = addInterval(now, interval, count, 1)
	// billing_reason of the resume invoice: not documented; a new full period is billed, as at a
	// cycle.
	in := s.newInvoice(sub, "subscription_cycle", &[2]int64{sub.periodStart, sub.periodEnd}, nil)
	s.emitUpdated("customer.subscription.updated", before, normalize(s.renderSub(sub)))
	s.emit("customer.subscription.resumed", s.renderSub(sub), nil)
	s.openInvoice(in)
	s.payInvoice(in)
	return nil
}

// TrialWillEnd emits customer.subscription.trial_will_end, which Stripe sends three days before
// trial_end (https://docs.stripe.com/api/events/types,
// https://docs.stripe.com/billing/subscriptions/webhooks); the clock moves to trial_end - 3 days.
func (s *Server) TrialWillEnd(subID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	if sub.status != "trialing" {
		return fmt.Errorf("stripefake: subscription %s is %s, not trialing", subID, sub.status)
	}
	s.advanceTo(sub.trialEnd - trialWillEndLead)
	s.emit("customer.subscription.trial_will_end", s.renderSub(sub), nil)
	return nil
}

// EndTrial is the trial ending (the clock moves to trial_end): the subscription becomes active and
// its first paid period starts (customer.subscription.updated, invoice.created,
// invoice.finalized); the invoice is paid (invoice.paid, invoice.payment_succeeded) or its payment
// fails (invoice.payment_failed, then past_due: customer.subscription.updated).
// https://docs.stripe.com/billing/subscriptions/trials.
func (s *Server) EndTrial(subID string, paid bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	if sub.status != "trialing" {
		return fmt.Errorf("stripefake: subscription %s is %s, not trialing", subID, sub.status)
	}
	in := s.cycle(sub)
	if paid {
		s.payInvoice(in)
		return nil
	}
	s.failInvoice(in, false)
	s.setStatus(sub, "past_due")
	return nil
}

// Renew is the current period ending (the clock moves to current_period_end). A subscription set
// to cancel at the period end is canceled (status canceled, ended_at the period end, canceled_at
// unchanged: customer.subscription.deleted —
// https://docs.stripe.com/billing/subscriptions/cancel#cancel-at-end-of-cycle). Otherwise the next
// period starts (customer.subscription.updated, invoice.created, invoice.finalized) and its invoice
// is paid (invoice.paid, invoice.payment_succeeded; a past_due subscription whose latest invoice is
// paid is active again). An unpaid subscription's invoices are created but not attempted (status
// field of https://docs.stripe.com/api/subscriptions/object: "when a subscription has a status of
// unpaid, no subsequent invoices will be attempted"). A trialing subscription's renewal is its
// trial end (EndTrial paid).
func (s *Server) Renew(subID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	switch {
	case sub.cancelAtPeriodEnd && !ended(sub.status) && sub.status != "incomplete":
		s.advanceTo(sub.periodEnd)
		s.endSubscription(sub, sub.periodEnd, sub.canceledAt, "cancellation_requested")
		return nil
	case sub.status == "active" || sub.status == "trialing" || sub.status == "past_due":
		in := s.cycle(sub)
		s.payInvoice(in)
		if sub.status == "past_due" {
			s.setStatus(sub, "active")
		}
		return nil
	case sub.status == "unpaid":
		s.cycle(sub)
		return nil
	}
	return fmt.Errorf("stripefake: subscription %s in status %s does not renew", subID, sub.status)
}

// Expire is an incomplete subscription's first invoice staying unpaid for 23 hours (the clock
// moves to created + 23 h): the invoice is voided (invoice.voided) and the subscription becomes
// incomplete_expired, canceled_at and ended_at set (customer.subscription.updated)
// (https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses: "If the first
// invoice is not paid within 23 hours, the subscription transitions to incomplete_expired. This is
// a terminal status, the open invoice will be voided and no further invoices will be generated.").
func (s *Server) Expire(subID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.sub(subID)
	if err != nil {
		return err
	}
	if sub.status != "incomplete" {
		return fmt.Errorf("stripefake: subscription %s is %s, not incomplete", subID, sub.status)
	}
	s.advanceTo(sub.created + incompleteExpiry)
	if in := s.openInvoiceOf(sub); in != nil {
		in.status, in.voidedAt, in.nextAttempt = "void", s.unix(), 0
		s.emit("invoice.voided", s.renderInvoice(in), nil)
	}
	before := normalize(s.renderSub(sub))
	sub.status, sub.canceledAt, sub.endedAt = "incomplete_expired", s.unix(), s.unix()
	s.emitUpdated("customer.subscription.updated", before, normalize(s.renderSub(sub)))
	return nil
}

// ---- accessors ----

// decode converts a rendered object into a stripe-go type (as stripe-go decodes the API's JSON).
func decode(obj map[string]any, v any) {
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		panic(fmt.Sprintf("stripefake: rendering does not decode into %T: %v", v, err))
	}
}

// Subscription returns the subscription as GET /v1/subscriptions/{id} would (zero value when the
// id is unknown).
func (s *Server) Subscription(id string) stripe.Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out stripe.Subscription
	if sub := s.subs[id]; sub != nil {
		decode(s.renderSub(sub), &out)
	}
	return out
}

// SubscriptionsOf returns every subscription of the customer, newest first.
func (s *Server) SubscriptionsOf(customerID string) []stripe.Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []stripe.Subscription
	for _, sub := range sortNewest(s.subs, func(x *subscription) int { return x.seq }) {
		if sub.customer == customerID {
			var v stripe.Subscription
			decode(s.renderSub(sub), &v)
			out = append(out, v)
		}
	}
	return out
}

// Customer returns the customer (zero value when the id is unknown).
func (s *Server) Customer(id string) stripe.Customer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out stripe.Customer
	if c := s.customers[id]; c != nil {
		decode(c.render(), &out)
	}
	return out
}

// Price returns the price (zero value when the id is unknown).
func (s *Server) Price(id string) stripe.Price {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out stripe.Price
	if p := s.prices[id]; p != nil {
		decode(p.render(), &out)
	}
	return out
}

// CheckoutSessions returns every checkout session, oldest first, with line_items expanded.
func (s *Server) CheckoutSessions() []stripe.CheckoutSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := sortNewest(s.sessions, func(x *session) int { return x.seq })
	out := make([]stripe.CheckoutSession, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- {
		var v stripe.CheckoutSession
		decode(s.renderSession(all[i], true), &v)
		out = append(out, v)
	}
	return out
}

// LatestMeteredQuantity is the quantity of the metered lines of the subscription's latest invoice
// (as rendered to clients): the calls it bills. 0 when there is no invoice.
func (s *Server) LatestMeteredQuantity(subID string) int64 {
	ins := s.Invoices(subID)
	if len(ins) == 0 {
		return 0
	}
	var billed int64
	for _, l := range ins[len(ins)-1].Lines.Data {
		if l.Price != nil && l.Price.Recurring != nil && l.Price.Recurring.UsageType == stripe.PriceRecurringUsageTypeMetered {
			billed += l.Quantity
		}
	}
	return billed
}

// Invoices returns the subscription's invoices, oldest first.
func (s *Server) Invoices(subID string) []stripe.Invoice {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ins []*invoice
	for _, in := range s.invoices {
		if in.subscription == subID {
			ins = append(ins, in)
		}
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].seq < ins[j].seq })
	out := make([]stripe.Invoice, 0, len(ins))
	for _, in := range ins {
		var v stripe.Invoice
		decode(s.renderInvoice(in), &v)
		out = append(out, v)
	}
	return out
}

// UsageRecords returns the usage records accepted for a subscription item, in order.
func (s *Server) UsageRecords(itemID string) []UsageRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]UsageRecord(nil), s.usage[itemID]...)
}

// Usage is the item's usage with timestamps in [from, to), as Stripe aggregates it with
// aggregate_usage=sum: per timestamp, increment adds and set overwrites, in the order reported;
// the timestamps' totals add up (https://docs.stripe.com/api/usage_records/create).
func (s *Server) Usage(itemID string, from, to int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usageTotal(itemID, from, to)
}

func (s *Server) usageTotal(itemID string, from, to int64) int64 {
	at := map[int64]int64{}
	for _, u := range s.usage[itemID] {
		if u.Timestamp < from || u.Timestamp >= to {
			continue
		}
		if u.Action == "set" {
			at[u.Timestamp] = u.Quantity
		} else {
			at[u.Timestamp] += u.Quantity
		}
	}
	var total int64
	for _, q := range at {
		total += q
	}
	return total
}
