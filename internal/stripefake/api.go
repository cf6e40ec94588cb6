package stripefake

import (
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
)

// ---- customers: https://docs.stripe.com/api/customers ----

// createCustomer: https://docs.stripe.com/api/customers/create. Emits customer.created
// (https://docs.stripe.com/api/events/types#event_types-customer.created).
func (s *Server) createCustomer(f *fnode) response {
	if err := f.only("", "name", "email", "description", "metadata", "expand"); err != nil {
		return paramResp(err)
	}
	c := &customer{seq: s.seq, id: s.newID("cus_"), created: s.unix()}
	var err error
	if c.name, _, err = f.scalar("", "name"); err != nil {
		return paramResp(err)
	}
	if c.email, _, err = f.scalar("", "email"); err != nil {
		return paramResp(err)
	}
	if c.description, _, err = f.scalar("", "description"); err != nil {
		return paramResp(err)
	}
	if c.metadata, err = f.metadata("", "metadata", nil); err != nil {
		return paramResp(err)
	}
	s.customers[c.id] = c
	obj := c.render()
	s.emit("customer.created", obj, nil)
	return ok(obj)
}

// getCustomer: https://docs.stripe.com/api/customers/retrieve.
func (s *Server) getCustomer(id string, f *fnode) response {
	if err := f.only("", "expand"); err != nil {
		return paramResp(err)
	}
	c := s.customers[id]
	if c == nil {
		return missing("customer", id)
	}
	return ok(c.render())
}

// ---- products: https://docs.stripe.com/api/products ----

// createProduct: https://docs.stripe.com/api/products/create (name required). Emits
// product.created.
func (s *Server) createProduct(f *fnode) response {
	if err := f.only("", "name", "metadata", "active", "expand"); err != nil {
		return paramResp(err)
	}
	name, ok1, err := f.scalar("", "name")
	if err != nil {
		return paramResp(err)
	}
	if !ok1 || name == "" {
		return invalid("name", "Missing required param: name.")
	}
	p := &product{seq: s.seq, id: s.newID("prod_"), created: s.unix(), name: name, active: true}
	p.updated = p.created
	if a, ok1, err := f.boolean("", "active"); err != nil {
		return paramResp(err)
	} else if ok1 {
		p.active = a
	}
	if p.metadata, err = f.metadata("", "metadata", nil); err != nil {
		return paramResp(err)
	}
	s.products[p.id] = p
	obj := p.render()
	s.emit("product.created", obj, nil)
	return ok(obj)
}

func (s *Server) getProduct(id string, f *fnode) response {
	if err := f.only("", "expand"); err != nil {
		return paramResp(err)
	}
	p := s.products[id]
	if p == nil {
		return missing("product", id)
	}
	return ok(p.render())
}

// ---- prices: https://docs.stripe.com/api/prices ----

// createPrice: https://docs.stripe.com/api/prices/create. lookup_key is unique among prices; a
// key in use is refused unless transfer_lookup_key=true ("If set to true, will atomically remove
// the lookup key from the existing price, and assign it to this price."). Emits price.created
// (and price.updated for the price that lost its lookup key).
func (s *Server) createPrice(f *fnode) response {
	if err := f.only("", "product", "currency", "unit_amount", "unit_amount_decimal", "recurring", "lookup_key",
		"transfer_lookup_key", "nickname", "metadata", "active", "expand"); err != nil {
		return paramResp(err)
	}
	productID, _, err := f.scalar("", "product")
	if err != nil {
		return paramResp(err)
	}
	if productID == "" {
		return invalid("product", "Missing required param: product.")
	}
	currency, _, err := f.scalar("", "currency")
	if err != nil {
		return paramResp(err)
	}
	if currency == "" {
		return invalid("currency", "Missing required param: currency.")
	}
	currency = strings.ToLower(currency)
	p := &price{id: "", created: s.unix(), product: productID, currency: currency, active: true}
	ua, hasUA, err := f.integer("", "unit_amount")
	if err != nil {
		return paramResp(err)
	}
	uad, hasUAD, err := f.scalar("", "unit_amount_decimal")
	if err != nil {
		return paramResp(err)
	}
	switch {
	case hasUA && hasUAD:
		return invalid("unit_amount", "You may only specify one of these parameters: unit_amount, unit_amount_decimal.")
	case hasUA:
		if ua < 0 {
			return invalid("unit_amount", "Invalid non-negative integer")
		}
		p.unitAmount, p.unitAmountDecimal = &ua, strconv.FormatInt(ua, 10)
	case hasUAD:
		// https://docs.stripe.com/api/prices/object#price_object-unit_amount_decimal: a decimal
		// string with at most 12 decimal places; unit_amount is null unless it is whole.
		r, ok1 := new(big.Rat).SetString(uad)
		if !ok1 || r.Sign() < 0 {
			return invalid("unit_amount_decimal", "Invalid decimal: "+uad)
		}
		p.unitAmountDecimal = decimalString(r)
		if r.IsInt() {
			v := r.Num().Int64()
			p.unitAmount = &v
		}
	default:
		return invalid("unit_amount", "Missing required param: unit_amount.")
	}
	if rec := f.child("recurring"); rec != nil {
		if err := rec.only("recurring", "interval", "interval_count", "usage_type", "aggregate_usage"); err != nil {
			return paramResp(err)
		}
		r := &recurring{intervalCount: 1, usageType: "licensed"}
		r.interval, _, err = rec.scalar("recurring", "interval")
		if err != nil {
			return paramResp(err)
		}
		switch r.interval {
		case "day", "week", "month", "year":
		case "":
			return invalid("recurring[interval]", "Missing required param: recurring[interval].")
		default:
			return invalid("recurring[interval]", "Invalid recurring[interval]: must be one of day, week, month, or year")
		}
		if n, ok1, err := rec.integer("recurring", "interval_count"); err != nil {
			return paramResp(err)
		} else if ok1 {
			if n < 1 {
				return invalid("recurring[interval_count]", "Invalid positive integer")
			}
			r.intervalCount = n
		}
		if u, ok1, err := rec.scalar("recurring", "usage_type"); err != nil {
			return paramResp(err)
		} else if ok1 {
			if u != "licensed" && u != "metered" {
				return invalid("recurring[usage_type]", "Invalid recurring[usage_type]: must be one of metered or licensed")
			}
			r.usageType = u
		}
		// https://docs.stripe.com/api/prices/object#price_object-recurring-aggregate_usage: for
		// metered prices only; "Defaults to sum".
		if a, ok1, err := rec.scalar("recurring", "aggregate_usage"); err != nil {
			return paramResp(err)
		} else if ok1 {
			switch a {
			case "sum", "last_during_period", "last_ever", "max":
			default:
				return invalid("recurring[aggregate_usage]", "Invalid recurring[aggregate_usage]: must be one of sum, last_during_period, last_ever, or max")
			}
			if r.usageType != "metered" {
				return invalid("recurring[aggregate_usage]", "aggregate_usage can only be set when usage_type is metered.")
			}
			r.aggregateUsage = a
		} else if r.usageType == "metered" {
			r.aggregateUsage = "sum"
		}
		p.recurring = r
	}
	if p.lookupKey, _, err = f.scalar("", "lookup_key"); err != nil {
		return paramResp(err)
	}
	if len(p.lookupKey) > 200 {
		return invalid("lookup_key", "lookup_key can have up to 200 characters.")
	}
	transfer, _, err := f.boolean("", "transfer_lookup_key")
	if err != nil {
		return paramResp(err)
	}
	if p.nickname, _, err = f.scalar("", "nickname"); err != nil {
		return paramResp(err)
	}
	if a, ok1, err := f.boolean("", "active"); err != nil {
		return paramResp(err)
	} else if ok1 {
		p.active = a
	}
	if p.metadata, err = f.metadata("", "metadata", nil); err != nil {
		return paramResp(err)
	}
	// The endpoint runs from here: what follows depends on state, and is saved under the key.
	if s.products[productID] == nil {
		return missingParam("product", productID, "product")
	}
	var holder *price
	if p.lookupKey != "" {
		for _, q := range s.prices {
			if q.lookupKey == p.lookupKey {
				holder = q
			}
		}
		if holder != nil && !transfer {
			// Message as Stripe words it ("A price (`price_…`) already uses that lookup key.";
			// stripe/stripe-ruby#933), param lookup_key.
			return refused("lookup_key", fmt.Sprintf("A price (`%s`) already uses that lookup key.", holder.id))
		}
	}
	p.seq = s.seq
	p.id = s.newID("price_")
	s.prices[p.id] = p
	if holder != nil {
		before := normalize(holder.render())
		holder.lookupKey = ""
		s.emitUpdated("price.updated", before, normalize(holder.render()))
	}
	obj := p.render()
	s.emit("price.created", obj, nil)
	return ok(obj)
}

// decimalString renders r with no trailing zeros and at most 12 decimal places.
func decimalString(r *big.Rat) string {
	d := r.FloatString(12)
	if strings.Contains(d, ".") {
		d = strings.TrimRight(strings.TrimRight(d, "0"), ".")
	}
	return d
}

func (s *Server) getPrice(id string, f *fnode) response {
	if err := f.only("", "expand"); err != nil {
		return paramResp(err)
	}
	p := s.prices[id]
	if p == nil {
		return missing("price", id)
	}
	return ok(p.render())
}

// listPrices: https://docs.stripe.com/api/prices/list — filters active, lookup_keys ("Only return
// the price with these lookup_keys, if any exist."; today's reference adds a limit of 10 keys, which
// the double enforces), product, currency, type; newest first. Unlike search (https://docs.stripe.com/search#data-freshness) the
// list is read-after-write consistent.
func (s *Server) listPrices(f *fnode) response {
	if err := f.only("", "active", "lookup_keys", "product", "currency", "type", "limit", "starting_after", "ending_before", "expand"); err != nil {
		return paramResp(err)
	}
	keys, err := f.strs("", "lookup_keys")
	if err != nil {
		return paramResp(err)
	}
	if len(keys) > 10 {
		return invalid("lookup_keys", "You can specify up to 10 lookup_keys.")
	}
	active, hasActive, err := f.boolean("", "active")
	if err != nil {
		return paramResp(err)
	}
	product, _, _ := f.scalar("", "product")
	currency, _, _ := f.scalar("", "currency")
	typ, _, _ := f.scalar("", "type")
	var objs []map[string]any
	for _, p := range sortNewest(s.prices, func(p *price) int { return p.seq }) {
		if hasActive && p.active != active {
			continue
		}
		if f.has("lookup_keys") {
			found := false
			for _, k := range keys {
				if k != "" && k == p.lookupKey {
					found = true
				}
			}
			if !found {
				continue
			}
		}
		if product != "" && p.product != product || currency != "" && p.currency != strings.ToLower(currency) {
			continue
		}
		if typ == "recurring" && p.recurring == nil || typ == "one_time" && p.recurring != nil {
			continue
		}
		objs = append(objs, p.render())
	}
	return listObject("/v1/prices", objs, f)
}

// ---- checkout sessions: https://docs.stripe.com/api/checkout/sessions ----

// createCheckoutSession: https://docs.stripe.com/api/checkout/sessions/create, mode=subscription
// only. The session is open, with a url, and expires 24 hours after creation
// (expires_at: "By default, this value is 24 hours from creation"). No event: Stripe has no
// checkout.session.created event (https://docs.stripe.com/api/events/types).
func (s *Server) createCheckoutSession(f *fnode) response {
	if err := f.only("", "mode", "customer", "customer_email", "client_reference_id", "line_items", "metadata",
		"subscription_data", "success_url", "cancel_url", "allow_promotion_codes", "automatic_tax", "customer_update", "expand"); err != nil {
		return paramResp(err)
	}
	cs := &session{created: s.unix(), status: "open", paymentStatus: "unpaid"}
	cs.expiresAt = cs.created + 24*3600
	var err error
	if cs.mode, _, err = f.scalar("", "mode"); err != nil {
		return paramResp(err)
	}
	switch cs.mode {
	case "subscription":
	case "":
		return invalid("mode", "Missing required param: mode.")
	default:
		return invalid("mode", "stripefake models mode=subscription only")
	}
	if cs.customer, _, err = f.scalar("", "customer"); err != nil {
		return paramResp(err)
	}
	if cs.customerEmail, _, err = f.scalar("", "customer_email"); err != nil {
		return paramResp(err)
	}
	if cs.customer != "" && cs.customerEmail != "" {
		return invalid("customer_email", "You may only specify one of these parameters: customer, customer_email.")
	}
	if cs.clientReference, _, err = f.scalar("", "client_reference_id"); err != nil {
		return paramResp(err)
	}
	if len(cs.clientReference) > 200 {
		return invalid("client_reference_id", "client_reference_id can have up to 200 characters.")
	}
	if cs.successURL, _, err = f.scalar("", "success_url"); err != nil {
		return paramResp(err)
	}
	// success_url: "The URL to which Stripe should send customers when payment or setup is
	// complete" (https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-success_url);
	// hosted Checkout (the only ui_mode the double models) cannot complete without it, so the double
	// requires it.
	if cs.successURL == "" {
		return invalid("success_url", "Missing required param: success_url.")
	}
	if cs.cancelURL, _, err = f.scalar("", "cancel_url"); err != nil {
		return paramResp(err)
	}
	if resp, ok1 := parseCheckoutExtras(f, cs); !ok1 {
		return resp
	}
	if cs.metadata, err = f.metadata("", "metadata", nil); err != nil {
		return paramResp(err)
	}
	if sd := f.child("subscription_data"); sd != nil {
		if err := sd.only("subscription_data", "metadata", "trial_period_days"); err != nil {
			return paramResp(err)
		}
		if cs.subMetadata, err = sd.metadata("subscription_data", "metadata", nil); err != nil {
			return paramResp(err)
		}
		if d, ok1, err := sd.integer("subscription_data", "trial_period_days"); err != nil {
			return paramResp(err)
		} else if ok1 {
			// https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-subscription_data-trial_period_days:
			// "Has to be at least 1."
			if d < 1 {
				return invalid("subscription_data[trial_period_days]", "subscription_data[trial_period_days] has to be at least 1.")
			}
			cs.trialDays = d
		}
	}
	els, err := f.list("", "line_items")
	if err != nil {
		return paramResp(err)
	}
	// In subscription mode line_items are required
	// (https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-line_items).
	if len(els) == 0 {
		return invalid("line_items", "Missing required param: line_items.")
	}
	for i, el := range els {
		prefix := fmt.Sprintf("line_items[%d]", i)
		if err := el.only(prefix, "price", "quantity"); err != nil {
			return paramResp(err)
		}
		li := lineItem{}
		if li.price, _, err = el.scalar(prefix, "price"); err != nil {
			return paramResp(err)
		}
		if li.price == "" {
			return invalid(prefix+"[price]", "Missing required param: "+prefix+"[price].")
		}
		if li.quantity, li.hasQty, err = el.integer(prefix, "quantity"); err != nil {
			return paramResp(err)
		}
		cs.lines = append(cs.lines, li)
	}
	// State-dependent checks: the endpoint runs.
	if cs.customer != "" && s.customers[cs.customer] == nil {
		return missingParam("customer", cs.customer, "customer")
	}
	if resp, ok1 := s.checkTaxLocation(cs); !ok1 {
		return resp
	}
	var interval string
	var count int64
	for i, li := range cs.lines {
		prefix := fmt.Sprintf("line_items[%d]", i)
		p := s.prices[li.price]
		if p == nil {
			return missingParam("price", li.price, prefix+"[price]")
		}
		if p.recurring == nil {
			return refused(prefix+"[price]", "You must specify at least one recurring price in `subscription` mode when using prices.")
		}
		if !p.active {
			return refused(prefix+"[price]", fmt.Sprintf("The price specified is inactive. This field only accepts active prices. (%s)", p.id))
		}
		if interval == "" {
			interval, count, cs.currency = p.recurring.interval, p.recurring.intervalCount, p.currency
		} else if p.recurring.interval != interval || p.recurring.intervalCount != count {
			// https://docs.stripe.com/billing/subscriptions/multiple-products: all prices of a
			// subscription share one billing interval.
			return refused(prefix+"[price]", "All prices on a subscription must have the same `recurring.interval` and `recurring.interval_count`.")
		}
		if p.currency != cs.currency {
			return refused(prefix+"[price]", "All prices on a subscription must have the same currency.")
		}
		// https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-line_items-quantity:
		// metered prices take no quantity; others need one.
		if p.metered() && li.hasQty {
			return refused(prefix+"[quantity]", fmt.Sprintf("Quantity should not be specified where usage_type is `metered`. Remove quantity from `%s`.", prefix))
		}
		if !p.metered() {
			if !li.hasQty {
				return refused(prefix+"[quantity]", fmt.Sprintf("Quantity is required. Add `quantity` to `%s`.", prefix))
			}
			if li.quantity < 1 {
				return refused(prefix+"[quantity]", "Invalid quantity: must be at least 1")
			}
			if p.unitAmount != nil {
				cs.amountSubtotal += *p.unitAmount * li.quantity
			}
		}
	}
	for i := range cs.lines {
		cs.lines[i].id = s.newID("li_")
	}
	if cs.customer == "" {
		// https://docs.stripe.com/api/checkout/sessions/object#checkout_session_object-customer_creation:
		// in subscription mode Checkout always creates a customer when none is given.
		cs.customerCreation = "always"
	}
	cs.seq = s.seq
	cs.id = s.newID("cs_test_")
	s.sessions[cs.id] = cs
	return ok(s.renderSession(cs, expands(f, "line_items")))
}

// expands reports whether expand[] names field.
func expands(f *fnode, field string) bool {
	ex, err := f.strs("", "expand")
	if err != nil {
		return false
	}
	for _, e := range ex {
		if e == field {
			return true
		}
	}
	return false
}

// getCheckoutSession: https://docs.stripe.com/api/checkout/sessions/retrieve (expand[]=line_items
// honoured).
func (s *Server) getCheckoutSession(id string, f *fnode) response {
	if err := f.only("", "expand"); err != nil {
		return paramResp(err)
	}
	cs := s.sessions[id]
	if cs == nil {
		return missing("checkout.session", id)
	}
	s.expireSession(cs)
	return ok(s.renderSession(cs, expands(f, "line_items")))
}

// expireSession expires an open session past expires_at
// (https://docs.stripe.com/api/checkout/sessions/object#checkout_session_object-status: "expired
// — The checkout session is expired. No further processing will occur"), emitting
// checkout.session.expired.
func (s *Server) expireSession(cs *session) {
	if cs.status == "open" && s.unix() >= cs.expiresAt {
		cur := s.cur
		s.cur = nil // Stripe expires the session, not the request that noticed it
		cs.status = "expired"
		s.emit("checkout.session.expired", s.renderSession(cs, false), nil)
		s.cur = cur
	}
}

// ---- billing portal: https://docs.stripe.com/api/customer_portal/sessions/create ----

// createPortalSession returns a session with a url; Stripe emits
// billing_portal.session.created (https://docs.stripe.com/api/events/types).
func (s *Server) createPortalSession(f *fnode) response {
	if err := f.only("", "customer", "return_url", "expand"); err != nil {
		return paramResp(err)
	}
	cus, _, err := f.scalar("", "customer")
	if err != nil {
		return paramResp(err)
	}
	if cus == "" {
		return invalid("customer", "Missing required param: customer.")
	}
	ret, _, err := f.scalar("", "return_url")
	if err != nil {
		return paramResp(err)
	}
	if s.customers[cus] == nil {
		return missingParam("customer", cus, "customer")
	}
	ps := &portalSession{id: s.newID("bps_"), created: s.unix(), customer: cus, returnURL: ret}
	s.portals[ps.id] = ps
	obj := ps.render()
	s.emit("billing_portal.session.created", obj, nil)
	return ok(obj)
}

// ---- subscriptions: https://docs.stripe.com/api/subscriptions ----

// getSubscription: https://docs.stripe.com/api/subscriptions/retrieve — the current state. expand
// is accepted and ignored: items always carry full price objects.
func (s *Server) getSubscription(id string, f *fnode) response {
	if err := f.only("", "expand"); err != nil {
		return paramResp(err)
	}
	sub := s.subs[id]
	if sub == nil {
		return missing("subscription", id)
	}
	return ok(s.renderSub(sub))
}

// listSubscriptions: https://docs.stripe.com/api/subscriptions/list — customer, price, status
// ("Passing in a value of canceled will return all canceled subscriptions… Pass ended to find
// subscriptions that are canceled and subscriptions that are expired due to incomplete payment.
// Passing in a value of all will return subscriptions of all statuses. If no value is supplied,
// all subscriptions that have not been canceled are returned.").
func (s *Server) listSubscriptions(f *fnode) response {
	if err := f.only("", "customer", "price", "status", "limit", "starting_after", "ending_before", "expand"); err != nil {
		return paramResp(err)
	}
	cus, _, _ := f.scalar("", "customer")
	pr, _, _ := f.scalar("", "price")
	status, _, _ := f.scalar("", "status")
	switch status {
	case "", "all", "ended", "active", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired", "trialing", "paused":
	default:
		return invalid("status", "Invalid status: must be one of active, past_due, unpaid, canceled, incomplete, incomplete_expired, trialing, paused, all, or ended")
	}
	var objs []map[string]any
	for _, sub := range sortNewest(s.subs, func(x *subscription) int { return x.seq }) {
		if cus != "" && sub.customer != cus {
			continue
		}
		switch status {
		case "":
			if sub.status == "canceled" {
				continue
			}
		case "all":
		case "ended":
			if sub.status != "canceled" && sub.status != "incomplete_expired" {
				continue
			}
		default:
			if sub.status != status {
				continue
			}
		}
		if pr != "" {
			found := false
			for _, it := range sub.items {
				found = found || it.price == pr
			}
			if !found {
				continue
			}
		}
		objs = append(objs, s.renderSub(sub))
	}
	return listObject("/v1/subscriptions", objs, f)
}

// ended reports a terminal status: https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses
// (canceled; incomplete_expired "is a terminal status").
func ended(status string) bool { return status == "canceled" || status == "incomplete_expired" }

// subItem finds a subscription item and its subscription; it is nil when no subscription has it.
func (s *Server) subItem(itemID string) (*subscription, *subItem) {
	sub := s.subs[s.itemSub[itemID]]
	if sub == nil {
		return nil, nil
	}
	for _, x := range sub.items {
		if x.id == itemID {
			return sub, x
		}
	}
	return sub, nil
}

// endedRefusal is Stripe's refusal to change a subscription (or one of its items) in an ended
// status beyond its cancellation_details and metadata (see updateSubscription).
func endedRefusal(status string) response {
	if status == "canceled" {
		return refused("", "A canceled subscription can only update its cancellation_details and metadata.")
	}
	return refused("", "A subscription in status incomplete_expired can only update its cancellation_details and metadata.")
}

// prorationBehavior reads proration_behavior
// (https://docs.stripe.com/api/subscriptions/update#update_subscription-proration_behavior,
// https://docs.stripe.com/api/subscription_items/update): create_prorations (the default when
// absent), none or always_invoice. has says whether it was sent; ok is false with the refusal
// to answer.
func prorationBehavior(f *fnode) (proration string, has bool, refusal response, ok bool) {
	proration, has, err := f.scalar("", "proration_behavior")
	if err != nil {
		return "", has, paramResp(err), false
	}
	switch proration {
	case "create_prorations", "none", "always_invoice":
	case "":
		if has {
			return "", has, invalid("proration_behavior", "Invalid proration_behavior: must be one of create_prorations, none, or always_invoice"), false
		}
		proration = "create_prorations"
	default:
		return "", has, invalid("proration_behavior", "Invalid proration_behavior: must be one of create_prorations, none, or always_invoice"), false
	}
	return proration, has, response{}, true
}

// updateSubscription: https://docs.stripe.com/api/subscriptions/update — cancel_at_period_end,
// metadata, proration_behavior, proration_date, items[i] (id+price swaps the item's price, price
// alone adds an item, id+deleted removes one, with clear_usage for a metered item that has usage;
// quantity; see items.go). Emits customer.subscription.updated with previous_attributes when
// anything changed. An item change prorates (items.go, prorations) as proration_behavior says:
// create_prorations (the default) leaves the proration lines pending, billed with the next invoice;
// always_invoice invoices them at once with the subscription's other pending lines (billing_reason
// subscription_update: invoice.created, invoice.finalized, invoice.paid, invoice.payment_succeeded);
// none creates none.
func (s *Server) updateSubscription(id string, f *fnode) response {
	if err := f.only("", "cancel_at_period_end", "metadata", "proration_behavior", "proration_date", "items", "cancellation_details", "expand"); err != nil {
		return paramResp(err)
	}
	cape, hasCAPE, err := f.boolean("", "cancel_at_period_end")
	if err != nil {
		return paramResp(err)
	}
	proration, hasProration, resp, parsedProration := prorationBehavior(f)
	if !parsedProration {
		return resp
	}
	// https://docs.stripe.com/api/subscriptions/update#update_subscription-proration_date: "If set,
	// the proration will be calculated as though the subscription was updated at the given time.
	// This can be used to apply exactly the same proration that was previewed with upcoming invoice
	// endpoint."
	prorationDate, hasProrationDate, err := f.integer("", "proration_date")
	if err != nil {
		return paramResp(err)
	}
	changes, resp, parsed := parseItemChanges(f, "items")
	if !parsed {
		return resp
	}
	cd := f.child("cancellation_details")
	if cd != nil {
		if err := cd.only("cancellation_details", "comment", "feedback"); err != nil {
			return paramResp(err)
		}
	}

	sub := s.subs[id]
	if sub == nil {
		return missing("subscription", id)
	}
	// https://docs.stripe.com/api/subscriptions/update: Stripe refuses updates of a canceled
	// subscription other than its cancellation_details and metadata, with the message below. The
	// reference does not print the message; it is quoted from Stripe's answers as reported in
	// BasedHardware/omi#11289 (2026). In 2024 (stripe-ruby 10, API 2023-10-16) Stripe answered
	// "A canceled subscription can only update its cancellation_details." (fjordllc/bootcamp#7748),
	// so metadata updates of canceled subscriptions may have been refused then; the double follows
	// the current wording and allows metadata. incomplete_expired is terminal as well
	// (https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses); the double
	// refuses it alike (Stripe's wording for it is not documented).
	if ended(sub.status) && (hasCAPE || len(changes) > 0 || hasProration || hasProrationDate) {
		return endedRefusal(sub.status)
	}
	// https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses (and the status
	// field of https://docs.stripe.com/api/subscriptions/object): "A subscription in this status
	// [incomplete] can only have metadata and default_source updated." (wording of the refusal not
	// documented).
	if sub.status == "incomplete" && (hasCAPE || len(changes) > 0) {
		return refused("", "A subscription in status incomplete can only have metadata and default_source updated.")
	}
	at := s.unix()
	if hasProrationDate {
		// The proration date must lie in the current period, as for the preview
		// (https://docs.stripe.com/api/invoices/upcoming#upcoming_invoice-subscription_proration_date:
		// "The time given must be within the current subscription period"); wording not documented.
		if prorationDate < sub.periodStart || prorationDate >= sub.periodEnd {
			return refused("proration_date", "proration_date must be within the subscription's current period.")
		}
		at = prorationDate
	}

	newMeta, err := f.metadata("", "metadata", sub.metadata)
	if err != nil {
		return paramResp(err)
	}
	// Plan the items as they will be, then validate, then apply: a refused request changes nothing.
	plan, cleared, resp, planned := s.planItems(sub, changes)
	if !planned {
		return resp
	}

	before := normalize(s.renderSub(sub))
	var lines []invoiceLine
	if len(changes) > 0 {
		if proration != "none" {
			lines = s.prorations(sub, plan, at)
		}
		s.applyItems(sub, plan, cleared)
	}
	if hasCAPE {
		s.setCancelAtPeriodEnd(sub, cape)
	}
	sub.metadata = newMeta
	if cd != nil {
		if v, ok1, _ := cd.scalar("cancellation_details", "comment"); ok1 {
			sub.cancelComment = v
		}
		if v, ok1, _ := cd.scalar("cancellation_details", "feedback"); ok1 {
			sub.cancelFeedback = v
		}
	}
	after := normalize(s.renderSub(sub))
	s.emitUpdated("customer.subscription.updated", before, after)
	sub.pending = append(sub.pending, lines...)
	if proration == "always_invoice" && len(sub.pending) > 0 {
		s.invoicePending(sub)
	}
	return ok(s.renderSub(sub))
}

// setCancelAtPeriodEnd schedules (or withdraws) the cancellation at the period end:
// https://docs.stripe.com/billing/subscriptions/cancel#cancel-at-end-of-cycle; cancel_at is the
// period end, and canceled_at "If the subscription was canceled with cancel_at_period_end,
// canceled_at will reflect the time of the most recent update request, not the end of the
// subscription period when the subscription is automatically moved to a canceled state"
// (https://docs.stripe.com/api/subscriptions/object#subscription_object-canceled_at);
// cancellation_details.reason "cancellation_requested" (the customer or the merchant asked).
func (s *Server) setCancelAtPeriodEnd(sub *subscription, cancel bool) {
	if cancel == sub.cancelAtPeriodEnd {
		return
	}
	sub.cancelAtPeriodEnd = cancel
	if cancel {
		sub.cancelAt, sub.canceledAt, sub.cancelReason = sub.periodEnd, s.unix(), "cancellation_requested"
	} else {
		sub.cancelAt, sub.canceledAt, sub.cancelReason = 0, 0, ""
	}
}

// cancelSubscription: https://docs.stripe.com/api/subscriptions/cancel — "Cancels a customer's
// subscription immediately": status canceled, canceled_at and ended_at now; emits
// customer.subscription.deleted. An already canceled (or expired) subscription answers
// resource_missing "No such subscription" (Stripe's answer, stripe/stripe-go#1887: canceling again
// "is akin to being deleted already"). The Idempotency-Key of a DELETE has no effect
// (https://docs.stripe.com/api/idempotent_requests). With invoice_now, the final invoice
// (finalInvoice, invoices.go) is the subscription's latest_invoice in the answer.
func (s *Server) cancelSubscription(id string, f *fnode) response {
	if err := f.only("", "invoice_now", "prorate", "cancellation_details", "expand"); err != nil {
		return paramResp(err)
	}
	invoiceNow, _, err := f.boolean("", "invoice_now")
	if err != nil {
		return paramResp(err)
	}
	if _, _, err := f.boolean("", "prorate"); err != nil {
		return paramResp(err)
	}
	cd := f.child("cancellation_details")
	if cd != nil {
		if err := cd.only("cancellation_details", "comment", "feedback"); err != nil {
			return paramResp(err)
		}
	}
	sub := s.subs[id]
	if sub == nil || ended(sub.status) {
		return missing("subscription", id)
	}
	if cd != nil {
		sub.cancelComment, _, _ = cd.scalar("cancellation_details", "comment")
		sub.cancelFeedback, _, _ = cd.scalar("cancellation_details", "feedback")
	}
	trialing := sub.status == "trialing"
	s.endSubscription(sub, s.unix(), s.unix(), "cancellation_requested")
	if invoiceNow {
		s.finalInvoice(sub, trialing)
	}
	return ok(s.renderSub(sub))
}

// ---- usage records: https://docs.stripe.com/api/usage_records/create ----

// createUsageRecord records usage of a metered item. "The timestamp for the usage event. This
// timestamp must be within the current billing period of the subscription of the provided
// subscription_item, and must not be in the future." action: "increment (default) or set. When
// using increment the specified quantity will be added to the usage at the specified timestamp.
// The set action will overwrite the usage quantity at that timestamp." No event.
func (s *Server) createUsageRecord(itemID string, f *fnode) response {
	if err := f.only("", "quantity", "timestamp", "action", "expand"); err != nil {
		return paramResp(err)
	}
	qty, hasQty, err := f.integer("", "quantity")
	if err != nil {
		return paramResp(err)
	}
	if !hasQty {
		return invalid("quantity", "Missing required param: quantity.")
	}
	if qty < 0 {
		return invalid("quantity", "Invalid non-negative integer")
	}
	action, _, err := f.scalar("", "action")
	if err != nil {
		return paramResp(err)
	}
	switch action {
	case "":
		action = "increment"
	case "increment", "set":
	default:
		return invalid("action", "Invalid action: must be one of increment or set")
	}
	ts := s.unix()
	if v, ok1, err := f.scalar("", "timestamp"); err != nil {
		return paramResp(err)
	} else if ok1 && v != "now" {
		if ts, err = strconv.ParseInt(v, 10, 64); err != nil {
			return invalid("timestamp", "Invalid timestamp: must be an integer Unix timestamp or now")
		}
	}
	sub, it := s.subItem(itemID)
	if it == nil {
		return missing("subscription_item", itemID)
	}
	if !s.prices[it.price].metered() {
		// https://docs.stripe.com/billing/subscriptions/usage-based-legacy: usage records are for
		// metered prices (recurring.usage_type=metered). Wording not documented.
		return refused("", fmt.Sprintf("Usage records can only be created for subscription items with metered prices; %s is licensed.", itemID))
	}
	if ended(sub.status) {
		return refused("", "Usage records cannot be created for a subscription that has ended.")
	}
	if ts > s.unix() {
		return refused("timestamp", "Cannot create the usage record with this timestamp because timestamps must not be in the future.")
	}
	if ts < sub.periodStart || ts >= sub.periodEnd {
		return refused("timestamp", "Cannot create the usage record with this timestamp because timestamps must be after the subscription's last invoice period (or current period start time).")
	}
	u := UsageRecord{ID: s.newID("mbur_"), SubscriptionItem: itemID, Quantity: qty, Timestamp: ts, Action: action, Created: s.unix()}
	s.usage[itemID] = append(s.usage[itemID], u)
	return response{status: http.StatusOK, body: renderUsage(u), saved: true}
}
