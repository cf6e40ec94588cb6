package main

import (
	"bytes"
	"context"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/stripe"
	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// billingStack is a stack billing through the stateful Stripe double, plans synced.
type billingStack struct {
	*stack
	fake *stripefake.Server
	env  map[string]string
}

func newBillingStack(t *testing.T, fakeNow time.Time) *billingStack {
	t.Helper()
	fake := stripefake.New(stripefake.Options{Now: fakeNow})
	t.Cleanup(fake.Close)
	s := newStack(t, "STRIPE_SECRET_KEY", stripefake.TestKey, "STRIPE_API_URL", fake.URL, "STRIPE_WEBHOOK_SECRET", testWebhookSecret)
	b := &billingStack{stack: s, fake: fake,
		env: commandEnv(s.m, "STRIPE_SECRET_KEY", stripefake.TestKey, "STRIPE_API_URL", fake.URL)}
	var out bytes.Buffer
	if err := plansSync(context.Background(), b.getenv, &out); err != nil {
		t.Fatalf("plans sync: %v\n%s", err, out.String())
	}
	return b
}

func (b *billingStack) getenv(k string) string { return b.env[k] }

// deliver posts every webhook the double has for delivery (lost ones never come).
func (b *billingStack) deliver(t *testing.T) {
	t.Helper()
	for _, e := range b.fake.Drain() {
		if st, err := stripefake.Deliver(b.m.HTTP.URL()+"/webhooks/stripe", testWebhookSecret, e); err != nil || st != http.StatusOK {
			t.Fatalf("delivery of %s %s: %d %v", e.Type, e.ID, st, err)
		}
	}
}

// lose makes every webhook not yet delivered never arrive.
func (b *billingStack) lose() int {
	return b.fake.LoseWebhooks(func(stripefake.Event) bool { return true })
}

func (b *billingStack) plan(t *testing.T, key string) (id, price string) {
	t.Helper()
	r := b.row(t, "subscription_plans", "key = $1", key)
	return r["id"].(string), r["stripe_price_id"].(string)
}

// subscribe completes a checkout of the plan for a new tenant; its webhooks are delivered.
func (b *billingStack) subscribe(t *testing.T, planKey string) (tenant, owner, sub string) {
	t.Helper()
	tenant, owner = b.tenant(t)
	planID, _ := b.plan(t, planKey)
	b.ok(t, "createCheckoutSession", map[string]any{"tenantId": tenant, "planId": planID}, owner)
	cs, err := b.fake.CompleteCheckout(lastCheckout(t, b.fake, tenant).ID)
	if err != nil {
		t.Fatal(err)
	}
	b.deliver(t)
	return tenant, owner, cs.Subscription.ID
}

// customer gives a new tenant its Stripe customer (as the billing portal does) and returns both.
func (b *billingStack) customer(t *testing.T) (tenant, owner, customer string) {
	t.Helper()
	tenant, owner = b.tenant(t)
	b.ok(t, "createBillingPortalSession", map[string]any{"tenantId": tenant}, owner)
	return tenant, owner, b.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["stripe_customer_id"].(string)
}

// checksum is a digest of the billing state reconciliation may change.
func (b *billingStack) checksum(t *testing.T) string {
	t.Helper()
	var sum string
	if err := b.admin.QueryRow(context.Background(), `SELECT concat_ws('/',
		(SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM tenantkit.stripe_subscriptions x),
		(SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM tenant_subscriptions x),
		(SELECT md5(coalesce(string_agg(x.id || x.outcome, ',' ORDER BY x.id), '')) FROM tenantkit.stripe_events x),
		(SELECT count(*) FROM tenantkit.email_outbox))`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	return sum
}

// reconcile runs the command and returns its stdout and stderr.
func (b *billingStack) reconcile(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = stripeReconcile(context.Background(), b.getenv, args, &out, &errOut, reconcileOptions{pageSize: 2, progressEvery: time.Nanosecond})
	return out.String(), errOut.String(), err
}

// driftedAccount seeds the double and the database with every kind of drift reconciliation
// handles; it returns the tenants by what happened to them.
type driftedAccount struct {
	priceChanged, paymentFailed, neverArrived, canceledLongAgo, unpriced string // tenant ids
	paymentFailedOwner                                                   string
	subs                                                                 map[string]string // tenant → subscription
	lost                                                                 int
}

func seedDrift(t *testing.T, b *billingStack) driftedAccount {
	t.Helper()
	a := driftedAccount{subs: map[string]string{}}
	_, proPrice := b.plan(t, "professional")
	_, entPrice := b.plan(t, "enterprise")
	_, starterPrice := b.plan(t, "starter")

	// Canceled 45 days ago: its webhook was lost and its event is past Stripe's 30 days.
	var sub string
	a.canceledLongAgo, _, sub = b.subscribe(t, "starter")
	a.subs[a.canceledLongAgo] = sub
	if _, err := b.fake.Client("").Subscriptions.Cancel(sub, nil); err != nil {
		t.Fatal(err)
	}
	a.lost += b.lose()
	// Its renewal will fail later (moving Stripe's clock a month on).
	a.paymentFailed, a.paymentFailedOwner, sub = b.subscribe(t, "starter")
	a.subs[a.paymentFailed] = sub
	b.fake.Advance(20 * 24 * time.Hour)

	// Stored before tenantkit kept price terms.
	a.unpriced, _, sub = b.subscribe(t, "starter")
	a.subs[a.unpriced] = sub
	exec(t, b.stack, `UPDATE tenantkit.stripe_subscriptions SET unit_amount = NULL, currency = NULL, "interval" = NULL, interval_count = NULL WHERE id = $1`, sub)

	// The plan changed in the billing portal; that webhook was lost.
	a.priceChanged, _, sub = b.subscribe(t, "starter")
	a.subs[a.priceChanged] = sub
	if err := b.fake.PortalChangePrice(sub, proPrice); err != nil {
		t.Fatal(err)
	}
	a.lost += b.lose()

	// A subscription made in the Dashboard whose webhooks never arrived.
	var customer string
	a.neverArrived, _, customer = b.customer(t)
	b.deliver(t)
	sub, err := b.fake.CreateSubscription(customer, []stripefake.Item{{Price: entPrice}}, nil, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	a.subs[a.neverArrived] = sub
	a.lost += b.lose()

	// A stranger's Payment Link checkout naming a tenant: lost too, and never ours.
	if _, _, err := b.fake.StrangerCheckout(a.priceChanged, starterPrice); err != nil {
		t.Fatal(err)
	}
	a.lost += b.lose()

	// The renewal payment fails (Stripe's clock moves to the period end); its webhooks are lost.
	if err := b.fake.FailPayment(a.subs[a.paymentFailed]); err != nil {
		t.Fatal(err)
	}
	a.lost += b.lose()
	return a
}

func TestStripeReconcile(t *testing.T) {
	t.Parallel()
	b := newBillingStack(t, time.Now().Add(-45*24*time.Hour))
	a := seedDrift(t, b)
	before := b.checksum(t)

	// Dry run: the whole report, nothing changed.
	out, errOut, err := b.reconcile(t, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s\n%s", err, out, errOut)
	}
	if after := b.checksum(t); after != before {
		t.Errorf("the dry run changed the database (%s → %s)\n%s", before, after, out)
	}
	if body := strings.TrimSuffix(strings.TrimSpace(out), lastLine(out)); strings.Contains(body, "applied") || strings.Contains(body, "fixed") ||
		!strings.Contains(out, "would apply") ||
		!strings.Contains(out, "would fix") || !strings.Contains(out, "(dry run: nothing changed)") {
		t.Errorf("dry-run report:\n%s", out)
	}
	dryRows := strings.Count(out, "\n") - 2 // header and summary

	// The real run.
	out, errOut, err = b.reconcile(t)
	if err != nil {
		t.Fatalf("reconcile: %v\n%s\n%s", err, out, errOut)
	}
	t.Logf("first run:\n%s", out)
	rows := strings.Count(out, "\n") - 2
	if rows < dryRows {
		t.Errorf("the run reported %d rows, the dry run %d", rows, dryRows)
	}
	// progress, periodically, on stderr
	if n := strings.Count(errOut, "stripe reconcile: events after"); n < 2 || !strings.Contains(errOut, "stripe reconcile: subscriptions after") ||
		!strings.Contains(errOut, "stripe reconcile: done after") {
		t.Errorf("progress on stderr:\n%s", errOut)
	}
	summary := lastLine(out)
	for _, want := range []string{"drifted (2 fixed)", "0 skipped"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary %q lacks %q", summary, want)
		}
	}

	a.checkReconciled(t, b)
	// Every handled event Stripe lists is in the ledger, the stranger's as not_ours.
	if n := b.count(t, `SELECT count(*) FROM tenantkit.stripe_events WHERE outcome = 'not_ours'`); n != 3 {
		t.Errorf("%d not_ours events recorded, want the stranger's checkout, subscription and invoice", n)
	}
	if strings.Contains(out, a.priceChanged+"  subscription") && strings.Count(out, a.priceChanged) > 3 {
		t.Errorf("the stranger's checkout was linked to the tenant it named:\n%s", out)
	}
	for _, want := range []string{
		"event customer.subscription.updated", "subscription " + a.subs[a.neverArrived],
		a.subs[a.canceledLongAgo] + " status", a.subs[a.unpriced] + " unit_amount", a.subs[a.priceChanged] + " price",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}

	// A second run changes nothing and finds nothing.
	fixed := b.checksum(t)
	out, _, err = b.reconcile(t)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if again := b.checksum(t); again != fixed {
		t.Errorf("the second run changed the database:\n%s", out)
	}
	if !strings.Contains(out, "0 missing from the ledger (0 applied, 0 skipped)") || !strings.Contains(out, "0 drifted (0 fixed)") ||
		!strings.HasSuffix(strings.TrimSpace(out), "0 drift rows") {
		t.Errorf("second run:\n%s", out)
	}
	// The lists were read page by page (2 per page here).
	pages := 0
	for _, r := range b.fake.Requests() {
		if r.Method == http.MethodGet && r.Path == "/v1/events" && r.Form.Get("starting_after") != "" {
			pages++
		}
	}
	if pages < 3 {
		t.Errorf("%d follow-up pages of events read, want the list paginated", pages)
	}
	t.Logf("seeded: %d webhooks lost; first run: %d drift rows (%s); dry run: %d rows", a.lost, rows, summary, dryRows)
}

// checkReconciled: each drifted tenant holds what Stripe holds, the missed events applied once.
func (a driftedAccount) checkReconciled(t *testing.T, b *billingStack) {
	t.Helper()
	proID, _ := b.plan(t, "professional")
	entID, _ := b.plan(t, "enterprise")
	freeID := b.row(t, "subscription_plans", "key = 'free'")["id"].(string)
	sub := func(tenant string) map[string]any { return b.row(t, "tenant_subscriptions", "tenant_id = $1", tenant) }
	if s := sub(a.priceChanged); s["plan_id"] != proID {
		t.Errorf("price changed in the portal: plan %v, want professional", s["plan_id"])
	}
	if s := sub(a.paymentFailed); s["status"] != "past_due" {
		t.Errorf("failed renewal: status %v, want past_due", s["status"])
	}
	if n := b.count(t, `SELECT count(*) FROM tenantkit.email_outbox o JOIN auth.users u ON u.email = o.to_email
		WHERE o.tenant_id = $1 AND u.id = $2 AND o.dedupe_key LIKE 'payment_failed:%'`, a.paymentFailed, a.paymentFailedOwner); n != 1 {
		t.Errorf("%d payment-failed emails to the owner, want 1 (the missed event applied as its webhook would)", n)
	}
	if s := sub(a.neverArrived); s["stripe_subscription_id"] != a.subs[a.neverArrived] || s["plan_id"] != entID || s["status"] != "active" {
		t.Errorf("subscription whose webhooks never arrived: %v", s)
	}
	if s := sub(a.canceledLongAgo); s["status"] != "canceled" || s["canceled_at"] == nil {
		t.Errorf("canceled 45 days ago: %v", s)
	}
	if p := b.count(t, `SELECT count(*) FROM tenantkit.entitlement($1) WHERE plan_id = $2`, a.canceledLongAgo, freeID); p != 1 {
		t.Error("the canceled tenant is not back on the free plan")
	}
	if n := b.count(t, `SELECT count(*) FROM tenantkit.stripe_subscriptions WHERE id = $1 AND ended_at IS NOT NULL AND unit_amount = 2900`,
		a.subs[a.canceledLongAgo]); n != 1 {
		t.Error("the canceled subscription's ended_at is not stored")
	}
	if n := b.count(t, `SELECT count(*) FROM tenantkit.stripe_subscriptions WHERE id = $1 AND unit_amount = 2900 AND currency = 'usd'
		AND "interval" = 'month' AND interval_count = 1`, a.subs[a.unpriced]); n != 1 {
		t.Error("the price terms of the unpriced subscription were not filled in")
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestStripeReconcileConcurrent runs two reconciliations of a drifted account at once: each event
// and each change lands once, both runs succeed, and a third finds nothing.
func TestStripeReconcileConcurrent(t *testing.T) {
	t.Parallel()
	b := newBillingStack(t, time.Now().Add(-45*24*time.Hour))
	a := seedDrift(t, b)
	ledger := b.count(t, `SELECT count(*) FROM tenantkit.stripe_events WHERE id LIKE 'evt\_%'`)
	var wg sync.WaitGroup
	outs, errs := make([]string, 2), make([]error, 2)
	for i := range outs {
		wg.Go(func() { outs[i], _, errs[i] = b.reconcile(t) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("run %d: %v\n%s", i, err, outs[i])
		}
	}
	if n := b.count(t, `SELECT count(*) FROM tenantkit.email_outbox WHERE tenant_id = $1 AND dedupe_key LIKE 'payment_failed:%'`, a.paymentFailed); n != 1 {
		t.Errorf("%d payment-failed emails after two concurrent runs, want 1", n)
	}
	// The two runs together end where one run does.
	a.checkReconciled(t, b)
	// Each missed event is recorded by one run; the other, if it saw it missing, finds it a
	// duplicate. Report rows: "TENANT  event TYPE  not recorded  EVENT of TIME  recorded: OUTCOME".
	event := regexp.MustCompile(`\s(evt_\S+) of \S+\s+recorded: (\S+)`)
	recorded := map[string]int{}
	for _, out := range outs {
		for _, m := range event.FindAllStringSubmatch(out, -1) {
			if _, seen := recorded[m[1]]; !seen {
				recorded[m[1]] = 0
			}
			if m[2] != "duplicate" {
				recorded[m[1]]++
			}
		}
	}
	if n := b.count(t, `SELECT count(*) FROM tenantkit.stripe_events WHERE id LIKE 'evt\_%'`) - ledger; len(recorded) == 0 || n != len(recorded) {
		t.Errorf("the runs reported %d missed events, the ledger gained %d:\n%s\n%s", len(recorded), n, outs[0], outs[1])
	}
	for id, n := range recorded {
		if n != 1 {
			t.Errorf("event %s recorded (not as a duplicate) by %d runs, want 1", id, n)
		}
	}
	if n := b.count(t, `SELECT count(*) FROM tenantkit.stripe_events WHERE id = ANY ($1)`, slices.Collect(maps.Keys(recorded))); n != len(recorded) {
		t.Errorf("%d of the %d events the runs recorded are in the ledger", n, len(recorded))
	}
	// Each drifted subscription (the unpriced one, the one canceled long ago) is fixed by one run;
	// the other finds it already as Stripe's.
	fixed := 0
	for _, out := range outs {
		if m := regexp.MustCompile(`drifted \((\d+) fixed\)`).FindStringSubmatch(lastLine(out)); m != nil {
			n, _ := strconv.Atoi(m[1])
			fixed += n
		} else {
			t.Errorf("no summary:\n%s", out)
		}
	}
	if fixed != 2 {
		t.Errorf("the runs fixed %d subscriptions between them, want 2:\n%s\n%s", fixed, outs[0], outs[1])
	}
	out, _, err := b.reconcile(t)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(out), "0 drift rows") {
		t.Errorf("third run: %v\n%s", err, out)
	}
}

// raceAccount wraps the Stripe account so that, right after Stripe listed a subscription and
// before reconciliation applies what it listed, the subscription changes at Stripe and that
// change's webhook is applied: the listed state is then older than the stored one.
type raceAccount struct {
	billing.StripeAccount
	target string
	change func()
}

func (r raceAccount) ListSubscriptions(ctx context.Context, fn func(billing.Subscription) error) error {
	return r.StripeAccount.ListSubscriptions(ctx, func(s billing.Subscription) error {
		if s.ID == r.target {
			r.change()
		}
		return fn(s)
	})
}

func TestStripeReconcileNeverOverwritesNewerWebhookState(t *testing.T) {
	t.Parallel()
	b := newBillingStack(t, time.Now().Add(-time.Hour))
	_, entPrice := b.plan(t, "enterprise")
	tenant, _, sub := b.subscribe(t, "starter")
	// Drift: stored price terms unknown, so reconciliation will apply its listing of the subscription.
	exec(t, b.stack, `UPDATE tenantkit.stripe_subscriptions SET unit_amount = NULL WHERE id = $1`, sub)
	db := b.m.DB
	client := stripe.New(stripefake.TestKey, b.fake.URL)
	r := &billing.Reconciler{Billing: &billing.Service{Store: db, Stripe: client}, Store: db,
		Stripe: raceAccount{StripeAccount: client, target: sub, change: func() {
			b.fake.Advance(time.Second)
			if err := b.fake.PortalChangePrice(sub, entPrice); err != nil {
				t.Error(err)
			}
			if err := b.fake.PortalSetQuantity(sub, 7); err != nil {
				t.Error(err)
			}
			b.deliver(t)
		}}}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	row := b.row(t, "tenantkit.stripe_subscriptions", "id = $1", sub)
	if row["price_id"] != entPrice || row["quantity"] != float64(7) || row["unit_amount"] == nil {
		t.Errorf("after a webhook raced the listing: %v; want enterprise × 7 (Stripe's latest), priced", row)
	}
	if s := b.row(t, "tenant_subscriptions", "tenant_id = $1", tenant); s["stripe_price_id"] != entPrice || s["stripe_quantity"] != float64(7) {
		t.Errorf("tenant row %v", s)
	}
	if rep.SubscriptionsDrifted != 1 || rep.SubscriptionsFixed != 0 || len(rep.Rows) != 1 || !strings.HasPrefix(rep.Rows[0].Action, "none: already as Stripe's") {
		t.Errorf("report %+v %+v", rep.ReconcileStats, rep.Rows)
	}
}
