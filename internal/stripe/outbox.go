package stripe

import (
	"context"
	"errors"
	"net/http"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

var _ billing.OutboxStripe = (*Client)(nil)

// CancelNow implements billing.OutboxStripe: the subscription is canceled at once
// (https://docs.stripe.com/api/subscriptions/cancel) with invoice_now=true and prorate=false, the
// cancellation policy of docs/billing.md: a final invoice for the metered usage and pending
// prorations not yet invoiced, no credit for the unused rest of the period. Stripe ignores
// idempotency keys on DELETE requests (https://docs.stripe.com/api/idempotent_requests); the key
// is sent anyway, so that it shows in Stripe's request log. Errors as translateWrite.
func (c *Client) CancelNow(ctx context.Context, subscriptionID, key string) error {
	p := &stripego.SubscriptionCancelParams{InvoiceNow: stripego.Bool(true), Prorate: stripego.Bool(false)}
	p.Context = ctx
	p.SetIdempotencyKey(key)
	_, err := c.api.Subscriptions.Cancel(subscriptionID, p)
	return translateWrite(err)
}

// translateWrite maps the answer to a queued write for the outbox, which decides what it means:
// unavailable (unreachable, 429, 5xx: retry), not_found (resource_missing or 404: Stripe has no such
// object, which is how it answers a cancellation of an already canceled subscription), invalid
// (400 invalid_request_error: refused for the object's state), internal (any other refusal:
// authentication, permissions, an idempotency key reused with other parameters). Stripe's message
// stays in the wrapped error, for the log and the queue's last_error.
func translateWrite(err error) error {
	if err == nil {
		return nil
	}
	var se *stripego.Error
	switch {
	case !errors.As(err, &se) || se.HTTPStatusCode >= 500 || se.HTTPStatusCode == http.StatusTooManyRequests:
		return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "Stripe is unavailable", Err: err}
	case se.HTTPStatusCode == http.StatusNotFound || se.Code == stripego.ErrorCodeResourceMissing:
		return &tenantkit.Error{Code: tenantkit.NotFound, Message: "Stripe has no such object", Err: err}
	case se.HTTPStatusCode == http.StatusBadRequest && se.Type == stripego.ErrorTypeInvalidRequest:
		return &tenantkit.Error{Code: tenantkit.Invalid, Message: "Stripe refused the change", Err: err}
	}
	return &tenantkit.Error{Code: tenantkit.Internal, Message: "Stripe refused the request", Err: err}
}

// LicensedItem implements billing.OutboxStripe: the subscription as Stripe has it now
// (https://docs.stripe.com/api/subscriptions/retrieve), its first licensed item. Errors as
// translateWrite.
func (c *Client) LicensedItem(ctx context.Context, subscriptionID string) (billing.LicensedItem, error) {
	p := &stripego.SubscriptionParams{}
	p.Context = ctx
	s, err := c.api.Subscriptions.Get(subscriptionID, p)
	if err != nil {
		return billing.LicensedItem{}, translateWrite(err)
	}
	sub := subscription(s) // the one mapping of Stripe's items: the first licensed one is the plan's
	out := billing.LicensedItem{Status: sub.Status}
	for _, it := range sub.Items {
		if !it.Metered {
			out.ID, out.Quantity = it.ID, it.Quantity
			break
		}
	}
	return out, nil
}

// SetQuantity implements billing.OutboxStripe: the item's quantity is set
// (https://docs.stripe.com/api/subscription_items/update) with proration_behavior
// create_prorations, Stripe's default: the seats added or removed mid-period are prorated on the
// next invoice. Errors as translateWrite.
func (c *Client) SetQuantity(ctx context.Context, itemID string, quantity int64, key string) (int64, error) {
	p := &stripego.SubscriptionItemParams{Quantity: stripego.Int64(quantity), ProrationBehavior: stripego.String("create_prorations")}
	p.Context = ctx
	p.SetIdempotencyKey(key)
	it, err := c.api.SubscriptionItems.Update(itemID, p)
	if err != nil {
		return 0, translateWrite(err)
	}
	return it.Quantity, nil
}
