package stripe

import (
	"context"
	"time"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit/internal/billing"
)

var _ billing.StripeAccount = (*Client)(nil)

// maxPageSize is the largest page Stripe's list endpoints return
// (https://docs.stripe.com/api/pagination: limit "can range between 1 and 100").
const maxPageSize = 100

// pageSize is the limit of each list request: PageSize when set, else 100.
func (c *Client) pageSize() int64 {
	if c.PageSize > 0 && c.PageSize < maxPageSize {
		return c.PageSize
	}
	return maxPageSize
}

// ListEvents implements billing.StripeAccount with GET /v1/events (created[gte], types[]),
// auto-paginated with starting_after (stripe-go's iterator). Each event is decoded as a webhook's
// is; one rendered in another API version than stripe-go's (the events list renders every event in
// the version of its creation: https://docs.stripe.com/api/events/list) or that does not decode is
// passed with Problem set instead. Errors: unavailable, internal.
func (c *Client) ListEvents(ctx context.Context, since time.Time, types []string, fn func(billing.ListedEvent) error) error {
	p := &stripego.EventListParams{CreatedRange: &stripego.RangeQueryParams{GreaterThanOrEqual: since.Unix()},
		Types: stripego.StringSlice(types)}
	p.Context = ctx
	p.Limit = stripego.Int64(c.pageSize())
	it := c.api.Events.List(p)
	for it.Next() {
		e := it.Event()
		le := billing.ListedEvent{ID: e.ID, Type: string(e.Type), Created: unix(e.Created), APIVersion: e.APIVersion}
		if e.APIVersion != stripego.APIVersion {
			le.Problem = "rendered in API version " + e.APIVersion + ", not " + stripego.APIVersion
		} else if ev, err := decode(*e); err != nil {
			le.Problem = "undecodable: " + err.Error()
		} else {
			le.Event = &ev
		}
		if err := fn(le); err != nil {
			return err
		}
	}
	return translate(it.Err())
}

// ListSubscriptions implements billing.StripeAccount with GET /v1/subscriptions?status=all
// ("Passing in a value of all will return subscriptions of all statuses":
// https://docs.stripe.com/api/subscriptions/list), auto-paginated. Errors: unavailable, internal.
func (c *Client) ListSubscriptions(ctx context.Context, fn func(billing.Subscription) error) error {
	p := &stripego.SubscriptionListParams{Status: stripego.String("all")}
	p.Context = ctx
	p.Limit = stripego.Int64(c.pageSize())
	it := c.api.Subscriptions.List(p)
	for it.Next() {
		if err := fn(subscription(it.Subscription())); err != nil {
			return err
		}
	}
	return translate(it.Err())
}

// ListCustomers implements billing.StripeAccount with GET /v1/customers, auto-paginated.
// Errors: unavailable, internal.
func (c *Client) ListCustomers(ctx context.Context, fn func(billing.StripeCustomer) error) error {
	p := &stripego.CustomerListParams{}
	p.Context = ctx
	p.Limit = stripego.Int64(c.pageSize())
	it := c.api.Customers.List(p)
	for it.Next() {
		cus := it.Customer()
		if err := fn(billing.StripeCustomer{ID: cus.ID, TenantHint: cus.Metadata["tenant_id"]}); err != nil {
			return err
		}
	}
	return translate(it.Err())
}
