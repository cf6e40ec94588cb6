package billing

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"
)

// This file is the usage alerts: the owners of a tenant are emailed when its usage of a metric
// reaches 80 % and 100 % of what its effective plan allows (subscription_plans.limits): for a
// gauge (storage_gb) its latest value, for a counter (api_calls, …) its total over the period — a
// counter's limit is an allowance per period. The period is the tenant's current billing period,
// or the calendar month (UTC) when it has none. One email per tenant, metric, threshold and
// period (email_outbox.dedupe_key); the highest threshold reached is the one sent, and a lower one
// is not sent once a higher one was.
//
// Concurrent batches that cross a threshold together, neither alone: each batch checks after its
// own commit, in a new statement, so whichever check runs last sees every batch committed before
// it, the others' included; the dedupe key keeps it to one email. A check that fails (the batch is
// recorded anyway) is made good by the tenant's next batch, which checks the level, not the step.

// AlertThresholds are the percentages of a limit that alert, ascending.
var AlertThresholds = []int{80, 100}

// UsageAlertEmail is the kind of the usage alert emails.
const UsageAlertEmail EmailKind = "usage_alert"

// TenantMetric names a tenant's metric.
type TenantMetric struct{ TenantID, Metric string }

// UsageLimit is a metric a tenant's effective plan limits (UsageStore.UsageLimits).
type UsageLimit struct {
	TenantID, TenantName, Metric string
	Limit                        int64
	PeriodStart, PeriodEnd       *time.Time // the current subscription's period, when known
	Latest                       float64    // gauges: the latest value
}

// allowancePeriod is the period a counter's limit allows its quantity in, and the period an alert
// counts and is sent once in: the subscription's current period (start, end) when now lies in it,
// else the calendar month (UTC).
func allowancePeriod(start, end *time.Time, now time.Time) (from, to time.Time) {
	if start != nil && end != nil && !now.Before(*start) && now.Before(*end) {
		return *start, *end
	}
	n := now.UTC()
	from = time.Date(n.Year(), n.Month(), 1, 0, 0, 0, 0, time.UTC)
	return from, from.AddDate(0, 1, 0)
}

// crossed is the highest threshold used reaches of limit (0 when none) and the higher ones.
func crossed(used float64, limit int64) (threshold int, higher []int) {
	for i, t := range AlertThresholds {
		if used*100 >= float64(t)*float64(limit) {
			threshold, higher = t, AlertThresholds[i+1:]
		}
	}
	return threshold, higher
}

func usageAlertKey(tenantID, metric string, threshold int, from time.Time) string {
	return "usage_alert:" + tenantID + ":" + metric + ":" + strconv.Itoa(threshold) + ":" + strconv.FormatInt(from.Unix(), 10)
}

func usageAlertEmail(l UsageLimit, threshold int, used float64, from time.Time) Email {
	e := Email{Kind: UsageAlertEmail, DedupeKey: usageAlertKey(l.TenantID, l.Metric, threshold, from)}
	usage := strconv.FormatFloat(used, 'f', -1, 64)
	limit := strconv.FormatInt(l.Limit, 10)
	if threshold >= 100 {
		e.Subject = fmt.Sprintf("%s has reached its %s limit", l.TenantName, l.Metric)
		e.Text = fmt.Sprintf("%s has used %s of the %s %s its plan allows. Upgrade the plan in the billing settings "+
			"to keep adding more.\n", l.TenantName, usage, limit, l.Metric)
	} else {
		// The subject names the threshold crossed, the text the share used (it may be past it), in whole
		// percent, floored (1e-9: 0.29 × 100 is 28.999… in floating point).
		e.Subject = fmt.Sprintf("%s has used %d%% of its %s limit", l.TenantName, threshold, l.Metric)
		e.Text = fmt.Sprintf("%s has used %s of the %s %s its plan allows (%d%%). Consider upgrading the plan in the "+
			"billing settings.\n", l.TenantName, usage, limit, l.Metric, int(used*100/float64(l.Limit)+1e-9))
	}
	return e
}

// UsageAlerts checks the tenants and metrics of recorded events against their plan's limits and
// queues the alerts due (see the top of this file). It returns how many emails it queued (one per
// alert, to every owner).
func (s *Service) UsageAlerts(ctx context.Context, events []UsageEvent) (int, error) {
	seen := map[TenantMetric]bool{}
	var keys []TenantMetric
	for _, e := range events {
		k := TenantMetric{TenantID: e.TenantID, Metric: e.Metric}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return 0, nil
	}
	limits, err := s.Store.UsageLimits(ctx, keys)
	if err != nil {
		return 0, err
	}
	// Every counter's total of its alert period, in one round trip.
	now, queued := s.now(), 0
	var ranges []UsageRange
	for _, l := range limits {
		if !Gauges[l.Metric] {
			from, to := allowancePeriod(l.PeriodStart, l.PeriodEnd, now)
			ranges = append(ranges, UsageRange{TenantID: l.TenantID, Metric: l.Metric, From: from, To: to})
		}
	}
	totals, err := s.Store.UsageTotals(ctx, ranges)
	if err != nil {
		return 0, err
	}
	for _, l := range limits {
		from, _ := allowancePeriod(l.PeriodStart, l.PeriodEnd, now)
		used := l.Latest
		if !Gauges[l.Metric] {
			used, totals = totals[0], totals[1:]
		}
		threshold, higher := crossed(used, l.Limit)
		if threshold == 0 {
			continue
		}
		unless := make([]string, len(higher))
		for i, h := range higher {
			unless[i] = usageAlertKey(l.TenantID, l.Metric, h, from)
		}
		ok, err := s.Store.QueueOwnerEmail(ctx, l.TenantID, usageAlertEmail(l, threshold, used, from), unless)
		if err != nil {
			return queued, err
		}
		if ok {
			queued++
		}
	}
	return queued, nil
}

// ofMetrics is the events of the given metrics. A batch's alerts are checked for the metrics some
// plan limits only (Store.RecordUsage says which, in the transaction that records them): the others
// cannot alert, and skipping them spares a usage batch a second transaction.
func ofMetrics(events []UsageEvent, metrics []string) []UsageEvent {
	var out []UsageEvent
	for _, e := range events {
		if slices.Contains(metrics, e.Metric) {
			out = append(out, e)
		}
	}
	return out
}

// usageAlertsAfter runs UsageAlerts after a batch was recorded; a failure is logged, not returned:
// the batch stands, and the tenant's next batch checks again.
func (s *Service) usageAlertsAfter(ctx context.Context, events []UsageEvent) {
	if _, err := s.UsageAlerts(ctx, events); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("usage alerts not checked; the next batch of the tenant checks again")
	}
}
