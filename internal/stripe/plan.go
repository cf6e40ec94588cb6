package stripe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

// itemParams translates billing's item changes into Stripe's items[…] (the same shape for an
// update and an upcoming-invoice preview).
func itemParams(changes []billing.ItemChange) []*stripego.SubscriptionItemsParams {
	out := make([]*stripego.SubscriptionItemsParams, 0, len(changes))
	for _, c := range changes {
		p := &stripego.SubscriptionItemsParams{}
		if c.ID != "" {
			p.ID = stripego.String(c.ID)
		}
		if c.Delete {
			p.Deleted = stripego.Bool(true)
			if c.ClearUsage {
				p.ClearUsage = stripego.Bool(true)
			}
		}
		if c.PriceID != "" {
			p.Price = stripego.String(c.PriceID)
		}
		if c.Quantity > 0 {
			p.Quantity = stripego.Int64(c.Quantity)
		}
		out = append(out, p)
	}
	return out
}

// UpdateItems implements billing.Stripe: POST /v1/subscriptions/{id} with items[…],
// proration_behavior, proration_date (when set) and metadata.plan_id. The idempotency key names the
// subscription, the plan and the intent (billing.Store.RecordIntent), so a later request never
// replays an earlier response while stripe-go's retries of this one do. Errors: see translateUpdate.
func (c *Client) UpdateItems(ctx context.Context, u billing.ItemsUpdate) (billing.Subscription, error) {
	p := &stripego.SubscriptionParams{
		Items:             itemParams(u.Items),
		ProrationBehavior: stripego.String(u.ProrationBehavior),
		Metadata:          map[string]string{"plan_id": u.PlanID},
	}
	if !u.ProrationDate.IsZero() {
		p.ProrationDate = stripego.Int64(u.ProrationDate.Unix())
	}
	p.Context = ctx
	p.SetIdempotencyKey(fmt.Sprintf("tk-plan-%s-%s-%s", u.SubscriptionID, u.PlanID, u.Intent))
	sub, err := c.api.Subscriptions.Update(u.SubscriptionID, p)
	if err != nil {
		return billing.Subscription{}, translateUpdate(err)
	}
	return subscription(sub), nil
}

// PreviewInvoice implements billing.Stripe with GET /v1/invoices/upcoming (stripe-go v76 pins API
// version 2023-10-16, which has no POST /v1/invoices/create_preview): subscription,
// subscription_items, subscription_proration_behavior and, when set, subscription_proration_date.
// Every line is read: when the invoice holds more than its first page of lines, the rest come from
// GET /v1/invoices/upcoming/lines. A subscription Stripe will not invoice again answers
// invoice_upcoming_none: invalid. Errors: see translateUpdate.
func (c *Client) PreviewInvoice(ctx context.Context, u billing.ItemsUpdate) (billing.InvoicePreview, error) {
	p := &stripego.InvoiceUpcomingParams{
		Subscription:                  stripego.String(u.SubscriptionID),
		SubscriptionItems:             itemParams(u.Items),
		SubscriptionProrationBehavior: stripego.String(u.ProrationBehavior),
	}
	if !u.ProrationDate.IsZero() {
		p.SubscriptionProrationDate = stripego.Int64(u.ProrationDate.Unix())
	}
	p.Context = ctx
	inv, err := c.api.Invoices.Upcoming(p)
	if err != nil {
		var se *stripego.Error
		if errors.As(err, &se) && se.HTTPStatusCode == http.StatusNotFound && se.Code == stripego.ErrorCodeInvoiceUpcomingNone {
			return billing.InvoicePreview{}, &tenantkit.Error{Code: tenantkit.Invalid,
				Message: "Stripe will not invoice this subscription again, so there is nothing to preview", Err: err}
		}
		return billing.InvoicePreview{}, translateUpdate(err)
	}
	out := billing.InvoicePreview{Currency: string(inv.Currency), Total: inv.Total, StartingBalance: inv.StartingBalance}
	if inv.SubscriptionProrationDate != 0 {
		out.ProrationDate = time.Unix(inv.SubscriptionProrationDate, 0).UTC()
	}
	line := func(l *stripego.InvoiceLineItem) billing.InvoiceLine {
		il := billing.InvoiceLine{Amount: l.Amount, Proration: l.Proration}
		if l.Period != nil {
			il.PeriodStart = time.Unix(l.Period.Start, 0).UTC()
		}
		return il
	}
	if inv.Lines == nil || !inv.Lines.HasMore {
		if inv.Lines != nil {
			for _, l := range inv.Lines.Data {
				out.Lines = append(out.Lines, line(l))
			}
		}
		return out, nil
	}
	var lineItems []*stripego.InvoiceUpcomingLinesSubscriptionItemParams
	for _, i := range p.SubscriptionItems {
		lineItems = append(lineItems, &stripego.InvoiceUpcomingLinesSubscriptionItemParams{
			ID: i.ID, Price: i.Price, Quantity: i.Quantity, Deleted: i.Deleted, ClearUsage: i.ClearUsage})
	}
	lp := &stripego.InvoiceUpcomingLinesParams{
		Subscription:                  p.Subscription,
		SubscriptionItems:             lineItems,
		SubscriptionProrationBehavior: p.SubscriptionProrationBehavior,
		SubscriptionProrationDate:     stripego.Int64(inv.SubscriptionProrationDate),
	}
	if inv.SubscriptionProrationDate == 0 {
		lp.SubscriptionProrationDate = p.SubscriptionProrationDate
	}
	lp.Context = ctx
	lp.Limit = stripego.Int64(100)
	it := c.api.Invoices.UpcomingLines(lp)
	for it.Next() {
		out.Lines = append(out.Lines, line(it.InvoiceLineItem()))
	}
	if err := it.Err(); err != nil {
		return billing.InvoicePreview{}, translateUpdate(err)
	}
	return out, nil
}
