package team_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
	"github.com/tenantkit/tenantkit/internal/team"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// world is the team service over a fresh database, and a superuser pool to arrange and inspect.
type world struct {
	db    *postgres.DB
	svc   *team.Service
	admin *pgxpool.Pool
}

func newWorld(t *testing.T) *world {
	t.Helper()
	db, admin := pgtest.Open(t)
	return &world{db: db, svc: &team.Service{Store: db, TrialPlan: "starter"}, admin: admin}
}

var userSeq atomic.Int64

// user signs up a user with a verified address and returns its id.
func (w *world) user(t *testing.T) string {
	t.Helper()
	email := fmt.Sprintf("user%d@example.com", userSeq.Add(1))
	var id string
	if err := w.admin.QueryRow(context.Background(), `INSERT INTO auth.users (email, display_name, email_verified) VALUES ($1, $2, true) RETURNING id::text`,
		email, strings.Split(email, "@")[0]).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func (w *world) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := w.admin.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (w *world) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := w.admin.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// team creates a tenant with an owner, an admin and a member (the last two joined directly).
func (w *world) team(t *testing.T) (tenant, owner, admin, member string) {
	t.Helper()
	owner = w.user(t)
	tn, err := w.svc.CreateTenant(context.Background(), tenantkit.UserSession(owner), "Acme", "acme-"+owner[:8])
	if err != nil {
		t.Fatal(err)
	}
	admin, member = w.user(t), w.user(t)
	w.exec(t, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'admin'), ($1, $3, 'member')`, tn.ID, admin, member)
	return tn.ID, owner, admin, member
}

// code is the tenantkit error code of err, "" for none.
func code(err error) string {
	if err == nil {
		return ""
	}
	return tenantkit.ErrorCode(err)
}

func as(user string) tenantkit.Session { return tenantkit.UserSession(user) }

func TestCreateTenant(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()

	t.Run("the caller owns a new tenant on a trial of Starter", func(t *testing.T) {
		t.Parallel()
		owner := w.user(t)
		tn, err := w.svc.CreateTenant(ctx, as(owner), "  Acme Inc ", "acme-inc")
		if err != nil || tn.Slug != "acme-inc" || tn.Name != "Acme Inc" {
			t.Fatalf("CreateTenant = %+v, %v", tn, err)
		}
		if n := w.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1 AND user_id = $2 AND role = 'owner'`, tn.ID, owner); n != 1 {
			t.Errorf("owner memberships = %d", n)
		}
		if n := w.count(t, `SELECT count(*) FROM tenant_subscriptions s JOIN subscription_plans p ON p.id = s.plan_id
			WHERE s.tenant_id = $1 AND s.status = 'trialing' AND p.key = 'starter' AND s.trial_ends_at > now() + interval '13 days'
			  AND tenantkit.effective_plan(s.tenant_id) = p.id`, tn.ID); n != 1 {
			t.Errorf("trial subscriptions = %d", n)
		}
		if n := w.count(t, `SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = 'tenant.created' AND actor_id = $2`, tn.ID, owner); n != 1 {
			t.Errorf("tenant.created audit entries by the owner = %d", n)
		}
	})

	t.Run("bad slugs and names are refused and create nothing", func(t *testing.T) {
		t.Parallel()
		owner := w.user(t)
		for _, in := range [][2]string{
			{"A", "Acme"}, {"A", "ab"}, {"A", "-acme"}, {"A", "acme-"}, {"A", "ac--me"}, {"A", "admin"},
			{"A", strings.Repeat("a", 64)}, {"A", "acme'; drop table tenants;--"},
			{"   ", "fine-slug"}, {strings.Repeat("n", 201), "fine-slug"}, {"bad\x00name", "fine-slug"},
		} {
			if _, err := w.svc.CreateTenant(ctx, as(owner), in[0], in[1]); code(err) != tenantkit.Invalid {
				t.Errorf("name %q slug %q: %v, want invalid", in[0], in[1], err)
			}
		}
		if n := w.count(t, `SELECT count(*) FROM tenant_users WHERE user_id = $1`, owner); n != 0 {
			t.Errorf("memberships after refusals = %d", n)
		}
	})

	t.Run("a taken slug is slug_taken", func(t *testing.T) {
		t.Parallel()
		if _, err := w.svc.CreateTenant(ctx, as(w.user(t)), "One", "taken-slug"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.svc.CreateTenant(ctx, as(w.user(t)), "Two", "taken-slug"); code(err) != team.SlugTaken {
			t.Errorf("second creation: %v, want slug_taken", err)
		}
	})

	t.Run("without a signed-in, known user it is unauthenticated", func(t *testing.T) {
		t.Parallel()
		for _, sess := range []tenantkit.Session{as(""), as("3f1d5b8e-9c1e-4a57-9a51-4f0a2b6c7d8e")} {
			if _, err := w.svc.CreateTenant(ctx, sess, "X", "no-user"); code(err) != tenantkit.Unauthenticated {
				t.Errorf("user %q: %v, want unauthenticated", sess.UserID(), err)
			}
		}
	})
}

func TestRoles(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	check := func(t *testing.T, tenant, user, perm string) bool {
		t.Helper()
		ok, _, err := w.svc.Check(ctx, as(user), tenant, perm)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	t.Run("nobody grants above their own role", func(t *testing.T) {
		t.Parallel()
		tenant, owner, admin, member := w.team(t)
		for _, c := range []struct {
			by, user, role string
			perms          []string
			want           string
		}{
			{admin, member, "owner", nil, tenantkit.Forbidden},
			{admin, owner, "member", nil, tenantkit.Forbidden},
			{admin, admin, "owner", nil, tenantkit.Forbidden},
			{admin, member, "member", []string{"tenants:delete"}, tenantkit.Forbidden},
			{member, admin, "member", nil, tenantkit.Forbidden},
			{owner, member, "member", []string{"Bad Perm"}, tenantkit.Invalid},
		} {
			if _, err := w.svc.ChangeRole(ctx, as(c.by), tenant, c.user, c.role, c.perms); code(err) != c.want {
				t.Errorf("%s makes %s %s %v: %v, want %s", c.by, c.user, c.role, c.perms, err, c.want)
			}
		}
		m, err := w.svc.ChangeRole(ctx, as(admin), tenant, member, "member", []string{"users:invite"})
		if err != nil || len(m.Permissions) != 1 || m.Permissions[0] != "users:invite" {
			t.Errorf("custom grant: %+v, %v", m, err)
		}
		if !check(t, tenant, member, "users:invite") || check(t, tenant, member, "users:write") {
			t.Error("custom grant not applied exactly")
		}
		if _, err := w.svc.ChangeRole(ctx, as(admin), tenant, member, "admin", nil); err != nil {
			t.Fatal(err)
		}
		if ok, role, err := w.svc.Check(ctx, as(member), tenant, "users:write"); !ok || role != tenantkit.Admin || err != nil {
			t.Errorf("after promotion: %v %s %v", ok, role, err)
		}
	})

	t.Run("the last owner stays", func(t *testing.T) {
		t.Parallel()
		tenant, owner, admin, _ := w.team(t)
		if _, err := w.svc.ChangeRole(ctx, as(owner), tenant, owner, "admin", nil); code(err) != tenantkit.LastOwner {
			t.Errorf("demoting the last owner: %v", err)
		}
		if err := w.svc.Remove(ctx, as(owner), tenant, owner); code(err) != tenantkit.LastOwner {
			t.Errorf("the last owner leaving: %v", err)
		}
		if err := w.svc.Remove(ctx, as(admin), tenant, owner); code(err) != tenantkit.Forbidden {
			t.Errorf("an admin removing the owner: %v", err)
		}
		if n := w.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1 AND role = 'owner'`, tenant); n != 1 {
			t.Errorf("owners = %d", n)
		}
	})

	t.Run("members leave, admins remove, strangers see nothing", func(t *testing.T) {
		t.Parallel()
		tenant, owner, admin, member := w.team(t)
		stranger := w.user(t)
		if err := w.svc.Remove(ctx, as(stranger), tenant, member); code(err) != tenantkit.NotFound {
			t.Errorf("a stranger removing a member: %v", err)
		}
		if err := w.svc.Remove(ctx, as(owner), tenant, stranger); code(err) != tenantkit.NotFound {
			t.Errorf("removing a stranger: %v", err)
		}
		if err := w.svc.Remove(ctx, as(member), tenant, member); err != nil {
			t.Fatalf("leaving: %v", err)
		}
		if check(t, tenant, member, "projects:read") {
			t.Error("a member who left still reads projects")
		}
		if err := w.svc.Remove(ctx, as(owner), tenant, admin); err != nil {
			t.Fatal(err)
		}
		if n := w.count(t, `SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action IN ('member.left', 'member.removed')`, tenant); n != 2 {
			t.Errorf("leave/remove audit entries = %d", n)
		}
	})

	t.Run("ownership transfers atomically", func(t *testing.T) {
		t.Parallel()
		tenant, owner, admin, member := w.team(t)
		if err := w.svc.Transfer(ctx, as(admin), tenant, member); code(err) != tenantkit.Forbidden {
			t.Errorf("an admin transferring: %v", err)
		}
		if err := w.svc.Transfer(ctx, as(owner), tenant, w.user(t)); code(err) != tenantkit.NotFound {
			t.Errorf("transfer to a stranger: %v", err)
		}
		if err := w.svc.Transfer(ctx, as(owner), tenant, member); err != nil {
			t.Fatal(err)
		}
		if n := w.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1 AND role = 'owner' AND user_id = $2`, tenant, member); n != 1 {
			t.Error("the new owner is not owner")
		}
		if n := w.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1 AND role = 'admin' AND user_id = $2`, tenant, owner); n != 1 {
			t.Error("the previous owner is not admin")
		}
		if n := w.count(t, `SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = 'ownership.transferred' AND actor_id = $2`, tenant, owner); n != 1 {
			t.Errorf("ownership.transferred entries = %d", n)
		}
	})

	t.Run("checkPermission", func(t *testing.T) {
		t.Parallel()
		tenant, owner, admin, member := w.team(t)
		for _, c := range []struct {
			user, perm string
			want       bool
		}{
			{owner, "tenants:delete", true}, {owner, "anything:at_all", true},
			{admin, "users:invite", true}, {admin, "billing:manage", true}, {admin, "tenants:delete", false},
			{member, "projects:write", true}, {member, "users:invite", false},
			{w.user(t), "projects:read", false},
		} {
			if got := check(t, tenant, c.user, c.perm); got != c.want {
				t.Errorf("%s %s = %v, want %v", c.user, c.perm, got, c.want)
			}
		}
		// a non-member and a tenant that does not exist look the same
		a, ra, erra := w.svc.Check(ctx, as(w.user(t)), tenant, "projects:read")
		b, rb, errb := w.svc.Check(ctx, as(owner), "00000000-0000-4000-8000-000000000000", "projects:read")
		if a || ra != "" || erra != nil || b || rb != "" || errb != nil {
			t.Errorf("non-member %v %q %v, missing tenant %v %q %v", a, ra, erra, b, rb, errb)
		}
		if _, _, err := w.svc.Check(ctx, as(owner), tenant, "projects"); code(err) != tenantkit.Invalid {
			t.Errorf("malformed permission: %v", err)
		}
		// a removal is seen by the very next check
		if err := w.svc.Remove(ctx, as(admin), tenant, member); err != nil {
			t.Fatal(err)
		}
		if check(t, tenant, member, "projects:write") {
			t.Error("stale grant after removal")
		}
	})

	t.Run("managing needs the permission, and membership first", func(t *testing.T) {
		t.Parallel()
		tenant, owner, admin, member := w.team(t)
		for _, c := range []struct {
			user, perm, want string
		}{
			{owner, "tenants:delete", ""}, {admin, "users:write", ""}, {member, "users:write", tenantkit.Forbidden},
			{w.user(t), "projects:read", tenantkit.NotFound},
		} {
			m, err := team.Require(ctx, w.svc.Store, as(c.user), tenant, c.perm)
			if code(err) != c.want || (err == nil && m.UserID != c.user) {
				t.Errorf("Require(%s, %s) = %+v, %v; want %q", c.user, c.perm, m, err, c.want)
			}
		}
		if _, err := team.Require(ctx, w.svc.Store, as(owner), "not-an-id", "projects:read"); code(err) != tenantkit.Invalid {
			t.Errorf("malformed tenant id: %v", err)
		}
	})
}
