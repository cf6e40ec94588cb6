package billing

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file is reconciliation (`tenantkit stripe reconcile`): Stripe's account compared with
// what tenantkit holds, and the difference applied through the state machine. Nothing here writes
// state itself: missed events go through Service.applyStripeEvent (the webhook's path: ledger,
// watermark, emails), and a subscription whose stored state still differs from Stripe's is applied
// as a snapshot event (decideSnapshot), which keeps the watermark and is applied only over the
// state it was compared with, so it never overwrites state a webhook applied meanwhile.

// ReconcileEventType is the ledger type (tenantkit.stripe_events) of a snapshot reconciliation
// applied; its id is "tkrec_<run>_<subscription>".
const ReconcileEventType = "tenantkit.reconcile"

// HandledEventTypes are the Stripe event types Decide acts on: the types a webhook endpoint must
// send, and the types reconciliation lists. Every other type is recorded and ignored.
var HandledEventTypes = []string{
	"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
	"customer.subscription.paused", "customer.subscription.resumed", "customer.subscription.trial_will_end",
	"customer.subscription.pending_update_applied", "customer.subscription.pending_update_expired",
	"invoice.paid", "invoice.payment_failed", "checkout.session.completed",
}

// EventRetention is how far back Stripe lists events: https://docs.stripe.com/api/events/list
// ("List events, going back up to 30 days").
const EventRetention = 30 * 24 * time.Hour

// ListedEvent is an event as Stripe's events list returns it.
type ListedEvent struct {
	ID, Type   string
	Created    time.Time
	APIVersion string
	// Event is the event decoded as a webhook is; nil when it cannot be applied, and Problem says
	// why (rendered in another API version, undecodable).
	Event   *StripeEvent
	Problem string
}

// StripeCustomer is a customer as Stripe's customers list returns it.
type StripeCustomer struct {
	ID string
	// TenantHint is metadata.tenant_id: shown to the operator, never used to link (anyone can type
	// metadata).
	TenantHint string
}

// StripeAccount is what reconciliation reads from Stripe (internal/stripe implements it). Each
// list calls fn for every object, page after page, and stops at fn's first error.
type StripeAccount interface {
	// ListEvents lists the events of the given types created at or after since, newest first.
	ListEvents(ctx context.Context, since time.Time, types []string, fn func(ListedEvent) error) error
	// ListSubscriptions lists every subscription of the account, whatever its status.
	ListSubscriptions(ctx context.Context, fn func(Subscription) error) error
	// ListCustomers lists every customer of the account.
	ListCustomers(ctx context.Context, fn func(StripeCustomer) error) error
}

// ReconcileStore is what reconciliation reads from tenantkit's database.
type ReconcileStore interface {
	// ReconcileState returns the links the state machine decides by: the customer tenantkit
	// created for each tenant, and every subscription already linked with its stored state.
	ReconcileState(ctx context.Context) (ReconcileState, error)
	// RecordedEvents returns which of the event ids the ledger (tenantkit.stripe_events) holds.
	RecordedEvents(ctx context.Context, ids []string) (map[string]bool, error)
	// KnownTenants returns which of the ids are existing tenants.
	KnownTenants(ctx context.Context, ids []string) (map[string]bool, error)
}

// LinkedSubscription is a subscription linked to a tenant, as stored.
type LinkedSubscription struct {
	TenantID string
	Known
}

// ReconcileState is tenantkit's side of the account.
type ReconcileState struct {
	Customers     map[string]string             // customer id → tenant id
	Subscriptions map[string]LinkedSubscription // subscription id → tenant and stored state
}

// Tenant is the tenant a subscription or customer belongs to, "" for none, by the state machine's
// first rule (state.go; the Store applies it in ApplyStripeEvent): a subscription already linked,
// else the customer tenantkit created for the tenant. Metadata never links.
func (st ReconcileState) Tenant(subscriptionID, customerID string) string {
	if s, ok := st.Subscriptions[subscriptionID]; ok && subscriptionID != "" {
		return s.TenantID
	}
	if customerID == "" {
		return ""
	}
	return st.Customers[customerID]
}

// Subject returns the subscription and customer ids an event names ("" when none).
func (ev StripeEvent) Subject() (subscriptionID, customerID string) {
	switch {
	case ev.Subscription != nil:
		return ev.Subscription.ID, ev.Subscription.CustomerID
	case ev.Invoice != nil:
		return ev.Invoice.SubscriptionID, ev.Invoice.CustomerID
	case ev.Checkout != nil:
		return ev.Checkout.SubscriptionID, ev.Checkout.CustomerID
	case ev.Snapshot != nil:
		return ev.Snapshot.ID, ev.Snapshot.CustomerID
	}
	return "", ""
}

// FieldDiff is a field on which a stored subscription and Stripe's disagree.
type FieldDiff struct {
	Field, Ours, Stripe string
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func formatTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return formatTime(*t)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// subscriptionFields are the fields of a subscription the state machine stores, as compared.
var subscriptionFields = []struct {
	name string
	get  func(Subscription) string
}{
	{"customer", func(s Subscription) string { return orDash(s.CustomerID) }},
	{"status", func(s Subscription) string { return orDash(s.Status) }},
	{"price", func(s Subscription) string { return orDash(s.PriceID) }},
	{"quantity", func(s Subscription) string { return strconv.FormatInt(s.Quantity, 10) }},
	{"metered_item", func(s Subscription) string { return orDash(s.UsageItemID) }},
	{"created", func(s Subscription) string { return formatTime(s.Created) }},
	{"current_period_start", func(s Subscription) string { return formatTime(s.CurrentPeriodStart) }},
	{"current_period_end", func(s Subscription) string { return formatTime(s.CurrentPeriodEnd) }},
	{"trial_end", func(s Subscription) string { return formatTimePtr(s.TrialEnd) }},
	{"cancel_at_period_end", func(s Subscription) string { return strconv.FormatBool(s.CancelAtPeriodEnd) }},
	{"cancel_at", func(s Subscription) string { return formatTimePtr(s.CancelAt) }},
	{"canceled_at", func(s Subscription) string { return formatTimePtr(s.CanceledAt) }},
	{"ended_at", func(s Subscription) string { return formatTimePtr(s.EndedAt) }},
	{"unit_amount", func(s Subscription) string {
		if s.UnitAmount == nil {
			return "-"
		}
		return strconv.FormatFloat(*s.UnitAmount, 'f', -1, 64)
	}},
	{"currency", func(s Subscription) string { return orDash(s.Currency) }},
	{"interval", func(s Subscription) string { return orDash(s.Interval) }},
	{"interval_count", func(s Subscription) string { return strconv.FormatInt(s.IntervalCount, 10) }},
}

// Diff returns the stored fields on which ours and Stripe's state of a subscription disagree.
// metadata.plan_id is a hint and not compared; the plan follows the price.
func Diff(ours, stripe Subscription) []FieldDiff {
	var out []FieldDiff
	for _, f := range subscriptionFields {
		if o, s := f.get(ours), f.get(stripe); o != s {
			out = append(out, FieldDiff{Field: f.name, Ours: o, Stripe: s})
		}
	}
	return out
}

// digest summarises the compared fields (Account.Version).
func (s Subscription) digest() string {
	h := fnv.New64a()
	for _, f := range subscriptionFields {
		h.Write([]byte(f.get(s)))
		h.Write([]byte{0})
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

// decideSnapshot applies Stripe's current state of a subscription, listed by reconciliation
// (ev.Snapshot, passed also as ev.Fetched over the version it was compared with). It carries no
// event of Stripe's: the watermark stays, so any later event still applies over it, and it is
// applied only over the state it was compared with — when a webhook changed the subscription in
// between, the subscription is fetched again (NeedFetch) and that state applied instead. A state
// equal to the stored one changes nothing (ignored). The subscription must be linked, or its
// customer the tenant's, like any event's.
func decideSnapshot(a Account, cat Catalog, ev StripeEvent) Decision {
	id := ev.Snapshot.ID
	known, isKnown := a.Subscriptions[id]
	if !isKnown && (a.CustomerID == "" || ev.Snapshot.CustomerID != a.CustomerID) {
		return Decision{Outcome: NotOurs, Account: a}
	}
	f := fetched(a, ev, id)
	if f == nil {
		if ev.CanFetch {
			return Decision{NeedFetch: id, Account: a}
		}
		return Decision{Outcome: Ignored, Account: a}
	}
	if isKnown && len(Diff(known.Subscription, *f)) == 0 {
		return Decision{Outcome: Ignored, Account: a}
	}
	next := Known{Subscription: *f, PlanID: known.PlanID, EventAt: known.EventAt, EventID: known.EventID}
	d := Decision{Outcome: Applied, Save: &next}
	next.PlanID, d.UnknownPrice = resolvePlan(cat, *f, next.PlanID, a.PlanID)
	d.Account, d.Changed = project(a, next)
	if d.Account.Current != id {
		d.Outcome = NotCurrent
	}
	return d
}

// DriftRow is one line of the drift report: a field of a tenant's billing state that differs from
// Stripe's (or an event the ledger lacks), and what reconciliation did about it.
type DriftRow struct {
	TenantID, Field, Ours, Stripe, Action string
}

// ReconcileStats count what a run saw and did.
type ReconcileStats struct {
	Phase                                                                            string // events, subscriptions, customers, done
	EventsListed, EventsMissing, EventsApplied, EventsSkipped                        int
	SubscriptionsListed, SubscriptionsOurs, SubscriptionsDrifted, SubscriptionsFixed int
	CustomersListed, CustomersMissing                                                int
	Failed                                                                           int
}

// ReconcileReport is a run's drift report.
type ReconcileReport struct {
	ReconcileStats
	DryRun bool
	Rows   []DriftRow
}

// Summary is the report's one-line summary.
func (r ReconcileReport) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "stripe reconcile: %d events listed, %d missing from the ledger (%d applied, %d skipped); "+
		"%d subscriptions listed, %d of tenants, %d drifted (%d fixed); %d customers listed, %d of tenants missing; %d drift rows",
		r.EventsListed, r.EventsMissing, r.EventsApplied, r.EventsSkipped,
		r.SubscriptionsListed, r.SubscriptionsOurs, r.SubscriptionsDrifted, r.SubscriptionsFixed,
		r.CustomersListed, r.CustomersMissing, len(r.Rows))
	if r.Failed > 0 {
		fmt.Fprintf(&b, "; %d failed", r.Failed)
	}
	if r.DryRun {
		b.WriteString(" (dry run: nothing changed)")
	}
	return b.String()
}

// Reconciler compares the Stripe account with tenantkit's billing state and applies the
// difference (Run).
type Reconciler struct {
	Billing *Service // applies events (its Stripe client settles same-second ties)
	Store   ReconcileStore
	Stripe  StripeAccount
	// DryRun reports and changes nothing.
	DryRun bool
	// Progress, when set, is called with the counts so far at most every ProgressEvery (default
	// 2 s) while the run lasts, and once at its end.
	Progress      func(ReconcileStats)
	ProgressEvery time.Duration

	lastProgress time.Time
}

// recordedBatch is how many listed event ids are looked up in the ledger at once.
const recordedBatch = 100

// Run reconciles once:
//
//  1. Stripe's events of the handled types from the last 30 days that the ledger has not recorded
//     are applied, oldest first, exactly as their webhooks would have been (an event of another
//     API version is skipped: step 2 still brings its subscription up to date).
//  2. Every subscription of the account (status all) that belongs to a tenant is compared with the
//     stored state; one that differs, or that tenantkit has never heard of, is applied as a
//     snapshot (decideSnapshot). A linked subscription Stripe does not list is reported.
//  3. Every customer of the account is listed: a tenant's customer Stripe no longer has is
//     reported, as is a customer whose metadata names a tenant without a customer (never linked).
//
// A second run finds nothing to do. Errors applying one event or subscription are reported in its
// row and counted (Failed); listing failures end the run. Errors: unavailable, internal.
func (r *Reconciler) Run(ctx context.Context) (ReconcileReport, error) {
	rep := ReconcileReport{DryRun: r.DryRun}
	now := r.Billing.now()
	run := "tkrec_" + strconv.FormatInt(now.UnixNano(), 36) + "_"

	// 1. Events the ledger lacks.
	rep.Phase = "events"
	st, err := r.Store.ReconcileState(ctx)
	if err != nil {
		return rep, err
	}
	var missing, batch []ListedEvent
	lookup := func() error {
		if len(batch) == 0 {
			return nil
		}
		ids := make([]string, len(batch))
		for i, e := range batch {
			ids[i] = e.ID
		}
		recorded, err := r.Store.RecordedEvents(ctx, ids)
		if err != nil {
			return err
		}
		for _, e := range batch {
			if !recorded[e.ID] {
				missing = append(missing, e)
			}
		}
		batch = batch[:0]
		return nil
	}
	err = r.Stripe.ListEvents(ctx, now.Add(-EventRetention), HandledEventTypes, func(e ListedEvent) error {
		rep.EventsListed++
		batch = append(batch, e)
		r.tick(rep.ReconcileStats)
		if len(batch) == recordedBatch {
			return lookup()
		}
		return nil
	})
	if err == nil {
		err = lookup()
	}
	if err != nil {
		return rep, unavailable(err)
	}
	// Listed newest first: apply them in the order Stripe created them (the state machine copes
	// with any order; this one needs the fewest fetches).
	slices.Reverse(missing)
	slices.SortStableFunc(missing, func(a, b ListedEvent) int { return a.Created.Compare(b.Created) })
	rep.EventsMissing = len(missing)
	for _, e := range missing {
		row := DriftRow{TenantID: "-", Field: "event " + e.Type, Ours: "not recorded", Stripe: e.ID + " of " + formatTime(e.Created)}
		var changes []DriftRow
		switch {
		case e.Event == nil:
			row.Action = "skipped: " + e.Problem
			rep.EventsSkipped++
		case r.DryRun:
			row.TenantID = orDash(st.Tenant(e.Event.Subject()))
			row.Action = "would apply"
		default:
			row.TenantID = orDash(st.Tenant(e.Event.Subject()))
			d, err := r.Billing.applyStripeEvent(ctx, *e.Event)
			if err != nil {
				row.Action = "failed: " + err.Error()
				rep.Failed++
				break
			}
			if d.Account.TenantID != "" {
				row.TenantID = d.Account.TenantID
			}
			row.Action = "recorded: " + d.Outcome
			rep.EventsApplied++
			changes = applied(st, row.TenantID, e.ID, d.Save)
		}
		rep.Rows = append(append(rep.Rows, row), changes...)
		r.tick(rep.ReconcileStats)
	}

	// 2. Subscriptions, against the state after step 1.
	rep.Phase = "subscriptions"
	if st, err = r.Store.ReconcileState(ctx); err != nil {
		return rep, err
	}
	listed := map[string]bool{}
	err = r.Stripe.ListSubscriptions(ctx, func(sub Subscription) error {
		rep.SubscriptionsListed++
		r.tick(rep.ReconcileStats)
		tenant := st.Tenant(sub.ID, sub.CustomerID)
		if tenant == "" {
			return nil // a stranger's
		}
		rep.SubscriptionsOurs++
		listed[sub.ID] = true
		known, isKnown := st.Subscriptions[sub.ID]
		version := "new"
		diffs := []FieldDiff{{Field: "subscription " + sub.ID, Ours: "unknown", Stripe: sub.Status}}
		if isKnown {
			version, diffs = known.version(), Diff(known.Subscription, sub)
		}
		if len(diffs) == 0 {
			return nil
		}
		rep.SubscriptionsDrifted++
		action := "would fix"
		if !r.DryRun {
			snap := sub
			ev := StripeEvent{ID: run + sub.ID, Type: ReconcileEventType, Created: now, Snapshot: &snap, Fetched: &snap, FetchedOver: version}
			d, err := r.Billing.applyStripeEvent(ctx, ev)
			switch {
			case err != nil:
				action = "failed: " + err.Error()
				rep.Failed++
			case d.Outcome == Applied || d.Outcome == NotCurrent:
				action = "fixed"
				rep.SubscriptionsFixed++
			case d.Outcome == Ignored:
				action = "none: already as Stripe's (changed meanwhile, fetched again)"
			default:
				action = "not fixed: " + d.Outcome
			}
		}
		for _, f := range diffs {
			field := f.Field
			if isKnown {
				field = "subscription " + sub.ID + " " + f.Field
			}
			rep.Rows = append(rep.Rows, DriftRow{TenantID: tenant, Field: field, Ours: f.Ours, Stripe: f.Stripe, Action: action})
		}
		return nil
	})
	if err != nil {
		return rep, unavailable(err)
	}
	for _, id := range slices.Sorted(maps.Keys(st.Subscriptions)) {
		if !listed[id] {
			s := st.Subscriptions[id]
			rep.Rows = append(rep.Rows, DriftRow{TenantID: s.TenantID, Field: "subscription " + id, Ours: s.Status,
				Stripe: "not found", Action: "none: not on this Stripe account (check STRIPE_SECRET_KEY)"})
		}
	}

	// 3. Customers.
	rep.Phase = "customers"
	seen := map[string]bool{}
	hints := map[string]string{} // tenant → a customer whose metadata names it
	linked := map[string]bool{}
	for _, t := range st.Customers {
		linked[t] = true
	}
	err = r.Stripe.ListCustomers(ctx, func(c StripeCustomer) error {
		rep.CustomersListed++
		r.tick(rep.ReconcileStats)
		seen[c.ID] = true
		if st.Customers[c.ID] == "" && c.TenantHint != "" && !linked[c.TenantHint] {
			hints[c.TenantHint] = c.ID
		}
		return nil
	})
	if err != nil {
		return rep, unavailable(err)
	}
	for _, id := range slices.Sorted(maps.Keys(st.Customers)) {
		if !seen[id] {
			rep.CustomersMissing++
			rep.Rows = append(rep.Rows, DriftRow{TenantID: st.Customers[id], Field: "customer", Ours: id, Stripe: "not found",
				Action: "none: not on this Stripe account (deleted, or another account)"})
		}
	}
	if len(hints) > 0 {
		ids := slices.Sorted(maps.Keys(hints))
		known, err := r.Store.KnownTenants(ctx, ids)
		if err != nil {
			return rep, err
		}
		for _, t := range ids {
			if known[t] {
				rep.Rows = append(rep.Rows, DriftRow{TenantID: t, Field: "customer", Ours: "-", Stripe: hints[t] + " (metadata.tenant_id)",
					Action: "none: metadata never links a customer"})
			}
		}
	}
	rep.Phase = "done"
	if r.Progress != nil {
		r.Progress(rep.ReconcileStats)
	}
	if rep.Failed > 0 {
		return rep, fmt.Errorf("stripe reconcile: %d change(s) could not be applied (see the report); run it again", rep.Failed)
	}
	return rep, nil
}

// applied returns the rows of what an event changed in a subscription's stored state (saved; nil
// when nothing), and keeps st up to date with it.
func applied(st ReconcileState, tenant, eventID string, saved *Known) []DriftRow {
	if saved == nil {
		return nil
	}
	prev, had := st.Subscriptions[saved.ID]
	st.Subscriptions[saved.ID] = LinkedSubscription{TenantID: tenant, Known: *saved}
	if !had {
		return []DriftRow{{TenantID: tenant, Field: "subscription " + saved.ID, Ours: "unknown", Stripe: saved.Status, Action: "applied " + eventID}}
	}
	var rows []DriftRow
	for _, f := range Diff(prev.Subscription, saved.Subscription) {
		rows = append(rows, DriftRow{TenantID: tenant, Field: "subscription " + saved.ID + " " + f.Field, Ours: f.Ours, Stripe: f.Stripe, Action: "applied " + eventID})
	}
	return rows
}

// tick reports progress when ProgressEvery has passed since the last report.
func (r *Reconciler) tick(s ReconcileStats) {
	if r.Progress == nil {
		return
	}
	every := r.ProgressEvery
	if every <= 0 {
		every = 2 * time.Second
	}
	if now := time.Now(); now.Sub(r.lastProgress) >= every {
		r.lastProgress = now
		r.Progress(s)
	}
}
