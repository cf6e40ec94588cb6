package stripe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	stripego "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

// maxWebhookBody bounds a webhook request; Stripe's events are far smaller.
const maxWebhookBody = 1 << 20

// maxClockSkew is how far ahead of this machine's clock a signature's timestamp may be. stripe-go
// refuses signatures older than webhook.DefaultTolerance (5 minutes) but accepts any from the
// future, so a signed request captured with (or forged under a leaked secret with) a future
// timestamp would stay replayable until then. Five minutes each way bounds the replay window as
// Stripe's tolerance meant to, and leaves room for clocks that disagree.
const maxClockSkew = webhook.DefaultTolerance

// Webhook serves POST /webhooks/stripe: the signature is verified before anything else (400 and
// nothing written when it fails, or when its timestamp is more than 5 minutes old or ahead), then
// the event is applied once, in any order. 2xx when applied (or applied before, or of a type
// billing ignores); 400 when the event cannot be decoded or holds a value the database refuses (a
// retry would fail alike); 5xx when a retry may succeed, so Stripe retries.
type Webhook struct {
	Secret  string // STRIPE_WEBHOOK_SECRET
	Billing interface {
		ApplyStripeEvent(ctx context.Context, ev billing.StripeEvent) (outcome string, err error)
	}
}

func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := zerolog.Ctx(r.Context())
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		writeStatus(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	ev, err := webhook.ConstructEvent(body, r.Header.Get("Stripe-Signature"), h.Secret)
	if err != nil {
		// Signature, age and API version failures alike; the event endpoint must be created with
		// API version 2023-10-16 (README, "Connecting Stripe").
		log.Warn().Err(err).Msg("stripe webhook refused")
		writeStatus(w, http.StatusBadRequest, "invalid signature or API version")
		return
	}
	if at, ok := signedAt(r.Header.Get("Stripe-Signature")); !ok || time.Until(at) > maxClockSkew {
		log.Warn().Time("signed_at", at).Msg("stripe webhook refused: signature timestamp in the future")
		writeStatus(w, http.StatusBadRequest, "invalid signature or API version")
		return
	}
	log.UpdateContext(func(c zerolog.Context) zerolog.Context {
		return c.Str("stripe_event", ev.ID).Str("type", string(ev.Type))
	})
	be, err := decode(ev)
	if err != nil {
		log.Error().Err(err).Msg("stripe event undecodable")
		writeStatus(w, http.StatusBadRequest, "undecodable event")
		return
	}
	outcome, err := h.Billing.ApplyStripeEvent(r.Context(), be)
	if err != nil {
		code := tenantkit.ErrorCode(err)
		log.Error().Err(err).Str("code", code).Msg("stripe event not applied; Stripe will retry")
		status := http.StatusInternalServerError
		switch code {
		case tenantkit.Unavailable:
			status = http.StatusServiceUnavailable
		case tenantkit.Invalid:
			status = http.StatusBadRequest // refused for good: the same event would be refused again
		}
		writeStatus(w, status, tenantkit.ErrorMessage(err))
		return
	}
	log.UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("outcome", outcome) })
	writeStatus(w, http.StatusOK, "ok")
}

// signedAt is the timestamp of a Stripe-Signature header ("t=1495999758,v1=…,v0=…") read as
// stripe-go's parseSignatureHeader reads it, so that it is the one the signature covers: pairs
// split on "," and "=", the last "t" wins. ok is false when there is none.
func signedAt(header string) (at time.Time, ok bool) {
	for _, pair := range strings.Split(header, ",") {
		k, v, found := strings.Cut(pair, "=")
		if !found || k != "t" {
			continue
		}
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		at, ok = time.Unix(t, 0), true
	}
	return at, ok
}

func writeStatus(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": msg})
}

// maxUnix is the last second of year 9999. Stripe's timestamps are far inside [0, maxUnix]; beyond
// it PostgreSQL refuses a timestamp, or pgx's conversion to microseconds overflows into another date.
const maxUnix = 253402300799

// decode reduces a Stripe event to what billing applies.
func decode(ev stripego.Event) (billing.StripeEvent, error) {
	out := billing.StripeEvent{ID: ev.ID, Type: string(ev.Type), Created: time.Unix(ev.Created, 0).UTC()}
	if ev.Data == nil {
		return out, errors.New("event without data")
	}
	if ev.Created < 0 || ev.Created > maxUnix {
		return out, fmt.Errorf("created %d out of range", ev.Created)
	}
	switch {
	case strings.HasPrefix(out.Type, "customer.subscription."):
		var s stripego.Subscription
		if err := json.Unmarshal(ev.Data.Raw, &s); err != nil {
			return out, err
		}
		for _, t := range []int64{s.Created, s.CurrentPeriodStart, s.CurrentPeriodEnd, s.TrialEnd, s.CancelAt, s.CanceledAt, s.EndedAt} {
			if t < 0 || t > maxUnix {
				return out, fmt.Errorf("subscription timestamp %d out of range", t)
			}
		}
		sub := subscription(&s)
		out.Subscription = &sub
	case out.Type == "checkout.session.completed":
		var cs stripego.CheckoutSession
		if err := json.Unmarshal(ev.Data.Raw, &cs); err != nil {
			return out, err
		}
		out.Checkout = &billing.CheckoutSession{ID: cs.ID, ClientReferenceID: cs.ClientReferenceID}
		if cs.Customer != nil {
			out.Checkout.CustomerID = cs.Customer.ID
		}
		if cs.Subscription != nil {
			out.Checkout.SubscriptionID = cs.Subscription.ID
		}
	case strings.HasPrefix(out.Type, "invoice."):
		var in stripego.Invoice
		if err := json.Unmarshal(ev.Data.Raw, &in); err != nil {
			return out, err
		}
		out.Invoice = &billing.Invoice{ID: in.ID, AttemptCount: in.AttemptCount}
		if in.Subscription != nil {
			out.Invoice.SubscriptionID = in.Subscription.ID
		}
		if in.Customer != nil {
			out.Invoice.CustomerID = in.Customer.ID
		}
	}
	return out, nil
}

// subscription maps stripe-go's subscription to billing's: the licensed item's price is the plan,
// a metered item is where usage goes.
func subscription(s *stripego.Subscription) billing.Subscription {
	sub := billing.Subscription{
		ID: s.ID, Status: string(s.Status), CancelAtPeriodEnd: s.CancelAtPeriodEnd,
		CurrentPeriodStart: unix(s.CurrentPeriodStart), CurrentPeriodEnd: unix(s.CurrentPeriodEnd),
		TrialEnd: optUnix(s.TrialEnd), CancelAt: optUnix(s.CancelAt), CanceledAt: optUnix(s.CanceledAt),
		EndedAt: optUnix(s.EndedAt), Created: unix(s.Created),
		PlanID: s.Metadata["plan_id"], // a hint only; metadata.tenant_id is never read (anyone can set it)
	}
	if s.Customer != nil {
		sub.CustomerID = s.Customer.ID
	}
	if s.Items != nil {
		for _, it := range s.Items.Data {
			if it.Price == nil {
				continue
			}
			item := billing.Item{ID: it.ID, PriceID: it.Price.ID, Quantity: it.Quantity}
			if r := it.Price.Recurring; r != nil {
				item.Metered, item.Interval = r.UsageType == stripego.PriceRecurringUsageTypeMetered, string(r.Interval)
			}
			sub.Items = append(sub.Items, item)
			if item.Metered {
				sub.UsageItemID = it.ID
			} else if sub.PriceID == "" {
				sub.PriceID, sub.Quantity = it.Price.ID, it.Quantity
				sub.Currency = string(it.Price.Currency)
				if r := it.Price.Recurring; r != nil {
					sub.Interval, sub.IntervalCount = string(r.Interval), r.IntervalCount
				}
				// unit_amount_decimal is the exact amount (unit_amount rounds it); a tiered price has none.
				if it.Price.BillingScheme != stripego.PriceBillingSchemeTiered {
					amount := it.Price.UnitAmountDecimal
					if amount == 0 {
						amount = float64(it.Price.UnitAmount)
					}
					sub.UnitAmount = &amount
				}
			}
		}
	}
	return sub
}

// GetSubscription implements billing.Stripe. Errors: unavailable, internal.
func (c *Client) GetSubscription(ctx context.Context, id string) (billing.Subscription, error) {
	p := &stripego.SubscriptionParams{}
	p.Context = ctx
	s, err := c.api.Subscriptions.Get(id, p)
	if err != nil {
		return billing.Subscription{}, translate(err)
	}
	return subscription(s), nil
}

func unix(s int64) time.Time { return time.Unix(s, 0).UTC() }

func optUnix(s int64) *time.Time {
	if s == 0 {
		return nil
	}
	t := unix(s)
	return &t
}
