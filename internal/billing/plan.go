package billing

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tenantkit/tenantkit"
)

// Changing a subscription's plan, and previewing what it costs.
//
// The whole subscription follows the plan: the licensed item moves to the plan's price and keeps
// its quantity; a metered api_calls item of another plan is removed (with its usage cleared: Stripe
// refuses to delete a metered item that has usage otherwise), and the plan's own metered price is
// added when it has one. The period's api_calls are then reported to the new item by `tenantkit
// usage report`, which sets the whole period's total since the period started: the period's calls
// are billed at the per-call price of the plan the subscription is on when the period closes, like
// the licensed price (none when that plan bills no calls).
//
// Proration: the change applies at once with proration_behavior=always_invoice. The unused time
// on the old plan is credited and the remaining time on the new one charged, to the second, and
// the difference (with any proration still pending from earlier changes) is invoiced and charged
// immediately: an upgrade is paid now; a downgrade's negative total becomes credit on the
// customer's balance, which Stripe applies to the next invoices (it is not refunded). A trialing
// subscription is not charged for its trial, so nothing is prorated then.
//
// The tenant's plan in the database is not written here: it follows the price Stripe bills, when
// Stripe's customer.subscription.updated webhook is applied (state.go, resolvePlan), as for a
// change made in the billing portal. One rule, one home: an answer and a webhook racing each other
// can never leave the database on a plan Stripe does not bill.

// The proration behaviours billing sends (https://docs.stripe.com/api/subscriptions/update#update_subscription-proration_behavior).
const (
	// applyProration invoices a plan change's prorations at once.
	applyProration = "always_invoice"
	// previewProration is the documented form of a preview: the next invoice, with the change's
	// proration lines in it (Stripe recommends picking them out by period start).
	previewProration = "create_prorations"
)

// PreviewExpired is the error code of a proration date (from previewPlanChange) that no longer lies
// in the subscription's current period: the preview is out of date.
const PreviewExpired = "preview_expired"

// Item is one item of a Stripe subscription.
type Item struct {
	ID, PriceID string
	Quantity    int64 // licensed items (metered items have none)
	Metered     bool
	Interval    string // the price's billing interval: day, week, month, year
}

// ItemChange is one change of a subscription's items: ID alone with Delete removes an item
// (ClearUsage: with its usage); ID and PriceID swap an item's price (Quantity > 0 sets its
// quantity, which Stripe otherwise resets to 1); PriceID alone adds an item.
type ItemChange struct {
	ID, PriceID string
	Quantity    int64
	Delete      bool
	ClearUsage  bool
}

// ItemsUpdate is a change of a subscription's items as Stripe is asked to make (or preview) it.
type ItemsUpdate struct {
	SubscriptionID string
	Items          []ItemChange
	// ProrationBehavior: always_invoice, create_prorations or none.
	ProrationBehavior string
	// ProrationDate, when set, prorates as though the change happened then (to apply a preview).
	ProrationDate time.Time
	// PlanID is recorded as metadata.plan_id (a hint; the price decides).
	PlanID string
	// Intent makes the request's idempotency key (Store.RecordIntent); unused by a preview.
	Intent string
}

// InvoicePreview is Stripe's preview of a subscription's next invoice after an ItemsUpdate.
type InvoicePreview struct {
	Currency string
	Total    int64
	// StartingBalance is the customer's balance the invoice would start from (negative: credit).
	StartingBalance int64
	// ProrationDate is the time Stripe prorated at (subscription_proration_date).
	ProrationDate time.Time
	Lines         []InvoiceLine
}

// InvoiceLine is one line of an invoice preview.
type InvoiceLine struct {
	Amount      int64
	Proration   bool
	PeriodStart time.Time
}

// PlanChangePreview is what a plan change costs, computed by Stripe at ProrationDate.
type PlanChangePreview struct {
	PlanID   string
	Currency string
	// ProrationDate is the time the preview prorated at; changePlan with this date applies exactly
	// these prorations.
	ProrationDate time.Time
	// Proration is the change's prorated total with any proration still pending (negative: credit).
	Proration int64
	// AmountDueNow is charged at once (always_invoice), after the customer's credit balance.
	AmountDueNow int64
	// AmountDueAtRenewal is the invoice at RenewsAt, less any credit the change leaves; metered
	// usage is billed on top as it is reported.
	AmountDueAtRenewal int64
	RenewsAt           time.Time
}

// SubscriptionView is a subscription as Stripe bills it right after a change, with the plan of
// its licensed price ("" when no plan of tenantkit's is linked to that price).
type SubscriptionView struct {
	Subscription
	Plan string
}

// planItems is the change that moves sub to plan: the licensed (first non-metered) item to the
// plan's price at its current quantity; every metered item billed at another plan's api_calls price
// (planOfPrice) removed with its usage; the plan's metered price added unless present. Metered items
// no plan knows (added in the Dashboard) are left alone. Errors: invalid.
func planItems(sub Subscription, plan PlanPrice, planOfPrice map[string]string) ([]ItemChange, error) {
	var changes []ItemChange
	var licensed *Item
	hasMetered := false
	for i := range sub.Items {
		it := &sub.Items[i]
		switch {
		case !it.Metered && licensed == nil:
			licensed = it
		case it.Metered && plan.APICallsPriceID != "" && it.PriceID == plan.APICallsPriceID:
			hasMetered = true
		case it.Metered && planOfPrice[it.PriceID] != "":
			changes = append(changes, ItemChange{ID: it.ID, Delete: true, ClearUsage: true})
		}
	}
	if licensed == nil {
		return nil, tenantkit.Errorf(tenantkit.Invalid, "the subscription has no plan item to change (open the billing portal)")
	}
	if licensed.Interval != "" && licensed.Interval != plan.Interval {
		return nil, tenantkit.Errorf(tenantkit.Invalid,
			"plan %s is billed per %s and the subscription per %s: change the billing interval in the billing portal", plan.Key, plan.Interval, licensed.Interval)
	}
	swap := ItemChange{ID: licensed.ID, PriceID: plan.PriceID, Quantity: max(licensed.Quantity, 1)}
	changes = append([]ItemChange{swap}, changes...)
	if plan.APICallsPriceID != "" && !hasMetered {
		changes = append(changes, ItemChange{PriceID: plan.APICallsPriceID})
	}
	return changes, nil
}

// planChange is a validated plan change about to be asked of Stripe.
type planChange struct {
	subscriptionID string
	plan           PlanPrice
	current        Subscription
	items          []ItemChange
}

// preparePlanChange checks the caller, the plan and the subscription, reads the subscription's
// current items from Stripe and plans the change. Errors: unauthenticated, invalid, not_found,
// forbidden, conflict (the subscription ended), billing_unavailable.
func (s *Service) preparePlanChange(ctx context.Context, sess tenantkit.Session, tenantID, planID string) (planChange, error) {
	if uuid.Validate(planID) != nil {
		return planChange{}, tenantkit.Errorf(tenantkit.Invalid, "planId must be a UUID")
	}
	id, err := s.subscriptionOf(ctx, sess, tenantID)
	if err != nil {
		return planChange{}, err
	}
	plan, err := s.Store.PlanPrice(ctx, planID)
	if err != nil {
		return planChange{}, err
	}
	if plan.UnitAmount == 0 {
		return planChange{}, tenantkit.Errorf(tenantkit.Invalid, "plan %s is free: cancel the subscription instead", plan.Key)
	}
	if plan.PriceID == "" {
		return planChange{}, tenantkit.Errorf(tenantkit.Invalid, "plan %s is not linked to Stripe yet (run tenantkit plans sync)", plan.Key)
	}
	cur, err := s.Stripe.GetSubscription(ctx, id)
	if err != nil {
		return planChange{}, unavailable(err)
	}
	if err := refusedFor(cur); err != nil {
		return planChange{}, err
	}
	planOf, err := s.planOfItems(ctx, cur)
	if err != nil {
		return planChange{}, err
	}
	items, err := planItems(cur, plan, planOf)
	if err != nil {
		return planChange{}, err
	}
	return planChange{subscriptionID: id, plan: plan, current: cur, items: items}, nil
}

// maxPlanAttempts bounds how often a plan change is planned again because the subscription's
// items changed between reading them and asking Stripe (a concurrent change).
const maxPlanAttempts = 5

// planOfItems returns the plans of the subscription's prices (Store.PlansOfPrices).
func (s *Service) planOfItems(ctx context.Context, sub Subscription) (map[string]string, error) {
	prices := make([]string, 0, len(sub.Items))
	for _, it := range sub.Items {
		prices = append(prices, it.PriceID)
	}
	return s.Store.PlansOfPrices(ctx, prices)
}

// changedMeanwhile reports whether Stripe refused the change because the subscription's items
// changed since they were read: an item named is gone (conflict), or Stripe refused the request
// (invalid: e.g. a concurrent change already added the metered price this one adds) and the items
// are no longer those the change was planned from. The subscription it read, if any, is returned
// for explainRefusal.
func (s *Service) changedMeanwhile(ctx context.Context, pc planChange, err error) (bool, *Subscription) {
	switch tenantkit.ErrorCode(err) {
	case tenantkit.Conflict:
		return true, nil
	case tenantkit.Invalid:
		now, gerr := s.Stripe.GetSubscription(ctx, pc.subscriptionID)
		if gerr != nil {
			return false, nil
		}
		return !slices.Equal(now.Items, pc.current.Items), &now
	}
	return false, nil
}

// billedAs reports whether sub's items are exactly what plan needs: nothing left to change.
func billedAs(sub Subscription, plan PlanPrice, planOf map[string]string) bool {
	changes, err := planItems(sub, plan, planOf)
	return err == nil && len(changes) == 1 && sub.PriceID == plan.PriceID && sub.Quantity == changes[0].Quantity
}

// ChangePlan moves the tenant's subscription to another plan (see the top of this file): at
// prorationDate when given (from PreviewPlanChange, so that exactly what was previewed is applied),
// else now. The answer is Stripe's state right after the change; the tenant's plan and limits
// follow Stripe's webhook. Errors: unauthenticated, invalid (also when Stripe refuses the change),
// not_found, forbidden, conflict (the subscription ended), preview_expired (the proration date is
// outside the current period), billing_unavailable.
func (s *Service) ChangePlan(ctx context.Context, sess tenantkit.Session, tenantID, planID string, prorationDate *time.Time) (SubscriptionView, error) {
	var at time.Time
	if prorationDate != nil {
		if at = prorationDate.UTC(); at.Nanosecond() != 0 {
			return SubscriptionView{}, tenantkit.Errorf(tenantkit.Invalid, "prorationDate must be a whole second, as previewPlanChange answers it")
		}
	}
	for attempt := 1; ; attempt++ {
		pc, err := s.preparePlanChange(ctx, sess, tenantID, planID)
		if err != nil {
			return SubscriptionView{}, err
		}
		if !at.IsZero() && (at.Before(pc.current.CurrentPeriodStart) || !at.Before(pc.current.CurrentPeriodEnd)) {
			return SubscriptionView{}, tenantkit.Errorf(PreviewExpired,
				"the preview is out of date: its proration date is outside the subscription's current billing period (%s to %s); preview the change again",
				pc.current.CurrentPeriodStart.Format(time.RFC3339), pc.current.CurrentPeriodEnd.Format(time.RFC3339))
		}
		key, err := s.intentKey(ctx, pc.subscriptionID, "plan="+pc.plan.PriceID)
		if err != nil {
			return SubscriptionView{}, err
		}
		sub, err := s.Stripe.UpdateItems(ctx, ItemsUpdate{SubscriptionID: pc.subscriptionID, Items: pc.items,
			ProrationBehavior: applyProration, ProrationDate: at, PlanID: pc.plan.ID, Intent: key})
		var read *Subscription // Stripe's state after a refusal, when changedMeanwhile read it
		if err != nil && attempt < maxPlanAttempts {
			var changed bool
			if changed, read = s.changedMeanwhile(ctx, pc, err); changed {
				continue // the items changed meanwhile: plan again from Stripe's new state
			}
		}
		if err != nil {
			return SubscriptionView{}, s.explainRefusal(ctx, pc.subscriptionID, read, err)
		}
		// Another change planned from the same state may have run between our read and our write
		// (two plan changes at once each add their own metered item). Stripe's answer is its state
		// right after our write, our licensed price included: unless it is exactly the plan, plan
		// again from Stripe's state. So the last write to the subscription is always one whose
		// answer was the whole plan. (An answer without our licensed price is not a concurrent
		// change but a Stripe that does not apply item changes — stripe-mock: planning again
		// cannot help, and the answer is returned as it is.)
		planOf, err := s.planOfItems(ctx, sub)
		if err != nil {
			return SubscriptionView{}, err
		}
		if billedAs(sub, pc.plan, planOf) || sub.PriceID != pc.plan.PriceID {
			return SubscriptionView{Subscription: sub, Plan: planOf[sub.PriceID]}, nil
		}
		if attempt >= maxPlanAttempts {
			return SubscriptionView{}, tenantkit.Errorf(tenantkit.Conflict, "the subscription kept changing while its plan was being changed; try again")
		}
	}
}

// PreviewPlanChange tells what ChangePlan would cost now, as Stripe computes it: the proration
// date it used, the amount charged at once and the amount of the renewal invoice (see
// PlanChangePreview). Nothing changes. Errors: as ChangePlan, without preview_expired.
func (s *Service) PreviewPlanChange(ctx context.Context, sess tenantkit.Session, tenantID, planID string) (PlanChangePreview, error) {
	pc, err := s.preparePlanChange(ctx, sess, tenantID, planID)
	if err != nil {
		return PlanChangePreview{}, err
	}
	inv, err := s.Stripe.PreviewInvoice(ctx, ItemsUpdate{SubscriptionID: pc.subscriptionID, Items: pc.items,
		ProrationBehavior: previewProration, PlanID: pc.plan.ID})
	if err != nil {
		return PlanChangePreview{}, s.explainRefusal(ctx, pc.subscriptionID, nil, err)
	}
	return summarize(pc.plan.ID, pc.current, inv), nil
}

// summarize splits a preview of the next invoice (which holds the prorations, as with
// create_prorations) into what always_invoice charges now and what the renewal then bills: the
// proration lines are invoiced at once, the rest at the period's end; the customer's balance pays
// the immediate invoice first, and a credit left over (a downgrade) pays the renewal.
func summarize(planID string, cur Subscription, inv InvoicePreview) PlanChangePreview {
	var proration int64
	for _, l := range inv.Lines {
		if l.Proration {
			proration += l.Amount
		}
	}
	renewal := inv.Total - proration
	now := proration + inv.StartingBalance
	credit := min(now, 0)
	return PlanChangePreview{
		PlanID: planID, Currency: inv.Currency, ProrationDate: inv.ProrationDate, Proration: proration,
		AmountDueNow: max(now, 0), AmountDueAtRenewal: max(renewal+credit, 0), RenewsAt: cur.CurrentPeriodEnd,
	}
}

// refusedFor is the error for a change of a subscription Stripe will refuse in its state: ended,
// or incomplete (its first payment not made). nil otherwise.
func refusedFor(sub Subscription) error {
	switch {
	case ended(sub.Status):
		return tenantkit.Errorf(tenantkit.Conflict, "the subscription has ended; start a new checkout")
	case sub.Status == "incomplete":
		return tenantkit.Errorf(tenantkit.Conflict,
			"the subscription's first payment is incomplete: complete it in the billing portal, or start a new checkout once it expires")
	}
	return nil
}

// explainRefusal turns Stripe refusing a change (invalid) into what the caller can do: when the
// subscription has ended or is incomplete at Stripe (its webhook not applied yet), the same answer
// as when the stored state says so; otherwise the refusal as it is. Other errors pass through.
// read is the subscription as Stripe answered it after the refusal, when already read (else nil:
// it is read here).
func (s *Service) explainRefusal(ctx context.Context, subscriptionID string, read *Subscription, err error) error {
	if tenantkit.ErrorCode(err) != tenantkit.Invalid {
		return unavailable(err)
	}
	if read == nil {
		sub, gerr := s.Stripe.GetSubscription(ctx, subscriptionID)
		if gerr != nil {
			return err
		}
		read = &sub
	}
	if r := refusedFor(*read); r != nil {
		return r
	}
	return err
}

// view adds the plan of the subscription's licensed price.
func (s *Service) view(ctx context.Context, sub Subscription) (SubscriptionView, error) {
	planOf, err := s.Store.PlansOfPrices(ctx, []string{sub.PriceID})
	if err != nil {
		return SubscriptionView{}, err
	}
	return SubscriptionView{Subscription: sub, Plan: planOf[sub.PriceID]}, nil
}
