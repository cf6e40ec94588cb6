package billing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
	"github.com/tenantkit/tenantkit/internal/stripe"
	"github.com/tenantkit/tenantkit/internal/stripefake"
	"github.com/tenantkit/tenantkit/internal/team"
)

const worldWebhookSecret = "whsec_billing_service_tests"

// stripeWorld is billing.Service and the Stripe outbox over a fresh database and the stateful
// Stripe double, wired as the service wires them (internal/stripe's client, its webhook handler),
// with the plans synced: professional and enterprise bill api_calls (a metered price each),
// starter does not.
type stripeWorld struct {
	db     *postgres.DB
	pool   *pgxpool.Pool
	fake   *stripefake.Server
	bills  *billing.Service
	teams  *team.Service
	outbox *billing.StripeOutbox
	hook   string // the webhook endpoint's URL
	plans  map[string]billing.PlanPrice
}

func newStripeWorld(t *testing.T) *stripeWorld {
	t.Helper()
	return newStripeWorldAt(t, time.Now().Add(-time.Hour))
}

// newStripeWorldAt is newStripeWorld with the double's clock starting at now.
func newStripeWorldAt(t *testing.T, now time.Time) *stripeWorld {
	t.Helper()
	db, pool := pgtest.Open(t)
	fake := stripefake.New(stripefake.Options{Now: now})
	t.Cleanup(fake.Close)
	sc := stripe.New(stripefake.TestKey, fake.URL)
	teams := &team.Service{Store: db, TrialPlan: "starter"}
	w := &stripeWorld{db: db, pool: pool, fake: fake, teams: teams,
		bills: &billing.Service{Store: db, Stripe: sc, Authorize: teams.Check, AppURL: "https://app.example"},
		plans: map[string]billing.PlanPrice{}}
	w.outbox = &billing.StripeOutbox{Store: db, Stripe: sc, Usage: w.bills, Log: zerolog.Nop()}
	hook := httptest.NewServer(&stripe.Webhook{Secret: worldWebhookSecret, Billing: w.bills})
	t.Cleanup(hook.Close)
	w.hook = hook.URL
	w.exec(t, `UPDATE subscription_plans SET api_calls_unit_amount = CASE key WHEN 'professional' THEN 0.05 ELSE 0.02 END
		WHERE key IN ('professional', 'enterprise')`)
	if _, err := w.bills.SyncPlans(context.Background()); err != nil {
		t.Fatalf("sync plans: %v", err)
	}
	plans, err := db.PlanPrices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		w.plans[p.Key] = p
	}
	return w
}

// exec runs q as the superuser.
func (w *stripeWorld) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := w.pool.Exec(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// scan runs q as the superuser and scans its one row into dest.
func (w *stripeWorld) scan(t *testing.T, q string, args []any, dest ...any) {
	t.Helper()
	if err := w.pool.QueryRow(context.Background(), q, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// user makes a user and returns its id.
func (w *stripeWorld) user(t *testing.T) string {
	t.Helper()
	var id string
	w.scan(t, `INSERT INTO auth.users (email) VALUES (gen_random_uuid() || '@example.com') RETURNING id::text`, nil, &id)
	return id
}

// tenant makes a tenant through the team service (on its trial of starter) and returns it and
// its owner.
func (w *stripeWorld) tenant(t *testing.T) (tenant, owner string) {
	t.Helper()
	owner = w.user(t)
	tn, err := w.teams.CreateTenant(context.Background(), tenantkit.UserSession(owner), "Acme", "acme-"+owner[:8])
	if err != nil {
		t.Fatal(err)
	}
	return tn.ID, owner
}

// join adds n new users to the tenant as members, in one statement.
func (w *stripeWorld) join(t *testing.T, tenant string, n int) []string {
	t.Helper()
	users := make([]string, n)
	for i := range users {
		users[i] = w.user(t)
	}
	w.exec(t, `INSERT INTO tenant_users (tenant_id, user_id, role) SELECT $1, u, 'member' FROM unnest($2::uuid[]) u`, tenant, users)
	return users
}

// members is the tenant's number of members.
func (w *stripeWorld) members(t *testing.T, tenant string) int64 {
	t.Helper()
	var n int64
	w.scan(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, []any{tenant}, &n)
	return n
}

// deliver delivers every event the double emitted since the last call, in order; each must be
// answered 200.
func (w *stripeWorld) deliver(t *testing.T) {
	t.Helper()
	for _, e := range w.fake.Drain() {
		if st, err := stripefake.Deliver(w.hook, worldWebhookSecret, e); err != nil || st != http.StatusOK {
			t.Fatalf("delivery of %s %s: %d %v", e.Type, e.ID, st, err)
		}
	}
}

// subscribe checks the tenant out on the plan through billing.Service, completes the checkout at
// the double and applies its webhooks; it returns the subscription's id.
func (w *stripeWorld) subscribe(t *testing.T, tenant, owner, plan string) string {
	t.Helper()
	if _, err := w.bills.CreateCheckout(context.Background(), tenantkit.UserSession(owner), tenant, w.plans[plan].ID); err != nil {
		t.Fatalf("checkout: %v", err)
	}
	sessions := w.fake.CheckoutSessions()
	cs, err := w.fake.CompleteCheckout(sessions[len(sessions)-1].ID)
	if err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	return cs.Subscription.ID
}

// flush sends every due Stripe write now.
func (w *stripeWorld) flush(t *testing.T) {
	t.Helper()
	if _, err := w.outbox.Flush(context.Background()); err != nil {
		t.Fatalf("flush the Stripe outbox: %v", err)
	}
}

// licensed is the subscription's licensed item at the double: its id, price and quantity; and its
// metered prices.
func (w *stripeWorld) licensed(sub string) (item, price string, qty int64, metered []string) {
	s := w.fake.Subscription(sub)
	for _, it := range s.Items.Data {
		if it.Price.Recurring != nil && it.Price.Recurring.UsageType == stripego.PriceRecurringUsageTypeMetered {
			metered = append(metered, it.Price.ID)
		} else if item == "" {
			item, price, qty = it.ID, it.Price.ID, it.Quantity
		}
	}
	return item, price, qty, metered
}

// posts are the POST requests the double answered whose path is path.
func (w *stripeWorld) posts(path string) []stripefake.Request {
	var out []stripefake.Request
	for _, r := range w.fake.Requests() {
		if r.Method == http.MethodPost && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}
