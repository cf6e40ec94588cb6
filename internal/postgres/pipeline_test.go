package postgres_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// TestQueryRowAsUser: the one-round-trip read runs as tenantkit_app with the session's claims, so
// RLS applies as under WithUser (and QueryRowAsSystem as tenantkit_system, without claims); the
// settings end with the statement (the connection goes back to the pool clean, also after an
// error); and a committed change is seen by the next read.
func TestQueryRowAsUser(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	// One connection: every read below reuses it.
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	db := &postgres.DB{Pool: pool}
	tn := fxTenant(t, admin)
	member := fxMember(t, admin, tn.id, tenantkit.Member)
	outsider := fxUser(t, admin)

	read := func(user string) (who, role string, rows int) {
		t.Helper()
		err := db.QueryRowAsUser(ctx, tenantkit.UserSession(user), func(row pgx.Row) error {
			return row.Scan(&who, &role, &rows)
		}, `SELECT current_user::text,
		           coalesce((SELECT role::text FROM tenant_users WHERE tenant_id = $1 AND user_id = $2), ''),
		           (SELECT count(*)::int FROM tenant_users WHERE tenant_id = $1)`, tn.id, user)
		if err != nil {
			t.Fatalf("read as %s: %v", user, err)
		}
		return who, role, rows
	}
	clean := func(step string) {
		t.Helper()
		var who, claims string
		if err := db.Pool.QueryRow(ctx, `SELECT current_user::text, coalesce(current_setting('hasura.user', true), '')`).Scan(&who, &claims); err != nil {
			t.Fatal(err)
		}
		if who == postgres.AppRole || claims != "" {
			t.Fatalf("%s: the pooled connection kept role %s and claims %q", step, who, claims)
		}
	}

	if who, role, rows := read(member); who != postgres.AppRole || role != "member" || rows != 2 {
		t.Fatalf("member: ran as %s, saw role %q and %d memberships; want %s, member, 2", who, role, rows, postgres.AppRole)
	}
	clean("after a member's read")
	if _, role, rows := read(outsider); role != "" || rows != 0 {
		t.Fatalf("non-member saw role %q and %d memberships", role, rows)
	}
	clean("after a non-member's read")

	err = db.QueryRowAsUser(ctx, tenantkit.UserSession(member), func(row pgx.Row) error { var x int; return row.Scan(&x) },
		`SELECT 1 / 0`)
	if tenantkit.ErrorCode(err) == "" {
		t.Fatal("a failing statement returned no error")
	}
	clean("after an error")

	var who, claims string
	if err := db.QueryRowAsSystem(ctx, func(row pgx.Row) error { return row.Scan(&who, &claims) },
		`SELECT current_user::text, current_setting('hasura.user')`); err != nil || who != postgres.SystemRole || claims != "" {
		t.Fatalf("QueryRowAsSystem ran as %s with claims %q (%v), want %s and none", who, claims, err, postgres.SystemRole)
	}
	clean("after a system read")

	fxExec(t, admin, `UPDATE tenant_users SET role = 'guest' WHERE tenant_id = $1 AND user_id = $2`, tn.id, member)
	if _, role, _ := read(member); role != "guest" {
		t.Fatalf("after the demotion: role %q, want guest", role)
	}
	fxExec(t, admin, `DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tn.id, member)
	if _, role, rows := read(member); role != "" || rows != 0 {
		t.Fatalf("after the removal: role %q and %d rows", role, rows)
	}
}

// TestSettingsQuoting: whatever the session holds (quotes, backslashes, SQL), the transaction runs
// as the role with hasura.user exactly the session's JSON, under either setting of
// standard_conforming_strings.
func TestSettingsQuoting(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	ctx := context.Background()
	for _, scs := range []string{"on", "off"} {
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["standard_conforming_strings"] = scs
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		db := &postgres.DB{Pool: pool}
		for _, v := range []string{`it's`, `back\slash`, `\'`, `'\'; SELECT 1; --`, `"quoted"`, `\\'' OR 1=1`, "tab\tnewline\n", `E'x'`, "é 🙂"} {
			s := tenantkit.NewSession(map[string]string{"x-hasura-role": "user", "x-hasura-user-id": v, "x-hasura-extra": v})
			want, err := json.Marshal(s.Vars)
			if err != nil {
				t.Fatal(err)
			}
			var who, got, gotSCS string
			err = db.WithUser(ctx, s, func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, `SELECT current_user::text, current_setting('hasura.user'), current_setting('standard_conforming_strings')`).Scan(&who, &got, &gotSCS)
			})
			if err != nil {
				t.Fatalf("%q (scs %s): %v", v, scs, err)
			}
			if who != postgres.AppRole || got != string(want) || gotSCS != scs {
				t.Errorf("%q (scs %s): ran as %s with hasura.user %s (scs %s), want %s with %s", v, scs, who, got, gotSCS, postgres.AppRole, want)
			}
		}
	}
}

// TestTimeouts: the pool's connections carry the default timeouts unless DATABASE_URL sets its own,
// and a statement stopped by statement_timeout is an unavailable error, not an internal one.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	ctx := context.Background()
	show := func(db *postgres.DB) (stmt, idle string) {
		t.Helper()
		if err := db.Pool.QueryRow(ctx, `SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')`).Scan(&stmt, &idle); err != nil {
			t.Fatal(err)
		}
		return stmt, idle
	}
	db, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if stmt, idle := show(db); stmt != "25s" || idle != "1min" {
		t.Fatalf("defaults: statement_timeout %s, idle_in_transaction_session_timeout %s", stmt, idle)
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	custom, err := postgres.Open(ctx, url+sep+"statement_timeout=300ms")
	if err != nil {
		t.Fatal(err)
	}
	defer custom.Close()
	if stmt, _ := show(custom); stmt != "300ms" {
		t.Fatalf("DATABASE_URL's statement_timeout not kept: %s", stmt)
	}
	err = custom.WithSystem(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT pg_sleep(2)`)
		return err
	})
	if code := tenantkit.ErrorCode(err); code != tenantkit.Unavailable {
		t.Fatalf("a statement over statement_timeout: %v (code %q), want unavailable", err, code)
	}
}
