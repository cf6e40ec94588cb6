package postgres_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// closedPort is a TCP port on 127.0.0.1 nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestOpenSaysWhyItCannotConnect: a database that cannot be reached, one that refuses the login, and
// a login without tenantkit's roles each get their own one-line message naming the variable, the
// address and what to check; the first says so once (pgx's own error repeats each attempt), and
// none of them is the missing-role message.
func TestOpenSaysWhyItCannotConnect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	port := closedPort(t)
	good := pgtest.NewDB(t)
	with := func(mod func(u *url.URL)) string {
		u, err := url.Parse(good)
		if err != nil {
			t.Fatal(err)
		}
		mod(u)
		return u.String()
	}
	for _, c := range []struct {
		name        string
		url         string
		unreachable bool
		want        []string
	}{
		{"nothing listens", "postgres://tenantkit:secret-pw@127.0.0.1:" + strconv.Itoa(port) + "/tenantkit",
			true, []string{"cannot reach PostgreSQL at 127.0.0.1:" + strconv.Itoa(port), "DATABASE_URL", "connection refused", "check that PostgreSQL is running"}},
		{"unknown host", "postgres://tenantkit@db.invalid:5432/tenantkit?connect_timeout=5",
			true, []string{"cannot reach PostgreSQL at db.invalid:5432", `unknown host "db.invalid"`, "check the host in DATABASE_URL"}},
		{"no such database", with(func(u *url.URL) { u.Path = "/no_such_db_" + strconv.Itoa(port) }),
			false, []string{"refused user", "the database does not exist", "check the database name in DATABASE_URL"}},
		{"no such role", with(func(u *url.URL) { u.User = url.User("no_such_role_" + strconv.Itoa(port)) }),
			false, []string{"refused user", `role "no_such_role_`, "does not exist", "pg_hba.conf"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			db, err := postgres.Open(ctx, c.url, "")
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			var ce *postgres.ConnectError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %q, want a *postgres.ConnectError", err, err)
			}
			msg := err.Error()
			if ce.Unreachable != c.unreachable {
				t.Errorf("Unreachable = %v, want %v: %s", ce.Unreachable, c.unreachable, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, "cannot switch to role") || strings.Contains(msg, "secret-pw") {
				t.Errorf("want one line, without the role message or the password:\n%s", msg)
			}
			if n := strings.Count(msg, "refused"); n > 1 {
				t.Errorf("the cause is repeated %d times:\n%s", n, msg)
			}
			// migrate says the same, before goose gets a chance to say it otherwise
			if err := postgres.Migrate(ctx, c.url, "status", io.Discard); err == nil || err.Error() != msg {
				t.Errorf("migrate: %v\nwant: %s", err, msg)
			}
		})
	}

	t.Run("a login without tenantkit's roles is not an unreachable database", func(t *testing.T) {
		conn, err := postgres.Open(ctx, good, "")
		if err != nil {
			t.Fatal(err)
		}
		role := "no_tenantkit_roles_" + strconv.Itoa(port)
		if _, err := conn.Pool.Exec(ctx, "CREATE ROLE "+role+" LOGIN"); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		t.Cleanup(func() {
			if db, err := postgres.Open(ctx, good, ""); err == nil {
				_, _ = db.Pool.Exec(ctx, "DROP ROLE IF EXISTS "+role)
				db.Close()
			}
		})
		u, _ := url.Parse(good)
		u.User = url.User(role)
		_, err = postgres.Open(ctx, u.String(), "")
		var ce *postgres.ConnectError
		if err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), "cannot switch to role tenantkit_app") {
			t.Errorf("got %v, want the missing-role message", err)
		}
	})
}

// TestSingleConnectionsTakePoolSettings: the URLs the service's pools read may carry pgxpool's own
// parameters (pool_max_conns…); the commands that open one connection with the same URL
// (migrate, the policy form, Hasura's grants, the reachability check) do not send them to
// PostgreSQL, which would refuse the connection.
func TestSingleConnectionsTakePoolSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, err := url.Parse(pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "3")
	q.Set("pool_max_conn_lifetime", "1h")
	u.RawQuery = q.Encode()
	dbURL := u.String()
	if err := postgres.Reachable(ctx, "DATABASE_URL", dbURL); err != nil {
		t.Errorf("Reachable: %v", err)
	}
	if err := postgres.Migrate(ctx, dbURL, "status", io.Discard); err != nil {
		t.Errorf("migrate status: %v", err)
	}
	if _, err := postgres.SetPolicyForm(ctx, dbURL, postgres.InlinePolicies); err != nil {
		t.Errorf("policy form: %v", err)
	}
	if err := postgres.GrantHasura(ctx, dbURL); err != nil {
		t.Errorf("Hasura's grants: %v", err)
	}
}
