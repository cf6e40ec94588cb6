package billing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
)

// This file is the Stripe outbox: the writes to Stripe that must follow a committed change (a
// deleted tenant's subscription canceled, a per-seat subscription's quantity set to the number of
// members). Each is queued in the transaction of the change that needs it, never sent inside it,
// and sent after commit by StripeOutbox, which retries until Stripe confirms. What to send, and
// what Stripe's answers mean, is decided here; the Store keeps the queue (tenantkit.stripe_outbox)
// and the Stripe adapter makes the calls.

// Kinds of queued Stripe write.
const (
	CancelSubscription = "cancel_subscription" // end a subscription at once
	SyncSeats          = "sync_seats"          // set a per-seat subscription's quantity to the members
)

// Outcomes of a queued write (tenantkit.stripe_outbox.outcome).
const (
	WriteSent        = "sent"         // Stripe made the change
	WriteAlreadyDone = "already_done" // Stripe already was as the write wanted (subscription already canceled, quantity already right)
	WriteSkipped     = "skipped"      // nothing to send (not per-seat, no live subscription, tenant deleted)
	WriteRetrying    = "retrying"     // Stripe unreachable or busy: tried again with back-off
	WriteFailed      = "failed"       // refused for a reason a retry cannot fix: tried again a day later, logged and counted
)

// StripeWrite is one queued write, as claimed from the queue. The sender fills in what it decided
// (Version, SubscriptionID, Key and Quantity for seats) before finishing it.
type StripeWrite struct {
	ID             int64
	Kind           string
	TenantID       string
	SubscriptionID string // cancel: the subscription to end; seats: the tenant's current one, chosen when sent
	Key            string // the idempotency key (cancel: set when queued; seats: set when sent)
	// Version is, for seats, the tenant's seat version: it counts the membership changes (and the
	// re-syncs a webhook asked for). A write is finished only at the version it was decided at.
	Version  int64
	Attempts int   // attempts so far, this one included
	Quantity int64 // seats: the licensed quantity Stripe answered (0: none learnt)
}

// CancelWrite is the write that ends subscriptionID at once because its tenant was deleted at
// deletedAt. Its key names the tenant, the deletion and the subscription: queuing it again (a late
// event of the same subscription) queues nothing new, and a retry resends the same key.
func CancelWrite(tenantID string, deletedAt time.Time, subscriptionID string) StripeWrite {
	return StripeWrite{Kind: CancelSubscription, TenantID: tenantID, SubscriptionID: subscriptionID,
		Key: fmt.Sprintf("tk-delete-%s-%d-%s", tenantID, deletedAt.UnixMicro(), subscriptionID)}
}

// CancelOnDeletion is what deleting a tenant sends to Stripe: every subscription of the tenant
// that has not ended (statuses by id) is canceled at once. Ended ones need nothing.
func CancelOnDeletion(tenantID string, deletedAt time.Time, statuses map[string]string) []StripeWrite {
	var out []StripeWrite
	for id, status := range statuses {
		if !ended(status) {
			out = append(out, CancelWrite(tenantID, deletedAt, id))
		}
	}
	return out
}

// OutboxStore keeps the queue (internal/postgres implements it).
type OutboxStore interface {
	// ClaimStripeWrites leases up to limit due writes, none leased by another sender, for lease.
	ClaimStripeWrites(ctx context.Context, limit int, lease time.Duration) ([]StripeWrite, error)
	// SeatState reads the tenant's seat state in one snapshot.
	SeatState(ctx context.Context, tenantID string) (SeatState, error)
	// FinishStripeWrite ends w with outcome and releases it. A seats write whose version moved
	// meanwhile (a newer membership change) stays queued for that change. w.Quantity > 0 is what
	// Stripe answered for w.SubscriptionID's licensed quantity, and is stored as such.
	FinishStripeWrite(ctx context.Context, w StripeWrite, outcome string) error
	// RetryStripeWrite releases w, due again after retryIn, with the outcome and problem recorded.
	RetryStripeWrite(ctx context.Context, w StripeWrite, retryIn time.Duration, outcome, problem string) error
}

// OutboxStripe is what the outbox needs from Stripe (internal/stripe implements it). Errors are
// tenantkit errors: unavailable (unreachable, 429, 5xx: retry), not_found (Stripe has no such
// object: resource_missing), invalid (Stripe refused the change for the object's state), internal
// (any other refusal).
type OutboxStripe interface {
	// CancelNow cancels the subscription at once, with the final invoice of the cancellation
	// policy (docs/billing.md).
	CancelNow(ctx context.Context, subscriptionID, key string) error
	// LicensedItem reads the subscription's licensed item as Stripe has it now.
	LicensedItem(ctx context.Context, subscriptionID string) (LicensedItem, error)
	// SetQuantity sets the item's quantity (with Stripe's default proration) and returns the
	// quantity Stripe answered.
	SetQuantity(ctx context.Context, itemID string, quantity int64, key string) (int64, error)
}

// FinalUsage reports a subscription's usage just before it is canceled at once (Service
// implements it: ReportFinalUsage, usage.go).
type FinalUsage interface {
	ReportFinalUsage(ctx context.Context, subscriptionID string) (UsageResult, error)
}

// Defaults of StripeOutbox.
const (
	defaultOutboxInterval = time.Second
	defaultRetryBase      = 5 * time.Second
	defaultMaxRetry       = 15 * time.Minute
	defaultLease          = 2 * time.Minute
	failedRetry           = 24 * time.Hour
	outboxBatch           = 20
	// finalUsageWait bounds a final usage report, the wait for a running usage report's lock
	// included; a report that runs out of it is tried again with the cancellation.
	finalUsageWait = 30 * time.Second
	// finalUsagePatience is how many attempts a cancellation waits for a renewal's webhook before
	// its final usage report (5 s, 20 s, 45 s, 80 s apart), then goes without it.
	finalUsagePatience = 5
)

// StripeOutbox sends the queued writes: at least once each, in the order they became due, never
// holding a transaction across a Stripe call, each claimed for a lease so that two senders (two
// replicas) never send one at the same time.
type StripeOutbox struct {
	Store  OutboxStore
	Stripe OutboxStripe
	Log    zerolog.Logger
	// Count, when set, adds one to a named counter on /metrics: stripe_write_<kind>_<outcome>.
	Count func(name string)
	// Usage, when set, reports a subscription's usage before its cancellation is sent, so that
	// the final invoice bills every call.
	Usage FinalUsage
	// Interval between flushes (1 s). RetryBase and MaxRetry shape the back-off after an
	// unavailable Stripe: attempt n waits n²·RetryBase (5 s), at most MaxRetry (15 min). Lease is
	// how long a claimed write is its sender's (2 min; a Stripe call gives up after 20 s).
	Interval, RetryBase, MaxRetry, Lease time.Duration
}

// Flush sends what is due and returns how many writes it finished (sent, already done or
// skipped). It stops at the first error of the store (the database is away); Stripe's errors are
// recorded on their write and do not stop it.
func (o *StripeOutbox) Flush(ctx context.Context) (int, error) {
	writes, err := o.Store.ClaimStripeWrites(ctx, outboxBatch, cmpDuration(o.Lease, defaultLease))
	if err != nil {
		return 0, err
	}
	finished := 0
	for _, w := range writes {
		var outcome string
		var err error
		switch w.Kind {
		case CancelSubscription:
			outcome, err = o.cancel(ctx, &w)
		case SyncSeats:
			outcome, err = o.seats(ctx, &w)
		default:
			outcome, err = WriteFailed, fmt.Errorf("unknown kind of Stripe write %q", w.Kind)
		}
		if err2 := o.settle(ctx, w, outcome, err); err2 != nil {
			return finished, err2
		}
		if outcome != WriteRetrying && outcome != WriteFailed {
			finished++
		}
	}
	return finished, nil
}

// cancel sends a cancellation, after the subscription's final usage report. Stripe answering that
// the subscription does not exist (it answers so for one already canceled) means it is done:
// nothing bills any more.
func (o *StripeOutbox) cancel(ctx context.Context, w *StripeWrite) (string, error) {
	if outcome, err := o.finalUsage(ctx, w); outcome != "" {
		return outcome, err
	}
	err := o.Stripe.CancelNow(ctx, w.SubscriptionID, w.Key)
	switch tenantkit.ErrorCode(err) {
	case "":
		return WriteSent, nil
	case tenantkit.NotFound:
		return WriteAlreadyDone, nil
	case tenantkit.Unavailable:
		return WriteRetrying, err
	}
	return WriteFailed, err
}

// finalUsage reports the subscription's usage of its current period before it is canceled: the
// cancellation's final invoice (invoice_now) bills the usage Stripe holds at that moment, and
// Stripe takes none for a subscription that has ended, so a call not reported now is never billed.
// It returns an outcome only when the cancellation must wait: the report could not reach Stripe
// or the database (retried with the cancellation, which needs Stripe too), or the subscription's
// stored period has ended and the renewal's webhook, which says where the new one starts, has not
// arrived (waited for up to finalUsagePatience attempts). A report Stripe refuses does not stop the
// cancellation: a subscription left running would bill far more than the calls.
func (o *StripeOutbox) finalUsage(ctx context.Context, w *StripeWrite) (string, error) {
	if o.Usage == nil {
		return "", nil
	}
	rctx, cancel := context.WithTimeout(ctx, finalUsageWait)
	defer cancel()
	res, err := o.Usage.ReportFinalUsage(rctx, w.SubscriptionID)
	log := o.Log.With().Int64("stripe_write", w.ID).Str("tenant_id", w.TenantID).Str("subscription", w.SubscriptionID).
		Str("item", res.ItemID).Int64("quantity", res.Quantity).Logger()
	switch code := tenantkit.ErrorCode(err); {
	case code == tenantkit.Unavailable || code == BillingUnavailable || (err != nil && rctx.Err() != nil && ctx.Err() == nil):
		return WriteRetrying, fmt.Errorf("final usage report: %w", err)
	case res.Outcome == UsageWaiting && w.Attempts < finalUsagePatience:
		return WriteRetrying, errors.New("final usage report: the subscription's stored period has ended; waiting for the renewal's webhook")
	case res.Outcome == UsageWaiting:
		log.Warn().Int("attempts", w.Attempts).Msg("the renewal's webhook never came; canceling without a final usage report (the closing period's unreported calls are not billed)")
	case err != nil:
		log.Warn().Err(err).Msg("Stripe refused the final usage report; canceling without it")
	case res.Outcome == UsageReported:
		log.Info().Int64("carried_in", res.CarriedIn).Msg("final usage reported before the cancellation")
	}
	return "", nil
}

// settle records the outcome of w, logs it and counts it.
func (o *StripeOutbox) settle(ctx context.Context, w StripeWrite, outcome string, cause error) error {
	if outcome == "" { // the store failed before anything was decided
		return cause
	}
	log := o.Log.With().Int64("stripe_write", w.ID).Str("kind", w.Kind).Str("tenant_id", w.TenantID).
		Str("subscription", w.SubscriptionID).Int("attempts", w.Attempts).Str("outcome", outcome).Logger()
	if o.Count != nil {
		o.Count("stripe_write_" + w.Kind + "_" + outcome)
	}
	switch outcome {
	case WriteRetrying:
		wait := min(time.Duration(w.Attempts*w.Attempts)*cmpDuration(o.RetryBase, defaultRetryBase), cmpDuration(o.MaxRetry, defaultMaxRetry))
		log.Warn().Err(cause).Dur("retry_in", wait).Msg("Stripe write not confirmed; will retry")
		return o.Store.RetryStripeWrite(ctx, w, wait, outcome, cause.Error())
	case WriteFailed:
		log.Error().Err(cause).Dur("retry_in", failedRetry).
			Msg("Stripe refused a queued write; it is tried again in a day (check the Stripe account and tenantkit.stripe_outbox.last_error)")
		return o.Store.RetryStripeWrite(ctx, w, failedRetry, outcome, cause.Error())
	case WriteSent:
		log.Info().Int64("quantity", w.Quantity).Msg("Stripe write sent")
	default:
		log.Debug().Msg("Stripe write finished without a call")
	}
	return o.Store.FinishStripeWrite(ctx, w, outcome)
}

// Run flushes every Interval until ctx ends; when a flush finished a full batch it flushes again
// at once.
func (o *StripeOutbox) Run(ctx context.Context) {
	tick := time.NewTicker(cmpDuration(o.Interval, defaultOutboxInterval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for {
				n, err := o.Flush(ctx)
				if err != nil && ctx.Err() == nil {
					o.Log.Warn().Err(err).Msg("Stripe outbox flush failed")
				}
				if err != nil || n < outboxBatch || ctx.Err() != nil {
					break
				}
			}
		}
	}
}

// cmpDuration is d, or def when d is not positive.
func cmpDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
