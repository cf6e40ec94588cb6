// Package billing is the domain of plans, Stripe subscriptions, usage metering and SaaS metrics:
// validation and the rules of who may see and report what, over a Store that persists them under
// RLS or on the explicit system path.
package billing

import (
	"context"
	"maps"
	"math"
	"regexp"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tenantkit/tenantkit"
)

// MaxBatch is the most usage events one call may record.
const MaxBatch = 1000

// Gauges are metrics whose value is a level, not a count: a period keeps the latest observation
// instead of the sum. Every other metric is a counter.
var Gauges = map[string]bool{"storage_gb": true}

// The time an event may claim (occurredAt), relative to when it is recorded: up to MaxEventAge
// before, up to MaxEventSkew after.
const (
	MaxEventAge  = 35 * 24 * time.Hour
	MaxEventSkew = 5 * time.Minute
)

// UsageIdempotencyMonths is how many UTC months before the current one a retry's idempotency key
// is looked for, besides the current month (usage events are partitioned by the month they are
// recorded in). An event that names its occurredAt is also looked for from the month of
// occurredAt minus MaxEventSkew on, which holds every earlier copy of it: such an event is
// recorded once, whenever it is retried (a retry is accepted while occurredAt is within
// MaxEventAge). An event without occurredAt (it gets the time of each attempt) is recorded once
// when it is retried within the month of its first recording or the next one: at least 28 days.
const UsageIdempotencyMonths = 1

// UsageBoundaryWindow is how close to a UTC month's start or end (either side) recording a usage
// event first claims its idempotency key in a table without the month in its key: the lookup in
// earlier months sees committed events only, so two attempts of one event in flight at once on both
// sides of a month's end would otherwise both be recorded. It must exceed the longest a recording
// transaction can last (three statements, each bounded by the statement timeout, 25 s by default).
const UsageBoundaryWindow = time.Hour

// UsageEvent is one usage observation reported by a trusted backend (or counted by tenantkit).
type UsageEvent struct {
	TenantID       string
	Metric         string
	Quantity       float64
	IdempotencyKey string
	OccurredAt     time.Time
}

// UsageTotal is a metric's total (counters) or latest value (gauges) over a period.
type UsageTotal struct {
	Metric      string
	PeriodStart time.Time
	PeriodEnd   time.Time
	Quantity    float64
}

// Metrics are the platform's SaaS metrics.
type Metrics struct {
	TenantsTotal, TenantsActive, TenantsTrialing, TenantsPastDue int
	UsersTotal                                                   int
	TenantsCreated30d                                            int
	// TenantsChurned30d counts tenants whose current Stripe subscription ended (Stripe's ended_at)
	// in the last 30 days: a cancellation requested for the period end counts when the period ends.
	TenantsChurned30d    int
	AverageTenantAgeDays float64
	// MRR is computed by Service.Metrics from Recurring (see MonthlyRecurring).
	MRR []MRR
	// Recurring is what the Store reads: the billed subscriptions (BilledStatuses) with known
	// price terms, grouped by currency and billing interval.
	Recurring []Recurring
	// UnpricedSubscriptions are billed subscriptions whose price terms are unknown (stored before
	// tenantkit kept them, or a price without a single unit amount): not in MRR. `tenantkit stripe
	// reconcile` fills in the price terms of the former.
	UnpricedSubscriptions int
}

// BilledStatuses are the subscription statuses MRR counts: Stripe invoices them (past_due while
// it retries). Trials, and everything that ended or waits, are not revenue.
var BilledStatuses = []string{"active", "past_due"}

// Recurring is the recurring amount of a group of subscriptions billed in one currency every
// IntervalCount Intervals: the sum of unit amount × quantity of their licensed items.
type Recurring struct {
	Currency, Interval string
	IntervalCount      int64
	Amount             float64
	Subscriptions      int
}

// MRR is monthly recurring revenue in one currency, in its smallest unit, and how many
// subscriptions it comes from.
type MRR struct {
	Currency      string
	Amount        int64
	Subscriptions int
}

// monthsPer is the length of a billing interval in months.
var monthsPer = map[string]float64{"day": 12.0 / 365, "week": 12.0 * 7 / 365, "month": 1, "year": 12}

// MonthlyRecurring normalises recurring amounts to one month, per currency: an amount billed
// every n intervals is divided by n × the interval's length in months (a year is 12 months, a week
// 7/365 of a year, a day 1/365). Each currency's total is rounded to its smallest unit once.
// Groups with an interval it does not know are left out.
func MonthlyRecurring(groups []Recurring) []MRR {
	sums := map[string]*struct {
		amount float64
		subs   int
	}{}
	for _, g := range groups {
		months, ok := monthsPer[g.Interval]
		if !ok || g.IntervalCount < 1 {
			continue
		}
		c := sums[g.Currency]
		if c == nil {
			c = &struct {
				amount float64
				subs   int
			}{}
			sums[g.Currency] = c
		}
		c.amount += g.Amount / (months * float64(g.IntervalCount))
		c.subs += g.Subscriptions
	}
	out := make([]MRR, 0, len(sums))
	for _, cur := range slices.Sorted(maps.Keys(sums)) {
		out = append(out, MRR{Currency: cur, Amount: int64(math.Round(sums[cur].amount)), Subscriptions: sums[cur].subs})
	}
	return out
}

// Store persists billing data.
type Store interface {
	UsageStore // usage.go
	// RecordUsage records each event once (by tenant and idempotency key) and returns how many were
	// new, and which of the batch's metrics some plan limits, read in the same transaction (the
	// metrics UsageAlerts is about). A batch naming a tenant that does not exist is refused whole
	// (invalid).
	RecordUsage(ctx context.Context, events []UsageEvent) (recorded int, limited []string, err error)
	// MemberCount returns the number of the tenant's members (pending invitations do not count).
	MemberCount(ctx context.Context, tenantID string) (int64, error)
	// Usage returns the tenant's totals per metric and period (granularity "hour", "day" or
	// "month", UTC) in [from, to), as far as the caller may read them.
	Usage(ctx context.Context, s tenantkit.Session, tenantID string, from, to time.Time, granularity string) ([]UsageTotal, error)
	// Customer returns the tenant's name and Stripe customer id ("" when none); not_found when the
	// tenant does not exist (system path).
	Customer(ctx context.Context, tenantID string) (name, customerID string, err error)
	// SetCustomer records the tenant's Stripe customer id, unless one is set already.
	SetCustomer(ctx context.Context, tenantID, customerID string) error
	// ApplyStripeEvent records the event and applies it in one transaction: it finds the tenant
	// the event is about only through ids tenantkit created or recorded (the tenant's customer, a
	// subscription already linked), locks it, loads its Account and the Catalog, saves what decide
	// returns (the subscription, the tenant's current subscription and plan, the emails to its
	// owners) and records the event id with the outcome. An event recorded before returns
	// Outcome Duplicate, one that names no tenant NotOurs, both without calling decide. When
	// decide asks for a fetch (NeedFetch) nothing is written and the decision is returned.
	ApplyStripeEvent(ctx context.Context, ev StripeEvent, decide func(Account, Catalog) Decision) (Decision, error)
	// PlanPrices returns the active plans; PlanPrice one active plan (not_found otherwise).
	PlanPrices(ctx context.Context) ([]PlanPrice, error)
	PlanPrice(ctx context.Context, planID string) (PlanPrice, error)
	// StripeSubscription returns the tenant's current Stripe subscription id and its status as last
	// applied from Stripe's events (both "" when the tenant has none).
	StripeSubscription(ctx context.Context, tenantID string) (subscriptionID, status string, err error)
	// RecordIntent records a change about to be requested from Stripe for the subscription and
	// returns its number, unique and never reused: the request's idempotency key includes it.
	RecordIntent(ctx context.Context, subscriptionID, intent string) (seq int64, err error)
	// PlansOfPrices returns the plan of each of the prices linked to one (licensed or metered,
	// current or replaced); prices linked to none are absent.
	PlansOfPrices(ctx context.Context, priceIDs []string) (map[string]string, error)
	// LinkPlan records a plan's Stripe product, price and metered price ("" when none).
	LinkPlan(ctx context.Context, planID, productID, priceID, meteredPriceID string) error
	// KnownTenants returns which of the ids are existing tenants (system path).
	KnownTenants(ctx context.Context, ids []string) (map[string]bool, error)
	// Metrics computes the platform metrics at now (system path).
	Metrics(ctx context.Context, now time.Time) (Metrics, error)
	// Entitlement reads the tenant's effective plan (tenantkit.entitlement), subscription and
	// usage of every metric the effective plan limits, under the caller's session: ok is false when
	// the caller is not a member, or the tenant does not exist, which it does not tell apart.
	Entitlement(ctx context.Context, s tenantkit.Session, tenantID string) (st Standing, ok bool, err error)
	// Feature reads, under the caller's session, the entitlement reason and whether the effective
	// plan, or any active plan, has the flag; ok as for Entitlement.
	Feature(ctx context.Context, s tenantkit.Session, tenantID, flag string) (st FeatureStanding, ok bool, err error)
}

// Stripe is what billing needs from Stripe (internal/stripe implements it).
type Stripe interface {
	// CreateCustomer creates the tenant's customer; repeated calls for one tenant create one.
	CreateCustomer(ctx context.Context, tenantID, name string) (customerID string, err error)
	// GetSubscription reads a subscription's current state.
	GetSubscription(ctx context.Context, id string) (Subscription, error)
	// EnsurePrice finds or creates the plan's product and price.
	EnsurePrice(ctx context.Context, p PlanPrice) (productID, priceID string, err error)
	// EnsureMeteredPrice finds or creates the plan's metered api_calls price (p.ProductID set).
	EnsureMeteredPrice(ctx context.Context, p PlanPrice) (priceID string, err error)
	// ReportUsage sets a subscription item's usage total for the period starting at periodStart.
	ReportUsage(ctx context.Context, itemID string, periodStart time.Time, total int64) error
	// CreateCheckoutSession returns the URL of a subscription checkout.
	CreateCheckoutSession(ctx context.Context, c Checkout) (url string, err error)
	// CreatePortalSession returns the URL of the customer's billing portal.
	CreatePortalSession(ctx context.Context, customerID, returnURL string) (url string, err error)
	// SetCancelAtPeriodEnd schedules or withdraws the cancellation at period end. intent names
	// this one request (Store.RecordIntent): retries of it replay, no other request does.
	SetCancelAtPeriodEnd(ctx context.Context, subscriptionID string, cancel bool, intent string) (Subscription, error)
	// UpdateItems changes the subscription's items as u says; u.Intent as for
	// SetCancelAtPeriodEnd. Errors: as SetCancelAtPeriodEnd, and conflict when an item u names is no
	// longer the subscription's (changed meanwhile).
	UpdateItems(ctx context.Context, u ItemsUpdate) (Subscription, error)
	// PreviewInvoice previews the subscription's next invoice as if u were applied; nothing changes.
	PreviewInvoice(ctx context.Context, u ItemsUpdate) (InvoicePreview, error)
}

// Service implements billing. Stripe is nil when STRIPE_SECRET_KEY is unset: billing is then off.
type Service struct {
	Store     Store
	Stripe    Stripe
	Authorize tenantkit.Authorize // who may manage a tenant's billing
	AppURL    string              // Stripe redirects back under it
	// AutomaticTax (STRIPE_AUTOMATIC_TAX) turns on Stripe Tax in checkouts, and so on the
	// subscriptions they create.
	AutomaticTax bool
	Now          func() time.Time
	// Count, when set, adds one to a named counter on /metrics (stripe_event_<outcome>,
	// stripe_unknown_price).
	Count func(name string)
}

// EnsureCustomer gives the tenant a Stripe customer unless it has one: called by the tenant
// created event trigger, and before any checkout. Without Stripe configured it does nothing.
// Errors: not_found (no such tenant), unavailable.
func (s *Service) EnsureCustomer(ctx context.Context, tenantID string) (string, error) {
	if s.Stripe == nil {
		return "", nil
	}
	name, customer, err := s.Store.Customer(ctx, tenantID)
	if err != nil || customer != "" {
		return customer, err
	}
	// No transaction is open across this call: read, call Stripe, then write.
	customer, err = s.Stripe.CreateCustomer(ctx, tenantID, name)
	if err != nil {
		return "", err
	}
	return customer, s.Store.SetCustomer(ctx, tenantID, customer)
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

var metricPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// RecordUsage records a batch of usage events from a trusted backend: the session's Hasura role
// must be "service" (or "admin"). Each event is applied once by (tenant, idempotencyKey); a
// repeated batch changes nothing. The batch is all-or-nothing. Errors: forbidden, invalid (also
// for an unknown tenant), unavailable.
func (s *Service) RecordUsage(ctx context.Context, sess tenantkit.Session, events []UsageEvent) (recorded, duplicates int, err error) {
	if r := sess.Role(); r != "service" && r != "admin" {
		return 0, 0, tenantkit.Errorf(tenantkit.Forbidden, "usage is reported by trusted backends (Hasura role service)")
	}
	if len(events) == 0 || len(events) > MaxBatch {
		return 0, 0, tenantkit.Errorf(tenantkit.Invalid, "a batch holds 1 to %d events", MaxBatch)
	}
	now := s.now()
	for i := range events {
		e := &events[i]
		switch {
		case uuid.Validate(e.TenantID) != nil:
			return 0, 0, tenantkit.Errorf(tenantkit.Invalid, "event %d: tenantId must be a UUID", i)
		case !metricPattern.MatchString(e.Metric):
			return 0, 0, tenantkit.Errorf(tenantkit.Invalid, "event %d: metric must be lowercase letters, digits and underscores", i)
		case e.Quantity < 0 || e.Quantity > 1e12 || e.Quantity != e.Quantity:
			return 0, 0, tenantkit.Errorf(tenantkit.Invalid, "event %d: quantity must be between 0 and 1e12", i)
		case e.IdempotencyKey == "" || len(e.IdempotencyKey) > 255:
			return 0, 0, tenantkit.Errorf(tenantkit.Invalid, "event %d: idempotencyKey must be 1 to 255 characters", i)
		}
		if e.OccurredAt.IsZero() {
			e.OccurredAt = now
		}
		if e.OccurredAt.After(now.Add(MaxEventSkew)) || e.OccurredAt.Before(now.Add(-MaxEventAge)) {
			return 0, 0, tenantkit.Errorf(tenantkit.Invalid, "event %d: occurredAt must be within the last 35 days", i)
		}
	}
	recorded, limited, err := s.Store.RecordUsage(ctx, events)
	if err == nil && recorded > 0 { // a retry of what is already recorded moves no total
		s.usageAlertsAfter(ctx, ofMetrics(events, limited)) // after the commit: see alerts.go
	}
	return recorded, len(events) - recorded, err
}

// Usage returns a tenant's usage per metric and period to its members: granularity "hour",
// "day" (default) or "month"; the range defaults to the current UTC month and spans at most 400
// days. Counters are summed; gauges report the highest hourly value of the period. A non-member
// gets an empty list, whether or not the tenant exists. Errors: unauthenticated, invalid.
func (s *Service) Usage(ctx context.Context, sess tenantkit.Session, tenantID string, from, to *time.Time, granularity string) ([]UsageTotal, error) {
	if uuid.Validate(sess.UserID()) != nil {
		return nil, tenantkit.Errorf(tenantkit.Unauthenticated, "sign in first")
	}
	if uuid.Validate(tenantID) != nil {
		return nil, tenantkit.Errorf(tenantkit.Invalid, "tenantId must be a UUID")
	}
	switch granularity {
	case "":
		granularity = "day"
	case "hour", "day", "month":
	default:
		return nil, tenantkit.Errorf(tenantkit.Invalid, "granularity must be hour, day or month")
	}
	now := s.now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 1, 0)
	if from != nil {
		start = *from
	}
	if to != nil {
		end = *to
	}
	if !end.After(start) || end.Sub(start) > 400*24*time.Hour {
		return nil, tenantkit.Errorf(tenantkit.Invalid, "the range must be positive and at most 400 days")
	}
	return s.Store.Usage(ctx, sess, tenantID, start, end, granularity)
}

// Metrics returns the platform's SaaS metrics to platform administrators (Hasura role admin).
// Errors: forbidden, unavailable.
func (s *Service) Metrics(ctx context.Context, sess tenantkit.Session) (Metrics, error) {
	if sess.Role() != "admin" {
		return Metrics{}, tenantkit.Errorf(tenantkit.Forbidden, "platform administrators only")
	}
	m, err := s.Store.Metrics(ctx, s.now())
	m.MRR = MonthlyRecurring(m.Recurring)
	return m, err
}
