package billing

import (
	"context"
	"errors"
	"time"

	"github.com/tenantkit/tenantkit"
)

// Subscription is a Stripe subscription as billing stores it.
type Subscription struct {
	ID                 string
	CustomerID         string
	TenantID           string // metadata.tenant_id (set by our checkout); may be empty
	PlanID             string // metadata.plan_id; may be empty
	Status             string // Stripe's status, verbatim
	PriceID            string // the licensed (plan) price
	UsageItemID        string // the metered item, if any
	CurrentPeriodStart time.Time
	CurrentPeriodEnd   time.Time
	TrialEnd           *time.Time
	CancelAtPeriodEnd  bool
	CancelAt           *time.Time
	CanceledAt         *time.Time
}

// StripeEvent is a verified Stripe webhook event, reduced to what billing applies.
type StripeEvent struct {
	ID      string
	Type    string
	Created time.Time // one-second resolution
	// Subscription is set for customer.subscription.* events.
	Subscription *Subscription
	// Checkout is set for checkout.session.completed: the tenant (client_reference_id), customer and
	// subscription ids.
	Checkout *struct{ TenantID, CustomerID, SubscriptionID string }
	// InvoiceSubscriptionID is set for invoice.* events.
	InvoiceSubscriptionID string
}

// ErrTie is returned by Store.ApplyStripeEvent when the event has the same created second as the
// state already applied from another event: their order is unknown, so the subscription must be
// fetched from Stripe and applied instead.
var ErrTie = errors.New("stripe event ties with the applied state")

// ApplyStripeEvent applies a verified webhook event once, in any order: a repeated event changes
// nothing, a stale one (older than the subscription's watermark) is recorded and ignored, and on a
// tie at one-second resolution the subscription is fetched from Stripe. Unknown event types are
// recorded and ignored. Errors: unavailable (retry), internal.
func (s *Service) ApplyStripeEvent(ctx context.Context, ev StripeEvent) error {
	err := s.Store.ApplyStripeEvent(ctx, ev, false)
	if !errors.Is(err, ErrTie) {
		return err
	}
	id := ""
	switch {
	case ev.Subscription != nil:
		id = ev.Subscription.ID
	default:
		id = ev.InvoiceSubscriptionID
	}
	if s.Stripe == nil || id == "" {
		return tenantkit.Errorf(tenantkit.Unavailable, "cannot settle a same-second Stripe event without Stripe")
	}
	sub, err := s.Stripe.GetSubscription(ctx, id) // outside any transaction
	if err != nil {
		return err
	}
	fetched := ev
	fetched.Subscription = &sub
	fetched.Type = "customer.subscription.updated" // the fetched object is the current state
	return s.Store.ApplyStripeEvent(ctx, fetched, true)
}
