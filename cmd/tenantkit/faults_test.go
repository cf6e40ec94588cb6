package main

// Faults: the real service against a real PostgreSQL, SMTP peer and stripe-mock, each of which goes
// away under load and comes back. Every test states what the service guarantees under that fault
// and logs its figures (calls in flight, succeeded, failed, lost, duplicated; recovery and exit
// times) for the README section "What is guaranteed under each fault".
//
// No sleep stands in for synchronisation: each wait polls a condition with a bound and says what
// it waited for when the bound is hit. The sleeps that remain pace the load or hold an outage open.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/pglocal"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
	"github.com/tenantkit/tenantkit/internal/stripetest"
	"github.com/tenantkit/tenantkit/internal/team"
)

const (
	// faultCallBound is the longest any call may take, fault or not: a call that takes longer
	// counts as a hang.
	faultCallBound = 10 * time.Second
	// faultRecoveryBound is how soon after a dependency is back the service must serve again.
	faultRecoveryBound = 5 * time.Second
	// faultRequireEnv, when set, turns the skip for missing PostgreSQL server binaries into a failure.
	faultRequireEnv = "TENANTKIT_REQUIRE_FAULTS"
)

// faultCall is one call made under a fault, as its caller saw it.
type faultCall struct {
	kind       string         // action or trigger name, "stripe" or "readyz"
	key        string         // what the call is about: slug, email, event id
	tenant     string         // the action's tenantId input, for the api_calls meter
	status     int            // 0 when no HTTP answer came
	code       string         // extensions.code of an action error
	out        map[string]any // an action's output
	err        error          // no answer, or one Hasura would reject
	start, end time.Time
}

func (c faultCall) ok() bool { return c.err == nil && c.status == http.StatusOK }

func (c faultCall) String() string {
	s := fmt.Sprintf("%s %s: %d %s after %s", c.kind, c.key, c.status, c.code, c.end.Sub(c.start).Round(time.Millisecond))
	if c.err != nil {
		s += ": " + c.err.Error()
	}
	return s
}

// faultLog collects calls from many goroutines.
type faultLog struct {
	mu    sync.Mutex
	calls []faultCall
}

func (l *faultLog) add(c faultCall) faultCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
	return c
}

// where returns the calls for which keep is true, in the order they ended.
func (l *faultLog) where(keep func(faultCall) bool) []faultCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []faultCall
	for _, c := range l.calls {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

func (l *faultLog) count(keep func(faultCall) bool) int { return len(l.where(keep)) }

// tryAction calls an action as Hasura would, within faultCallBound. Unlike stack.action it never
// fails the test, so that load goroutines can use it.
func (s *stack) tryAction(name string, input map[string]any, userID string) faultCall {
	return tryAction(s.hasura, name, input, userID)
}

func tryAction(hasura *hasuratest.Client, name string, input map[string]any, userID string) faultCall {
	ctx, cancel := context.WithTimeout(context.Background(), faultCallBound)
	defer cancel()
	c := faultCall{kind: name, start: time.Now()}
	c.tenant, _ = input["tenantId"].(string)
	res, err := hasura.Action(ctx, name, input, session(userID))
	c.end = time.Now()
	if err != nil {
		c.err = err
		return c
	}
	c.status = res.Status
	if res.HasuraError != nil {
		c.err = fmt.Errorf("Hasura would reject the answer: %w", res.HasuraError)
	}
	if res.Status >= 400 {
		if ae, err := res.ActionError(); err == nil {
			c.code = ae.Code
		}
	} else if err := res.JSON(&c.out); err != nil && c.err == nil {
		c.err = err
	}
	return c
}

// tryEvent delivers an event as Hasura would (retry is delivery_info.current_retry), within
// faultCallBound.
func (s *stack) tryEvent(trigger, op string, old, new map[string]any, id string, retry int) faultCall {
	ctx, cancel := context.WithTimeout(context.Background(), faultCallBound)
	defer cancel()
	c := faultCall{kind: trigger, key: id, start: time.Now()}
	res, err := s.hasura.Event(ctx, trigger, op, old, new, hasuratest.EventOptions{ID: id, CurrentRetry: retry})
	c.end = time.Now()
	if err != nil {
		c.err = err
		return c
	}
	c.status = res.Status
	return c
}

// tryStripeEvent posts a Stripe event signed with testWebhookSecret, within faultCallBound.
func (s *stack) tryStripeEvent(id, typ string, created int64, object map[string]any) faultCall {
	payload := stripetest.Event(stripetest.APIVersion, id, typ, created, object)
	req, _ := http.NewRequest(http.MethodPost, s.m.HTTP.URL()+"/webhooks/stripe", bytes.NewReader(payload))
	req.Header.Set("Stripe-Signature", stripetest.Signature(payload, testWebhookSecret))
	return timedCall("stripe", id, req)
}

// tryReady asks /readyz.
func (s *stack) tryReady() faultCall {
	req, _ := http.NewRequest(http.MethodGet, s.m.HTTP.URL()+"/readyz", nil)
	return timedCall("readyz", "", req)
}

// timedCall sends req within faultCallBound and records its answer and timing.
func timedCall(kind, key string, req *http.Request) faultCall {
	ctx, cancel := context.WithTimeout(context.Background(), faultCallBound)
	defer cancel()
	c := faultCall{kind: kind, key: key, start: time.Now()}
	res, err := http.DefaultClient.Do(req.WithContext(ctx))
	c.end = time.Now()
	if err != nil {
		c.err = err
		return c
	}
	res.Body.Close()
	c.status = res.StatusCode
	return c
}

// waitUntil polls cond every 10 ms until it holds and returns how long that took; past limit it
// fails the test naming what it waited for.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("waited %s for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// pollUntil polls cond every 10 ms until it holds or limit passes, and reports whether it held.
func pollUntil(limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// faultLoad runs load goroutines until stopped; stopping is idempotent and waits for them.
type faultLoad struct {
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newFaultLoad(t *testing.T) *faultLoad {
	l := &faultLoad{stop: make(chan struct{})}
	t.Cleanup(l.halt) // before the service and its database go, even when the test fails early
	return l
}

// run calls fn(0), fn(1), … on a goroutine of its own until halt, pausing between calls.
func (l *faultLoad) run(pause time.Duration, fn func(i int)) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			fn(i)
			if pause > 0 {
				time.Sleep(pause)
			}
		}
	}()
}

func (l *faultLoad) halt() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// faultItem is one event a sender (Hasura, Stripe) must get acknowledged: it delivers it again
// until it is answered 200.
type faultItem struct {
	key     string
	group   int // the phase of the fault in which it is first sent
	deliver func(retry int) faultCall
	tries   int
	done    bool
	next    time.Time // no retry before
}

// faultQueue is a sender's queue, used by one goroutine at a time.
type faultQueue struct {
	items []*faultItem
	rng   *rand.Rand
	acked atomic.Int32 // items acknowledged; read by other goroutines
}

// step delivers one item as a retrying sender does: a due retry or the next new item of a phase
// already reached, else (to keep load on) a duplicate delivery of an acknowledged one.
func (q *faultQueue) step(phase int, log *faultLog) {
	var it *faultItem
	now := time.Now()
	for _, c := range q.items {
		if !c.done && c.group <= phase && !c.next.After(now) {
			it = c
			break
		}
	}
	if it == nil {
		var acked []*faultItem
		for _, c := range q.items {
			if c.done {
				acked = append(acked, c)
			}
		}
		if len(acked) == 0 {
			return
		}
		it = acked[q.rng.IntN(len(acked))]
	}
	c := it.deliver(it.tries)
	c.key = it.key
	log.add(c)
	it.tries++
	if c.ok() && !it.done {
		it.done = true
		q.acked.Add(1)
	} else if !c.ok() {
		it.next = time.Now().Add(50 * time.Millisecond) // back-off
	}
}

// drain redelivers every unacknowledged item until all are acknowledged or limit passes; it
// returns the keys still unacknowledged.
func (q *faultQueue) drain(limit time.Duration, log *faultLog) []string {
	deadline := time.Now().Add(limit)
	for {
		var left []string
		for _, it := range q.items {
			if !it.done {
				c := it.deliver(it.tries)
				c.key = it.key
				if log.add(c).ok() {
					it.done = true
					q.acked.Add(1)
				} else {
					it.tries++
					left = append(left, it.key)
				}
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// faultWindow is when a dependency was away: from the moment it was told to stop until the
// moment it accepted work again.
type faultWindow struct {
	downStart, downDone, upStart, upDone time.Time
}

// overlaps reports whether c was in flight at some point of the outage.
func (w faultWindow) overlaps(c faultCall) bool {
	return c.start.Before(w.upDone) && c.end.After(w.downStart)
}

// inside reports whether c ran entirely while the dependency was certainly down.
func (w faultWindow) inside(c faultCall) bool {
	return c.start.After(w.downDone) && (w.upStart.IsZero() || c.end.Before(w.upStart))
}

// emailsTo counts the messages the SMTP peer accepted per recipient.
func emailsTo(s *stack) map[string]int {
	n := map[string]int{}
	for _, m := range s.smtp.Messages() {
		for _, to := range m.To {
			n[to]++
		}
	}
	return n
}

// checkInvitationEmails checks that every invitation of tenant got exactly one email, carrying the
// link of its current token, and that no sealed token is left in the outbox. It returns the number
// of invitations, of missing emails and of surplus ones.
func checkInvitationEmails(t *testing.T, s *stack, tenant string) (invitations, lost, duplicated int) {
	t.Helper()
	ctx := context.Background()
	rows, err := s.admin.Query(ctx, `SELECT email, token_hash FROM tenant_invitations WHERE tenant_id = $1`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	hashes := map[string][]byte{}
	for rows.Next() {
		var email string
		var hash []byte
		if err := rows.Scan(&email, &hash); err != nil {
			t.Fatal(err)
		}
		hashes[email] = hash
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sent := emailsTo(s)
	for email, hash := range hashes {
		links := s.links(t, email)
		switch {
		case len(links) == 0:
			lost++
			t.Errorf("invitation for %s: no email", email)
			continue
		case len(links) > 1:
			duplicated += len(links) - 1
			t.Errorf("invitation for %s: %d emails, want 1", email, len(links))
		}
		if sent[email] != len(links) {
			t.Errorf("invitation for %s: %d messages, %d with a link", email, sent[email], len(links))
		}
		for _, link := range links {
			if h, ok := team.HashToken(link); !ok || !bytes.Equal(h, hash) {
				t.Errorf("invitation for %s: the emailed link is not the invitation's token", email)
			}
		}
	}
	if n := s.count(t, `SELECT count(*) FROM tenantkit.invitation_outbox WHERE tenant_id = $1`, tenant); n != 0 {
		t.Errorf("%d sealed tokens left in the outbox after every email was acknowledged", n)
	}
	return len(hashes), lost, duplicated
}

// TestFaultDatabaseOutage crashes PostgreSQL (pg_ctl stop -m immediate) under load from actions,
// event deliveries and Stripe webhooks, keeps it down for about two seconds and starts it again;
// the service runs on throughout.
//
// Guaranteed: while the database is away /readyz answers 503, actions answer 424 `unavailable`
// (never a 5xx, never later than faultCallBound), events and webhooks answer 5xx so that they are
// retried; the service serves again within faultRecoveryBound of the database, without a
// restart; and every operation happened exactly once or not at all: no acknowledged write is
// lost, an unacknowledged one is absent or whole (and a client's retry of it is refused as a
// conflict), each retried event has its effect once (one email per invitation, with its link; the
// webhook state of a clean delivery), and every acknowledged action is metered once.
func TestFaultDatabaseOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster, err := pglocal.StartCluster(ctx, pglocal.Options{})
	if errors.Is(err, pglocal.ErrNoBinaries) && os.Getenv(faultRequireEnv) == "" {
		t.Skipf("%v; set %s=1 to make this a failure", err, faultRequireEnv)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Stop(); err != nil {
			t.Error(err)
		}
	})
	dbURL, err := ensureDatabase(ctx, cluster.URL, "tenantkit")
	if err != nil {
		t.Fatal(err)
	}
	if err := postgres.MigrateUp(ctx, dbURL); err != nil {
		t.Fatalf("migrate the dedicated cluster: %v", err)
	}
	// The throwaway cluster trades durability for speed (synchronous_commit=off), so a crash
	// could lose commits already acknowledged; a production server does not, and neither does
	// this database.
	if err := pgExec(ctx, cluster.URL, `ALTER DATABASE tenantkit SET synchronous_commit = on`); err != nil {
		t.Fatal(err)
	}
	// One tenant sends hundreds of invitations in the run: lift the per-hour send limit.
	s := newStack(t, append([]string{"DATABASE_URL", dbURL, "INVITATION_SENDS_PER_HOUR", "100000"}, withStripe(t)...)...)
	log := &faultLog{}

	// The world: tenants whose owners check permissions; one on Enterprise (no member limit)
	// whose owner invites; tenants that receive Stripe events, and a control tenant whose clean
	// delivery of those events gives the state each of them must end in.
	plan := func(key string) string { return s.row(t, "subscription_plans", "key = $1", key)["id"].(string) }
	pro, enterprise := plan("professional"), plan("enterprise")
	type member struct{ tenant, owner string }
	var checkers []member
	for range 3 {
		tenant, owner := s.tenant(t)
		checkers = append(checkers, member{tenant, owner})
	}
	inviteTenant, inviter := s.tenant(t)
	exec(t, s, `UPDATE tenant_subscriptions SET plan_id = $2 WHERE tenant_id = $1`, inviteTenant, enterprise)
	creators := []string{s.user(t, ""), s.user(t, "")}
	invite := func(email string) faultCall {
		c := s.tryAction("inviteMember", map[string]any{"tenantId": inviteTenant, "email": email, "role": "member"}, inviter)
		c.key = email
		return log.add(c)
	}
	invitationEvent := func(email, id string) func(int) faultCall {
		c := invite(email)
		if !c.ok() {
			t.Fatalf("setup: %s", c)
		}
		row := s.row(t, "tenant_invitations", "id = $1", c.out["invitationId"])
		return func(retry int) faultCall { return s.tryEvent("invitation_email", "INSERT", nil, row, id, retry) }
	}
	// Events and webhooks come in three groups: first sent before, during and after the outage.
	events := &faultQueue{rng: rand.New(rand.NewPCG(1, 2))}
	for i := range 30 {
		email := fmt.Sprintf("fault.db.early%d@example.com", i)
		events.items = append(events.items, &faultItem{key: email, group: i / 10,
			deliver: invitationEvent(email, fmt.Sprintf("00000000-0000-4000-8000-%012d", i))})
	}
	// Two deliveries meet the outage at the worst moment, deterministically: the SMTP peer holds
	// their message until PostgreSQL is down, then accepts one (the service must record that
	// email once the database is back, not send it again) and refuses the other (the service must
	// release its claim on the event once the database is back, not keep it for the whole lease).
	held := &faultQueue{}
	var arrivals []<-chan struct{}
	var releases []func(bool)
	for i, email := range []string{"fault.db.held-accept@example.com", "fault.db.held-refuse@example.com"} {
		held.items = append(held.items, &faultItem{key: email, deliver: invitationEvent(email, fmt.Sprintf("00000000-0000-4000-9000-%012d", i))})
		arrived, release := s.smtp.HoldRecipient(email)
		t.Cleanup(func() { release(false) }) // lets the peer's session end if the test stops early
		arrivals, releases = append(arrivals, arrived), append(releases, release)
	}

	// The invitation senders above deliver one event at a time, and a delivery whose email the
	// SMTP peer accepted just before the crash waits for the database to record it (team's
	// clearPatience): the outage must not wait for them to meet it. This sender delivers, only
	// while PostgreSQL is down, the event of an invitation not yet emailed, which answers 5xx at
	// once.
	probe := &faultQueue{rng: rand.New(rand.NewPCG(7, 8)), items: []*faultItem{{key: "fault.db.probe@example.com",
		deliver: invitationEvent("fault.db.probe@example.com", "00000000-0000-4000-a000-000000000000")}}}

	base := time.Now().Add(-time.Hour).Unix()
	seq := []struct {
		id, typ, status, plan string
		at                    int64
	}{
		{"created", "customer.subscription.created", "incomplete", pro, 0},
		{"active", "customer.subscription.updated", "active", pro, 10},
		{"upgrade", "customer.subscription.updated", "active", enterprise, 20},
		{"pastdue", "customer.subscription.updated", "past_due", enterprise, 30},
	}
	stripeEvent := func(tenant string, i int) func(int) faultCall {
		e := seq[i]
		return func(int) faultCall {
			return s.tryStripeEvent(fmt.Sprintf("evt_%s_%s", e.id, tenant[:8]), e.typ, base+e.at, stripetest.SubscriptionObject(tenant, e.plan, e.status, base))
		}
	}
	clean, _ := s.tenant(t)
	for i := range seq {
		if c := stripeEvent(clean, i)(0); !c.ok() {
			t.Fatalf("clean delivery: %s", c)
		}
	}
	want := s.subState(t, clean)
	webhooks := &faultQueue{rng: rand.New(rand.NewPCG(3, 4))}
	var hooked []string
	for i := range 9 {
		tenant, _ := s.tenant(t)
		hooked = append(hooked, tenant)
		for j := range seq {
			webhooks.items = append(webhooks.items, &faultItem{key: fmt.Sprintf("%s#%d", tenant[:8], j), group: i / 3, deliver: stripeEvent(tenant, j)})
		}
	}

	// The load: clients calling actions, Hasura delivering events, Stripe sending webhooks, an
	// operator polling /readyz.
	var phase atomic.Int32 // 0 before the outage, 1 during, 2 after
	var down atomic.Bool   // PostgreSQL is down: from its stop's return to its restart
	load := newFaultLoad(t)
	for w, owner := range creators {
		load.run(10*time.Millisecond, func(i int) {
			slug := fmt.Sprintf("fault-%d-%d", w, i)
			c := s.tryAction("createTenant", map[string]any{"name": "Fault", "slug": slug}, owner)
			c.key = slug
			log.add(c)
		})
	}
	load.run(10*time.Millisecond, func(i int) {
		m := checkers[i%len(checkers)]
		c := s.tryAction("checkPermission", map[string]any{"tenantId": m.tenant, "permission": "projects:read"}, m.owner)
		c.key = m.owner
		if c.ok() && (c.out["allowed"] != true || c.out["role"] != "owner") {
			c.err = fmt.Errorf("answer %v, want allowed as owner", c.out)
		}
		log.add(c)
	})
	load.run(10*time.Millisecond, func(i int) { invite(fmt.Sprintf("fault.db.load%d@example.com", i)) })
	load.run(10*time.Millisecond, func(int) { events.step(int(phase.Load()), log) })
	// Hasura delivers at least once: duplicates of the first group's events, from a sender of
	// their own (the one above may be waiting on a delivery that waits for the database).
	dupRand := rand.New(rand.NewPCG(5, 6))
	load.run(10*time.Millisecond, func(int) {
		it := events.items[dupRand.IntN(10)] // group 0; only deliver is used, which is safe to share
		c := it.deliver(0)
		c.key = it.key
		log.add(c)
	})
	load.run(10*time.Millisecond, func(int) {
		// Not from phase 1: PostgreSQL takes a moment to stop (hundreds of ms on a loaded
		// machine), and a delivery that claimed its event and had its email accepted before then
		// waits for the database to record the email, as the senders above may.
		if down.Load() {
			probe.step(0, log)
		}
	})
	load.run(10*time.Millisecond, func(int) { webhooks.step(int(phase.Load()), log) })
	load.run(20*time.Millisecond, func(int) { log.add(s.tryReady()) })

	kinds := []string{"createTenant", "checkPermission", "inviteMember", "invitation_email", "stripe"}
	succeeded := func(kind string, after time.Time) func() bool {
		return func() bool {
			return log.count(func(c faultCall) bool { return c.kind == kind && c.ok() && c.start.After(after) }) >= 3
		}
	}
	for _, k := range kinds {
		waitUntil(t, 10*time.Second, k+" to succeed three times before the outage", succeeded(k, time.Time{}))
	}
	var heldDone sync.WaitGroup
	for _, it := range held.items {
		heldDone.Go(func() {
			c := it.deliver(0)
			c.key = it.key
			it.tries, it.done = 1, log.add(c).ok()
		})
	}
	for i, arrived := range arrivals {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("the email to %s did not reach the SMTP peer within 10 s", held.items[i].key)
		}
	}

	// The outage: at least two seconds, and until every kind of call has met it.
	var w faultWindow
	phase.Store(1)
	w.downStart = time.Now()
	if err := cluster.StopServer(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	w.downDone = time.Now()
	down.Store(true)
	releases[0](true)
	releases[1](false)
	for _, k := range append(kinds, "readyz") {
		waitUntil(t, 10*time.Second, k+" to fail during the outage", func() bool {
			return log.count(func(c faultCall) bool { return c.kind == k && w.inside(c) }) > 0
		})
	}
	if d := 2*time.Second - time.Since(w.downDone); d > 0 {
		time.Sleep(d) // holds the outage open: its length is the fault, not a synchronisation
	}
	down.Store(false)
	w.upStart = time.Now()
	if err := cluster.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	w.upDone = time.Now()
	phase.Store(2)

	// Recovery, without restarting the service.
	firstOK := func(kind string) time.Duration { // how long after PostgreSQL was back
		for _, c := range log.where(func(c faultCall) bool { return c.kind == kind && c.ok() && c.start.After(w.upDone) }) {
			return c.end.Sub(w.upDone)
		}
		return -1
	}
	waitUntil(t, faultRecoveryBound, "/readyz to answer 200 after PostgreSQL was back", func() bool { return firstOK("readyz") >= 0 })
	waitUntil(t, faultRecoveryBound, "every kind of call to succeed three times after PostgreSQL was back", func() bool {
		for _, k := range kinds {
			if !succeeded(k, w.upDone)() {
				return false
			}
		}
		return true
	})
	ready, recovered := firstOK("readyz"), time.Duration(0)
	for _, k := range kinds {
		recovered = max(recovered, firstOK(k))
	}
	// Let the senders work through their three groups; the drains below check what is left.
	pollUntil(5*time.Second, func() bool {
		return int(events.acked.Load()) == len(events.items) && int(webhooks.acked.Load()) == len(webhooks.items)
	})
	load.halt()
	heldDone.Wait() // each within faultCallBound
	// What Hasura and Stripe do next: deliver again whatever was not acknowledged.
	for name, q := range map[string]*faultQueue{"invitation events": events, "invitation events held at the SMTP peer": held,
		"the invitation event delivered during the outage": probe, "Stripe events": webhooks} {
		if left := q.drain(10*time.Second, log); len(left) > 0 {
			t.Errorf("%s never acknowledged: %v", name, left)
		}
	}

	// Every answer was one the contract allows, in time.
	var bad []string
	for _, c := range log.where(func(faultCall) bool { return true }) {
		var problem string
		switch {
		case c.err != nil:
			problem = "no proper answer"
		case c.end.Sub(c.start) > faultCallBound:
			problem = "too slow"
		case c.kind == "readyz":
			if w.inside(c) && c.status != http.StatusServiceUnavailable {
				problem = "ready while the database was down"
			}
		case c.kind == "invitation_email" || c.kind == "stripe":
			if c.status != http.StatusOK && c.status < 500 && c.status != http.StatusConflict || w.inside(c) && c.status < 500 {
				problem = "not 200 or a retryable failure"
			}
		default: // actions
			if !c.ok() && (c.status != http.StatusFailedDependency || c.code != "unavailable") || w.inside(c) && c.ok() {
				problem = "not 200 or 424 unavailable"
			}
		}
		if problem != "" {
			bad = append(bad, problem+": "+c.String())
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d answers break the contract, e.g.:\n%s", len(bad), strings.Join(bad[:min(len(bad), 10)], "\n"))
	}

	// Nothing lost, nothing doubled. A call answered 424 is retried as its client would: it must
	// succeed if nothing was written, and be refused as a conflict if the write had committed.
	var lost, duplicated int
	var lostAnswers, badRetries atomic.Int32
	tenants := idsBy(t, s, `SELECT slug, id::text FROM tenants WHERE slug LIKE 'fault-%'`)
	asked := map[string]bool{}
	var retry []faultCall
	for _, c := range log.where(func(c faultCall) bool { return c.kind == "createTenant" && c.key != "" }) {
		asked[c.key] = true
		id, exists := tenants[c.key]
		switch {
		case c.ok() && !exists:
			lost++
			t.Errorf("createTenant %s answered 200, but there is no such tenant", c.key)
		case c.ok() && id != c.out["tenantId"]:
			t.Errorf("createTenant %s answered tenant %v, the database holds %s", c.key, c.out["tenantId"], id)
		case !c.ok():
			retry = append(retry, c)
		}
	}
	inParallel(retry, func(c faultCall) {
		owner := creators[0]
		if strings.HasPrefix(c.key, "fault-1-") {
			owner = creators[1]
		}
		r := log.add(s.tryAction("createTenant", map[string]any{"name": "Fault", "slug": c.key}, owner))
		if _, exists := tenants[c.key]; exists {
			lostAnswers.Add(1)
			if r.status != http.StatusConflict || r.code != team.SlugTaken {
				badRetries.Add(1)
				t.Errorf("retrying createTenant %s, which had committed: %s, want 409 %s", c.key, r, team.SlugTaken)
			}
		} else if !r.ok() {
			t.Errorf("retrying createTenant %s after the outage: %s", c.key, r)
		}
	})
	for slug := range tenants {
		if !asked[slug] {
			t.Errorf("tenant %s exists, but nobody asked for it", slug)
		}
	}
	if half := wholeTenants(t, s.admin); len(half) > 0 {
		t.Errorf("tenants without exactly one owner, subscription and audit entries: %v", half)
	}

	invited := idsBy(t, s, `SELECT email, count(*)::text FROM tenant_invitations WHERE tenant_id = $1 GROUP BY email`, inviteTenant)
	retry = nil
	for _, c := range log.where(func(c faultCall) bool { return c.kind == "inviteMember" && c.key != "" }) {
		n := invited[c.key]
		switch {
		case n != "" && n != "1":
			duplicated++
			t.Errorf("inviteMember %s: %s invitations", c.key, n)
		case c.ok() && n == "":
			lost++
			t.Errorf("inviteMember %s answered 200, but there is no invitation", c.key)
		case !c.ok():
			retry = append(retry, c)
		}
	}
	inParallel(retry, func(c faultCall) {
		r := s.tryAction("inviteMember", map[string]any{"tenantId": inviteTenant, "email": c.key, "role": "member"}, inviter)
		log.add(r) // metered when 200
		if invited[c.key] == "1" {
			lostAnswers.Add(1)
			if r.status != http.StatusConflict || r.code != "conflict" {
				badRetries.Add(1)
				t.Errorf("retrying inviteMember %s, which had committed: %s, want 409 conflict", c.key, r)
			}
		} else if !r.ok() {
			t.Errorf("retrying inviteMember %s after the outage: %s", c.key, r)
		}
	})
	duplicated += int(badRetries.Load())
	// Hasura's invitation_email events for the invitations made under load, then every email.
	var rows []map[string]any
	for _, id := range idsBy(t, s, `SELECT email, id::text FROM tenant_invitations WHERE tenant_id = $1 AND email LIKE 'fault.db.load%'`, inviteTenant) {
		rows = append(rows, s.row(t, "tenant_invitations", "id = $1", id))
	}
	inParallel(rows, func(row map[string]any) {
		if c := s.tryEvent("invitation_email", "INSERT", nil, row, "", 0); !c.ok() {
			t.Errorf("invitation event for %s after the outage: %s", row["email"], c)
		}
	})
	nInvitations, lostEmails, extraEmails := checkInvitationEmails(t, s, inviteTenant)
	lost += lostEmails
	duplicated += extraEmails

	for _, tenant := range hooked {
		got := s.subState(t, tenant)
		got.Item = strings.Replace(got.Item, tenant[:8], clean[:8], 1)
		if got != want {
			lost++
			t.Errorf("tenant %s ended in %+v, a clean delivery in %+v", tenant, got, want)
		}
		if n := s.count(t, `SELECT count(*) FROM tenantkit.stripe_events WHERE id LIKE '%' || $1`, tenant[:8]); n != len(seq) {
			t.Errorf("tenant %s: %d Stripe events recorded, want %d", tenant, n, len(seq))
		}
	}

	// Every acknowledged action on a tenant is metered once.
	if err := s.m.Meter.Flush(ctx); err != nil {
		t.Fatalf("meter flush after the outage: %v", err)
	}
	l, d := checkMetered(t, s.admin, log)
	lost, duplicated = lost+l, duplicated+d

	// The figures.
	inFlight := log.where(func(c faultCall) bool { return c.kind != "readyz" && w.overlaps(c) })
	var perKind []string
	for _, k := range kinds {
		calls := 0
		ok := 0
		for _, c := range inFlight {
			if c.kind == k {
				calls++
				if c.ok() {
					ok++
				}
			}
		}
		perKind = append(perKind, fmt.Sprintf("%s %d/%d", k, ok, calls))
	}
	okInFlight := len(filter(inFlight, faultCall.ok))
	all := log.where(func(c faultCall) bool { return c.kind != "readyz" })
	t.Logf("database outage: down %s (crash %s, restart %s); %d calls in flight during it: %d succeeded, %d failed (424 or 5xx), slowest %s; succeeded/in flight: %s",
		w.upDone.Sub(w.downStart).Round(time.Millisecond), w.downDone.Sub(w.downStart).Round(time.Millisecond), w.upDone.Sub(w.upStart).Round(time.Millisecond),
		len(inFlight), okInFlight, len(inFlight)-okInFlight, slowestOf(inFlight).Round(time.Millisecond), strings.Join(perKind, ", "))
	t.Logf("database outage: %d calls in all (%d succeeded); %d tenants, %d invitations, %d emails, %d webhook tenants; committed with the answer lost: %d; lost: %d; duplicated: %d",
		len(all), len(filter(all, faultCall.ok)), len(tenants), nInvitations, len(s.smtp.Messages()), len(hooked), lostAnswers.Load(), lost, duplicated)
	t.Logf("database outage: ready again %s after PostgreSQL accepted connections; every kind of call succeeding again after %s",
		ready.Round(time.Millisecond), recovered.Round(time.Millisecond))
}

// inParallel calls fn for every item from 8 goroutines and waits for them.
func inParallel[T any](items []T, fn func(T)) {
	next := make(chan T)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for it := range next {
				fn(it)
			}
		})
	}
	for _, it := range items {
		next <- it
	}
	close(next)
	wg.Wait()
}

func filter(calls []faultCall, keep func(faultCall) bool) []faultCall {
	var out []faultCall
	for _, c := range calls {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// idsBy runs a query of two text columns and returns the second by the first.
func idsBy(t *testing.T, s *stack, sql string, args ...any) map[string]string {
	t.Helper()
	rows, err := s.admin.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wholeTenants returns the slugs of tenants that lack any part createTenant writes in its one
// transaction: exactly one owner, one subscription, the audit entries of creation and of the
// owner joining.
func wholeTenants(t *testing.T, db *pgxpool.Pool) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), `
		SELECT t.slug FROM tenants t
		WHERE (SELECT count(*) FROM tenant_users u WHERE u.tenant_id = t.id AND u.role = 'owner') <> 1
		   OR (SELECT count(*) FROM tenant_subscriptions s WHERE s.tenant_id = t.id) <> 1
		   OR (SELECT count(*) FROM audit_log a WHERE a.tenant_id = t.id AND a.action = 'tenant.created') <> 1
		   OR (SELECT count(*) FROM audit_log a WHERE a.tenant_id = t.id AND a.action = 'member.joined') <> 1`)
	if err != nil {
		t.Fatal(err)
	}
	var half []string
	for rows.Next() {
		var slug string
		if err := rows.Scan(&slug); err != nil {
			t.Fatal(err)
		}
		half = append(half, slug)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return half
}

// checkMetered checks that each tenant's api_calls equal its actions answered 200 in log, and
// returns how many counts are missing and how many are extra.
func checkMetered(t *testing.T, db *pgxpool.Pool, log *faultLog) (lost, duplicated int) {
	t.Helper()
	want := map[string]int{}
	for _, c := range log.where(func(c faultCall) bool { return c.tenant != "" && c.ok() }) {
		want[c.tenant]++
	}
	for tenant, n := range want {
		var got int
		if err := db.QueryRow(context.Background(), `SELECT coalesce(sum(quantity), 0)::int FROM tenantkit.usage_hours($1) WHERE metric = 'api_calls'`, tenant).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != n {
			t.Errorf("tenant %s: api_calls = %d, want %d (its actions answered 200)", tenant, got, n)
			lost, duplicated = lost+max(n-got, 0), duplicated+max(got-n, 0)
		}
	}
	return lost, duplicated
}

func pgExec(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// TestFaultSMTPOutage takes the SMTP peer away while invitation emails are being delivered (one
// of them mid-transaction), then makes it answer 451 (try again later) to some messages, then
// lets it accept.
//
// Guaranteed: a delivery that cannot hand its email to the mail server answers 5xx (Hasura
// retries) within faultCallBound and keeps the invitation's link; once the server accepts again,
// redeliveries send each invitation exactly one email, with the link of the token the invitation
// had all along; nothing is lost and the outbox is empty.
func TestFaultSMTPOutage(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	log := &faultLog{}
	tenant, owner := s.tenant(t)
	exec(t, s, `UPDATE tenant_subscriptions SET plan_id = (SELECT id FROM subscription_plans WHERE key = 'enterprise') WHERE tenant_id = $1`, tenant)
	q := &faultQueue{}
	hashes := map[string]string{} // email → token_hash before the outage
	for i := range 8 {
		email := fmt.Sprintf("fault.smtp%d@example.com", i)
		c := s.tryAction("inviteMember", map[string]any{"tenantId": tenant, "email": email, "role": "member"}, owner)
		if !c.ok() {
			t.Fatalf("setup: %s", c)
		}
		row := s.row(t, "tenant_invitations", "id = $1", c.out["invitationId"])
		hashes[email] = row["token_hash"].(string)
		id := fmt.Sprintf("00000000-0000-4000-a000-%012d", i)
		q.items = append(q.items, &faultItem{key: email, deliver: func(retry int) faultCall {
			return s.tryEvent("invitation_email", "INSERT", nil, row, id, retry)
		}})
	}

	// One delivery is mid-transaction (its data sent, no answer yet) when the peer goes away.
	arrived, release := s.smtp.HoldRecipient(q.items[0].key)
	first := make(chan faultCall, 1)
	go func() { first <- q.items[0].deliver(0) }()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the first email did not reach the SMTP peer within 10 s")
	}
	downStart := time.Now()
	s.smtp.Stop()
	release(false) // the connection is gone; let the peer's session end
	// Every invitation delivered while the peer is down, two deliveries at once for each (Hasura
	// may overlap a retry with a slow delivery).
	var wg sync.WaitGroup
	for _, it := range q.items {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := it.deliver(1)
				c.key = it.key
				log.add(c)
			}()
		}
	}
	wg.Wait()
	downCalls := log.where(func(faultCall) bool { return true })
	if c := <-first; c.status < 500 {
		t.Errorf("the delivery cut mid-transaction: %s, want 5xx", c)
	}
	for _, c := range downCalls {
		if c.err != nil || c.status < 500 && c.status != http.StatusConflict {
			t.Errorf("delivery while the SMTP peer is down: %s, want 5xx (or 409 for the overlapping one)", c)
		}
	}
	if n := len(s.smtp.Messages()); n != 0 {
		t.Fatalf("%d emails accepted while the peer was down", n)
	}
	if n := s.count(t, `SELECT count(*) FROM tenantkit.invitation_outbox WHERE tenant_id = $1`, tenant); n != len(q.items) {
		t.Errorf("outbox holds %d entries during the outage, want %d (every link kept for the retry)", n, len(q.items))
	}

	// Back, but refusing the next three messages for now (451), as a busy server does.
	if err := s.smtp.Restart(); err != nil {
		t.Fatal(err)
	}
	upDone := time.Now()
	s.smtp.FailData(3)
	if left := q.drain(10*time.Second, log); len(left) > 0 {
		t.Errorf("deliveries never acknowledged after the SMTP peer returned: %v", left)
	}
	refused := log.count(func(c faultCall) bool { return c.start.After(upDone) && c.status >= 500 })
	if refused != 3 {
		t.Errorf("%d deliveries answered 5xx while the peer refused 3 messages for now", refused)
	}
	for _, it := range q.items { // a late duplicate delivery sends nothing
		if c := log.add(it.deliver(it.tries)); !c.ok() {
			t.Errorf("duplicate delivery: %s", c)
		}
	}
	n, lost, duplicated := checkInvitationEmails(t, s, tenant)
	for email, hash := range hashes {
		if now := s.row(t, "tenant_invitations", "email = $1", email)["token_hash"]; now != hash {
			t.Errorf("invitation for %s: its token changed during the outage", email)
		}
	}
	var recovery time.Duration
	for _, c := range log.where(func(c faultCall) bool { return c.ok() && c.start.After(upDone) }) {
		recovery = c.end.Sub(upDone)
		break
	}
	t.Logf("SMTP outage: %d deliveries while the peer was down (1 cut mid-transaction), all 5xx or 409; %d refused with 451 after it returned; %d invitations, %d emails: lost %d, duplicated %d; first email accepted %s after the peer returned; down for %s",
		len(downCalls)+1, refused, n, len(s.smtp.Messages()), lost, duplicated, recovery.Round(time.Millisecond), upDone.Sub(downStart).Round(time.Millisecond))
}

// faultProxy forwards TCP connections to an upstream that can change or go away, so that a
// client configured once (the service's STRIPE_API_URL) meets whichever server is behind it, or
// none: with no upstream, or an upstream that refuses, each connection is closed at once.
type faultProxy struct {
	ln       net.Listener
	mu       sync.Mutex
	upstream string // host:port; "" while down
}

func newFaultProxy(t *testing.T, upstream string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, upstream: upstream}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			up := p.upstream
			p.mu.Unlock()
			go func() {
				defer c.Close()
				if up == "" {
					return
				}
				u, err := net.DialTimeout("tcp", up, 2*time.Second)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(u, c); done <- struct{}{} }()
				go func() { io.Copy(c, u); done <- struct{}{} }()
				<-done // either side closing ends the connection
			}()
		}
	})
	return p
}

func (p *faultProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *faultProxy) point(upstream string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.upstream = upstream
}

// TestFaultStripeOutage stops stripe-mock (an instance of this test's own, behind a proxy whose
// address the service keeps) while checkouts, plan changes and tenant_created events run, then
// starts a new stripe-mock behind the same address.
//
// Guaranteed: while Stripe is unreachable the billing actions answer 424 `billing_unavailable`
// and tenant_created events 503, within faultCallBound, and nothing of the tenants' billing state
// changes (no half-written customer, plan or subscription); once Stripe is back, the first retry
// of each succeeds, and a repeated event changes nothing.
func TestFaultStripeOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sm, err := stripetest.Start(ctx)
	if err != nil {
		t.Fatalf("stripe-mock: %v", err)
	}
	t.Cleanup(func() { sm.Stop() })
	proxy := newFaultProxy(t, strings.TrimPrefix(sm.URL, "http://"))
	s := newStack(t, "STRIPE_SECRET_KEY", stripetest.TestKey, "STRIPE_API_URL", proxy.URL(), "STRIPE_WEBHOOK_SECRET", testWebhookSecret)
	env := commandEnv(s.m, "STRIPE_SECRET_KEY", stripetest.TestKey, "STRIPE_API_URL", proxy.URL())
	if err := plansSync(ctx, func(k string) string { return env[k] }, io.Discard); err != nil {
		t.Fatalf("plans sync: %v", err)
	}
	enterprise := s.row(t, "subscription_plans", "key = 'enterprise'")["id"].(string)
	pro := s.row(t, "subscription_plans", "key = 'professional'")["id"].(string)
	log := &faultLog{}

	// Three kinds of billing work, three tenants each: a checkout (which first makes the tenant's
	// Stripe customer), a plan change of a paid subscription, and the tenant_created event.
	type job struct {
		tenant string
		call   func(retry int) faultCall
	}
	var jobs []job
	for i := range 9 {
		tenant, owner := s.tenant(t)
		var call func(int) faultCall
		switch i % 3 {
		case 0:
			call = func(int) faultCall {
				return s.tryAction("createCheckoutSession", map[string]any{"tenantId": tenant, "planId": pro}, owner)
			}
		case 1:
			exec(t, s, `UPDATE tenant_subscriptions SET stripe_customer_id = $2, stripe_subscription_id = $3, status = 'active' WHERE tenant_id = $1`,
				tenant, "cus_fault"+tenant[:8], "sub_fault"+tenant[:8])
			call = func(int) faultCall {
				return s.tryAction("changePlan", map[string]any{"tenantId": tenant, "planId": enterprise}, owner)
			}
		case 2:
			row := s.row(t, "tenants", "id = $1", tenant)
			id := fmt.Sprintf("00000000-0000-4000-b000-%012d", i)
			call = func(retry int) faultCall {
				c := s.tryEvent("tenant_created", "INSERT", nil, row, id, retry)
				c.tenant = tenant
				return c
			}
		}
		jobs = append(jobs, job{tenant, call})
	}
	billingState := func() string {
		var state string
		if err := s.admin.QueryRow(ctx, `SELECT coalesce(json_agg(s ORDER BY tenant_id)::text, '') FROM tenant_subscriptions s`).Scan(&state); err != nil {
			t.Fatal(err)
		}
		return state
	}
	before := billingState()

	downStart := time.Now()
	proxy.point("")
	if err := sm.Stop(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		for range 2 { // a client double-click, Hasura overlapping a retry
			wg.Go(func() {
				c := j.call(0)
				c.key = j.tenant
				log.add(c)
			})
		}
	}
	wg.Wait()
	down := log.where(func(faultCall) bool { return true })
	for _, c := range down {
		switch {
		case c.err != nil:
			t.Errorf("with Stripe down: %s", c)
		case c.kind == "tenant_created" && c.status != http.StatusServiceUnavailable && c.status != http.StatusConflict:
			t.Errorf("with Stripe down: %s, want 503 (or 409 for the overlapping delivery)", c)
		case c.kind != "tenant_created" && (c.status != http.StatusFailedDependency || c.code != "billing_unavailable"):
			t.Errorf("with Stripe down: %s, want 424 billing_unavailable", c)
		}
	}
	if after := billingState(); after != before {
		t.Errorf("billing state changed while Stripe was down:\nbefore %s\nafter  %s", before, after)
	}

	sm2, err := stripetest.Start(ctx)
	if err != nil {
		t.Fatalf("stripe-mock again: %v", err)
	}
	t.Cleanup(func() { sm2.Stop() })
	proxy.point(strings.TrimPrefix(sm2.URL, "http://"))
	upDone := time.Now()
	var recovery time.Duration
	for _, j := range jobs {
		c := j.call(1)
		c.key = j.tenant
		if !log.add(c).ok() {
			t.Errorf("first retry after Stripe returned: %s", c)
		}
		if recovery == 0 {
			recovery = c.end.Sub(upDone)
		}
	}
	customers := map[string]any{}
	for _, j := range jobs {
		r := s.row(t, "tenant_subscriptions", "tenant_id = $1", j.tenant)
		customers[j.tenant] = r["stripe_customer_id"]
		if c, _ := r["stripe_customer_id"].(string); !strings.HasPrefix(c, "cus_") {
			t.Errorf("tenant %s has customer %v after the retry", j.tenant, r["stripe_customer_id"])
		}
		// The plan follows Stripe's webhook of the change (stripe-mock sends none), never the answer.
		if r["plan_id"] == enterprise {
			t.Errorf("tenant %s changed plan without Stripe's webhook", j.tenant)
		}
	}
	for i, j := range jobs { // the same event again: nothing changes
		if i%3 == 2 {
			if c := log.add(j.call(2)); !c.ok() {
				t.Errorf("duplicate tenant_created: %s", c)
			}
		}
	}
	for _, j := range jobs {
		if now := s.row(t, "tenant_subscriptions", "tenant_id = $1", j.tenant)["stripe_customer_id"]; now != customers[j.tenant] {
			t.Errorf("tenant %s: customer changed from %v to %v by a duplicate", j.tenant, customers[j.tenant], now)
		}
	}
	t.Logf("Stripe outage: %d calls while Stripe was down (all 424 billing_unavailable or 503/409, billing state unchanged), slowest %s; %d first retries after it returned, %d failed; first success %s after it returned; stripe-mock restarted in %s",
		len(down), slowestOf(down).Round(time.Millisecond), len(jobs), log.count(func(c faultCall) bool { return c.start.After(upDone) && !c.ok() }),
		recovery.Round(time.Millisecond), upDone.Sub(downStart).Round(time.Millisecond))
}

func slowestOf(calls []faultCall) time.Duration {
	var d time.Duration
	for _, c := range calls {
		d = max(d, c.end.Sub(c.start))
	}
	return d
}

// TestFaultShutdownUnderLoad runs the real binary (`tenantkit serve`), loads it with createTenant
// and checkPermission calls from many clients, and sends SIGTERM in the middle.
//
// Guaranteed: the process exits 0 well within its grace period (Main.Close: 20 s for requests in
// flight, then the meter's final flush); every request either gets a proper answer (here 200:
// nothing else is expected of this load) or never reaches a handler (connection refused, or an
// idle connection closed); the database holds exactly the tenants whose createTenant was answered
// 200, each whole (owner, subscription, audit entries); and every answered call on a tenant is
// metered by the final flush.
func TestFaultShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "tenantkit")
	buildStart := time.Now()
	if out, err := osexec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	buildTime := time.Since(buildStart)
	dbURL := pgtest.NewDB(t)
	admin, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)

	cmd := osexec.Command(bin, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + dbURL, "TENANTKIT_SECRET=" + testSecret,
		"APP_URL=http://app.test", "LISTEN_ADDR=127.0.0.1:0", "LOG_LEVEL=info"}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		logMu   sync.Mutex
		logText strings.Builder
		addr    = make(chan string, 1)
		exited  = make(chan error, 1)
	)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			logText.WriteString(line + "\n")
			logMu.Unlock()
			var l struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Message == "tenantkit listening" {
				addr <- l.Addr
			}
		}
		io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill() // the process this test started, if it is still running
			<-exited
		}
	})
	var base string
	select {
	case base = <-addr:
	case err := <-exited:
		t.Fatalf("tenantkit serve exited before listening: %v\n%s", err, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("tenantkit serve did not log that it listens within 20 s")
	}

	hasura := hasuratest.NewClient(metadata(t), map[string]string{
		"TENANTKIT_URL": base, "TENANTKIT_SECRET": testSecret, "TENANTKIT_GRAPHQL_URL": base + "/graphql",
	})
	hasura.HTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	users := make([]string, 8)
	for i := range users {
		if err := admin.QueryRow(ctx, `INSERT INTO auth.users (email) VALUES ($1) RETURNING id::text`,
			fmt.Sprintf("fault.shutdown%d@example.com", i)).Scan(&users[i]); err != nil {
			t.Fatal(err)
		}
	}
	checked := make([]string, 4) // tenants whose owners check permissions
	for i := range checked {
		c := tryAction(hasura, "createTenant", map[string]any{"name": "Checked", "slug": fmt.Sprintf("checked-%d", i)}, users[4+i])
		if !c.ok() {
			t.Fatalf("setup: %s", c)
		}
		checked[i] = c.out["tenantId"].(string)
	}

	log := &faultLog{}
	load := newFaultLoad(t)
	var gone atomic.Int32 // workers that met the closed service
	for w := range 4 {
		stopped := false
		load.run(0, func(i int) {
			if stopped {
				time.Sleep(5 * time.Millisecond)
				return
			}
			slug := fmt.Sprintf("shut-%d-%d", w, i)
			c := tryAction(hasura, "createTenant", map[string]any{"name": "Load", "slug": slug}, users[w])
			c.key = slug
			if log.add(c).err != nil {
				stopped = true
				gone.Add(1)
			}
		})
		stoppedCheck := false
		load.run(0, func(int) {
			if stoppedCheck {
				time.Sleep(5 * time.Millisecond)
				return
			}
			c := tryAction(hasura, "checkPermission", map[string]any{"tenantId": checked[w], "permission": "projects:read"}, users[4+w])
			if c.ok() && c.out["allowed"] != true {
				c.err = fmt.Errorf("answer %v, want allowed", c.out)
			}
			if log.add(c).err != nil {
				stoppedCheck = true
				gone.Add(1)
			}
		})
	}
	for _, k := range []string{"createTenant", "checkPermission"} {
		waitUntil(t, 10*time.Second, k+" to succeed 40 times before SIGTERM", func() bool {
			return log.count(func(c faultCall) bool { return c.kind == k && c.ok() }) >= 40
		})
	}

	sigterm := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	select {
	case exitErr = <-exited:
	case <-time.After(25 * time.Second):
		t.Fatal("tenantkit serve still running 25 s after SIGTERM (grace period 20 s)")
	}
	exitTime := time.Since(sigterm)
	waitUntil(t, 10*time.Second, "every load worker to meet the closed service", func() bool { return gone.Load() == 8 })
	load.halt()
	if exitErr != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", exitErr, stderr.String())
	}
	logMu.Lock()
	serverLog := logText.String()
	logMu.Unlock()
	if !strings.Contains(serverLog, `"message":"shutting down"`) {
		t.Errorf("no shutdown in the log:\n%s", serverLog)
	}
	if strings.Contains(serverLog, `"level":"error"`) {
		t.Errorf("errors logged during the shutdown:\n%s", serverLog)
	}

	// Every call: a proper answer, or none at all because no handler ever saw it.
	var refused, cut, inFlight, inFlightOK int
	for _, c := range log.where(func(faultCall) bool { return true }) {
		if c.start.Before(sigterm) && c.end.After(sigterm) {
			inFlight++
			if c.ok() {
				inFlightOK++
			}
		}
		switch {
		case c.err == nil && c.status == http.StatusOK:
		case c.err != nil && c.status == 0 && errors.Is(c.err, syscall.ECONNREFUSED):
			refused++
		case c.err != nil && c.status == 0:
			cut++ // a kept-alive connection the server closed while idle
		default:
			t.Errorf("during the shutdown: %s", c)
		}
	}

	// The database holds exactly the tenants that were answered 200, each whole.
	created := map[string]bool{}
	unanswered := map[string]bool{}
	for _, c := range log.where(func(c faultCall) bool { return c.kind == "createTenant" }) {
		if c.ok() {
			created[c.key] = true
		} else {
			unanswered[c.key] = true
		}
	}
	rows, err := admin.Query(ctx, `SELECT slug FROM tenants WHERE slug LIKE 'shut-%'`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	lostAnswers := 0
	for rows.Next() {
		var slug string
		if err := rows.Scan(&slug); err != nil {
			t.Fatal(err)
		}
		stored[slug] = true
		switch {
		case unanswered[slug]:
			lostAnswers++ // committed, answer lost: allowed if whole (checked below)
		case !created[slug]:
			t.Errorf("tenant %s exists but nobody asked for it", slug)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for slug := range created {
		if !stored[slug] {
			lost++
			t.Errorf("createTenant %s answered 200 but the tenant is not in the database", slug)
		}
	}
	half := wholeTenants(t, admin)
	if len(half) > 0 {
		t.Errorf("tenants without exactly one owner, subscription and audit entries: %v", half)
	}
	// The final flush metered every answered checkPermission.
	l, d := checkMetered(t, admin, log)
	lost += l
	all := log.count(func(faultCall) bool { return true })
	t.Logf("shutdown under load: exit %s after SIGTERM (grace period 20 s); %d calls in all, %d in flight at SIGTERM (%d answered 200, %d cut before a handler saw them); after it %d refused, %d on closed kept-alive connections; %d tenants created, %d committed with the answer lost, %d half-created, %d lost, %d duplicated; binary built in %s",
		exitTime.Round(time.Millisecond), all, inFlight, inFlightOK, inFlight-inFlightOK, refused, cut, len(created), lostAnswers, len(half), lost, d, buildTime.Round(time.Millisecond))
}
