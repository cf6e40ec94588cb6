package stripefake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// Event is a webhook event the double emitted.
type Event struct {
	ID      string // evt_…
	Type    string // e.g. customer.subscription.updated
	Created int64  // the double's clock, Unix seconds: events of one second tie, as with Stripe
	// Payload is the full JSON body a webhook delivery carries
	// (https://docs.stripe.com/api/events/object): id, object "event", api_version, created,
	// data.object (a snapshot of the object when the event happened, rendered as the API renders
	// it), data.previous_attributes (*.updated events), livemode, pending_webhooks, request, type.
	Payload []byte
}

// Events returns every event emitted so far, oldest first (Drain does not remove them from here).
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Drain returns the events emitted since the last Drain, oldest first, but those whose webhooks
// were lost (LoseWebhooks).
func (s *Server) Drain() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Event
	for _, e := range s.events[s.drained:] {
		if !s.lost[e.ID] {
			out = append(out, e)
		}
	}
	s.drained = len(s.events)
	return out
}

// emit queues an event with a snapshot of obj (a rendered object) and, for *.updated events, the
// previous values of what changed. https://docs.stripe.com/api/events/object:
//   - data.object: "Object containing the API resource relevant to the event";
//   - data.previous_attributes: "Object containing the names of the updated attributes and their
//     values prior to the event (only included in events of type *.updated). If an array attribute
//     has any updated elements, this object contains the entire array.";
//   - request.id / request.idempotency_key: the API request that caused the event, null when
//     Stripe caused it (automatic subscription handling: the control operations);
//   - api_version: "The Stripe API version used to render data".
func (s *Server) emit(typ string, obj map[string]any, prev map[string]any) {
	id := s.newID("evt_")
	var req map[string]any
	if s.cur != nil {
		req = map[string]any{"id": s.cur.id, "idempotency_key": nullStr(s.cur.idemKey)}
	} else {
		req = map[string]any{"id": nil, "idempotency_key": nil}
	}
	data := map[string]any{"object": obj}
	if prev != nil {
		data["previous_attributes"] = prev
	}
	created := s.unix()
	body, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": APIVersion, "created": created, "data": data,
		"livemode": false, "pending_webhooks": 1, "request": req, "type": typ,
	})
	if err != nil {
		panic(err)
	}
	s.events = append(s.events, Event{ID: id, Type: typ, Created: created, Payload: body})
}

// emitUpdated emits typ (a *.updated event) if after differs from before, with the previous
// values of what changed; it reports whether it emitted.
func (s *Server) emitUpdated(typ string, before, after map[string]any) bool {
	prev := diff(before, after)
	if len(prev) == 0 {
		return false
	}
	s.emit(typ, after, prev)
	return true
}

// diff returns the previous values of the attributes that changed from old to cur: hashes
// (JSON objects) recursively, with null for keys cur added; arrays and scalars whole
// (https://docs.stripe.com/api/events/object#event_object-data-previous_attributes).
func diff(old, cur map[string]any) map[string]any {
	out := map[string]any{}
	for k, ov := range old {
		cv, present := cur[k]
		if present && reflect.DeepEqual(ov, cv) {
			continue
		}
		om, ook := ov.(map[string]any)
		cm, cok := cv.(map[string]any)
		if ook && cok {
			if d := diff(om, cm); len(d) > 0 {
				out[k] = d
			}
			continue
		}
		out[k] = ov
	}
	for k := range cur {
		if _, present := old[k]; !present {
			out[k] = nil
		}
	}
	return out
}

// Sign returns the Stripe-Signature header for payload signed with secret at time.Now() (not the
// double's clock: webhook.ConstructEvent refuses signatures older than 5 minutes of real time).
// https://docs.stripe.com/webhooks#verify-manually: t=<timestamp>,v1=<HMAC-SHA256 of "t.payload">.
func Sign(payload []byte, secret string) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: time.Now()}).Header
}

// deliverClient posts webhooks; Stripe gives an endpoint a few seconds at most.
var deliverClient = &http.Client{Timeout: 30 * time.Second}

// Deliver posts ev to url as Stripe delivers a webhook (https://docs.stripe.com/webhooks): POST,
// Content-Type "application/json; charset=utf-8", the Stripe-Signature header, Stripe's
// User-Agent. It returns the endpoint's status; Stripe counts any 2xx as delivered and retries
// anything else.
func Deliver(url, secret string, ev Event) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(ev.Payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", Sign(ev.Payload, secret))
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	req.Header.Set("Accept", "*/*; q=0.5, application/xml")
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := deliverClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("stripefake: deliver %s %s: %w", ev.Type, ev.ID, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, nil
}
