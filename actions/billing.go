package actions

import (
	"context"
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
