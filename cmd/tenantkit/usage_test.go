package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// meteredTenant is a tenant subscribed, in the double, to a daily licensed price and a daily
// metered api_calls price (days keep the periods inside a test's reach).
type meteredTenant struct {
	id, owner, sub, item string
}

func (b *billingStack) meteredTenant(t *testing.T) meteredTenant {
	t.Helper()
	sc := b.fake.Client("")
	product := b.row(t, "subscription_plans", "key = 'starter'")["stripe_product_id"].(string)
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
	tenant, owner, cus := b.customer(t)
	sub, err := b.fake.CreateSubscription(cus, []stripefake.Item{{Price: licensed.ID}, {Price: metered.ID}}, nil, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	b.deliver(t)
	item, _ := b.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["stripe_usage_item_id"].(string)
	if item == "" {
		t.Fatal("no metered item stored")
	}
	// The actions above were metered as the tenant's api_calls: start from none.
	if err := b.m.Meter.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Under the fold's lock: a fold in flight would otherwise put back counters of deleted events.
	if err := pgx.BeginFunc(context.Background(), b.stack.admin, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `SELECT FROM tenantkit.usage_fold FOR UPDATE`)
		if err == nil {
			_, err = tx.Exec(context.Background(), `DELETE FROM tenantkit.usage_events WHERE tenant_id = $1`, tenant)
		}
		if err == nil {
			_, err = tx.Exec(context.Background(), `DELETE FROM billing_usage WHERE tenant_id = $1`, tenant)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return meteredTenant{id: tenant, owner: owner, sub: sub, item: item}
}

// calls records n api_calls of the tenant at a time (through the store: the report, not the
// ingestion, is under test, and some of these times are ahead of the clock).
func (b *billingStack) calls(t *testing.T, tenant, key string, at time.Time, n float64) {
	t.Helper()
	if _, _, err := b.m.DB.RecordUsage(context.Background(), []billing.UsageEvent{
		{TenantID: tenant, Metric: "api_calls", Quantity: n, IdempotencyKey: key, OccurredAt: at}}); err != nil {
		t.Fatal(err)
	}
}

func (b *billingStack) report(t *testing.T) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := usageReport(context.Background(), b.getenv, &out)
	return out.String(), err
}

// TestUsageReportAddsUp follows a metered subscription across a renewal: the period's first and
// last partial hours are reported where they belong, a repeated run reports nothing new, and the
// calls made after the last run before the renewal are billed with the next period.
func TestUsageReportAddsUp(t *testing.T) {
	t.Parallel()
	p0 := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour + 23*time.Minute + 17*time.Second)
	p1 := p0.Add(24 * time.Hour)
	b := newBillingStack(t, p0)
	m := b.meteredTenant(t)
	if s := b.row(t, "tenant_subscriptions", "tenant_id = $1", m.id); s["current_period_start"] != p0.Format("2006-01-02T15:04:05+00:00") {
		t.Fatalf("stored period %v, want it to start at %s", s["current_period_start"], p0)
	}
	other := b.meteredTenant(t) // another tenant's calls never count
	b.calls(t, other.id, "o", p0.Add(20*time.Minute), 1000)

	b.calls(t, m.id, "a", p0.Add(-10*time.Minute), 100) // before the period: the previous one's
	b.calls(t, m.id, "b", p0.Add(10*time.Minute), 3)    // the period's first partial hour
	b.calls(t, m.id, "c", p0.Add(2*time.Hour), 5)
	b.calls(t, m.id, "d", p1.Add(-20*time.Minute), 7) // the last partial hour
	b.calls(t, m.id, "e", p1.Add(10*time.Minute), 11) // same hour, next period
	out, err := b.report(t)
	if err != nil || !strings.HasPrefix(out, "usage report: 2 subscription(s) reported") {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if got := b.fake.Usage(m.item, p0.Unix(), p1.Unix()); got != 3+5+7 {
		t.Errorf("Stripe holds %d calls for the period, want 15 (its first and last partial hours, nothing outside)", got)
	}
	recs := b.fake.UsageRecords(m.item)
	if last := recs[len(recs)-1]; last.Action != "set" || last.Timestamp != p0.Unix() || last.Quantity != 15 {
		t.Errorf("usage record %+v, want set 15 at the period's start", last)
	}
	// Again: nothing new is sent.
	if out, err := b.report(t); err != nil || !strings.HasPrefix(out, "usage report: 0 subscription(s) reported, 2 unchanged") {
		t.Errorf("second run: %v\n%s", err, out)
	}
	if n := len(b.fake.UsageRecords(m.item)); n != len(recs) {
		t.Errorf("%d usage records after a repeated run, want %d", n, len(recs))
	}

	// Calls after the last run, then the renewal: Stripe bills the 15 it holds...
	b.calls(t, m.id, "f", p1.Add(-2*time.Minute), 13)
	if err := b.fake.Renew(m.sub); err != nil {
		t.Fatal(err)
	}
	billed := b.fake.LatestMeteredQuantity(m.sub)
	if billed != 15 {
		t.Errorf("the closing invoice bills %d calls, want 15", billed)
	}
	// ...and the 13 it could not take any more go with the next period.
	b.deliver(t)
	if out, err := b.report(t); err != nil || !strings.Contains(out, "1 subscription(s) reported") {
		t.Fatalf("report after the renewal: %v\n%s", err, out)
	}
	next := b.fake.Usage(m.item, p1.Unix(), p1.Add(24*time.Hour).Unix())
	if next != 11+13 {
		t.Errorf("Stripe holds %d calls for the new period, want 24 (its 11, and the 13 carried)", next)
	}
	if total := billed + next; total != 3+5+7+13+11 {
		t.Errorf("billed %d calls in all, want 39: every call once", total)
	}
	if n := b.count(t, `SELECT count(*) FROM tenantkit.usage_reports WHERE subscription_id = $1 AND period_start = $2
		AND closed_at IS NOT NULL AND due = 28 AND reported = 15`, m.sub, p0); n != 1 {
		t.Error("the closing period is not closed with 28 due and 15 reported")
	}
	if out, err := b.report(t); err != nil || !strings.Contains(out, "0 subscription(s) reported") {
		t.Errorf("repeated run after the renewal: %v\n%s", err, out)
	}
}

// TestDeletionBillsTheLastCalls: deleteTenant through the service, whose Stripe outbox reports the
// subscription's usage once more before it cancels it: Stripe holds every call of the final period
// (those before the last usage report run, those after it, and the tenant's own metered actions),
// and the usage record precedes the cancellation. The first report meets Stripe down, so the
// cancellation waits for it.
func TestDeletionBillsTheLastCalls(t *testing.T) {
	t.Parallel()
	b := newBillingStack(t, time.Now().Add(-time.Hour))
	m := b.meteredTenant(t)
	now := b.fake.Now()
	b.calls(t, m.id, "a", now, 5)
	if out, err := b.report(t); err != nil || !strings.HasPrefix(out, "usage report: 1 subscription(s) reported") {
		t.Fatalf("report: %v\n%s", err, out)
	}
	b.calls(t, m.id, "b", now.Add(time.Second), 7)
	usagePath := "/v1/subscription_items/" + m.item + "/usage_records"
	b.fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: usagePath, Status: http.StatusServiceUnavailable, Times: 2})
	b.ok(t, "deleteTenant", map[string]any{"tenantId": m.id}, m.owner)
	eventually(t, "the final report to meet Stripe down", func() bool {
		var outcome string
		err := b.admin.QueryRow(context.Background(), `SELECT coalesce(outcome, '') FROM tenantkit.stripe_outbox
			WHERE tenant_id = $1 AND kind = 'cancel_subscription'`, m.id).Scan(&outcome)
		return err == nil && outcome == "retrying"
	})
	if st := b.fake.Subscription(m.sub).Status; st != stripego.SubscriptionStatusActive {
		t.Fatalf("Stripe's subscription is %s while its final report waits, want active", st)
	}
	if err := b.m.Meter.Flush(context.Background()); err != nil { // the deletion's own call, metered
		t.Fatal(err)
	}
	exec(t, b.stack, `UPDATE tenantkit.stripe_outbox SET next_at = now() WHERE tenant_id = $1`, m.id)
	eventually(t, "the cancellation", func() bool {
		return b.fake.Subscription(m.sub).Status == stripego.SubscriptionStatusCanceled
	})
	s := b.fake.Subscription(m.sub)
	from, to := time.Unix(s.CurrentPeriodStart, 0), time.Unix(s.CurrentPeriodEnd, 0)
	var total float64
	if err := b.admin.QueryRow(context.Background(), `SELECT coalesce(sum(quantity), 0)::float8 FROM tenantkit.usage_events
		WHERE tenant_id = $1 AND metric = 'api_calls' AND occurred_at >= $2 AND occurred_at < $3`, m.id, from, to).Scan(&total); err != nil {
		t.Fatal(err)
	}
	got := b.fake.Usage(m.item, from.Unix(), to.Unix())
	if total < 12 || got != int64(total) {
		t.Errorf("Stripe holds %d calls for the final period, the tenant made %g; want all of them (at least the 12 recorded)", got, total)
	}
	if billed := b.fake.LatestMeteredQuantity(m.sub); billed != got {
		t.Errorf("the final invoice bills %d calls, want the %d Stripe holds", billed, got)
	}
	b.deliver(t) // the cancellation's and the final invoice's events
	var usage, cancel int
	for i, r := range b.fake.Requests() {
		switch {
		case r.Executed && r.Method == http.MethodPost && r.Path == usagePath:
			usage = i
		case r.Executed && r.Method == http.MethodDelete && r.Path == "/v1/subscriptions/"+m.sub:
			cancel = i
		}
	}
	if cancel == 0 || usage > cancel {
		t.Errorf("request %d is the last usage record and %d the cancellation: want the usage first", usage, cancel)
	}
	t.Logf("deleted with %g calls in the final period; Stripe holds %d, reported before the cancellation", total, got)
}

// TestUsageReportIsolatesFailures: one subscription's item refused (404) does not stop the others;
// the run fails and names it; the next run reports what the refusal held back.
func TestUsageReportIsolatesFailures(t *testing.T) {
	t.Parallel()
	start := time.Now().UTC().Add(-time.Hour)
	b := newBillingStack(t, start)
	gone, flaky, fine := b.meteredTenant(t), b.meteredTenant(t), b.meteredTenant(t)
	for i, m := range []meteredTenant{gone, flaky, fine} {
		b.calls(t, m.id, "k", start.Add(time.Minute), float64(10*(i+1)))
	}
	// Stripe no longer has this item (a stale row); and refuses the next report of that one.
	exec(t, b.stack, `UPDATE tenant_subscriptions SET stripe_usage_item_id = 'si_gone' WHERE tenant_id = $1`, gone.id)
	b.fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: "/v1/subscription_items/" + flaky.item + "/", Status: http.StatusNotFound})

	out, err := b.report(t)
	if err == nil {
		t.Fatalf("a run with failures succeeded:\n%s", out)
	}
	if !strings.HasPrefix(out, "usage report: 1 subscription(s) reported, 0 unchanged, 0 waiting for their renewal, 2 failed") ||
		!strings.Contains(out, "item si_gone") || !strings.Contains(out, "item "+flaky.item) || strings.Contains(out, "item "+fine.item) ||
		!strings.Contains(err.Error(), gone.sub) || !strings.Contains(err.Error(), flaky.sub) {
		t.Errorf("output:\n%s\nerror: %v", out, err)
	}
	if got := b.fake.Usage(fine.item, 0, 1<<40); got != 30 {
		t.Errorf("the healthy subscription holds %d, want 30", got)
	}
	out, err = b.report(t)
	if err == nil || !strings.Contains(out, "1 subscription(s) reported, 1 unchanged, 0 waiting for their renewal, 1 failed") {
		t.Errorf("second run: %v\n%s", err, out)
	}
	if got := b.fake.Usage(flaky.item, 0, 1<<40); got != 20 {
		t.Errorf("the once-refused subscription holds %d after the next run, want 20", got)
	}
	// A subscription whose stored period has ended waits for the renewal's webhook: no failure.
	exec(t, b.stack, `UPDATE tenant_subscriptions SET current_period_end = now() - interval '1 minute',
		current_period_start = now() - interval '1 day' WHERE tenant_id = $1`, gone.id)
	if out, err := b.report(t); err != nil || !strings.Contains(out, "0 subscription(s) reported, 2 unchanged, 1 waiting for their renewal, 0 failed") {
		t.Errorf("with a period ended: %v\n%s", err, out)
	}
}

// TestUsageReportConcurrentRuns: runs at the same time report each total once.
func TestUsageReportConcurrentRuns(t *testing.T) {
	t.Parallel()
	start := time.Now().UTC().Add(-time.Hour)
	b := newBillingStack(t, start)
	ms := []meteredTenant{b.meteredTenant(t), b.meteredTenant(t), b.meteredTenant(t)}
	for i, m := range ms {
		b.calls(t, m.id, "k", start.Add(time.Minute), float64(i+1))
	}
	var wg sync.WaitGroup
	outs, errs := make([]string, 4), make([]error, 4)
	for i := range outs {
		wg.Go(func() { outs[i], errs[i] = b.report(t) })
	}
	wg.Wait()
	reported := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("run %d: %v\n%s", i, err, outs[i])
		}
		var r, u, w, f int
		fmt.Sscanf(outs[i], "usage report: %d subscription(s) reported, %d unchanged, %d waiting for their renewal, %d failed", &r, &u, &w, &f)
		reported += r
	}
	if reported != len(ms) {
		t.Errorf("%d reports across 4 concurrent runs, want %d (one per subscription):\n%s", reported, len(ms), strings.Join(outs, ""))
	}
	for i, m := range ms {
		if n := b.fake.Executed(http.MethodPost, "/v1/subscription_items/"+m.item+"/"); n != 1 {
			t.Errorf("subscription %d: %d usage records sent, want 1", i, n)
		}
		if got := b.fake.Usage(m.item, 0, 1<<40); got != int64(i+1) {
			t.Errorf("subscription %d holds %d, want %d", i, got, i+1)
		}
	}
}

// TestUsageAlerts: the owners get one email per threshold (80 %, 100 %) and period when usage
// reaches a plan's limit, whether batches come one by one or all at once, for counters (an
// allowance per period), gauges and the calls tenantkit meters itself.
// TestUsageAlerts: alerts through recordUsage's action when batches race, and for the calls the
// service meters itself. The rule (thresholds, once per period, every owner, gauges) is
// internal/billing's alerts_service_test.go.
func TestUsageAlerts(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	exec(t, s, `UPDATE subscription_plans SET limits = limits || '{"api_calls": 100, "reports": 50}' WHERE key = 'starter'`)
	alerts := func(tenant, metric string, threshold int) int {
		t.Helper()
		return s.count(t, `SELECT count(*) FROM tenantkit.email_outbox WHERE tenant_id = $1 AND dedupe_key LIKE $2`,
			tenant, fmt.Sprintf("usage_alert:%s:%s:%d:%%", tenant, metric, threshold))
	}
	ev := func(tenant, metric, key string, q float64) map[string]any {
		return map[string]any{"tenantId": tenant, "metric": metric, "quantity": q, "idempotencyKey": key}
	}
	// Two owners: each is emailed.
	twoOwners := func() string {
		tenant, _ := s.tenant(t)
		exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner'), ($1, $3, 'member')`,
			tenant, s.user(t, ""), s.user(t, ""))
		return tenant
	}

	t.Run("concurrent batches crossing together", func(t *testing.T) {
		for round := range 3 {
			tenant := twoOwners()
			var wg sync.WaitGroup
			for i := range 20 { // 20 × 5 = 100: no batch alone gets near 80 %
				wg.Go(func() {
					res, err := s.hasura.Action(context.Background(), "recordUsage", map[string]any{"events": []any{
						ev(tenant, "api_calls", fmt.Sprint("c", i), 5)}}, serviceSession())
					if err != nil || res.Status != http.StatusOK {
						t.Errorf("batch %d: %v %v", i, res, err)
					}
				})
			}
			wg.Wait()
			if n := s.count(t, `SELECT sum(quantity)::int FROM tenantkit.usage_hours($1) WHERE metric = 'api_calls'`, tenant); n != 100 {
				t.Fatalf("round %d: %d calls recorded, want 100", round, n)
			}
			if a80, a100 := alerts(tenant, "api_calls", 80), alerts(tenant, "api_calls", 100); a100 != 2 || a80 > 2 {
				t.Errorf("round %d: %d emails at 80 %%, %d at 100 %%; want 2 at 100 %% (one per owner), at most one per owner at 80 %%", round, a80, a100)
			}
			// One per owner, not two to one of them, and none to anyone else.
			for _, threshold := range []int{80, 100} {
				if n := s.count(t, `SELECT count(*) FROM (SELECT o.to_email FROM tenantkit.email_outbox o
					WHERE o.tenant_id = $1 AND o.dedupe_key LIKE $2 GROUP BY o.to_email HAVING count(*) > 1
					   OR o.to_email NOT IN (SELECT u.email FROM tenant_users m JOIN auth.users u ON u.id = m.user_id
					                        WHERE m.tenant_id = $1 AND m.role = 'owner')) x`,
					tenant, fmt.Sprintf("usage_alert:%s:api_calls:%d:%%", tenant, threshold)); n != 0 {
					t.Errorf("round %d: %d recipients at %d %% got a second email or are not owners", round, n, threshold)
				}
			}
		}
	})

	t.Run("calls tenantkit meters itself", func(t *testing.T) {
		tenant, owner := s.tenant(t)
		exec(t, s, `UPDATE subscription_plans SET limits = limits || '{"api_calls": 5}' WHERE key = 'starter'`)
		defer exec(t, s, `UPDATE subscription_plans SET limits = limits || '{"api_calls": 100}' WHERE key = 'starter'`)
		for range 5 {
			s.ok(t, "checkPermission", map[string]any{"tenantId": tenant, "permission": "projects:read"}, owner)
		}
		if err := s.m.Meter.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if alerts(tenant, "api_calls", 100) != 1 {
			t.Error("no alert for the calls the meter counted")
		}
	})
}

// TestServeFoldsUsage: serve's own fold loop (USAGE_FOLD_INTERVAL) moves recorded events into
// billing_usage without anyone asking, and says so on /metrics.
func TestServeFoldsUsage(t *testing.T) {
	t.Parallel()
	s := newStack(t, "USAGE_FOLD_INTERVAL", "100ms")
	tenant, _ := s.tenant(t)
	if r := s.record(t, map[string]any{"tenantId": tenant, "metric": "emails_sent", "quantity": 4, "idempotencyKey": "fold-1"},
		map[string]any{"tenantId": tenant, "metric": "emails_sent", "quantity": 3, "idempotencyKey": "fold-2"}); r.status != http.StatusOK {
		t.Fatalf("recordUsage: %d %s %s", r.status, r.code, r.msg)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.count(t, `SELECT coalesce(sum(quantity), 0)::int FROM billing_usage WHERE tenant_id = $1 AND metric = 'emails_sent'`, tenant) != 7 {
		if time.Now().After(deadline) {
			t.Fatal("billing_usage does not hold the 7 emails_sent 10 s after they were recorded")
		}
		time.Sleep(50 * time.Millisecond)
	}
	body := []byte(scrapeMetrics(t, s.m))
	folded := regexp.MustCompile(`(?m)^tenantkit_usage_folded_events_total (\d+)$`).FindSubmatch(body)
	if folded == nil || string(folded[1]) == "0" {
		t.Errorf("/metrics: tenantkit_usage_folded_events_total %q, want the folded events counted", folded)
	}
	if !regexp.MustCompile(`(?m)^tenantkit_usage_fold_last_success_timestamp_seconds \d\.\d+e\+09$`).Match(body) ||
		!strings.Contains(string(body), "tenantkit_usage_fold_errors_total 0\n") {
		t.Errorf("/metrics lacks the fold's last success or its error count:\n%s", regexp.MustCompile(`(?m)^tenantkit_usage_fold.*$`).FindAll(body, -1))
	}
}
