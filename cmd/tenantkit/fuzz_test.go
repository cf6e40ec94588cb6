package main

// Fuzz targets for the HTTP entry points that take hostile input: Hasura actions, Hasura
// event triggers and Stripe webhooks, each served by the whole service's routes (shared-secret
// guard, body limit, request log, metrics) in process, against a real database. Invariants: no
// panic, no 5xx, every refusal in the caller's error shape with a documented code and status, and a
// refused input leaves every table as it was. Accepted inputs may write, but only where that kind
// of request writes.
//
// The committed seed corpora (testdata/fuzz/<FuzzName>) refer to the fixture rows below by id;
// TestWriteFuzzSeeds (fuzzseed_test.go) rewrites them. scripts/fuzz.sh runs every target.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/team"
)

// The fixture world of every fuzz database. The ids are fixed so that seeds reach real rows.
const (
	fuzzOwner      = "0f0f0f0f-0000-4000-8000-000000000001" // owner of fuzzTenant
	fuzzMember     = "0f0f0f0f-0000-4000-8000-000000000002" // member of fuzzTenant
	fuzzInvitee    = "0f0f0f0f-0000-4000-8000-000000000003" // invited to fuzzTenant, not a member
	fuzzTenant     = "0f0f0f0f-0000-4000-8000-000000000101" // slug fuzz-acme, trialing, Stripe ids below
	fuzzInvitation = "0f0f0f0f-0000-4000-8000-000000000201" // pending, for invitee@fuzz.test, token fuzzToken
	fuzzStripeSub  = "sub_fuzz"
	fuzzStripeCus  = "cus_fuzz"
	fuzzTokenRaw   = "tenantkit-fuzz-invitation-token!" // the invitation token's 32 bytes
)

// fuzzToken is the fixture invitation's token as the invitee presents it.
var fuzzToken = base64.RawURLEncoding.EncodeToString([]byte(fuzzTokenRaw))

const fuzzFixture = `
INSERT INTO auth.users (id, email, display_name, email_verified) VALUES
  ('` + fuzzOwner + `', 'owner@fuzz.test', 'Owner', true),
  ('` + fuzzMember + `', 'member@fuzz.test', 'Member', true),
  ('` + fuzzInvitee + `', 'invitee@fuzz.test', 'Invitee', true);
INSERT INTO tenants (id, slug, name) VALUES ('` + fuzzTenant + `', 'fuzz-acme', 'Fuzz Acme');
INSERT INTO tenant_users (tenant_id, user_id, role) VALUES
  ('` + fuzzTenant + `', '` + fuzzOwner + `', 'owner'),
  ('` + fuzzTenant + `', '` + fuzzMember + `', 'member');
INSERT INTO tenant_subscriptions (tenant_id, plan_id, status, trial_ends_at, stripe_customer_id, stripe_subscription_id)
  SELECT '` + fuzzTenant + `', id, 'trialing', now() + interval '14 days', '` + fuzzStripeCus + `', '` + fuzzStripeSub + `'
  FROM subscription_plans WHERE is_default;
INSERT INTO tenant_invitations (id, tenant_id, email, role, invited_by, token_hash, expires_at)
  VALUES ('` + fuzzInvitation + `', '` + fuzzTenant + `', 'invitee@fuzz.test', 'member', '` + fuzzOwner + `',
          sha256(convert_to('` + fuzzTokenRaw + `', 'UTF8')), now() + interval '7 days');
`

// fuzzStatus is the documented status of every error code an action or event handler may answer
// (docs/decisions.md, "HTTP"). internal is absent on purpose: no input is a server error.
var fuzzStatus = map[string]int{
	tenantkit.Invalid:            http.StatusBadRequest,
	tenantkit.Unauthenticated:    http.StatusUnauthorized,
	tenantkit.Forbidden:          http.StatusForbidden,
	team.InvitationEmailMismatch: http.StatusForbidden,
	team.EmailUnverified:         http.StatusForbidden,
	tenantkit.NotFound:           http.StatusNotFound,
	team.InvitationNotFound:      http.StatusNotFound,
	tenantkit.Conflict:           http.StatusConflict,
	team.SlugTaken:               http.StatusConflict,
	team.InvitationUsed:          http.StatusConflict,
	tenantkit.LastOwner:          http.StatusConflict,
	team.InvitationExpired:       http.StatusGone,
	team.InvitationRevoked:       http.StatusGone,
	tenantkit.PlanLimit:          http.StatusPaymentRequired,
	team.RateLimited:             http.StatusTooManyRequests,
	tenantkit.Unavailable:        http.StatusFailedDependency,
	billing.BillingUnavailable:   http.StatusFailedDependency,
}

// fuzzHarness is the service on a fresh database holding the fixture, and what a target needs to
// tell which tables an input changed.
type fuzzHarness struct {
	m       *Main
	handler http.Handler
	admin   *pgxpool.Pool
	sums    string            // one query: every table's row count and content hash
	base    map[string]string // table -> sum after the previous input
	used    int64             // acquired() when base was taken
}

// newFuzzHarness starts the service as start does (extra overrides the environment), once per fuzz
// target and process: fuzzing workers are processes, each with its own database.
func newFuzzHarness(f testing.TB, extra ...string) *fuzzHarness {
	f.Helper()
	ctx := context.Background()
	m := start(f, extra...)
	// The meter and the outbox sender write on their own schedule; stop them (Close would) so that
	// every change is the effect of the input just served. The targets flush the meter themselves.
	stop := m.stopMeter
	m.stopMeter = func() {}
	stop()

	admin, err := pgxpool.New(ctx, directURL(m))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(admin.Close)
	if _, err := admin.Exec(ctx, fuzzFixture); err != nil {
		f.Fatalf("fixture: %v", err)
	}
	rows, err := admin.Query(ctx, `
		SELECT format('%I.%I', table_schema, table_name), quote_literal(table_schema || '.' || table_name)
		FROM information_schema.tables
		WHERE table_type = 'BASE TABLE' AND table_schema IN ('public', 'auth', 'tenantkit') AND table_name <> 'goose_db_version'
		ORDER BY 1`)
	if err != nil {
		f.Fatal(err)
	}
	var parts []string
	for rows.Next() {
		var ident, lit string
		if err := rows.Scan(&ident, &lit); err != nil {
			f.Fatal(err)
		}
		parts = append(parts, fmt.Sprintf(`SELECT %s, count(*) || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM %s x`, lit, ident))
	}
	if err := rows.Err(); err != nil || len(parts) < 10 {
		f.Fatalf("listing the tables: %v (%d tables)", err, len(parts))
	}
	h := &fuzzHarness{m: m, handler: m.HTTP.Handler(), admin: admin, sums: strings.Join(parts, "\nUNION ALL ")}
	h.base, h.used = h.snapshot(f), h.acquired()
	return h
}

// acquired is how many connections the service has taken from its pools: the system pool and, with
// a login of its own, the user pool (postgres.DB.App), where user work writes.
func (h *fuzzHarness) acquired() int64 {
	n := h.m.DB.Pool.Stat().AcquireCount()
	if app := h.m.DB.App; app != nil && app != h.m.DB.Pool {
		n += app.Stat().AcquireCount()
	}
	return n
}

// snapshot returns every table's row count and a hash of its rows.
func (h *fuzzHarness) snapshot(tb testing.TB) map[string]string {
	tb.Helper()
	rows, err := h.admin.Query(context.Background(), h.sums)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var table, sum string
		if err := rows.Scan(&table, &sum); err != nil {
			tb.Fatal(err)
		}
		out[table] = sum
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// settle fails the test if the input changed a table other than allowed ("*" allows all), and
// makes the current state the baseline for the next input. Only the service's pools reach the
// database and nothing else runs: if it acquired no connection from either since the baseline,
// nothing can have changed (most hostile inputs are refused before the database), and the tables
// need not be read.
func (h *fuzzHarness) settle(t *testing.T, allowed ...string) {
	t.Helper()
	used := h.acquired()
	if used == h.used {
		return
	}
	now := h.snapshot(t)
	h.used = used
	var changed []string
	for table, sum := range now {
		if h.base[table] != sum && !slices.Contains(allowed, table) && !slices.Contains(allowed, "*") {
			changed = append(changed, table)
		}
	}
	h.base = now
	if len(changed) > 0 {
		slices.Sort(changed)
		if len(allowed) == 0 {
			t.Errorf("a refused input wrote to %s", strings.Join(changed, ", "))
		} else {
			t.Errorf("wrote to %s (may write to %s only)", strings.Join(changed, ", "), strings.Join(allowed, ", "))
		}
	}
}

// serve sends a POST to the service's routes in process: a panic in a handler fails the target.
func (h *fuzzHarness) serve(path string, body []byte, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	return rec
}

// fromHasura is what Hasura sends with every action and event (hasura/metadata).
func fromHasura() http.Header {
	return http.Header{"Content-Type": {"application/json"}, "X-Tenantkit-Secret": {testSecret}}
}

// routable reports whether a path segment reaches a {name} route at all: the mux redirects paths
// that are not clean before any handler runs, and Hasura names never contain '/'.
func routable(segment string) bool {
	return segment != "" && segment != "." && segment != ".." && !strings.Contains(segment, "/")
}

// hasuraError checks that a refusal is in Hasura's action error shape, {"message": string,
// "extensions": {"code": string}} and nothing else, with a documented code and its status.
func hasuraError(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%d with Content-Type %q: %q", rec.Code, ct, rec.Body.String())
	}
	var body struct {
		Message    *string `json:"message"`
		Extensions *struct {
			Code *string `json:"code"`
		} `json:"extensions"`
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Message == nil || body.Extensions == nil || body.Extensions.Code == nil {
		t.Fatalf("%d: not Hasura's error shape (%v): %q", rec.Code, err, rec.Body.String())
	}
	code := *body.Extensions.Code
	want, known := fuzzStatus[code]
	switch {
	case !known:
		t.Fatalf("%d: code %q is not a documented code: %q", rec.Code, code, rec.Body.String())
	case rec.Code != want:
		t.Fatalf("code %q answered %d, documented %d: %q", code, rec.Code, want, rec.Body.String())
	}
	return code
}

// TestFuzzHarnessBaseline: after an input that reached the database through the user pool only
// (resendInvitation, a user's action, writes through APP_DATABASE_URL's login), the harness's
// baseline is the tables as that input left them, so that the next input, refused, is not blamed
// for them, and what a refused input writes through either pool is seen.
func TestFuzzHarnessBaseline(t *testing.T) {
	h := newFuzzHarness(t)
	if h.m.DB.App == nil || h.m.DB.App == h.m.DB.Pool {
		t.Fatal("the harness's service runs with one login: the user pool is not apart")
	}
	hasura := hasuratest.NewClient(metadata(t), map[string]string{"TENANTKIT_URL": h.m.HTTP.URL(), "TENANTKIT_SECRET": testSecret})
	req, err := hasura.ActionRequest("resendInvitation", map[string]any{"invitationId": fuzzInvitation},
		map[string]string{"x-hasura-role": "user", "x-hasura-user-id": fuzzOwner})
	if err != nil {
		t.Fatal(err)
	}
	system := h.m.DB.Pool.Stat().AcquireCount()
	if rec := h.serve("/actions/resendInvitation", req.Body, fromHasura()); rec.Code != http.StatusOK {
		t.Fatalf("resendInvitation: %d %s", rec.Code, rec.Body)
	}
	h.settle(t, "*")
	if h.m.DB.Pool.Stat().AcquireCount() != system {
		t.Fatal("resendInvitation used the system pool too: pick a user action that does not, or this test guards nothing")
	}
	now := h.snapshot(t)
	for table, sum := range now {
		if h.base[table] != sum {
			t.Errorf("after resendInvitation the baseline of %s is stale", table)
		}
	}
	if h.base["public.tenant_invitations"] == "" {
		t.Fatal("the baseline lacks public.tenant_invitations")
	}
}

// FuzzActionPayload posts arbitrary bodies to POST /actions/{name}.
func FuzzActionPayload(f *testing.F) {
	h := newFuzzHarness(f)
	f.Fuzz(func(t *testing.T, name string, body []byte) {
		if !routable(name) {
			t.Skip("not a path to the action handler")
		}
		rec := h.serve("/actions/"+url.PathEscape(name), body, fromHasura())
		t.Logf("%d %s", rec.Code, rec.Body)
		if rec.Code >= 200 && rec.Code <= 299 {
			if !json.Valid(rec.Body.Bytes()) {
				t.Errorf("%d: output is not JSON: %q", rec.Code, rec.Body.String())
			}
			if err := h.m.Meter.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			h.settle(t, "*") // an action that succeeded did what it is for
			return
		}
		hasuraError(t, rec)
		h.settle(t)
	})
}

// FuzzEventPayload posts arbitrary bodies to POST /events/{trigger}. A 5xx makes Hasura retry, so
// it must mean a failure a retry can fix, never a malformed payload; with the database up and
// emails going to the log there is none.
func FuzzEventPayload(f *testing.F) {
	h := newFuzzHarness(f)
	f.Fuzz(func(t *testing.T, trigger string, body []byte) {
		if !routable(trigger) {
			t.Skip("not a path to the event handler")
		}
		rec := h.serve("/events/"+url.PathEscape(trigger), body, fromHasura())
		t.Logf("%d %s", rec.Code, rec.Body)
		if rec.Code >= 200 && rec.Code <= 299 {
			var out struct{ Status string }
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || (out.Status != "processed" && out.Status != "duplicate") {
				t.Errorf("%d: %q", rec.Code, rec.Body.String())
			}
			// Done: the event is recorded, and an invitation's sealed token is gone once emailed.
			h.settle(t, "tenantkit.processed_events", "tenantkit.invitation_outbox")
			return
		}
		hasuraError(t, rec)
		h.settle(t)
	})
}

// Stripe-Signature variants of FuzzStripeWebhook, chosen by its second argument modulo 4.
const (
	sigValid    = iota // signed now with the endpoint's secret
	sigNone            // no Stripe-Signature header
	sigWrongKey        // signed with another secret
	sigTooOld          // signed with the secret ten minutes ago (Stripe's tolerance is five)
	sigVariants
)

// unexpectedSubscription is the webhook's answer to a subscription event the database refuses.
const unexpectedSubscription = `{"status":"unexpected Stripe subscription"}` + "\n"

// stripeSignature signs payload as Stripe does: t=<unix>,v1=<hex HMAC-SHA256 of "<unix>.<payload>">.
func stripeSignature(payload []byte, secret string, at time.Time) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.", at.Unix())
	mac.Write(payload)
	return fmt.Sprintf("t=%d,v1=%s", at.Unix(), hex.EncodeToString(mac.Sum(nil)))
}

// FuzzStripeWebhook posts arbitrary payloads to POST /webhooks/stripe, signed or not. Billing is on
// (the route exists only then) against stripe-mock, which the handler calls only to settle two
// events of the same second.
func FuzzStripeWebhook(f *testing.F) {
	sm, err := stripeMock()
	if err != nil {
		f.Fatalf("stripe-mock: %v", err)
	}
	h := newFuzzHarness(f, "STRIPE_SECRET_KEY", "sk_test_123", "STRIPE_API_URL", sm.URL, "STRIPE_WEBHOOK_SECRET", testWebhookSecret)
	f.Fuzz(func(t *testing.T, payload []byte, signature byte) {
		header := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
		mode := int(signature) % sigVariants
		switch mode {
		case sigValid:
			header.Set("Stripe-Signature", stripeSignature(payload, testWebhookSecret, time.Now()))
		case sigWrongKey:
			header.Set("Stripe-Signature", stripeSignature(payload, "whsec_not_the_endpoint_secret", time.Now()))
		case sigTooOld:
			header.Set("Stripe-Signature", stripeSignature(payload, testWebhookSecret, time.Now().Add(-10*time.Minute)))
		}
		rec := h.serve("/webhooks/stripe", payload, header)
		t.Logf("%d %s", rec.Code, rec.Body)
		if mode != sigValid {
			if rec.Code != http.StatusBadRequest {
				t.Errorf("signature variant %d: %d, want 400: %q", mode, rec.Code, rec.Body.String())
			}
			h.settle(t)
			return
		}
		switch {
		case rec.Code >= 200 && rec.Code <= 299:
			// Applied (or recorded and ignored): the event id, the subscription, owners' emails.
			h.settle(t, "tenantkit.stripe_events", "tenantkit.stripe_subscriptions", "public.tenant_subscriptions", "tenantkit.email_outbox")
		case rec.Code >= 400 && rec.Code <= 499:
			h.settle(t)
		case rec.Code == http.StatusInternalServerError && rec.Body.String() == unexpectedSubscription:
			// The one deliberate 5xx (internal/postgres/stripe.go, ApplyStripeEvent): a
			// subscription of ours whose values the database refuses (a status the enum lacks) is a
			// bug to fix, and Stripe's retries apply the event once it is fixed.
			h.settle(t)
		default:
			t.Errorf("signed payload answered %d: %q", rec.Code, rec.Body.String())
			h.settle(t)
		}
	})
}
