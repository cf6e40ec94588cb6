package postgres_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/postgres"
	"github.com/tenantkit/tenantkit/internal/stripe"
	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// fxQueueCancel queues a cancellation of subscription for tenant (no tenant row needed: the queue
// outlives tenants) and returns its id.
func fxQueueCancel(t testing.TB, admin *pgxpool.Pool, tenant, subscription string) int64 {
	t.Helper()
	var id int64
	fxQueryRow(t, admin, `INSERT INTO tenantkit.stripe_outbox (kind, tenant_id, subscription_id, idempotency_key)
		VALUES ('cancel_subscription', $1, $2, 'tk-test-' || $2) RETURNING id`, tenant, subscription).Scan(&id)
	return id
}

// TestStripeOutboxClaims: concurrent senders never hold one write at once; a leased write is
// nobody else's until its lease ends or it is released; a finished one is never claimed again.
func TestStripeOutboxClaims(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	const n = 60
	for i := range n {
		fxQueueCancel(t, admin, uuid.NewString(), "sub_claim_"+uuid.NewString()[:8]+string(rune('a'+i%26)))
	}
	wide := fxWidePool(t, db, 8)

	var mu sync.Mutex
	claimed := map[int64]int{}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for range n { // bounded: a claim that never runs dry is reported below, not waited for
				ws, err := wide.ClaimStripeWrites(ctx, 4, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ws) == 0 {
					return
				}
				mu.Lock()
				for _, w := range ws {
					claimed[w.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != n {
		t.Fatalf("%d of %d writes claimed", len(claimed), n)
	}
	for id, k := range claimed {
		if k != 1 {
			t.Errorf("write %d claimed %d times while leased", id, k)
		}
	}

	// Leased: nothing to claim. A released write is due again; an expired lease frees one.
	if ws, err := db.ClaimStripeWrites(ctx, 100, time.Minute); err != nil || len(ws) != 0 {
		t.Fatalf("claimed %d leased writes (%v)", len(ws), err)
	}
	var ids []int64
	for id := range claimed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	retried, expired, finished := ids[0], ids[1], ids[2]
	if err := db.RetryStripeWrite(ctx, billing.StripeWrite{ID: retried}, 0, billing.WriteRetrying, "stripe down"); err != nil {
		t.Fatal(err)
	}
	fxExec(t, admin, `UPDATE tenantkit.stripe_outbox SET leased_until = now() - interval '1 second' WHERE id = $1`, expired)
	if err := db.FinishStripeWrite(ctx, billing.StripeWrite{ID: finished, Kind: billing.CancelSubscription}, billing.WriteSent); err != nil {
		t.Fatal(err)
	}
	ws, err := db.ClaimStripeWrites(ctx, 100, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, w := range ws {
		got = append(got, w.ID)
		if w.Attempts != 2 {
			t.Errorf("write %d: attempts %d, want 2", w.ID, w.Attempts)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []int64{retried, expired}) {
		t.Errorf("claimed %v after a retry, an expired lease and a finish; want %v", got, []int64{retried, expired})
	}
	var outcome, problem string
	fxQueryRow(t, admin, `SELECT outcome, coalesce(last_error, '') FROM tenantkit.stripe_outbox WHERE id = $1`, retried).Scan(&outcome, &problem)
	if outcome != billing.WriteRetrying || problem != "stripe down" {
		t.Errorf("retried write: outcome %q, last_error %q", outcome, problem)
	}
	if fxCount(t, admin, `SELECT count(*) FROM tenantkit.stripe_outbox WHERE id = $1 AND done_at IS NOT NULL AND outcome = 'sent'`, finished) != 1 {
		t.Error("the finished write is not done")
	}
}

// outboxFixture is a subscription on the stateful double and a sender of the queue to it.
type outboxFixture struct {
	fake   *stripefake.Server
	sender *billing.StripeOutbox
	counts map[string]int
	mu     sync.Mutex
}

func newOutboxFixture(t *testing.T, db *postgres.DB) *outboxFixture {
	t.Helper()
	fake := stripefake.New(stripefake.Options{Now: time.Now().Add(-time.Hour)})
	t.Cleanup(fake.Close)
	f := &outboxFixture{fake: fake, counts: map[string]int{}}
	f.sender = &billing.StripeOutbox{Store: db, Stripe: stripe.New(stripefake.TestKey, fake.URL), Log: zerolog.Nop(),
		RetryBase: time.Millisecond, MaxRetry: time.Millisecond,
		Count: func(name string) { f.mu.Lock(); f.counts[name]++; f.mu.Unlock() }}
	return f
}

// subscription starts an active monthly subscription on the double and returns its id.
func (f *outboxFixture) subscription(t *testing.T) string {
	t.Helper()
	sc := f.fake.Client("")
	cus, err := sc.Customers.New(&stripego.CustomerParams{Name: stripego.String("Acme")})
	if err != nil {
		t.Fatal(err)
	}
	prod, err := sc.Products.New(&stripego.ProductParams{Name: stripego.String("Plan")})
	if err != nil {
		t.Fatal(err)
	}
	price, err := sc.Prices.New(&stripego.PriceParams{Product: stripego.String(prod.ID), Currency: stripego.String("usd"),
		UnitAmount: stripego.Int64(1000), Recurring: &stripego.PriceRecurringParams{Interval: stripego.String("month")}})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := f.fake.CreateSubscription(cus.ID, []stripefake.Item{{Price: price.ID}}, nil, 0, "active")
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// flush runs the sender until nothing is due (retries were made due at once) and returns what it
// finished.
func (f *outboxFixture) flush(t *testing.T, admin *pgxpool.Pool) int {
	t.Helper()
	total := 0
	for range 20 {
		n, err := f.sender.Flush(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if fxCount(t, admin, `SELECT count(*) FROM tenantkit.stripe_outbox WHERE done_at IS NULL AND next_at <= now() + interval '1 hour'`) == 0 {
			return total
		}
		time.Sleep(5 * time.Millisecond)
	}
	return total
}

func (f *outboxFixture) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[name]
}

// TestStripeOutboxCancel: a queued cancellation is sent once Stripe answers, whatever failed
// before; a subscription Stripe says is already gone counts as done; a refusal is recorded,
// counted and left for a day, not retried in a loop.
func TestStripeOutboxCancel(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	f := newOutboxFixture(t, db)
	ctx := context.Background()
	path := func(sub string) string { return "/v1/subscriptions/" + sub }
	state := func(id int64) (outcome string, done bool, attempts int, nextIn time.Duration) {
		t.Helper()
		var secs float64
		fxQueryRow(t, admin, `SELECT coalesce(outcome, ''), done_at IS NOT NULL, attempts, extract(epoch FROM next_at - now())::float8
			FROM tenantkit.stripe_outbox WHERE id = $1`, id).Scan(&outcome, &done, &attempts, &secs)
		return outcome, done, attempts, time.Duration(secs * float64(time.Second))
	}

	t.Run("Stripe down, then up: canceled once", func(t *testing.T) {
		sub := f.subscription(t)
		id := fxQueueCancel(t, admin, uuid.NewString(), sub)
		// stripe-go itself retries a 503 once: 5 refusals take three attempts of the sender.
		f.fake.Fail(stripefake.Failure{Method: http.MethodDelete, PathPrefix: path(sub), Status: 503, Times: 5})
		f.flush(t, admin)
		if outcome, done, attempts, _ := state(id); outcome != billing.WriteSent || !done || attempts != 3 {
			t.Errorf("outcome %q, done %v after %d attempts; want sent and done after 3", outcome, done, attempts)
		}
		if got := f.fake.Subscription(sub).Status; got != stripego.SubscriptionStatusCanceled {
			t.Errorf("Stripe's subscription is %s", got)
		}
		if n := f.fake.Executed(http.MethodDelete, path(sub)); n != 1 {
			t.Errorf("the cancellation ran %d times at Stripe, want 1", n)
		}
		if f.count("stripe_write_cancel_subscription_retrying") != 2 || f.count("stripe_write_cancel_subscription_sent") < 1 {
			t.Errorf("counters %v", f.counts)
		}
		if n := f.flush(t, admin); n != 0 || f.fake.Executed(http.MethodDelete, path(sub)) != 1 {
			t.Errorf("a finished write was sent again (%d finished)", n)
		}
	})

	t.Run("already canceled at Stripe: done", func(t *testing.T) {
		sub := f.subscription(t)
		if _, err := f.fake.Client("").Subscriptions.Cancel(sub, nil); err != nil {
			t.Fatal(err)
		}
		id := fxQueueCancel(t, admin, uuid.NewString(), sub)
		f.flush(t, admin)
		if outcome, done, _, _ := state(id); outcome != billing.WriteAlreadyDone || !done {
			t.Errorf("outcome %q, done %v; want already_done", outcome, done)
		}
	})

	t.Run("a refusal is recorded and retried a day later", func(t *testing.T) {
		sub := f.subscription(t)
		id := fxQueueCancel(t, admin, uuid.NewString(), sub)
		f.fake.Fail(stripefake.Failure{Method: http.MethodDelete, PathPrefix: path(sub), Status: 402,
			Body: `{"error":{"type":"card_error","code":"card_declined","message":"declined"}}`})
		before := f.count("stripe_write_cancel_subscription_failed")
		if _, err := f.sender.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		outcome, done, _, nextIn := state(id)
		if outcome != billing.WriteFailed || done || nextIn < 23*time.Hour {
			t.Errorf("outcome %q, done %v, due again in %s; want failed, pending, a day", outcome, done, nextIn)
		}
		var problem string
		fxQueryRow(t, admin, `SELECT last_error FROM tenantkit.stripe_outbox WHERE id = $1`, id).Scan(&problem)
		if problem == "" {
			t.Error("the refusal is not recorded")
		}
		if f.count("stripe_write_cancel_subscription_failed") != before+1 {
			t.Error("the refusal is not counted")
		}
		// Not due: further flushes send nothing.
		for range 3 {
			if _, err := f.sender.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if n := f.fake.Executed(http.MethodDelete, path(sub)); n != 0 {
			t.Errorf("a refused write was sent again %d times at once", n)
		}
	})

	t.Run("the database away: the flush stops with unavailable", func(t *testing.T) {
		closed := &billing.StripeOutbox{Store: fxClosedDB(t), Stripe: f.sender.Stripe, Log: zerolog.Nop()}
		if _, err := closed.Flush(ctx); err == nil {
			t.Error("a flush without a database reported no error")
		}
	})
}

// fxClosedDB is a service DB whose pools are closed.
func fxClosedDB(t *testing.T) *postgres.DB {
	t.Helper()
	db, _ := setup(t)
	db.Close()
	return db
}

// TestStripeOutboxSeatVersions: every membership change of a per-seat tenant makes its one seat
// write newer, in the change's transaction; a write decided at an older version is not finished
// but released for the newer one, and a leased write is nobody else's meanwhile.
func TestStripeOutboxSeatVersions(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tn := fxTenant(t, admin, fxPlanKey("professional"))
	plain := fxTenant(t, admin, fxPlanKey("enterprise"))
	fxExec(t, admin, `UPDATE subscription_plans SET per_seat = true WHERE key = 'professional'`)
	fxExec(t, admin, `UPDATE tenant_subscriptions SET stripe_subscription_id = 'sub_seats_' || tenant_id WHERE tenant_id IN ($1, $2)`, tn.id, plain.id)
	version := func(tenant string) int64 {
		t.Helper()
		return fxCount(t, admin, `SELECT coalesce(max(version), 0) FROM tenantkit.stripe_outbox WHERE tenant_id = $1 AND kind = 'sync_seats'`, tenant)
	}
	m1 := fxMember(t, admin, tn.id, "member")
	fxMember(t, admin, plain.id, "member")
	if v := version(tn.id); v != 1 {
		t.Fatalf("seat version %d after a join, want 1", v)
	}
	if v := version(plain.id); v != 0 {
		t.Errorf("a tenant whose plan is not per-seat got a seat write (version %d)", v)
	}
	// A role change is not a seat; a removal is, under RLS too (the owner removes the member).
	fxExec(t, admin, `UPDATE tenant_users SET role = 'admin' WHERE tenant_id = $1 AND user_id = $2`, tn.id, m1)
	if err := fxAs(ctx, db, tn.owner, func(tx pgx.Tx) error {
		return fxExactlyOne(tx.Exec(ctx, `DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tn.id, m1))
	}); err != nil {
		t.Fatal(err)
	}
	if v := version(tn.id); v != 2 {
		t.Fatalf("seat version %d after a role change and a removal, want 2", v)
	}
	// A pending invitation is not a seat.
	fxInvite(t, admin, tn.id, "pending", time.Hour)
	if v := version(tn.id); v != 2 {
		t.Errorf("an invitation moved the seat version to %d", v)
	}

	ws, err := db.ClaimStripeWrites(ctx, 10, time.Minute)
	if err != nil || len(ws) != 1 || ws[0].Kind != billing.SyncSeats || ws[0].Version != 2 {
		t.Fatalf("claimed %+v (%v), want the seat write at version 2", ws, err)
	}
	st, err := db.SeatState(ctx, tn.id)
	if err != nil || st.Version != 2 || st.Members != 1 || !st.PerSeat || st.SubscriptionID != "sub_seats_"+tn.id {
		t.Fatalf("seat state %+v (%v)", st, err)
	}
	w := ws[0]
	w.Version = st.Version
	fxMember(t, admin, tn.id, "guest") // while the write is leased
	if again, err := db.ClaimStripeWrites(ctx, 10, time.Minute); err != nil || len(again) != 0 {
		t.Fatalf("claimed %+v while leased (%v)", again, err)
	}
	if err := db.FinishStripeWrite(ctx, w, billing.WriteSent); err != nil {
		t.Fatal(err)
	}
	ws, err = db.ClaimStripeWrites(ctx, 10, time.Minute)
	if err != nil || len(ws) != 1 || ws[0].Version != 3 {
		t.Fatalf("after finishing version 2 of a write at version 3, claimed %+v (%v)", ws, err)
	}
	w = ws[0]
	w.Quantity, w.SubscriptionID = 2, "sub_seats_"+tn.id
	if err := db.FinishStripeWrite(ctx, w, billing.WriteSent); err != nil {
		t.Fatal(err)
	}
	if n := fxCount(t, admin, `SELECT count(*) FROM tenantkit.stripe_outbox WHERE tenant_id = $1 AND done_at IS NOT NULL AND version = 3`, tn.id); n != 1 {
		t.Error("the write is not done at version 3")
	}
	if q := fxCount(t, admin, `SELECT stripe_quantity FROM tenant_subscriptions WHERE tenant_id = $1`, tn.id); q != 2 {
		t.Errorf("stored quantity %d, want the 2 Stripe answered", q)
	}
}
