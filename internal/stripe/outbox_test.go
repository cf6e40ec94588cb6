package stripe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/stripetest"
)

// TestOutboxCallsShapes: the outbox's Stripe calls are requests stripe-mock (Stripe's OpenAPI
// spec) accepts: the immediate cancellation with invoice_now and prorate, reading a subscription's
// licensed item, setting an item's quantity with a proration behaviour.
func TestOutboxCallsShapes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sm, err := stripetest.Start(ctx)
	if err != nil {
		t.Fatalf("stripe-mock: %v", err)
	}
	t.Cleanup(func() { _ = sm.Stop() })
	c := New(stripetest.TestKey, sm.URL)
	if err := c.CancelNow(ctx, "sub_outbox", "tk-delete-t-1-sub_outbox"); err != nil {
		t.Errorf("CancelNow: %v", err)
	}
	item, err := c.LicensedItem(ctx, "sub_outbox")
	if err != nil || item.ID == "" || item.Status == "" {
		t.Fatalf("LicensedItem = %+v, %v", item, err)
	}
	if _, err := c.SetQuantity(ctx, item.ID, 3, "tk-seats-sub_outbox-1-3"); err != nil {
		t.Errorf("SetQuantity: %v", err)
	}
}

// TestTranslateWrite: Stripe's answers to a queued write become the codes the outbox decides on.
func TestTranslateWrite(t *testing.T) {
	for _, c := range []struct {
		status int
		body   string
		want   string
	}{
		{503, `{"error":{"type":"api_error","message":"down"}}`, tenantkit.Unavailable},
		{429, `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"slow down"}}`, tenantkit.Unavailable},
		{404, `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such subscription: 'sub_x'"}}`, tenantkit.NotFound},
		{400, `{"error":{"type":"invalid_request_error","message":"A canceled subscription can only update its cancellation_details and metadata."}}`, tenantkit.Invalid},
		{401, `{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}`, tenantkit.Internal},
		{402, `{"error":{"type":"card_error","code":"card_declined","message":"declined"}}`, tenantkit.Internal},
		{400, `{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters"}}`, tenantkit.Internal},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Stripe-Should-Retry", "false")
			w.WriteHeader(c.status)
			_, _ = w.Write([]byte(c.body))
		}))
		err := New("sk_test_translate", srv.URL).CancelNow(context.Background(), "sub_x", "k")
		srv.Close()
		if got := tenantkit.ErrorCode(err); got != c.want {
			t.Errorf("%d %s: code %q, want %q (%v)", c.status, c.body, got, c.want, err)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Close() // nothing listens: unreachable
	if got := tenantkit.ErrorCode(New("sk_test_translate", srv.URL).CancelNow(context.Background(), "sub_x", "k")); got != tenantkit.Unavailable {
		t.Errorf("unreachable Stripe: code %q, want unavailable", got)
	}
}

// TestLicensedItemSkipsMetered: the licensed item is the first item whose price is not metered
// (a metered item listed before it, or one without a price, is not the plan's); a subscription
// with only a metered item has none.
func TestLicensedItemSkipsMetered(t *testing.T) {
	for _, c := range []struct {
		items        string
		wantID       string
		wantQuantity int64
	}{
		{`[{"id":"si_m","object":"subscription_item","price":{"id":"price_m","object":"price","recurring":{"interval":"month","usage_type":"metered"}}},
		   {"id":"si_l","object":"subscription_item","quantity":4,"price":{"id":"price_l","object":"price","recurring":{"interval":"month","usage_type":"licensed"}}},
		   {"id":"si_2","object":"subscription_item","quantity":9,"price":{"id":"price_2","object":"price","recurring":{"interval":"month","usage_type":"licensed"}}}]`, "si_l", 4},
		{`[{"id":"si_m","object":"subscription_item","price":{"id":"price_m","object":"price","recurring":{"interval":"month","usage_type":"metered"}}}]`, "", 0},
		{`[{"id":"si_o","object":"subscription_item","quantity":2,"price":{"id":"price_o","object":"price"}}]`, "si_o", 2},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"sub_l","object":"subscription","status":"active","items":{"object":"list","data":` + c.items + `}}`))
		}))
		item, err := New("sk_test_licensed", srv.URL).LicensedItem(context.Background(), "sub_l")
		srv.Close()
		if err != nil || item.ID != c.wantID || item.Quantity != c.wantQuantity || item.Status != "active" {
			t.Errorf("LicensedItem = %+v, %v; want id %q quantity %d status active", item, err, c.wantID, c.wantQuantity)
		}
	}
}
