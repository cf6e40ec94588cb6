package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// TestBillingLifecycles is the property test of billing: random lives of paying tenants (a trial
// or a checkout, plan changes in the billing portal and through tenantkit, quantity changes, failed
// payments and recoveries, retries exhausted, cancellations at period end and withdrawn, renewals,
// a second subscription for some tenants, strangers' Payment Link checkouts naming a tenant) are
// played against the stateful Stripe double; the webhooks it generated are delivered shuffled,
// 20 % duplicated, with its same-second ties, from several goroutines at once. After every round,
// each tenant's row, effective plan, limits and queued emails must equal what the double's state
// implies. LIFECYCLE_SEED replays a run; LIFECYCLE_ROUNDS and LIFECYCLE_TENANTS scale it.
func TestBillingLifecycles(t *testing.T) {
	t.Parallel()
	seed := envSeed(t, "LIFECYCLE_SEED")
	rounds, tenants := envInt("LIFECYCLE_ROUNDS", 6), envInt("LIFECYCLE_TENANTS", 8)
	t.Logf("seed %d (LIFECYCLE_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 11))

	b := newBillingStack(t, time.Now().Add(-24*time.Hour))
	fake := b.fake
	w := &world{t: t, s: b.stack, fake: fake, rng: rng, plans: map[string]planInfo{}}
	w.loadPlans()

	for range tenants {
		w.tenants = append(w.tenants, w.newTenant())
	}
	stats := struct{ events, deliveries, ties int }{}
	for round := range rounds {
		for _, tn := range w.tenants {
			w.live(tn, round)
		}
		events := fake.Drain()
		stats.events += len(events)
		stats.ties += ties(events)
		stats.deliveries += w.deliver(events)
		w.check(round)
		if t.Failed() {
			t.Fatalf("seed %d: round %d failed (LIFECYCLE_SEED=%d replays it)", seed, round, seed)
		}
	}
	t.Logf("%d rounds × %d lifecycles: %d events (%d in a second shared with another event of the same subscription), %d deliveries",
		rounds, tenants, stats.events, stats.ties, stats.deliveries)
}

// envSeed is the seed the environment variable name sets to replay a run, else a new one; a value
// that is not a seed fails the test rather than replaying another run.
func envSeed(t *testing.T, name string) uint64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return uint64(time.Now().UnixNano())
	}
	seed, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return seed
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

type planInfo struct {
	id, key, price string
	users, projs   int64
}

type lifeTenant struct {
	id, owner, customer string
	strangers           []string // customers of strangers' checkouts naming this tenant
}

type world struct {
	t       *testing.T
	s       *stack
	fake    *stripefake.Server
	rng     *rand.Rand
	plans   map[string]planInfo // by key
	byPrice map[string]planInfo
	free    planInfo
	tenants []*lifeTenant
}

func (w *world) loadPlans() {
	w.byPrice = map[string]planInfo{}
	rows, err := w.s.admin.Query(context.Background(), `SELECT id::text, key, coalesce(stripe_price_id, ''),
		coalesce((limits->>'users')::bigint, -1), coalesce((limits->>'projects')::bigint, -1), is_default FROM subscription_plans`)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var p planInfo
		var def bool
		if err := rows.Scan(&p.id, &p.key, &p.price, &p.users, &p.projs, &def); err != nil {
			w.t.Fatal(err)
		}
		w.plans[p.key] = p
		if p.price != "" {
			w.byPrice[p.price] = p
		}
		if def {
			w.free = p
		}
	}
	if len(w.byPrice) != 3 || w.free.key != "free" {
		w.t.Fatalf("plans after sync: %v (default %q)", w.plans, w.free.key)
	}
}

func (w *world) paidPlan() planInfo {
	keys := []string{"starter", "professional", "enterprise"}
	return w.plans[keys[w.rng.IntN(len(keys))]]
}

// tick moves Stripe's clock by 0 or 1 second: many events share a second, as with Stripe.
func (w *world) tick() { w.fake.Advance(time.Duration(w.rng.IntN(2)) * time.Second) }

func (w *world) newTenant() *lifeTenant {
	id, owner := w.s.tenant(w.t)
	tn := &lifeTenant{id: id, owner: owner}
	if w.rng.IntN(3) == 0 {
		// a trial started in the Dashboard for the customer tenantkit created (before checkout)
		w.checkoutURL(tn, w.paidPlan())
		w.must(w.fake.CreateSubscription(tn.customer, []stripefake.Item{{Price: w.paidPlan().price}}, nil, 14, ""))
	} else {
		w.checkout(tn, w.paidPlan())
	}
	w.tick()
	return tn
}

// checkoutURL opens a checkout through the action, as the tenant's admin would; it returns the
// session the double holds for it.
func (w *world) checkoutURL(tn *lifeTenant, p planInfo) string {
	w.s.ok(w.t, "createCheckoutSession", map[string]any{"tenantId": tn.id, "planId": p.id}, tn.owner)
	tn.customer, _ = w.s.row(w.t, "tenant_subscriptions", "tenant_id = $1", tn.id)["stripe_customer_id"].(string)
	sessions := w.fake.CheckoutSessions()
	for i := len(sessions) - 1; i >= 0; i-- {
		if sessions[i].Customer != nil && sessions[i].Customer.ID == tn.customer {
			return sessions[i].ID
		}
	}
	w.t.Fatalf("no checkout session at the double for customer %q", tn.customer)
	return ""
}

func (w *world) checkout(tn *lifeTenant, p planInfo) {
	if _, err := w.fake.CompleteCheckout(w.checkoutURL(tn, p)); err != nil {
		w.t.Fatalf("complete checkout: %v", err)
	}
}

func (w *world) must(_ string, err error) {
	if err != nil {
		w.t.Fatal(err)
	}
}

// subs are the tenant's customer's subscriptions at the double, oldest first.
func (w *world) subs(tn *lifeTenant) []stripego.Subscription {
	subs := w.fake.SubscriptionsOf(tn.customer)
	slices.SortFunc(subs, func(a, b stripego.Subscription) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.ID, b.ID))
	})
	return subs
}

func entitling(st stripego.SubscriptionStatus) bool {
	return st == "trialing" || st == "active" || st == "past_due"
}

func hasEnded(st stripego.SubscriptionStatus) bool {
	return st == "canceled" || st == "incomplete_expired"
}

// current is what Stripe's state implies the tenant's subscription is: the newest that entitles,
// else the newest not ended, else the newest.
func current(subs []stripego.Subscription) *stripego.Subscription {
	var best *stripego.Subscription
	rank := func(s *stripego.Subscription) int {
		switch {
		case entitling(s.Status):
			return 2
		case !hasEnded(s.Status):
			return 1
		}
		return 0
	}
	for i := range subs {
		s := &subs[i]
		if best == nil || rank(s) > rank(best) || (rank(s) == rank(best) && (s.Created > best.Created || (s.Created == best.Created && s.ID > best.ID))) {
			best = s
		}
	}
	return best
}

func licensed(s *stripego.Subscription) (price string, qty int64) {
	for _, it := range s.Items.Data {
		if it.Price.Recurring == nil || it.Price.Recurring.UsageType != stripego.PriceRecurringUsageTypeMetered {
			return it.Price.ID, it.Quantity
		}
	}
	return "", 0
}

// live plays a few random steps of the tenant's life at Stripe.
func (w *world) live(tn *lifeTenant, round int) {
	// First, as the tenant's admin, through tenantkit (its stored state is Stripe's now).
	stored, _ := w.s.row(w.t, "tenant_subscriptions", "tenant_id = $1", tn.id)["stripe_subscription_id"].(string)
	if cur := current(w.subs(tn)); cur != nil && cur.ID == stored && !hasEnded(cur.Status) && w.rng.IntN(3) == 0 {
		switch w.rng.IntN(3) {
		case 0:
			w.s.ok(w.t, "changePlan", map[string]any{"tenantId": tn.id, "planId": w.paidPlan().id}, tn.owner)
		case 1:
			w.s.ok(w.t, "cancelSubscription", map[string]any{"tenantId": tn.id}, tn.owner)
		case 2:
			w.s.ok(w.t, "resumeSubscription", map[string]any{"tenantId": tn.id}, tn.owner)
		}
		w.tick()
	}
	for range 2 + w.rng.IntN(4) {
		subs := w.subs(tn)
		cur := current(subs)
		if cur == nil || hasEnded(cur.Status) {
			if w.rng.IntN(2) == 0 {
				w.checkout(tn, w.paidPlan()) // subscribes again
			}
			w.tick()
			continue
		}
		id := cur.ID
		var err error
		switch op := w.rng.IntN(12); {
		case op == 0:
			price, _ := licensed(cur)
			p := w.paidPlan()
			if p.price != price {
				err = w.fake.PortalChangePrice(id, p.price)
			}
		case op == 1:
			if _, q := licensed(cur); true {
				if n := 1 + int64(w.rng.IntN(5)); n != q {
					err = w.fake.PortalSetQuantity(id, n)
				}
			}
		case op == 2 || op == 3:
			if cur.Status == "active" || cur.Status == "trialing" || cur.Status == "past_due" {
				err = w.fake.FailPayment(id)
			}
		case op == 4:
			if cur.Status == "past_due" || cur.Status == "unpaid" {
				err = w.fake.RecoverPayment(id)
			}
		case op == 5:
			if cur.Status == "past_due" {
				err = w.fake.ExhaustRetries(id, []string{"unpaid", "canceled"}[w.rng.IntN(2)])
			}
		case op == 6:
			err = w.fake.PortalCancelAtPeriodEnd(id, !cur.CancelAtPeriodEnd)
		case op == 7:
			if cur.Status == "active" || cur.Status == "trialing" || cur.Status == "past_due" || cur.Status == "unpaid" {
				err = w.fake.Renew(id)
			}
		case op == 8:
			if cur.Status == "trialing" {
				if err = w.fake.TrialWillEnd(id); err == nil && w.rng.IntN(2) == 0 {
					err = w.fake.EndTrial(id, w.rng.IntN(3) > 0)
				}
			}
		case op == 9:
			live := 0
			for _, s := range subs {
				if !hasEnded(s.Status) {
					live++
				}
			}
			if live < 2 && round > 0 { // a second subscription, made in the Dashboard
				_, err = w.fake.CreateSubscription(tn.customer, []stripefake.Item{{Price: w.paidPlan().price}}, nil, 0, "")
			}
		case op == 10:
			// A stranger's Payment Link checkout with ?client_reference_id=<this tenant>.
			var c string
			c, _, err = w.fake.StrangerCheckout(tn.id, w.paidPlan().price)
			tn.strangers = append(tn.strangers, c)
		case op == 11:
			if cur.Status == "trialing" {
				err = w.fake.EndTrial(id, true)
			}
		}
		if err != nil {
			w.t.Fatalf("tenant %s, subscription %s (%s): %v", tn.id, id, cur.Status, err)
		}
		w.tick()
	}
}

// ties counts events that share their second with another event of the same object.
func ties(events []stripefake.Event) int {
	seen := map[string]int{}
	for _, e := range events {
		var body struct {
			Data struct {
				Object struct {
					ID           string `json:"id"`
					Subscription string `json:"subscription"`
				} `json:"object"`
			} `json:"data"`
		}
		_ = json.Unmarshal(e.Payload, &body)
		obj := cmp.Or(body.Data.Object.Subscription, body.Data.Object.ID)
		seen[fmt.Sprint(obj, e.Created)]++
	}
	n := 0
	for _, c := range seen {
		if c > 1 {
			n += c
		}
	}
	return n
}

// deliver posts the events as Stripe would at its worst: shuffled, a fifth of them twice, from four
// goroutines. Each must be answered 200.
func (w *world) deliver(events []stripefake.Event) int {
	var deliveries []stripefake.Event
	for _, e := range events {
		deliveries = append(deliveries, e)
		if w.rng.IntN(5) == 0 {
			deliveries = append(deliveries, e)
		}
	}
	w.rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(deliveries) {
					return
				}
				e := deliveries[i]
				st, err := stripefake.Deliver(w.s.m.HTTP.URL()+"/webhooks/stripe", testWebhookSecret, e)
				if err != nil || st != http.StatusOK {
					w.t.Errorf("delivery of %s %s: %d %v", e.Type, e.ID, st, err)
				}
			}
		})
	}
	wg.Wait()
	return len(deliveries)
}

// check compares every tenant with what the double's state implies.
func (w *world) check(round int) {
	for _, tn := range w.tenants {
		subs := w.subs(tn)
		cur := current(subs)
		row := w.s.row(w.t, "tenant_subscriptions", "tenant_id = $1", tn.id)
		where := fmt.Sprintf("round %d, tenant %s", round, tn.id)
		if row["stripe_customer_id"] != tn.customer {
			w.t.Errorf("%s: customer %v, want %s (never replaced by an event)", where, row["stripe_customer_id"], tn.customer)
		}
		price, qty := licensed(cur)
		plan := w.byPrice[price]
		want := map[string]any{"stripe_subscription_id": cur.ID, "status": string(cur.Status), "plan_id": plan.id,
			"stripe_price_id": price, "stripe_quantity": float64(qty), "cancel_at_period_end": cur.CancelAtPeriodEnd}
		for k, v := range want {
			if row[k] != v {
				w.t.Errorf("%s: %s = %v, want %v (Stripe: %s %s on %s)", where, k, row[k], v, cur.ID, cur.Status, plan.key)
			}
		}
		effective := w.free
		if entitling(cur.Status) {
			effective = plan
		}
		var gotPlan string
		var users, projects int64
		if err := w.s.admin.QueryRow(context.Background(), `SELECT tenantkit.effective_plan($1)::text,
			tenantkit.plan_limit($1, 'users'), tenantkit.plan_limit($1, 'projects')`, tn.id).Scan(&gotPlan, &users, &projects); err != nil {
			w.t.Fatal(err)
		}
		if gotPlan != effective.id || users != effective.users || projects != effective.projs {
			w.t.Errorf("%s: effective plan %s (%d users, %d projects), want %s (%d, %d) for %s on %s",
				where, gotPlan, users, projects, effective.key, effective.users, effective.projs, cur.Status, plan.key)
		}
		// every subscription of the customer is known, in its current status
		for _, s := range subs {
			var status string
			err := w.s.admin.QueryRow(context.Background(), `SELECT status::text FROM tenantkit.stripe_subscriptions
				WHERE id = $1 AND tenant_id = $2`, s.ID, tn.id).Scan(&status)
			if err != nil || status != string(s.Status) {
				w.t.Errorf("%s: subscription %s stored as %q (%v), Stripe says %s", where, s.ID, status, err, s.Status)
			}
		}
		for _, c := range tn.strangers {
			if n := w.s.count(w.t, `SELECT count(*) FROM tenantkit.stripe_subscriptions WHERE customer_id = $1`, c); n != 0 {
				w.t.Errorf("%s: a stranger's customer %s got %d subscriptions linked", where, c, n)
			}
		}
		w.checkEmails(tn, subs, cur, where)
	}
}

// checkEmails: each payment failure (invoice attempt) and each trial's warning is emailed at most
// once; and, for a tenant whose customer has only ever had one subscription, exactly once while
// that subscription is still live (trialing with the same trial end, for the warning).
func (w *world) checkEmails(tn *lifeTenant, subs []stripego.Subscription, cur *stripego.Subscription, where string) {
	rows, err := w.s.admin.Query(context.Background(), `SELECT dedupe_key, count(*) FROM tenantkit.email_outbox
		WHERE tenant_id = $1 GROUP BY dedupe_key`, tn.id)
	if err != nil {
		w.t.Fatal(err)
	}
	got := map[string]int{}
	for rows.Next() {
		var k *string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			w.t.Fatal(err)
		}
		if k == nil {
			w.t.Errorf("%s: a billing email without a dedupe key", where)
			continue
		}
		got[*k] = n
	}
	rows.Close()
	want := map[string]bool{} // key → must exist
	may := map[string]bool{}
	only := len(subs) == 1
	for _, e := range w.fake.Events() {
		var body struct {
			Data struct {
				Object struct {
					ID           string `json:"id"`
					Customer     string `json:"customer"`
					Subscription string `json:"subscription"`
					AttemptCount int64  `json:"attempt_count"`
					TrialEnd     int64  `json:"trial_end"`
				} `json:"object"`
			} `json:"data"`
		}
		if err := json.Unmarshal(e.Payload, &body); err != nil {
			w.t.Fatal(err)
		}
		o := body.Data.Object
		if o.Customer != tn.customer {
			continue
		}
		switch e.Type {
		case "invoice.payment_failed":
			k := fmt.Sprintf("payment_failed:%s:%d", o.ID, o.AttemptCount)
			may[k] = true
			if only && o.Subscription == cur.ID && !hasEnded(cur.Status) {
				want[k] = true
			}
		case "customer.subscription.trial_will_end":
			k := fmt.Sprintf("trial_ending:%s:%d", o.ID, o.TrialEnd)
			may[k] = true
			if only && o.ID == cur.ID && cur.Status == "trialing" && cur.TrialEnd == o.TrialEnd {
				want[k] = true
			}
		}
	}
	for k, n := range got {
		if !may[k] || n != 1 { // one owner per tenant
			w.t.Errorf("%s: email %s queued %d times (caused by Stripe: %t)", where, k, n, may[k])
		}
	}
	for k := range want {
		if got[k] == 0 {
			w.t.Errorf("%s: no email for %s", where, k)
		}
	}
}
