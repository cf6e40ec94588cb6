package stripetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	"github.com/stripe/stripe-go/v76/webhook"
)

// srv is the stripe-mock shared by the tests of this package.
var srv *Server

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	s, err := Start(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv = s
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// own reports whether srv was started by this process (not $STRIPE_MOCK_URL).
func own() bool { return srv.cmd != nil }

func sc() *client.API { return srv.Client(TestKey) }

// Tenant-side ids the keys below are derived from, as billing code would.
const (
	tenantID = "7d0c8a52-3f0e-4a59-9d55-0b6f2f1d7e11"
	planID   = "b5f7f0f4-0d0a-4c2b-8f3e-6a8f3c1e2d44"
)

func TestServer(t *testing.T) {
	t.Logf("stripe-mock %s from %s", srv.URL, srv.Source)
	if !own() {
		t.Skip("server from $" + EnvURL)
	}
	if !regexp.MustCompile(`^http://127\.0\.0\.1:\d+$`).MatchString(srv.URL) {
		t.Errorf("URL = %q, want http://127.0.0.1:PORT", srv.URL)
	}
	bin := srv.cmd.Path
	if ok, why := acceptable(context.Background(), bin); !ok {
		t.Errorf("running %s, which is not acceptable: %s", bin, why)
	}
	if v, ok := moduleVersion(bin); ok && v != Version {
		t.Errorf("module version of %s = %s, want %s", bin, v, Version)
	}
	if !strings.Contains(srv.Output(), "Listening for HTTP at address: 127.0.0.1:") {
		t.Errorf("output lacks the HTTP listen line:\n%s", srv.Output())
	}
	// -http-addr alone would also open HTTPS on :12112; we bind it to a free
	// loopback port instead.
	if !strings.Contains(srv.Output(), "Listening for HTTPS at address: 127.0.0.1:") {
		t.Errorf("HTTPS listener not on a loopback port:\n%s", srv.Output())
	}
}

// A second Start in the same process gets its own server; Stop kills it,
// after which stripe-go sees "connection refused" (see TestUnavailable).
func TestStartStop(t *testing.T) {
	if !own() {
		t.Skip("server from $" + EnvURL)
	}
	s, err := Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.URL == srv.URL {
		t.Fatalf("second server shares URL %s", s.URL)
	}
	if _, err := s.Client("").Customers.New(&stripe.CustomerParams{}); err != nil {
		t.Fatalf("second server: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	// The first call's keep-alive connection may still sit in the shared transport's pool, and a
	// request written to it fails with a broken pipe, not with what a new connection meets.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	_, err = s.Client("").Customers.New(&stripe.CustomerParams{})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("after Stop: err = %v, want connection refused", err)
	}
}

// installCached builds stripe-mock into a fresh cache directory; two
// concurrent callers (separate flock descriptors, as separate test
// processes would have) get the same, complete binary.
func TestInstallCached(t *testing.T) {
	if testing.Short() {
		t.Skip("installs stripe-mock")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	// Keep the go command's caches and settings where they are: some live
	// under the user cache dir or HOME by default, and empty ones would
	// download and rebuild stripe-mock from scratch.
	vars := []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOENV", "GOFLAGS", "GOPROXY"}
	out, err := exec.Command(goBin, append([]string{"env"}, vars...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Setenv(vars[i], v)
	}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache) // os.UserCacheDir on Linux and BSDs
	if runtime.GOOS == "darwin" {
		t.Setenv("HOME", cache) // $HOME/Library/Caches
	}
	dir, _ := cacheDir()
	if !strings.HasPrefix(dir, cache) {
		t.Skipf("cache dir %s does not follow XDG_CACHE_HOME/HOME on this OS", dir)
	}

	var wg sync.WaitGroup
	bins := make([]string, 2)
	errs := make([]error, 2)
	for i := range bins {
		wg.Go(func() { bins[i], errs[i] = installCached(t.Context()) })
	}
	wg.Wait()
	for i := range bins {
		if errs[i] != nil {
			t.Fatalf("installCached #%d: %v", i, errs[i])
		}
	}
	want := filepath.Join(cache, "tenantkit", "stripe-mock-"+Version, exeName())
	if bins[0] != want || bins[1] != want {
		t.Fatalf("installCached = %q, %q; want %q", bins[0], bins[1], want)
	}
	if v, ok := moduleVersion(want); !ok || v != Version {
		t.Fatalf("moduleVersion(%s) = %q, %v", want, v, ok)
	}
	// A go-installed stripe-mock calls itself "master": only the build
	// information tells the version.
	out, err = exec.Command(want, "-version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "stripe-mock master" {
		t.Errorf("%s -version = %q, %v; want \"stripe-mock master\"", want, out, err)
	}
	if ok, why := acceptable(t.Context(), want); !ok {
		t.Errorf("acceptable(%s) = false: %s", want, why)
	}
	entries, _ := os.ReadDir(filepath.Dir(want))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "install-") {
			t.Errorf("leftover temporary directory %s", e.Name())
		}
	}
}

// A stripe-mock on PATH that reports another version is skipped.
func TestBinaryChecksVersion(t *testing.T) {
	dir := t.TempDir()
	fake := func(version string) string {
		p := filepath.Join(dir, version, "stripe-mock")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("#!/bin/sh\necho 'stripe-mock "+version+"'\n"), 0o755)
		return p
	}
	for _, tc := range []struct {
		version string
		ok      bool
	}{
		{"0.183.0", true}, // release builds print the version without "v"
		{"v0.183.0", true},
		{"0.184.0", false},
	} {
		ok, why := acceptable(t.Context(), fake(tc.version))
		if ok != tc.ok {
			t.Errorf("acceptable(stripe-mock %s) = %v (%s), want %v", tc.version, ok, why, tc.ok)
		}
	}
	wrong := fake("0.190.0")
	t.Setenv("PATH", filepath.Dir(wrong)+string(os.PathListSeparator)+os.Getenv("PATH"))
	bin, source, err := Binary(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if bin == wrong {
		t.Fatalf("Binary chose %s, which reports 0.190.0", wrong)
	}
	t.Logf("Binary = %s (%s)", bin, source)

	// One in $(go env GOPATH)/bin that reports Version is used.
	gopath := t.TempDir()
	good := filepath.Join(gopath, "bin", "stripe-mock")
	os.MkdirAll(filepath.Dir(good), 0o755)
	os.WriteFile(good, []byte("#!/bin/sh\necho 'stripe-mock 0.183.0'\n"), 0o755)
	t.Setenv("GOBIN", "")
	t.Setenv("GOPATH", gopath)
	bin, source, err = Binary(t.Context())
	if err != nil || bin != good || source != "path" {
		t.Errorf("Binary = %q, %q, %v; want %q from path", bin, source, err, good)
	}
}

// --- stripe-go and stripe-mock as the billing code relies on them -------
// (the calls tenantkit makes are tested in internal/stripe: their shapes against stripe-mock,
// what they say against the stateful double)

func TestIdempotencyKeys(t *testing.T) {
	api := sc()
	t.Run("stripe-go adds a random one to writes without one", func(t *testing.T) {
		c1, err := api.Customers.New(&stripe.CustomerParams{})
		if err != nil {
			t.Fatal(err)
		}
		c2, err := api.Customers.New(&stripe.CustomerParams{})
		if err != nil {
			t.Fatal(err)
		}
		k1, k2 := c1.LastResponse.IdempotencyKey, c2.LastResponse.IdempotencyKey
		// stripe.NewIdempotencyKey: "<unix nanos>_<6 random base64url chars>"
		re := regexp.MustCompile(`^\d+_[A-Za-z0-9_-]{6}$`)
		if !re.MatchString(k1) || !re.MatchString(k2) || k1 == k2 {
			t.Errorf("automatic keys %q, %q: want two different random keys", k1, k2)
		}
	})
	t.Run("reads carry none", func(t *testing.T) {
		s, err := api.Subscriptions.Get("sub_123", nil)
		if err != nil {
			t.Fatal(err)
		}
		if k := s.LastResponse.IdempotencyKey; k != "" {
			t.Errorf("GET sent Idempotency-Key %q", k)
		}
	})
	t.Run("longer than 255 characters fails before sending", func(t *testing.T) {
		p := &stripe.CustomerParams{}
		p.SetIdempotencyKey(strings.Repeat("k", 256))
		_, err := api.Customers.New(p)
		if err == nil || !strings.Contains(err.Error(), "longer than 255 characters") {
			t.Fatalf("err = %v", err)
		}
		var se *stripe.Error
		if errors.As(err, &se) {
			t.Errorf("client-side error is a *stripe.Error: %v", err)
		}
	})
	t.Run("stripe-mock does not enforce idempotency", func(t *testing.T) {
		// Real Stripe replays the first response for a repeated key and
		// answers an idempotency_error (400) when the parameters differ.
		// stripe-mock keeps nothing: both calls succeed with new ids.
		key := "tk-customer-" + planID
		p1 := &stripe.CustomerParams{Name: stripe.String("one")}
		p1.SetIdempotencyKey(key)
		p2 := &stripe.CustomerParams{Name: stripe.String("two")}
		p2.SetIdempotencyKey(key)
		c1, err := api.Customers.New(p1)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := api.Customers.New(p2)
		if err != nil {
			t.Fatalf("stripe-mock rejected a reused key: %v", err)
		}
		if c1.ID == c2.ID || c2.Name != "two" {
			t.Errorf("ids %s %s, second name %q: stripe-mock replayed a response", c1.ID, c2.ID, c2.Name)
		}
	})
}

func checkSubscription(t *testing.T, s *stripe.Subscription) {
	t.Helper()
	if !strings.HasPrefix(s.ID, "sub_") || s.Object != "subscription" {
		t.Errorf("subscription %q object %q", s.ID, s.Object)
	}
	switch s.Status {
	case stripe.SubscriptionStatusActive, stripe.SubscriptionStatusCanceled, stripe.SubscriptionStatusIncomplete,
		stripe.SubscriptionStatusIncompleteExpired, stripe.SubscriptionStatusPastDue, stripe.SubscriptionStatusPaused,
		stripe.SubscriptionStatusTrialing, stripe.SubscriptionStatusUnpaid:
	default:
		t.Errorf("status %q", s.Status)
	}
	if s.CurrentPeriodStart == 0 || s.CurrentPeriodEnd == 0 {
		t.Errorf("current period %d-%d", s.CurrentPeriodStart, s.CurrentPeriodEnd)
	}
	if s.Customer == nil || !strings.HasPrefix(s.Customer.ID, "cus_") || s.Metadata == nil {
		t.Errorf("customer %v metadata %v", s.Customer, s.Metadata)
	}
	if s.Items == nil || len(s.Items.Data) == 0 {
		t.Fatalf("no items")
	}
	it := s.Items.Data[0]
	if !strings.HasPrefix(it.ID, "si_") || it.Price == nil || !strings.HasPrefix(it.Price.ID, "price_") || it.Price.Recurring == nil {
		t.Errorf("item %q price %+v", it.ID, it.Price)
	}
}

// stripe-mock validates parameters against its OpenAPI spec and, started
// with -strict-version-check, the Stripe-Version header.
func TestValidation(t *testing.T) {
	p := &stripe.CustomerParams{}
	p.AddExtra("no_such_param", "1")
	_, err := sc().Customers.New(p)
	var se *stripe.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != 400 || se.Type != stripe.ErrorTypeInvalidRequest {
		t.Fatalf("unknown param: err = %v", err)
	}
	var ire *stripe.InvalidRequestError
	if !errors.As(err, &ire) {
		t.Errorf("errors.As(*stripe.InvalidRequestError) = false for %v", err)
	}
	// Enums too: an unknown proration_behavior is a 400.
	_, err = sc().Subscriptions.Update("sub_tenant", &stripe.SubscriptionParams{ProrationBehavior: stripe.String("sometimes")})
	if !errors.As(err, &se) || se.HTTPStatusCode != 400 || se.Type != stripe.ErrorTypeInvalidRequest {
		t.Errorf("bad proration_behavior: err = %v", err)
	}

	// Keys must be <sk|rk>_test_<one part>.
	for _, key := range []string{"sk_test_a_b", "sk_live_123"} {
		_, err := srv.Client(key).Customers.New(&stripe.CustomerParams{})
		if !errors.As(err, &se) || se.HTTPStatusCode != 401 {
			t.Errorf("key %s: err = %v, want 401", key, err)
		}
	}

	if stripe.APIVersion != "2023-10-16" {
		t.Errorf("stripe.APIVersion = %s", stripe.APIVersion)
	}
	if !own() {
		return
	}
	p = &stripe.CustomerParams{}
	p.Headers = http.Header{"Stripe-Version": {"2024-06-20"}}
	_, err = sc().Customers.New(p)
	if !errors.As(err, &se) || se.HTTPStatusCode != 400 || !strings.Contains(se.Msg, "2023-10-16") {
		t.Errorf("Stripe-Version 2024-06-20 under -strict-version-check: err = %v", err)
	}
}

// Behaviour of stripe-mock that tests must not mistake for Stripe's.
func TestStripeMockIsStateless(t *testing.T) {
	api := sc()
	a, err := api.Subscriptions.Get("sub_a", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := api.Subscriptions.Get("sub_b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "sub_a" || b.ID != "sub_b" || a.Status != b.Status || a.Items.Data[0].Price.ID != b.Items.Data[0].Price.ID {
		t.Errorf("two ids: %s/%s %s/%s %s/%s", a.ID, b.ID, a.Status, b.Status, a.Items.Data[0].Price.ID, b.Items.Data[0].Price.ID)
	}
	c, err := api.Customers.New(&stripe.CustomerParams{Metadata: map[string]string{"tenant_id": tenantID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Metadata) != 0 {
		t.Logf("metadata reflected: %v", c.Metadata)
	}
	got, err := api.Customers.Get(c.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != c.ID || got.Metadata["tenant_id"] == tenantID {
		t.Errorf("Get(new customer): id %s metadata %v", got.ID, got.Metadata)
	}
	t.Logf("created customer %s with metadata; stripe-mock returns metadata %v for it", c.ID, got.Metadata)
}

// --- webhooks -----------------------------------------------------------

const whsec = "whsec_test_secret"

// fixture returns the JSON stripe-mock serves for a GET of path, with the
// given top-level fields overwritten.
func fixture(t *testing.T, path string, set map[string]any) map[string]any {
	t.Helper()
	var v map[string]any
	raw := &stripe.APIResource{}
	if err := srv.Backends().API.Call(http.MethodGet, path, TestKey, nil, raw); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if err := json.Unmarshal(raw.LastResponse.RawJSON, &v); err != nil {
		t.Fatal(err)
	}
	for k, x := range set {
		v[k] = x
	}
	return v
}

func event(t *testing.T, typ, apiVersion string, object map[string]any, previous map[string]any) []byte {
	t.Helper()
	e := map[string]any{
		"id":               "evt_" + strings.ReplaceAll(typ, ".", "_"),
		"object":           "event",
		"api_version":      apiVersion,
		"created":          time.Now().Unix(),
		"livemode":         false,
		"pending_webhooks": 1,
		"request":          map[string]any{"id": nil, "idempotency_key": nil},
		"type":             typ,
		"data":             map[string]any{"object": object},
	}
	if previous != nil {
		e["data"].(map[string]any)["previous_attributes"] = previous
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sign(payload []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: payload, Secret: secret, Timestamp: at,
	}).Header
}

func TestWebhookEvents(t *testing.T) {
	t.Run("customer.subscription.updated", func(t *testing.T) {
		obj := fixture(t, "/v1/subscriptions/sub_tenant", map[string]any{
			"status":               "past_due",
			"cancel_at_period_end": true,
			"metadata":             map[string]any{"tenant_id": tenantID, "plan_id": planID},
		})
		payload := event(t, "customer.subscription.updated", stripe.APIVersion, obj, map[string]any{"status": "active"})
		header := sign(payload, whsec, time.Now())
		if !regexp.MustCompile(`^t=\d+,v1=[0-9a-f]{64}$`).MatchString(header) {
			t.Errorf("Stripe-Signature %q", header)
		}
		e, err := webhook.ConstructEvent(payload, header, whsec)
		if err != nil {
			t.Fatal(err)
		}
		if e.Type != stripe.EventTypeCustomerSubscriptionUpdated || e.APIVersion != "2023-10-16" || e.ID == "" {
			t.Errorf("event %s %s %s", e.ID, e.Type, e.APIVersion)
		}
		var s stripe.Subscription
		if err := json.Unmarshal(e.Data.Raw, &s); err != nil {
			t.Fatal(err)
		}
		checkSubscription(t, &s)
		if s.ID != "sub_tenant" || s.Status != stripe.SubscriptionStatusPastDue || !s.CancelAtPeriodEnd || s.Metadata["tenant_id"] != tenantID {
			t.Errorf("subscription %s status %s cancel_at_period_end %v metadata %v", s.ID, s.Status, s.CancelAtPeriodEnd, s.Metadata)
		}
		if e.Data.PreviousAttributes["status"] != "active" || e.Data.Object["status"] != "past_due" {
			t.Errorf("previous_attributes %v, object.status %v", e.Data.PreviousAttributes, e.Data.Object["status"])
		}
	})

	t.Run("invoice.paid", func(t *testing.T) {
		obj := fixture(t, "/v1/invoices/in_tenant", map[string]any{"status": "paid", "subscription": "sub_tenant"})
		payload := event(t, "invoice.paid", stripe.APIVersion, obj, nil)
		e, err := webhook.ConstructEvent(payload, sign(payload, whsec, time.Now()), whsec)
		if err != nil {
			t.Fatal(err)
		}
		var in stripe.Invoice
		if err := json.Unmarshal(e.Data.Raw, &in); err != nil {
			t.Fatal(err)
		}
		// An unexpanded reference unmarshals into a struct with only ID.
		if in.Status != stripe.InvoiceStatusPaid || in.Subscription == nil || in.Subscription.ID != "sub_tenant" ||
			in.Customer == nil || in.Customer.ID == "" {
			t.Errorf("invoice status %q subscription %v customer %v", in.Status, in.Subscription, in.Customer)
		}
	})

	t.Run("checkout.session.completed", func(t *testing.T) {
		obj := fixture(t, "/v1/checkout/sessions/cs_test_tenant", map[string]any{
			"status":              "complete",
			"mode":                "subscription",
			"subscription":        "sub_tenant",
			"customer":            "cus_tenant",
			"client_reference_id": tenantID,
			"metadata":            map[string]any{"tenant_id": tenantID, "plan_id": planID},
		})
		payload := event(t, "checkout.session.completed", stripe.APIVersion, obj, nil)
		e, err := webhook.ConstructEvent(payload, sign(payload, whsec, time.Now()), whsec)
		if err != nil {
			t.Fatal(err)
		}
		var cs stripe.CheckoutSession
		if err := json.Unmarshal(e.Data.Raw, &cs); err != nil {
			t.Fatal(err)
		}
		if cs.Subscription == nil || cs.Subscription.ID != "sub_tenant" || cs.ClientReferenceID != tenantID ||
			cs.Metadata["plan_id"] != planID || cs.Customer == nil || cs.Customer.ID != "cus_tenant" ||
			cs.Status != stripe.CheckoutSessionStatusComplete || cs.Mode != stripe.CheckoutSessionModeSubscription {
			t.Errorf("session subscription %v client_reference_id %q metadata %v customer %v status %q mode %q",
				cs.Subscription, cs.ClientReferenceID, cs.Metadata, cs.Customer, cs.Status, cs.Mode)
		}
	})
}

func TestWebhookRejections(t *testing.T) {
	obj := fixture(t, "/v1/subscriptions/sub_tenant", nil)
	now := time.Now()

	t.Run("other api_version", func(t *testing.T) {
		payload := event(t, "customer.subscription.updated", "2024-06-20", obj, nil)
		header := sign(payload, whsec, now)
		e, err := webhook.ConstructEvent(payload, header, whsec)
		if err == nil || !strings.Contains(err.Error(), "Received event with API version 2024-06-20") {
			t.Fatalf("ConstructEvent: err = %v", err)
		}
		// The error is a plain fmt error (no sentinel), returned only after
		// the signature checked out, together with the parsed event.
		if e.ID == "" || e.APIVersion != "2024-06-20" {
			t.Errorf("event returned with the error: id %q version %q", e.ID, e.APIVersion)
		}
		e, err = webhook.ConstructEventWithOptions(payload, header, whsec, webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true})
		if err != nil || e.APIVersion != "2024-06-20" {
			t.Fatalf("IgnoreAPIVersionMismatch: event %q, err %v", e.APIVersion, err)
		}
		// Ignoring the version does not switch off the 300 s tolerance.
		old := sign(payload, whsec, now.Add(-10*time.Minute))
		_, err = webhook.ConstructEventWithOptions(payload, old, whsec, webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true})
		if !errors.Is(err, webhook.ErrTooOld) {
			t.Errorf("old signature with IgnoreAPIVersionMismatch: err = %v, want ErrTooOld", err)
		}
	})

	payload := event(t, "customer.subscription.updated", stripe.APIVersion, obj, nil)
	for _, tc := range []struct {
		name, header, secret string
		want                 error
	}{
		{"wrong secret", sign(payload, "whsec_other", now), whsec, webhook.ErrNoValidSignature},
		{"no header", "", whsec, webhook.ErrNotSigned},
		{"garbage header", "t=1,v1", whsec, webhook.ErrInvalidHeader},
		{"older than 300s", sign(payload, whsec, now.Add(-(webhook.DefaultTolerance + time.Minute))), whsec, webhook.ErrTooOld},
		{"tampered body", sign(append([]byte(" "), payload...), whsec, now), whsec, webhook.ErrNoValidSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := webhook.ConstructEvent(payload, tc.header, tc.secret); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("signature is checked before the version", func(t *testing.T) {
		other := event(t, "customer.subscription.updated", "2024-06-20", obj, nil)
		if _, err := webhook.ConstructEvent(other, sign(other, "whsec_other", now), whsec); !errors.Is(err, webhook.ErrNoValidSignature) {
			t.Errorf("err = %v, want ErrNoValidSignature", err)
		}
	})
}

// --- stripe-mock (or Stripe) unreachable -------------------------------

// countingTransport counts round trips.
type countingTransport struct{ n atomic.Int32 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// closedURL returns the URL of a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

func TestUnavailable(t *testing.T) {
	down := closedURL(t)
	newAPI := func(retries *int64) (*client.API, *countingTransport) {
		ct := &countingTransport{}
		return client.New(TestKey, newBackends(down, func(c *stripe.BackendConfig) {
			c.HTTPClient = &http.Client{Transport: ct, Timeout: 5 * time.Second}
			c.MaxNetworkRetries = retries // nil: stripe-go's default, 2
		})), ct
	}

	t.Run("MaxNetworkRetries 0", func(t *testing.T) {
		api, ct := newAPI(stripe.Int64(0))
		start := time.Now()
		_, err := api.Customers.New(&stripe.CustomerParams{})
		elapsed := time.Since(start)
		checkRefused(t, err)
		if n := ct.n.Load(); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
		if elapsed > time.Second {
			t.Errorf("took %v", elapsed)
		}
	})

	t.Run("default retries", func(t *testing.T) {
		if testing.Short() {
			t.Skip("sleeps about 1.5s")
		}
		api, ct := newAPI(nil)
		start := time.Now()
		_, err := api.Customers.New(&stripe.CustomerParams{})
		elapsed := time.Since(start)
		checkRefused(t, err)
		// 1 try + DefaultMaxNetworkRetries (2), sleeping >= 500ms before
		// each retry (500ms, then 750-1000ms), POST included: a network
		// error is retried whatever the method.
		if n := ct.n.Load(); n != 1+int32(stripe.DefaultMaxNetworkRetries) {
			t.Errorf("%d attempts, want %d", n, 1+stripe.DefaultMaxNetworkRetries)
		}
		if elapsed < time.Second {
			t.Errorf("took %v, want >= 1s of back-off", elapsed)
		}
		t.Logf("3 attempts in %v", elapsed)
	})

	t.Run("canceled context is not retried", func(t *testing.T) {
		api, ct := newAPI(stripe.Int64(5))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		p := &stripe.CustomerParams{}
		p.Context = ctx
		_, err := api.Customers.New(p)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if n := ct.n.Load(); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
	})
}

// checkRefused asserts the shape of stripe-go's error when nothing listens:
// the *url.Error from net/http, unwrapped, not a *stripe.Error.
func checkRefused(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	var se *stripe.Error
	if errors.As(err, &se) {
		t.Errorf("got *stripe.Error %v", se)
	}
	var ue *url.Error
	if !errors.As(err, &ue) || ue.Op != "Post" {
		t.Errorf("err %T %v: want *url.Error from Post", err, err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" {
		t.Errorf("err %v: want *net.OpError dial", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("err %v: want ECONNREFUSED", err)
	}
	t.Logf("%T: %v", err, err)
}
