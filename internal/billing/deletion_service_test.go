package billing_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

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
