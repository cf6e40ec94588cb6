package billing

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
)

// Subscription is a Stripe subscription as billing stores it.
type Subscription struct {
	ID          string
	CustomerID  string
	PlanID      string // metadata.plan_id: a hint, used only when the price maps to no plan
	Status      string // Stripe's status, verbatim
	PriceID     string // the licensed (plan) price
	Quantity    int64  // the licensed item's quantity
	UsageItemID string // the metered item, if any
	// The licensed item's price terms as Stripe bills them: UnitAmount per unit in the currency's
	// smallest unit (nil when the price has no single unit amount, e.g. a tiered price), billed
	// every IntervalCount Intervals (day, week, month, year).
	UnitAmount         *float64
	Currency           string
	Interval           string
	IntervalCount      int64
	Items              []Item // every item, in Stripe's order
	Created            time.Time
	CurrentPeriodStart time.Time
	CurrentPeriodEnd   time.Time
	TrialEnd           *time.Time
	CancelAtPeriodEnd  bool
	CancelAt           *time.Time
	CanceledAt         *time.Time
	EndedAt            *time.Time
}

// StripeEvent is a verified Stripe webhook event, reduced to what billing applies.
type StripeEvent struct {
	ID      string
	Type    string
	Created time.Time // one-second resolution
	// Subscription is set for customer.subscription.* events.
	Subscription *Subscription
	// Checkout is set for checkout.session.completed.
	Checkout *CheckoutSession
	// Invoice is set for invoice.* events.
	Invoice *Invoice
	// Snapshot is set, instead of the above, when reconciliation applies Stripe's current state of
	// a subscription it listed (Type ReconcileEventType; see decideSnapshot).
	Snapshot *Subscription

	// Set by Service.ApplyStripeEvent, not by the decoder: whether Stripe can be asked, and the
	// state it answered (Fetched) over which version of the account (FetchedOver).
	CanFetch    bool
	Fetched     *Subscription
	FetchedOver string
}

// maxFetches bounds how often one event may send billing back to Stripe for a fresher state
// (each time because another event changed the subscription in between).
const maxFetches = 3

// ApplyStripeEvent applies a verified webhook event once, in any order: a repeated event changes
// nothing, a stale one is recorded and ignored, and on a same-second tie (or when an invoice leaves
// the subscription's status in doubt) the subscription is fetched from Stripe, outside any
// transaction, and the event decided again over the fetched state. Unknown event types are
// recorded and ignored. It returns the outcome (Applied, Stale, NotCurrent, NotOurs, Ignored or
// Duplicate). Errors: unavailable (retry), internal.
func (s *Service) ApplyStripeEvent(ctx context.Context, ev StripeEvent) (string, error) {
	d, err := s.applyStripeEvent(ctx, ev)
	return d.Outcome, err
}

// applyStripeEvent is ApplyStripeEvent, returning the whole decision (the tenant it was about is
// d.Account.TenantID; empty for duplicates and events of no tenant).
func (s *Service) applyStripeEvent(ctx context.Context, ev StripeEvent) (Decision, error) {
	ev.CanFetch = s.Stripe != nil
	log := zerolog.Ctx(ctx)
	for range maxFetches + 1 {
		d, err := s.Store.ApplyStripeEvent(ctx, ev, func(a Account, cat Catalog) Decision { return Decide(a, cat, ev) })
		if err != nil {
			return Decision{}, err
		}
		if d.NeedFetch == "" {
			if d.UnknownPrice != "" {
				s.count("stripe_unknown_price")
				log.Warn().Str("price", d.UnknownPrice).Str("tenant", d.Account.TenantID).
					Msg("Stripe subscription billed at a price no plan is linked to: plan left unchanged (run tenantkit plans sync, or link the price)")
			}
			s.count("stripe_event_" + d.Outcome)
			return d, nil
		}
		if s.Stripe == nil {
			return Decision{}, tenantkit.Errorf(tenantkit.Unavailable, "cannot settle a Stripe event without Stripe (STRIPE_SECRET_KEY)")
		}
		sub, err := s.Stripe.GetSubscription(ctx, d.NeedFetch) // outside any transaction
		if err != nil {
			return Decision{}, err
		}
		ev.Fetched, ev.FetchedOver = &sub, d.Account.Version(d.NeedFetch)
	}
	return Decision{}, tenantkit.Errorf(tenantkit.Unavailable, "the subscription kept changing while its event was applied; retry")
}

// count adds one to a named counter on /metrics, when the service has one.
func (s *Service) count(name string) {
	if s.Count != nil {
		s.Count(name)
	}
}
