package billing

import (
	"cmp"
	"slices"
	"time"
)

// This file is billing's state machine: what a verified Stripe event does to a tenant's billing
// state. Decide is a pure function; the Store locks the tenant, loads its Account, saves what
// Decide returns and records the event id, all in one transaction (see Service.ApplyStripeEvent).
//
// The rules, in the order Decide applies them (docs/billing.md has them as a table):
//
//  1. Which tenant. The Store finds the tenant only through ids tenantkit created or recorded: the
//     subscription is one it already linked, or its customer is the one tenantkit created for the
//     tenant. metadata.tenant_id and client_reference_id are never used: anyone can type them (a
//     Payment Link accepts ?client_reference_id= from its URL). No tenant: "not_ours".
//  2. Order. Each subscription keeps the created second and id of the event whose state it holds
//     (its watermark). An older event is "stale"; a different event of the same second is a tie,
//     settled by fetching the subscription from Stripe (NeedFetch) and applying that, while still
//     performing the original event's effects. Invoice and checkout events carry no subscription
//     state and never move a watermark.
//  3. Which subscription is current. Every subscription of the tenant is kept; the current one is
//     the newest that entitles (trialing, active, past_due), else the newest that has not ended,
//     else the newest. An event about another subscription changes the tenant's row only when it
//     makes that subscription the current one ("not_current" otherwise).
//  4. The price is the truth. The plan is the one whose Stripe price the licensed item is billed
//     at; metadata.plan_id is only a hint for a price no plan knows; when neither names a plan, the
//     plan stays and Decision.UnknownPrice is set (logged and counted).
//  5. Invoices. invoice.payment_failed about the current, live subscription emails the owners once
//     per invoice attempt; about one that ended, or another, it does nothing. invoice.paid and
//     invoice.payment_failed fetch the subscription when its stored status may be out of date
//     (Stripe sends the status change as customer.subscription.updated too).
//  6. customer.subscription.trial_will_end emails the owners once per trial, while that
//     subscription is current and trialing (even when the event itself is stale).
//  7. A deleted tenant (deleteTenant) is never brought back by an event: the subscription's own
//     state is still recorded, but the tenant's row, plan and emails stay as they are, the outcome
//     is "tenant_deleted", and a subscription that has not ended (a checkout completed after the
//     deletion, say) is canceled through the Stripe outbox (deletion.go).
//  8. Seats. When the tenant's current, live subscription is on a per-seat plan and its quantity
//     is not the number of members, a seat sync is queued (seats.go); tenantkit's own quantity
//     change comes back with the right quantity and queues nothing.

// Statuses that grant the subscribed plan: Stripe still collects (past_due: while it retries).
func entitles(status string) bool {
	return status == "trialing" || status == "active" || status == "past_due"
}

// ended reports whether Stripe will never bill the subscription again.
func ended(status string) bool { return status == "canceled" || status == "incomplete_expired" }

// Known is a subscription the tenant has, as last applied, with its plan and watermark.
type Known struct {
	Subscription
	// PlanID is the plan resolved from the price (or the hint); "" when none was ever known.
	PlanID string
	// EventAt and EventID name the event whose state this is; zero when the state was fetched
	// without an event (a subscription first learnt of through an invoice or checkout).
	EventAt time.Time
	EventID string
}

// Account is a tenant's billing state, as the Store loads it under lock.
type Account struct {
	TenantID   string
	TenantName string
	CustomerID string     // the customer tenantkit created for the tenant ("" when none yet)
	Current    string     // the current subscription's id ("" when none)
	PlanID     string     // the tenant's subscribed (or trial) plan
	DeletedAt  *time.Time // set while the tenant is deleted (deleteTenant), until restored
	Members    int64      // the tenant's members (seats of a per-seat plan)
	// Subscriptions are every subscription of the tenant tenantkit knows, by id.
	Subscriptions map[string]Known
}

// Catalog maps Stripe prices to plans.
type Catalog struct {
	PlanOfPrice map[string]string // every price ever linked to a plan (licensed prices)
	Plans       map[string]bool   // the ids of every plan
	PerSeat     map[string]bool   // the ids of the per-seat plans
}

// CheckoutSession is a checkout.session.completed event's session.
type CheckoutSession struct {
	ID, CustomerID, SubscriptionID string
	ClientReferenceID              string // typed by whoever opened the checkout: never trusted
}

// Invoice is an invoice.* event's invoice.
type Invoice struct {
	ID, CustomerID, SubscriptionID string
	AttemptCount                   int64
}

// Outcome says what an event did.
const (
	Applied    = "applied"     // the tenant's state changed (or was confirmed)
	Stale      = "stale"       // older than the state already applied: recorded, ignored
	NotCurrent = "not_current" // about a subscription that is not the tenant's current one
	NotOurs    = "not_ours"    // no tenant of ours is identified by its ids
	Duplicate  = "duplicate"   // applied before (the same event id)
	Ignored    = "ignored"     // a type billing does not act on, or nothing to do
	// TenantDeleted: about a deleted tenant; only the subscription's own state was recorded.
	TenantDeleted = "tenant_deleted"
)

// EmailKind names a billing email.
type EmailKind string

// The billing emails; their wording is in email.go.
const (
	PaymentFailedEmail EmailKind = "payment_failed"
	TrialEndingEmail   EmailKind = "trial_ending"
)

// Email is an email to every owner of the tenant, queued at most once per DedupeKey.
type Email struct {
	Kind          EmailKind
	DedupeKey     string
	Subject, Text string
}

// Decision is what Decide concluded: the new state to save, and the effects.
type Decision struct {
	Outcome string
	// NeedFetch names a subscription whose current state must be fetched from Stripe (outside the
	// transaction) before the event can be decided; nothing is saved.
	NeedFetch string
	// Save is the subscription state to store (nil: none changed).
	Save *Known
	// Account is the tenant's new state (Current and PlanID); saved when Changed.
	Account Account
	Changed bool
	Emails  []Email
	// UnknownPrice is set when the subscription's price maps to no plan and no hint names one.
	UnknownPrice string
	// Writes are Stripe writes to queue in the transaction that saves the decision.
	Writes []StripeWrite
	// SyncSeats: the current subscription's quantity is not the number of members of its
	// per-seat plan; a seat sync is queued (seats.go).
	SyncSeats bool
}

// Decide applies a verified Stripe event to a tenant's billing state. It never reads the clock,
// the network or the database. ev.Fetched, when set, is the subscription's state fetched from
// Stripe after an earlier Decide asked for it (NeedFetch), at account version ev.FetchedOver.
func Decide(a Account, cat Catalog, ev StripeEvent) Decision {
	var d Decision
	switch {
	case ev.Subscription != nil:
		d = decideSubscription(a, cat, ev)
	case ev.Invoice != nil:
		d = decideInvoice(a, cat, ev)
	case ev.Checkout != nil:
		d = decideCheckout(a, cat, ev)
	case ev.Snapshot != nil:
		d = decideSnapshot(a, cat, ev)
	default:
		d = Decision{Outcome: Ignored, Account: a}
	}
	if a.DeletedAt != nil {
		return whileDeleted(a, d)
	}
	d.SyncSeats = seatsDrift(a, cat, d)
	return d
}

// Version names the state Decide saw for a subscription, so that a fetched state is applied only
// over the state it was fetched after: the watermark, and a digest of the state itself (a state
// fetched without an event changes the state but not the watermark).
func (a Account) Version(subscriptionID string) string {
	k, ok := a.Subscriptions[subscriptionID]
	if !ok {
		return "new"
	}
	return k.version()
}

func (k Known) version() string {
	return k.EventID + "@" + k.EventAt.UTC().Format(time.RFC3339) + "#" + k.Subscription.digest()
}

// fetched returns the fetched state of id when it was fetched over the account's present state.
func fetched(a Account, ev StripeEvent, id string) *Subscription {
	if ev.Fetched != nil && ev.Fetched.ID == id && ev.FetchedOver == a.Version(id) {
		return ev.Fetched
	}
	return nil
}

func decideSubscription(a Account, cat Catalog, ev StripeEvent) Decision {
	sub := *ev.Subscription
	if ev.Type == "customer.subscription.deleted" && !ended(sub.Status) {
		sub.Status = "canceled"
	}
	known, isKnown := a.Subscriptions[sub.ID]
	if !isKnown && (a.CustomerID == "" || sub.CustomerID != a.CustomerID) {
		return Decision{Outcome: NotOurs, Account: a}
	}
	if isKnown && !known.EventAt.IsZero() {
		switch {
		case ev.Created.Before(known.EventAt):
			d := Decision{Outcome: Stale, Account: a}
			// A stale state, but the warning still holds while the same trial runs.
			if ev.Type == "customer.subscription.trial_will_end" && a.Current == sub.ID && known.Status == "trialing" &&
				sameTime(known.TrialEnd, sub.TrialEnd) {
				d.Emails = append(d.Emails, trialEndingEmail(a.TenantName, sub.ID, unixOrZero(sub.TrialEnd)))
			}
			return d
		case ev.Created.Equal(known.EventAt) && ev.ID != known.EventID:
			// A tie at one-second resolution: which state is newer is unknown.
			f := fetched(a, ev, sub.ID)
			if f == nil {
				return Decision{NeedFetch: sub.ID, Account: a}
			}
			sub = *f
		}
	}
	next := Known{Subscription: sub, PlanID: known.PlanID, EventAt: ev.Created, EventID: ev.ID}
	d := Decision{Outcome: Applied, Save: &next}
	next.PlanID, d.UnknownPrice = resolvePlan(cat, sub, next.PlanID, a.PlanID)
	d.Account, d.Changed = project(a, next)
	if d.Account.Current != sub.ID {
		d.Outcome = NotCurrent
	}
	if ev.Type == "customer.subscription.trial_will_end" && d.Account.Current == sub.ID && sub.Status == "trialing" {
		d.Emails = append(d.Emails, trialEndingEmail(a.TenantName, sub.ID, unixOrZero(sub.TrialEnd)))
	}
	return d
}

func unixOrZero(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.Unix()
}

func sameTime(a, b *time.Time) bool { return (a == nil) == (b == nil) && (a == nil || a.Equal(*b)) }

// resolvePlan finds the plan of a subscription: its licensed price's plan, else the metadata hint
// when it names a plan, else the plan it had (else the tenant's).
func resolvePlan(cat Catalog, sub Subscription, had, tenant string) (plan, unknownPrice string) {
	if p, ok := cat.PlanOfPrice[sub.PriceID]; ok && sub.PriceID != "" {
		return p, ""
	}
	if cat.Plans[sub.PlanID] {
		return sub.PlanID, ""
	}
	if had == "" {
		had = tenant
	}
	return had, cmp.Or(sub.PriceID, "(no licensed price)")
}

// project stores next among the tenant's subscriptions and chooses the current one.
func project(a Account, next Known) (Account, bool) {
	subs := make(map[string]Known, len(a.Subscriptions)+1)
	for id, k := range a.Subscriptions {
		subs[id] = k
	}
	subs[next.ID] = next
	out := a
	out.Subscriptions = subs
	cur := Current(subs)
	out.Current = cur.ID
	if cur.PlanID != "" {
		out.PlanID = cur.PlanID
	}
	// The tenant's row shows the current subscription: it changes when another one becomes
	// current, or when the saved one is the current one.
	return out, out.Current != a.Current || out.PlanID != a.PlanID || out.Current == next.ID
}

// Current chooses the tenant's current subscription among those it has: the newest that entitles,
// else the newest that has not ended, else the newest (created second, then id).
func Current(subs map[string]Known) Known {
	rank := func(k Known) int {
		switch {
		case entitles(k.Status):
			return 2
		case !ended(k.Status):
			return 1
		}
		return 0
	}
	all := make([]Known, 0, len(subs))
	for _, k := range subs {
		all = append(all, k)
	}
	if len(all) == 0 {
		return Known{}
	}
	return slices.MaxFunc(all, func(x, y Known) int {
		return cmp.Or(cmp.Compare(rank(x), rank(y)), x.Created.Compare(y.Created), cmp.Compare(x.ID, y.ID))
	})
}

func decideInvoice(a Account, cat Catalog, ev StripeEvent) Decision {
	in := ev.Invoice
	if in.SubscriptionID == "" {
		return Decision{Outcome: Ignored, Account: a} // a one-off invoice: not a subscription's
	}
	known, isKnown := a.Subscriptions[in.SubscriptionID]
	if !isKnown && (a.CustomerID == "" || in.CustomerID != a.CustomerID) {
		return Decision{Outcome: NotOurs, Account: a}
	}
	d := Decision{Outcome: Ignored, Account: a}
	newer := !isKnown || ev.Created.After(known.EventAt)
	tie := isKnown && ev.Created.Equal(known.EventAt)
	failed, paid := ev.Type == "invoice.payment_failed", ev.Type == "invoice.paid"
	// When the stored status may be out of date, fetch the subscription: one we do not know yet,
	// a paid invoice of a subscription that was behind, a failed one of a subscription in good
	// standing on a same-second tie. The fetched state is applied without moving the watermark.
	behind := known.Status == "past_due" || known.Status == "unpaid" || known.Status == "incomplete"
	inGood := known.Status == "active" || known.Status == "trialing"
	doubt := (failed || paid) && (!isKnown || (paid && behind && (newer || tie)) || (failed && inGood && tie))
	if doubt {
		f := fetched(a, ev, in.SubscriptionID)
		switch {
		case f != nil && (isKnown || f.CustomerID == a.CustomerID):
			next := Known{Subscription: *f, PlanID: known.PlanID, EventAt: known.EventAt, EventID: known.EventID}
			next.PlanID, d.UnknownPrice = resolvePlan(cat, *f, next.PlanID, a.PlanID)
			d.Save, d.Outcome = &next, Applied
			d.Account, d.Changed = project(a, next)
			known, isKnown = next, true
		case f == nil && ev.Fetched == nil && ev.CanFetch:
			return Decision{NeedFetch: in.SubscriptionID, Account: a}
		}
	} else if failed && inGood && newer {
		// A failed renewal or end-of-trial payment makes a subscription in good standing past_due
		// (Stripe's own customer.subscription.updated says so too; this may come first).
		next := known
		next.Status = "past_due"
		d.Save, d.Outcome = &next, Applied
		d.Account, d.Changed = project(a, next)
		known = next
	}
	if !isKnown {
		return d // could not learn the subscription (billing has no Stripe client): nothing to do
	}
	if d.Account.Current != known.ID {
		d.Outcome = NotCurrent // its own state (d.Save) is still recorded
		return d
	}
	if failed && !ended(known.Status) {
		d.Emails = append(d.Emails, paymentFailedEmail(a.TenantName, in.ID, in.AttemptCount))
		d.Outcome = Applied
	}
	return d
}

func decideCheckout(a Account, cat Catalog, ev StripeEvent) Decision {
	cs := ev.Checkout
	if a.CustomerID == "" || cs.CustomerID != a.CustomerID {
		return Decision{Outcome: NotOurs, Account: a} // a stranger's checkout, whatever its client_reference_id
	}
	if cs.SubscriptionID == "" {
		return Decision{Outcome: Ignored, Account: a}
	}
	if _, ok := a.Subscriptions[cs.SubscriptionID]; ok {
		return Decision{Outcome: Ignored, Account: a} // its subscription events carry the state
	}
	f := fetched(a, ev, cs.SubscriptionID)
	if f == nil {
		if ev.Fetched == nil && ev.CanFetch {
			return Decision{NeedFetch: cs.SubscriptionID, Account: a}
		}
		return Decision{Outcome: Ignored, Account: a}
	}
	if f.CustomerID != a.CustomerID {
		return Decision{Outcome: NotOurs, Account: a}
	}
	next := Known{Subscription: *f}
	d := Decision{Outcome: Applied, Save: &next}
	next.PlanID, d.UnknownPrice = resolvePlan(cat, *f, "", a.PlanID)
	d.Account, d.Changed = project(a, next)
	return d
}
