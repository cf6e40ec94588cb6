// Package pgtest gives each test its own PostgreSQL database, cloned from a
// template database that is migrated once and shared by every test process
// using the same server.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/pglocal"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// Migrate migrates the template database at databaseURL. It must close all
// its connections before returning. Main sets it to tenantkit's migrations
// (postgres.MigrateUp, keyed by postgres.MigrationsKey) unless a test package
// set its own first.
var Migrate func(ctx context.Context, databaseURL string) error

// TemplateKey identifies the migration set, e.g. a hash of the migration
// files. The template database is named "tktpl_" followed by the first 16 hex
// digits of sha256(TemplateKey), so a new key gets a new template. Set it
// before calling Main.
var TemplateKey string

// templateLock is the pg_advisory_lock key that serializes template creation
// across processes.
const templateLock int64 = 0x746b74706c // "tktpl"

var (
	server  *pglocal.Server
	tplOnce sync.Once
	tplName string
	tplErr  error
)

// Main is meant to be called from TestMain. It finds a server (see
// pglocal.Find; TEST_DATABASE_URL, then DATABASE_URL), runs the tests, stops
// any server it started and exits with the tests' exit code. If no server can
// be found it prints why and exits with status 1.
func Main(m *testing.M) {
	if Migrate == nil {
		Migrate, TemplateKey = postgres.MigrateUp, postgres.MigrationsKey()
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, err := pglocal.Find(ctx, pglocal.Options{EnvVars: []string{"TEST_DATABASE_URL", "DATABASE_URL"}})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	server = s
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// AdminURL returns the URL of the server, for a role allowed to create
// roles and databases. It panics if Main was not called.
func AdminURL() string {
	if server == nil {
		panic("pgtest: call pgtest.Main from TestMain before using pgtest")
	}
	return server.URL
}

// NewDB creates a database cloned from the migrated template, drops it when
// the test and its subtests finish, and returns its URL.
func NewDB(t testing.TB) string {
	t.Helper()
	tpl, err := template()
	if err != nil {
		t.Fatalf("pgtest: template database: %v", err)
	}
	return createDB(t, tpl)
}

// EmptyDB is like NewDB but returns a database without any migrations
// applied (cloned from template0).
func EmptyDB(t testing.TB) string {
	t.Helper()
	return createDB(t, "template0")
}

func createDB(t testing.TB, tpl string) string {
	t.Helper()
	if server == nil {
		t.Fatal("pgtest: call pgtest.Main from TestMain before using pgtest")
	}
	name := "tkt_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := adminExec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(tpl)); err != nil {
		t.Fatalf("pgtest: create database %s from %s: %v", name, tpl, err)
	}
	t.Cleanup(func() {
		// Not t.Context: it is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := adminExec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := pglocal.WithDatabase(server.URL, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// AppLogin is the login role AppURL connects as: LOGIN NOINHERIT, a member of tenantkit_app and
// of nothing else, like the user pool's login of a production deployment (README "Database roles").
const AppLogin = "tk_test_app_login"

var (
	appLoginOnce sync.Once
	appLoginErr  error
)

// AppURL returns databaseURL (a database of NewDB) with AppLogin as its user, creating the role the
// first time. Roles are cluster-wide and shared by parallel test processes: the role is created
// idempotently and never dropped.
func AppURL(t testing.TB, databaseURL string) string {
	t.Helper()
	appLoginOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		appLoginErr = adminExec(ctx, `DO $$ BEGIN
  BEGIN
    CREATE ROLE `+AppLogin+` LOGIN NOINHERIT;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; -- another test process made it
  END;
  IF NOT pg_has_role('`+AppLogin+`', 'tenantkit_app', 'MEMBER') THEN
    BEGIN
      GRANT tenantkit_app TO `+AppLogin+`;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
END $$`)
	})
	if appLoginErr != nil {
		t.Fatalf("pgtest: create login role %s: %v", AppLogin, appLoginErr)
	}
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u.User = url.User(AppLogin) // trust authentication: no password
	// A second pool per test service: keep it small, so that parallel test processes stay well
	// inside max_connections (a non-superuser cannot use the slots reserved for superusers).
	q := u.Query()
	if q.Get("pool_max_conns") == "" {
		q.Set("pool_max_conns", "6")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// template returns the name of the migrated template database, building it
// the first time it is called in this process.
func template() (string, error) {
	tplOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		tplName, tplErr = ensureTemplate(ctx)
	})
	return tplName, tplErr
}

// ensureTemplate returns the template database for TemplateKey, creating it
// unless it exists. An advisory lock keeps concurrent test processes from
// building it twice, and the template only gets its final name once fully
// migrated, so a half-migrated template is never used.
func ensureTemplate(ctx context.Context) (string, error) {
	if Migrate == nil {
		return "", errors.New("pgtest.Migrate is nil: set it in TestMain before calling pgtest.Main")
	}
	if TemplateKey == "" {
		return "", errors.New("pgtest.TemplateKey is empty: set it in TestMain (e.g. to a hash of the migrations) before calling pgtest.Main")
	}
	sum := sha256.Sum256([]byte(TemplateKey))
	name := "tktpl_" + hex.EncodeToString(sum[:])[:16]
	tmp := name + "_building"

	conn, err := pgx.Connect(ctx, server.URL)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background()) // also releases the advisory lock
	if _, err := conn.Exec(ctx, "select pg_advisory_lock($1)", templateLock); err != nil {
		return "", fmt.Errorf("take advisory lock: %w", err)
	}
	var exists bool
	err = conn.QueryRow(ctx, "select exists (select from pg_database where datname = $1)", name).Scan(&exists)
	if err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	// A leftover from a process that died while building; we hold the lock.
	if err := execRetry(ctx, conn, "DROP DATABASE IF EXISTS "+ident(tmp)+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if err := execRetry(ctx, conn, "CREATE DATABASE "+ident(tmp)+" TEMPLATE template0"); err != nil {
		return "", err
	}
	tmpURL, err := pglocal.WithDatabase(server.URL, tmp)
	if err != nil {
		return "", err
	}
	if err := Migrate(ctx, tmpURL); err != nil {
		conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(tmp)+" WITH (FORCE)") // best effort
		return "", fmt.Errorf("migrate %s: %w", tmp, err)
	}
	// Forbid connections to the template, so that clones never fail because
	// someone is connected to it, and end sessions Migrate left behind.
	if err := execRetry(ctx, conn, "ALTER DATABASE "+ident(tmp)+" WITH ALLOW_CONNECTIONS false"); err != nil {
		return "", err
	}
	if err := execRetry(ctx, conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", tmp); err != nil {
		return "", err
	}
	if err := execRetry(ctx, conn, "ALTER DATABASE "+ident(tmp)+" RENAME TO "+ident(name)); err != nil {
		return "", err
	}
	return name, nil
}

// adminExec runs sql on a new connection to the server.
func adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, server.URL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return execRetry(ctx, conn, sql)
}

// execRetry runs sql, retrying a few times while it fails because a database
// it needs is briefly in use by other sessions (SQLSTATE 55006).
func execRetry(ctx context.Context, conn *pgx.Conn, sql string, args ...any) error {
	for attempt := 1; ; attempt++ {
		_, err := conn.Exec(ctx, sql, args...)
		var pgErr *pgconn.PgError
		if err == nil || attempt == 10 || !errors.As(err, &pgErr) || pgErr.Code != "55006" {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Open gives a test the store over a new migrated database, opened as the service opens it (user
// transactions through AppLogin), and a superuser pool on the same database to arrange and inspect
// it. Both close when the test ends.
func Open(t testing.TB) (*postgres.DB, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	u := NewDB(t)
	db, err := postgres.Open(ctx, u, AppURL(t, u))
	if err != nil {
		t.Fatalf("pgtest: open the store: %v", err)
	}
	t.Cleanup(db.Close)
	admin, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(admin.Close)
	return db, admin
}

// UnfoldedUsage counts the counter events of pool's database that the usage fold has not added to
// billing_usage yet (migration 00029).
func UnfoldedUsage(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, `SELECT count(*) FROM tenantkit.usage_events
		WHERE xact >= (SELECT watermark FROM tenantkit.usage_fold)`).Scan(&n)
	return n, err
}

// SettleUsage runs the usage fold on pool's database until billing_usage holds every counter event,
// as serve's fold does within USAGE_FOLD_INTERVAL, so that a test can read the counters alone. A
// transaction open elsewhere on the server can hold the fold back for a moment: it tries for 30 s.
func SettleUsage(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := pool.Exec(ctx, `SELECT tenantkit.fold_usage()`); err != nil {
			t.Fatalf("pgtest: usage fold: %v", err)
		}
		left, err := UnfoldedUsage(ctx, pool)
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: %d usage events still unfolded after 30 s", left)
		}
	}
}
