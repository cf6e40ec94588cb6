// Package stripefake is a stateful Stripe test double for stripe-go v76 (API version 2023-10-16).
//
// It is an httptest.Server that stripe-go clients are pointed at exactly as at stripe-mock (the
// base URL, without /v1; STRIPE_API_URL for the service). stripe-mock (internal/stripetest) stays
// the check of request shapes; this double adds what stripe-mock cannot: state (customers,
// products, prices, checkout and portal sessions, subscriptions, invoices, usage records),
// idempotency-key replays, refusals, injected failures, and the webhook events Stripe would send
// for its own state changes, stamped with the double's clock.
//
// What customers, the billing portal, the Dashboard and Stripe's billing cycle do (complete a
// checkout, change a plan in the portal, fail a renewal payment…) are Go methods on the Server,
// not API endpoints. Each emits the events Stripe would, in the order its state changes happen;
// tests take them with Drain (or Events), sign them with Sign and post them with Deliver.
//
// Every behaviour names the Stripe documentation page it follows next to its code. Where Stripe's
// documentation says nothing (exact error messages, the order of events sent in the same second)
// the comment says so.
//
// Endpoints (form-encoded as stripe-go sends them; nested keys such as items[0][price],
// metadata[k], lookup_keys[0] or lookup_keys[]; parameters the double does not model are refused
// as Stripe refuses unknown ones, so nothing is silently ignored):
//
//	POST   /v1/customers        GET /v1/customers (created, email)   GET /v1/customers/{id}
//	GET    /v1/events (created, type, types)              GET /v1/events/{id}
//	POST   /v1/products                                   GET /v1/products/{id}
//	POST   /v1/prices            GET /v1/prices (lookup_keys, active, product, …)   GET /v1/prices/{id}
//	POST   /v1/checkout/sessions (mode=subscription)      GET /v1/checkout/sessions/{id}
//	POST   /v1/billing_portal/sessions
//	GET    /v1/subscriptions (customer, status incl. all, price)   GET /v1/subscriptions/{id}
//	POST   /v1/subscriptions/{id}                         DELETE /v1/subscriptions/{id}
//	POST   /v1/subscription_items/{id}/usage_records
//	GET    /v1/invoices/upcoming (subscription, subscription_items, subscription_proration_date, …)
//	GET    /v1/invoices/upcoming/lines
//	POST   /v1/subscription_items/{id}
//
// Any other URL answers 404 as Stripe answers an unrecognized URL.
//
// Use it from tests only:
//
//	sf := stripefake.New(stripefake.Options{Now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
//	defer sf.Close()
//	sc := sf.Client("") // *client.API; or STRIPE_API_URL=sf.URL
package stripefake

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// APIVersion is the only API version the double renders (the one stripe-go v76 pins).
const APIVersion = "2023-10-16"

// TestKey is a secret key the double accepts (any "sk_test_…" key does, unless Options.Key is set).
const TestKey = "sk_test_stripefake"

// idempotencyTTL: https://docs.stripe.com/api/idempotent_requests — keys may be removed "after
// they're at least 24 hours old. We generate a new request if a key is reused after the original
// is pruned." The double prunes at exactly 24 h of its own clock.
const idempotencyTTL = 24 * time.Hour

// Options configure a Server.
type Options struct {
	// Now is the double's clock at start; zero means time.Now(). It is truncated to the second.
	Now time.Time
	// Key, when set, is the only secret key accepted; otherwise any "sk_test_…" key is.
	Key string
	// IDTag is embedded in every id the double makes (cus_<tag>…); "" means a random tag, so that
	// doubles of parallel tests sharing a database never make the same ids. Ids are otherwise a
	// counter: deterministic for a given tag.
	IDTag string
}

// Server is the Stripe double. It is safe for concurrent use: every request and every control
// operation runs under one mutex.
type Server struct {
	*httptest.Server

	mu   sync.Mutex
	now  time.Time
	tag  string
	seq  int
	key  string
	cur  *reqInfo // the API request being executed (nil in control operations)
	reqs []Request

	customers map[string]*customer
	products  map[string]*product
	prices    map[string]*price
	sessions  map[string]*session
	portals   map[string]*portalSession
	subs      map[string]*subscription
	itemSub   map[string]string // subscription item id → subscription id
	invoices  map[string]*invoice
	usage     map[string][]UsageRecord // by subscription item
	idem      map[string]*idemEntry
	failures  []*Failure
	events    []Event
	drained   int
	lost      map[string]bool // events whose webhooks never arrive (LoseWebhooks)
	// noopQuantity: ids of the requests that set an item's quantity to the one it had (items.go)
	noopQuantity map[string]bool
}

// New starts a double; Close stops it.
func New(opts Options) *Server {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	tag := opts.IDTag
	if tag == "" {
		tag = randomTag()
	}
	s := &Server{
		now: now.Truncate(time.Second), tag: tag, key: opts.Key,
		customers: map[string]*customer{}, products: map[string]*product{}, prices: map[string]*price{},
		sessions: map[string]*session{}, portals: map[string]*portalSession{}, subs: map[string]*subscription{},
		itemSub: map[string]string{}, invoices: map[string]*invoice{}, usage: map[string][]UsageRecord{},
		idem: map[string]*idemEntry{}, noopQuantity: map[string]bool{},
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func randomTag() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// Backends returns stripe-go backends that send every request to the double, with no network
// retries and a logger that prints nothing.
func (s *Server) Backends() *stripe.Backends {
	hc := &http.Client{Timeout: 30 * time.Second}
	b := func(t stripe.SupportedBackend) stripe.Backend {
		return stripe.GetBackendWithConfig(t, &stripe.BackendConfig{
			URL: stripe.String(s.URL), HTTPClient: hc, MaxNetworkRetries: stripe.Int64(0),
			EnableTelemetry: stripe.Bool(false), LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
		})
	}
	return &stripe.Backends{API: b(stripe.APIBackend), Connect: b(stripe.ConnectBackend), Uploads: b(stripe.UploadsBackend)}
}

// Client returns a stripe-go client of the double ("" means TestKey).
func (s *Server) Client(key string) *client.API {
	if key == "" {
		key = TestKey
	}
	return client.New(key, s.Backends())
}

// ---- clock ----

// Now returns the double's clock.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

// Advance moves the double's clock forward by d (truncated to the second).
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = s.now.Add(d).Truncate(time.Second)
}

// SetNow sets the double's clock (truncated to the second).
func (s *Server) SetNow(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = t.Truncate(time.Second)
}

// unix is the clock in Unix seconds: every created field and event created uses it.
func (s *Server) unix() int64 { return s.now.Unix() }

// advanceTo moves the clock forward to t (Unix seconds) if it is behind: a control operation that
// happens at a time Stripe chooses (a period end, a trial end) happens then, like a test clock.
func (s *Server) advanceTo(t int64) {
	if s.now.Unix() < t {
		s.now = time.Unix(t, 0)
	}
}

// newID returns prefix + the tag + a counter, e.g. cus_Ab12Cd000001.
func (s *Server) newID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%s%06d", prefix, s.tag, s.seq)
}

// ---- request log ----

// Request is one HTTP request the double answered.
type Request struct {
	Method         string
	Path           string
	Form           url.Values // query and body parameters
	IdempotencyKey string
	RequestID      string // req_…, also the Request-Id response header
	Status         int
	// Executed: the endpoint ran (false for a replay, an injected failure, an authentication,
	// version or parameter-parsing refusal).
	Executed bool
	// Replayed: answered from the idempotency store (header Idempotent-Replayed: true).
	Replayed bool
}

// Requests returns every request answered so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Executed counts the requests with this method whose path starts with pathPrefix that ran the
// endpoint ("" matches any method).
func (s *Server) Executed(method, pathPrefix string) int {
	return s.count(method, pathPrefix, func(r Request) bool { return r.Executed })
}

// Replayed counts the matching requests answered from the idempotency store.
func (s *Server) Replayed(method, pathPrefix string) int {
	return s.count(method, pathPrefix, func(r Request) bool { return r.Replayed })
}

func (s *Server) count(method, pathPrefix string, f func(Request) bool) int {
	n := 0
	for _, r := range s.Requests() {
		if (method == "" || r.Method == method) && strings.HasPrefix(r.Path, pathPrefix) && f(r) {
			n++
		}
	}
	return n
}

// ---- injected failures ----

// Failure is a refusal or fault injected into the next matching requests.
type Failure struct {
	Method     string // "" matches any method
	PathPrefix string // e.g. "/v1/subscription_items/si_…/usage_records"
	// Status and Body answer the request without running it; Body "" means Stripe's error body
	// for Status (429 rate_limit, 5xx api_error, 404 resource_missing, else invalid_request_error).
	Status int
	Body   string
	// Saved stores the injected answer under the request's idempotency key, so a retry with that
	// key replays it: https://docs.stripe.com/api/idempotent_requests — Stripe "saves the resulting
	// status code and body of the first request made for any given idempotency key, regardless of
	// whether it succeeds or fails. Subsequent requests with the same key return the same result,
	// including 500 errors". Unsaved (the default) is a refusal before the endpoint ran ("We save
	// results only after the execution of an endpoint begins"), e.g. a 429 or a load-shedding 503.
	Saved bool
	// Drop runs the request normally (its response is saved under its idempotency key) and then
	// closes the connection without answering: a response lost on the network. stripe-go retries
	// such a request with the same idempotency key (MaxNetworkRetries > 0) and gets the replay.
	Drop bool
	// Times is how many matching requests fail (0 means 1).
	Times int
}

// FailNext makes the next request with this method (or any, for "") and path prefix answer status
// and body (Stripe's error body for status when body is "") without running, and without saving
// the answer under its idempotency key.
func (s *Server) FailNext(method, pathPrefix string, status int, body string) {
	s.Fail(Failure{Method: method, PathPrefix: pathPrefix, Status: status, Body: body})
}

// Fail injects f.
func (s *Server) Fail(f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Times <= 0 {
		f.Times = 1
	}
	s.failures = append(s.failures, &f)
}

// takeFailure pops one use of the first failure matching the request.
func (s *Server) takeFailure(method, path string) *Failure {
	for i, f := range s.failures {
		if (f.Method == "" || f.Method == method) && strings.HasPrefix(path, f.PathPrefix) {
			f.Times--
			if f.Times <= 0 {
				s.failures = append(s.failures[:i], s.failures[i+1:]...)
			}
			return f
		}
	}
	return nil
}

// ---- HTTP ----

// reqInfo is the API request being executed: events it causes carry its id and idempotency key
// (https://docs.stripe.com/api/events/object, request.id and request.idempotency_key; both null for
// events Stripe caused itself).
type reqInfo struct {
	id, idemKey string
}

// idemEntry is a saved response: https://docs.stripe.com/api/idempotent_requests.
type idemEntry struct {
	method, path string
	fingerprint  string
	status       int
	body         []byte
	requestID    string
	saved        time.Time
}

// response is what an endpoint answers. saved: the endpoint started executing, so the answer is
// saved under the idempotency key (false for parameter validation failures).
type response struct {
	status int
	body   any
	saved  bool
}

func ok(body any) response { return response{status: http.StatusOK, body: body, saved: true} }

// apiError is Stripe's error body: https://docs.stripe.com/api/errors.
type apiError struct {
	Type    string `json:"type"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
	DocURL  string `json:"doc_url,omitempty"`
}

func errResp(status int, e apiError, saved bool) response {
	if e.Code != "" && e.DocURL == "" {
		e.DocURL = "https://stripe.com/docs/error-codes/" + strings.ReplaceAll(e.Code, "_", "-")
	}
	return response{status: status, body: map[string]any{"error": e}, saved: saved}
}

// invalid is a 400 invalid_request_error. saved=false: a parameter validation failure.
func invalid(param, msg string) response {
	return errResp(http.StatusBadRequest, apiError{Type: "invalid_request_error", Message: msg, Param: param}, false)
}

// refused is a 400 invalid_request_error about the state of an object: the endpoint ran, so the
// answer is saved under the idempotency key.
func refused(param, msg string) response {
	return errResp(http.StatusBadRequest, apiError{Type: "invalid_request_error", Message: msg, Param: param}, true)
}

// missing is a 404 resource_missing for an object named in the URL
// (https://docs.stripe.com/error-codes/resource-missing: the id is unknown, or names another kind
// of object), message "No such <object>: '<id>'", param id.
func missing(kind, id string) response {
	return errResp(http.StatusNotFound, apiError{Type: "invalid_request_error", Code: "resource_missing",
		Message: fmt.Sprintf("No such %s: '%s'", kind, id), Param: "id"}, true)
}

// missingParam is a resource_missing for an object named in a parameter (e.g. customer,
// line_items[0][price]): Stripe answers those with 400, not 404
// (https://docs.stripe.com/error-codes/resource-missing, https://docs.stripe.com/api/errors).
func missingParam(kind, id, param string) response {
	return errResp(http.StatusBadRequest, apiError{Type: "invalid_request_error", Code: "resource_missing",
		Message: fmt.Sprintf("No such %s: '%s'", kind, id), Param: param}, true)
}

func paramResp(err error) response {
	if pe, ok := err.(*paramError); ok {
		return invalid(pe.param, pe.msg)
	}
	return invalid("", err.Error())
}

// defaultErrorBody is Stripe's error body for an injected status.
func defaultErrorBody(status int) []byte {
	e := apiError{Type: "invalid_request_error", Message: "stripefake: injected failure"}
	switch {
	case status == http.StatusTooManyRequests:
		// https://docs.stripe.com/rate-limits: 429 with code rate_limit.
		e.Code, e.Message = "rate_limit", "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
	case status >= 500:
		// https://docs.stripe.com/api/errors: api_error for problems with Stripe's servers.
		e.Type, e.Message = "api_error", "stripefake: injected server error"
	case status == http.StatusNotFound:
		e.Code, e.Message = "resource_missing", "stripefake: injected resource_missing"
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return b
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	r.Body.Close()
	vals := r.URL.Query()
	if len(raw) > 0 {
		bv, err := url.ParseQuery(string(raw))
		if err == nil {
			for k, v := range bv {
				vals[k] = append(vals[k], v...)
			}
		} else {
			vals = nil
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	rec := Request{Method: r.Method, Path: r.URL.Path, Form: vals, RequestID: s.newID("req_")}
	// https://docs.stripe.com/api/idempotent_requests: POST requests accept idempotency keys; a
	// key sent with GET or DELETE has no effect, those requests being idempotent by definition.
	// (stripe-go sends one on DELETE too; the double records it and ignores it.)
	key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	rec.IdempotencyKey = key
	if r.Method != http.MethodPost {
		key = ""
	}

	write := func(status int, body []byte, hdr map[string]string) {
		rec.Status = status
		s.reqs = append(s.reqs, rec)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Request-Id", rec.RequestID)
		h.Set("Stripe-Version", APIVersion)
		if rec.IdempotencyKey != "" {
			h.Set("Idempotency-Key", rec.IdempotencyKey)
		}
		for k, v := range hdr {
			h.Set(k, v)
		}
		w.WriteHeader(status)
		w.Write(body)
	}
	writeResp := func(resp response) []byte {
		b, err := json.Marshal(resp.body)
		if err != nil {
			panic(err)
		}
		write(resp.status, b, nil)
		return b
	}

	// https://docs.stripe.com/api/authentication: secret key as Bearer (or HTTP Basic user name);
	// 401 without a valid one.
	if resp, bad := s.authenticate(r); bad {
		writeResp(resp)
		return
	}
	// The double renders one API version; another would decode into other shapes
	// (https://docs.stripe.com/api/versioning). Not Stripe's behaviour (Stripe renders any version):
	// refused so a misconfigured test fails loudly.
	if v := r.Header.Get("Stripe-Version"); v != "" && v != APIVersion {
		writeResp(invalid("", fmt.Sprintf("stripefake renders API version %s only, not %s", APIVersion, v)))
		return
	}
	if vals == nil {
		writeResp(invalid("", "Invalid request: the body is not form-encoded"))
		return
	}
	root, err := parseForm(vals)
	if err != nil {
		writeResp(paramResp(err))
		return
	}
	fingerprint := r.Method + " " + r.URL.Path + "?" + vals.Encode()

	// https://docs.stripe.com/api/idempotent_requests
	if key != "" {
		if e := s.idem[key]; e != nil {
			if !s.now.Before(e.saved.Add(idempotencyTTL)) {
				delete(s.idem, key) // pruned: the key is new again
			} else if e.method != r.Method || e.path != r.URL.Path {
				// Reuse on another endpoint: idempotency_error (https://docs.stripe.com/api/errors,
				// "Idempotency errors occur when an Idempotency-Key is re-used on a request that
				// does not match the first request's API endpoint and parameters").
				writeResp(errResp(http.StatusBadRequest, apiError{Type: "idempotency_error", Message: fmt.Sprintf(
					"Keys for idempotent requests can only be used for the same endpoint they were first used for ('%s %s' vs '%s %s'). Try using a key other than '%s' if you meant to execute a different request.",
					e.method, e.path, r.Method, r.URL.Path, key)}, false))
				return
			} else if e.fingerprint != fingerprint {
				// "The idempotency layer compares incoming parameters to those of the original
				// request and errors if they're not the same to prevent accidental misuse."
				writeResp(errResp(http.StatusBadRequest, apiError{Type: "idempotency_error", Message: fmt.Sprintf(
					"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '%s' if you meant to execute a different request.",
					key)}, false))
				return
			} else {
				// "Subsequent requests with the same key return the same result, including 500
				// errors." Replays carry the header Idempotent-Replayed: true (Stripe's response
				// header; not on the docs page) and the first request's id in Original-Request.
				rec.Replayed = true
				write(e.status, e.body, map[string]string{"Idempotent-Replayed": "true", "Original-Request": e.requestID})
				return
			}
		}
	}

	fail := s.takeFailure(r.Method, r.URL.Path)
	if fail != nil && !fail.Drop {
		body := []byte(fail.Body)
		if len(body) == 0 {
			body = defaultErrorBody(fail.Status)
		}
		if fail.Saved && key != "" {
			s.idem[key] = &idemEntry{method: r.Method, path: r.URL.Path, fingerprint: fingerprint,
				status: fail.Status, body: body, requestID: rec.RequestID, saved: s.now}
		}
		write(fail.Status, body, nil)
		return
	}

	s.cur = &reqInfo{id: rec.RequestID, idemKey: rec.IdempotencyKey}
	resp := s.route(r.Method, r.URL.Path, root)
	s.cur = nil
	rec.Executed = true
	b, err := json.Marshal(resp.body)
	if err != nil {
		panic(err)
	}
	if key != "" && resp.saved {
		s.idem[key] = &idemEntry{method: r.Method, path: r.URL.Path, fingerprint: fingerprint,
			status: resp.status, body: b, requestID: rec.RequestID, saved: s.now}
	}
	if fail != nil && fail.Drop {
		rec.Status = 0
		s.reqs = append(s.reqs, rec)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // closes the connection without a response
	}
	write(resp.status, b, nil)
}

// authenticate checks the secret key: https://docs.stripe.com/api/authentication.
func (s *Server) authenticate(r *http.Request) (response, bool) {
	h := r.Header.Get("Authorization")
	key := ""
	switch {
	case strings.HasPrefix(h, "Bearer "):
		key = strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
	default:
		if u, _, ok := r.BasicAuth(); ok {
			key = u
		}
	}
	unauth := func(msg string) (response, bool) {
		return errResp(http.StatusUnauthorized, apiError{Type: "invalid_request_error", Message: msg}, false), true
	}
	if key == "" {
		return unauth("You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.")
	}
	valid := strings.HasPrefix(key, "sk_test_") && len(key) > len("sk_test_")
	if s.key != "" {
		valid = key == s.key
	}
	if !valid {
		return unauth("Invalid API Key provided: " + redact(key))
	}
	return response{}, false
}

// redact shows a key as Stripe's 401 message does: its prefix and last four characters.
func redact(k string) string {
	if len(k) <= 12 {
		return strings.Repeat("*", len(k))
	}
	return k[:8] + strings.Repeat("*", len(k)-12) + k[len(k)-4:]
}

// route dispatches an authenticated request to its endpoint.
func (s *Server) route(method, path string, f *fnode) response {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 2 || parts[0] != "v1" {
		return unrecognized(method, path)
	}
	p := parts[1:]
	switch {
	case len(p) == 1 && p[0] == "customers" && method == http.MethodPost:
		return s.createCustomer(f)
	case len(p) == 1 && p[0] == "customers" && method == http.MethodGet:
		return s.listCustomers(f)
	case len(p) == 1 && p[0] == "events" && method == http.MethodGet:
		return s.listEvents(f)
	case len(p) == 2 && p[0] == "events" && method == http.MethodGet:
		return s.getEvent(p[1], f)
	case len(p) == 2 && p[0] == "customers" && method == http.MethodGet:
		return s.getCustomer(p[1], f)
	case len(p) == 1 && p[0] == "products" && method == http.MethodPost:
		return s.createProduct(f)
	case len(p) == 2 && p[0] == "products" && method == http.MethodGet:
		return s.getProduct(p[1], f)
	case len(p) == 1 && p[0] == "prices" && method == http.MethodPost:
		return s.createPrice(f)
	case len(p) == 1 && p[0] == "prices" && method == http.MethodGet:
		return s.listPrices(f)
	case len(p) == 2 && p[0] == "prices" && p[1] != "search" && method == http.MethodGet:
		return s.getPrice(p[1], f)
	case len(p) == 2 && p[0] == "checkout" && p[1] == "sessions" && method == http.MethodPost:
		return s.createCheckoutSession(f)
	case len(p) == 3 && p[0] == "checkout" && p[1] == "sessions" && method == http.MethodGet:
		return s.getCheckoutSession(p[2], f)
	case len(p) == 2 && p[0] == "billing_portal" && p[1] == "sessions" && method == http.MethodPost:
		return s.createPortalSession(f)
	case len(p) == 1 && p[0] == "subscriptions" && method == http.MethodGet:
		return s.listSubscriptions(f)
	case len(p) == 2 && p[0] == "subscriptions" && method == http.MethodGet:
		return s.getSubscription(p[1], f)
	case len(p) == 2 && p[0] == "subscriptions" && method == http.MethodPost:
		return s.updateSubscription(p[1], f)
	case len(p) == 2 && p[0] == "subscriptions" && method == http.MethodDelete:
		return s.cancelSubscription(p[1], f)
	case len(p) == 3 && p[0] == "subscription_items" && p[2] == "usage_records" && method == http.MethodPost:
		return s.createUsageRecord(p[1], f)
	case len(p) == 2 && p[0] == "invoices" && p[1] == "upcoming" && method == http.MethodGet:
		return s.upcomingInvoice(f)
	case len(p) == 3 && p[0] == "invoices" && p[1] == "upcoming" && p[2] == "lines" && method == http.MethodGet:
		return s.upcomingLines(f)
	case len(p) == 2 && p[0] == "subscription_items" && method == http.MethodPost:
		return s.updateSubscriptionItem(p[1], f)
	}
	return unrecognized(method, path)
}

// unrecognized is Stripe's answer to a URL it does not serve (404, no code).
func unrecognized(method, path string) response {
	return errResp(http.StatusNotFound, apiError{Type: "invalid_request_error",
		Message: fmt.Sprintf("Unrecognized request URL (%s: %s). Please see https://stripe.com/docs or we can help at https://support.stripe.com/. (stripefake serves only the endpoints its package documentation lists)", method, path)}, false)
}

// ---- lists ----

// listObject renders a list (https://docs.stripe.com/api/pagination): newest first, limit 1–100
// (default 10), starting_after / ending_before cursors, has_more.
func listObject(url string, objs []map[string]any, f *fnode) response {
	limit := int64(10)
	if l, ok, err := f.integer("", "limit"); err != nil {
		return paramResp(err)
	} else if ok {
		if l < 1 || l > 100 {
			return invalid("limit", fmt.Sprintf("Invalid integer: %d (limit must be between 1 and 100)", l))
		}
		limit = l
	}
	start := 0
	if a, ok := f.str("starting_after"); ok {
		start = -1
		for i, o := range objs {
			if o["id"] == a {
				start = i + 1
			}
		}
		if start < 0 {
			return missingParam("object", a, "starting_after")
		}
	}
	end := len(objs)
	if b, ok := f.str("ending_before"); ok {
		end = -1
		for i, o := range objs {
			if o["id"] == b {
				end = i
			}
		}
		if end < 0 {
			return missingParam("object", b, "ending_before")
		}
		if int64(end-start) > limit {
			start = end - int(limit)
		}
	}
	page := objs[start:end]
	more := false
	if int64(len(page)) > limit {
		page, more = page[:limit], true
	}
	data := make([]any, len(page))
	for i, o := range page {
		data[i] = o
	}
	return ok(map[string]any{"object": "list", "data": data, "has_more": more, "url": url})
}

// sortNewest orders objects by creation sequence, newest first.
func sortNewest[T any](m map[string]T, seq func(T) int) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return seq(out[i]) > seq(out[j]) })
	return out
}

// normalize round-trips v through JSON, so snapshots compare and diff as plain JSON values.
func normalize(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		panic(err)
	}
	return m
}
