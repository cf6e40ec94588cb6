package stripefake

import (
	"net/http"
	"strings"
)

// ---- subscription items: https://docs.stripe.com/api/subscription_items ----

// updateSubscriptionItem: https://docs.stripe.com/api/subscription_items/update — "Updates the
// plan or quantity of an item on a current subscription." The double models quantity, metadata
// and proration_behavior (create_prorations by default, none, always_invoice); other parameters
// (price among them: change a price through POST /v1/subscriptions/{id}) are refused as unknown.
//
//   - quantity: "The quantity you'd like to apply to the subscription item you're creating";
//     a non-negative integer; refused for a metered price ("Quantity should not be specified where
//     usage_type is `metered`", as the subscription update refuses it).
//   - An item of a canceled or expired subscription cannot change (the subscription update's
//     refusal, https://docs.stripe.com/api/subscriptions/update), nor one of an incomplete
//     subscription ("A subscription in this status can only have metadata and default_source
//     updated", https://docs.stripe.com/billing/subscriptions/overview#subscription-statuses).
//   - A change emits customer.subscription.updated ("Occurs whenever a subscription changes",
//     https://docs.stripe.com/api/events/types) with the previous items in previous_attributes;
//     setting the quantity it already has changes nothing and emits nothing. With
//     proration_behavior=always_invoice a quantity change is invoiced and paid at once, as
//     updateSubscription does.
//
// The answer is the subscription item (https://docs.stripe.com/api/subscription_items/object).
func (s *Server) updateSubscriptionItem(itemID string, f *fnode) response {
	if err := f.only("", "quantity", "metadata", "proration_behavior", "expand"); err != nil {
		return paramResp(err)
	}
	qty, hasQty, err := f.integer("", "quantity")
	if err != nil {
		return paramResp(err)
	}
	if hasQty && qty < 0 {
		return invalid("quantity", "Invalid non-negative integer")
	}
	proration, hasProration, resp, parsedProration := prorationBehavior(f)
	if !parsedProration {
		return resp
	}

	sub, it := s.subItem(itemID)
	if it == nil {
		return missing("subscription_item", itemID)
	}
	if ended(sub.status) && (hasQty || hasProration) {
		return endedRefusal(sub.status)
	}
	if sub.status == "incomplete" && hasQty {
		return refused("", "A subscription in status incomplete can only have metadata and default_source updated.")
	}
	if hasQty && s.prices[it.price].metered() {
		return refused("quantity", "Quantity should not be specified where usage_type is `metered`.")
	}
	newMeta, err := f.metadata("", "metadata", it.metadata)
	if err != nil {
		return paramResp(err)
	}

	before := normalize(s.renderSub(sub))
	if hasQty {
		it.quantity = qty
	}
	it.metadata = newMeta
	changed := s.emitUpdated("customer.subscription.updated", before, normalize(s.renderSub(sub)))
	if hasQty && !changed && s.cur != nil {
		s.noopQuantity[s.cur.id] = true
	}
	if changed && hasQty && proration == "always_invoice" {
		in := s.newInvoice(sub, "subscription_update", &[2]int64{sub.periodStart, sub.periodEnd}, nil)
		s.openInvoice(in)
		s.payInvoice(in)
	}
	return ok(s.renderItem(sub, it))
}

// SetQuantityRequests counts the requests that set a subscription item's quantity (POST
// /v1/subscription_items/{id} with quantity) and ran, and among them those that changed nothing:
// the quantity sent was the one the item already had.
func (s *Server) SetQuantityRequests() (ran, unchanged int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.reqs {
		if r.Method == http.MethodPost && strings.HasPrefix(r.Path, "/v1/subscription_items/") &&
			strings.Count(r.Path, "/") == 3 && r.Executed && r.Form.Has("quantity") {
			ran++
			if s.noopQuantity[r.RequestID] {
				unchanged++
			}
		}
	}
	return ran, unchanged
}
