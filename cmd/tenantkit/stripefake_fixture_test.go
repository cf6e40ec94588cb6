package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// fakeBilling is the service billing through the stateful Stripe double, its plans synced.
type fakeBilling struct {
	*stack
	fake  *stripefake.Server
	plans map[string]fakePlan // by key
}

type fakePlan struct{ id, price string }

func newFakeBilling(t *testing.T, env ...string) *fakeBilling {
	t.Helper()
	fake := stripefake.New(stripefake.Options{Now: time.Now().Add(-time.Hour)})
	t.Cleanup(fake.Close)
	s := newStack(t, append([]string{"STRIPE_SECRET_KEY", stripefake.TestKey, "STRIPE_API_URL", fake.URL,
		"STRIPE_WEBHOOK_SECRET", testWebhookSecret}, env...)...)
	f := &fakeBilling{stack: s, fake: fake, plans: map[string]fakePlan{}}
	cfg := commandEnv(s.m, "STRIPE_SECRET_KEY", stripefake.TestKey, "STRIPE_API_URL", fake.URL)
	var out bytes.Buffer
	if err := plansSync(context.Background(), func(k string) string { return cfg[k] }, &out); err != nil {
		t.Fatalf("plans sync: %v\n%s", err, out.String())
	}
	rows, err := s.admin.Query(context.Background(), `SELECT key, id::text, coalesce(stripe_price_id, '') FROM subscription_plans`)
	if err != nil {
		t.Fatal(err)
	}
	var key string
	var p fakePlan
	if _, err := pgx.ForEachRow(rows, []any{&key, &p.id, &p.price}, func() error { f.plans[key] = p; return nil }); err != nil {
		t.Fatal(err)
	}
	return f
}

// restart stops the service (as a crash would leave its queued work: in the database) and starts
// another on the same database, with the same environment plus env.
func (f *fakeBilling) restart(t *testing.T, env ...string) {
	t.Helper()
	if err := f.m.Close(); err != nil {
		t.Fatalf("stop the service: %v", err)
	}
	old := f.m
	url := old.Config.DatabaseURL
	app := old.Config.AppDatabaseURL
	if app == "" {
		app = pgtest.AppURL(t, url)
	}
	base := []string{"DATABASE_URL", url, "APP_DATABASE_URL", app,
		"SMTP_URL", f.smtp.URL(), "STRIPE_SECRET_KEY", stripefake.TestKey, "STRIPE_API_URL", f.fake.URL,
		"STRIPE_WEBHOOK_SECRET", testWebhookSecret}
	if old.Config.Pooler != "" { // the same database through the same pooler (TENANTKIT_TEST_POOLER)
		base = append(base, "DATABASE_POOLER", string(old.Config.Pooler))
	}
	f.m = start(t, append(base, env...)...)
	if u, ok := directURLs.Load(old); ok {
		directURLs.Store(f.m, u)
	}
	f.hasura = hasuratest.NewClient(metadata(t), map[string]string{
		"TENANTKIT_URL":         f.m.HTTP.URL(),
		"TENANTKIT_SECRET":      testSecret,
		"TENANTKIT_GRAPHQL_URL": f.m.HTTP.URL() + "/graphql",
	})
}

// deliver delivers every event the double emitted since the last call, in order; each must be
// answered 200.
func (f *fakeBilling) deliver(t *testing.T) []stripefake.Event {
	t.Helper()
	events := f.fake.Drain()
	for _, e := range events {
		if st, err := stripefake.Deliver(f.m.HTTP.URL()+"/webhooks/stripe", testWebhookSecret, e); err != nil || st != http.StatusOK {
			t.Fatalf("delivery of %s %s: %d %v", e.Type, e.ID, st, err)
		}
	}
	return events
}

// lastCheckout is the newest checkout session opened for the tenant (its client_reference_id).
// Tests that share one Stripe double run in parallel, so the newest session of all may be another
// test's.
func lastCheckout(t *testing.T, fake *stripefake.Server, tenant string) stripego.CheckoutSession {
	t.Helper()
	sessions := fake.CheckoutSessions()
	for i := len(sessions) - 1; i >= 0; i-- {
		if sessions[i].ClientReferenceID == tenant {
			return sessions[i]
		}
	}
	t.Fatalf("no checkout session for tenant %s", tenant)
	return stripego.CheckoutSession{}
}

// subscribe completes a checkout of the plan for the tenant, applies its webhooks and returns the
// subscription's id.
func (f *fakeBilling) subscribe(t *testing.T, tenant, owner, planKey string) string {
	t.Helper()
	f.ok(t, "createCheckoutSession", map[string]any{"tenantId": tenant, "planId": f.plans[planKey].id}, owner)
	cs, err := f.fake.CompleteCheckout(lastCheckout(t, f.fake, tenant).ID)
	if err != nil {
		t.Fatal(err)
	}
	f.deliver(t)
	return cs.Subscription.ID
}

// outcome is the outcome recorded for a Stripe event.
func (f *fakeBilling) outcome(t *testing.T, eventID string) string {
	t.Helper()
	var o string
	if err := f.admin.QueryRow(context.Background(), `SELECT coalesce(outcome, '') FROM tenantkit.stripe_events WHERE id = $1`, eventID).Scan(&o); err != nil {
		t.Fatalf("outcome of %s: %v", eventID, err)
	}
	return o
}

// settleOutbox makes every write waiting out a back-off due now, as if that time had passed.
func (f *fakeBilling) settleOutbox(t *testing.T) {
	t.Helper()
	exec(t, f.stack, `UPDATE tenantkit.stripe_outbox SET next_at = now() WHERE done_at IS NULL AND outcome = 'retrying'`)
}

// flushOutbox sends every due Stripe write now, as the service's sender would at its next poll,
// so that a check that nothing more is sent does not depend on the poll's timing.
func (f *fakeBilling) flushOutbox(t *testing.T) {
	t.Helper()
	if _, err := f.m.StripeOutbox.Flush(context.Background()); err != nil {
		t.Fatalf("flush the Stripe outbox: %v", err)
	}
}

// eventually waits (up to 30 s, checking every 50 ms) for cond; what names it in the failure,
// and state, when given, says where things stood.
func eventually(t *testing.T, what string, cond func() bool, state ...func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, s := range state {
				what += ": " + s()
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errRolledBack, returned by an asUser function, rolls its transaction back without failing.
var errRolledBack = errors.New("rolled back")

// asUser runs fn under RLS as the user, through the service's user pool.
func (s *stack) asUser(t *testing.T, user string, fn func(tx pgx.Tx) error) {
	t.Helper()
	if err := s.m.DB.WithUser(context.Background(), tenantkit.UserSession(user), fn); err != nil && !errors.Is(err, errRolledBack) {
		t.Fatal(err)
	}
}
