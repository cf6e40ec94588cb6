package billing_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// meteredSub is a tenant subscribed, at the double, to a daily licensed price and a daily metered
// api_calls price (days keep the periods inside a test's reach).
type meteredSub struct{ tenant, owner, sub, item string }

func (w *stripeWorld) meteredSub(t *testing.T) meteredSub {
	t.Helper()
	ctx := context.Background()
	sc := w.fake.Client("")
	product := w.plans["starter"].ProductID
	licensed, err := sc.Prices.New(&stripego.PriceParams{Product: stripego.String(product), Currency: stripego.String("usd"),
		UnitAmount: stripego.Int64(100), Recurring: &stripego.PriceRecurringParams{Interval: stripego.String("day")}})
	if err != nil {
		t.Fatal(err)
	}
	metered, err := sc.Prices.New(&stripego.PriceParams{Product: stripego.String(product), Currency: stripego.String("usd"),
		UnitAmountDecimal: stripego.Float64(0.5), Recurring: &stripego.PriceRecurringParams{Interval: stripego.String("day"),
			UsageType: stripego.String("metered"), AggregateUsage: stripego.String("sum")}})
	if err != nil {
		t.Fatal(err)
	}
	tenant, owner := w.tenant(t)
	cus, err := w.bills.EnsureCustomer(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := w.fake.CreateSubscription(cus, []stripefake.Item{{Price: licensed.ID}, {Price: metered.ID}}, nil, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	w.deliver(t)
	var item string
	w.scan(t, `SELECT coalesce(stripe_usage_item_id, '') FROM tenant_subscriptions WHERE tenant_id = $1`, []any{tenant}, &item)
	if item == "" {
		t.Fatal("no metered item stored")
	}
	return meteredSub{tenant: tenant, owner: owner, sub: sub, item: item}
}

// calls records n api_calls of the tenant at a time, through the store (the report is under test,
// and some of these times are ahead of the clock).
func (w *stripeWorld) calls(t *testing.T, tenant, key string, at time.Time, n float64) {
	t.Helper()
	if _, _, err := w.db.RecordUsage(context.Background(), []billing.UsageEvent{
		{TenantID: tenant, Metric: "api_calls", Quantity: n, IdempotencyKey: key, OccurredAt: at}}); err != nil {
		t.Fatal(err)
	}
}

// report runs billing.Service.ReportUsage and checks its counts.
func (w *stripeWorld) report(t *testing.T, reported, unchanged, waiting, failed int) (billing.UsageRun, error) {
	t.Helper()
	run, err := w.bills.ReportUsage(context.Background())
	if run.Reported != reported || run.Unchanged != unchanged || run.Waiting != waiting || run.Failed != failed {
		t.Errorf("run: %s (err %v); want %d reported, %d unchanged, %d waiting, %d failed",
			run.Summary(), err, reported, unchanged, waiting, failed)
	}
	return run, err
}

// TestReportUsage drives billing.Service.ReportUsage (usage.go) against PostgreSQL and the double
// across a renewal: a period's calls are counted to the second, reported as one "set" record at the
// period's start; a repeated run sends nothing; what the closing period's reports missed is carried
// into the next period: every call billed once.
func TestReportUsage(t *testing.T) {
	t.Parallel()
	p0 := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour + 23*time.Minute + 17*time.Second)
	p1 := p0.Add(24 * time.Hour)
	w := newStripeWorldAt(t, p0)
	w.bills.Now = w.fake.Now // the report runs on Stripe's clock, which the renewal moves
	m := w.meteredSub(t)
	other := w.meteredSub(t) // another tenant's calls never count
	w.calls(t, other.tenant, "o", p0.Add(20*time.Minute), 1000)

	w.calls(t, m.tenant, "a", p0.Add(-time.Second), 100) // a second before the period
	w.calls(t, m.tenant, "b", p0, 3)                     // its first second
	w.calls(t, m.tenant, "c", p0.Add(2*time.Hour), 5)
	w.calls(t, m.tenant, "d", p1.Add(-time.Second), 7)  // its last second
	w.calls(t, m.tenant, "e", p1, 11)                   // the next period's first
	w.calls(t, m.tenant, "x", p0.Add(3*time.Hour), 0.2) // a fraction: one whole call
	if _, err := w.report(t, 2, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if got := w.fake.Usage(m.item, p0.Unix(), p1.Unix()); got != 3+5+7+1 {
		t.Errorf("Stripe holds %d calls for the period, want 16 (its first and last seconds, nothing outside)", got)
	}
	recs := w.fake.UsageRecords(m.item)
	if last := recs[len(recs)-1]; last.Action != "set" || last.Timestamp != p0.Unix() || last.Quantity != 16 {
		t.Errorf("usage record %+v, want set 16 at the period's start", last)
	}
	if _, err := w.report(t, 0, 2, 0, 0); err != nil {
		t.Error(err)
	}
	if n := len(w.fake.UsageRecords(m.item)); n != len(recs) {
		t.Errorf("%d usage records after a repeated run, want %d", n, len(recs))
	}

	// Calls after the last run, then the renewal: Stripe bills the 16 it holds...
	w.calls(t, m.tenant, "f", p1.Add(-2*time.Minute), 13)
	if err := w.fake.Renew(m.sub); err != nil {
		t.Fatal(err)
	}
	// Before the renewal's webhook, the stored period has ended: the subscription waits.
	if _, err := w.report(t, 0, 0, 2, 0); err != nil { // both periods have ended
		t.Fatal(err)
	}
	if n := len(w.fake.UsageRecords(m.item)); n != len(recs) {
		t.Errorf("%d usage records while the renewal's webhook is pending, want %d", n, len(recs))
	}
	billed := w.fake.LatestMeteredQuantity(m.sub)
	if billed != 16 {
		t.Errorf("the closing invoice bills %d calls, want 16", billed)
	}
	// ...and the 13 it could not take any more go with the next period.
	w.deliver(t)
	run, err := w.bills.ReportUsage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reported := 0
	for _, r := range run.Results {
		if r.SubscriptionID == m.sub {
			reported++
			if r.Outcome != billing.UsageReported || r.CarriedIn != 13 || r.Quantity != 24 {
				t.Errorf("after the renewal: %+v; want 24 reported, 13 of them carried in", r)
			}
		}
	}
	if reported != 1 {
		t.Errorf("after the renewal: %d results for %s, want 1: %+v", reported, m.sub, run.Results)
	}
	next := w.fake.Usage(m.item, p1.Unix(), p1.Add(24*time.Hour).Unix())
	if next != 11+13 {
		t.Errorf("Stripe holds %d calls for the new period, want 24 (its 11, and the 13 carried)", next)
	}
	if total := billed + next; total != 3+5+7+1+13+11 {
		t.Errorf("billed %d calls in all, want 40: every call once", total)
	}
	var closed int
	w.scan(t, `SELECT count(*) FROM tenantkit.usage_reports WHERE subscription_id = $1 AND period_start = $2
		AND closed_at IS NOT NULL AND due = 29 AND reported = 16`, []any{m.sub, p0}, &closed)
	if closed != 1 {
		t.Error("the closing period is not closed with 29 due and 16 reported")
	}
}

// TestReportUsageIsolatesFailures: one subscription's item refused (404) or unknown does not stop
// the others; the run fails naming them; the next run reports what the refusal held back; a
// subscription whose stored period has ended waits, without failing.
func TestReportUsageIsolatesFailures(t *testing.T) {
	t.Parallel()
	start := time.Now().UTC().Add(-time.Hour)
	w := newStripeWorldAt(t, start)
	subs := []meteredSub{w.meteredSub(t), w.meteredSub(t), w.meteredSub(t)}
	// The report goes by tenant id: the healthy subscription comes after both failing ones.
	slices.SortFunc(subs, func(a, b meteredSub) int { return strings.Compare(a.tenant, b.tenant) })
	gone, flaky, fine := subs[0], subs[1], subs[2]
	for i, m := range []meteredSub{gone, flaky, fine} {
		w.calls(t, m.tenant, "k", start.Add(time.Minute), float64(10*(i+1)))
	}
	w.exec(t, `UPDATE tenant_subscriptions SET stripe_usage_item_id = 'si_gone' WHERE tenant_id = $1`, gone.tenant)
	w.fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: "/v1/subscription_items/" + flaky.item + "/", Status: http.StatusNotFound})

	_, err := w.report(t, 1, 0, 0, 2)
	if err == nil || !strings.Contains(err.Error(), gone.sub) || !strings.Contains(err.Error(), flaky.sub) || strings.Contains(err.Error(), fine.sub) {
		t.Errorf("error %v; want one naming the two failed subscriptions only", err)
	}
	if got := w.fake.Usage(fine.item, 0, 1<<40); got != 30 {
		t.Errorf("the healthy subscription holds %d, want 30", got)
	}
	if _, err := w.report(t, 1, 1, 0, 1); err == nil {
		t.Error("the second run succeeded with an unknown item")
	}
	if got := w.fake.Usage(flaky.item, 0, 1<<40); got != 20 {
		t.Errorf("the once-refused subscription holds %d after the next run, want 20", got)
	}
	w.exec(t, `UPDATE tenant_subscriptions SET current_period_end = now() - interval '1 minute',
		current_period_start = now() - interval '1 day' WHERE tenant_id = $1`, gone.tenant)
	if _, err := w.report(t, 0, 2, 1, 0); err != nil {
		t.Errorf("with a period ended: %v", err)
	}
}
