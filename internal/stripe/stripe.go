// Package stripe is tenantkit's Stripe adapter: the few stripe-go v76 calls billing makes, each
// with a deterministic idempotency key derived from our own ids, and one translation of Stripe and
// network errors into tenantkit errors (unreachable, 429 and 5xx are unavailable).
package stripe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

// Client calls Stripe (or stripe-mock, when apiURL is set).
type Client struct {
	api *client.API
	// PageSize is how many objects each list request asks for; 0 (or more than 100) means 100.
	PageSize int64
}

// New returns a client for the secret key; apiURL overrides Stripe's API address (STRIPE_API_URL,
// stripe-mock in development and tests). Calls time out after 20 s and are retried once on a
// network error, with the same idempotency key.
func New(secretKey, apiURL string) *Client {
	cfg := func() *stripego.BackendConfig {
		c := &stripego.BackendConfig{
			HTTPClient:        &http.Client{Timeout: 20 * time.Second},
			MaxNetworkRetries: stripego.Int64(1),
			EnableTelemetry:   stripego.Bool(false),
			LeveledLogger:     &stripego.LeveledLogger{Level: stripego.LevelNull},
		}
		if apiURL != "" {
			c.URL = stripego.String(apiURL)
		}
		return c
	}
	return &Client{api: client.New(secretKey, &stripego.Backends{
		API:     stripego.GetBackendWithConfig(stripego.APIBackend, cfg()),
		Connect: stripego.GetBackendWithConfig(stripego.ConnectBackend, cfg()),
		Uploads: stripego.GetBackendWithConfig(stripego.UploadsBackend, cfg()),
	})}
}

// CreateCustomer creates the Stripe customer of a tenant. Its idempotency key is derived from the
// tenant id, so repeated calls (duplicate event deliveries, retries) create one customer.
// Errors: unavailable, internal.
func (c *Client) CreateCustomer(ctx context.Context, tenantID, name string) (string, error) {
	p := &stripego.CustomerParams{
		Name:     stripego.String(name),
		Metadata: map[string]string{"tenant_id": tenantID},
	}
	p.Context = ctx
	p.SetIdempotencyKey("tk-customer-" + tenantID)
	cus, err := c.api.Customers.New(p)
	if err != nil {
		return "", translate(err)
	}
	return cus.ID, nil
}

// EnsurePrice finds the plan's price by its lookup key, or creates the product and price, and
// returns their ids. A price whose amount, currency or interval no longer match the plan is
// replaced: the new price takes over the lookup key (transfer_lookup_key). Idempotency keys name
// the plan and its price terms, so concurrent or repeated syncs create one product and one price.
// Errors: unavailable, internal.
func (c *Client) EnsurePrice(ctx context.Context, p billing.PlanPrice) (productID, priceID string, err error) {
	lookup := "tenantkit_" + p.Key + "_" + p.Interval
	lp := &stripego.PriceListParams{LookupKeys: stripego.StringSlice([]string{lookup}), Active: stripego.Bool(true)}
	lp.Context = ctx
	it := c.api.Prices.List(lp)
	for it.Next() {
		pr := it.Price()
		if pr.LookupKey == lookup && pr.UnitAmount == p.UnitAmount && string(pr.Currency) == p.Currency &&
			pr.Recurring != nil && string(pr.Recurring.Interval) == p.Interval && pr.Product != nil {
			return pr.Product.ID, pr.ID, nil
		}
	}
	if err := it.Err(); err != nil {
		return "", "", translate(err)
	}
	productID = p.ProductID
	if productID == "" {
		pp := &stripego.ProductParams{Name: stripego.String(p.Name), Metadata: map[string]string{"plan_key": p.Key}}
		pp.Context = ctx
		pp.SetIdempotencyKey("tk-product-" + p.Key)
		prod, err := c.api.Products.New(pp)
		if err != nil {
			return "", "", translate(err)
		}
		productID = prod.ID
	}
	np := &stripego.PriceParams{
		Product:           stripego.String(productID),
		Currency:          stripego.String(p.Currency),
		UnitAmount:        stripego.Int64(p.UnitAmount),
		Recurring:         &stripego.PriceRecurringParams{Interval: stripego.String(p.Interval)},
		LookupKey:         stripego.String(lookup),
		TransferLookupKey: stripego.Bool(true),
		Nickname:          stripego.String(p.Name),
		Metadata:          map[string]string{"plan_key": p.Key},
	}
	np.Context = ctx
	np.SetIdempotencyKey(fmt.Sprintf("tk-price-%s-%s-%d-%s-%s", p.Key, productID, p.UnitAmount, p.Currency, p.Interval))
	price, err := c.api.Prices.New(np)
	if err != nil {
		return "", "", translate(err)
	}
	return productID, price.ID, nil
}

// EnsureMeteredPrice finds or creates the plan's metered api_calls price on its product (lookup
// key tenantkit_<key>_api_calls_<interval>). Errors: unavailable, internal.
func (c *Client) EnsureMeteredPrice(ctx context.Context, p billing.PlanPrice) (string, error) {
	lookup := "tenantkit_" + p.Key + "_api_calls_" + p.Interval
	unit, err := strconv.ParseFloat(p.APICallsUnitAmount, 64)
	if err != nil {
		return "", err
	}
	lp := &stripego.PriceListParams{LookupKeys: stripego.StringSlice([]string{lookup}), Active: stripego.Bool(true)}
	lp.Context = ctx
	it := c.api.Prices.List(lp)
	for it.Next() {
		pr := it.Price()
		if pr.LookupKey == lookup && pr.UnitAmountDecimal == unit && string(pr.Currency) == p.Currency &&
			pr.Recurring != nil && pr.Recurring.UsageType == stripego.PriceRecurringUsageTypeMetered {
			return pr.ID, nil
		}
	}
	if err := it.Err(); err != nil {
		return "", translate(err)
	}
	np := &stripego.PriceParams{
		Product:           stripego.String(p.ProductID),
		Currency:          stripego.String(p.Currency),
		UnitAmountDecimal: stripego.Float64(unit),
		Recurring: &stripego.PriceRecurringParams{Interval: stripego.String(p.Interval),
			UsageType: stripego.String("metered"), AggregateUsage: stripego.String("sum")},
		LookupKey:         stripego.String(lookup),
		TransferLookupKey: stripego.Bool(true),
		Nickname:          stripego.String(p.Name + " API calls"),
		Metadata:          map[string]string{"plan_key": p.Key, "metric": "api_calls"},
	}
	np.Context = ctx
	np.SetIdempotencyKey(fmt.Sprintf("tk-metered-%s-%s-%s-%s-%s", p.Key, p.ProductID, p.APICallsUnitAmount, p.Currency, p.Interval))
	price, err := c.api.Prices.New(np)
	if err != nil {
		return "", translate(err)
	}
	return price.ID, nil
}

// ReportUsage sets the usage of a metered subscription item for the period starting at
// periodStart to total (action "set" at that one timestamp, so re-running reports once). The
// idempotency key names the item, period and total. Errors: unavailable, internal.
func (c *Client) ReportUsage(ctx context.Context, itemID string, periodStart time.Time, total int64) error {
	p := &stripego.UsageRecordParams{
		SubscriptionItem: stripego.String(itemID),
		Quantity:         stripego.Int64(total),
		Timestamp:        stripego.Int64(periodStart.Unix()),
		Action:           stripego.String(stripego.UsageRecordActionSet),
	}
	p.Context = ctx
	p.SetIdempotencyKey(fmt.Sprintf("tk-usage-%s-%d-%d", itemID, periodStart.Unix(), total))
	_, err := c.api.UsageRecords.New(p)
	return translate(err)
}

// CreateCheckoutSession starts a subscription checkout for a tenant's customer. The tenant and
// plan travel in client_reference_id, metadata and subscription_data.metadata (the webhooks read
// them back). The customer may redeem promotion codes (allow_promotion_codes); with s.AutomaticTax,
// Stripe Tax computes tax on the session and the subscription (automatic_tax), and Checkout saves
// the address the customer enters on the customer (customer_update[address]=auto: Stripe refuses
// automatic tax for a customer without an address otherwise, customer_tax_location_invalid).
//
// The idempotency key names the tenant, plan, tax setting, seats and minute, so a retried click within a
// minute returns the same session. When that session is no longer open (completed or expired: a
// checkout right after a subscription ended in the same minute), the next one is made (or, when an
// earlier checkout made it, replayed) under a key naming the old session, and so on along the
// chain until an open session. Errors: unavailable, internal.
func (c *Client) CreateCheckoutSession(ctx context.Context, s billing.Checkout) (string, error) {
	meta := map[string]string{"tenant_id": s.TenantID, "plan_id": s.PlanID}
	p := &stripego.CheckoutSessionParams{
		Mode:                stripego.String(string(stripego.CheckoutSessionModeSubscription)),
		Customer:            stripego.String(s.CustomerID),
		ClientReferenceID:   stripego.String(s.TenantID),
		LineItems:           lineItems(s),
		Metadata:            meta,
		SubscriptionData:    &stripego.CheckoutSessionSubscriptionDataParams{Metadata: meta},
		SuccessURL:          stripego.String(s.SuccessURL),
		CancelURL:           stripego.String(s.CancelURL),
		AllowPromotionCodes: stripego.Bool(true),
	}
	if s.AutomaticTax {
		p.AutomaticTax = &stripego.CheckoutSessionAutomaticTaxParams{Enabled: stripego.Bool(true)}
		p.CustomerUpdate = &stripego.CheckoutSessionCustomerUpdateParams{Address: stripego.String("auto")}
	}
	p.Context = ctx
	key := fmt.Sprintf("tk-checkout-%s-%s-%d-tax%t-q%d", s.TenantID, s.PlanID, s.At.Unix()/60, s.AutomaticTax, max(s.Quantity, 1))
	p.SetIdempotencyKey(key)
	cs, err := c.api.CheckoutSessions.New(p)
	for link := 0; err == nil && replayed(cs.LastResponse); link++ {
		// Stripe replayed the answer it gave when the session was made; ask how it is now.
		gp := &stripego.CheckoutSessionParams{}
		gp.Context = ctx
		now, gerr := c.api.CheckoutSessions.Get(cs.ID, gp)
		if gerr != nil {
			return "", translate(gerr)
		}
		if now.Status == stripego.CheckoutSessionStatusOpen {
			break
		}
		if link == maxCheckoutChain {
			return "", tenantkit.Errorf(tenantkit.Unavailable, "%d checkouts of this plan within a minute: try again in a minute", link+1)
		}
		// The replayed session is over: follow the chain of keys to the session after it, which
		// a checkout earlier in this minute may have made (and completed) already.
		p.SetIdempotencyKey(key + "-after-" + cs.ID)
		cs, err = c.api.CheckoutSessions.New(p)
	}
	if err != nil {
		return "", translate(err)
	}
	return cs.URL, nil
}

// maxCheckoutChain bounds how many sessions of one tenant, plan and minute CreateCheckoutSession
// follows before it gives up: each link is a checkout completed or expired within that minute.
const maxCheckoutChain = 8

// replayed reports whether Stripe answered from its idempotency store (response header
// Idempotent-Replayed: true) rather than running the request.
func replayed(r *stripego.APIResponse) bool {
	return r != nil && r.Header.Get("Idempotent-Replayed") == "true"
}

// CreatePortalSession opens Stripe's billing portal for a customer. A retry within the same minute
// gets the same session (idempotency key per customer and minute). Errors: unavailable, internal.
func (c *Client) CreatePortalSession(ctx context.Context, customerID, returnURL string) (string, error) {
	p := &stripego.BillingPortalSessionParams{Customer: stripego.String(customerID), ReturnURL: stripego.String(returnURL)}
	p.Context = ctx
	p.SetIdempotencyKey(fmt.Sprintf("tk-portal-%s-%d", customerID, time.Now().Unix()/60))
	ps, err := c.api.BillingPortalSessions.New(p)
	if err != nil {
		return "", translate(err)
	}
	return ps.URL, nil
}

// SetCancelAtPeriodEnd schedules (true) or withdraws (false) a subscription's cancellation at the
// end of its period. intent names this one request (billing.Store.RecordIntent), so that a later
// request never replays an earlier response while stripe-go's retries of this one do.
// Errors: unavailable, invalid (Stripe refused the change), internal.
func (c *Client) SetCancelAtPeriodEnd(ctx context.Context, subscriptionID string, cancel bool, intent string) (billing.Subscription, error) {
	p := &stripego.SubscriptionParams{CancelAtPeriodEnd: stripego.Bool(cancel)}
	p.Context = ctx
	p.SetIdempotencyKey(fmt.Sprintf("tk-cancel-%s-%t-%s", subscriptionID, cancel, intent))
	sub, err := c.api.Subscriptions.Update(subscriptionID, p)
	if err != nil {
		return billing.Subscription{}, translateUpdate(err)
	}
	return subscription(sub), nil
}

func lineItems(s billing.Checkout) []*stripego.CheckoutSessionLineItemParams {
	items := []*stripego.CheckoutSessionLineItemParams{{Price: stripego.String(s.PriceID), Quantity: stripego.Int64(max(s.Quantity, 1))}}
	if s.MeteredPriceID != "" { // metered prices take no quantity
		items = append(items, &stripego.CheckoutSessionLineItemParams{Price: stripego.String(s.MeteredPriceID)})
	}
	return items
}

// translate maps Stripe and network errors to tenantkit errors (nil stays nil). No answer of
// Stripe's becomes internal (a 500 for the caller): unreachable, 5xx, 429 (rate limited) and 409
// (an idempotency key in use, a lock timeout, still so after stripe-go's retries) are unavailable,
// to retry; any other 4xx is Stripe refusing a request tenantkit built (a wrong or restricted key:
// 401, 403; an object Stripe does not know; a parameter it refuses), which the caller cannot fix
// either: unavailable too, with Stripe's answer kept in the wrapped error, which the service logs
// for the operator. Calls whose refusals the caller can act on refine this (translateUpdate).
func translate(err error) error {
	if err == nil {
		return nil
	}
	var se *stripego.Error
	if !errors.As(err, &se) || se.HTTPStatusCode >= 500 || se.HTTPStatusCode == http.StatusTooManyRequests ||
		se.HTTPStatusCode == http.StatusConflict {
		return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "billing is unavailable, try again later", Err: err}
	}
	return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "billing is unavailable: Stripe refused the request (its answer is logged for the operator)", Err: err}
}

// translateUpdate is translate for a change of a subscription the tenant asked for:
//   - 400 resource_missing naming an item (items[i][id]): the item was removed meanwhile (a
//     concurrent change): conflict, so that billing plans the change again;
//   - any other 400 invalid_request_error: Stripe refusing the change for the subscription's state
//     (a canceled subscription "can only update its cancellation_details and metadata"), not our
//     fault: invalid;
//   - 402 (a payment the change needed was declined): invalid, with what to do.
//
// Stripe's message stays in the wrapped error (logged), out of the user's text: it names
// parameters and ids. An idempotency_error (a key reused with other parameters) and everything else
// are as translate says.
func translateUpdate(err error) error {
	var se *stripego.Error
	if errors.As(err, &se) {
		switch {
		case se.HTTPStatusCode == http.StatusBadRequest && se.Code == stripego.ErrorCodeResourceMissing && strings.HasPrefix(se.Param, "items["):
			return &tenantkit.Error{Code: tenantkit.Conflict, Message: "the subscription changed while it was being updated; try again", Err: err}
		case se.HTTPStatusCode == http.StatusBadRequest && se.Type == stripego.ErrorTypeInvalidRequest:
			return &tenantkit.Error{Code: tenantkit.Invalid,
				Message: "Stripe refused the change: the subscription may have ended or changed, reload and try again", Err: err}
		case se.HTTPStatusCode == http.StatusPaymentRequired:
			return &tenantkit.Error{Code: tenantkit.Invalid,
				Message: "the payment this change needs was declined: update the payment method in the billing portal, then try again", Err: err}
		}
	}
	return translate(err)
}
