package apikey_test

import (
	"context"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/apikey"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/team"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// keysWorld is a tenant on Enterprise (room for every member) with an owner, an admin, a member
// and a guest, another tenant with its owner, and the key service over the database.
type keysWorld struct {
	keys                                *apikey.Service
	tenant, owner, admin, member, guest string
	other, otherOwner                   string
}

func newKeysWorld(t *testing.T) *keysWorld {
	t.Helper()
	ctx := context.Background()
	db, pool := pgtest.Open(t)
	sql := func(q string, args ...any) string {
		t.Helper()
		var out string
		if err := pool.QueryRow(ctx, q, args...).Scan(&out); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return out
	}
	user := func() string {
		return sql(`INSERT INTO auth.users (email) VALUES (gen_random_uuid() || '@example.com') RETURNING id::text`)
	}
	teams := &team.Service{Store: db, TrialPlan: "starter"}
	tenant := func(owner string) string {
		tn, err := teams.CreateTenant(ctx, tenantkit.UserSession(owner), "Acme", "acme-"+owner[:8])
		if err != nil {
			t.Fatal(err)
		}
		return tn.ID
	}
	w := &keysWorld{keys: &apikey.Service{Store: db}, owner: user(), otherOwner: user()}
	w.tenant, w.other = tenant(w.owner), tenant(w.otherOwner)
	sql(`UPDATE tenant_subscriptions SET status = 'active', plan_id = (SELECT id FROM subscription_plans WHERE key = 'enterprise')
		WHERE tenant_id = $1 RETURNING 'ok'`, w.tenant)
	for _, m := range []struct {
		into *string
		role string
	}{{&w.admin, "admin"}, {&w.member, "member"}, {&w.guest, "guest"}} {
		*m.into = sql(`INSERT INTO tenant_users (tenant_id, user_id, role) SELECT $1, id, $2 FROM auth.users
			WHERE id = $3 RETURNING user_id::text`, w.tenant, m.role, user())
	}
	return w
}

func as(user string) tenantkit.Session { return tenantkit.UserSession(user) }

func code(err error) string {
	if err == nil {
		return ""
	}
	return tenantkit.ErrorCode(err)
}

// TestCreateScopes: a key's scopes never exceed its creator's grants; bad input and non-managers
// create nothing.
func TestCreateScopes(t *testing.T) {
	t.Parallel()
	w := newKeysWorld(t)
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	for _, c := range []struct {
		by, tenant, name string
		scopes           []string
		expires          *time.Time
		want             string
	}{
		{w.member, w.tenant, "x", []string{"projects:read"}, nil, tenantkit.Forbidden}, // no api_keys:manage
		{w.admin, w.tenant, "x", []string{"*"}, nil, tenantkit.Forbidden},
		{w.admin, w.tenant, "x", []string{"tenants:delete"}, nil, tenantkit.Forbidden},
		{w.admin, w.tenant, "x", []string{"projects:read", "settings:*"}, nil, tenantkit.Forbidden},
		{w.admin, w.tenant, "x", []string{"projects"}, nil, tenantkit.Invalid},
		{w.admin, w.tenant, "x", []string{}, nil, tenantkit.Invalid},
		{w.admin, w.tenant, " ", []string{"projects:read"}, nil, tenantkit.Invalid},
		{w.admin, w.tenant, "x", []string{"projects:read"}, &past, tenantkit.Invalid},
		{w.admin, w.other, "x", []string{"projects:read"}, nil, tenantkit.NotFound},
		{"", w.tenant, "x", []string{"projects:read"}, nil, tenantkit.Unauthenticated},
	} {
		if _, _, err := w.keys.Create(ctx, as(c.by), c.tenant, c.name, c.scopes, c.expires); code(err) != c.want {
			t.Errorf("create by %q in %s, name %q scopes %v: %v, want %s", c.by, c.tenant, c.name, c.scopes, err, c.want)
		}
	}
	// a member given api_keys:manage may delegate what they hold, no more
	teams := &team.Service{Store: w.keys.Store.(team.Store)}
	if _, err := teams.ChangeRole(ctx, as(w.owner), w.tenant, w.member, "member", []string{"api_keys:manage"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.keys.Create(ctx, as(w.member), w.tenant, "member's", []string{"projects:write"}, nil); err != nil {
		t.Errorf("a member with api_keys:manage delegating projects:write: %v", err)
	}
	if _, _, err := w.keys.Create(ctx, as(w.member), w.tenant, "x", []string{"projects:*"}, nil); code(err) != tenantkit.Forbidden {
		t.Errorf("a member delegating projects:*: %v", err)
	}
	if keys, err := w.keys.List(ctx, as(w.owner), w.tenant); err != nil || len(keys) != 1 {
		t.Fatalf("%d keys after one allowed creation (%v)", len(keys), err)
	}
	k, secret, err := w.keys.Create(ctx, as(w.admin), w.tenant, "CI deploy", []string{"users:invite", "projects:*"}, nil)
	if err != nil || len(secret) != len("tk_live_")+16+1+52 || k.CreatedBy != w.admin || len(k.Scopes) != 2 {
		t.Errorf("Create = %+v, %d characters of secret, %v", k, len(secret), err)
	}
}

// TestRevokeAndList: only the tenant's managers revoke and list; revoking twice changes nothing.
func TestRevokeAndList(t *testing.T) {
	t.Parallel()
	w := newKeysWorld(t)
	ctx := context.Background()
	k, _, err := w.keys.Create(ctx, as(w.owner), w.tenant, "reader", []string{"projects:read"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{w.guest, w.otherOwner} {
		if _, err := w.keys.Revoke(ctx, as(who), k.ID); code(err) != tenantkit.NotFound {
			t.Errorf("revoke by %s: %v, want not_found", who, err)
		}
	}
	r1, err := w.keys.Revoke(ctx, as(w.owner), k.ID)
	if err != nil || r1.RevokedAt == nil || r1.TenantID != w.tenant {
		t.Fatalf("Revoke = %+v, %v", r1, err)
	}
	if r2, err := w.keys.Revoke(ctx, as(w.owner), k.ID); err != nil || !r2.RevokedAt.Equal(*r1.RevokedAt) {
		t.Errorf("revoking twice: %+v then %+v (%v)", r1, r2, err)
	}
	if _, err := w.keys.Revoke(ctx, as(w.owner), "not-an-id"); code(err) != tenantkit.Invalid {
		t.Errorf("a malformed key id: %v", err)
	}
	keys, err := w.keys.List(ctx, as(w.admin), w.tenant)
	if err != nil || len(keys) != 1 || keys[0].Status(time.Now()) != "revoked" {
		t.Errorf("List = %+v, %v", keys, err)
	}
	if _, err := w.keys.List(ctx, as(w.guest), w.tenant); code(err) != tenantkit.Forbidden {
		t.Errorf("a guest lists keys: %v", err)
	}
	if _, err := w.keys.List(ctx, as(w.owner), w.other); code(err) != tenantkit.NotFound {
		t.Errorf("another tenant's keys: %v", err)
	}
}
