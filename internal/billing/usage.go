package billing

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tenantkit/tenantkit"
)

// This file is the usage report (`tenantkit usage report`): what each subscription owes Stripe for
// its api_calls, period by period, so that every call is billed once.
//
// The rules:
//
//  1. A period's calls are those whose occurredAt lies in [current_period_start,
//     current_period_end), to the second (Store.UsageTotals): the period's first and last partial
//     hours count where they belong.
//  2. A period is reported as one usage record, action "set" at the period's start: a run reports
//     the total so far, a later run a larger total in its place, and a repeated run nothing new
//     (the key names item, period and total).
//  3. Stripe accepts usage only inside the subscription's current period ("The timestamp has to be
//     within the current billing period, otherwise the call fails":
//     https://docs.stripe.com/billing/subscriptions/usage-based-legacy/recording-usage), and bills
//     a period's usage when it ends. So calls made after a period's last report, before its end,
//     cannot reach its invoice any more: once the next period is stored, the closing period is
//     counted again in full and what its reports did not cover is carried into the next period's
//     report. Nothing is lost, nothing is billed twice; such calls are billed one period late.
//  4. A subscription whose stored period has ended (the renewal's webhook is not applied yet)
//     waits: nothing is sent for it until the new period is stored.
//  5. One subscription's failure (Stripe refused its item, or is unreachable) is recorded and the
//     others are still reported; the run then fails, naming them.
//  6. A subscription canceled at once (a deleted tenant's, StripeOutbox) is reported once more
//     just before the cancellation (ReportFinalUsage): its final invoice bills the usage Stripe
//     holds then, and Stripe takes no usage for a subscription that has ended.

// MeteredSubscription is a tenant's current subscription, billed by Stripe, with a metered item and
// a known period, and the usage periods of its that are still open.
type MeteredSubscription struct {
	TenantID, SubscriptionID, ItemID string
	PeriodStart, PeriodEnd           time.Time
	Open                             []UsagePeriod // oldest first
}

// UsagePeriod is what one billing period of a subscription owes and what Stripe accepted.
type UsagePeriod struct {
	TenantID, SubscriptionID string
	ItemID                   string // the metered item the period is reported to
	Start, End               time.Time
	Due                      int64 // the period's api_calls, rounded up (final once closed)
	CarriedIn                int64 // owed by earlier periods, past their reach
	Reported                 int64 // the quantity Stripe accepted on ItemID
	ReportedAt               *time.Time
	Closed                   bool // over, its remainder carried into the next period
}

// Owed is the quantity the period's usage record on ItemID must hold.
func (p UsagePeriod) Owed() int64 { return p.Due + p.CarriedIn }

// Remainder is what the period owes beyond what Stripe accepted.
func (p UsagePeriod) Remainder() int64 { return max(0, p.Owed()-p.Reported) }

// UsageRange names a counter metric of a tenant over [From, To).
type UsageRange struct {
	TenantID, Metric string
	From, To         time.Time
}

// UsageStore persists what the usage report and the usage alerts need.
type UsageStore interface {
	// LockUsageReport takes the usage report's lock until unlock: one run at a time, a second
	// waits for the first.
	LockUsageReport(ctx context.Context) (unlock func(), err error)
	// MeteredSubscriptions returns every tenant's current subscription Stripe still bills (active,
	// trialing, past_due) that has a metered item and a period, with its open usage periods.
	MeteredSubscriptions(ctx context.Context) ([]MeteredSubscription, error)
	// BilledSubscription returns one subscription as MeteredSubscriptions would, read from its own
	// state (its tenant may be deleted); ok is false when Stripe no longer bills it or it has no
	// metered item or period.
	BilledSubscription(ctx context.Context, subscriptionID string) (m MeteredSubscription, ok bool, err error)
	// UsageTotals returns, for each range, the tenant's total of the counter metric over events
	// whose occurredAt lies in [From, To), in one round trip; totals[i] answers ranges[i].
	UsageTotals(ctx context.Context, ranges []UsageRange) (totals []float64, err error)
	// SaveUsagePeriods stores the periods (by tenant, subscription and start) in one transaction.
	SaveUsagePeriods(ctx context.Context, periods []UsagePeriod) error
	// UsageLimits returns, for each tenant and metric given whose effective plan limits the metric
	// (a limit above 0), the limit, the tenant's current subscription period (nil without one) and,
	// for gauges, the latest value.
	UsageLimits(ctx context.Context, keys []TenantMetric) ([]UsageLimit, error)
	// QueueOwnerEmail queues an email to every owner of the tenant, once per DedupeKey and owner,
	// unless an email with one of the unless keys was queued before. It reports whether it queued.
	QueueOwnerEmail(ctx context.Context, tenantID string, e Email, unless []string) (bool, error)
}

// The outcome of one subscription in a usage report run.
const (
	UsageReported  = "reported"  // Stripe accepted a new total
	UsageUnchanged = "unchanged" // Stripe already holds the period's total
	UsageWaiting   = "waiting"   // the stored period has ended: waiting for the renewal's webhook
	UsageFailed    = "failed"    // Stripe refused, or could not be reached
)

// UsageResult is what a run did for one subscription.
type UsageResult struct {
	TenantID, SubscriptionID, ItemID string
	PeriodStart                      time.Time
	Quantity                         int64 // the period's total on the item (sent, or already there)
	CarriedIn                        int64
	Outcome                          string
	Err                              error
}

// UsageRun is a usage report run.
type UsageRun struct {
	Results                              []UsageResult
	Reported, Unchanged, Waiting, Failed int
}

// Summary is the run's one-line summary; the failed subscriptions follow, one a line.
func (r UsageRun) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage report: %d subscription(s) reported, %d unchanged, %d waiting for their renewal, %d failed",
		r.Reported, r.Unchanged, r.Waiting, r.Failed)
	for _, res := range r.Results {
		if res.Outcome == UsageFailed {
			fmt.Fprintf(&b, "\nfailed: tenant %s subscription %s item %s: %v", res.TenantID, res.SubscriptionID, res.ItemID, res.Err)
		}
	}
	return b.String()
}

// ReportUsage reports every metered subscription's api_calls for its current period (the rules
// at the top of this file). It returns what it did for each; the error, when some failed, names
// them. Errors: billing_unavailable (billing off, or the database unreachable), and the failures.
func (s *Service) ReportUsage(ctx context.Context) (UsageRun, error) {
	var run UsageRun
	unlock, err := s.lockUsageReport(ctx)
	if err != nil {
		return run, err
	}
	defer unlock()
	subs, err := s.Store.MeteredSubscriptions(ctx)
	if err != nil {
		return run, err
	}
	for _, m := range subs {
		res := s.reportPeriod(ctx, m)
		switch res.Outcome {
		case UsageReported:
			run.Reported++
		case UsageUnchanged:
			run.Unchanged++
		case UsageWaiting:
			run.Waiting++
		default:
			run.Failed++
		}
		run.Results = append(run.Results, res)
	}
	if run.Failed > 0 {
		var failed []string
		for _, r := range run.Results {
			if r.Outcome == UsageFailed {
				failed = append(failed, r.SubscriptionID)
			}
		}
		return run, fmt.Errorf("usage report: %d of %d subscription(s) failed: %s", run.Failed, len(subs), strings.Join(failed, ", "))
	}
	return run, nil
}

// ReportFinalUsage reports one subscription's api_calls for its current period, as ReportUsage
// does, just before the subscription is canceled at once (rule 6). Its outcome is "" when there is
// nothing to report (no metered item, or Stripe no longer bills the subscription); a stored period
// that has ended answers UsageWaiting, as in a run. Errors: billing_unavailable, unavailable, and
// Stripe's refusals.
func (s *Service) ReportFinalUsage(ctx context.Context, subscriptionID string) (UsageResult, error) {
	res := UsageResult{SubscriptionID: subscriptionID}
	unlock, err := s.lockUsageReport(ctx)
	if err != nil {
		return res, err
	}
	defer unlock()
	m, ok, err := s.Store.BilledSubscription(ctx, subscriptionID)
	if err != nil || !ok {
		return res, err
	}
	res = s.reportPeriod(ctx, m)
	return res, res.Err
}

// lockUsageReport takes the usage report's lock (one report at a time, whole runs and final
// reports alike) when billing is configured. Errors: billing_unavailable, unavailable.
func (s *Service) lockUsageReport(ctx context.Context) (unlock func(), err error) {
	if s.Stripe == nil {
		return nil, tenantkit.Errorf(BillingUnavailable, "STRIPE_SECRET_KEY is not set")
	}
	return s.Store.LockUsageReport(ctx)
}

// reportPeriod settles a subscription's earlier periods and reports its current one.
func (s *Service) reportPeriod(ctx context.Context, m MeteredSubscription) UsageResult {
	res := UsageResult{TenantID: m.TenantID, SubscriptionID: m.SubscriptionID, ItemID: m.ItemID, PeriodStart: m.PeriodStart}
	now := s.now()
	if !now.Before(m.PeriodEnd) {
		res.Outcome = UsageWaiting
		return res
	}
	fail := func(err error) UsageResult {
		res.Outcome, res.Err = UsageFailed, unavailable(err)
		return res
	}
	var over []UsagePeriod
	var cur *UsagePeriod
	for _, p := range m.Open {
		switch {
		case p.Start.Equal(m.PeriodStart):
			c := p
			cur = &c
		case p.Start.Before(m.PeriodStart):
			over = append(over, p)
		}
	}
	if cur == nil {
		cur = &UsagePeriod{TenantID: m.TenantID, SubscriptionID: m.SubscriptionID, ItemID: m.ItemID, Start: m.PeriodStart}
	}
	if cur.ItemID != m.ItemID {
		// The plan changed the metered item. changePlan removes the old one with clear_usage (Stripe
		// refuses otherwise), so nothing it held is billed: the whole period goes to the new item.
		cur.Reported, cur.ReportedAt, cur.ItemID = 0, nil, m.ItemID
	}
	cur.End = m.PeriodEnd
	// The totals of the periods that are over and of the current one, in one round trip.
	ranges := make([]UsageRange, 0, len(over)+1)
	for _, p := range append(over, *cur) {
		ranges = append(ranges, UsageRange{TenantID: p.TenantID, Metric: "api_calls", From: p.Start, To: p.End})
	}
	totals, err := s.Store.UsageTotals(ctx, ranges)
	if err != nil {
		return fail(err)
	}
	// A period that is over counts in full; what its reports did not cover is carried.
	for i := range over {
		over[i].Due, over[i].Closed = wholeCalls(totals[i]), true
		cur.CarriedIn += over[i].Remainder()
	}
	cur.Due = wholeCalls(totals[len(over)])
	if err := s.Store.SaveUsagePeriods(ctx, append(over, *cur)); err != nil {
		return fail(err)
	}
	res.Quantity, res.CarriedIn = cur.Owed(), cur.CarriedIn
	if cur.ReportedAt != nil && cur.Reported == res.Quantity {
		res.Outcome = UsageUnchanged
		return res
	}
	if err := s.Stripe.ReportUsage(ctx, cur.ItemID, cur.Start, res.Quantity); err != nil {
		return fail(err)
	}
	cur.Reported, cur.ReportedAt = res.Quantity, &now
	if err := s.Store.SaveUsagePeriods(ctx, []UsagePeriod{*cur}); err != nil {
		return fail(err)
	}
	res.Outcome = UsageReported
	return res
}

// wholeCalls rounds a usage total up to whole calls (a backend may report fractions).
func wholeCalls(total float64) int64 { return int64(math.Ceil(total - 1e-9)) }
