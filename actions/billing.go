package actions

import (
	"context"
	"time"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

type usageEventInput struct {
	TenantID       string     `json:"tenantId"`
	Metric         string     `json:"metric"`
	Quantity       float64    `json:"quantity"`
	IdempotencyKey string     `json:"idempotencyKey"`
	OccurredAt     *time.Time `json:"occurredAt"`
}

type recordUsageInput struct {
	Events []usageEventInput `json:"events"`
}

func (h *Handler) recordUsage(ctx context.Context, s tenantkit.Session, in recordUsageInput) (any, error) {
	events := make([]billing.UsageEvent, len(in.Events))
	for i, e := range in.Events {
		events[i] = billing.UsageEvent{TenantID: e.TenantID, Metric: e.Metric, Quantity: e.Quantity, IdempotencyKey: e.IdempotencyKey}
		if e.OccurredAt != nil {
			events[i].OccurredAt = *e.OccurredAt
		}
	}
	recorded, duplicates, err := h.Billing.RecordUsage(ctx, s, events)
	if err != nil {
		return nil, err
	}
	return map[string]int{"recorded": recorded, "duplicates": duplicates}, nil
}

type checkoutInput struct {
	TenantID string `json:"tenantId"`
	PlanID   string `json:"planId"`
}

func (h *Handler) createCheckoutSession(ctx context.Context, s tenantkit.Session, in checkoutInput) (any, error) {
	url, err := h.Billing.CreateCheckout(ctx, s, in.TenantID, in.PlanID)
	if err != nil {
		return nil, err
	}
	return map[string]string{"url": url}, nil
}

type tenantInput struct {
	TenantID string `json:"tenantId"`
}

func (h *Handler) createBillingPortalSession(ctx context.Context, s tenantkit.Session, in tenantInput) (any, error) {
	url, err := h.Billing.CreatePortal(ctx, s, in.TenantID)
	if err != nil {
		return nil, err
	}
	return map[string]string{"url": url}, nil
}

// subscriptionOutput is what the subscription actions answer: Stripe's view right after the change
// (the stored state follows with Stripe's webhook).
func subscriptionOutput(sub billing.Subscription) map[string]any {
	return map[string]any{"subscriptionId": sub.ID, "status": sub.Status, "cancelAtPeriodEnd": sub.CancelAtPeriodEnd,
		"currentPeriodEnd": sub.CurrentPeriodEnd}
}

func (h *Handler) cancelSubscription(ctx context.Context, s tenantkit.Session, in tenantInput) (any, error) {
	sub, err := h.Billing.SetCancelAtPeriodEnd(ctx, s, in.TenantID, true)
	if err != nil {
		return nil, err
	}
	return subscriptionOutput(sub), nil
}

func (h *Handler) resumeSubscription(ctx context.Context, s tenantkit.Session, in tenantInput) (any, error) {
	sub, err := h.Billing.SetCancelAtPeriodEnd(ctx, s, in.TenantID, false)
	if err != nil {
		return nil, err
	}
	return subscriptionOutput(sub), nil
}

func (h *Handler) changePlan(ctx context.Context, s tenantkit.Session, in checkoutInput) (any, error) {
	sub, err := h.Billing.ChangePlan(ctx, s, in.TenantID, in.PlanID)
	if err != nil {
		return nil, err
	}
	return subscriptionOutput(sub), nil
}
