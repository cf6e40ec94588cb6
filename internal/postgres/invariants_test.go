package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// Invariants the schema promises whatever the client: the Go and SQL role tables agree, a malformed
// or foreign session sees nothing, plan limits hold under concurrency, a tenant keeps an owner, and
// usage is counted exactly once.

func TestRoleTableMatchesDatabase(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()

	t.Run("role_grants equals RolePermissions", func(t *testing.T) {
		t.Parallel()
		for _, r := range tenantkit.Roles {
			var got []string
			if err := fxAs(ctx, db, uuid.NewString(), func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, "SELECT tenantkit.role_grants($1::tenant_role)", string(r)).Scan(&got)
			}); err != nil {
				t.Fatalf("role_grants(%s): %v", r, err)
			}
			want := slices.Clone(tenantkit.RolePermissions[r])
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("role %s: database grants %q, Go grants %q", r, got, want)
			}
		}
		var sqlRoles []string
		fxQueryRow(t, admin, "SELECT enum_range(NULL::tenant_role)::text[]").Scan(&sqlRoles)
		var goRoles []string
		for _, r := range tenantkit.Roles {
			goRoles = append(goRoles, string(r))
		}
		if !slices.Equal(sqlRoles, goRoles) {
			t.Errorf("tenant_role is %q in the database (in order), Go has %q", sqlRoles, goRoles)
		}
	})

	t.Run("grant_matches equals GrantMatches", func(t *testing.T) {
		t.Parallel()
		pairs := [][2]string{
			{"*", "users:invite"}, {"*", "*"}, {"*", ""}, {"*", "projects:*"},
			{"projects:read", "projects:read"}, {"projects:read", "projects:write"}, {"projects:read", "users:read"},
			{"projects:read", "projects:*"}, {"projects:read", "*"}, {"projects:read", "projects:re"},
			{"projects:read", "projects:readx"}, {"projects:read", "Projects:read"},
			{"users:*", "users:invite"}, {"users:*", "users:*"}, {"users:*", "users"}, {"users:*", "users:"},
			{"users:*", "usersettings:read"}, {"users:*", "user:invite"}, {"users:*", "projects:read"},
			{"users:*", "*"}, {"users:*", "users:invite:extra"}, {"users:*", "Users:invite"},
			{"users:*", "users:x"}, {"users*", "users:x"}, {"users*", "usersx"}, {"users*", "users*"},
			{":*", ":"}, {":*", ":x"}, {":*", "x"}, {"*:*", "*:x"}, {"a:*", "a:b:c"}, {"a:b:*", "a:b:c"},
			{"a:b:*", "a:bc"}, {"é:*", "é:x"}, {"é:*", "é:"}, {"", ""}, {"", "x"}, {"x", ""},
			{"users:*", " users:invite"}, {"users:* ", "users:invite"}, {"%:*", "%:x"}, {"_:*", "a:x"},
			{"users:%", "users:invite"}, {"users:_", "users:x"},
		}
		var gs, ps []string
		for _, p := range pairs {
			gs, ps = append(gs, p[0]), append(ps, p[1])
		}
		var got []bool
		if err := fxAs(ctx, db, uuid.NewString(), func(tx pgx.Tx) error {
			rows, _ := tx.Query(ctx, "SELECT tenantkit.grant_matches(g, p) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY x(g, p, n) ORDER BY n", gs, ps)
			var err error
			got, err = pgx.CollectRows(rows, pgx.RowTo[bool])
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for i, p := range pairs {
			if want := tenantkit.GrantMatches(p[0], p[1]); got[i] != want {
				t.Errorf("grant_matches(%q, %q) = %v, GrantMatches = %v", p[0], p[1], got[i], want)
			}
		}
	})

	t.Run("allows equals Allows", func(t *testing.T) {
		t.Parallel()
		customs := [][]string{nil, {"users:invite"}, {"billing:*", "reports:read"}, {"tenants:delete", "settings:*"}, {"*"}}
		perms := []string{
			"projects:read", "projects:write", "projects:delete", "projects:*", "users:invite", "users:write",
			"users:*", "users", "usersettings:read", "settings:read", "settings:write", "settings:delete",
			"billing:read", "billing:*", "billingx:read", "tenants:delete", "reports:read", "reports:write", "*",
		}
		var rs, cs, ps []string
		for _, r := range tenantkit.Roles {
			for _, c := range customs {
				for _, p := range perms {
					b, _ := json.Marshal(c)
					if c == nil {
						b = []byte("[]")
					}
					rs, cs, ps = append(rs, string(r)), append(cs, string(b)), append(ps, p)
				}
			}
		}
		var got []bool
		if err := fxAs(ctx, db, uuid.NewString(), func(tx pgx.Tx) error {
			rows, _ := tx.Query(ctx, `SELECT tenantkit.allows(r, c, p)
				FROM unnest($1::tenant_role[], $2::jsonb[], $3::text[]) WITH ORDINALITY x(r, c, p, n) ORDER BY n`, rs, cs, ps)
			var err error
			got, err = pgx.CollectRows(rows, pgx.RowTo[bool])
			return err
		}); err != nil {
			t.Fatal(err)
		}
		i := 0
		for _, r := range tenantkit.Roles {
			for _, c := range customs {
				for _, p := range perms {
					if want := tenantkit.Allows(r, c, p); got[i] != want {
						t.Errorf("allows(%s, %q, %q) = %v, Allows = %v", r, c, p, got[i], want)
					}
					i++
				}
			}
		}
	})

	t.Run("valid_permissions equals ValidPermission", func(t *testing.T) {
		t.Parallel()
		part63 := "a" + strings.Repeat("b", 62)
		cases := []string{
			"*", "projects:*", "users:invite", "a:b", "billing_v2:read_all", part63 + ":" + part63,
			"", "Projects:read", "users", "users:", ":read", "a:b:c", "users:*x", "*:read", "**",
			"users:read\n", "users :read", "users:read' OR '1'='1", "usérs:read", part63 + "x:read", "users:" + part63 + "x",
		}
		for _, p := range cases {
			arr, _ := json.Marshal([]string{p})
			var got bool
			fxQueryRow(t, admin, "SELECT tenantkit.valid_permissions($1::jsonb)", string(arr)).Scan(&got)
			if want := tenantkit.ValidPermission(p); got != want {
				t.Errorf("valid_permissions([%q]) = %v, ValidPermission = %v", p, got, want)
			}
		}
	})
}

// TestSessions: who is the caller. Every malformed, ambiguous or foreign hasura.user is "nobody" for
// the tenant, never an error, and the one format Hasura uses is understood.
func TestSessions(t *testing.T) {
	t.Parallel()
	_, admin := setup(t)
	tn := fxTenant(t, admin, fxPlanKey("starter"))
	fxProjects(t, admin, tn.id, tn.owner, 1)
	fxInvite(t, admin, tn.id, "pending", time.Hour)
	fxExec(t, admin, `INSERT INTO billing_usage (tenant_id, metric, period_start, period_end, quantity)
		VALUES ($1, 'api_calls', '2025-01-01T10:00:00Z', '2025-01-01T11:00:00Z', 3)`, tn.id)
	fxExec(t, admin, `INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at)
		VALUES ($1, 'e1', 'api_calls', 3, '2025-01-01T10:00:00Z')`, tn.id)
	stranger := fxUser(t, admin) // an auth user with no membership anywhere
	other := uuid.NewString()

	const unset = "\x00unset" // not a value PostgreSQL can hold: marks "never set"
	nobody := []struct {
		name string
		raw  string
		who  string // what current_user_id() returns: "" for NULL
	}{
		{"unset", unset, ""},
		{"empty", "", ""},
		{"blank", "   ", ""},
		{"not JSON", "not json", ""},
		{"truncated JSON", `{"x-hasura-user-id":"` + tn.owner + `"`, ""},
		{"an array", "[]", ""},
		{"an array holding the owner", `["` + tn.owner + `"]`, ""},
		{"a string", `"string"`, ""},
		{"the owner's id as a bare string", `"` + tn.owner + `"`, ""},
		{"an empty object", "{}", ""},
		{"no user id", `{"x-hasura-role":"user"}`, ""},
		{"a user id that is no UUID", `{"x-hasura-user-id":"not-a-uuid"}`, ""},
		{"a null user id", `{"x-hasura-user-id":null}`, ""},
		{"a numeric user id", `{"x-hasura-user-id":123}`, ""},
		{"the owner's id in an array", `{"x-hasura-user-id":["` + tn.owner + `"]}`, ""},
		{"the owner's id in an object", `{"x-hasura-user-id":{"id":"` + tn.owner + `"}}`, ""},
		{"the owner's id nested", `{"session":{"x-hasura-user-id":"` + tn.owner + `"}}`, ""},
		{"the owner's id under another name", `{"x-hasura-owner-id":"` + tn.owner + `"}`, ""},
		{"the owner's id twice in different case", `{"x-hasura-user-id":"` + tn.owner + `","X-Hasura-User-Id":"` + other + `"}`, ""},
		{"a user id with SQL in it", `{"x-hasura-user-id":"` + tn.owner + `' OR '1'='1"}`, ""},
		{"a non-member", `{"x-hasura-role":"user","x-hasura-user-id":"` + stranger + `"}`, stranger},
		{"an unknown user", `{"x-hasura-role":"user","x-hasura-user-id":"` + other + `"}`, other},
	}
	tenantTables := []struct {
		name                 string
		updatable, deletable bool // tenantkit_app holds the UPDATE, DELETE grant (else refused with 42501)
	}{
		{"tenants", true, false}, // deleted through deleteTenant only
		{"tenant_users", true, true}, {"tenant_invitations", true, true}, {"projects", true, true},
		{"tenant_subscriptions", false, false}, {"billing_usage", false, false},
	}
	noop := map[string]string{
		"tenants": "name = name", "tenant_users": "role = role", "tenant_invitations": "email = email",
		"projects": "name = name", "tenant_subscriptions": "status = status", "billing_usage": "quantity = quantity",
	}

	for _, s := range nobody {
		t.Run("nobody: "+s.name, func(t *testing.T) {
			t.Parallel()
			caller := s.who
			if caller == "" {
				caller = tn.owner // the insert attempts name the owner, who is not the caller
			}
			fxRaw(t, admin, s.raw != unset, s.raw, func(tx pgx.Tx) {
				if s.raw == unset {
					var setting *string
					fxTxRow(t, tx, "SELECT current_setting('hasura.user', true)").Scan(&setting)
					if setting != nil {
						t.Fatalf("hasura.user is %q on a fresh connection, want unset", *setting)
					}
				}
				var who *string
				fxTxRow(t, tx, "SELECT tenantkit.current_user_id()::text").Scan(&who)
				switch {
				case s.who == "" && who != nil:
					t.Errorf("current_user_id() = %s, want NULL", *who)
				case s.who != "" && (who == nil || *who != s.who):
					t.Errorf("current_user_id() = %v, want %s", who, s.who)
				}
				for _, tb := range tenantTables {
					if n := fxTxCount(t, tx, "SELECT count(*) FROM "+tb.name); n != 0 {
						t.Errorf("sees %d rows of %s", n, tb.name)
					}
					for stmt, writable := range map[string]bool{
						fmt.Sprintf("UPDATE %s SET %s", tb.name, noop[tb.name]): tb.updatable,
						"DELETE FROM " + tb.name:                                tb.deletable,
					} {
						n, code := fxTry(t, tx, stmt)
						switch {
						case writable && (code != "" || n != 0):
							t.Errorf("%s: %d rows, SQLSTATE %q; want 0 rows and no error", stmt, n, code)
						case !writable && code != "42501":
							t.Errorf("%s: %d rows, SQLSTATE %q; want 42501 (no grant)", stmt, n, code)
						}
					}
				}
				for _, stmt := range []string{
					fmt.Sprintf("INSERT INTO projects (tenant_id, name, owner_id) VALUES ('%s', 'mine', '%s')", tn.id, caller),
					fmt.Sprintf("INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ('%s', '%s', 'owner')", tn.id, caller),
					fmt.Sprintf("INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ('%s', '%s', 'guest')", tn.id, stranger),
					fmt.Sprintf("INSERT INTO tenant_invitations (tenant_id, email, role, token_hash) VALUES ('%s', 'x@example.com', 'guest', sha256('x'))", tn.id),
				} {
					if n, code := fxTry(t, tx, stmt); code != "42501" {
						t.Errorf("%s: %d rows, SQLSTATE %q; want 42501", stmt, n, code)
					}
				}
				// System tables a tenant's owners read for an export (00016): nobody reads a row, and
				// nobody writes (no grant).
				for _, tb := range []string{"tenantkit.usage_events", "tenantkit.stripe_subscriptions", "tenantkit.email_outbox", "tenantkit.invitation_sends"} {
					if n, code := fxTry(t, tx, "SELECT * FROM "+tb); code != "" || n != 0 {
						t.Errorf("%s: %d rows, SQLSTATE %q; want none", tb, n, code)
					}
					if n, code := fxTry(t, tx, "DELETE FROM "+tb); code != "42501" {
						t.Errorf("DELETE FROM %s: %d rows, SQLSTATE %q; want 42501", tb, n, code)
					}
				}
				if n := fxTxCount(t, tx, "SELECT count(*) FROM subscription_plans"); n != 4 {
					t.Errorf("sees %d plans, want the 4 seeded ones", n)
				}
			})
		})
	}

	for _, s := range []struct{ name, raw string }{
		{"exactly as Hasura formats it", `{"x-hasura-role":"user","x-hasura-user-id":"` + tn.owner + `"}`},
		{"with an upper-case name", `{"x-hasura-role":"user","X-Hasura-User-Id":"` + tn.owner + `"}`},
		{"with spaces and an upper-case UUID", ` { "X-HASURA-USER-ID" : "` + strings.ToUpper(tn.owner) + `" } `},
	} {
		t.Run("the owner: "+s.name, func(t *testing.T) {
			t.Parallel()
			fxRaw(t, admin, true, s.raw, func(tx pgx.Tx) {
				var who *string
				fxTxRow(t, tx, "SELECT tenantkit.current_user_id()::text").Scan(&who)
				if who == nil || *who != tn.owner {
					t.Errorf("current_user_id() = %v, want %s", who, tn.owner)
				}
				var id string
				fxTxRow(t, tx, "SELECT id::text FROM tenants").Scan(&id)
				if id != tn.id {
					t.Errorf("sees tenant %s, want %s", id, tn.id)
				}
				for _, tb := range tenantTables {
					if n := fxTxCount(t, tx, "SELECT count(*) FROM "+tb.name); n != 1 {
						t.Errorf("sees %d rows of %s, want 1", n, tb.name)
					}
				}
				if n := fxTxCount(t, tx, "SELECT count(*) FROM subscription_plans"); n != 4 {
					t.Errorf("sees %d plans, want 4", n)
				}
			})
		})
	}

	// A query PostgreSQL runs with a parallel plan evaluates the policies' InitPlans in parallel
	// mode; the session must read the same there.
	t.Run("the owner under a parallel plan", func(t *testing.T) {
		t.Parallel()
		var version int
		fxQueryRow(t, admin, "SELECT current_setting('server_version_num')::int").Scan(&version)
		force := "force_parallel_mode"
		if version >= 160000 {
			force = "debug_parallel_query"
		}
		fxRaw(t, admin, true, `{"x-hasura-role":"user","x-hasura-user-id":"`+tn.owner+`"}`, func(tx pgx.Tx) {
			fxTxExec(t, tx, "SELECT set_config($1, 'on', true), set_config('parallel_setup_cost', '0', true), set_config('parallel_tuple_cost', '0', true), set_config('min_parallel_table_scan_size', '0', true)", force)
			n, code := fxTry(t, tx, "SELECT * FROM projects")
			if code != "" || n != 1 {
				t.Errorf("SELECT * FROM projects under a parallel plan: %d rows, SQLSTATE %q; want 1 row", n, code)
			}
		})
	})
}

func TestPlanLimits(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()

	t.Run("the default plan is Free: 3 users, 3 projects", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin)
		var key string
		var users, projects int64
		fxQueryRow(t, admin, `SELECT (SELECT key FROM subscription_plans WHERE is_default),
			tenantkit.plan_limit($1, 'users'), tenantkit.plan_limit($1, 'projects')`, tn.id).Scan(&key, &users, &projects)
		if key != "free" || users != 3 || projects != 3 {
			t.Errorf("default plan %s allows %d users and %d projects; want free, 3 and 3", key, users, projects)
		}
		if n := fxCount(t, admin, "SELECT count(*) FROM tenant_subscriptions WHERE tenant_id = $1", tn.id); n != 0 {
			t.Fatalf("the tenant has %d subscriptions, want none (default plan)", n)
		}
	})

	t.Run("the 11th project is refused and changes nothing", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("starter"))
		for i := range 10 {
			if err := fxNewProject(ctx, db, tn.id, tn.owner); err != nil {
				t.Fatalf("project %d: %v", i+1, err)
			}
		}
		err := fxNewProject(ctx, db, tn.id, tn.owner)
		if code := tenantkit.ErrorCode(err); code != tenantkit.PlanLimit {
			t.Fatalf("11th project: %v (code %q), want %s", err, code, tenantkit.PlanLimit)
		}
		if n := fxCount(t, admin, "SELECT count(*) FROM projects WHERE tenant_id = $1", tn.id); n != 10 {
			t.Errorf("%d projects after the refusal, want 10", n)
		}
		// An outsider writing into the full tenant meets RLS first and learns nothing of the plan.
		stranger := fxUser(t, admin)
		if code := tenantkit.ErrorCode(fxNewProject(ctx, db, tn.id, stranger)); code != tenantkit.Forbidden {
			t.Errorf("outsider's project in a full tenant: code %q, want %s (not %s)", code, tenantkit.Forbidden, tenantkit.PlanLimit)
		}
	})

	t.Run("a batch crossing the limit is refused whole", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("starter"))
		fxProjects(t, admin, tn.id, tn.owner, 9)
		err := fxAs(ctx, db, tn.owner, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO projects (tenant_id, name, owner_id) VALUES ($1, 'a', $2), ($1, 'b', $2)", tn.id, tn.owner)
			return err
		})
		if code := tenantkit.ErrorCode(err); code != tenantkit.PlanLimit {
			t.Fatalf("two projects at 9: %v, want %s", err, tenantkit.PlanLimit)
		}
		if n := fxCount(t, admin, "SELECT count(*) FROM projects WHERE tenant_id = $1", tn.id); n != 9 {
			t.Errorf("%d projects, want 9", n)
		}
	})

	t.Run("members and pending unexpired invitations take seats", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("starter"))
		// neither takes a seat
		expired := fxInvite(t, admin, tn.id, "pending", -time.Hour)
		fxInvite(t, admin, tn.id, "revoked", time.Hour)
		fxInvite(t, admin, tn.id, "accepted", time.Hour)
		fxInvite(t, admin, tn.id, "expired", time.Hour)
		for i := range 3 {
			u := fxUser(t, admin)
			if err := fxAs(ctx, db, tn.owner, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'member')", tn.id, u)
				return err
			}); err != nil {
				t.Fatalf("member %d: %v", i+1, err)
			}
		}
		pending, err := fxOwnerInvites(ctx, db, tn, "fifth@example.com")
		if err != nil {
			t.Fatalf("owner + 3 members + this invitation = 5 seats: %v", err)
		}
		seats := func() int64 {
			return fxCount(t, admin, `SELECT (SELECT count(*) FROM tenant_users WHERE tenant_id = $1)
				+ (SELECT count(*) FROM tenant_invitations WHERE tenant_id = $1 AND status = 'pending' AND expires_at > now())`, tn.id)
		}
		if _, err := fxOwnerInvites(ctx, db, tn, "sixth@example.com"); tenantkit.ErrorCode(err) != tenantkit.PlanLimit {
			t.Errorf("6th seat by invitation: %v, want %s", err, tenantkit.PlanLimit)
		}
		sixth := fxUser(t, admin)
		err = fxAs(ctx, db, tn.owner, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'guest')", tn.id, sixth)
			return err
		})
		if tenantkit.ErrorCode(err) != tenantkit.PlanLimit {
			t.Errorf("6th seat by membership: %v, want %s", err, tenantkit.PlanLimit)
		}
		err = fxAs(ctx, db, tn.owner, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE tenant_invitations SET expires_at = now() + interval '7 days' WHERE tenant_id = $1 AND id = $2", tn.id, expired)
			return err
		})
		if tenantkit.ErrorCode(err) != tenantkit.PlanLimit {
			t.Errorf("renewing an expired invitation at the limit: %v, want %s", err, tenantkit.PlanLimit)
		}
		if n := seats(); n != 5 {
			t.Errorf("%d seats taken after the refusals, want 5", n)
		}
		// revoking the pending invitation frees its seat
		if err := fxAs(ctx, db, tn.owner, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE tenant_invitations SET status = 'revoked' WHERE tenant_id = $1 AND id = $2", tn.id, pending)
			return err
		}); err != nil {
			t.Fatalf("revoke: %v", err)
		}
		if _, err := fxOwnerInvites(ctx, db, tn, "sixth@example.com"); err != nil {
			t.Errorf("invitation after a revoke freed a seat: %v", err)
		}
		if n := seats(); n != 5 {
			t.Errorf("%d seats taken, want 5", n)
		}
	})

	t.Run("an upgrade lifts the limit at once, a downgrade keeps rows and refuses new ones", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("starter"))
		fxProjects(t, admin, tn.id, tn.owner, 10)
		if err := fxNewProject(ctx, db, tn.id, tn.owner); tenantkit.ErrorCode(err) != tenantkit.PlanLimit {
			t.Fatalf("11th project on starter: %v, want %s", err, tenantkit.PlanLimit)
		}
		fxSetPlan(t, admin, tn.id, "enterprise")
		for i := range 5 {
			if err := fxNewProject(ctx, db, tn.id, tn.owner); err != nil {
				t.Fatalf("project %d on enterprise: %v", 11+i, err)
			}
		}
		for i := range 5 { // owner + 5 invitations: users are unlimited too
			if _, err := fxOwnerInvites(ctx, db, tn, fmt.Sprintf("e%d@example.com", i)); err != nil {
				t.Fatalf("invitation %d on enterprise: %v", i+1, err)
			}
		}
		fxSetPlan(t, admin, tn.id, "starter")
		if n := fxCount(t, admin, "SELECT count(*) FROM projects WHERE tenant_id = $1", tn.id); n != 15 {
			t.Errorf("%d projects after the downgrade, want the 15 kept", n)
		}
		if err := fxNewProject(ctx, db, tn.id, tn.owner); tenantkit.ErrorCode(err) != tenantkit.PlanLimit {
			t.Errorf("16th project after the downgrade: %v, want %s", err, tenantkit.PlanLimit)
		}
		if _, err := fxOwnerInvites(ctx, db, tn, "late@example.com"); tenantkit.ErrorCode(err) != tenantkit.PlanLimit {
			t.Errorf("7th seat after the downgrade: %v, want %s", err, tenantkit.PlanLimit)
		}
		// existing rows stay editable, and deleting below the limit makes room again
		if err := fxAs(ctx, db, tn.owner, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "UPDATE projects SET name = name || '!' WHERE tenant_id = $1", tn.id); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "DELETE FROM projects WHERE tenant_id = $1 AND id IN (SELECT id FROM projects WHERE tenant_id = $1 LIMIT 6)", tn.id)
			return err
		}); err != nil {
			t.Fatalf("edit and delete after the downgrade: %v", err)
		}
		if err := fxNewProject(ctx, db, tn.id, tn.owner); err != nil {
			t.Errorf("project at 9 of 10 after deleting: %v", err)
		}
		if n := fxCount(t, admin, "SELECT count(*) FROM projects WHERE tenant_id = $1", tn.id); n != 10 {
			t.Errorf("%d projects, want 10", n)
		}
	})

	t.Run("concurrent inserts stop exactly at the limit", func(t *testing.T) {
		t.Parallel()
		const writers = 20
		wide := fxWidePool(t, db, writers)
		tn := fxTenant(t, admin, fxPlanKey("starter"))
		fxProjects(t, admin, tn.id, tn.owner, 8)
		start := make(chan struct{})
		var ready sync.WaitGroup
		ready.Add(writers)
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				errs[i] = fxAs(ctx, wide, tn.owner, func(tx pgx.Tx) error {
					ready.Done() // every writer has its own open transaction before any inserts
					<-start
					_, err := tx.Exec(ctx, "INSERT INTO projects (tenant_id, name, owner_id) VALUES ($1, $2, $3)", tn.id, fmt.Sprint("racer ", i), tn.owner)
					return err
				})
			})
		}
		opened := fxAwait(&ready, 30*time.Second)
		close(start)
		wg.Wait()
		if !opened {
			t.Fatalf("not every writer opened a transaction: %v", errs)
		}
		var ok, limited int
		for _, err := range errs {
			switch tenantkit.ErrorCode(err) {
			case "":
				ok++
			case tenantkit.PlanLimit:
				limited++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}
		if ok != 2 || limited != writers-2 {
			t.Errorf("%d inserts succeeded and %d hit the limit; want 2 and %d", ok, limited, writers-2)
		}
		if n := fxCount(t, admin, "SELECT count(*) FROM projects WHERE tenant_id = $1", tn.id); n != 10 {
			t.Errorf("%d projects, want 10", n)
		}
	})
}

func TestLastOwner(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	owners := func(t *testing.T, tenant string) []string {
		t.Helper()
		rows, _ := admin.Query(ctx, "SELECT user_id::text FROM tenant_users WHERE tenant_id = $1 AND role = 'owner' ORDER BY 1", tenant)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	expect := func(t *testing.T, err error, code string) {
		t.Helper()
		if got := tenantkit.ErrorCode(err); got != code {
			t.Fatalf("got %v (code %q), want code %q", err, got, code)
		}
	}
	setRole := func(actor, tenant, user string, r tenantkit.Role) error {
		return fxAs(ctx, db, actor, func(tx pgx.Tx) error {
			return fxExactlyOne(tx.Exec(ctx, "UPDATE tenant_users SET role = $3 WHERE tenant_id = $1 AND user_id = $2", tenant, user, string(r)))
		})
	}
	remove := func(actor, tenant, user string) error {
		return fxAs(ctx, db, actor, func(tx pgx.Tx) error {
			return fxExactlyOne(tx.Exec(ctx, "DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $2", tenant, user))
		})
	}

	t.Run("the only owner cannot be demoted", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin)
		expect(t, setRole(tn.owner, tn.id, tn.owner, tenantkit.Admin), tenantkit.LastOwner)
		if got := owners(t, tn.id); !slices.Equal(got, []string{tn.owner}) {
			t.Errorf("owners %v, want %v", got, []string{tn.owner})
		}
	})

	t.Run("the only owner cannot leave", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin)
		fxMember(t, admin, tn.id, tenantkit.Admin)
		expect(t, remove(tn.owner, tn.id, tn.owner), tenantkit.LastOwner)
		if got := owners(t, tn.id); !slices.Equal(got, []string{tn.owner}) {
			t.Errorf("owners %v, want %v", got, []string{tn.owner})
		}
	})

	t.Run("the only owner cannot be removed, even by the superuser", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin)
		_, err := admin.Exec(ctx, "DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $2", tn.id, tn.owner)
		if code := fxSQLState(err); code != "TK002" {
			t.Fatalf("delete the only owner: %v, want SQLSTATE TK002", err)
		}
		_, err = admin.Exec(ctx, "DELETE FROM auth.users WHERE id = $1", tn.owner)
		if code := fxSQLState(err); code != "TK002" {
			t.Fatalf("delete the only owner's account: %v, want SQLSTATE TK002", err)
		}
		other := fxTenant(t, admin)
		_, err = admin.Exec(ctx, "UPDATE tenant_users SET tenant_id = $2 WHERE tenant_id = $1 AND user_id = $3", tn.id, other.id, tn.owner)
		if code := fxSQLState(err); code != "TK002" {
			t.Fatalf("move the only owner to another tenant: %v, want SQLSTATE TK002", err)
		}
		if got := owners(t, tn.id); !slices.Equal(got, []string{tn.owner}) {
			t.Errorf("owners %v, want %v", got, []string{tn.owner})
		}
	})

	t.Run("an admin cannot remove the owner", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin)
		adm := fxMember(t, admin, tn.id, tenantkit.Admin)
		err := remove(adm, tn.id, tn.owner)
		if !errors.Is(err, errFxNoRow) {
			t.Errorf("admin removes owner: %v, want no row touched", err)
		}
	})

	t.Run("one of several owners can be demoted, or leave", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin)
		second := fxMember(t, admin, tn.id, tenantkit.Owner)
		third := fxMember(t, admin, tn.id, tenantkit.Owner)
		if err := setRole(tn.owner, tn.id, second, tenantkit.Admin); err != nil {
			t.Fatalf("an owner demotes another of three: %v", err)
		}
		if err := remove(third, tn.id, third); err != nil {
			t.Fatalf("one of two owners leaves: %v", err)
		}
		if got := owners(t, tn.id); !slices.Equal(got, []string{tn.owner}) {
			t.Errorf("owners %v, want %v", got, []string{tn.owner})
		}
		expect(t, setRole(tn.owner, tn.id, tn.owner, tenantkit.Member), tenantkit.LastOwner)
	})

	t.Run("ownership transfers in one transaction", func(t *testing.T) {
		t.Parallel()
		transfer := func(tx pgx.Tx, tn fxTenantRef, heir string, demoteFirst bool) error {
			steps := []struct {
				user string
				role tenantkit.Role
			}{{heir, tenantkit.Owner}, {tn.owner, tenantkit.Admin}}
			if demoteFirst {
				slices.Reverse(steps)
			}
			for _, s := range steps {
				if err := fxExactlyOne(tx.Exec(ctx, "UPDATE tenant_users SET role = $3 WHERE tenant_id = $1 AND user_id = $2", tn.id, s.user, string(s.role))); err != nil {
					return err
				}
			}
			return nil
		}
		// The owner promotes first: once demoted, it could no longer make anyone owner.
		tn := fxTenant(t, admin)
		heir := fxMember(t, admin, tn.id, tenantkit.Admin)
		if err := fxAs(ctx, db, tn.owner, func(tx pgx.Tx) error { return transfer(tx, tn, heir, false) }); err != nil {
			t.Fatalf("owner transfers: %v", err)
		}
		if got := owners(t, tn.id); !slices.Equal(got, []string{heir}) {
			t.Errorf("owners after the transfer %v, want %v", got, []string{heir})
		}
		// The check runs at commit, so on the system path the order does not matter.
		for _, demoteFirst := range []bool{false, true} {
			tn := fxTenant(t, admin)
			heir := fxMember(t, admin, tn.id, tenantkit.Member)
			if err := db.WithSystem(ctx, func(tx pgx.Tx) error { return transfer(tx, tn, heir, demoteFirst) }); err != nil {
				t.Fatalf("system transfers (demote first: %v): %v", demoteFirst, err)
			}
			if got := owners(t, tn.id); !slices.Equal(got, []string{heir}) {
				t.Errorf("owners after the transfer %v, want %v", got, []string{heir})
			}
		}
	})

	t.Run("two owners demoting each other concurrently keep one owner", func(t *testing.T) {
		t.Parallel()
		for range 5 {
			tn := fxTenant(t, admin)
			b := fxMember(t, admin, tn.id, tenantkit.Owner)
			var updated sync.WaitGroup
			updated.Add(2)
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i, pair := range [][2]string{{tn.owner, b}, {b, tn.owner}} {
				wg.Go(func() {
					done := false
					errs[i] = fxAs(ctx, db, pair[0], func(tx pgx.Tx) error {
						err := fxExactlyOne(tx.Exec(ctx, "UPDATE tenant_users SET role = 'admin' WHERE tenant_id = $1 AND user_id = $2", tn.id, pair[1]))
						done = true
						updated.Done()
						if err != nil {
							return err
						}
						updated.Wait() // both updates are done before either commits
						return nil
					})
					if !done {
						updated.Done()
					}
				})
			}
			wg.Wait()
			var ok, last int
			for _, err := range errs {
				switch tenantkit.ErrorCode(err) {
				case "":
					ok++
				case tenantkit.LastOwner:
					last++
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
			if ok != 1 || last != 1 {
				t.Errorf("%d commits and %d last-owner refusals, want 1 and 1", ok, last)
			}
			if got := owners(t, tn.id); len(got) != 1 {
				t.Errorf("owners %v, want exactly one", got)
			}
		}
	})

	t.Run("deleting the tenant removes its owners", func(t *testing.T) {
		t.Parallel()
		bySystem := fxTenant(t, admin)
		fxMember(t, admin, bySystem.id, tenantkit.Owner)
		fxProjects(t, admin, bySystem.id, bySystem.owner, 2)
		if err := db.WithSystem(ctx, func(tx pgx.Tx) error {
			return fxExactlyOne(tx.Exec(ctx, "DELETE FROM tenants WHERE id = $1", bySystem.id))
		}); err != nil {
			t.Fatalf("system deletes the tenant: %v", err)
		}
		bySuperuser := fxTenant(t, admin)
		fxExec(t, admin, "DELETE FROM tenants WHERE id = $1", bySuperuser.id)
		for _, id := range []string{bySystem.id, bySuperuser.id} {
			if n := fxCount(t, admin, "SELECT (SELECT count(*) FROM tenants WHERE id = $1) + (SELECT count(*) FROM tenant_users WHERE tenant_id = $1) + (SELECT count(*) FROM projects WHERE tenant_id = $1)", id); n != 0 {
				t.Errorf("tenant %s: %d rows left", id, n)
			}
		}
	})

	// Deleting goes through deleteTenant (a soft deletion, the Stripe cancellation, the restore
	// window): no member, the owner included, may DELETE the row or set its deletion mark.
	t.Run("no member deletes the tenant row", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin)
		adm := fxMember(t, admin, tn.id, tenantkit.Admin)
		for _, u := range []string{tn.owner, adm} {
			for _, stmt := range []string{"DELETE FROM tenants WHERE id = $1", "UPDATE tenants SET deleted_at = now() WHERE id = $1"} {
				err := fxAs(ctx, db, u, func(tx pgx.Tx) error { return fxExactlyOne(tx.Exec(ctx, stmt, tn.id)) })
				if fxSQLState(err) != "42501" {
					t.Errorf("%s as %s: %v, want permission denied", stmt, u, err)
				}
			}
		}
		if n := fxCount(t, admin, "SELECT count(*) FROM tenants WHERE id = $1 AND deleted_at IS NULL", tn.id); n != 1 {
			t.Error("the tenant is gone")
		}
	})
}

type usageEvent struct {
	tenant, key, metric string
	quantity            int64 // in ten-thousandths, the scale of numeric(20, 4)
	at                  time.Time
}

type usagePeriod struct {
	tenant, metric string
	hour           time.Time
}

func TestUsageAggregation(t *testing.T) {
	t.Parallel()
	const (
		writers  = 16
		batches  = 50
		perBatch = 100
	)
	db, admin := setup(t)
	wide := fxWidePool(t, db, writers)
	ctx := context.Background()
	tenants := []fxTenantRef{fxTenant(t, admin), fxTenant(t, admin), fxTenant(t, admin)}
	metrics := []string{"api_calls", "storage_bytes"}
	base := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	// Event n is always the same event, so resending its key is a duplicate. The key alone repeats
	// across tenants (n%3 picks the tenant, n/3 the key): the idempotency key is per tenant.
	event := func(n int) usageEvent {
		return usageEvent{
			tenant:   tenants[n%3].id,
			key:      "evt-" + strconv.Itoa(n/3),
			metric:   metrics[(n/3)%2],
			quantity: int64(n%7+1)*10000 + int64(n%4)*2500,
			at:       base.Add(time.Duration((n/6)%2)*time.Hour + time.Duration(n%3599)*time.Second),
		}
	}
	// 16 writers × 50 batches × 100 events drawn from 40,000 distinct ones, plus explicit duplicates
	// inside each batch and from the writer's previous batch.
	plan := make([][][]int, writers)
	for w := range writers {
		rng := mrand.New(mrand.NewPCG(uint64(w), 42))
		for b := range batches {
			batch := make([]int, 0, perBatch)
			for len(batch) < perBatch-10 {
				batch = append(batch, rng.IntN(40000))
			}
			for len(batch) < perBatch-5 {
				batch = append(batch, batch[rng.IntN(len(batch))])
			}
			for len(batch) < perBatch {
				if b > 0 {
					prev := plan[w][b-1]
					batch = append(batch, prev[rng.IntN(len(prev))])
				} else {
					batch = append(batch, batch[rng.IntN(len(batch))])
				}
			}
			rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
			plan[w] = append(plan[w], batch)
		}
	}
	want := map[usagePeriod]int64{}
	distinct := map[int]bool{}
	for _, w := range plan {
		for _, b := range w {
			for _, n := range b {
				if !distinct[n] {
					distinct[n] = true
					e := event(n)
					want[usagePeriod{e.tenant, e.metric, e.at.Truncate(time.Hour)}] += e.quantity
				}
			}
		}
	}
	ingest := func(batch []int) error {
		events := make([]billing.UsageEvent, len(batch))
		for i, n := range batch {
			e := event(n)
			events[i] = billing.UsageEvent{TenantID: e.tenant, IdempotencyKey: e.key, Metric: e.metric,
				Quantity: float64(e.quantity) / 10000, OccurredAt: e.at}
		}
		_, _, err := wide.RecordUsage(ctx, events) // the production ingestion path
		return err
	}
	// sendAll ingests every batch while the fold runs over and over, as serve's would.
	sendAll := func(t *testing.T) {
		t.Helper()
		var wg sync.WaitGroup
		var failed atomic.Int64
		stop := make(chan struct{})
		folds := make(chan error, 1)
		go func() {
			for {
				select {
				case <-stop:
					folds <- nil
					return
				default:
				}
				if _, err := db.FoldUsage(ctx); err != nil {
					folds <- err
					return
				}
			}
		}()
		defer func() {
			close(stop)
			if err := <-folds; err != nil {
				t.Errorf("fold during ingestion: %v", err)
			}
		}()
		for w := range writers {
			wg.Go(func() {
				for _, b := range plan[w] {
					if err := ingest(b); err != nil {
						if failed.Add(1) <= 3 {
							t.Errorf("writer %d: %v", w, err)
						}
						return
					}
				}
			})
		}
		wg.Wait()
		if failed.Load() > 0 {
			t.FailNow()
		}
	}
	// totals reads the hourly totals from (the counters and the events not folded yet, or only the
	// counters).
	totals := func(t *testing.T, from string, q func(sql string) (pgx.Rows, error)) map[usagePeriod]int64 {
		t.Helper()
		rows, _ := q(`SELECT tenant_id::text, metric, period_start, (sum(quantity) * 10000)::bigint,
			bool_and(period_end = period_start + interval '1 hour')
			FROM ` + from + ` GROUP BY tenant_id, metric, period_start`)
		got := map[usagePeriod]int64{}
		var p usagePeriod
		var q4 int64
		var hourly bool
		_, err := pgx.ForEachRow(rows, []any{&p.tenant, &p.metric, &p.hour, &q4, &hourly}, func() error {
			if !hourly {
				return fmt.Errorf("%v: a counter row is not one hour long", p)
			}
			p.hour = p.hour.UTC()
			got[p] = q4
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	compare := func(t *testing.T, got, want map[usagePeriod]int64) {
		t.Helper()
		for p, q := range want {
			if got[p] != q {
				t.Errorf("%s %s %s: total %d, want %d (ten-thousandths)", p.tenant, p.metric, p.hour.Format(time.RFC3339), got[p], q)
			}
		}
		for p := range got {
			if _, ok := want[p]; !ok {
				t.Errorf("unexpected period %v", p)
			}
		}
	}
	adminQuery := func(sql string) (pgx.Rows, error) { return admin.Query(ctx, sql) }

	// What every exact reader reads: the counters and the events the fold has not reached.
	const exact = `(SELECT t.id AS tenant_id, h.metric, h.period_start, h.period_start + interval '1 hour' AS period_end, h.quantity
		FROM tenants t, tenantkit.usage_hours(t.id) h) h`
	sendAll(t)
	if len(want) != 12 {
		t.Fatalf("the model has %d periods, want 3 tenants × 2 metrics × 2 hours", len(want))
	}
	compare(t, totals(t, exact, adminQuery), want)
	pgtest.SettleUsage(t, admin)
	compare(t, totals(t, "billing_usage", adminQuery), want) // folded: the counters alone, as Hasura reads them
	if n := fxCount(t, admin, "SELECT count(*) FROM tenantkit.usage_events"); n != int64(len(distinct)) {
		t.Errorf("%d events stored, want %d distinct", n, len(distinct))
	}
	slots := fxCount(t, admin, "SELECT count(DISTINCT slot) FROM billing_usage")
	t.Logf("%d events sent, %d distinct, %d periods, %d slots used", writers*batches*perBatch, len(distinct), len(want), slots)

	t.Run("resending every batch changes nothing", func(t *testing.T) {
		var before string
		fxQueryRow(t, admin, "SELECT string_agg(format('%s/%s/%s/%s=%s', tenant_id, metric, period_start, slot, quantity), ',' ORDER BY 1) FROM billing_usage").Scan(&before)
		sendAll(t)
		pgtest.SettleUsage(t, admin)
		var after string
		fxQueryRow(t, admin, "SELECT string_agg(format('%s/%s/%s/%s=%s', tenant_id, metric, period_start, slot, quantity), ',' ORDER BY 1) FROM billing_usage").Scan(&after)
		if before != after {
			t.Error("counter rows changed after resending")
		}
		compare(t, totals(t, exact, adminQuery), want)
		if n := fxCount(t, admin, "SELECT count(*) FROM tenantkit.usage_events"); n != int64(len(distinct)) {
			t.Errorf("%d events stored, want %d", n, len(distinct))
		}
	})

	t.Run("periods are UTC hours whatever the session time zone", func(t *testing.T) {
		tn := fxTenant(t, admin)
		at := time.Date(2025, 3, 1, 10, 45, 0, 0, time.UTC)
		url := admin.Config().ConnString()
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		kolkata, err := postgres.Open(ctx, url+sep+"timezone=Asia%2FKolkata", "") // UTC+05:30
		if err != nil {
			t.Fatal(err)
		}
		defer kolkata.Close()
		if _, _, err := kolkata.RecordUsage(ctx, []billing.UsageEvent{{TenantID: tn.id, IdempotencyKey: "tz", Metric: "api_calls", Quantity: 1, OccurredAt: at}}); err != nil {
			t.Fatal(err)
		}
		var hour time.Time
		fxQueryRow(t, admin, "SELECT period_start FROM tenantkit.usage_hours($1)", tn.id).Scan(&hour)
		if want := at.Truncate(time.Hour); !hour.Equal(want) {
			t.Errorf("unfolded event's hour %s, want %s", hour.UTC(), want)
		}
		if _, err := kolkata.FoldUsage(ctx); err != nil { // the fold, too, in the other time zone
			t.Fatal(err)
		}
		pgtest.SettleUsage(t, admin)
		var start, end time.Time
		fxQueryRow(t, admin, "SELECT period_start, period_end FROM billing_usage WHERE tenant_id = $1", tn.id).Scan(&start, &end)
		if want := at.Truncate(time.Hour); !start.Equal(want) || !end.Equal(want.Add(time.Hour)) {
			t.Errorf("period [%s, %s), want [%s, %s)", start.UTC(), end.UTC(), want, want.Add(time.Hour))
		}
	})

	t.Run("a member sees its tenant's usage and no events", func(t *testing.T) {
		mine := tenants[1]
		member := fxMember(t, admin, mine.id, tenantkit.Guest)
		wantMine := map[usagePeriod]int64{}
		for p, q := range want {
			if p.tenant == mine.id {
				wantMine[p] = q
			}
		}
		var got map[usagePeriod]int64
		if err := fxAs(ctx, db, member, func(tx pgx.Tx) error {
			got = totals(t, "billing_usage", func(sql string) (pgx.Rows, error) { return tx.Query(ctx, sql) })
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		compare(t, got, wantMine)
		// The raw events are read by the tenant's owners only (for an export): a member sees none.
		err := fxAs(ctx, db, member, func(tx pgx.Tx) error {
			rows, _ := tx.Query(ctx, "SELECT tenant_id FROM tenantkit.usage_events")
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err == nil && len(ids) > 0 {
				return fmt.Errorf("sees %d events", len(ids))
			}
			return err
		})
		if err != nil {
			t.Errorf("reading usage_events as a member: %v", err)
		}
		// A table without any grant to tenantkit_app: refused by PostgreSQL (42501), and, being no
		// row-level security refusal, reported as a misconfiguration (unavailable), never as the
		// user's fault (forbidden).
		err = fxAs(ctx, db, member, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "SELECT FROM tenantkit.invitation_outbox")
			return err
		})
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" || tenantkit.ErrorCode(err) != tenantkit.Unavailable {
			t.Errorf("reading invitation_outbox as a member: %v, want SQLSTATE 42501 reported as %s", err, tenantkit.Unavailable)
		}
	})
}

// Fixtures. Everything is arranged as the superuser (behind RLS's back, but through the triggers)
// with sensible defaults; the behaviour under test then runs as the service would.

type fxTenantRef struct{ id, owner string }

type fxTenantOption func(*fxTenantOptions)

type fxTenantOptions struct{ plan string }

// fxPlanKey gives the tenant a subscription to the plan with that key (default: none, so the
// default plan applies).
func fxPlanKey(key string) fxTenantOption { return func(o *fxTenantOptions) { o.plan = key } }

// fxUser creates an auth user with a verified email and returns its id.
func fxUser(t testing.TB, admin *pgxpool.Pool) string {
	t.Helper()
	id := uuid.NewString()
	fxExec(t, admin, "INSERT INTO auth.users (id, email, display_name, email_verified) VALUES ($1::text::uuid, $1::text || '@example.com', 'user ' || $1::text, true)", id)
	return id
}

// fxTenant creates a tenant with one owner.
func fxTenant(t testing.TB, admin *pgxpool.Pool, opts ...fxTenantOption) fxTenantRef {
	t.Helper()
	var o fxTenantOptions
	for _, opt := range opts {
		opt(&o)
	}
	tn := fxTenantRef{id: uuid.NewString(), owner: fxUser(t, admin)}
	fxExec(t, admin, "INSERT INTO tenants (id, slug, name) VALUES ($1::text::uuid, 't-' || $1::text, 'Tenant ' || $1::text)", tn.id)
	fxExec(t, admin, "INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner')", tn.id, tn.owner)
	if o.plan != "" {
		fxSetPlan(t, admin, tn.id, o.plan)
	}
	return tn
}

// fxMember creates a user with that role in the tenant and returns its id.
func fxMember(t testing.TB, admin *pgxpool.Pool, tenant string, r tenantkit.Role) string {
	t.Helper()
	u := fxUser(t, admin)
	fxExec(t, admin, "INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, $3)", tenant, u, string(r))
	return u
}

// fxProjects creates n projects owned by owner.
func fxProjects(t testing.TB, admin *pgxpool.Pool, tenant, owner string, n int) {
	t.Helper()
	fxExec(t, admin, "INSERT INTO projects (tenant_id, name, owner_id) SELECT $1, 'project ' || i, $2 FROM generate_series(1, $3::int) i", tenant, owner, n)
}

// fxInvite creates a guest invitation with that status, expiring after expiresIn (negative: already
// expired), and returns its id.
func fxInvite(t testing.TB, admin *pgxpool.Pool, tenant, status string, expiresIn time.Duration) string {
	t.Helper()
	id := uuid.NewString()
	fxExec(t, admin, `INSERT INTO tenant_invitations (tenant_id, id, email, role, status, token_hash, expires_at)
		VALUES ($1, $2::text::uuid, $2::text || '@example.com', 'guest', $3, sha256($2::text::bytea), now() + $4::interval)`,
		tenant, id, status, fmt.Sprintf("%d microseconds", expiresIn.Microseconds()))
	return id
}

// fxSetPlan subscribes the tenant to the plan with that key, or switches its subscription.
func fxSetPlan(t testing.TB, admin *pgxpool.Pool, tenant, key string) {
	t.Helper()
	fxExec(t, admin, `INSERT INTO tenant_subscriptions (tenant_id, plan_id, status)
		VALUES ($1, (SELECT id FROM subscription_plans WHERE key = $2), 'active')
		ON CONFLICT (tenant_id) DO UPDATE SET plan_id = EXCLUDED.plan_id`, tenant, key)
}

// fxNewProject creates a project as the user, through the service's user path.
func fxNewProject(ctx context.Context, db *postgres.DB, tenant, user string) error {
	return fxAs(ctx, db, user, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO projects (tenant_id, name, owner_id) VALUES ($1, 'new project', $2)", tenant, user)
		return err
	})
}

// fxOwnerInvites invites email as a member, as the tenant's owner, and returns the invitation's id.
func fxOwnerInvites(ctx context.Context, db *postgres.DB, tn fxTenantRef, email string) (string, error) {
	var id string
	err := fxAs(ctx, db, tn.owner, func(tx pgx.Tx) error {
		token := make([]byte, 32)
		rand.Read(token)
		return tx.QueryRow(ctx, `INSERT INTO tenant_invitations (tenant_id, email, role, invited_by, token_hash)
			VALUES ($1, $2, 'member', $3, sha256($4)) RETURNING id::text`, tn.id, email, tn.owner, token).Scan(&id)
	})
	return id, err
}

// fxAs runs fn as the user, exactly as the service does, and commits when fn returns nil.
func fxAs(ctx context.Context, db *postgres.DB, user string, fn func(pgx.Tx) error) error {
	return db.WithUser(ctx, tenantkit.UserSession(user), fn)
}

// fxRaw runs fn on a fresh connection, in a transaction as tenantkit_app with hasura.user set to
// raw (or never set when set is false), then rolls back.
func fxRaw(t *testing.T, admin *pgxpool.Pool, set bool, raw string, fn func(pgx.Tx)) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, admin.Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	fxTxExec(t, tx, "SET LOCAL ROLE tenantkit_app")
	if set {
		fxTxExec(t, tx, "SELECT set_config('hasura.user', $1, true)", raw)
	}
	fn(tx)
}

// fxTry runs stmt inside a savepoint and returns the rows it affected (or returned) and its
// SQLSTATE ("" on success). The transaction stays usable either way.
func fxTry(t *testing.T, tx pgx.Tx, stmt string) (int64, string) {
	t.Helper()
	ctx := context.Background()
	fxTxExec(t, tx, "SAVEPOINT fx_try")
	var n int64
	var err error
	if strings.HasPrefix(stmt, "SELECT") {
		rows, _ := tx.Query(ctx, stmt)
		for rows.Next() {
			n++
		}
		rows.Close()
		err = rows.Err()
	} else {
		var tag pgconn.CommandTag
		tag, err = tx.Exec(ctx, stmt)
		n = tag.RowsAffected()
	}
	code := fxSQLState(err)
	if err != nil && code == "" {
		t.Fatalf("%s: %v", stmt, err)
	}
	fxTxExec(t, tx, "ROLLBACK TO SAVEPOINT fx_try")
	return n, code
}

func fxSQLState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

var errFxNoRow = errors.New("the statement touched no row")

// fxExactlyOne turns an Exec result into an error unless exactly one row was affected.
func fxExactlyOne(tag pgconn.CommandTag, err error) error {
	switch {
	case err != nil:
		return err
	case tag.RowsAffected() == 0:
		return errFxNoRow
	case tag.RowsAffected() != 1:
		return fmt.Errorf("%d rows affected, want 1", tag.RowsAffected())
	}
	return nil
}

// fxWidePool opens a second service pool on the test database with room for n concurrent
// transactions (the default pool has only max(4, CPUs) connections).
func fxWidePool(t *testing.T, db *postgres.DB, n int) *postgres.DB {
	t.Helper()
	widen := func(p *pgxpool.Pool) string {
		u, err := url.Parse(p.Config().ConnString())
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("pool_max_conns", strconv.Itoa(n))
		u.RawQuery = q.Encode()
		return u.String()
	}
	appURL := ""
	if db.SeparateLogins() {
		appURL = widen(db.App)
	}
	wide, err := postgres.Open(context.Background(), widen(db.Pool), appURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wide.Close)
	return wide
}

// fxAwait waits for wg and reports whether it was done before timeout (a barrier that can never
// open must not hang the test).
func fxAwait(wg *sync.WaitGroup, timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func fxExec(t testing.TB, admin *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := admin.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

func fxCount(t testing.TB, admin *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := admin.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	return n
}

// fxQueryRow returns a row whose Scan fails the test on error.
func fxQueryRow(t testing.TB, admin *pgxpool.Pool, sql string, args ...any) fxRow {
	return fxRow{t, admin.QueryRow(context.Background(), sql, args...), sql}
}

func fxTxRow(t testing.TB, tx pgx.Tx, sql string, args ...any) fxRow {
	return fxRow{t, tx.QueryRow(context.Background(), sql, args...), sql}
}

type fxRow struct {
	t   testing.TB
	row pgx.Row
	sql string
}

func (r fxRow) Scan(dest ...any) {
	r.t.Helper()
	if err := r.row.Scan(dest...); err != nil {
		r.t.Fatalf("%v\n%s", err, r.sql)
	}
}

func fxTxExec(t testing.TB, tx pgx.Tx, sql string, args ...any) {
	t.Helper()
	if _, err := tx.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

func fxTxCount(t testing.TB, tx pgx.Tx, sql string) int64 {
	t.Helper()
	var n int64
	fxTxRow(t, tx, sql).Scan(&n)
	return n
}
