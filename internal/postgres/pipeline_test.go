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

// TestMembershipRead: the caller's membership (checkPermission's read, QueryRowAsSystem) gives the
// caller's own row only, runs as tenantkit_system in one round trip whose role setting ends with it
// (the pooled connection goes back clean, also after an error), and sees a committed change at once.
func TestMembershipRead(t *testing.T) {
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

	role := func(user string) string {
		t.Helper()
		m, err := db.Membership(ctx, tenantkit.UserSession(user), tn.id)
		switch {
		case tenantkit.ErrorCode(err) == tenantkit.NotFound:
			return ""
		case err != nil:
			t.Fatalf("membership of %s: %v", user, err)
		case m.UserID != user || m.TenantID != tn.id:
			t.Fatalf("membership of %s: got %+v", user, m)
		}
		return string(m.Role)
	}
	clean := func(step string) {
		t.Helper()
		var who string
		if err := db.Pool.QueryRow(ctx, `SELECT current_user::text`).Scan(&who); err != nil {
			t.Fatal(err)
		}
		if who == postgres.SystemRole || who == postgres.AppRole {
			t.Fatalf("%s: the pooled connection kept role %s", step, who)
		}
	}

	if got := role(member); got != "member" {
		t.Fatalf("member's role %q, want member", got)
	}
	clean("after a member's read")
	if got := role(tn.owner); got != "owner" {
		t.Fatalf("owner's role %q, want owner", got)
	}
	if got := role(outsider); got != "" {
		t.Fatalf("a non-member got role %q", got)
	}
	clean("after a non-member's read")

	var who string
	if err := db.QueryRowAsSystem(ctx, func(row pgx.Row) error { return row.Scan(&who) }, `SELECT current_user::text`); err != nil || who != postgres.SystemRole {
		t.Fatalf("QueryRowAsSystem ran as %s (%v), want %s", who, err, postgres.SystemRole)
	}
	err = db.QueryRowAsSystem(ctx, func(row pgx.Row) error { var x int; return row.Scan(&x) }, `SELECT 1 / 0`)
	if tenantkit.ErrorCode(err) == "" {
		t.Fatal("a failing statement returned no error")
	}
	clean("after an error")

	fxExec(t, admin, `UPDATE tenant_users SET role = 'guest' WHERE tenant_id = $1 AND user_id = $2`, tn.id, member)
	if got := role(member); got != "guest" {
		t.Fatalf("after the demotion: role %q, want guest", got)
	}
	fxExec(t, admin, `DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tn.id, member)
	if got := role(member); got != "" {
		t.Fatalf("after the removal: role %q", got)
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
	db, err := postgres.Open(ctx, url, "")
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
	custom, err := postgres.Open(ctx, url+sep+"statement_timeout=300ms", "")
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
