package billing_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// cancelRow is one cancel_subscription write of the tenant.
type cancelRow struct {
	sub, key, outcome string
	done              bool
}

func (w *stripeWorld) cancelRows(t *testing.T, tenant string) []cancelRow {
	t.Helper()
	rows, err := w.pool.Query(context.Background(), `SELECT subscription_id, idempotency_key, coalesce(outcome, ''), done_at IS NOT NULL
		FROM tenantkit.stripe_outbox WHERE tenant_id = $1 AND kind = 'cancel_subscription' ORDER BY id`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []cancelRow
	for rows.Next() {
		var r cancelRow
		if err := rows.Scan(&r.sub, &r.key, &r.outcome, &r.done); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestDeletionCancelsThroughTheOutbox drives the cancellation a tenant's deletion queues
// (CancelOnDeletion, outbox.go) and the one a late subscription of a deleted tenant queues
// (whileDeleted, deletion.go) through the Stripe outbox against PostgreSQL and the double: one
// write per live subscription, keyed by tenant, deletion and subscription; retried until Stripe
// runs it once; a repeated deletion queues nothing; a checkout completed after the deletion is
// canceled and brings nothing back.
func TestDeletionCancelsThroughTheOutbox(t *testing.T) {
	t.Parallel()
	w := newStripeWorld(t)
	ctx := context.Background()
	tenant, owner := w.tenant(t)
	sess := tenantkit.UserSession(owner)
	sub := w.subscribe(t, tenant, owner, "starter")
	path := "/v1/subscriptions/" + sub
	w.fake.Fail(stripefake.Failure{Method: http.MethodDelete, PathPrefix: path, Status: http.StatusServiceUnavailable, Times: 2})

	del, err := w.teams.DeleteTenant(ctx, sess, tenant)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("tk-delete-%s-%d-%s", tenant, del.DeletedAt.UnixMicro(), sub) // tenant, deletion, subscription
	rows := w.cancelRows(t, tenant)
	if len(rows) != 1 || rows[0].sub != sub || rows[0].key != want {
		t.Fatalf("outbox %+v; want one cancellation of %s under %s", rows, sub, want)
	}
	w.flush(t)
	if rows := w.cancelRows(t, tenant); rows[0].done || rows[0].outcome != billing.WriteRetrying {
		t.Fatalf("after a refusal: %+v, want retrying", rows[0])
	}
	if again, err := w.teams.DeleteTenant(ctx, sess, tenant); err != nil || !again.DeletedAt.Equal(del.DeletedAt) {
		t.Errorf("deleting again: %+v %v, want the same deletion", again, err)
	}
	w.exec(t, `UPDATE tenantkit.stripe_outbox SET next_at = now() WHERE tenant_id = $1`, tenant)
	w.flush(t)
	rows = w.cancelRows(t, tenant)
	if len(rows) != 1 || !rows[0].done || rows[0].outcome != billing.WriteSent {
		t.Errorf("outbox %+v; want the one cancellation, sent", rows)
	}
	if st := w.fake.Subscription(sub).Status; st != "canceled" {
		t.Errorf("Stripe's subscription %s, want canceled", st)
	}
	ran := 0
	for _, r := range w.fake.Requests() {
		if r.Method == http.MethodDelete && r.Path == path {
			if r.IdempotencyKey != want {
				t.Errorf("cancellation sent under %q, want %q", r.IdempotencyKey, want)
			}
			if r.Executed {
				ran++
			}
		}
	}
	if ran != 1 {
		t.Errorf("Stripe ran %d cancellations, want 1", ran)
	}
	w.deliver(t) // the cancellation's webhooks change nothing

	t.Run("a subscription started after the deletion is canceled", func(t *testing.T) {
		cus := w.fake.Subscription(sub).Customer.ID // a subscription made at Stripe, after the deletion
		late, err := w.fake.CreateSubscription(cus, []stripefake.Item{{Price: w.plans["professional"].PriceID}}, nil, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		w.deliver(t)
		rows := w.cancelRows(t, tenant)
		if len(rows) != 2 || rows[1].sub != late || rows[1].key != fmt.Sprintf("tk-delete-%s-%d-%s", tenant, del.DeletedAt.UnixMicro(), late) {
			t.Fatalf("outbox %+v; want a cancellation of %s under the deletion's key", rows, late)
		}
		w.flush(t)
		if st := w.fake.Subscription(late).Status; st != "canceled" {
			t.Errorf("the late subscription is %s at Stripe, want canceled", st)
		}
		w.deliver(t)
		var deleted bool
		w.scan(t, `SELECT deleted_at IS NOT NULL FROM tenants WHERE id = $1`, []any{tenant}, &deleted)
		if !deleted {
			t.Error("the late subscription brought the tenant back")
		}
		if n := len(w.cancelRows(t, tenant)); n != 2 {
			t.Errorf("%d cancellations queued after the webhooks of the cancellation, want still 2", n)
		}
	})
}

// TestDeletionBillsTheLastCalls: a deleted tenant's subscription is reported once more before
// the outbox cancels it (StripeOutbox.finalUsage, outbox.go; ReportFinalUsage, usage.go), so the
// cancellation's final invoice bills the calls made since the last usage report. Stripe takes no
// usage once the subscription has ended, and the deleted tenant's billing row no longer names the
// subscription, so no later run can report them. A report that cannot reach Stripe holds the
// cancellation back; one Stripe refuses does not.
func TestDeletionBillsTheLastCalls(t *testing.T) {
	t.Parallel()
	w := newStripeWorld(t)
	w.bills.Now = w.fake.Now
	ctx := context.Background()
	sub := w.fake.Subscription
	periodOf := func(m meteredSub) (int64, int64) { s := sub(m.sub); return s.CurrentPeriodStart, s.CurrentPeriodEnd }
	deleteNow := func(m meteredSub) {
		t.Helper()
		if _, err := w.teams.DeleteTenant(ctx, tenantkit.UserSession(m.owner), m.tenant); err != nil {
			t.Fatal(err)
		}
	}
	m, refused := w.meteredSub(t), w.meteredSub(t)
	now := w.fake.Now()
	w.calls(t, m.tenant, "a", now, 5)
	w.calls(t, refused.tenant, "r1", now, 2)
	w.report(t, 2, 0, 0, 0)
	w.calls(t, m.tenant, "b", now.Add(time.Second), 7) // after the last run: only the final report bills them
	w.calls(t, refused.tenant, "r2", now.Add(time.Second), 3)
	deleteNow(m)
	if n, _ := w.bills.ReportUsage(ctx); n.Reported+n.Unchanged != 1 {
		t.Errorf("a run after the deletion: %s; want only the other tenant's subscription", n.Summary())
	}

	// Stripe unreachable for the report: the cancellation waits, nothing is canceled.
	w.fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: "/v1/subscription_items/" + m.item + "/usage_records",
		Status: http.StatusServiceUnavailable, Times: 2}) // the client's request and its one retry
	w.flush(t)
	if rows := w.cancelRows(t, m.tenant); len(rows) != 1 || rows[0].done || rows[0].outcome != billing.WriteRetrying {
		t.Fatalf("after the report failed: %+v, want the cancellation retrying", rows)
	}
	if st := sub(m.sub).Status; st != "active" {
		t.Fatalf("Stripe's subscription is %s while its final report is pending, want active", st)
	}
	w.exec(t, `UPDATE tenantkit.stripe_outbox SET next_at = now() WHERE tenant_id = $1`, m.tenant)
	w.flush(t)
	if rows := w.cancelRows(t, m.tenant); len(rows) != 1 || !rows[0].done || rows[0].outcome != billing.WriteSent {
		t.Fatalf("outbox %+v; want the cancellation sent", rows)
	}
	from, to := periodOf(m)
	if got := w.fake.Usage(m.item, from, to); got != 12 {
		t.Errorf("Stripe holds %d calls for the final period, want 12 (5 reported before the deletion, 7 after)", got)
	}
	if st := sub(m.sub).Status; st != "canceled" {
		t.Errorf("Stripe's subscription is %s, want canceled", st)
	}
	if billed := w.fake.LatestMeteredQuantity(m.sub); billed != 12 {
		t.Errorf("the final invoice bills %d calls, want 12", billed)
	}
	var lastUsage, cancel int
	for i, r := range w.fake.Requests() {
		switch {
		case r.Executed && r.Method == http.MethodPost && r.Path == "/v1/subscription_items/"+m.item+"/usage_records":
			lastUsage = i
		case r.Executed && r.Method == http.MethodDelete && r.Path == "/v1/subscriptions/"+m.sub:
			cancel = i
		}
	}
	if cancel == 0 || lastUsage > cancel {
		t.Errorf("request %d is the last usage record and %d the cancellation: want the usage first", lastUsage, cancel)
	}
	var reported int64
	w.scan(t, `SELECT reported FROM tenantkit.usage_reports WHERE subscription_id = $1 AND closed_at IS NULL`, []any{m.sub}, &reported)
	if reported != 12 {
		t.Errorf("usage_reports says %d reported, want 12", reported)
	}
	w.deliver(t)

	// Stripe refuses the report: the subscription is canceled all the same.
	deleteNow(refused)
	w.fake.FailNext(http.MethodPost, "/v1/subscription_items/"+refused.item+"/usage_records", http.StatusNotFound, "")
	w.flush(t)
	if rows := w.cancelRows(t, refused.tenant); len(rows) != 1 || !rows[0].done || rows[0].outcome != billing.WriteSent {
		t.Errorf("outbox %+v after a refused final report; want the cancellation sent", rows)
	}
	if st := sub(refused.sub).Status; st != "canceled" {
		t.Errorf("Stripe's subscription is %s after a refused final report, want canceled", st)
	}
	w.deliver(t)

	// Deleted as its period closes, before the renewal's webhook: the cancellation waits for the
	// webhook, then the closing period's unreported calls go with the new period's final report.
	late := w.meteredSub(t)
	start := w.fake.Now()
	w.calls(t, late.tenant, "l1", start, 4)
	w.report(t, 1, 0, 0, 0)
	w.calls(t, late.tenant, "l2", start.Add(time.Minute), 6) // after the last run of the period
	closing, _ := periodOf(late)
	if err := w.fake.Renew(late.sub); err != nil {
		t.Fatal(err)
	}
	deleteNow(late)
	w.flush(t)
	if rows := w.cancelRows(t, late.tenant); len(rows) != 1 || rows[0].done || rows[0].outcome != billing.WriteRetrying {
		t.Fatalf("outbox %+v before the renewal's webhook; want the cancellation waiting", rows)
	}
	w.deliver(t)
	w.exec(t, `UPDATE tenantkit.stripe_outbox SET next_at = now() WHERE tenant_id = $1`, late.tenant)
	w.flush(t)
	if rows := w.cancelRows(t, late.tenant); len(rows) != 1 || !rows[0].done || rows[0].outcome != billing.WriteSent {
		t.Fatalf("outbox %+v after the renewal's webhook; want the cancellation sent", rows)
	}
	from, to = periodOf(late)
	billed, carried := w.fake.Usage(late.item, closing, from), w.fake.Usage(late.item, from, to)
	if billed != 4 || carried != 6 {
		t.Errorf("Stripe holds %d calls for the closing period and %d for the new one, want 4 and 6", billed, carried)
	}
	w.deliver(t)

	// The renewal's webhook never comes: after five attempts the cancellation goes without it.
	lost := w.meteredSub(t)
	if err := w.fake.Renew(lost.sub); err != nil {
		t.Fatal(err)
	}
	w.fake.Drain() // lost
	deleteNow(lost)
	for attempt := 1; attempt <= 5; attempt++ {
		w.exec(t, `UPDATE tenantkit.stripe_outbox SET next_at = now() WHERE tenant_id = $1`, lost.tenant)
		w.flush(t)
		rows := w.cancelRows(t, lost.tenant)
		if want := attempt == 5; len(rows) != 1 || rows[0].done != want {
			t.Fatalf("attempt %d: outbox %+v, want done %t", attempt, rows, want)
		}
	}
	if st := sub(lost.sub).Status; st != "canceled" {
		t.Errorf("Stripe's subscription is %s after five attempts, want canceled", st)
	}
}
