package pglocal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, db, want string }{
		{"postgres://u:p@h:5433/old?sslmode=disable&application_name=x", "new", "postgres://u:p@h:5433/new?sslmode=disable&application_name=x"},
		{"postgresql://h", "db", "postgresql://h/db"},
		{"postgres://h/old", "a b", "postgres://h/a%20b"},
	}
	for _, tt := range tests {
		got, err := WithDatabase(tt.in, tt.db)
		if err != nil || got != tt.want {
			t.Errorf("WithDatabase(%q, %q) = %q, %v; want %q", tt.in, tt.db, got, err, tt.want)
			continue
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil || cfg.Database != tt.db {
			t.Errorf("pgx.ParseConfig(%q): database %q, %v; want %q", got, cfg.Database, err, tt.db)
		}
	}
	for _, bad := range []string{"host=h dbname=x", "mysql://h/x", "postgres://h:bad port/x"} {
		if got, err := WithDatabase(bad, "db"); err == nil {
			t.Errorf("WithDatabase(%q) = %q, want error", bad, got)
		}
	}
}

func TestFind(t *testing.T) {
	t.Parallel()
	s, err := Find(t.Context(), Options{EnvVars: []string{"TEST_DATABASE_URL", "DATABASE_URL"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("found server: source %s", s.Source)
	selectOne(t, s.URL)
}

func TestFindEnvVarUnreachable(t *testing.T) {
	t.Setenv(forceEnv, "")
	t.Setenv("PGLOCAL_TEST_EMPTY", "")
	t.Setenv("PGLOCAL_TEST_URL", "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable")
	s, err := Find(t.Context(), Options{EnvVars: []string{"PGLOCAL_TEST_EMPTY", "PGLOCAL_TEST_URL"}})
	if err == nil {
		s.Stop()
		t.Fatalf("Find succeeded with source %s, want error", s.Source)
	}
	if !strings.Contains(err.Error(), "$PGLOCAL_TEST_URL") {
		t.Errorf("error %q does not name the variable", err)
	}
}

func TestFindInitdb(t *testing.T) {
	requireBinaries(t)
	t.Setenv(forceEnv, "initdb")
	s, err := Find(t.Context(), Options{EnvVars: []string{"TEST_DATABASE_URL"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if s.Source != "initdb" || s.DataDir == "" {
		t.Fatalf("Source = %q, DataDir = %q; want a cluster started with initdb", s.Source, s.DataDir)
	}
	selectOne(t, s.URL)
	conn := connect(t, s.URL)
	var fsync string
	if err := conn.QueryRow(t.Context(), "show fsync").Scan(&fsync); err != nil || fsync != "off" {
		t.Errorf("fsync = %q, %v; want off", fsync, err)
	}
	if _, err := conn.Exec(t.Context(), "create database pglocal_test"); err != nil {
		t.Errorf("create database: %v", err)
	}
	conn.Close(t.Context())

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.DataDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("data dir %s still there after Stop: %v", s.DataDir, err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := pgx.Connect(t.Context(), s.URL); err == nil {
		t.Errorf("server still accepts connections after Stop")
	}
}

// TestFindInitdbDataDir checks that a cluster in Options.DataDir survives
// Stop and is reused (not re-initialized) by the next Find, whether DataDir
// is absolute or, as tenantkit dev gives it, relative to the working directory.
func TestFindInitdbDataDir(t *testing.T) {
	requireBinaries(t)
	for _, relative := range []bool{false, true} {
		t.Run(fmt.Sprintf("relative=%v", relative), func(t *testing.T) { testFindInitdbDataDir(t, relative) })
	}
}

func testFindInitdbDataDir(t *testing.T, relative bool) {
	t.Setenv(forceEnv, "initdb")
	// Not t.TempDir: when running as root, its 0700 parents would keep the
	// postgres OS user out.
	dir, err := os.MkdirTemp("", "pglocal-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	o := Options{DataDir: filepath.Join(dir, "data"), Port: port}
	if relative {
		t.Chdir(dir)
		o.DataDir = filepath.Join(".dev", "pgdata")
	}

	for i := range 2 {
		s, err := Find(t.Context(), o)
		if err != nil {
			t.Fatalf("Find #%d: %v", i+1, err)
		}
		if want := "postgres://postgres@127.0.0.1:" + strconv.Itoa(port) + "/postgres?sslmode=disable"; s.URL != want {
			t.Errorf("URL = %q, want %q", s.URL, want)
		}
		conn := connect(t, s.URL)
		var n int
		err = conn.QueryRow(t.Context(), "select count(*) from pg_database where datname = 'kept'").Scan(&n)
		if err == nil && n != i {
			t.Errorf("Find #%d: found %d databases named kept, want %d", i+1, n, i)
		}
		if err == nil && i == 0 {
			_, err = conn.Exec(t.Context(), "create database kept")
		}
		if err != nil {
			t.Error(err)
		}
		conn.Close(t.Context())
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(o.DataDir, dir), "PG_VERSION")); err != nil {
			t.Fatalf("data dir was not kept: %v", err)
		}
	}
}

func requireBinaries(t *testing.T) {
	t.Helper()
	if _, _, ok := findBinaries(); !ok {
		// A fallback nobody tested is a fallback that does not work: fail, do not skip.
		t.Fatal("initdb and pg_ctl not found: install PostgreSQL's server binaries (Debian: apt-get install postgresql)")
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

func selectOne(t *testing.T, url string) {
	t.Helper()
	var one int
	if err := connect(t, url).QueryRow(t.Context(), "select 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("select 1 = %d, %v", one, err)
	}
}

// TestStopServerStartServer checks that a cluster from StartCluster can be stopped and started
// again on the same URL with its data, as the fault tests do.
func TestStopServerStartServer(t *testing.T) {
	requireBinaries(t)
	t.Parallel()
	s, err := StartCluster(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	if _, err := connect(t, s.URL).Exec(t.Context(), "create database survives"); err != nil {
		t.Fatal(err)
	}
	if err := s.StopServer(t.Context(), "immediate"); err != nil {
		t.Fatal(err)
	}
	if conn, err := pgx.Connect(t.Context(), s.URL); err == nil {
		conn.Close(t.Context())
		t.Fatal("the server accepts connections after StopServer")
	}
	if err := s.StopServer(t.Context(), "fast"); err == nil {
		t.Error("StopServer of a stopped server: want an error")
	}
	if err := s.StartServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := connect(t, s.URL).QueryRow(t.Context(), "select count(*) from pg_database where datname = 'survives'").Scan(&n); err != nil || n != 1 {
		t.Errorf("after StartServer: %d databases named survives, %v; want 1", n, err)
	}
}
