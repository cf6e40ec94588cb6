package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// TestSubscriptionIntents is the property test of the subscription requests: random sequences of
// cancelSubscription, resumeSubscription and changePlan (with and without a previewed proration
// date) against the stateful Stripe double — repeated, concurrent (the same intent and different
// ones), with the Stripe answer lost so that stripe-go retries with the same key and gets Stripe's
// replay, with Stripe refusing (4xx, 5xx) and with the subscription ended behind tenantkit's back
// — while the webhooks are delivered late, shuffled, or not yet. Properties:
//
//   - every answer 200 describes Stripe's state at that moment (status, cancelAtPeriodEnd, period
//     end, the plan of the billed price, quantity), and Stripe's items are exactly the plan's
//     (licensed price, quantity kept, only the plan's metered price): the state the last answer
//     described is the state Stripe is in;
//   - after concurrent calls, Stripe is in the state one of the 200 answers described (all of them,
//     when they were the same intent);
//   - a refused call answers 4xx, never 5xx, and changes nothing at Stripe;
//   - on a subscription that ended, every call answers 409 conflict saying to start a new checkout,
//     whether its webhook has been applied or not;
//   - once every webhook is delivered, the stored subscription (plan, status, cancellation,
//     quantity) is Stripe's.
//
// INTENTS_SEED replays a run; INTENTS_STEPS and INTENTS_TENANTS scale it.
func TestSubscriptionIntents(t *testing.T) {
	t.Parallel()
	seed := envSeed(t, "INTENTS_SEED")
	steps, tenants := envInt("INTENTS_STEPS", 80), envInt("INTENTS_TENANTS", 3)
	t.Logf("seed %d (INTENTS_SEED=%d replays it)", seed, seed)
	w := newBillingWorld(t)
	iw := &intentWorld{billingWorld: w, t: t, rng: rand.New(rand.NewPCG(seed, 23)), seed: seed, stats: map[string]int{}}
	for range tenants {
		key := iw.planKey()
		tenant, owner, _ := w.subscribe(t, key)
		iw.tenants = append(iw.tenants, &intentTenant{id: tenant, owner: owner})
	}
	for _, tn := range iw.tenants {
		if err := w.fake.PortalSetQuantity(iw.stored(tn), 2+int64(iw.rng.IntN(4))); err != nil {
			t.Fatal(err)
		}
	}
	w.deliver(t)
	for step := range steps {
		iw.step = step
		iw.catchUp()
		tn := iw.tenants[iw.rng.IntN(len(iw.tenants))]
		switch mode := iw.rng.IntN(10); {
		case mode < 3:
			iw.single(tn)
		case mode == 3:
			iw.repeated(tn)
		case mode == 4:
			iw.lostAnswer(tn)
		case mode == 5 || mode == 6:
			iw.concurrent(tn)
		case mode == 7:
			iw.refused(tn)
		case mode == 8:
			iw.end(tn)
		default:
			iw.webhooks(true)
		}
		if iw.rng.IntN(3) == 0 {
			iw.webhooks(false)
		}
		if t.Failed() {
			t.Fatalf("seed %d, step %d failed (INTENTS_SEED=%d replays it)", seed, step, seed)
		}
	}
	iw.webhooks(true)
	t.Logf("%d steps on %d tenants: %v; Stripe replayed %d requests to stripe-go's retries",
		steps, tenants, iw.stats, w.fake.Replayed(http.MethodPost, "/v1/subscriptions/"))
}

type intentTenant struct{ id, owner string }

type intentWorld struct {
	*billingWorld
	t       *testing.T
	rng     *rand.Rand
	seed    uint64
	step    int
	tenants []*intentTenant
	stats   map[string]int
	late    []stripefake.Event // generated, not delivered yet
}

func (iw *intentWorld) planKey() string {
	return []string{"starter", "professional", "enterprise"}[iw.rng.IntN(3)]
}

// stored is the subscription tenantkit acts on: the tenant's current one as last applied.
func (iw *intentWorld) stored(tn *intentTenant) string {
	id, _ := iw.s.row(iw.t, "tenant_subscriptions", "tenant_id = $1", tn.id)["stripe_subscription_id"].(string)
	return id
}

// call is one request: its action and input.
type call struct {
	action string
	input  map[string]any
	label  string
}

// randomCall picks cancel, resume, a plan change, or a plan change at a date previewed first.
func (iw *intentWorld) randomCall(tn *intentTenant) call {
	in := map[string]any{"tenantId": tn.id}
	switch iw.rng.IntN(4) {
	case 0:
		return call{"cancelSubscription", in, "cancel"}
	case 1:
		return call{"resumeSubscription", in, "resume"}
	case 2:
		key := iw.planKey()
		in["planId"] = iw.plan[key].id
		return call{"changePlan", in, "plan " + key}
	}
	key := iw.planKey()
	in["planId"] = iw.plan[key].id
	r := iw.s.action(iw.t, "previewPlanChange", in, tn.owner)
	if r.status == 200 {
		in = map[string]any{"tenantId": tn.id, "planId": iw.plan[key].id, "prorationDate": r.out["prorationDate"]}
		iw.fake.Advance(time.Duration(iw.rng.IntN(90)) * time.Second) // the user reads the preview
	}
	return call{"changePlan", in, "previewed plan " + key}
}

// snapshot is what an answer describes, read from Stripe: licensed price, quantity, metered prices.
type snapshot struct {
	status   string
	cancel   bool
	end      int64
	planID   string
	price    string
	qty      int64
	metered  []string
	consumed bool // the plan's items are whole (licensed at the plan's price, only its metered)
}

func (iw *intentWorld) snapshot(sub string) snapshot {
	st := iw.fake.Subscription(sub)
	price, qty, metered := iw.items(sub)
	slices.Sort(metered)
	sn := snapshot{status: string(st.Status), cancel: st.CancelAtPeriodEnd, end: st.CurrentPeriodEnd, price: price, qty: qty, metered: metered}
	for key, p := range iw.plan {
		if p.price == price {
			sn.planID = p.id
			want := []string{}
			if iw.calls[key] != "" {
				want = []string{iw.calls[key]}
			}
			sn.consumed = slices.Equal(metered, want) || (len(metered) == 0 && len(want) == 0)
		}
	}
	return sn
}

// describes reports how an answer differs from a Stripe state ("" when it describes it).
func describes(out map[string]any, sn snapshot) string {
	end := time.Unix(sn.end, 0).UTC().Format(time.RFC3339)
	var diffs []string
	if out["status"] != sn.status {
		diffs = append(diffs, fmt.Sprintf("status %v ≠ %s", out["status"], sn.status))
	}
	if out["cancelAtPeriodEnd"] != sn.cancel {
		diffs = append(diffs, fmt.Sprintf("cancelAtPeriodEnd %v ≠ %v", out["cancelAtPeriodEnd"], sn.cancel))
	}
	if out["currentPeriodEnd"] != end {
		diffs = append(diffs, fmt.Sprintf("currentPeriodEnd %v ≠ %s", out["currentPeriodEnd"], end))
	}
	if out["planId"] != sn.planID {
		diffs = append(diffs, fmt.Sprintf("planId %v ≠ %s", out["planId"], sn.planID))
	}
	if out["quantity"] != float64(sn.qty) {
		diffs = append(diffs, fmt.Sprintf("quantity %v ≠ %d", out["quantity"], sn.qty))
	}
	return strings.Join(diffs, ", ")
}

// expect runs c as the tenant's owner, alone, and checks its answer against Stripe.
func (iw *intentWorld) expect(tn *intentTenant, c call, why string) result {
	t := iw.t
	t.Helper()
	sub := iw.stored(tn)
	before := iw.snapshot(sub)
	ended := before.status == "canceled" || before.status == "incomplete_expired"
	r := iw.s.action(t, c.action, c.input, tn.owner)
	iw.stats[why]++
	where := fmt.Sprintf("step %d, %s (%s) on %s", iw.step, c.label, why, sub)
	injected := strings.HasPrefix(why, "Stripe answers") // Stripe may refuse before telling it ended
	endedAnswer := r.status == http.StatusConflict && r.code == "conflict" && strings.Contains(r.msg, "start a new checkout")
	switch {
	case ended && endedAnswer:
		iw.stats["ended: conflict"]++
	case ended && !(injected && r.status < 500 && r.status != 200):
		t.Errorf("%s: the subscription ended at Stripe; answer %d %s %q, want 409 conflict saying to start a new checkout", where, r.status, r.code, r.msg)
	case r.status == 200:
		if r.out["subscriptionId"] != sub {
			t.Errorf("%s: answered about %v", where, r.out["subscriptionId"])
		}
		sn := iw.snapshot(sub)
		if d := describes(r.out, sn); d != "" {
			t.Errorf("%s: the answer is not Stripe's state: %s", where, d)
		}
		if !sn.consumed {
			t.Errorf("%s: Stripe bills %s with metered %v: not one plan's items", where, sn.price, sn.metered)
		}
		if c.action == "changePlan" && r.out["planId"] != c.input["planId"] {
			t.Errorf("%s: changePlan answered plan %v", where, r.out["planId"])
		}
	case r.status >= 500:
		t.Errorf("%s: %d %s %q", where, r.status, r.code, r.msg)
	default:
		if after := iw.snapshot(sub); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("%s: refused (%d %s) but Stripe changed:\nbefore %+v\nafter  %+v", where, r.status, r.code, before, after)
		}
		iw.stats["refused "+r.code]++
	}
	return r
}

func (iw *intentWorld) single(tn *intentTenant) { iw.expect(tn, iw.randomCall(tn), "single") }

// repeated: the same intent twice in a row (a user's second click, a client retrying after it lost
// the first answer).
func (iw *intentWorld) repeated(tn *intentTenant) {
	c := iw.randomCall(tn)
	iw.expect(tn, c, "repeated")
	iw.expect(tn, c, "repeated")
}

// lostAnswer: Stripe executes the update but the connection drops before its answer; stripe-go
// retries with the same idempotency key and gets Stripe's saved answer.
func (iw *intentWorld) lostAnswer(tn *intentTenant) {
	sub := iw.stored(tn)
	before := iw.fake.Replayed(http.MethodPost, "/v1/subscriptions/"+sub)
	iw.fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: "/v1/subscriptions/" + sub, Drop: true})
	r := iw.expect(tn, iw.randomCall(tn), "answer lost")
	if r.status == 200 && iw.fake.Replayed(http.MethodPost, "/v1/subscriptions/"+sub) != before+1 {
		iw.t.Errorf("step %d: the lost answer was not replayed to stripe-go's retry", iw.step)
	}
	iw.drainFailures(sub)
}

// drainFailures consumes an injected failure no request met (the call was refused before it
// reached Stripe's update).
func (iw *intentWorld) drainFailures(sub string) {
	for range 3 {
		if _, err := iw.fake.Client("").Subscriptions.Update(sub, &stripego.SubscriptionParams{Metadata: map[string]string{"drain": "x"}}); err == nil {
			return
		}
	}
}

// refused: Stripe answers the update with an error (before executing it, or executing it and
// saving the error under the key); stripe-go retries 409 and 5xx once.
func (iw *intentWorld) refused(tn *intentTenant) {
	sub := iw.stored(tn)
	statuses := []int{400, 401, 402, 403, 404, 409, 429, 500, 503}
	st := statuses[iw.rng.IntN(len(statuses))]
	iw.fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: "/v1/subscriptions/" + sub, Status: st, Saved: iw.rng.IntN(2) == 0})
	iw.expect(tn, iw.randomCall(tn), fmt.Sprint("Stripe answers ", st))
	iw.drainFailures(sub)
}

// concurrent: two or three calls at once, the same intent or different ones.
func (iw *intentWorld) concurrent(tn *intentTenant) {
	t := iw.t
	sub := iw.stored(tn)
	before := iw.snapshot(sub)
	if before.status == "canceled" || before.status == "incomplete_expired" {
		iw.expect(tn, iw.randomCall(tn), "concurrent on an ended subscription")
		return
	}
	n := 2 + iw.rng.IntN(2)
	calls := make([]call, n)
	same := iw.rng.IntN(2) == 0
	for i := range calls {
		if same && i > 0 {
			calls[i] = calls[0]
		} else {
			calls[i] = iw.randomCall(tn)
		}
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() {
			res, err := iw.s.hasura.Action(context.Background(), c.action, c.input, session(tn.owner))
			if err != nil || res.HasuraError != nil {
				t.Errorf("step %d: %s: %v %v", iw.step, c.label, err, res.HasuraError)
				return
			}
			results[i].status = res.Status
			if res.Status == 200 {
				if err := res.JSON(&results[i].out); err != nil {
					t.Errorf("step %d: %s: answer 200 that does not decode: %v", iw.step, c.label, err)
				}
			} else if ae, err := res.ActionError(); err == nil {
				results[i].code, results[i].msg = ae.Code, ae.Message
			}
		})
	}
	wg.Wait()
	iw.stats[fmt.Sprintf("concurrent ×%d (same intent %v)", n, same)]++
	final := iw.snapshot(sub)
	var ok []map[string]any
	for i, r := range results {
		switch {
		case r.status == 200:
			ok = append(ok, r.out)
		case r.status >= 500:
			t.Errorf("step %d: concurrent %s: %d %s %q", iw.step, calls[i].label, r.status, r.code, r.msg)
		default:
			iw.stats["concurrent refused "+r.code]++
		}
	}
	matches := 0
	for _, out := range ok {
		if describes(out, final) == "" {
			matches++
		}
	}
	labels := make([]string, n)
	for i, c := range calls {
		labels[i] = c.label
	}
	switch {
	case !final.consumed:
		t.Errorf("step %d: after %v at once Stripe bills %s with metered %v", iw.step, labels, final.price, final.metered)
	case len(ok) > 0 && matches == 0:
		t.Errorf("step %d: after %v at once Stripe is in no answered state: %+v; answers %v", iw.step, labels, final, ok)
	case same && calls[0].action != "changePlan" && matches != len(ok):
		t.Errorf("step %d: %d × %s at once: %d of %d answers describe Stripe's state", iw.step, n, calls[0].label, matches, len(ok))
	}
}

// end ends the subscription behind tenantkit's back (canceled in the Dashboard, canceled at the
// period end, or payment retries exhausted), calls on it, then sometimes checks out again.
func (iw *intentWorld) end(tn *intentTenant) {
	t := iw.t
	sub := iw.stored(tn)
	st := iw.fake.Subscription(sub)
	if st.Status != "canceled" && st.Status != "incomplete_expired" {
		var err error
		switch iw.rng.IntN(3) {
		case 0:
			_, err = iw.fake.Client("").Subscriptions.Cancel(sub, nil)
		case 1:
			if !st.CancelAtPeriodEnd {
				err = iw.fake.PortalCancelAtPeriodEnd(sub, true)
			}
			if err == nil {
				err = iw.fake.Renew(sub)
			}
		default:
			if err = iw.fake.FailPayment(sub); err == nil {
				err = iw.fake.ExhaustRetries(sub, "canceled")
			}
		}
		if err != nil {
			t.Fatalf("step %d: ending %s: %v", iw.step, sub, err)
		}
		iw.stats["subscription ended"]++
	}
	if iw.rng.IntN(2) == 0 {
		iw.webhooks(false)
	}
	iw.expect(tn, iw.randomCall(tn), "ended")
	if iw.rng.IntN(2) == 0 {
		key := iw.planKey()
		checkout := map[string]any{"tenantId": tn.id, "planId": iw.plan[key].id}
		if st := iw.fake.Subscription(iw.stored(tn)).Status; st != "canceled" && st != "incomplete_expired" {
			// The webhooks delivered meanwhile made a newer, live subscription current.
			iw.s.fails(t, "conflict", "createCheckoutSession", checkout, tn.owner)
			return
		}
		iw.s.ok(t, "createCheckoutSession", checkout, tn.owner)
		if _, err := iw.fake.CompleteCheckout(lastCheckout(t, iw.fake, tn.id).ID); err != nil {
			t.Fatalf("step %d: the checkout's session: %v", iw.step, err)
		}
		iw.stats["subscribed again"]++
	}
}

// catchUp renews every live subscription whose period the double's clock has passed (ending a
// subscription, or a user reading a preview, moved the clock every subscription of the double
// shares), as Stripe renews each subscription at its period's end.
func (iw *intentWorld) catchUp() {
	now := iw.fake.Now().Unix()
	for _, tn := range iw.tenants {
		cus := iw.s.row(iw.t, "tenant_subscriptions", "tenant_id = $1", tn.id)["stripe_customer_id"].(string)
		for _, sub := range iw.fake.SubscriptionsOf(cus) {
			for st := sub; st.CurrentPeriodEnd <= now && (st.Status == "active" || st.Status == "trialing" || st.Status == "past_due"); st = iw.fake.Subscription(sub.ID) {
				if err := iw.fake.Renew(sub.ID); err != nil {
					iw.t.Fatalf("renew %s: %v", sub.ID, err)
				}
			}
		}
	}
}

// webhooks delivers the events generated so far, shuffled (all of them, or a random part, keeping
// the rest for later). With all, it then checks every tenant's stored state against Stripe's.
func (iw *intentWorld) webhooks(all bool) {
	t := iw.t
	evs := append(iw.late, iw.fake.Drain()...)
	iw.late = nil
	iw.rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	var late []stripefake.Event
	for _, e := range evs {
		if !all && iw.rng.IntN(2) == 0 {
			late = append(late, e)
			continue
		}
		if st, err := stripefake.Deliver(iw.s.m.HTTP.URL()+"/webhooks/stripe", testWebhookSecret, e); err != nil || st != http.StatusOK {
			t.Fatalf("step %d: delivery of %s %s: %d %v", iw.step, e.Type, e.ID, st, err)
		}
	}
	iw.late = late
	if !all {
		return
	}
	iw.stats["all webhooks delivered"]++
	for _, tn := range iw.tenants {
		sub := iw.stored(tn)
		subs := iw.fake.SubscriptionsOf(iw.s.row(t, "tenant_subscriptions", "tenant_id = $1", tn.id)["stripe_customer_id"].(string))
		cur := current(subs)
		if cur == nil || cur.ID != sub {
			t.Errorf("step %d: tenant %s stores %s as current, Stripe's current is %v", iw.step, tn.id, sub, cur)
			continue
		}
		sn := iw.snapshot(sub)
		row := iw.s.row(t, "tenant_subscriptions", "tenant_id = $1", tn.id)
		if row["plan_id"] != sn.planID || row["status"] != sn.status || row["cancel_at_period_end"] != sn.cancel ||
			row["stripe_quantity"] != float64(sn.qty) {
			t.Errorf("step %d: tenant %s stored plan %v, %v, cancel %v, quantity %v; Stripe: %+v", iw.step, tn.id,
				row["plan_id"], row["status"], row["cancel_at_period_end"], row["stripe_quantity"], sn)
		}
	}
}
