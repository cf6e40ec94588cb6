package stripefake

import "net/http"

// Checkout options beyond the line items: promotion codes and Stripe Tax.
// https://docs.stripe.com/api/checkout/sessions/create.

// parseCheckoutExtras reads allow_promotion_codes ("Enables user redeemable promotion codes"),
// automatic_tax[enabled] ("Settings for automatic tax lookup for [the Checkout Session] and resulting
// payments, invoices, and subscriptions" of the checkout; enabled required; liability not modelled) and
// customer_update[address|name|shipping] (auto or never: "Controls what fields on Customer can be
// updated by the Checkout Session. Can only be provided when customer is provided.").
func parseCheckoutExtras(f *fnode, cs *session) (response, bool) {
	var err error
	if cs.allowPromotionCodes, _, err = f.boolean("", "allow_promotion_codes"); err != nil {
		return paramResp(err), false
	}
	if at := f.child("automatic_tax"); at != nil {
		if err := at.only("automatic_tax", "enabled"); err != nil {
			return paramResp(err), false
		}
		enabled, has, err := at.boolean("automatic_tax", "enabled")
		if err != nil {
			return paramResp(err), false
		}
		if !has {
			return invalid("automatic_tax[enabled]", "Missing required param: automatic_tax[enabled]."), false
		}
		cs.automaticTax = enabled
	}
	if cu := f.child("customer_update"); cu != nil {
		if err := cu.only("customer_update", "address", "name", "shipping"); err != nil {
			return paramResp(err), false
		}
		for _, field := range []string{"address", "name", "shipping"} {
			v, has, err := cu.scalar("customer_update", field)
			if err != nil {
				return paramResp(err), false
			}
			if has && v != "auto" && v != "never" {
				return invalid("customer_update["+field+"]", "Invalid customer_update["+field+"]: must be one of auto or never"), false
			}
			if field == "address" {
				cs.updateAddress = v
			}
		}
		if cs.customer == "" {
			return invalid("customer_update", "customer_update can only be used with customer."), false
		}
	}
	return response{}, true
}

// checkTaxLocation refuses automatic tax for a customer Stripe Tax cannot locate: one without an
// address, unless Checkout may save the address entered (customer_update[address]=auto). Stripe's
// answer, quoted in raystack/frontier#565 and TryGhost/Ghost#20105: 400 invalid_request_error,
// code customer_tax_location_invalid.
func (s *Server) checkTaxLocation(cs *session) (response, bool) {
	if !cs.automaticTax || cs.customer == "" || s.customers[cs.customer].country != "" || cs.updateAddress == "auto" {
		return response{}, true
	}
	return errResp(http.StatusBadRequest, apiError{Type: "invalid_request_error", Code: "customer_tax_location_invalid",
		Message: "Automatic tax calculation in Checkout requires a valid address on the Customer. Add a valid address to the Customer or set either `customer_update[address]` to 'auto' or `customer_update[shipping]` to 'auto' to save the address entered in Checkout to the Customer."}, true), false
}

// completeTax saves the address the customer enters on the Checkout page when the session may
// (customer_update[address]=auto; the double's customer enters a US address), emitting
// customer.updated; automatic tax needs one.
func (s *Server) completeTax(cs *session) {
	c := s.customers[cs.customer]
	if c == nil || cs.updateAddress != "auto" || c.country != "" {
		return
	}
	before := normalize(c.render())
	c.country = "US"
	s.emitUpdated("customer.updated", before, normalize(c.render()))
}

func renderAddress(country string) any {
	if country == "" {
		return nil
	}
	return map[string]any{"city": nil, "country": country, "line1": nil, "line2": nil, "postal_code": nil, "state": nil}
}

func nullBool(b bool) any {
	if !b {
		return nil
	}
	return true
}

// renderSessionTax: https://docs.stripe.com/api/checkout/sessions/object#checkout_session_object-automatic_tax.
// The tax itself is not modelled: amounts carry no tax.
func renderSessionTax(cs *session) map[string]any {
	m := map[string]any{"enabled": cs.automaticTax, "liability": nil, "status": nil}
	if cs.automaticTax {
		m["liability"] = map[string]any{"type": "self"}
		if cs.status == "complete" {
			m["status"] = "complete"
		}
	}
	return m
}

// renderSubTax: https://docs.stripe.com/api/subscriptions/object#subscription_object-automatic_tax.
func renderSubTax(enabled bool) map[string]any {
	m := map[string]any{"enabled": enabled, "liability": nil}
	if enabled {
		m["liability"] = map[string]any{"type": "self"}
	}
	return m
}
