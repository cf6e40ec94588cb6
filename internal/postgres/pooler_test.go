package postgres_test

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/pgbouncer"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// The tests of this file run the service's database layer through PgBouncer in transaction pooling
// mode (internal/pgbouncer): they skip when pgbouncer is not installed, and fail instead when
// TENANTKIT_REQUIRE_PGBOUNCER=1 (CI). They do not run in parallel (with each other or with the
// package's other tests): each holds a dozen or two server connections, and the test server's
// max_connections is shared.

// pooledModes are the query modes allowed behind a transaction pooler ("" is the default,
// PooledQueryMode).
var pooledModes = []string{"", "simple_protocol"}

// withParams returns url with the query parameters kv (name, value, …) added.
func withParams(t testing.TB, url string, kv ...string) string {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// openPooled opens the service's DB through the bouncer, behind a transaction pooler.
func openPooled(t *testing.T, url, appURL string) *postgres.DB {
	t.Helper()
	db, err := postgres.OpenWith(context.Background(), url, appURL, postgres.Options{Pooler: postgres.TransactionPooler})
	if err != nil {
		t.Fatalf("open through PgBouncer: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// txState is what a transaction sees of its session.
type txState struct {
	pid                   int32
	role, claims, userID  string
	statement, lock, idle string
	tenants               []string // the tenants it can read
	searchPath            string
}

const stateSQL = `SELECT pg_backend_pid(), current_user::text, current_setting('hasura.user', true),
	coalesce(tenantkit.current_user_id()::text, ''), current_setting('statement_timeout'), current_setting('lock_timeout'),
	current_setting('idle_in_transaction_session_timeout'),
	ARRAY(SELECT id::text FROM tenants ORDER BY id), current_setting('search_path')`

func scanState(row pgx.Row) (txState, error) {
	var s txState
	err := row.Scan(&s.pid, &s.role, &s.claims, &s.userID, &s.statement, &s.lock, &s.idle, &s.tenants, &s.searchPath)
	return s, err
}

// leftovers are what a transaction could leave on its server connection for the next client:
// session-level settings (not LOCAL), each of which outlives the transaction. tk.test, which
// tenantkit never reads, is the witness that they do.
const leftovers = `SELECT set_config('statement_timeout', '0', false), set_config('lock_timeout', '1ms', false),
	set_config('idle_in_transaction_session_timeout', '0', false), set_config('search_path', 'pg_temp', false),
	set_config('hasura.user', '{"x-hasura-user-id":"00000000-0000-0000-0000-000000000000","x-hasura-role":"user"}', false),
	set_config('tk.test', 'left over', false)`

// TestPoolerSettingsDoNotLeak: two service instances with different settings, and two users, share
// ONE server connection (PgBouncer, transaction pooling, pool_size=1, one login for both pools):
// their transactions, interleaved step by step and then concurrently, each see their own role,
// caller (hasura.user and the id RLS reads from it), timeouts and tenants, never the previous
// transaction's, even when that transaction left session-level settings behind on the connection
// (leftovers), committed or rolled back. For every query mode a transaction pooler allows.
func TestPoolerSettingsDoNotLeak(t *testing.T) {
	for _, mode := range pooledModes { // one after the other: each holds its own connections
		t.Run("mode="+mode, func(t *testing.T) {
			ctx := context.Background()
			url := pgtest.NewDB(t)
			admin := fxAdmin(t, url)
			login := fxBothRolesLogin(t, url) // one login for both pools: system and user work share the server connection
			b := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{PoolSize: 1, Users: []string{"tk_test_service"}})
			// Instance A sets its own timeouts; instance B keeps the defaults.
			dbA := openPooled(t, withParams(t, b.URL(login), "default_query_exec_mode", mode, "statement_timeout", "7s",
				"lock_timeout", "3s", "idle_in_transaction_session_timeout", "11s", "pool_max_conns", "2"), "")
			dbB := openPooled(t, withParams(t, b.URL(login), "default_query_exec_mode", mode, "pool_max_conns", "2"), "")
			ta, tb := fxTenant(t, admin), fxTenant(t, admin)
			userA, userB := fxMember(t, admin, ta.id, tenantkit.Member), fxMember(t, admin, tb.id, tenantkit.Member)
			var defaultSearchPath string
			if err := admin.QueryRow(ctx, `SELECT boot_val FROM pg_settings WHERE name = 'search_path'`).Scan(&defaultSearchPath); err != nil {
				t.Fatal(err)
			}

			wantA := txState{statement: "7s", lock: "3s", idle: "11s"}
			wantB := txState{statement: "25s", lock: "0", idle: "1min"}
			var mu sync.Mutex
			pids := map[int32]bool{}
			check := func(step string, got, want txState, role, user, tenant string) error {
				mu.Lock()
				pids[got.pid] = true
				mu.Unlock()
				want.role, want.userID, want.searchPath = role, user, defaultSearchPath
				want.tenants = []string{}
				if tenant != "" {
					want.tenants = []string{tenant}
				}
				got.claims, got.pid = "", 0
				if role == postgres.SystemRole { // the system role reads every tenant
					want.tenants = got.tenants
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					return fmt.Errorf("%s: saw %+v, want %+v", step, got, want)
				}
				return nil
			}
			asUser := func(db *postgres.DB, user string, leave bool, fail error) (txState, error) {
				var s txState
				err := db.WithUser(ctx, tenantkit.UserSession(user), func(tx pgx.Tx) error {
					var err error
					if s, err = scanState(tx.QueryRow(ctx, stateSQL)); err != nil {
						return err
					}
					if leave {
						if _, err := tx.Exec(ctx, leftovers); err != nil {
							return err
						}
					}
					return fail
				})
				if errors.Is(err, fail) {
					err = nil
				}
				return s, err
			}
			asSystem := func(db *postgres.DB, leave bool) (txState, error) {
				var s txState
				err := db.WithSystem(ctx, func(tx pgx.Tx) error {
					var err error
					if s, err = scanState(tx.QueryRow(ctx, stateSQL)); err != nil {
						return err
					}
					if leave {
						_, err = tx.Exec(ctx, leftovers)
					}
					return err
				})
				return s, err
			}
			oneShot := func(db *postgres.DB) (txState, error) {
				var s txState
				err := db.QueryRowAsSystem(ctx, func(row pgx.Row) error {
					var err error
					s, err = scanState(row)
					return err
				}, stateSQL)
				return s, err
			}
			rollback := errors.New("roll back")

			// Step by step: each transaction follows one that left session-level settings behind.
			steps := []struct {
				name string
				run  func() (txState, error)
				want txState
				role string
				user string
				tn   string
			}{
				{"A as user, leaving settings", func() (txState, error) { return asUser(dbA, userA, true, nil) }, wantA, postgres.AppRole, userA, ta.id},
				{"B as user", func() (txState, error) { return asUser(dbB, userB, false, nil) }, wantB, postgres.AppRole, userB, tb.id},
				{"A as system, leaving settings", func() (txState, error) { return asSystem(dbA, true) }, wantA, postgres.SystemRole, "", ""},
				{"B as user after a system transaction", func() (txState, error) { return asUser(dbB, userB, false, nil) }, wantB, postgres.AppRole, userB, tb.id},
				{"A as user, leaving settings, rolled back", func() (txState, error) { return asUser(dbA, userA, true, rollback) }, wantA, postgres.AppRole, userA, ta.id},
				{"B in one round trip (QueryRowAsSystem)", func() (txState, error) { return oneShot(dbB) }, wantB, postgres.SystemRole, "", ""},
				{"A with no caller", func() (txState, error) { return asUser(dbA, "", false, nil) }, wantA, postgres.AppRole, "", ""},
				{"B as user, leaving settings", func() (txState, error) { return asUser(dbB, userB, true, nil) }, wantB, postgres.AppRole, userB, tb.id},
				{"A in one round trip", func() (txState, error) { return oneShot(dbA) }, wantA, postgres.SystemRole, "", ""},
				{"A as user", func() (txState, error) { return asUser(dbA, userA, false, nil) }, wantA, postgres.AppRole, userA, ta.id},
			}
			for _, s := range steps {
				got, err := s.run()
				if err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if err := check(s.name, got, s.want, s.role, s.user, s.tn); err != nil {
					t.Error(err)
				}
			}
			// The settings left behind are on the connection (the test can see a leak), yet no
			// transaction above saw them.
			var left string
			if err := dbB.WithUser(ctx, tenantkit.UserSession(userB), func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, `SELECT current_setting('tk.test', true)`).Scan(&left)
			}); err != nil || left != "left over" {
				t.Fatalf("the session-level leftover is not on the shared connection (%q, %v): the test proves nothing", left, err)
			}

			// Concurrently: both users hammer the one server connection; PgBouncer interleaves
			// their transactions.
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for _, c := range []struct {
				db         *postgres.DB
				user, tn   string
				want       txState
				leaveEvery int
			}{{dbA, userA, ta.id, wantA, 3}, {dbB, userB, tb.id, wantB, 4}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 60 {
						var got txState
						var err error
						role, user, tn := postgres.AppRole, c.user, c.tn
						switch i % 3 {
						case 0:
							got, err = asUser(c.db, c.user, i%c.leaveEvery == 0, nil)
						case 1:
							got, err = asSystem(c.db, i%c.leaveEvery == 0)
							role, user, tn = postgres.SystemRole, "", ""
						default:
							got, err = oneShot(c.db)
							role, user, tn = postgres.SystemRole, "", ""
						}
						if err == nil {
							err = check(fmt.Sprintf("concurrent %d", i), got, c.want, role, user, tn)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if len(pids) != 1 {
				t.Errorf("the transactions ran on %d server connections, want 1 (pool_size=1): %v", len(pids), pids)
			}
		})
	}
}

// TestPoolerTimeouts: through PgBouncer, the timeouts DATABASE_URL sets still end a statement stuck
// behind a lock (statement_timeout, in a user transaction and in QueryRowAsSystem's single round
// trip) and a transaction left idle (idle_in_transaction_session_timeout), as unavailable errors,
// for every query mode a transaction pooler allows. A direct connection with the same settings
// is the control.
func TestPoolerTimeouts(t *testing.T) {
	for _, mode := range append(pooledModes, "direct") { // one after the other: each holds its own connections
		t.Run("mode="+mode, func(t *testing.T) {
			ctx := context.Background()
			url := pgtest.NewDB(t)
			admin := fxAdmin(t, url)
			params := []string{"statement_timeout", "400ms", "idle_in_transaction_session_timeout", "400ms"}
			var db *postgres.DB
			if mode == "direct" {
				var err error
				if db, err = postgres.Open(ctx, withParams(t, url, params...), withParams(t, pgtest.AppURL(t, url), params...)); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(db.Close)
			} else {
				b := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{PoolSize: 2, Users: []string{pgtest.AppLogin}})
				params = append(params, "default_query_exec_mode", mode)
				db = openPooled(t, withParams(t, b.URL(url), params...), withParams(t, b.URL(pgtest.AppURL(t, url)), params...))
			}
			tn := fxTenant(t, admin)
			// The lock holder: a direct connection, in a transaction, until the test ends.
			holder, err := admin.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Rollback(ctx)
			if _, err := holder.Exec(ctx, `SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE`, tn.id); err != nil {
				t.Fatal(err)
			}
			stuck := func(name string, fn func(ctx context.Context) error) {
				t.Helper()
				// A deadline of the test's own, so that a statement the server does not stop ends
				// the call (late) instead of the test.
				ctx, cancel := context.WithTimeout(ctx, 8*time.Second)
				defer cancel()
				start := time.Now()
				err := fn(ctx)
				took := time.Since(start)
				if code := tenantkit.ErrorCode(err); code != tenantkit.Unavailable {
					t.Errorf("%s: %v (code %q), want unavailable", name, err, code)
				}
				if took < 300*time.Millisecond || took > 5*time.Second {
					t.Errorf("%s: ended after %s, want about the 400ms timeout", name, took)
				}
			}
			stuck("an owner's update of the locked tenant", func(ctx context.Context) error {
				return db.WithUser(ctx, tenantkit.UserSession(tn.owner), func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, `UPDATE tenants SET name = 'renamed' WHERE id = $1`, tn.id)
					return err
				})
			})
			stuck("a system transaction's lock on the tenant", func(ctx context.Context) error {
				return db.WithSystem(ctx, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, `SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE`, tn.id)
					return err
				})
			})
			stuck("a transaction left idle", func(ctx context.Context) error {
				return db.WithUser(ctx, tenantkit.UserSession(tn.owner), func(tx pgx.Tx) error {
					time.Sleep(time.Second)
					_, err := tx.Exec(ctx, `SELECT 1`)
					return err
				})
			})
			// QueryRowAsSystem reads: a table lock blocks it.
			if _, err := holder.Exec(ctx, `LOCK TABLE tenant_users IN ACCESS EXCLUSIVE MODE`); err != nil {
				t.Fatal(err)
			}
			stuck("a permission check (one round trip) behind a table lock", func(ctx context.Context) error {
				_, err := db.Membership(ctx, tenantkit.UserSession(tn.owner), tn.id)
				return err
			})
			// Nothing was changed, and the service still works once the lock is gone.
			if err := holder.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if m, err := db.Membership(ctx, tenantkit.UserSession(tn.owner), tn.id); err != nil || m.Role != tenantkit.Owner {
				t.Errorf("after the lock: %+v, %v", m, err)
			}
			if name := fxQueryRowString(t, admin, `SELECT name FROM tenants WHERE id = $1`, tn.id); name == "renamed" {
				t.Error("the update that timed out was applied")
			}
		})
	}
}

func fxQueryRowString(t testing.TB, admin *pgxpool.Pool, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := admin.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPoolerMisconfiguration: the service refuses to start when it would run without its settings
// or with a query mode that leaves state on a server connection behind a transaction pooler, and
// says how to fix it.
func TestPoolerMisconfiguration(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDB(t)
	strict := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{})
	lax := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{IgnoreStartupParameters: []string{"statement_timeout", "idle_in_transaction_session_timeout"}})
	for _, c := range []struct {
		name   string
		url    string
		pooler postgres.Pooler
		code   string
		want   string
	}{
		{"DATABASE_POOLER unset behind a pooler that refuses the settings", strict.URL(url), postgres.NoPooler, tenantkit.Unavailable, "set DATABASE_POOLER=transaction"},
		{"DATABASE_POOLER unset behind a pooler that drops the settings", lax.URL(url), postgres.NoPooler, tenantkit.Internal, "did not receive the settings sent when connecting (idle_in_transaction_session_timeout, statement_timeout)"},
		{"named prepared statements behind a transaction pooler", withParams(t, strict.URL(url), "default_query_exec_mode", "cache_statement"), postgres.TransactionPooler, tenantkit.Internal, "default_query_exec_mode=cache_statement"},
		{"describe and execute in two round trips behind a transaction pooler", withParams(t, strict.URL(url), "default_query_exec_mode", "describe_exec"), postgres.TransactionPooler, tenantkit.Internal, "default_query_exec_mode=describe_exec"},
		{"describe each new statement in a round trip of its own behind a transaction pooler", withParams(t, strict.URL(url), "default_query_exec_mode", "cache_describe"), postgres.TransactionPooler, tenantkit.Internal, "default_query_exec_mode=cache_describe"},
		{"a setting PostgreSQL refuses", withParams(t, strict.URL(url), "lock_timeout", "soon"), postgres.TransactionPooler, tenantkit.Internal, "cannot apply its settings in a transaction"},
		{"an unknown DATABASE_POOLER", url, postgres.Pooler("statement"), tenantkit.Invalid, "DATABASE_POOLER must be"},
	} {
		t.Run(c.name, func(t *testing.T) {
			db, err := postgres.OpenWith(ctx, c.url, "", postgres.Options{Pooler: c.pooler})
			if err == nil {
				db.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), c.want) || tenantkit.ErrorCode(err) != c.code {
				t.Errorf("err = %v (code %s), want code %s and %q", err, tenantkit.ErrorCode(err), c.code, c.want)
			}
		})
	}
	t.Run("the same pooler works with DATABASE_POOLER=transaction", func(t *testing.T) {
		for _, b := range []*pgbouncer.Bouncer{strict, lax} {
			db := openPooled(t, b.URL(url), "")
			if err := db.Ping(ctx); err != nil {
				t.Error(err)
			}
		}
	})
}

// TestPoolerErrorsAreUnavailable: what a transaction pooler does to connections — a server
// connection killed under a transaction, the pooler gone, the pooler refusing clients, and (when
// it is misconfigured) prepared statements lost between server connections — reaches the service
// as unavailable errors, never as internal ones.
func TestPoolerErrorsAreUnavailable(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDB(t)
	admin := fxAdmin(t, url)
	tn := fxTenant(t, admin)
	dbName := strings.TrimPrefix(must(neturl.Parse(url)).Path, "/")
	unavailable := func(t *testing.T, what string, err error) {
		t.Helper()
		if code := tenantkit.ErrorCode(err); code != tenantkit.Unavailable {
			t.Errorf("%s: %v (code %q), want unavailable", what, err, code)
		}
	}

	t.Run("server connection killed under a transaction", func(t *testing.T) {
		b := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{})
		db := openPooled(t, b.URL(url), "")
		started := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- db.WithSystem(ctx, func(tx pgx.Tx) error {
				close(started)
				_, err := tx.Exec(ctx, `SELECT pg_sleep(10)`)
				return err
			})
		}()
		<-started
		// Kill only once the statement runs on the server, so that the kill lands under it.
		for deadline := time.Now().Add(5 * time.Second); fxCount(t, admin, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'active' AND query = 'SELECT pg_sleep(10)'`) == 0; {
			if time.Now().After(deadline) {
				t.Fatal("the transaction's statement never reached the server")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := b.Admin(ctx, "KILL "+dbName); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			unavailable(t, "the transaction", err)
		case <-time.After(5 * time.Second):
			t.Fatal("the transaction did not end when PgBouncer killed its connections")
		}
		if _, err := b.Admin(ctx, "RESUME "+dbName); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Membership(ctx, tenantkit.UserSession(tn.owner), tn.id); err != nil {
			t.Errorf("after RESUME: %v", err)
		}
	})

	t.Run("pooler gone, then refusing clients", func(t *testing.T) {
		b := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{})
		db := openPooled(t, withParams(t, b.URL(url), "connect_timeout", "2"), "")
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		_, err := db.Membership(ctx, tenantkit.UserSession(tn.owner), tn.id)
		unavailable(t, "a check with the pooler stopped", err)
		unavailable(t, "a transaction with the pooler stopped", db.WithUser(ctx, tenantkit.UserSession(tn.owner), func(pgx.Tx) error { return nil }))

		full := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{MaxClientConn: 2})
		db = openPooled(t, withParams(t, full.URL(url), "pool_max_conns", "4"), "")
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = db.WithSystem(ctx, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, `SELECT pg_sleep(0.5)`)
					return err
				})
			}()
		}
		wg.Wait()
		refused := 0
		for _, err := range errs {
			if err != nil {
				refused++
				unavailable(t, "a transaction PgBouncer refused (max_client_conn)", err)
			}
		}
		if refused == 0 {
			t.Error("4 concurrent connections to a PgBouncer with max_client_conn=2: none refused, the test proves nothing")
		}
	})

	t.Run("prepared statements lost (DATABASE_POOLER not set)", func(t *testing.T) {
		// What the service did before DATABASE_POOLER, behind a pooler that ignores the startup
		// settings: pgx's statement cache (named prepared statements) over a transaction pooler.
		// OpenWith refuses to start like this (TestPoolerMisconfiguration); the errors must
		// still never be internal.
		b := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{PoolSize: 2})
		cfg, err := pgxpool.ParseConfig(withParams(t, b.URL(url), "pool_max_conns", "8"))
		if err != nil {
			t.Fatal(err)
		}
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		db := &postgres.DB{Pool: pool}
		var wg sync.WaitGroup
		var mu sync.Mutex
		failed, other := 0, []error{}
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					var err error
					if (w+i)%2 == 0 {
						_, err = db.Membership(ctx, tenantkit.UserSession(tn.owner), tn.id)
					} else {
						err = db.WithUser(ctx, tenantkit.UserSession(tn.owner), func(tx pgx.Tx) error {
							var n int
							return tx.QueryRow(ctx, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, tn.id).Scan(&n)
						})
					}
					if err == nil {
						continue
					}
					mu.Lock()
					failed++
					if tenantkit.ErrorCode(err) != tenantkit.Unavailable {
						other = append(other, err)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if failed == 0 {
			t.Fatal("320 operations over a statement cache behind a transaction pooler all succeeded: the test proves nothing")
		}
		t.Logf("%d of 320 operations failed", failed)
		for _, err := range other {
			t.Errorf("not unavailable: %v (code %q)", err, tenantkit.ErrorCode(err))
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
