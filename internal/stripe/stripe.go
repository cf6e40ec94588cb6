// Package stripe is tenantkit's Stripe adapter: the few stripe-go v76 calls billing makes, each
// with a deterministic idempotency key derived from our own ids, and one translation of Stripe and
// network errors into tenantkit errors (unreachable, 429 and 5xx are unavailable).
package stripe

import (
	"context"
	"errors"
	"net/http"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tenantkit/tenantkit"
)

// Client calls Stripe (or stripe-mock, when apiURL is set).
type Client struct {
	api *client.API
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

// translate maps Stripe and network errors to tenantkit errors.
func translate(err error) error {
	var se *stripego.Error
	if !errors.As(err, &se) || se.HTTPStatusCode >= 500 || se.HTTPStatusCode == http.StatusTooManyRequests {
		return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "billing is unavailable, try again later", Err: err}
	}
	return &tenantkit.Error{Code: tenantkit.Internal, Message: "billing request refused", Err: err}
}
