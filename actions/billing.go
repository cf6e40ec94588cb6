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
// (the stored state follows with Stripe's webhook).
type subscriptionOutput struct {
	SubscriptionID    string    `json:"subscriptionId"`
	Status            string    `json:"status"`
	CancelAtPeriodEnd bool      `json:"cancelAtPeriodEnd"`
	CurrentPeriodEnd  time.Time `json:"currentPeriodEnd"`
}

func newSubscriptionOutput(sub billing.Subscription) subscriptionOutput {
	return subscriptionOutput{SubscriptionID: sub.ID, Status: sub.Status, CancelAtPeriodEnd: sub.CancelAtPeriodEnd,
		CurrentPeriodEnd: sub.CurrentPeriodEnd}
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

func (h *Handler) changePlan(ctx context.Context, s tenantkit.Session, in checkoutInput) (subscriptionOutput, error) {
	sub, err := h.Billing.ChangePlan(ctx, s, string(in.TenantID), string(in.PlanID))
	if err != nil {
		return subscriptionOutput{}, err
	}
	return newSubscriptionOutput(sub), nil
}
