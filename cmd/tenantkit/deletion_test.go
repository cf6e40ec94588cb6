package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	stripego "github.com/stripe/stripe-go/v76"

	"github.com/tenantkit/tenantkit/internal/stripefake"
)

// outboxRow is a queued Stripe write as the test reads it.
type outboxRow struct {
	kind, subscription, key, outcome string
	done                             bool
	attempts                         int
}

func (s *stack) outbox(t *testing.T, tenant string) []outboxRow {
	t.Helper()
	rows, err := s.admin.Query(context.Background(), `SELECT kind, coalesce(subscription_id, ''), coalesce(idempotency_key, ''),
		coalesce(outcome, ''), done_at IS NOT NULL, attempts FROM tenantkit.stripe_outbox WHERE tenant_id = $1 ORDER BY id`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	var out []outboxRow
	var r outboxRow
	if _, err := pgx.ForEachRow(rows, []any{&r.kind, &r.subscription, &r.key, &r.outcome, &r.done, &r.attempts}, func() error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// canceledOnce waits until the outbox sent the cancellation of sub and checks that Stripe ran it
// once.
func (f *fakeBilling) canceledOnce(t *testing.T, tenant, sub string) {
	t.Helper()
	eventually(t, "the cancellation of "+sub, func() bool {
		f.settleOutbox(t)
		return f.fake.Subscription(sub).Status == stripego.SubscriptionStatusCanceled
	})
	eventually(t, "the outbox to record the cancellation", func() bool {
		for _, r := range f.outbox(t, tenant) {
			if r.subscription == sub && r.kind == "cancel_subscription" {
				return r.done && r.outcome == "sent"
			}
		}
		return false
	})
	if n := f.fake.Executed(http.MethodDelete, "/v1/subscriptions/"+sub); n != 1 {
		t.Errorf("Stripe canceled %s %d times, want once", sub, n)
	}
}

// tables a tenant's members reach, with the column naming the tenant.
var memberTables = []struct{ table, tenantColumn string }{
	{"tenants", "id"}, {"tenant_users", "tenant_id"}, {"tenant_invitations", "tenant_id"}, {"projects", "tenant_id"},
	{"tenant_subscriptions", "tenant_id"}, {"billing_usage", "tenant_id"}, {"audit_log", "tenant_id"},
	{"api_keys", "tenant_id"},
}

// visible counts, per table, the tenant's rows the user sees through RLS (the service's user path)
// and through Hasura's select rules for role user (compiled from hasura/metadata, run without RLS
// as Hasura runs them).
func (s *stack) visible(t *testing.T, user, tenant string) (rls, hasura map[string]int) {
	t.Helper()
	ctx := context.Background()
	meta, cat, rules := s.hasuraRules(t, "user")
	rls, hasura = map[string]int{}, map[string]int{}
	session := map[string]string{"x-hasura-role": "user", "x-hasura-user-id": user}
	for _, mt := range memberTables {
		for _, r := range rules {
			if r.Table != mt.table || r.Command != "select" || !r.Allowed {
				continue
			}
			where, args, err := meta.SQL("public", mt.table, "t", r.Filter, session, 2, cat)
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := s.admin.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s t WHERE t.%s = $1 AND (%s)", mt.table, mt.tenantColumn, where),
				append([]any{tenant}, args...)...).Scan(&n); err != nil {
				t.Fatal(err)
			}
			hasura[mt.table] = n
		}
		s.asUser(t, user, func(tx pgx.Tx) error {
			var n int
			err := tx.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE %s = $1", mt.table, mt.tenantColumn), tenant).Scan(&n)
			rls[mt.table] = n
			return err
		})
	}
	return rls, hasura
}

// TestTenantDeletion: deleteTenant and restoreTenant through Hasura's metadata, against the
// stateful Stripe double and PostgreSQL; the purge; late Stripe events.
func TestTenantDeletion(t *testing.T) {
	t.Parallel()
	f := newFakeBilling(t)
	ctx := context.Background()

	// Who may delete and restore, and the restore window: internal/team's deletion_service_test.go.
	t.Run("deletion is the action's: Hasura's user role deletes no tenant row", func(t *testing.T) {
		t.Parallel()
		rules, err := metadata(t).Rules("user")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if r.Table == "tenants" && r.Command == "delete" && r.Allowed {
				t.Error("Hasura's user role may delete tenants")
			}
		}
	})

	t.Run("concurrent and repeated deletions: one deletion, one cancellation", func(t *testing.T) {
		t.Parallel()
		tenant, owner := f.tenant(t)
		sub := f.subscribe(t, tenant, owner, "starter")
		in := map[string]any{"tenantId": tenant}
		const n = 12
		answers := make([]result, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { answers[i] = f.action(t, "deleteTenant", in, owner) })
		}
		wg.Wait()
		for i, a := range answers {
			if a.status != 200 || a.out["deletedAt"] != answers[0].out["deletedAt"] || a.out["restoreUntil"] != answers[0].out["restoreUntil"] {
				t.Fatalf("answer %d: %d %s %v, want the same deletion as %v", i, a.status, a.code, a.out, answers[0].out)
			}
		}
		deleted, _ := time.Parse(time.RFC3339Nano, answers[0].out["deletedAt"].(string))
		until, _ := time.Parse(time.RFC3339Nano, answers[0].out["restoreUntil"].(string))
		if until.Sub(deleted) != 30*24*time.Hour {
			t.Errorf("restorable for %s, want the default 30 days", until.Sub(deleted))
		}
		if n := f.count(t, `SELECT count(*) FROM tenantkit.tenant_deletions WHERE tenant_id = $1`, tenant); n != 1 {
			t.Errorf("%d deletion records", n)
		}
		if n := f.count(t, `SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = 'tenant.deleted' AND actor_id = $2`, tenant, owner); n != 1 {
			t.Errorf("%d tenant.deleted audit entries by the owner", n)
		}
		rows := f.outbox(t, tenant)
		if len(rows) != 1 || rows[0].kind != "cancel_subscription" || rows[0].subscription != sub ||
			!strings.HasPrefix(rows[0].key, "tk-delete-"+tenant+"-") || !strings.HasSuffix(rows[0].key, "-"+sub) {
			t.Fatalf("outbox %+v, want one cancellation of %s keyed by tenant, deletion and subscription", rows, sub)
		}
		f.canceledOnce(t, tenant, sub)
		if again := f.ok(t, "deleteTenant", in, owner); again["deletedAt"] != answers[0].out["deletedAt"] {
			t.Errorf("a later repeat answered %v", again)
		}
		// Stripe's webhooks about the cancellation change nothing of the deleted tenant. The drain
		// may bring other subtests' events (they share the double), e.g. the cancellation of a
		// tenant another subtest restores meanwhile: only this subscription's are checked.
		for _, e := range f.deliver(t) {
			if !bytes.Contains(e.Payload, []byte(`"id":"`+sub+`"`)) {
				continue
			}
			if o := f.outcome(t, e.ID); e.Type == "customer.subscription.deleted" && o != "tenant_deleted" {
				t.Errorf("%s: outcome %q, want tenant_deleted", e.Type, o)
			}
		}
		// The loop above sees only what this drain brought (the subtests share the double): the
		// deletion event of this subscription must be among the recorded ones, as tenant_deleted.
		deletedEvent := ""
		for _, e := range f.fake.Events() {
			if e.Type == "customer.subscription.deleted" && bytes.Contains(e.Payload, []byte(`"id":"`+sub+`"`)) {
				deletedEvent = e.ID
			}
		}
		if deletedEvent == "" {
			t.Fatalf("Stripe emitted no customer.subscription.deleted for %s", sub)
		}
		eventually(t, "the webhook "+deletedEvent+" recorded", func() bool {
			f.deliver(t)
			return f.count(t, `SELECT count(*) FROM tenantkit.stripe_events WHERE id = $1`, deletedEvent) == 1
		})
		if o := f.outcome(t, deletedEvent); o != "tenant_deleted" {
			t.Errorf("the cancellation's customer.subscription.deleted: outcome %q, want tenant_deleted", o)
		}
		if f.fake.Executed(http.MethodDelete, "/v1/subscriptions/"+sub) != 1 || len(f.outbox(t, tenant)) != 1 {
			t.Error("repeats sent or queued more")
		}
		st := f.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)
		if st["status"] != "canceled" || st["plan_id"] != f.plans["free"].id {
			t.Errorf("billing row %v, want canceled on the free plan", st)
		}
		body := scrapeMetrics(t, f.m)
		for _, want := range []string{`tenantkit_billing_total{what="stripe_write_cancel_subscription_sent"}`,
			`tenantkit_billing_total{what="stripe_event_tenant_deleted"}`} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})

	t.Run("nobody sees a deleted tenant, through RLS or Hasura", func(t *testing.T) {
		t.Parallel()
		tenant, owner := f.tenant(t)
		members := map[string]string{"owner": owner}
		for _, r := range []string{"admin", "member", "guest"} {
			members[r] = f.member(t, tenant, r)
		}
		exec(t, f.stack, `INSERT INTO projects (tenant_id, name, owner_id) VALUES ($1, 'p', $2)`, tenant, owner)
		invitee := f.user(t, "late.joiner@example.com")
		inv := f.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": "late.joiner@example.com", "role": "member"}, owner)
		if st := f.stack.deliver(t, "invitation_email", "INSERT", inv["invitationId"]); st != http.StatusOK {
			t.Fatalf("invitation email: %d", st)
		}
		token := f.links(t, "late.joiner@example.com")[0]
		exec(t, f.stack, `INSERT INTO billing_usage (tenant_id, metric, period_start, period_end, slot, quantity, updated_at)
			VALUES ($1, 'api_calls', date_trunc('hour', now()), date_trunc('hour', now()) + interval '1 hour', 0, 3, now())`, tenant)
		f.ok(t, "createApiKey", map[string]any{"tenantId": tenant, "name": "ci", "scopes": []string{"projects:read"}}, owner)
		// memberTables is every tenant table Hasura's user role may select: a table missing from it
		// would go unchecked below.
		rules, err := metadata(t).Rules("user")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if r.Command == "select" && r.Allowed && r.Table != "users" && r.Table != "subscription_plans" &&
				!slices.ContainsFunc(memberTables, func(mt struct{ table, tenantColumn string }) bool { return mt.table == r.Table }) {
				t.Errorf("Hasura's user role selects %s, which memberTables does not list", r.Table)
			}
		}
		// Before the deletion the owner sees every table's rows, and every member the tenant, alike
		// through RLS and Hasura: the zeros after it are the deletion's doing.
		for role, u := range members {
			rls, hasura := f.visible(t, u, tenant)
			for _, mt := range memberTables {
				if rls[mt.table] != hasura[mt.table] || role == "owner" && rls[mt.table] == 0 || mt.table == "tenants" && rls[mt.table] != 1 {
					t.Fatalf("before the deletion the %s sees %d rows of %s through RLS, %d through Hasura", role, rls[mt.table], mt.table, hasura[mt.table])
				}
			}
		}

		f.ok(t, "deleteTenant", map[string]any{"tenantId": tenant}, owner)
		for role, u := range members {
			rls, hasura := f.visible(t, u, tenant)
			for _, mt := range memberTables {
				if rls[mt.table] != 0 || hasura[mt.table] != 0 {
					t.Errorf("%s sees %d rows of %s through RLS and %d through Hasura after the deletion", role, rls[mt.table], mt.table, hasura[mt.table])
				}
			}
			out := f.ok(t, "checkPermission", map[string]any{"tenantId": tenant, "permission": "projects:read"}, u)
			if out["allowed"] != false || out["role"] != nil {
				t.Errorf("%s: checkPermission %v", role, out)
			}
			if data, code := f.graph(t, entitlementsQuery, map[string]any{"t": tenant}, session(u)); code != "" || data["entitlements"] != nil {
				t.Errorf("%s: entitlements %v %s", role, data, code)
			}
			f.fails(t, "not_found", "removeMember", map[string]any{"tenantId": tenant, "userId": u}, u)
			// Leaving through Hasura, or under RLS: no row to delete.
			f.asUser(t, u, func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, `DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tenant, u)
				if err == nil && tag.RowsAffected() != 0 {
					t.Errorf("%s left a deleted tenant under RLS", role)
				}
				if err != nil {
					return err
				}
				return errRolledBack
			})
		}
		f.fails(t, "not_found", "inviteMember", map[string]any{"tenantId": tenant, "email": "x@example.com", "role": "guest"}, owner)
		f.fails(t, "not_found", "createCheckoutSession", map[string]any{"tenantId": tenant, "planId": f.plans["starter"].id}, owner)
		f.fails(t, "invitation_not_found", "acceptInvitation", map[string]any{"token": token}, invitee)
		if n := f.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, tenant); n != 4 {
			t.Errorf("%d memberships kept, want the 4 (restorable)", n)
		}
	})

	t.Run("restore within the window, refused after it", func(t *testing.T) {
		t.Parallel()
		tenant, owner := f.tenant(t)
		admin := f.member(t, tenant, "admin")
		sub := f.subscribe(t, tenant, owner, "professional")
		in := map[string]any{"tenantId": tenant}
		f.ok(t, "deleteTenant", in, owner)
		f.canceledOnce(t, tenant, sub)
		f.deliver(t)

		f.fails(t, "forbidden", "restoreTenant", in, admin)
		out := f.ok(t, "restoreTenant", in, owner)
		if out["tenantId"] != tenant || out["role"] != "owner" || out["name"] != "Acme" {
			t.Errorf("restore answered %v", out)
		}
		data, _ := f.graph(t, entitlementsQuery, map[string]any{"t": tenant}, session(owner))
		e, _ := data["entitlements"].(map[string]any)
		if plan, _ := e["plan"].(map[string]any); plan["key"] != "free" {
			t.Errorf("restored tenant's entitlements %v, want the free plan", e)
		}
		// Its subscription ended: a new checkout is allowed.
		f.ok(t, "createCheckoutSession", map[string]any{"tenantId": tenant, "planId": f.plans["starter"].id}, owner)

		// Deleted again; the window ends.
		f.ok(t, "deleteTenant", in, owner)
		exec(t, f.stack, `UPDATE tenantkit.tenant_deletions SET restore_until = now() - interval '1 minute'
			WHERE tenant_id = $1 AND restored_at IS NULL`, tenant)
		msg := f.fails(t, "restore_expired", "restoreTenant", in, owner)
		if !strings.Contains(msg, "could be restored until") {
			t.Errorf("message %q", msg)
		}
		if r := f.action(t, "restoreTenant", in, owner); r.status != http.StatusGone {
			t.Errorf("restore_expired answered %d, want 410", r.status)
		}
	})

	t.Run("a checkout completed after the deletion is canceled, and brings nothing back", func(t *testing.T) {
		t.Parallel()
		tenant, owner := f.tenant(t)
		f.ok(t, "createCheckoutSession", map[string]any{"tenantId": tenant, "planId": f.plans["starter"].id}, owner)
		session := lastCheckout(t, f.fake, tenant).ID
		f.ok(t, "deleteTenant", map[string]any{"tenantId": tenant}, owner)
		if rows := f.outbox(t, tenant); len(rows) != 0 {
			t.Fatalf("outbox %+v for a tenant without a subscription", rows)
		}
		cs, err := f.fake.CompleteCheckout(session)
		if err != nil {
			t.Fatal(err)
		}
		sub := cs.Subscription.ID
		for _, e := range f.deliver(t) { // this subscription's events only, as above
			if !bytes.Contains(e.Payload, []byte(`"id":"`+sub+`"`)) {
				continue
			}
			if o := f.outcome(t, e.ID); strings.HasPrefix(e.Type, "customer.subscription.") && o != "tenant_deleted" {
				t.Errorf("%s: outcome %q, want tenant_deleted", e.Type, o)
			}
		}
		if err := f.fake.FailPayment(sub); err == nil {
			f.deliver(t)
		}
		f.canceledOnce(t, tenant, sub)
		if rows := f.outbox(t, tenant); len(rows) != 1 {
			t.Errorf("outbox %+v: the events of one subscription queued more than one cancellation", rows)
		}
		f.deliver(t)
		st := f.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)
		if st["status"] != "canceled" || st["plan_id"] != f.plans["free"].id || st["stripe_subscription_id"] != nil {
			t.Errorf("the late subscription moved the deleted tenant's row: %v", st)
		}
		if n := f.count(t, `SELECT count(*) FROM tenants WHERE id = $1 AND deleted_at IS NOT NULL`, tenant); n != 1 {
			t.Error("the tenant is no longer deleted")
		}
		if n := f.count(t, `SELECT count(*) FROM tenantkit.email_outbox WHERE tenant_id = $1`, tenant); n != 0 {
			t.Errorf("%d billing emails queued for a deleted tenant", n)
		}
	})

	// Not parallel: it runs before the others, so that no other tenant's window has ended.
	t.Run("purge after the window keeps anonymous records only", func(t *testing.T) {
		tenant, owner := f.tenant(t)
		admin := f.member(t, tenant, "admin")
		f.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": "purged.invitee@example.com", "role": "guest"}, owner)
		f.ok(t, "changeMemberRole", map[string]any{"tenantId": tenant, "userId": admin, "role": "member"}, owner)
		sub := f.subscribe(t, tenant, owner, "starter")
		customer := f.row(t, "tenant_subscriptions", "tenant_id = $1", tenant)["stripe_customer_id"]
		in := map[string]any{"tenantId": tenant}
		f.ok(t, "deleteTenant", in, owner)
		f.canceledOnce(t, tenant, sub)
		f.deliver(t)
		purge := func() string {
			t.Helper()
			var out bytes.Buffer
			env := commandEnv(f.m) // the service's URL and pooler: the purge's locks are transaction-level
			if err := tenantsPurge(ctx, func(k string) string { return env[k] }, &out); err != nil {
				t.Fatal(err)
			}
			return out.String()
		}
		// Within the window: nothing to purge.
		if out := purge(); out != "tenants purge: 0 deleted tenant(s) purged\n" {
			t.Errorf("purge within the window: %q", out)
		}
		if n := f.count(t, `SELECT count(*) FROM tenants WHERE id = $1`, tenant); n != 1 {
			t.Fatal("purged within the restore window")
		}
		exec(t, f.stack, `UPDATE tenantkit.tenant_deletions SET restore_until = now() - interval '1 second' WHERE tenant_id = $1`, tenant)

		// Another purge holds the lock: this one does nothing.
		lock, err := f.admin.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lock.Exec(ctx, `SELECT pg_advisory_lock(hashtext('tenantkit.purge'), 0)`); err != nil {
			t.Fatal(err)
		}
		if out := purge(); !strings.Contains(out, "another purge is running") {
			t.Errorf("purge with the lock taken: %q", out)
		}
		if n := f.count(t, `SELECT count(*) FROM tenants WHERE id = $1`, tenant); n != 1 {
			t.Fatal("purged while another purge held the lock")
		}
		if _, err := lock.Exec(ctx, `SELECT pg_advisory_unlock(hashtext('tenantkit.purge'), 0)`); err != nil {
			t.Fatal(err)
		}
		lock.Release()

		eventually(t, "the purge", func() bool {
			purge()
			return f.count(t, `SELECT count(*) FROM tenants WHERE id = $1`, tenant) == 0
		})
		// Every row the tenant owned is gone.
		rows, err := f.admin.Query(ctx, `SELECT format('%I.%I', table_schema, table_name) FROM information_schema.columns
			WHERE column_name = 'tenant_id' AND table_schema IN ('public', 'tenantkit')
			  AND table_name NOT IN ('stripe_outbox', 'retained_audit_log', 'tenant_deletions')`)
		if err != nil {
			t.Fatal(err)
		}
		tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(tables) < 10 {
			t.Fatalf("tables %v (%v)", tables, err)
		}
		for _, tb := range tables {
			if n := f.count(t, "SELECT count(*) FROM "+tb+" WHERE tenant_id = $1", tenant); n != 0 {
				t.Errorf("%s keeps %d rows of the purged tenant", tb, n)
			}
		}
		// The deletion record keeps the billing references, not the people.
		d := f.row(t, "tenantkit.tenant_deletions", "tenant_id = $1", tenant)
		if d["slug"] != nil || d["name"] != nil || d["actor_id"] != nil || d["purged_at"] == nil ||
			d["stripe_customer_id"] != customer || fmt.Sprint(d["stripe_subscription_ids"]) != fmt.Sprint([]any{sub}) {
			t.Errorf("deletion record %v", d)
		}
		// The audit log's actions stay, without actors, addresses or user ids.
		var actions, details string
		if err := f.admin.QueryRow(ctx, `SELECT string_agg(action, ',' ORDER BY seq), coalesce(string_agg(details::text, ' '), '')
			FROM tenantkit.retained_audit_log WHERE tenant_id = $1`, tenant).Scan(&actions, &details); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"tenant.created", "member.joined", "member.invited", "member.role_changed", "tenant.deleted"} {
			if !strings.Contains(actions, want) {
				t.Errorf("retained actions %s lack %s", actions, want)
			}
		}
		if strings.Contains(details, "@") || regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-`).MatchString(details) || strings.Contains(details, "Acme") {
			t.Errorf("retained details hold personal data: %s", details)
		}
		if !strings.Contains(details, `"to": "member"`) {
			t.Errorf("retained details %s lost the impersonal ones (a role change)", details)
		}
		// The cancellation record stays in the outbox.
		if rows := f.outbox(t, tenant); len(rows) != 1 || !rows[0].done {
			t.Errorf("outbox after the purge: %+v", rows)
		}
		if out := purge(); out != "tenants purge: 0 deleted tenant(s) purged\n" {
			t.Errorf("second purge: %q", out)
		}

		// A late event about the purged tenant's subscription: nobody's, and nothing comes back.
		if _, err := f.fake.Client("").Subscriptions.Update(sub, &stripego.SubscriptionParams{Metadata: map[string]string{"late": "yes"}}); err != nil {
			t.Fatal(err)
		}
		for _, e := range f.deliver(t) {
			if o := f.outcome(t, e.ID); o != "not_ours" {
				t.Errorf("late %s: outcome %q, want not_ours", e.Type, o)
			}
		}
		if n := f.count(t, `SELECT (SELECT count(*) FROM tenants WHERE id = $1) + (SELECT count(*) FROM tenant_subscriptions WHERE tenant_id = $1)
			+ (SELECT count(*) FROM tenantkit.stripe_subscriptions WHERE tenant_id = $1)`, tenant); n != 0 {
			t.Errorf("a late event brought back %d rows", n)
		}
		f.fails(t, "not_found", "restoreTenant", in, owner)
	})
}

// TestTenantDeletionStripeOutage: Stripe refuses while the tenant is deleted, and the service is
// restarted before Stripe comes back: the cancellation is not lost, and Stripe runs it once.
func TestTenantDeletionStripeOutage(t *testing.T) {
	t.Parallel()
	f := newFakeBilling(t)
	tenant, owner := f.tenant(t)
	sub := f.subscribe(t, tenant, owner, "starter")
	path := "/v1/subscriptions/" + sub
	f.fake.FailNext(http.MethodDelete, path, http.StatusServiceUnavailable, "")
	f.fake.Fail(stripefake.Failure{Method: http.MethodDelete, PathPrefix: path, Status: http.StatusServiceUnavailable, Times: 9})

	f.ok(t, "deleteTenant", map[string]any{"tenantId": tenant}, owner)
	eventually(t, "a refused attempt", func() bool {
		rows := f.outbox(t, tenant)
		return len(rows) == 1 && rows[0].outcome == "retrying"
	})
	f.restart(t)
	f.canceledOnce(t, tenant, sub)
	refused := 0
	for _, r := range f.fake.Requests() {
		if r.Method == http.MethodDelete && r.Path == path && !r.Executed {
			refused++
		}
	}
	if refused != 10 {
		t.Errorf("%d refused cancellations, want the 10 injected", refused)
	}
	rows := f.outbox(t, tenant)
	t.Logf("Stripe outage: the cancellation was refused %d times, across a restart, then sent once after %d attempts", refused, rows[0].attempts)
}

// TestDeletionConfig: TENANT_RESTORE_DAYS and TENANT_PURGE_INTERVAL are validated at start-up, one
// line each, and set the restore window deleteTenant answers.
func TestDeletionConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://x@h/db", "TENANTKIT_SECRET": testSecret, "APP_URL": "https://app.example.com"}
	load := func(kv ...string) (Config, error) {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return LoadConfig(func(k string) string { return env[k] })
	}
	cfg, err := load()
	if err != nil || cfg.RestoreDays != 30 || cfg.PurgeInterval != time.Hour {
		t.Fatalf("defaults: %d days, %s (%v)", cfg.RestoreDays, cfg.PurgeInterval, err)
	}
	for _, bad := range [][2]string{{"TENANT_RESTORE_DAYS", "-1"}, {"TENANT_RESTORE_DAYS", "366"}, {"TENANT_RESTORE_DAYS", "30d"},
		{"TENANT_PURGE_INTERVAL", "30s"}, {"TENANT_PURGE_INTERVAL", "25h"}, {"TENANT_PURGE_INTERVAL", "hourly"}} {
		_, err := load(bad[0], bad[1])
		if err == nil || !strings.Contains(err.Error(), "config: "+bad[0]+" must be") || strings.Count(err.Error(), "\n") != 0 {
			t.Errorf("%s=%s: %v, want one line about it", bad[0], bad[1], err)
		}
	}

	// 0 days: restorable for no time at all; restore is refused at once, and serve's own purge
	// (which runs at start, then every TENANT_PURGE_INTERVAL) removes the tenant.
	f := newFakeBilling(t, "TENANT_RESTORE_DAYS", "0")
	tenant, owner := f.tenant(t)
	sub := f.subscribe(t, tenant, owner, "starter")
	out := f.ok(t, "deleteTenant", map[string]any{"tenantId": tenant}, owner)
	if out["deletedAt"] != out["restoreUntil"] {
		t.Errorf("with 0 restore days: %v", out)
	}
	f.fails(t, "restore_expired", "restoreTenant", map[string]any{"tenantId": tenant}, owner)
	f.canceledOnce(t, tenant, sub)
	f.restart(t, "TENANT_RESTORE_DAYS", "0")
	eventually(t, "serve to purge the tenant", func() bool {
		return f.count(t, `SELECT count(*) FROM tenants WHERE id = $1`, tenant) == 0
	})
	if n := f.count(t, `SELECT count(*) FROM tenantkit.tenant_deletions WHERE tenant_id = $1 AND purged_at IS NOT NULL AND name IS NULL`, tenant); n != 1 {
		t.Error("serve's purge left no anonymous deletion record")
	}
}
