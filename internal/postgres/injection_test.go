package postgres_test

import (
	"context"
	"fmt"
	neturl "net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// escalations are what a statement injected into user work would try, to leave tenantkit_app for
// a role that sees every tenant.
var escalations = []string{
	`RESET ROLE`,
	`SET ROLE tenantkit_system`,
	`SELECT set_config('role', 'tenantkit_system', true)`,
	`SET SESSION AUTHORIZATION postgres`,
	`SET ROLE postgres`,
}

// TestInjectedRoleChangeGainsNothing: inside a user transaction of a member of tenant A, none of the
// escalations reads anything of tenant B, because the user pool's login is a member of
// tenantkit_app only (README "Database roles"). Each escalation either fails (42501) or leaves a
// role that reads nothing of B. The check is proved able to fail: with one login for both pools
// (a member of both roles, as before APP_DATABASE_URL), the same statements read B.
func TestInjectedRoleChangeGainsNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, admin := setup(t)
	a, b := fxTenant(t, admin), fxTenant(t, admin)
	member := fxMember(t, admin, a.id, tenantkit.Member)
	fxProjects(t, admin, a.id, a.owner, 2)
	fxProjects(t, admin, b.id, b.owner, 3)

	t.Run("without an escalation the member reads A and not B", func(t *testing.T) {
		if got := readTenants(ctx, t, db, member, "", a.id); got.refused != "" || got.rows["projects"] != 2 || got.rows["tenant_users"] != 2 || got.rows["tenants"] != 1 {
			t.Errorf("tenant A as its member: %+v", got)
		}
		if got := readTenants(ctx, t, db, member, "", b.id); got.leaked() {
			t.Errorf("tenant B as a member of A: %+v", got)
		}
	})

	t.Run("separate logins: no escalation reads B", func(t *testing.T) {
		if !db.SeparateLogins() {
			t.Fatal("setup's DB has one login for both pools")
		}
		for _, stmt := range escalations {
			got := readTenants(ctx, t, db, member, stmt, b.id)
			if got.leaked() {
				t.Errorf("%s: read tenant B: %+v", stmt, got)
			}
			t.Logf("%s: %s", stmt, got)
		}
	})

	t.Run("one login for both pools: the check sees the leak", func(t *testing.T) {
		url := pgtest.NewDB(t)
		both := fxBothRolesLogin(t, url)
		single, err := postgres.Open(ctx, both, "")
		if err != nil {
			t.Fatal(err)
		}
		defer single.Close()
		sa := fxAdmin(t, url)
		a, b := fxTenant(t, sa), fxTenant(t, sa)
		member := fxMember(t, sa, a.id, tenantkit.Member)
		fxProjects(t, sa, b.id, b.owner, 3)
		var leaks []string
		for _, stmt := range escalations {
			if got := readTenants(ctx, t, single, member, stmt, b.id); got.leaked() {
				leaks = append(leaks, fmt.Sprintf("%s: %s", stmt, got))
			}
		}
		t.Logf("leaks with one login:\n%s", strings.Join(leaks, "\n"))
		if len(leaks) == 0 {
			t.Error("no escalation read tenant B through a login that is a member of both roles: the check cannot see a leak")
		}
	})
}

// tenantRead is what one user transaction read of one tenant after an injected statement.
type tenantRead struct {
	refused string           // the injected statement's SQLSTATE when it failed (nothing else ran)
	role    string           // current_user after it
	rows    map[string]int64 // rows of the tenant per table read
	denied  map[string]string
}

func (r tenantRead) leaked() bool {
	for _, n := range r.rows {
		if n > 0 {
			return true
		}
	}
	return false
}

func (r tenantRead) String() string {
	if r.refused != "" {
		return "refused, SQLSTATE " + r.refused
	}
	return fmt.Sprintf("ran as %s, rows %v, refused reads %v", r.role, r.rows, r.denied)
}

// readTenants runs stmt (none when empty) in a user transaction of user, as an injection would,
// then counts the tenant's rows in tenants, tenant_users and projects, each read in its own
// savepoint so that a refused read does not hide the others.
func readTenants(ctx context.Context, t *testing.T, db *postgres.DB, user, stmt, tenant string) tenantRead {
	t.Helper()
	got := tenantRead{rows: map[string]int64{}, denied: map[string]string{}}
	err := db.WithUser(ctx, tenantkit.UserSession(user), func(tx pgx.Tx) error {
		if stmt != "" {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				got.refused = fxSQLState(err)
				return nil
			}
		}
		if err := tx.QueryRow(ctx, `SELECT current_user::text`).Scan(&got.role); err != nil {
			return err
		}
		for table, where := range map[string]string{"tenants": "id", "tenant_users": "tenant_id", "projects": "tenant_id"} {
			var n int64
			err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
				return sp.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE "+where+" = $1", tenant).Scan(&n)
			})
			if err != nil {
				got.denied[table] = fxSQLState(err)
				continue
			}
			got.rows[table] = n
		}
		return nil
	})
	if err != nil && got.refused == "" {
		t.Fatalf("%s: %v", stmt, err)
	}
	return got
}

// fxBothRolesLogin returns url with the user tk_test_service: a login member of both tenantkit
// roles, as the service's one login was before APP_DATABASE_URL. Created idempotently, never
// dropped (roles are cluster-wide and shared by parallel test processes).
func fxBothRolesLogin(t *testing.T, url string) string {
	t.Helper()
	fxExec(t, fxAdmin(t, url), `DO $$ BEGIN
  BEGIN
    CREATE ROLE tk_test_service LOGIN;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
  BEGIN
    GRANT tenantkit_app, tenantkit_system TO tk_test_service;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
END $$`)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = neturl.User("tk_test_service") // trust authentication
	return u.String()
}

// fxAdmin is a superuser pool on the database at url, closed when the test ends.
func fxAdmin(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	admin, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	return admin
}

// TestOpenChecksTheAppLogin: with APP_DATABASE_URL set, Open refuses a user-pool login that could
// see past RLS or become tenantkit_system, naming the variable and the fix.
func TestOpenChecksTheAppLogin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	admin := fxAdmin(t, url)
	both := fxBothRolesLogin(t, url)
	fxExec(t, admin, `DO $$ BEGIN
  BEGIN
    CREATE ROLE tk_test_bypass_login LOGIN BYPASSRLS;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
  BEGIN
    GRANT tenantkit_app TO tk_test_bypass_login;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
  BEGIN
    CREATE ROLE tk_test_outsider LOGIN;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
END $$`)
	as := func(role string) string {
		u, err := neturl.Parse(url)
		if err != nil {
			t.Fatal(err)
		}
		u.User = neturl.User(role)
		return u.String()
	}
	for _, c := range []struct{ name, appURL, want string }{
		{"a superuser", url, "is a superuser"},
		{"a member of both roles", both, "is a member of tenantkit_system"},
		{"a login with BYPASSRLS", as("tk_test_bypass_login"), "has BYPASSRLS"},
		{"a login outside tenantkit_app", as("tk_test_outsider"), "cannot switch to role tenantkit_app"},
	} {
		t.Run("refuses "+c.name, func(t *testing.T) {
			db, err := postgres.Open(ctx, url, c.appURL)
			if err == nil {
				db.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "APP_DATABASE_URL") {
				t.Errorf("err = %v, want one naming APP_DATABASE_URL and %q", err, c.want)
			}
		})
	}
	t.Run("accepts a member of tenantkit_app only", func(t *testing.T) {
		db, err := postgres.Open(ctx, url, pgtest.AppURL(t, url))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if !db.SeparateLogins() {
			t.Error("SeparateLogins = false")
		}
		if err := db.Ping(ctx); err != nil {
			t.Error(err)
		}
	})
}
