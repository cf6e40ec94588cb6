package stripe

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/stripetest"
)

const testSecret = "whsec_test_0123456789"

// recordingBilling stands in for billing.Service: it records the events the webhook hands on.
type recordingBilling struct {
	mu     sync.Mutex
	events []billing.StripeEvent
}

func (b *recordingBilling) ApplyStripeEvent(_ context.Context, ev billing.StripeEvent) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, ev)
	return "ignored", nil
}

func (b *recordingBilling) applied() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.events)
}

// payload is an event of a type billing ignores, in the API version stripe-go v76 pins.
func payload(id string) []byte {
	return stripetest.Event(stripego.APIVersion, id, "customer.tax_id.created", time.Now().Unix(),
		map[string]any{"id": "txi_1", "object": "tax_id"})
}

// signed signs body with the endpoint's secret as Stripe would have at t
// (webhook.GenerateTestSignedPayload, the signer stripe-go provides for tests).
func signed(body []byte, secret string, t time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: t}).Header
}

func deliver(t *testing.T, h *Webhook, body []byte, signature string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if signature != "" {
		req.Header.Set("Stripe-Signature", signature)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestWebhookSignatureTimestamp(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) (*Webhook, *recordingBilling) {
		t.Helper()
		b := &recordingBilling{}
		return &Webhook{Secret: testSecret, Billing: b}, b
	}

	for _, tc := range []struct {
		name   string
		offset time.Duration
		want   int
	}{
		{"signed now is applied", 0, http.StatusOK},
		{"signed 30 s ahead (clock skew) is applied", 30 * time.Second, http.StatusOK},
		{"signed 4 min ahead is applied", 4 * time.Minute, http.StatusOK},
		{"signed 4 min ago is applied", -4 * time.Minute, http.StatusOK},
		{"signed 6 min ahead is refused", 6 * time.Minute, http.StatusBadRequest},
		{"signed an hour ahead is refused", time.Hour, http.StatusBadRequest},
		{"signed a year ahead is refused", 365 * 24 * time.Hour, http.StatusBadRequest},
		{"signed 6 min ago is refused", -6 * time.Minute, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, b := setup(t)
			body := payload("evt_skew")
			rec := deliver(t, h, body, signed(body, testSecret, time.Now().Add(tc.offset)))
			if rec.Code != tc.want {
				t.Fatalf("status %d %s, want %d", rec.Code, rec.Body, tc.want)
			}
			wantApplied := 0
			if tc.want == http.StatusOK {
				wantApplied = 1
			}
			if n := b.applied(); n != wantApplied {
				t.Errorf("%d events handed to billing, want %d", n, wantApplied)
			}
		})
	}

	t.Run("a future timestamp is refused like a bad signature", func(t *testing.T) {
		t.Parallel()
		h, _ := setup(t)
		body := payload("evt_same")
		future := deliver(t, h, body, signed(body, testSecret, time.Now().Add(time.Hour)))
		wrong := deliver(t, h, body, signed(body, "whsec_not_the_endpoint_secret", time.Now()))
		if future.Code != wrong.Code || future.Body.String() != wrong.Body.String() {
			t.Errorf("future: %d %q; wrong secret: %d %q", future.Code, future.Body, wrong.Code, wrong.Body)
		}
	})

	t.Run("the timestamp checked is the one signed when t repeats", func(t *testing.T) {
		t.Parallel()
		// stripe-go reads the last t= of the header and verifies the signature against it.
		h, b := setup(t)
		body := payload("evt_two_t")
		now, future := time.Now(), time.Now().Add(time.Hour)
		sig := hex.EncodeToString(webhook.ComputeSignature(future, body, testSecret))
		header := fmt.Sprintf("t=%d,t=%d,v1=%s", now.Unix(), future.Unix(), sig)
		if rec := deliver(t, h, body, header); rec.Code != http.StatusBadRequest || b.applied() != 0 {
			t.Errorf("status %d, %d applied; want 400 and none", rec.Code, b.applied())
		}
		sig = hex.EncodeToString(webhook.ComputeSignature(now, body, testSecret))
		header = fmt.Sprintf("t=%d,t=%d,v1=%s", future.Unix(), now.Unix(), sig)
		if rec := deliver(t, h, body, header); rec.Code != http.StatusOK || b.applied() != 1 {
			t.Errorf("status %d %s, %d applied; want 200 and one", rec.Code, rec.Body, b.applied())
		}
	})
}

func TestSignedAt(t *testing.T) {
	t.Parallel()
	for header, want := range map[string]int64{
		"t=1495999758,v1=abc":          1495999758,
		"v1=abc,t=1495999758,v0=def":   1495999758,
		"t=1,t=1495999758,v1=abc":      1495999758,
		"t=-5,v1=abc":                  -5,
		"v1=abc":                       -1,
		"":                             -1,
		"t=soon,v1=abc":                -1,
		"t=99999999999999999999,v1=ab": -1,
	} {
		at, ok := signedAt(header)
		if (want == -1) == ok || (ok && at.Unix() != want) {
			t.Errorf("signedAt(%q) = %v, %v; want %d", header, at.Unix(), ok, want)
		}
	}
}
