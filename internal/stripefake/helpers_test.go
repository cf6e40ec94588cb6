package stripefake

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// start is the double's clock in tests: 31 January, so monthly periods exercise the end-of-month
// clamping (29 February 2024, then 31 March).
var start = time.Date(2024, 1, 31, 12, 0, 0, 0, time.UTC)

const testSecret = "whsec_stripefake_test"

func newFake(t *testing.T) (*Server, *client.API) {
	t.Helper()
	sf := New(Options{Now: start, IDTag: "T"})
	t.Cleanup(sf.Close)
	return sf, newClient(sf, 0)
}

// newClient is a stripe-go v76 client of sf, configured as the brief and the service configure
// theirs.
func newClient(sf *Server, retries int64) *client.API {
	hc := &http.Client{Timeout: 10 * time.Second}
	b := func(t stripe.SupportedBackend) stripe.Backend {
		return stripe.GetBackendWithConfig(t, &stripe.BackendConfig{
			URL: stripe.String(sf.URL), HTTPClient: hc, MaxNetworkRetries: stripe.Int64(retries),
			LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
		})
	}
	return client.New(TestKey, &stripe.Backends{API: b(stripe.APIBackend), Connect: b(stripe.ConnectBackend), Uploads: b(stripe.UploadsBackend)})
}

// catalog is a product with a licensed basic and pro price and a metered api_calls price.
type catalog struct {
	product, basic, pro, metered string
}

func makeCatalog(t *testing.T, sc *client.API) catalog {
	t.Helper()
	prod, err := sc.Products.New(&stripe.ProductParams{Name: stripe.String("Plans")})
	if err != nil {
		t.Fatal(err)
	}
	price := func(amount int64, lookup string) string {
		p, err := sc.Prices.New(&stripe.PriceParams{Product: stripe.String(prod.ID), Currency: stripe.String("usd"),
			UnitAmount: stripe.Int64(amount), Recurring: &stripe.PriceRecurringParams{Interval: stripe.String("month")},
			LookupKey: stripe.String(lookup)})
		if err != nil {
			t.Fatal(err)
		}
		return p.ID
	}
	c := catalog{product: prod.ID, basic: price(1000, "basic_month"), pro: price(2500, "pro_month")}
	m, err := sc.Prices.New(&stripe.PriceParams{Product: stripe.String(prod.ID), Currency: stripe.String("usd"),
		UnitAmountDecimal: stripe.Float64(0.05),
		Recurring: &stripe.PriceRecurringParams{Interval: stripe.String("month"), UsageType: stripe.String("metered"),
			AggregateUsage: stripe.String("sum")}})
	if err != nil {
		t.Fatal(err)
	}
	c.metered = m.ID
	return c
}

// subscribe creates a customer and checkout session through the API and completes the session.
func subscribe(t *testing.T, sf *Server, sc *client.API, c catalog, trialDays int64) (cus, sub string) {
	t.Helper()
	customer, err := sc.Customers.New(&stripe.CustomerParams{Name: stripe.String("Acme"), Email: stripe.String("ops@acme.test"),
		Metadata: map[string]string{"tenant_id": "t1"}})
	if err != nil {
		t.Fatal(err)
	}
	p := &stripe.CheckoutSessionParams{
		Mode: stripe.String("subscription"), Customer: stripe.String(customer.ID), ClientReferenceID: stripe.String("t1"),
		LineItems:        []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(c.basic), Quantity: stripe.Int64(1)}, {Price: stripe.String(c.metered)}},
		Metadata:         map[string]string{"tenant_id": "t1", "plan_id": "basic"},
		SubscriptionData: &stripe.CheckoutSessionSubscriptionDataParams{Metadata: map[string]string{"tenant_id": "t1", "plan_id": "basic"}},
		SuccessURL:       stripe.String("https://app.test/ok"), CancelURL: stripe.String("https://app.test/cancel"),
	}
	if trialDays > 0 {
		p.SubscriptionData.TrialPeriodDays = stripe.Int64(trialDays)
	}
	cs, err := sc.CheckoutSessions.New(p)
	if err != nil {
		t.Fatal(err)
	}
	done, err := sf.CompleteCheckout(cs.ID)
	if err != nil {
		t.Fatal(err)
	}
	return customer.ID, done.Subscription.ID
}

// raw sends a request without stripe-go and decodes the JSON answer.
func raw(t *testing.T, sf *Server, method, path string, form url.Values, auth, idemKey string) (int, http.Header, map[string]any) {
	t.Helper()
	var body io.Reader
	if form != nil {
		if method == http.MethodGet {
			path += "?" + form.Encode()
		} else {
			body = strings.NewReader(form.Encode())
		}
	}
	req, err := http.NewRequest(method, sf.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: body is not JSON: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, m
}

// stripeErr asserts err is a *stripe.Error with the status and type.
func stripeErr(t *testing.T, err error, status int, typ stripe.ErrorType) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("want a *stripe.Error (%d %s), got %v", status, typ, err)
	}
	if se.HTTPStatusCode != status || se.Type != typ {
		t.Fatalf("want %d %s, got %d %s: %s", status, typ, se.HTTPStatusCode, se.Type, se.Msg)
	}
	return se
}

func types(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func eventObject(t *testing.T, ev Event, v any) map[string]any {
	t.Helper()
	var body struct {
		Data struct {
			Object   json.RawMessage `json:"object"`
			Previous map[string]any  `json:"previous_attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(ev.Payload, &body); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body.Data.Object, v); err != nil {
		t.Fatalf("%s %s: data.object does not decode into %T: %v", ev.Type, ev.ID, v, err)
	}
	return body.Data.Previous
}
