package stripefake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// The list endpoints reconciliation reads (customers, events; subscriptions are in api.go), and
// webhooks that never arrive.

// eventRetention: https://docs.stripe.com/api/events/list — "List events, going back up to 30
// days"; https://docs.stripe.com/api/events/retrieve — "Retrieves the details of an event if it was
// created in the last 30 days". Measured on the double's clock.
const eventRetention = 30 * 24 * 3600

// maxEventTypes: https://docs.stripe.com/api/events/list#list_events-types — "An array of up to 20
// strings containing specific event names".
const maxEventTypes = 20

// LoseWebhooks makes the webhooks of the events not yet drained that match never arrive, as when
// every delivery attempt to the endpoint failed (Stripe retries for up to three days, then stops:
// https://docs.stripe.com/webhooks): Drain never returns them, while the events
// API still lists them, as Stripe does. It returns how many were lost.
func (s *Server) LoseWebhooks(match func(Event) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lost == nil {
		s.lost = map[string]bool{}
	}
	n := 0
	for _, e := range s.events[s.drained:] {
		if !s.lost[e.ID] && match(e) {
			s.lost[e.ID] = true
			n++
		}
	}
	return n
}

// createdFilter is the created parameter of a list: an exact Unix time, or a hash of gt, gte, lt
// and lte (https://docs.stripe.com/api/events/list#list_events-created).
type createdFilter struct {
	set                          bool // the parameter was sent
	eq                           bool // an exact time
	exact, gt, gte, lt, lte      int64
	hasGt, hasGte, hasLt, hasLte bool
	err                          error
}

func parseCreated(f *fnode) createdFilter {
	var c createdFilter
	n := f.child("created")
	if n == nil {
		return c
	}
	c.set = true
	if len(n.kids) == 0 {
		c.exact, c.eq, c.err = f.integer("", "created")
		return c
	}
	if c.err = n.only("created", "gt", "gte", "lt", "lte"); c.err != nil {
		return c
	}
	for _, p := range []struct {
		name string
		v    *int64
		has  *bool
	}{{"gt", &c.gt, &c.hasGt}, {"gte", &c.gte, &c.hasGte}, {"lt", &c.lt, &c.hasLt}, {"lte", &c.lte, &c.hasLte}} {
		if *p.v, *p.has, c.err = n.integer("created", p.name); c.err != nil {
			return c
		}
	}
	return c
}

func (c createdFilter) match(t int64) bool {
	switch {
	case !c.set:
		return true
	case c.eq:
		return t == c.exact
	}
	return (!c.hasGt || t > c.gt) && (!c.hasGte || t >= c.gte) && (!c.hasLt || t < c.lt) && (!c.hasLte || t <= c.lte)
}

// listCustomers: https://docs.stripe.com/api/customers/list — filters created and email ("A
// case-sensitive filter on the list based on the customer's email field"); newest first; paginated
// (listObject).
func (s *Server) listCustomers(f *fnode) response {
	if err := f.only("", "created", "email", "limit", "starting_after", "ending_before", "expand"); err != nil {
		return paramResp(err)
	}
	created := parseCreated(f)
	if created.err != nil {
		return paramResp(created.err)
	}
	email, hasEmail, err := f.scalar("", "email")
	if err != nil {
		return paramResp(err)
	}
	var objs []map[string]any
	for _, c := range sortNewest(s.customers, func(x *customer) int { return x.seq }) {
		if !created.match(c.created) || hasEmail && c.email != email {
			continue
		}
		objs = append(objs, c.render())
	}
	return listObject("/v1/customers", objs, f)
}

// listEvents: https://docs.stripe.com/api/events/list — events of the last 30 days, newest first,
// filtered by created, type ("A string containing a specific event name, or group of events using *
// as a wildcard") or types (up to 20 exact names; "You may pass either type or types, but not
// both"); paginated (listObject). Each event is rendered as it was created (its api_version).
func (s *Server) listEvents(f *fnode) response {
	if err := f.only("", "created", "type", "types", "limit", "starting_after", "ending_before", "expand"); err != nil {
		return paramResp(err)
	}
	created := parseCreated(f)
	if created.err != nil {
		return paramResp(created.err)
	}
	typ, hasType, err := f.scalar("", "type")
	if err != nil {
		return paramResp(err)
	}
	types, err := f.strs("", "types")
	if err != nil {
		return paramResp(err)
	}
	if hasType && f.has("types") {
		return invalid("types", "You may pass either type or types, but not both.")
	}
	if len(types) > maxEventTypes {
		return invalid("types", fmt.Sprintf("You may pass up to %d types.", maxEventTypes))
	}
	var objs []map[string]any
	for i := len(s.events) - 1; i >= 0; i-- {
		e := s.events[i]
		if e.Created < s.unix()-eventRetention || !created.match(e.Created) {
			continue
		}
		if hasType && !typeMatches(typ, e.Type) || f.has("types") && !contains(types, e.Type) {
			continue
		}
		objs = append(objs, renderEvent(e))
	}
	return listObject("/v1/events", objs, f)
}

// getEvent: https://docs.stripe.com/api/events/retrieve (events of the last 30 days).
func (s *Server) getEvent(id string, f *fnode) response {
	if err := f.only("", "expand"); err != nil {
		return paramResp(err)
	}
	for _, e := range s.events {
		if e.ID == id && e.Created >= s.unix()-eventRetention {
			return ok(renderEvent(e))
		}
	}
	return missing("event", id)
}

// typeMatches matches an event type against a type filter with * wildcards ("customer.*").
func typeMatches(pattern, typ string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == typ
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(typ, parts[0]) {
		return false
	}
	rest := typ[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return strings.HasSuffix(rest, parts[len(parts)-1])
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// renderEvent is the event object as the API renders it: its webhook payload.
func renderEvent(e Event) map[string]any {
	d := json.NewDecoder(bytes.NewReader(e.Payload))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		panic(err)
	}
	return m
}
