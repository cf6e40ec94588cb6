package actions

import (
	"bytes"
	"context"
	"strconv"
	"time"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

type usageEventInput struct {
	TenantID       tenantkit.ID `json:"tenantId"`
	Metric         string       `json:"metric"`
	Quantity       float64      `json:"quantity"`
	IdempotencyKey string       `json:"idempotencyKey"`
	OccurredAt     *time.Time   `json:"occurredAt"`
}

type recordUsageInput struct {
	Events []usageEventInput `json:"events"`
}

// decodePlain decodes the plain form of the input (plainjson.go): {"events": [...]} with "events"
// spelt so, once, and each event an object whose keys are among tenantId, metric, quantity,
// idempotencyKey and occurredAt, spelt so, each at most once; strings without escapes, quantity a
// JSON number within float64's range, occurredAt null or a string time.Time's UnmarshalJSON
// takes. False for anything else, a null elsewhere included.
func (in *recordUsageInput) decodePlain(raw []byte) bool {
	raw = bytes.TrimRight(raw[skipSpace(raw, 0):], " \t\r\n")
	var events bool
	return plainMembers(raw, func(key, v []byte) bool {
		if string(key) != "events" || events || len(v) == 0 || v[0] != '[' {
			return false
		}
		events = true
		// Every event holds a '{': a cheap bound on their number, within a batch's size.
		in.Events = make([]usageEventInput, 0, min(bytes.Count(v, []byte("{")), billing.MaxBatch))
		var d plainUsage
		return plainArray(v, func(obj []byte) bool {
			var e usageEventInput
			if !d.event(obj, &e, cap(in.Events)-len(in.Events)) {
				return false
			}
			in.Events = append(in.Events, e)
			return true
		})
	}) && events
}

// plainUsage decodes the events of recordUsage's plain input. The events of a batch mostly share
// a tenant and a metric: a literal equal to the previous event's reuses its value.
type plainUsage struct {
	tenant lastValue[tenantkit.ID]
	metric lastValue[string]
	times  []time.Time // room for the occurredAt values to come
}

// lastValue is the value of the last plain string literal decoded, kept for the next literal
// that repeats it.
type lastValue[T any] struct {
	lit []byte // nil before the first
	val T
}

// of decodes v, a plain string literal (plainBytes), with parse, unless it repeats the last one.
func (l *lastValue[T]) of(v []byte, parse func(s []byte) (T, bool)) (T, bool) {
	s, ok := plainBytes(v)
	if ok && (l.lit == nil || !bytes.Equal(s, l.lit)) {
		var val T
		if val, ok = parse(s); ok {
			l.val, l.lit = val, s
		}
	}
	return l.val, ok
}

func parseTenantID(s []byte) (tenantkit.ID, bool) {
	id, err := tenantkit.ParseID("tenantId", string(s))
	return id, err == nil
}

func parseMetric(s []byte) (string, bool) { return string(s), true }

// event decodes obj, one event in the plain form, into e (zero); room is how many events, this
// one included, the slice holds without growing.
func (d *plainUsage) event(obj []byte, e *usageEventInput, room int) bool {
	var seen uint8
	return plainMembers(obj, func(key, v []byte) bool {
		var bit uint8
		switch string(key) {
		case "tenantId":
			bit = 1
			var ok bool
			if e.TenantID, ok = d.tenant.of(v, parseTenantID); !ok {
				return false
			}
		case "metric":
			bit = 2
			var ok bool
			if e.Metric, ok = d.metric.of(v, parseMetric); !ok {
				return false
			}
		case "quantity":
			bit = 4
			if !validNumber(v) {
				return false
			}
			q, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return false
			}
			e.Quantity = q
		case "idempotencyKey":
			bit = 8
			s, ok := plainString(v)
			if !ok {
				return false
			}
			e.IdempotencyKey = s
		case "occurredAt":
			bit = 16
			if string(v) == "null" {
				break
			}
			if _, ok := plainBytes(v); !ok {
				return false
			}
			if len(d.times) == 0 {
				d.times = make([]time.Time, max(room, 1))
			}
			e.OccurredAt, d.times = &d.times[0], d.times[1:]
			if e.OccurredAt.UnmarshalJSON(v) != nil {
				return false
			}
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	})
}

type recordUsageOutput struct {
	Recorded   int `json:"recorded"`
	Duplicates int `json:"duplicates"`
}

func (h *Handler) recordUsage(ctx context.Context, s tenantkit.Session, in recordUsageInput) (recordUsageOutput, error) {
	events := make([]billing.UsageEvent, len(in.Events))
	for i, e := range in.Events {
		events[i] = billing.UsageEvent{TenantID: string(e.TenantID), Metric: e.Metric, Quantity: e.Quantity, IdempotencyKey: e.IdempotencyKey}
		if e.OccurredAt != nil {
			events[i].OccurredAt = *e.OccurredAt
		}
	}
	recorded, duplicates, err := h.Billing.RecordUsage(ctx, s, events)
	if err != nil {
		return recordUsageOutput{}, err
	}
	return recordUsageOutput{Recorded: recorded, Duplicates: duplicates}, nil
}

type checkoutInput struct {
	TenantID tenantkit.ID `json:"tenantId"`
	PlanID   tenantkit.ID `json:"planId"`
}

func (h *Handler) createCheckoutSession(ctx context.Context, s tenantkit.Session, in checkoutInput) (billingSessionOutput, error) {
	url, err := h.Billing.CreateCheckout(ctx, s, string(in.TenantID), string(in.PlanID))
	if err != nil {
		return billingSessionOutput{}, err
	}
	return billingSessionOutput{URL: url}, nil
}

type billingSessionOutput struct {
	URL string `json:"url"`
}

type tenantInput struct {
	TenantID tenantkit.ID `json:"tenantId"`
}

func (h *Handler) createBillingPortalSession(ctx context.Context, s tenantkit.Session, in tenantInput) (billingSessionOutput, error) {
	url, err := h.Billing.CreatePortal(ctx, s, string(in.TenantID))
	if err != nil {
		return billingSessionOutput{}, err
	}
	return billingSessionOutput{URL: url}, nil
}

// subscriptionOutput is what the subscription actions answer: Stripe's view right after the change
// (the stored state, and with it the tenant's plan and limits, follows with Stripe's webhook).
type subscriptionOutput struct {
	SubscriptionID    string        `json:"subscriptionId"`
	Status            string        `json:"status"`
	CancelAtPeriodEnd bool          `json:"cancelAtPeriodEnd"`
	CurrentPeriodEnd  time.Time     `json:"currentPeriodEnd"`
	PlanID            *tenantkit.ID `json:"planId"` // the plan of the billed price; null when none is linked
	Quantity          int64         `json:"quantity"`
}

func newSubscriptionOutput(v billing.SubscriptionView) subscriptionOutput {
	out := subscriptionOutput{SubscriptionID: v.ID, Status: v.Status, CancelAtPeriodEnd: v.CancelAtPeriodEnd,
		CurrentPeriodEnd: v.CurrentPeriodEnd, Quantity: v.Quantity}
	if v.Plan != "" {
		id := tenantkit.ID(v.Plan)
		out.PlanID = &id
	}
	return out
}

func (h *Handler) cancelSubscription(ctx context.Context, s tenantkit.Session, in tenantInput) (subscriptionOutput, error) {
	sub, err := h.Billing.SetCancelAtPeriodEnd(ctx, s, string(in.TenantID), true)
	if err != nil {
		return subscriptionOutput{}, err
	}
	return newSubscriptionOutput(sub), nil
}

func (h *Handler) resumeSubscription(ctx context.Context, s tenantkit.Session, in tenantInput) (subscriptionOutput, error) {
	sub, err := h.Billing.SetCancelAtPeriodEnd(ctx, s, string(in.TenantID), false)
	if err != nil {
		return subscriptionOutput{}, err
	}
	return newSubscriptionOutput(sub), nil
}

type changePlanInput struct {
	TenantID tenantkit.ID `json:"tenantId"`
	PlanID   tenantkit.ID `json:"planId"`
	// ProrationDate is previewPlanChange's prorationDate, to apply exactly what it previewed.
	ProrationDate *time.Time `json:"prorationDate"`
}

func (h *Handler) changePlan(ctx context.Context, s tenantkit.Session, in changePlanInput) (subscriptionOutput, error) {
	sub, err := h.Billing.ChangePlan(ctx, s, string(in.TenantID), string(in.PlanID), in.ProrationDate)
	if err != nil {
		return subscriptionOutput{}, err
	}
	return newSubscriptionOutput(sub), nil
}

// planChangePreviewOutput is previewPlanChange's answer: amounts in the currency's smallest unit.
type planChangePreviewOutput struct {
	PlanID             tenantkit.ID `json:"planId"`
	Currency           string       `json:"currency"`
	ProrationDate      time.Time    `json:"prorationDate"`
	Proration          int64        `json:"proration"`
	AmountDueNow       int64        `json:"amountDueNow"`
	AmountDueAtRenewal int64        `json:"amountDueAtRenewal"`
	RenewsAt           time.Time    `json:"renewsAt"`
}

func (h *Handler) previewPlanChange(ctx context.Context, s tenantkit.Session, in checkoutInput) (planChangePreviewOutput, error) {
	p, err := h.Billing.PreviewPlanChange(ctx, s, string(in.TenantID), string(in.PlanID))
	if err != nil {
		return planChangePreviewOutput{}, err
	}
	return planChangePreviewOutput{PlanID: tenantkit.ID(p.PlanID), Currency: p.Currency, ProrationDate: p.ProrationDate,
		Proration: p.Proration, AmountDueNow: p.AmountDueNow, AmountDueAtRenewal: p.AmountDueAtRenewal, RenewsAt: p.RenewsAt}, nil
}
