package billing_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// seatRow is the tenant's sync_seats write: its version, whether it is done, and its outcome.
func (w *stripeWorld) seatRow(t *testing.T, tenant string) (version int64, done bool, outcome string) {
	t.Helper()
	w.scan(t, `SELECT version, done_at IS NOT NULL, coalesce(outcome, '') FROM tenantkit.stripe_outbox
		WHERE tenant_id = $1 AND kind = 'sync_seats'`, []any{tenant}, &version, &done, &outcome)
	return version, done, outcome
}

// hookedStripe is the outbox's Stripe with a hook run before each quantity write is sent.
type hookedStripe struct {
	billing.OutboxStripe
	beforeSet func()
}

func (h *hookedStripe) SetQuantity(ctx context.Context, itemID string, quantity int64, key string) (int64, error) {
	if h.beforeSet != nil {
		h.beforeSet()
	}
	return h.OutboxStripe.SetQuantity(ctx, itemID, quantity, key)
}

// TestSeatSync drives the Stripe outbox's seat sync (seats.go, outbox.go) against PostgreSQL and
// the Stripe double: a per-seat subscription's quantity follows the members; only the latest seat
// version is sent, under a key naming it; nothing is sent when Stripe (or the stored state)
// already holds the quantity; a write refused before it ran is retried under the same key; an
// answer lost on the network is replayed, not run twice.
func TestSeatSync(t *testing.T) {
	t.Parallel()
	w := newStripeWorld(t)
	w.exec(t, `UPDATE subscription_plans SET per_seat = true WHERE key = 'professional'`)
	tenant, owner := w.tenant(t)
	w.join(t, tenant, 1)
	sub := w.subscribe(t, tenant, owner, "professional")
	item, _, qty, _ := w.licensed(sub)
	path := "/v1/subscription_items/" + item
	if qty != 2 {
		t.Fatalf("the checkout opened at %d seats, want the 2 members", qty)
	}
	w.flush(t)
	if n := len(w.posts(path)); n != 0 {
		t.Fatalf("%d quantity writes after a checkout at the member count, want none", n)
	}

	t.Run("three changes, one write at the latest version", func(t *testing.T) {
		for range 3 {
			w.join(t, tenant, 1)
		}
		version, _, _ := w.seatRow(t, tenant)
		w.flush(t)
		posts := w.posts(path)
		if len(posts) != 1 {
			t.Fatalf("%d quantity writes, want 1", len(posts))
		}
		if got, want := posts[0].IdempotencyKey, fmt.Sprintf("tk-seats-%s-%d-5", sub, version); got != want || posts[0].Form.Get("quantity") != "5" {
			t.Errorf("write key %q quantity %s, want %q and 5", got, posts[0].Form.Get("quantity"), want)
		}
		if _, _, q, _ := w.licensed(sub); q != 5 {
			t.Errorf("Stripe holds %d seats, want 5", q)
		}
		if v, done, outcome := w.seatRow(t, tenant); !done || outcome != billing.WriteSent || v != version {
			t.Errorf("seat write version %d done %v outcome %q, want version %d sent", v, done, outcome, version)
		}
		// The webhook of tenantkit's own change queues nothing more.
		w.deliver(t)
		w.flush(t)
		if n := len(w.posts(path)); n != 1 {
			t.Errorf("%d quantity writes after the webhook, want still 1", n)
		}
	})

	t.Run("a change while a write is on its way is sent after it", func(t *testing.T) {
		before := len(w.posts(path))
		real := w.outbox.Stripe
		once := false
		hooked := &billing.StripeOutbox{Store: w.db, Log: w.outbox.Log, Stripe: &hookedStripe{OutboxStripe: real, beforeSet: func() {
			if !once {
				once = true
				w.join(t, tenant, 1) // 7 members, decided at 6
			}
		}}}
		w.join(t, tenant, 1)
		if _, err := hooked.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, done, _ := w.seatRow(t, tenant); done {
			t.Fatal("the write decided before the newer change is finished: the newer change would never be sent")
		}
		if _, err := hooked.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		posts := w.posts(path)[before:]
		if len(posts) != 2 || posts[0].Form.Get("quantity") != "6" || posts[1].Form.Get("quantity") != "7" ||
			posts[0].IdempotencyKey == posts[1].IdempotencyKey {
			t.Errorf("writes %+v; want 6 then 7, under two keys", posts)
		}
		if _, _, q, _ := w.licensed(sub); q != w.members(t, tenant) {
			t.Errorf("Stripe holds %d seats, want the %d members", q, w.members(t, tenant))
		}
		w.deliver(t)
	})

	t.Run("back to an earlier quantity is sent again, not replayed", func(t *testing.T) {
		before := len(w.posts(path))
		n := w.members(t, tenant)
		u := w.join(t, tenant, 1)
		w.flush(t)
		w.deliver(t)
		w.exec(t, `DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tenant, u[0])
		w.flush(t)
		w.deliver(t)
		w.join(t, tenant, 1)
		w.flush(t)
		w.deliver(t)
		posts := w.posts(path)[before:]
		if len(posts) != 3 || posts[0].IdempotencyKey == posts[2].IdempotencyKey || posts[2].Replayed {
			t.Errorf("writes %+v; want %d, %d, %d, each under its own key, none replayed", posts, n+1, n, n+1)
		}
		if _, _, q, _ := w.licensed(sub); q != n+1 {
			t.Errorf("Stripe holds %d seats, want the %d members", q, n+1)
		}
	})

	t.Run("a change undone before the sync sends nothing", func(t *testing.T) {
		before, reads := len(w.posts(path)), w.fake.Executed(http.MethodGet, "/v1/subscriptions/"+sub)
		u := w.join(t, tenant, 1)
		w.exec(t, `DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tenant, u[0])
		w.flush(t)
		if n := len(w.posts(path)) - before; n != 0 {
			t.Errorf("%d quantity writes, want none", n)
		}
		if n := w.fake.Executed(http.MethodGet, "/v1/subscriptions/"+sub) - reads; n != 0 {
			t.Errorf("%d reads of the subscription, want none: the stored quantity already is the target", n)
		}
		if _, done, outcome := w.seatRow(t, tenant); !done || outcome != billing.WriteAlreadyDone {
			t.Errorf("seat write done %v outcome %q, want already_done", done, outcome)
		}
	})

	t.Run("Stripe already at the target (its webhook not yet applied) sends nothing", func(t *testing.T) {
		before := len(w.posts(path))
		n := w.members(t, tenant)
		if err := w.fake.PortalSetQuantity(sub, n+1); err != nil {
			t.Fatal(err)
		}
		w.fake.Drain() // not delivered: the stored quantity is still n
		w.join(t, tenant, 1)
		w.flush(t)
		if got := len(w.posts(path)) - before; got != 0 {
			t.Errorf("%d quantity writes, want none: Stripe already holds %d", got, n+1)
		}
		if _, done, outcome := w.seatRow(t, tenant); !done || outcome != billing.WriteAlreadyDone {
			t.Errorf("seat write done %v outcome %q, want already_done", done, outcome)
		}
	})

	t.Run("a refused write is retried under the same key", func(t *testing.T) {
		before := len(w.posts(path))
		w.fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: path, Status: http.StatusServiceUnavailable, Times: 2})
		w.join(t, tenant, 1)
		w.flush(t)
		if _, done, outcome := w.seatRow(t, tenant); done || outcome != billing.WriteRetrying {
			t.Fatalf("seat write done %v outcome %q, want retrying", done, outcome)
		}
		w.exec(t, `UPDATE tenantkit.stripe_outbox SET next_at = now() WHERE tenant_id = $1`, tenant)
		w.flush(t)
		posts := w.posts(path)[before:]
		ran := 0
		for _, p := range posts {
			if p.IdempotencyKey != posts[0].IdempotencyKey {
				t.Errorf("keys %q and %q: a retry must resend the same key", posts[0].IdempotencyKey, p.IdempotencyKey)
			}
			if p.Executed {
				ran++
			}
		}
		if len(posts) < 2 || ran != 1 {
			t.Errorf("%d writes, %d ran; want the refused ones then one that ran", len(posts), ran)
		}
		if _, done, outcome := w.seatRow(t, tenant); !done || outcome != billing.WriteSent {
			t.Errorf("seat write done %v outcome %q, want sent", done, outcome)
		}
		w.deliver(t)
	})

	t.Run("a lost answer is replayed, not run twice", func(t *testing.T) {
		before := len(w.posts(path))
		w.fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: path, Drop: true})
		w.join(t, tenant, 1)
		w.flush(t)
		posts := w.posts(path)[before:]
		if len(posts) != 2 || !posts[0].Executed || !posts[1].Replayed || posts[0].IdempotencyKey != posts[1].IdempotencyKey {
			t.Errorf("writes %+v; want one that ran and its replay under the same key", posts)
		}
		if _, done, outcome := w.seatRow(t, tenant); !done || outcome != billing.WriteSent {
			t.Errorf("seat write done %v outcome %q, want sent", done, outcome)
		}
		if _, _, q, _ := w.licensed(sub); q != w.members(t, tenant) {
			t.Errorf("Stripe holds %d seats, want the %d members", q, w.members(t, tenant))
		}
	})

	t.Run("a plan that is not per-seat sends nothing", func(t *testing.T) {
		other, otherOwner := w.tenant(t)
		osub := w.subscribe(t, other, otherOwner, "enterprise")
		oitem, _, _, _ := w.licensed(osub)
		w.join(t, other, 2)
		w.flush(t)
		if n := len(w.posts("/v1/subscription_items/" + oitem)); n != 0 {
			t.Errorf("%d quantity writes for a plan billed per tenant", n)
		}
		var queued int
		w.scan(t, `SELECT count(*) FROM tenantkit.stripe_outbox WHERE tenant_id = $1 AND done_at IS NULL`, []any{other}, &queued)
		if queued != 0 {
			t.Errorf("%d seat writes still queued for a plan billed per tenant", queued)
		}
		// A seat write queued while the plan was per-seat, sent after it no longer is: skipped.
		before := len(w.posts(path))
		w.join(t, tenant, 1)
		w.exec(t, `UPDATE subscription_plans SET per_seat = false WHERE key = 'professional'`)
		w.flush(t)
		if n := len(w.posts(path)) - before; n != 0 {
			t.Errorf("%d quantity writes once the plan is no longer per-seat", n)
		}
		if _, done, outcome := w.seatRow(t, tenant); !done || outcome != billing.WriteSkipped {
			t.Errorf("seat write done %v outcome %q, want skipped", done, outcome)
		}
	})
}
