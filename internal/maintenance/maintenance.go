// Package maintenance keeps the tables that grow with traffic bounded: it decides how long usage
// events and each ledger or outbox are kept, and runs the periodic job (`tenantkit serve` every
// MAINTENANCE_INTERVAL, `tenantkit maintenance run` on demand) that creates usage partitions
// ahead, drops the expired ones and deletes expired ledger rows in bounded batches. One replica
// runs it at a time. It also runs the usage fold (Fold: `tenantkit serve` every
// USAGE_FOLD_INTERVAL, and first in each job), which adds recorded counter events to
// billing_usage off the request path. The SQL is in internal/postgres (maintenance.go) and
// migration 00029.
package maintenance

import (
	"context"
	"fmt"
	"time"
)

const (
	// MonthsAhead is how many months after the current one have their usage partition ready.
	MonthsAhead = 2
	// MinRetentionMonths is the shortest USAGE_RETENTION_MONTHS: the usage report reads the
	// events of open billing periods only (an hour cut by a period's start or end,
	// postgres.UsageTotals), and the longest period Stripe bills is a year; a period stays open
	// until the first report after its end closes it. Thirteen whole months before the current one
	// cover a yearly period that began up to thirteen months ago.
	MinRetentionMonths = 13
	// DefaultRetentionMonths is USAGE_RETENTION_MONTHS when unset.
	DefaultRetentionMonths = MinRetentionMonths
	// MaxRetentionMonths bounds USAGE_RETENTION_MONTHS (ten years).
	MaxRetentionMonths = 120
	// DefaultBatch is how many rows one DELETE removes; each batch is its own short transaction.
	DefaultBatch = 5000
)

// Ledger names a table whose rows the job deletes once they are no longer needed.
type Ledger string

// The ledgers and outboxes the job prunes.
const (
	StripeEvents      Ledger = "stripe_events"
	ProcessedEvents   Ledger = "processed_events"
	EmailOutbox       Ledger = "email_outbox"
	InvitationSends   Ledger = "invitation_sends"
	StripeOutbox      Ledger = "stripe_outbox"
	UsageCuts         Ledger = "usage_cuts"
	UsageBoundaryKeys Ledger = "usage_boundary_keys"
)

// Rule says which rows of a ledger may go, and after how long.
type Rule struct {
	Ledger Ledger
	// Keep is how long a row is kept after the time named in Rows.
	Keep time.Duration
	// Rows describes the rows that may go (and so, which never do).
	Rows string
}

const day = 24 * time.Hour

// Rules are the ledgers' retention rules, except usage_cuts, which follows the usage partitions
// (see Cutoffs).
var Rules = []Rule{
	// Stripe retries an undelivered event for up to three days in live mode, and an operator can
	// resend any event of the last 30 days (the List Events API returns 30 days; docs.stripe.com,
	// webhooks/process-undelivered-events): a processed event id is remembered 35 days, so every
	// redelivery Stripe can make is still recognised as a duplicate.
	{StripeEvents, 35 * day, "events applied more than 35 days ago (received_at)"},
	// Hasura retries an event trigger delivery per its retry_conf (at most 20 retries a minute
	// apart in hasura/metadata) and an operator can redeliver an event of hdb_catalog.event_log by
	// hand; 35 days, as for Stripe. Claims that are not done are never pruned here.
	{ProcessedEvents, 35 * day, "events done more than 35 days ago (done_at); unfinished claims stay"},
	// A sent (or refused) email keeps its dedupe_key, which stops the same cause (a usage alert of
	// a billing period, a failed payment attempt, a trial's end) from being queued again: kept past
	// the longest billing period (a year). Unsent rows are never pruned.
	{EmailOutbox, 400 * day, "emails sent or refused more than 400 days ago (sent_at, refused_at); unsent ones stay"},
	// The send limits count the last hour and the last 24 hours (internal/team).
	{InvitationSends, 2 * day, "sends older than 2 days (sent_at), past both send-limit windows"},
	// A done Stripe write keeps its idempotency key; Stripe forgets keys after 24 hours, and the
	// row helps an operator for a month. Writes not yet done are never pruned.
	{StripeOutbox, 35 * day, "writes done more than 35 days ago (done_at); pending ones stay"},
	// A usage key claimed near a month's end matters while another attempt of its event can be in
	// flight on the other side of it (billing.UsageBoundaryWindow, an hour, either side); the
	// event itself stays in usage_events for the idempotency window.
	{UsageBoundaryKeys, day, "usage keys claimed near a month's end more than a day ago (claimed_at)"},
}

// Store is what the job needs from the database.
type Store interface {
	// TryLockMaintenance takes the maintenance lock when no other run holds it (ok false
	// otherwise) and keeps it until unlock.
	TryLockMaintenance(ctx context.Context) (unlock func(), ok bool, err error)
	// EnsureUsagePartitions creates the usage_events partitions of the months (any time in them)
	// that have none, and returns the names it created.
	EnsureUsagePartitions(ctx context.Context, months []time.Time) (created []string, err error)
	// DropUsagePartitionsBefore detaches and drops the partitions of months before month's, and
	// returns their names.
	DropUsagePartitionsBefore(ctx context.Context, month time.Time) (dropped []string, err error)
	// PruneLedger deletes at most limit rows of the ledger that its Rule lets go at cutoff (for
	// usage_cuts: cuts before cutoff), and returns how many it deleted.
	PruneLedger(ctx context.Context, ledger Ledger, cutoff time.Time, limit int) (int, error)
	// FoldUsage adds the counter events recorded since the last fold (those whose transactions
	// have all ended) to billing_usage, and returns how many it added. Folds run one at a time; a
	// second waits for the first.
	FoldUsage(ctx context.Context) (folded int64, err error)
}

// Service runs the job.
type Service struct {
	Store Store
	// RetentionMonths is USAGE_RETENTION_MONTHS: the usage partitions of this many months before
	// the current one are kept (0: DefaultRetentionMonths).
	RetentionMonths int
	// Batch is how many rows one DELETE removes (0: DefaultBatch).
	Batch int
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Report is what one run did. Ran is false when another run held the lock (nothing was done).
type Report struct {
	Ran     bool
	Folded  int64 // counter events added to billing_usage
	Created []string
	Dropped []string
	Pruned  map[Ledger]int
}

// Month is the first instant of t's UTC month.
func Month(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// UsageCutoff is the first month whose usage is kept at now: the partitions of earlier months are
// dropped, and with them the usage_cuts of cuts before it.
func UsageCutoff(now time.Time, retentionMonths int) time.Time {
	return Month(now).AddDate(0, -retentionMonths, 0)
}

// ValidRetention checks USAGE_RETENTION_MONTHS.
func ValidRetention(months int) error {
	if months < MinRetentionMonths || months > MaxRetentionMonths {
		return fmt.Errorf("must be %d to %d months (billing reads the usage of open periods, up to a year)", MinRetentionMonths, MaxRetentionMonths)
	}
	return nil
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Run runs the job once, unless another run holds the lock. The usage fold runs first, so that
// no partition about to be dropped holds an event the counters lack (the drop refuses such a
// partition); the months from the current one to MonthsAhead after it get their usage partition;
// the partitions of months before UsageCutoff are dropped; each ledger loses the rows its Rule
// lets go, a batch at a time, until none is left.
func (s *Service) Run(ctx context.Context) (Report, error) {
	months := s.RetentionMonths
	if months == 0 {
		months = DefaultRetentionMonths
	}
	if err := ValidRetention(months); err != nil {
		return Report{}, fmt.Errorf("maintenance: retention of %d months: %w", months, err)
	}
	batch := s.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	unlock, ok, err := s.Store.TryLockMaintenance(ctx)
	if err != nil || !ok {
		return Report{}, err
	}
	defer unlock()
	now := s.now()
	r := Report{Ran: true, Pruned: map[Ledger]int{}}
	if r.Folded, err = s.Store.FoldUsage(ctx); err != nil {
		return r, fmt.Errorf("maintenance: usage fold: %w", err)
	}
	ahead := make([]time.Time, 0, MonthsAhead+1)
	for i := 0; i <= MonthsAhead; i++ {
		ahead = append(ahead, Month(now).AddDate(0, i, 0))
	}
	if r.Created, err = s.Store.EnsureUsagePartitions(ctx, ahead); err != nil {
		return r, fmt.Errorf("maintenance: usage partitions: %w", err)
	}
	cutoff := UsageCutoff(now, months)
	if r.Dropped, err = s.Store.DropUsagePartitionsBefore(ctx, cutoff); err != nil {
		return r, fmt.Errorf("maintenance: dropping usage partitions before %s: %w", cutoff.Format("2006-01"), err)
	}
	prune := func(l Ledger, before time.Time) error {
		for {
			n, err := s.Store.PruneLedger(ctx, l, before, batch)
			r.Pruned[l] += n
			if err != nil {
				return fmt.Errorf("maintenance: pruning %s: %w", l, err)
			}
			if n < batch || ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	for _, rule := range Rules {
		if err := prune(rule.Ledger, now.Add(-rule.Keep)); err != nil {
			return r, err
		}
	}
	return r, prune(UsageCuts, cutoff)
}

// RunEvery runs the job every interval until ctx ends, reporting each run.
func (s *Service) RunEvery(ctx context.Context, interval time.Duration, report func(Report, error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		r, err := s.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		report(r, err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Fold intervals: USAGE_FOLD_INTERVAL's bounds and default. Hasura's direct select of
// billing_usage trails the recorded events by up to one interval (tenantkit's own readers never do).
const (
	MinFoldInterval     = 100 * time.Millisecond
	MaxFoldInterval     = time.Minute
	DefaultFoldInterval = time.Second
)

// FoldEvery runs the usage fold every interval until ctx ends, reporting each run. A fold that
// fails is tried again at the next interval: the events stay where they are, and every reader but
// Hasura's direct select still counts them.
func FoldEvery(ctx context.Context, store Store, interval time.Duration, report func(folded int64, err error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := store.FoldUsage(ctx)
		if ctx.Err() != nil {
			return
		}
		report(n, err)
	}
}
