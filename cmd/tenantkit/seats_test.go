package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// perSeat makes the plan per-seat.
func (f *fakeBilling) perSeat(t *testing.T, key string) {
	t.Helper()
	exec(t, f.stack, `UPDATE subscription_plans SET per_seat = true WHERE key = $1`, key)
}

// seatRow is the tenant's sync_seats write: its version and whether it is done.
func (f *fakeBilling) seatRow(t *testing.T, tenant string) (version int64, done bool, outcome string) {
	t.Helper()
	err := f.admin.QueryRow(context.Background(), `SELECT version, done_at IS NOT NULL, coalesce(outcome, '')
		FROM tenantkit.stripe_outbox WHERE tenant_id = $1 AND kind = 'sync_seats'`, tenant).Scan(&version, &done, &outcome)
	if err != nil {
		return 0, false, ""
	}
	return version, done, outcome
}

// stripeQuantity is the licensed quantity Stripe holds for sub.
func (f *fakeBilling) stripeQuantity(sub string) int64 {
	s := f.fake.Subscription(sub)
	_, qty := licensed(&s)
	return qty
}

func (f *fakeBilling) members(t *testing.T, tenant string) int64 {
	t.Helper()
	return int64(f.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, tenant))
}

// invitations invites n new verified users to the tenant as members and returns each one's id
// and token.
func (f *fakeBilling) invitations(t *testing.T, tenant, owner string, n int) (users, tokens []string) {
	t.Helper()
	for i := range n {
		addr := fmt.Sprintf("seat%d.%s@example.com", i, tenant[:8])
		users = append(users, f.user(t, addr))
		inv := f.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": addr, "role": "member"}, owner)
		if st := f.stack.deliver(t, "invitation_email", "INSERT", inv["invitationId"]); st != http.StatusOK {
			t.Fatalf("invitation email: %d", st)
		}
		tokens = append(tokens, f.links(t, addr)[0])
	}
	return users, tokens
}

// synced waits until the tenant's seat write is done and Stripe's quantity of sub is the number
// of members, delivering Stripe's webhooks meanwhile.
func (f *fakeBilling) synced(t *testing.T, tenant, sub string) {
	t.Helper()
	var state string
	eventually(t, "Stripe's quantity to be the number of members", func() bool {
		f.settleOutbox(t)
		f.deliver(t)
		version, done, outcome := f.seatRow(t, tenant)
		var problem string
		_ = f.admin.QueryRow(context.Background(), `SELECT coalesce(last_error, '') FROM tenantkit.stripe_outbox
			WHERE tenant_id = $1 AND kind = 'sync_seats'`, tenant).Scan(&problem)
		state = fmt.Sprintf("seat write version %d, done %v, outcome %q (%s); Stripe %d seats, %d members",
			version, done, outcome, problem, f.stripeQuantity(sub), f.members(t, tenant))
		return (done || version == 0) && f.stripeQuantity(sub) == f.members(t, tenant)
	}, func() string { return state })
}

// TestSeats: a per-seat plan's subscription follows the number of members through the Stripe
// outbox, against the stateful double.
func TestSeats(t *testing.T) {
	t.Parallel()
	f := newFakeBilling(t, "INVITATION_SENDS_PER_HOUR", "1000")
	f.perSeat(t, "professional")

	t.Run("50 concurrent joins and 20 removals: Stripe ends at the member count, no write it already held", func(t *testing.T) {
		tenant, owner := f.tenant(t)
		sub := f.subscribe(t, tenant, owner, "professional")
		leavers := make([]string, 20)
		for i := range leavers {
			leavers[i] = f.member(t, tenant, "member")
		}
		f.synced(t, tenant, sub)
		if q := f.stripeQuantity(sub); q != 21 {
			t.Fatalf("after the checkout Stripe holds %d seats, want 21", q)
		}
		users, tokens := f.invitations(t, tenant, owner, 50)
		pendingVersion, _, _ := f.seatRow(t, tenant)
		if q := f.stripeQuantity(sub); q != 21 {
			t.Errorf("50 pending invitations made Stripe hold %d seats, want 21: invitations are not seats", q)
		}

		// Stripe's webhooks are delivered all along, as they would be.
		stop := make(chan struct{})
		var deliveries sync.WaitGroup
		deliveries.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					for _, e := range f.fake.Drain() {
						if st, err := stripefake.Deliver(f.m.HTTP.URL()+"/webhooks/stripe", testWebhookSecret, e); err != nil || st != http.StatusOK {
							t.Errorf("delivery of %s: %d %v", e.Type, st, err)
						}
					}
				}
			}
		})
		// Five waves of 14 concurrent changes (10 joins, 4 removals), 700 ms apart: the sender sends
		// between waves, and the webhooks of its writes arrive while members change again.
		var wg sync.WaitGroup
		for wave := range 5 {
			for i := wave * 10; i < wave*10+10; i++ {
				wg.Go(func() { f.ok(t, "acceptInvitation", map[string]any{"token": tokens[i]}, users[i]) })
			}
			for _, u := range leavers[wave*4 : wave*4+4] {
				wg.Go(func() { f.ok(t, "removeMember", map[string]any{"tenantId": tenant, "userId": u}, owner) })
			}
			time.Sleep(700 * time.Millisecond)
		}
		wg.Wait()
		close(stop)
		deliveries.Wait()
		if n := f.members(t, tenant); n != 51 {
			t.Fatalf("%d members, want 51", n)
		}
		f.synced(t, tenant, sub)
		ran, unchanged := f.fake.SetQuantityRequests()
		if unchanged != 0 {
			t.Errorf("%d of %d quantity writes sent a quantity Stripe already held", unchanged, ran)
		}
		version, _, _ := f.seatRow(t, tenant)
		if version < pendingVersion+70 {
			t.Errorf("seat version %d after 70 membership changes from %d", version, pendingVersion)
		}
		// The webhooks of tenantkit's own writes queue nothing more, and nothing is sent again.
		f.flushOutbox(t)
		f.deliver(t)
		f.flushOutbox(t) // whatever the webhooks queued is sent now, not after a poll
		if again, done, _ := f.seatRow(t, tenant); again != version || !done {
			t.Errorf("seat version %d (done %v) after Stripe's own webhooks, want %d, done", again, done, version)
		}
		if after, _ := f.fake.SetQuantityRequests(); after != ran {
			t.Errorf("%d more quantity writes after the sync", after-ran)
		}
		if stored := f.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["stripe_quantity"]; fmt.Sprint(stored) != "51" {
			t.Errorf("stored quantity %v, want 51", stored)
		}
		t.Logf("seats: 50 joins and 20 removals in 5 concurrent waves, %d seat versions; %d quantity writes reached Stripe, none of a quantity it held", version-pendingVersion, ran)
	})

	t.Run("a checkout opens at the member count: no seat write follows it", func(t *testing.T) {
		tenant, owner := f.tenant(t)
		for range 4 {
			f.member(t, tenant, "member")
		}
		f.flushOutbox(t)
		before, _ := f.fake.SetQuantityRequests()
		sub := f.subscribe(t, tenant, owner, "professional")
		if q := f.stripeQuantity(sub); q != 5 {
			t.Errorf("the checkout opened at %d seats, want the 5 members", q)
		}
		f.flushOutbox(t)
		f.deliver(t)
		f.flushOutbox(t)
		if after, _ := f.fake.SetQuantityRequests(); after != before {
			t.Errorf("%d quantity writes after a checkout that opened at the member count", after-before)
		}
		f.synced(t, tenant, sub)
	})

	t.Run("tenantkit's own webhook queues nothing; a change undone before the sync sends nothing", func(t *testing.T) {
		tenant, owner := f.tenant(t)
		sub := f.subscribe(t, tenant, owner, "professional")
		f.synced(t, tenant, sub)
		f.member(t, tenant, "member")
		// The write, without its webhook yet.
		eventually(t, "the write of 2 seats", func() bool {
			_, done, _ := f.seatRow(t, tenant)
			return done && f.stripeQuantity(sub) == 2
		})
		version, _, _ := f.seatRow(t, tenant)
		ran, _ := f.fake.SetQuantityRequests()
		events := f.deliver(t)
		if len(events) != 1 || events[0].Type != "customer.subscription.updated" {
			t.Fatalf("the write emitted %v", events)
		}
		f.flushOutbox(t)
		if again, done, _ := f.seatRow(t, tenant); again != version || !done {
			t.Errorf("the write's own webhook moved the seat version from %d to %d (done %v)", version, again, done)
		}
		// A member who joins and leaves in one transaction: two versions, the same quantity.
		u := f.user(t, "")
		tx, err := f.admin.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{`INSERT INTO tenant_users (tenant_id, user_id) VALUES ($1, $2)`,
			`DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`} {
			if _, err := tx.Exec(context.Background(), stmt, tenant, u); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the seat write to finish", func() bool {
			v, done, _ := f.seatRow(t, tenant)
			return done && v == version+2
		})
		if _, _, outcome := f.seatRow(t, tenant); outcome != "already_done" {
			t.Errorf("outcome %q, want already_done", outcome)
		}
		if after, _ := f.fake.SetQuantityRequests(); after != ran {
			t.Errorf("%d writes for a quantity Stripe held", after-ran)
		}
	})

	t.Run("a change made at Stripe is brought back to the members", func(t *testing.T) {
		tenant, owner := f.tenant(t)
		f.member(t, tenant, "member")
		f.member(t, tenant, "guest")
		sub := f.subscribe(t, tenant, owner, "professional")
		f.synced(t, tenant, sub)
		if err := f.fake.PortalSetQuantity(sub, 9); err != nil {
			t.Fatal(err)
		}
		f.synced(t, tenant, sub)
		if q := f.stripeQuantity(sub); q != 3 {
			t.Errorf("Stripe holds %d seats after a portal change, want the 3 members", q)
		}
	})

	t.Run("a plan that is not per-seat queues nothing", func(t *testing.T) {
		tenant, owner := f.tenant(t)
		sub := f.subscribe(t, tenant, owner, "enterprise")
		f.member(t, tenant, "member")
		f.member(t, tenant, "admin")
		if v, _, _ := f.seatRow(t, tenant); v != 0 {
			t.Errorf("a seat sync was queued for a plan that is not per-seat (version %d)", v)
		}
		if q := f.stripeQuantity(sub); q != 1 {
			t.Errorf("Stripe holds %d seats", q)
		}
	})
}

// TestSeatsStripeOutage: Stripe refuses quantity writes, loses an answer, and the service is
// restarted meanwhile: nothing is lost, nothing is sent twice.
func TestSeatsStripeOutage(t *testing.T) {
	t.Parallel()
	f := newFakeBilling(t)
	f.perSeat(t, "professional")
	tenant, owner := f.tenant(t)
	sub := f.subscribe(t, tenant, owner, "professional")
	f.synced(t, tenant, sub)
	s := f.fake.Subscription(sub)
	item := s.Items.Data[0].ID
	path := "/v1/subscription_items/" + item
	f.fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: path, Status: http.StatusServiceUnavailable, Times: 7})

	// Three members join in one transaction: one seat version for the sender to find.
	newcomers := []string{f.user(t, ""), f.user(t, ""), f.user(t, "")}
	exec(t, f.stack, `INSERT INTO tenant_users (tenant_id, user_id, role) SELECT $1, u, 'member' FROM unnest($2::uuid[]) u`, tenant, newcomers)
	eventually(t, "a refused seat write", func() bool {
		_, _, outcome := f.seatRow(t, tenant)
		return outcome == "retrying"
	})
	f.restart(t)
	f.synced(t, tenant, sub)
	if q := f.stripeQuantity(sub); q != 4 {
		t.Fatalf("Stripe holds %d seats, want the 4 members", q)
	}

	// An answer lost on the way back: stripe-go's retry replays it, the sender records it.
	f.fake.Fail(stripefake.Failure{Method: http.MethodPost, PathPrefix: path, Drop: true})
	f.member(t, tenant, "guest")
	f.synced(t, tenant, sub)

	ran, unchanged := f.fake.SetQuantityRequests()
	refused, replayed := 0, f.fake.Replayed(http.MethodPost, path)
	for _, r := range f.fake.Requests() {
		if r.Method == http.MethodPost && r.Path == path && r.Status == http.StatusServiceUnavailable {
			refused++
		}
	}
	if unchanged != 0 || ran != 2 || replayed != 1 {
		t.Errorf("%d quantity writes ran (%d changing nothing), %d replayed; want 2 (4 seats, then 5), none idle, the lost answer replayed once", ran, unchanged, replayed)
	}
	if q := f.stripeQuantity(sub); q != 5 {
		t.Errorf("Stripe holds %d seats, want 5", q)
	}
	if refused != 7 {
		t.Errorf("%d refused writes, want the 7 injected", refused)
	}
	t.Logf("seat outage: %d refused writes across a restart, then a lost answer replayed; %d writes ran, each changing Stripe's quantity", refused, ran)
}
