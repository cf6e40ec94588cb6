package pgtest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
)

const schema = `create table items (id int primary key, name text not null)`

// migrations counts calls to Migrate in this process.
var migrations atomic.Int32

func TestMain(m *testing.M) {
	TemplateKey = "pgtest self-test\n" + schema
	Migrate = func(ctx context.Context, databaseURL string) error {
		migrations.Add(1)
		conn, err := pgx.Connect(ctx, databaseURL)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, schema)
		return err
	}
	Main(m)
}

func TestNewDB(t *testing.T) {
	t.Parallel()
	var names []string
	t.Run("isolated", func(t *testing.T) {
		a, b := NewDB(t), NewDB(t)
		if a == b {
			t.Fatalf("NewDB returned %s twice", a)
		}
		names = append(names, dbName(t, a), dbName(t, b))
		ca, cb := connect(t, a), connect(t, b)
		if _, err := ca.Exec(t.Context(), "insert into items values (1, 'only in a')"); err != nil {
			t.Fatal(err)
		}
		if n := count(t, ca, "select count(*) from items"); n != 1 {
			t.Errorf("a has %d rows, want 1", n)
		}
		if n := count(t, cb, "select count(*) from items"); n != 0 {
			t.Errorf("b has %d rows, want 0", n)
		}
	})
	for _, name := range names {
		if dbExists(t, name) {
			t.Errorf("database %s still exists after cleanup", name)
		}
	}
}

func TestEmptyDB(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("empty", func(t *testing.T) {
		url := EmptyDB(t)
		name = dbName(t, url)
		if n := count(t, connect(t, url), "select count(*) from pg_tables where schemaname = 'public'"); n != 0 {
			t.Errorf("empty database has %d tables", n)
		}
	})
	if dbExists(t, name) {
		t.Errorf("database %s still exists after cleanup", name)
	}
}

func TestNewDBConcurrent(t *testing.T) {
	t.Parallel()
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			conn := connect(t, NewDB(t))
			if _, err := conn.Exec(t.Context(), "insert into items values ($1, 'x')", i); err != nil {
				t.Fatal(err)
			}
			if n := count(t, conn, "select count(*) from items"); n != 1 {
				t.Errorf("%d rows, want 1", n)
			}
		})
	}
}

// TestTemplateReused checks that an existing template is reused rather than
// migrated again, and that it is locked against connections.
func TestTemplateReused(t *testing.T) {
	t.Parallel()
	name, err := template()
	if err != nil {
		t.Fatal(err)
	}
	if n := migrations.Load(); n > 1 {
		t.Errorf("Migrate called %d times, want at most 1", n)
	}
	before := migrations.Load()
	again, err := ensureTemplate(t.Context())
	if err != nil || again != name {
		t.Fatalf("ensureTemplate = %q, %v; want %q", again, err, name)
	}
	if n := migrations.Load(); n != before {
		t.Errorf("ensureTemplate migrated an existing template")
	}
	admin := connect(t, AdminURL())
	if n := count(t, admin, "select count(*) from pg_database where datname = $1 and not datallowconn", name); n != 1 {
		t.Errorf("template %s missing or allows connections", name)
	}
	if dbExists(t, name+"_building") {
		t.Errorf("temporary template %s_building left behind", name)
	}
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func count(t *testing.T, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func dbName(t *testing.T, url string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

func dbExists(t *testing.T, name string) bool {
	t.Helper()
	conn := connect(t, AdminURL())
	var exists bool
	err := conn.QueryRow(t.Context(), "select exists (select from pg_database where datname = $1)", name).Scan(&exists)
	if err != nil {
		t.Fatal(err)
	}
	return exists
}
