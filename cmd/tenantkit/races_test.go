package main

// Concurrent duplicates of every input that may arrive more than once: Hasura event deliveries,
// Stripe webhooks, recordUsage batches, invitation accepts and tenant creations. Each is sent from
// raceN goroutines released together, and each is made to overlap for certain: deliveries whose
// work calls out (SMTP, Stripe) are held there until every other delivery has been answered; the
// others queue in PostgreSQL behind a blocker transaction of the test that holds the row they all
// need, until every pooled connection of the service waits on it. Then the effect must have
// happened once and every caller got the documented answer.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/stripetest"
)

const raceN = 32

// raceTogether runs fn(0) … fn(n-1) on n goroutines released at once and waits for all of them.
func raceTogether(n int, fn func(i int)) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			fn(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}

// raceHold keeps the one delivery that does the work waiting at a dependency until the other
// n-1 deliveries have been answered (or 15 s have passed, and the test then fails).
type raceHold struct {
	armed    atomic.Bool
	held     atomic.Int32 // requests that reached the dependency while armed
	answered atomic.Int32
	n        int32
	once     sync.Once
	open     chan struct{}
}

func newRaceHold(n int) *raceHold { return &raceHold{n: int32(n), open: make(chan struct{})} }

func (h *raceHold) arm() {
	h.armed.Store(true)
	time.AfterFunc(15*time.Second, h.release)
}

func (h *raceHold) release() { h.once.Do(func() { close(h.open) }) }

// wait is called by the dependency's stand-in for each request.
func (h *raceHold) wait() {
	if h.armed.Load() {
		h.held.Add(1)
		<-h.open
	}
}

// answer is called once per answered delivery.
func (h *raceHold) answer() {
	if h.answered.Add(1) == h.n-1 {
		h.release()
	}
}

// raceSMTP is a TCP relay to the stack's SMTP peer that holds connections while armed.
func raceSMTP(t *testing.T, hold *raceHold, upstream *atomic.Pointer[string]) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); hold.release() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				hold.wait()
				up, err := net.Dial("tcp", *upstream.Load())
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return "smtp://" + ln.Addr().String()
}

// raceStripe is a proxy to stripe-mock that counts customer creations and holds them while armed.
func raceStripe(t *testing.T, hold *raceHold, customers *atomic.Int32) string {
	t.Helper()
	sm, err := stripeMock()
	if err != nil {
		t.Fatalf("stripe-mock: %v", err)
	}
	target, _ := url.Parse(sm.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/customers" {
			customers.Add(1)
			hold.wait()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { hold.release(); srv.Close() })
	return srv.URL
}

// raceBlocker holds, in a transaction of the test, what every racing request needs (a row lock or
// a uniqueness slot). Release waits until every pooled connection of the service waits on a lock
// (so at least that many requests overlap inside PostgreSQL), then rolls the blocker back.
type raceBlocker struct {
	s  *stack
	tx pgx.Tx
}

func newRaceBlocker(t *testing.T, s *stack, sql string, args ...any) *raceBlocker {
	t.Helper()
	ctx := context.Background()
	tx, err := s.admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("blocker: %v", err)
	}
	return &raceBlocker{s: s, tx: tx}
}

// releaseWhenQueued runs in the background while the race runs.
func (b *raceBlocker) releaseWhenQueued(t *testing.T, n int) (wait func()) {
	// Every racer that holds a connection of the pool queues; serve's own background work (the
	// maintenance run at start keeps one connection for its lock while it runs) may hold one.
	want := int(min(int32(n), b.s.m.DB.Pool.Config().MaxConns-1))
	errc := make(chan error, 1)
	go func() {
		ctx := context.Background()
		deadline := time.Now().Add(10 * time.Second)
		var waiting int
		for time.Now().Before(deadline) {
			if err := b.s.admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
				errc <- err
				_ = b.tx.Rollback(ctx)
				return
			}
			if waiting >= want {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		var err error
		if waiting < want {
			err = fmt.Errorf("only %d of %d connections queued behind the blocker", waiting, want)
		}
		if rerr := b.tx.Rollback(ctx); err == nil {
			err = rerr
		}
		errc <- err
	}()
	return func() {
		t.Helper()
		if err := <-errc; err != nil {
			t.Errorf("blocker: %v", err)
		}
	}
}

// raceAnswer is an action's answer: the output or the error code, and what went wrong with the
// call itself (kept, since a goroutine must not fail the test).
type raceAnswer struct {
	status int
	code   string
	out    map[string]any
	err    error
}

// counted is recordUsage's answer: recorded + duplicates, and recorded.
func (a raceAnswer) counted() (total, recorded int) {
	r, _ := a.out["recorded"].(float64)
	d, _ := a.out["duplicates"].(float64)
	return int(r + d), int(r)
}

// raceAct calls an action as Hasura would, safely from any goroutine.
func raceAct(s *stack, name string, input map[string]any, sess map[string]string) raceAnswer {
	res, err := s.hasura.Action(context.Background(), name, input, sess)
	if err != nil {
		return raceAnswer{err: err}
	}
	if res.HasuraError != nil {
		return raceAnswer{status: res.Status, err: fmt.Errorf("Hasura would not pass the answer on: %v", res.HasuraError)}
	}
	a := raceAnswer{status: res.Status}
	if res.Status >= 400 {
		ae, err := res.ActionError()
		if err != nil {
			return raceAnswer{status: res.Status, err: err}
		}
		a.code = ae.Code
		return a
	}
	a.err = json.Unmarshal(res.Body, &a.out)
	return a
}

// raceDeliveries checks n concurrent deliveries of one event id, the worker held at its dependency
// until the others were answered: exactly one processed it, every other was told 409 conflict
// (in progress); then Hasura's retries of those are each answered 200 duplicate.
func raceDeliveries(t *testing.T, s *stack, hold *raceHold, trigger string, row map[string]any) {
	t.Helper()
	id := uuid.NewString()
	deliver := func() (*hasuratest.Response, error) {
		return s.hasura.Event(context.Background(), trigger, "INSERT", nil, row, hasuratest.EventOptions{ID: id})
	}
	res := make([]*hasuratest.Response, raceN)
	errs := make([]error, raceN)
	hold.arm()
	raceTogether(raceN, func(i int) {
		res[i], errs[i] = deliver()
		hold.answer()
	})
	processed, inProgress := 0, 0
	for i := range raceN {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		var body struct {
			Status     string
			Extensions struct{ Code string }
		}
		_ = json.Unmarshal(res[i].Body, &body)
		switch {
		case res[i].Status == http.StatusOK && body.Status == "processed":
			processed++
		case res[i].Status == http.StatusConflict && body.Extensions.Code == "conflict":
			inProgress++
		default:
			t.Errorf("delivery %d: %d %s", i, res[i].Status, res[i].Body)
		}
	}
	if processed != 1 || inProgress != raceN-1 || hold.held.Load() != 1 {
		t.Errorf("%d processed, %d told 409 in progress, %d reached the dependency; want 1, %d, 1", processed, inProgress, hold.held.Load(), raceN-1)
	}
	// Hasura retries every delivery not answered 2xx, with the same id: all at once again.
	raceTogether(inProgress, func(i int) {
		res[i], errs[i] = deliver()
	})
	for i := range inProgress {
		if errs[i] != nil || res[i].Status != http.StatusOK || string(res[i].Body) != "{\"status\":\"duplicate\"}\n" {
			t.Errorf("retry %d: %v %d %s, want 200 duplicate", i, errs[i], res[i].Status, res[i].Body)
		}
	}
	if n := s.count(t, `SELECT count(*) FROM tenantkit.processed_events WHERE id = $1 AND done_at IS NOT NULL`, id); n != 1 {
		t.Errorf("event %s recorded done %d times", id, n)
	}
}

func TestRaces(t *testing.T) {
	t.Parallel()

	t.Run("one invitation event delivered many times at once sends one email", func(t *testing.T) {
		t.Parallel()
		hold := newRaceHold(raceN)
		var upstream atomic.Pointer[string]
		relay := raceSMTP(t, hold, &upstream)
		s := newStack(t, "SMTP_URL", relay)
		addr := s.smtp.Addr()
		upstream.Store(&addr)
		tenant, owner := s.tenant(t)
		email := "race.invitee." + tenant[:8] + "@example.com"
		inv := s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": email, "role": "member"}, owner)
		raceDeliveries(t, s, hold, "invitation_email", s.row(t, "tenant_invitations", "id = $1", inv["invitationId"]))
		if links := s.links(t, email); len(links) != 1 {
			t.Errorf("%d emails to the invitee, want 1", len(links))
		}
		if n := s.count(t, `SELECT count(*) FROM tenantkit.invitation_outbox WHERE invitation_id = $1`, inv["invitationId"]); n != 0 {
			t.Errorf("the outbox still holds the token after the email was sent")
		}
	})

	t.Run("one tenant_created event delivered many times at once makes one Stripe customer", func(t *testing.T) {
		t.Parallel()
		hold := newRaceHold(raceN)
		var customers atomic.Int32
		api := raceStripe(t, hold, &customers)
		s := newStack(t, "STRIPE_SECRET_KEY", stripetest.TestKey, "STRIPE_API_URL", api, "STRIPE_WEBHOOK_SECRET", testWebhookSecret)
		tenant, _ := s.tenant(t)
		raceDeliveries(t, s, hold, "tenant_created", s.row(t, "tenants", "id = $1", tenant))
		if n := customers.Load(); n != 1 {
			t.Errorf("%d customers created at Stripe, want 1", n)
		}
		if c, _ := s.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["stripe_customer_id"].(string); len(c) < 5 || c[:4] != "cus_" {
			t.Errorf("stripe_customer_id = %q", c)
		}
	})

	t.Run("one Stripe event delivered many times at once is applied once", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, withStripe(t)...)
		tenant, _ := s.tenant(t)
		sub, id := "sub_race_"+tenant[:8], "evt_race_"+tenant[:8]
		created := time.Now().Add(-time.Minute).Unix()
		s.subscribe(t, tenant, sub, "active", created-10)
		// invoice.payment_failed applies past_due and queues one email per owner in the same
		// transaction: the emails count the applications.
		blocker := newRaceBlocker(t, s, `INSERT INTO tenantkit.stripe_events (id, type, created) VALUES ($1, 'invoice.payment_failed', now())`, id)
		released := blocker.releaseWhenQueued(t, raceN)
		statuses := make([]int, raceN)
		obj := map[string]any{"id": "in_race", "object": "invoice", "subscription": sub, "customer": "cus_" + tenant[:8], "attempt_count": 1}
		raceTogether(raceN, func(i int) {
			statuses[i] = raceStripeEvent(s, id, "invoice.payment_failed", created, obj)
		})
		released()
		for i, st := range statuses {
			if st != http.StatusOK {
				t.Errorf("delivery %d: %d, want 200", i, st)
			}
		}
		if got := s.subState(t, tenant).Status; got != "past_due" {
			t.Errorf("status %s, want past_due", got)
		}
		if n := s.count(t, `SELECT count(*) FROM tenantkit.stripe_events WHERE id = $1`, id); n != 1 {
			t.Errorf("event recorded %d times", n)
		}
		if n := s.count(t, `SELECT count(*) FROM tenantkit.email_outbox WHERE tenant_id = $1`, tenant); n != 1 {
			t.Errorf("%d payment-failed emails queued, want 1 (one owner, one application)", n)
		}
	})

	t.Run("one usage key recorded many times at once counts once", func(t *testing.T) {
		t.Parallel()
		s := newStack(t)
		tenant, _ := s.tenant(t)
		at := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		blocker := newRaceBlocker(t, s, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at)
			VALUES ($1, 'race-key', 'emails_sent', 1, now())`, tenant)
		released := blocker.releaseWhenQueued(t, raceN)
		answers := make([]raceAnswer, raceN)
		raceTogether(raceN, func(i int) {
			answers[i] = raceAct(s, "recordUsage", map[string]any{"events": []any{
				map[string]any{"tenantId": tenant, "metric": "emails_sent", "quantity": 5, "idempotencyKey": "race-key", "occurredAt": at}}}, serviceSession())
		})
		released()
		recorded := 0
		for i, a := range answers {
			total, r := a.counted()
			if a.err != nil || a.status != http.StatusOK || total != 1 {
				t.Fatalf("batch %d: %d %v %v", i, a.status, a.out, a.err)
			}
			recorded += r
		}
		if recorded != 1 {
			t.Errorf("%d batches recorded the key, want 1 (the rest duplicates)", recorded)
		}
		if n := s.count(t, `SELECT coalesce(sum(quantity), 0)::int FROM tenantkit.usage_hours($1) WHERE metric = 'emails_sent'`, tenant); n != 5 {
			t.Errorf("emails_sent = %d, want 5", n)
		}
	})

	t.Run("overlapping usage batches at once count each key once", func(t *testing.T) {
		t.Parallel()
		s := newStack(t)
		tenant, _ := s.tenant(t)
		at := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		ev := func(key string) map[string]any {
			return map[string]any{"tenantId": tenant, "metric": "emails_sent", "quantity": 1, "idempotencyKey": key, "occurredAt": at}
		}
		// Batch i holds "shared", k<i> and k<i+1>: each key but the ends in two batches, "shared" in all.
		blocker := newRaceBlocker(t, s, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at)
			VALUES ($1, 'shared', 'emails_sent', 1, now())`, tenant)
		released := blocker.releaseWhenQueued(t, raceN)
		answers := make([]raceAnswer, raceN)
		raceTogether(raceN, func(i int) {
			answers[i] = raceAct(s, "recordUsage", map[string]any{"events": []any{
				ev(fmt.Sprintf("k%02d", i+1)), ev("shared"), ev(fmt.Sprintf("k%02d", i))}}, serviceSession())
		})
		released()
		recorded := 0
		for i, a := range answers {
			total, r := a.counted()
			if a.err != nil || a.status != http.StatusOK || total != 3 {
				t.Fatalf("batch %d: %d %v %v", i, a.status, a.out, a.err)
			}
			recorded += r
		}
		distinct := raceN + 2 // k00 … k32 and shared
		if recorded != distinct {
			t.Errorf("%d events recorded in all, want %d (each distinct key once)", recorded, distinct)
		}
		if n := s.count(t, `SELECT coalesce(sum(quantity), 0)::int FROM tenantkit.usage_hours($1) WHERE metric = 'emails_sent'`, tenant); n != distinct {
			t.Errorf("emails_sent = %d, want %d", n, distinct)
		}
	})

	t.Run("one invitation accepted many times at once makes one membership", func(t *testing.T) {
		t.Parallel()
		s := newStack(t)
		tenant, owner := s.tenant(t)
		email := "race.accept." + tenant[:8] + "@example.com"
		invitee := s.user(t, email)
		inv := s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": email, "role": "member"}, owner)
		if st := s.deliver(t, "invitation_email", "INSERT", s.row(t, "tenant_invitations", "id = $1", inv["invitationId"])["id"]); st != http.StatusOK {
			t.Fatalf("invitation event: %d", st)
		}
		token := s.links(t, email)[0]
		// A quarter of the callers are other signed-in users who got hold of the link.
		outsiders := map[int]string{}
		for i := 0; i < raceN; i += 4 {
			outsiders[i] = s.user(t, "")
		}
		blocker := newRaceBlocker(t, s, `SELECT 1 FROM tenant_invitations WHERE id = $1 FOR UPDATE`, inv["invitationId"])
		released := blocker.releaseWhenQueued(t, raceN)
		answers := make([]raceAnswer, raceN)
		raceTogether(raceN, func(i int) {
			user := invitee
			if o, ok := outsiders[i]; ok {
				user = o
			}
			answers[i] = raceAct(s, "acceptInvitation", map[string]any{"token": token}, session(user))
		})
		released()
		for i, a := range answers {
			if _, outsider := outsiders[i]; outsider {
				// Documented: mismatch while pending, used once the invitee has it.
				if a.err != nil || !(a.status == http.StatusForbidden && a.code == "invitation_email_mismatch" || a.status == http.StatusConflict && a.code == "invitation_used") {
					t.Errorf("outsider %d: %d %q %v", i, a.status, a.code, a.err)
				}
				continue
			}
			// Documented: repeating it as the invitee succeeds again, with the same membership.
			if a.err != nil || a.status != http.StatusOK || a.out["tenantId"] != tenant || a.out["userId"] != invitee || a.out["role"] != "member" {
				t.Errorf("invitee %d: %d %q %v %v", i, a.status, a.code, a.out, a.err)
			}
		}
		if n := s.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, tenant); n != 2 {
			t.Errorf("%d members, want the owner and the invitee", n)
		}
		if n := s.count(t, `SELECT count(*) FROM tenant_invitations WHERE id = $1 AND status = 'accepted' AND accepted_by = $2`, inv["invitationId"], invitee); n != 1 {
			t.Error("the invitation is not accepted by the invitee")
		}
		if n := s.count(t, `SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action IN ('member.joined', 'invitation.accepted') AND actor_id = $2`, tenant, invitee); n != 2 {
			t.Errorf("%d joined/accepted audit entries by the invitee, want one each", n)
		}
	})

	t.Run("one slug created by many users at once makes one tenant", func(t *testing.T) {
		t.Parallel()
		s := newStack(t)
		users := make([]string, raceN)
		for i := range users {
			users[i] = s.user(t, "")
		}
		slug := "race-" + uuid.NewString()[:8]
		blocker := newRaceBlocker(t, s, `INSERT INTO tenants (slug, name) VALUES ($1, 'Blocker')`, slug)
		released := blocker.releaseWhenQueued(t, raceN)
		answers := make([]raceAnswer, raceN)
		raceTogether(raceN, func(i int) {
			answers[i] = raceAct(s, "createTenant", map[string]any{"name": "Race", "slug": slug}, session(users[i]))
		})
		released()
		winner := ""
		for i, a := range answers {
			switch {
			case a.err == nil && a.status == http.StatusOK && a.out["slug"] == slug && a.out["role"] == "owner" && winner == "":
				winner = users[i]
			case a.err == nil && a.status == http.StatusConflict && a.code == "slug_taken": // documented
			default:
				t.Errorf("user %d: %d %q %v %v", i, a.status, a.code, a.out, a.err)
			}
		}
		if winner == "" {
			t.Fatal("nobody created the tenant")
		}
		if n := s.count(t, `SELECT count(*) FROM tenants WHERE slug = $1`, slug); n != 1 {
			t.Errorf("%d tenants with the slug", n)
		}
		if n := s.count(t, `SELECT count(*) FROM tenant_users u JOIN tenants t ON t.id = u.tenant_id WHERE t.slug = $1 AND u.user_id = $2 AND u.role = 'owner'`, slug, winner); n != 1 {
			t.Error("the winner does not own the tenant")
		}
		// The losers' transactions left nothing: no membership, tenant or subscription of theirs.
		if n := s.count(t, `SELECT count(*) FROM tenant_users WHERE user_id = ANY ($1::uuid[]) AND user_id <> $2`, users, winner); n != 0 {
			t.Errorf("%d memberships of losers", n)
		}
		if n := s.count(t, `SELECT (SELECT count(*) FROM tenants) - (SELECT count(*) FROM tenant_subscriptions)`); n != 0 {
			t.Errorf("tenants and subscriptions differ by %d", n)
		}
	})
}

// raceStripeEvent posts a Stripe event signed as Stripe signs it and returns the status (0 when it
// could not be sent); safe from any goroutine.
func raceStripeEvent(s *stack, id, typ string, created int64, object map[string]any) int {
	payload := stripetest.Event(stripetest.APIVersion, id, typ, created, object)
	req, _ := http.NewRequest(http.MethodPost, s.m.HTTP.URL()+"/webhooks/stripe", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", stripetest.Signature(payload, testWebhookSecret))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}
