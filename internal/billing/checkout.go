package billing

import (
	"context"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/tenantkit/tenantkit"
)

// BillingUnavailable is the action error code when Stripe cannot be reached or billing is off.
const BillingUnavailable = "billing_unavailable"

// PlanPrice is a plan's price as Stripe needs it, with the Stripe ids it is linked to.
type PlanPrice struct {
	ID, Key, Name      string
	UnitAmount         int64
	Currency, Interval string
	ProductID, PriceID string // "" until plans sync links them
	// APICallsUnitAmount prices one API call (smallest unit, may be fractional); "" when api_calls
	// are not billed. APICallsPriceID is its Stripe metered price.
	APICallsUnitAmount, APICallsPriceID string
	PerSeat                             bool // billed per member (seats.go)
}

// Checkout is what a checkout session is made of.
type Checkout struct {
	TenantID, PlanID, CustomerID, PriceID string
	// Quantity is the licensed item's quantity: the tenant's members on a per-seat plan, else 1.
	Quantity              int64
	MeteredPriceID        string // "" when the plan does not bill api_calls
	SuccessURL, CancelURL string
	At                    time.Time
	// AutomaticTax turns on Stripe Tax for the session and the subscription (Service.AutomaticTax).
	AutomaticTax bool
}

// unavailable turns a failure to reach Stripe into the billing code; other errors pass through.
func unavailable(err error) error {
	if tenantkit.ErrorCode(err) == tenantkit.Unavailable {
		return &tenantkit.Error{Code: BillingUnavailable, Message: "billing is unavailable, try again later", Err: err}
	}
	return err
}

// SyncPlans links every active plan to a Stripe product and price (found again by lookup key, or
// created), safe to run any number of times. It returns how many plans changed links.
// Errors: billing_unavailable, internal.
func (s *Service) SyncPlans(ctx context.Context) (changed int, err error) {
	if s.Stripe == nil {
		return 0, tenantkit.Errorf(BillingUnavailable, "STRIPE_SECRET_KEY is not set")
	}
	plans, err := s.Store.PlanPrices(ctx)
	if err != nil {
		return 0, err
	}
	for _, p := range plans {
		product, price, err := s.Stripe.EnsurePrice(ctx, p)
		if err != nil {
			return changed, unavailable(err)
		}
		metered := ""
		if p.APICallsUnitAmount != "" {
			p.ProductID = product
			if metered, err = s.Stripe.EnsureMeteredPrice(ctx, p); err != nil {
				return changed, unavailable(err)
			}
		}
		if product != p.ProductID || price != p.PriceID || metered != p.APICallsPriceID {
			if err := s.Store.LinkPlan(ctx, p.ID, product, price, metered); err != nil {
				return changed, err
			}
			changed++
		}
	}
	return changed, nil
}

// authorize requires billing:manage (admins and owners) in the tenant; a non-member gets not_found.
func (s *Service) authorize(ctx context.Context, sess tenantkit.Session, tenantID string) error {
	if uuid.Validate(sess.UserID()) != nil {
		return tenantkit.Errorf(tenantkit.Unauthenticated, "sign in first")
	}
	ok, role, err := s.Authorize(ctx, sess, tenantID, "billing:manage")
	switch {
	case err != nil:
		return err
	case role == "":
		return tenantkit.Errorf(tenantkit.NotFound, "tenant not found")
	case !ok:
		return tenantkit.Errorf(tenantkit.Forbidden, "managing billing needs billing:manage (admins and owners)")
	}
	return nil
}

// CreateCheckout returns the URL of a Stripe Checkout page subscribing the tenant to the plan. The
// page accepts promotion codes, and computes tax with Stripe Tax when AutomaticTax is set.
// A tenant whose current subscription has not ended (see liveSubscription) gets conflict: a second
// checkout would start a second subscription billed alongside the first.
// Errors: unauthenticated, invalid, not_found, forbidden, conflict, billing_unavailable.
func (s *Service) CreateCheckout(ctx context.Context, sess tenantkit.Session, tenantID, planID string) (string, error) {
	if uuid.Validate(planID) != nil {
		return "", tenantkit.Errorf(tenantkit.Invalid, "planId must be a UUID")
	}
	if err := s.authorize(ctx, sess, tenantID); err != nil {
		return "", err
	}
	if s.Stripe == nil {
		return "", tenantkit.Errorf(BillingUnavailable, "billing is not configured")
	}
	plan, err := s.Store.PlanPrice(ctx, planID)
	if err != nil {
		return "", err
	}
	if plan.UnitAmount == 0 {
		return "", tenantkit.Errorf(tenantkit.Invalid, "plan %s is free: it needs no checkout", plan.Key)
	}
	if plan.PriceID == "" {
		return "", tenantkit.Errorf(tenantkit.Invalid, "plan %s is not linked to Stripe yet (run tenantkit plans sync)", plan.Key)
	}
	if err := s.liveSubscription(ctx, tenantID); err != nil {
		return "", err
	}
	quantity, err := s.checkoutSeats(ctx, tenantID, plan)
	if err != nil {
		return "", err
	}
	customer, err := s.EnsureCustomer(ctx, tenantID)
	if err != nil {
		return "", unavailable(err)
	}
	url, err := s.Stripe.CreateCheckoutSession(ctx, Checkout{
		TenantID: tenantID, PlanID: planID, CustomerID: customer, PriceID: plan.PriceID, Quantity: quantity,
		MeteredPriceID: plan.APICallsPriceID,
		SuccessURL:     s.AppURL + "/billing/success?session_id={CHECKOUT_SESSION_ID}",
		CancelURL:      s.AppURL + "/billing/cancel", At: s.now(), AutomaticTax: s.AutomaticTax,
	})
	return url, unavailable(err)
}

// checkoutSeats is the licensed quantity a checkout opens at: on a per-seat plan, as many seats as
// the tenant has members now (SeatTarget's rule), so that the first invoice already bills them and
// no seat sync has to correct it; otherwise 1.
func (s *Service) checkoutSeats(ctx context.Context, tenantID string, plan PlanPrice) (int64, error) {
	if !plan.PerSeat {
		return 1, nil
	}
	n, err := s.Store.MemberCount(ctx, tenantID)
	return max(n, 1), err
}

// CreatePortal returns the URL of Stripe's billing portal for the tenant.
// Errors: unauthenticated, invalid, not_found, forbidden, billing_unavailable.
func (s *Service) CreatePortal(ctx context.Context, sess tenantkit.Session, tenantID string) (string, error) {
	if err := s.authorize(ctx, sess, tenantID); err != nil {
		return "", err
	}
	if s.Stripe == nil {
		return "", tenantkit.Errorf(BillingUnavailable, "billing is not configured")
	}
	customer, err := s.EnsureCustomer(ctx, tenantID)
	if err != nil {
		return "", unavailable(err)
	}
	url, err := s.Stripe.CreatePortalSession(ctx, customer, s.AppURL+"/billing")
	return url, unavailable(err)
}

// liveSubscription refuses (conflict) when the tenant's current subscription has not ended.
// Every status but canceled and incomplete_expired counts as live: trialing, active and past_due
// bill or will bill; unpaid, paused and incomplete are still the customer's subscription and
// become billing again when paid or resumed, so a second one would bill twice. The stored status
// can lag behind Stripe (its webhook not yet applied), so a stored live status is confirmed by
// reading the subscription from Stripe: one that ended meanwhile does not block a new checkout.
func (s *Service) liveSubscription(ctx context.Context, tenantID string) error {
	id, status, err := s.Store.StripeSubscription(ctx, tenantID)
	if err != nil || id == "" || ended(status) {
		return err
	}
	sub, err := s.Stripe.GetSubscription(ctx, id)
	if err != nil {
		return unavailable(err)
	}
	if ended(sub.Status) {
		return nil
	}
	return tenantkit.Errorf(tenantkit.Conflict,
		"the tenant already has a subscription (status %s): change its plan or open the billing portal", sub.Status)
}

// subscriptionOf returns the tenant's Stripe subscription after the billing:manage check. A
// subscription that ended, as stored, gets conflict: Stripe refuses any change to it.
func (s *Service) subscriptionOf(ctx context.Context, sess tenantkit.Session, tenantID string) (string, error) {
	if err := s.authorize(ctx, sess, tenantID); err != nil {
		return "", err
	}
	if s.Stripe == nil {
		return "", tenantkit.Errorf(BillingUnavailable, "billing is not configured")
	}
	id, status, err := s.Store.StripeSubscription(ctx, tenantID)
	switch {
	case err != nil:
		return "", err
	case id == "":
		return "", tenantkit.Errorf(tenantkit.Invalid, "the tenant has no paid subscription yet (start a checkout)")
	case ended(status):
		return "", tenantkit.Errorf(tenantkit.Conflict, "the subscription has ended; start a new checkout")
	}
	return id, nil
}

// intentKey records a change about to be requested from Stripe and returns what makes its
// idempotency key unique. The key cannot be derived from the subscription's state: cancel, resume,
// cancel before any webhook arrives would send the first request's key again, and Stripe would
// replay its answer without cancelling. A recorded intent is never reused, while stripe-go's
// retries of the one request resend its key.
func (s *Service) intentKey(ctx context.Context, subscriptionID, intent string) (string, error) {
	seq, err := s.Store.RecordIntent(ctx, subscriptionID, intent)
	return strconv.FormatInt(seq, 10), err
}

// SetCancelAtPeriodEnd cancels the tenant's subscription at the end of its period (cancel) or
// withdraws that (resume). The answer is Stripe's state right after the change; the stored state
// follows through the webhook Stripe sends. Errors: unauthenticated, invalid (also when Stripe
// refuses the change), not_found, forbidden, conflict (the subscription ended, or its first payment
// is incomplete), billing_unavailable.
func (s *Service) SetCancelAtPeriodEnd(ctx context.Context, sess tenantkit.Session, tenantID string, cancel bool) (SubscriptionView, error) {
	id, err := s.subscriptionOf(ctx, sess, tenantID)
	if err != nil {
		return SubscriptionView{}, err
	}
	key, err := s.intentKey(ctx, id, "cancel_at_period_end="+strconv.FormatBool(cancel))
	if err != nil {
		return SubscriptionView{}, err
	}
	sub, err := s.Stripe.SetCancelAtPeriodEnd(ctx, id, cancel, key)
	if err != nil {
		return SubscriptionView{}, s.explainRefusal(ctx, id, nil, err)
	}
	return s.view(ctx, sub)
}
