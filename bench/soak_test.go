package bench_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/mail/mailtest"
	"github.com/tenantkit/tenantkit/internal/stripetest"
)

// BenchmarkSoak is `make soak`: SOAK_DURATION (default 10m) of mixed traffic at a steady
// SOAK_RATE (default 100 operations/s) against SOAK_REPLICAS (default 2) `tenantkit serve`
// processes sharing one database, the load generator sending each operation to the next one in
// turn (round-robin, as a load balancer would), with
// stripe-mock and an SMTP peer: permission checks (60%), usage batches of 100 events (10%),
// Stripe webhooks with duplicates (15%), invitations delivered as Hasura would deliver the
// invitation_email event (5%), acceptances of the emailed links (5%) and new tenants (5%).
//
// It fails on any unexpected answer, on a wrong total afterwards (usage events, API calls metered by
// every replica, emails: one per invitation and no Message-ID twice, memberships, tenants), when a
// replica's memory or goroutines grow after the first minute (warm-up), or when the p99 latency of
// the last minute is more than 1.5× that of the first.
func BenchmarkSoak(b *testing.B) {
	duration := 10 * time.Minute
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 2*time.Minute {
			b.Fatalf("SOAK_DURATION=%q: want a duration of at least 2m", v)
		}
		duration = d
	}
	rate := 100
	if v := os.Getenv("SOAK_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 20 {
			b.Fatalf("SOAK_RATE=%q: want at least 20", v)
		}
		rate = n
	}
	replicas := 2
	if v := os.Getenv("SOAK_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 8 {
			b.Fatalf("SOAK_REPLICAS=%q: want 1 to 8", v)
		}
		replicas = n
	}
	runSoak(b, soakConfig{duration: duration, rate: rate, replicas: replicas, steady: true})
}

// soakConfig is one soak.
type soakConfig struct {
	duration time.Duration
	rate     int // operations per second
	replicas int // tenantkit serve processes on the one database (default 1)
	// env, when set, returns more environment for `tenantkit serve` given its database's URL
	// (e.g. to reach it through a pooler); fixtures and checks keep using that URL directly.
	env func(db string) []string
	// steady adds the rules that need at least two minutes: memory and goroutines flat after the
	// first minute, and the last minute's p99 at most 1.5× the first's.
	steady bool
}

// runSoak runs the mixed traffic of BenchmarkSoak for c.duration at c.rate against c.replicas
// services and fails on any unexpected answer or wrong total (and, when c.steady, on growth after
// warm-up).
func runSoak(tb testing.TB, c soakConfig) {
	duration, rate := c.duration, c.rate
	ctx := tb.Context()
	sm, err := stripetest.Start(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	smtp := mailtest.Start(tb)
	db := newDB(tb)
	ds := load(tb, db, sizes{tenants: 200, projectsPerTenant: 1, extraUsers: 400})
	env := []string{"SMTP_URL=" + smtp.URL(), "STRIPE_SECRET_KEY=" + stripetest.TestKey, "STRIPE_API_URL=" + sm.URL,
		"STRIPE_WEBHOOK_SECRET=" + benchWebhookSecret}
	if c.env != nil {
		env = append(env, c.env(db)...)
	}
	w := &soak{tb: tb, ds: ds, smtp: smtp, base: time.Now().Add(-time.Hour).Unix(), tokens: map[string]string{}}
	for range max(c.replicas, 1) {
		svc := startService(tb, db, env...)
		w.svcs, w.hcs = append(w.svcs, svc), append(w.hcs, hasura(tb, svc))
	}
	w.svc = w.svcs[0]
	tb.Logf("soak: %d replica(s) of tenantkit serve on one database, round-robin", len(w.svcs))
	w.started = time.Now()
	w.members()

	bg := w.background(ctx)
	samples := w.sample(ctx, duration)
	type op struct {
		name string
		fn   func(context.Context, int) error
	}
	var ops []op
	for range 12 {
		ops = append(ops, op{"check", w.check})
	}
	ops = append(ops, op{"usage", w.usage}, op{"usage", w.usage}, op{"webhook", w.webhook}, op{"webhook", w.webhook},
		op{"webhook", w.webhook}, op{"invite", w.invite}, op{"accept", w.accept}, op{"createTenant", w.createTenant})
	st := openLoop(ctx, rate, duration, 64, func(ctx context.Context, i int) error {
		o := ops[i%len(ops)]
		t := time.Now()
		err := o.fn(ctx, i)
		w.observe(o.name, t, time.Since(t))
		return err
	})
	tb.Logf("soak: %s", st)
	if st.failed > 0 {
		tb.Fatalf("soak: %d operations failed, first: %v", st.failed, st.firstErr)
	}
	w.flushed(ctx) // every replica's usage meter flushes (each second)
	w.verify(ctx)
	after := w.background(ctx)
	tb.Logf("soak: PostgreSQL meanwhile: %d checkpoints, %d autovacuum and %d autoanalyze runs on this database's tables",
		after[0]-bg[0], after[1]-bg[1], after[2]-bg[2])
	if !c.steady {
		tb.Logf("soak: p99 (ms) by operation: %s", w.byOp(0))
		return
	}

	// Flat after warm-up: the first sample after one minute against the rest.
	s := <-samples
	warm := slices.IndexFunc(s, func(x sampleAt) bool { return x.at >= time.Minute })
	if warm < 0 || len(s) < warm+2 {
		tb.Fatalf("too few samples (%d) for a soak of %s", len(s), duration)
	}
	maxRSS, maxG := 0.0, 0
	for _, x := range s[warm:] {
		maxRSS, maxG = max(maxRSS, x.rss), max(maxG, x.goroutines)
	}
	lastMinute := int(duration/time.Minute) - 1
	first, last := w.p99(0, ""), w.p99(lastMinute, "")
	tb.Logf("soak: p99 (ms) by operation, first minute: %s", w.byOp(0))
	tb.Logf("soak: p99 (ms) by operation, last minute: %s", w.byOp(lastMinute))
	tb.Logf("soak: RSS %.1f MiB after warm-up, at most %.1f MiB after; goroutines %d after warm-up, at most %d after; p99 %.2f ms in the first minute, %.2f ms in the last",
		s[warm].rss, maxRSS, s[warm].goroutines, maxG, first, last)
	if maxRSS > s[warm].rss*1.25+8 {
		tb.Errorf("memory grew after warm-up: %.1f MiB to %.1f MiB", s[warm].rss, maxRSS)
	}
	if maxG > s[warm].goroutines+20 {
		tb.Errorf("goroutines grew after warm-up: %d to %d", s[warm].goroutines, maxG)
	}
	if last > 1.5*first {
		tb.Errorf("p99 of the last minute %.2f ms is more than 1.5× that of the first, %.2f ms", last, first)
	}
	if b, ok := tb.(*testing.B); ok {
		report(b, map[string]float64{
			"ops": float64(st.ok), "ops/s": st.rate(), "p99-first-ms": first, "p99-last-ms": last,
			"rss-warm-MiB": s[warm].rss, "rss-max-MiB": maxRSS, "goroutines-warm": float64(s[warm].goroutines), "goroutines-max": float64(maxG),
		})
	}
}

// soak is the state of the mixed traffic.
type soak struct {
	tb      testing.TB
	svcs    []*service           // the replicas, in round-robin order
	hcs     []*hasuratest.Client // Hasura's view of each replica
	svc     *service             // the first replica: its admin pool inspects the database
	ds      *dataset
	smtp    *mailtest.Server
	base    int64
	started time.Time

	checks [][]soakCheck // per replica, fixed memberships: their answers never change

	mu        sync.Mutex
	minutes   []map[string][]time.Duration // latencies by minute since start and operation ("" for all)
	tokens    map[string]string            // invitee email → token, from the emails
	pending   []string                     // invited emails whose token arrived, not yet accepted
	seenMail  int
	recorded  atomic.Int64 // usage events acknowledged
	metered   atomic.Int64 // successful calls of actions that name a member's tenant (api_calls)
	accepted  atomic.Int64
	created   atomic.Int64
	invited   atomic.Int64
	webhookAt []atomic.Int64 // per tenant: the created second of the next subscription event
}

type soakCheck struct {
	req    *hasuratest.Request
	header map[string]string
	want   string
}

type sampleAt struct {
	at         time.Duration
	rss        float64
	goroutines int
}

func (w *soak) observe(op string, start time.Time, d time.Duration) {
	m := int(start.Sub(w.started) / time.Minute)
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.minutes) <= m {
		w.minutes = append(w.minutes, map[string][]time.Duration{})
	}
	w.minutes[m][""] = append(w.minutes[m][""], d)
	w.minutes[m][op] = append(w.minutes[m][op], d)
}

// p99 of operation op ("" for all) in minute m, in milliseconds.
func (w *soak) p99(m int, op string) float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m >= len(w.minutes) || len(w.minutes[m][op]) == 0 {
		return 0
	}
	ls := slices.Clone(w.minutes[m][op])
	slices.Sort(ls)
	return float64(ls[len(ls)*99/100]) / float64(time.Millisecond)
}

// byOp describes the p99 of each operation in minute m.
func (w *soak) byOp(m int) string {
	var parts []string
	for _, op := range []string{"check", "usage", "webhook", "invite", "accept", "createTenant"} {
		parts = append(parts, fmt.Sprintf("%s %.2f", op, w.p99(m, op)))
	}
	return strings.Join(parts, ", ")
}

// background counts PostgreSQL's own work so far: checkpoints, and autovacuum and autoanalyze
// runs on the tables of the soak's database (what may raise latency late in a run).
func (w *soak) background(ctx context.Context) [3]int64 {
	var c [3]int64
	if err := w.svc.admin.QueryRow(ctx, `SELECT
		(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
		(SELECT coalesce(sum(autovacuum_count), 0) FROM pg_stat_all_tables),
		(SELECT coalesce(sum(autoanalyze_count), 0) FROM pg_stat_all_tables)`).Scan(&c[0], &c[1], &c[2]); err != nil {
		w.tb.Fatal(err)
	}
	return c
}

// sample reads the replicas' memory and goroutines every 10 s until d has passed (the largest of
// each).
func (w *soak) sample(ctx context.Context, d time.Duration) <-chan []sampleAt {
	out := make(chan []sampleAt, 1)
	go func() {
		var s []sampleAt
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			at := time.Since(w.started)
			x := sampleAt{at: at}
			for _, svc := range w.svcs { // the largest replica
				x.rss, x.goroutines = max(x.rss, svc.rssMiB(w.tb)), max(x.goroutines, w.goroutines(ctx, svc))
			}
			s = append(s, x)
			if at >= d {
				out <- s
				return
			}
			select {
			case <-ctx.Done():
				out <- s
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

var goroutinesLine = regexp.MustCompile(`^go_goroutines (\d+)`)

func (w *soak) goroutines(ctx context.Context, svc *service) int {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, svc.url+"/metrics", nil)
	res, err := client.Do(req)
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if m := goroutinesLine.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return -1
}

// members prepares the permission checks from the memberships loaded (nobody leaves them).
func (w *soak) members() {
	ctx := w.tb.Context()
	rows, err := w.svc.admin.Query(ctx, `SELECT tenant_id::text, user_id::text, role::text FROM tenant_users ORDER BY tenant_id, user_id`)
	if err != nil {
		w.tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var tenant, user, role string
		if err := rows.Scan(&tenant, &user, &role); err != nil {
			w.tb.Fatal(err)
		}
		if w.checks == nil {
			w.checks = make([][]soakCheck, len(w.hcs))
		}
		for r, hc := range w.hcs {
			req, err := hc.ActionRequest("checkPermission", map[string]any{"tenantId": tenant, "permission": "users:invite"},
				map[string]string{"x-hasura-role": "user", "x-hasura-user-id": user})
			if err != nil {
				w.tb.Fatal(err)
			}
			w.checks[r] = append(w.checks[r], soakCheck{req, headerMap(req), fmt.Sprintf(`"allowed":%t`, role == "owner" || role == "admin")})
		}
	}
	if err := rows.Err(); err != nil {
		w.tb.Fatal(err)
	}
	w.webhookAt = make([]atomic.Int64, len(w.ds.tenants))
}

// replica picks the replica of operation i, round-robin.
func (w *soak) replica(i int) int { return i % len(w.svcs) }

// action calls an action on replica r as Hasura would and decodes a 200 answer into out.
func (w *soak) action(ctx context.Context, r int, name string, input map[string]any, session map[string]string, out any) error {
	res, err := w.hcs[r].Action(ctx, name, input, session)
	if err != nil {
		return err
	}
	if res.Status != http.StatusOK || res.HasuraError != nil {
		return fmt.Errorf("%s: %w (Hasura: %v)", name, statusError(res.Status, res.Body), res.HasuraError)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(res.Body, out)
}

func user(id string) map[string]string {
	return map[string]string{"x-hasura-role": "user", "x-hasura-user-id": id}
}

func (w *soak) check(ctx context.Context, i int) error {
	checks := w.checks[w.replica(i)]
	c := checks[i%len(checks)]
	status, body, err := call(ctx, c.req.URL, c.req.Body, c.header)
	if err != nil {
		return err
	}
	if status != http.StatusOK || !strings.Contains(string(body), c.want) {
		return fmt.Errorf("checkPermission: %w, want %s", statusError(status, body), c.want)
	}
	w.metered.Add(1)
	return nil
}

func (w *soak) usage(ctx context.Context, i int) error {
	events := make([]any, 100)
	for j := range events {
		events[j] = map[string]any{"tenantId": w.ds.tenants[(i+j)%len(w.ds.tenants)], "metric": "emails_sent", "quantity": 1,
			"idempotencyKey": fmt.Sprintf("soak-%d-%d", i, j)}
	}
	var out struct{ Recorded, Duplicates int }
	if err := w.action(ctx, w.replica(i), "recordUsage", map[string]any{"events": events}, map[string]string{"x-hasura-role": "service"}, &out); err != nil {
		return err
	}
	if out.Recorded != 100 {
		return fmt.Errorf("recordUsage: %+v, want 100 recorded", out)
	}
	w.recorded.Add(100)
	return nil
}

// webhook sends the next subscription update of a tenant, and one time in five the same event
// again (a redelivery).
func (w *soak) webhook(ctx context.Context, i int) error {
	k := i % len(w.ds.tenants)
	tenant := w.ds.tenants[k]
	created := w.base + w.webhookAt[k].Add(1)
	status := []string{"active", "past_due", "active", "trialing"}[created%4]
	payload := stripetest.Event(stripetest.APIVersion, fmt.Sprintf("evt_soak_%s_%d", tenant[:8], created), "customer.subscription.updated",
		created, stripetest.SubscriptionObject(tenant, "", status, w.base))
	for range 1 + btoi(i%5 == 0) {
		code, body, err := call(ctx, w.svcs[w.replica(i)].url+"/webhooks/stripe", payload, map[string]string{"Stripe-Signature": stripetest.Signature(payload, benchWebhookSecret)})
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("webhook: %w", statusError(code, body))
		}
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// invite: a tenant's owner invites a new address; Hasura then delivers the invitation_email event
// with the row as written, and the service emails the link.
func (w *soak) invite(ctx context.Context, i int) error {
	k := rand.IntN(len(w.ds.tenants))
	email := fmt.Sprintf("soak-invitee-%d-%s@example.com", i, uuid.NewString()[:8])
	var out struct{ InvitationID string }
	r := w.replica(i)
	if err := w.action(ctx, r, "inviteMember", map[string]any{"tenantId": w.ds.tenants[k], "email": email, "role": "member"},
		user(w.ds.owners[k]), &out); err != nil {
		return err
	}
	w.metered.Add(1)
	var row map[string]any
	var raw []byte
	if err := w.svc.admin.QueryRow(ctx, `SELECT row_to_json(t) FROM tenant_invitations t WHERE id = $1`, out.InvitationID).Scan(&raw); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &row); err != nil {
		return err
	}
	// Hasura delivers to whichever replica the load balancer picks, and one time in five delivers
	// the same event again to another one (a redelivery after a timeout): one email either way.
	event := hasuratest.EventOptions{ID: uuid.NewString(), Session: user(w.ds.owners[k])}
	for d := range 1 + btoi(i%5 == 0) {
		event.CurrentRetry = d
		res, err := w.hcs[(r+1+d)%len(w.hcs)].Event(ctx, "invitation_email", "INSERT", nil, row, event)
		if err != nil {
			return err
		}
		if res.Status != http.StatusOK {
			return fmt.Errorf("invitation_email event: %w", statusError(res.Status, res.Body))
		}
	}
	w.invited.Add(1)
	return w.readMail()
}

var soakLink = regexp.MustCompile(`http://app\.test/invitations/accept\?token=([A-Za-z0-9_%-]+)`)

// readMail takes the invitation links of the emails that arrived since the last call.
func (w *soak) readMail() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	msgs := w.smtp.Messages()
	for _, m := range msgs[w.seenMail:] {
		d, err := m.Decode()
		if err != nil {
			return err
		}
		match := soakLink.FindStringSubmatch(d.Text)
		if match == nil || len(m.To) != 1 {
			return fmt.Errorf("email without one recipient and an invitation link: %v\n%s", m.To, d.Text)
		}
		tok, err := url.QueryUnescape(match[1])
		if err != nil {
			return err
		}
		if _, dup := w.tokens[m.To[0]]; dup {
			return fmt.Errorf("a second invitation email to %s", m.To[0])
		}
		w.tokens[m.To[0]] = tok
		w.pending = append(w.pending, m.To[0])
	}
	w.seenMail = len(msgs)
	return nil
}

// accept: the invitee of a link that arrived signs up and accepts it.
func (w *soak) accept(ctx context.Context, i int) error {
	w.mu.Lock()
	if len(w.pending) == 0 {
		w.mu.Unlock()
		return nil // nothing to accept yet
	}
	email := w.pending[0]
	w.pending = w.pending[1:]
	tok := w.tokens[email]
	w.mu.Unlock()
	var id string
	if err := w.svc.admin.QueryRow(ctx, `INSERT INTO auth.users (email, display_name, email_verified) VALUES ($1, 'invitee', true) RETURNING id::text`, email).Scan(&id); err != nil {
		return err
	}
	if err := w.action(ctx, w.replica(i), "acceptInvitation", map[string]any{"token": tok}, user(id), nil); err != nil {
		return err
	}
	w.accepted.Add(1)
	return nil
}

func (w *soak) createTenant(ctx context.Context, i int) error {
	var id string
	if err := w.svc.admin.QueryRow(ctx, `INSERT INTO auth.users (email, display_name) VALUES ($1, 'founder') RETURNING id::text`,
		fmt.Sprintf("soak-founder-%d@example.com", i)).Scan(&id); err != nil {
		return err
	}
	if err := w.action(ctx, w.replica(i), "createTenant", map[string]any{"name": "Soak", "slug": fmt.Sprintf("soak-%d", i)}, user(id), nil); err != nil {
		return err
	}
	w.created.Add(1)
	return nil
}

// flushed waits until the metered totals reach what the service acknowledged (every replica's
// usage meter flushes each second), 15 s at most; verify then compares them.
func (w *soak) flushed(ctx context.Context) {
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var usage, apiCalls float64
		if err := w.svc.admin.QueryRow(ctx, `SELECT
			(SELECT coalesce(sum(quantity), 0) FROM tenants t, tenantkit.usage_hours(t.id) h WHERE h.metric = 'emails_sent'),
			(SELECT coalesce(sum(quantity), 0) FROM tenants t, tenantkit.usage_hours(t.id) h WHERE h.metric = 'api_calls')`).Scan(&usage, &apiCalls); err != nil {
			w.tb.Fatal(err)
		}
		if usage >= float64(w.recorded.Load()) && apiCalls >= float64(w.metered.Load()) {
			return
		}
	}
}

// verify compares the database with what the service acknowledged.
func (w *soak) verify(ctx context.Context) {
	var usage, apiCalls float64
	var invitees, tenants, emails int
	if err := w.svc.admin.QueryRow(ctx, `SELECT
		(SELECT coalesce(sum(quantity), 0) FROM tenants t, tenantkit.usage_hours(t.id) h WHERE h.metric = 'emails_sent'),
		(SELECT coalesce(sum(quantity), 0) FROM tenants t, tenantkit.usage_hours(t.id) h WHERE h.metric = 'api_calls'),
		(SELECT count(*) FROM tenant_users m JOIN auth.users u ON u.id = m.user_id WHERE u.email LIKE 'soak-invitee-%'),
		(SELECT count(*) FROM tenants WHERE slug LIKE 'soak-%')`).Scan(&usage, &apiCalls, &invitees, &tenants); err != nil {
		w.tb.Fatal(err)
	}
	msgs := w.smtp.Messages()
	emails = len(msgs)
	ids := map[string]bool{}
	for _, m := range msgs {
		d, err := m.Decode()
		if err != nil {
			w.tb.Fatal(err)
		}
		if id := d.Header.Get("Message-Id"); ids[id] {
			w.tb.Errorf("Message-ID %s sent twice", id)
		}
		ids[d.Header.Get("Message-Id")] = true
	}
	w.tb.Logf("soak totals: %d usage events, %v API calls metered, %d invitations emailed (%d emails), %d accepted, %d tenants created",
		w.recorded.Load(), apiCalls, w.invited.Load(), emails, w.accepted.Load(), w.created.Load())
	if apiCalls != float64(w.metered.Load()) {
		w.tb.Errorf("api_calls: metered %v, successful calls naming a member's tenant %d", apiCalls, w.metered.Load())
	}
	if usage != float64(w.recorded.Load()) {
		w.tb.Errorf("usage: stored %v, acknowledged %d", usage, w.recorded.Load())
	}
	if int64(emails) != w.invited.Load() {
		w.tb.Errorf("%d emails for %d invitations", emails, w.invited.Load())
	}
	if int64(invitees) != w.accepted.Load() {
		w.tb.Errorf("%d invitees are members, %d acceptances acknowledged", invitees, w.accepted.Load())
	}
	if int64(tenants) != w.created.Load() {
		w.tb.Errorf("%d tenants created, %d acknowledged", tenants, w.created.Load())
	}
}
