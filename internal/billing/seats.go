package billing

import (
	"context"
	"fmt"

	"github.com/tenantkit/tenantkit"
)

// Seats: a per-seat plan's subscription is billed for as many seats (its licensed item's
// quantity) as the tenant has members. Pending invitations are not seats: an invitation may never
// be accepted, and billing for it would charge for nobody; the plan's member limit counts them,
// since they are about to take a place. Every membership change (any path) makes the tenant's
// sync_seats write newer in its own transaction (a database trigger); so does a Stripe event
// whose subscription's quantity is not the number of members (seatsDrift), e.g. members who
// joined while a checkout page was open, or a plan changed to a per-seat one. The sender decides,
// at the latest version only, what to send.

// SeatState is what deciding a seat sync needs, read in one snapshot.
type SeatState struct {
	Version       int64 // the tenant's seat version, read with Members
	Members       int64 // members of the tenant (pending invitations do not count)
	TenantDeleted bool
	// The tenant's current Stripe subscription ("" when none), its status and licensed quantity
	// as last stored from Stripe, and whether its plan is per-seat.
	SubscriptionID string
	Status         string
	Quantity       int64
	PerSeat        bool
}

// SeatTarget is the licensed quantity the tenant's subscription must have: its number of members.
// ok is false when there is nothing to sync: no per-seat plan, no subscription, one that ended or
// is incomplete (Stripe refuses to change those), or a deleted tenant (its subscription is being
// canceled).
func SeatTarget(st SeatState) (target int64, ok bool) {
	switch {
	case st.TenantDeleted, !st.PerSeat, st.SubscriptionID == "", ended(st.Status), st.Status == "incomplete", st.Members < 1:
		return 0, false
	}
	return st.Members, true
}

// SeatsKey is the idempotency key of setting subscriptionID's quantity to quantity for the seat
// version: a retry of the same sync resends it; any later sync (a new version) has its own.
func SeatsKey(subscriptionID string, version, quantity int64) string {
	return fmt.Sprintf("tk-seats-%s-%d-%d", subscriptionID, version, quantity)
}

// LicensedItem is a subscription's licensed (plan) item as Stripe has it now.
type LicensedItem struct {
	ID       string // "" when the subscription has no licensed item
	Status   string // the subscription's status
	Quantity int64
}

// seats syncs the tenant's licensed quantity with its members, at the seat version it reads:
// nothing is sent when there is nothing to sync, when the stored quantity (from Stripe's
// webhooks, or an earlier answer) already is the target, or when Stripe's own current quantity
// is; only the latest version is ever sent.
func (o *StripeOutbox) seats(ctx context.Context, w *StripeWrite) (string, error) {
	st, err := o.Store.SeatState(ctx, w.TenantID)
	if err != nil {
		return "", err
	}
	w.Version, w.SubscriptionID = st.Version, st.SubscriptionID
	target, ok := SeatTarget(st)
	switch {
	case !ok:
		return WriteSkipped, nil
	case st.Quantity == target:
		return WriteAlreadyDone, nil
	}
	item, err := o.Stripe.LicensedItem(ctx, st.SubscriptionID)
	switch tenantkit.ErrorCode(err) {
	case "":
	case tenantkit.NotFound:
		return WriteSkipped, nil
	case tenantkit.Unavailable:
		return WriteRetrying, err
	default:
		return WriteFailed, err
	}
	switch {
	case item.ID == "", ended(item.Status), item.Status == "incomplete":
		return WriteSkipped, nil
	case item.Quantity == target:
		w.Quantity = item.Quantity
		return WriteAlreadyDone, nil
	}
	w.Key = SeatsKey(st.SubscriptionID, st.Version, target)
	q, err := o.Stripe.SetQuantity(ctx, item.ID, target, w.Key)
	switch tenantkit.ErrorCode(err) {
	case "":
		w.Quantity = q
		return WriteSent, nil
	case tenantkit.NotFound:
		return WriteSkipped, nil // the item or subscription is gone
	case tenantkit.Unavailable:
		return WriteRetrying, err
	case tenantkit.Invalid:
		// Refused for the subscription's state: it may have ended since it was read.
		if again, gerr := o.Stripe.LicensedItem(ctx, st.SubscriptionID); gerr == nil && (ended(again.Status) || again.ID == "") {
			return WriteSkipped, nil
		}
	}
	return WriteFailed, err
}

// seatsDrift reports whether, after d, the tenant's current subscription is a live one on a
// per-seat plan whose quantity (as just stored from Stripe) is not the number of members: a seat
// sync is then queued. tenantkit's own quantity change comes back with the quantity it set, and
// queues nothing (unless the members changed again meanwhile, which queued a sync already).
func seatsDrift(a Account, cat Catalog, d Decision) bool {
	if d.NeedFetch != "" || !d.Changed || a.DeletedAt != nil || d.Save == nil || d.Account.Current != d.Save.ID {
		return false
	}
	cur := d.Account.Subscriptions[d.Account.Current]
	if ended(cur.Status) || cur.Status == "incomplete" || !cat.PerSeat[d.Account.PlanID] {
		return false
	}
	return a.Members > 0 && cur.Quantity != a.Members
}
