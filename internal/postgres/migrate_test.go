package postgres_test

import (
	"bytes"
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
	"github.com/tenantkit/tenantkit/migrations"
)

// snapshotSQL describes the schemas public, tenantkit and auth as sorted text lines: schemas,
// relations, columns, constraints, indexes, functions, policies, triggers and enums, by name and
// definition (never by oid), so two databases with the same schema give the same lines.
const snapshotSQL = `
WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname IN ('public', 'tenantkit', 'auth'))
SELECT line FROM (
  SELECT format('schema %I owner=%s acl=%s', nspname, pg_get_userbyid(nspowner), nspacl) FROM pg_namespace
  WHERE oid IN (SELECT oid FROM ns)
  UNION ALL
  SELECT format('relation %I.%I kind=%s rls=%s force=%s owner=%s acl=%s comment=%s', ns.nspname, c.relname,
                c.relkind, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner), c.relacl,
                obj_description(c.oid, 'pg_class'))
  FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT format('column %I.%I.%I %s notnull=%s default=%s', ns.nspname, c.relname, a.attname,
                format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm')
  UNION ALL
  SELECT format('constraint %I.%I.%I %s', ns.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid))
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT format('function %I.%I(%s) returns %s secdef=%s config=%s owner=%s acl=%s src=%s', ns.nspname,
                p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid), p.prosecdef,
                p.proconfig, pg_get_userbyid(p.proowner), p.proacl, md5(p.prosrc))
  FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
  UNION ALL
  SELECT format('policy %I.%I.%I %s %s to=%s using=%s check=%s', schemaname, tablename, policyname,
                permissive, cmd, roles, qual, with_check)
  FROM pg_policies WHERE schemaname IN (SELECT nspname FROM ns)
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(g.oid)
  FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN ns ON ns.oid = c.relnamespace
  WHERE NOT g.tgisinternal
  UNION ALL
  SELECT format('type %I.%I %s', ns.nspname, t.typname,
                (SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = t.oid))
  FROM pg_type t JOIN ns ON ns.oid = t.typnamespace WHERE t.typtype = 'e'
) s(line)
ORDER BY 1`

func snapshot(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	lines := queryStrings(context.Background(), pool, snapshotSQL)
	if len(lines) > 0 && strings.HasPrefix(lines[0], "lint query failed") {
		t.Fatal(lines[0])
	}
	return lines
}

// diff reports the lines only in a and only in b.
func diff(a, b []string) string {
	var out []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// withoutHasura drops the lines describing Hasura's event catalog (hdb_catalog) and its triggers.
// and the TRIGGER privilege its role holds on the tables.
func withoutHasura(lines []string) []string {
	out := slices.DeleteFunc(slices.Clone(lines), func(l string) bool {
		return strings.Contains(l, "hdb_catalog") || strings.Contains(l, "notify_hasura_")
	})
	for i, l := range out {
		out[i] = regexp.MustCompile(`,?hasuratest_hasura=\w*/\w+`).ReplaceAllString(l, "")
	}
	return out
}

// withoutGoose drops the lines describing goose's version table.
func withoutGoose(lines []string) []string {
	return slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return strings.Contains(l, "goose_db_version") })
}

func migrate(t *testing.T, url, command string) string {
	t.Helper()
	var out bytes.Buffer
	if err := postgres.Migrate(context.Background(), url, command, &out); err != nil {
		t.Fatalf("migrate %s: %v\n%s", command, err, out.String())
	}
	return out.String()
}

func exists(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(context.Background(), "SELECT EXISTS ("+sql+")", args...).Scan(&ok); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return ok
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The migrated template (which NewDB builds) holds privileges for the cluster-wide roles, so
	// the `reset`s below never drop tenantkit_app and tenantkit_system from under other tests.
	// Its schema is also the reference for a complete one.
	// Hasura's event catalog and triggers, which the template also carries (installed by Hasura's
	// role, not by the migrations), are left out.
	complete := withoutHasura(snapshot(t, connect(t, pgtest.NewDB(t))))

	t.Run("up, down to zero, up again", func(t *testing.T) {
		t.Parallel()
		url := pgtest.EmptyDB(t)
		pool := connect(t, url)
		initial := snapshot(t, pool)

		migrate(t, url, "up")
		first := snapshot(t, pool)
		if d := diff(complete, first); d != "" {
			t.Errorf("schema after up differs from the template's:\n%s", d)
		}
		if !exists(t, pool, "SELECT FROM pg_class WHERE oid = to_regclass('auth.users')") {
			t.Error("auth.users missing after up")
		}

		migrate(t, url, "reset")
		if d := diff(initial, withoutGoose(snapshot(t, pool))); d != "" { // goose keeps its table
			t.Errorf("reset did not restore the empty database:\n%s", d)
		}
		if tables := queryStrings(ctx, pool, `SELECT c.oid::regclass::text FROM pg_class c
			WHERE c.relkind IN ('r', 'p') AND c.relnamespace::regnamespace::text IN ('public', 'tenantkit')
			  AND c.relname <> 'goose_db_version'`); len(tables) > 0 {
			t.Errorf("tables left after reset: %v", tables)
		}
		if exists(t, pool, "SELECT FROM pg_namespace WHERE nspname = 'tenantkit'") {
			t.Error("schema tenantkit left after reset")
		}
		if exists(t, pool, "SELECT FROM pg_class WHERE oid = to_regclass('auth.users')") {
			t.Error("auth.users, created by the migration, left after reset")
		}

		migrate(t, url, "up")
		if d := diff(first, snapshot(t, pool)); d != "" {
			t.Errorf("schema after up, reset, up differs from the first up's:\n%s", d)
		}
	})

	t.Run("keeps an existing auth.users", func(t *testing.T) {
		t.Parallel()
		url := pgtest.EmptyDB(t)
		pool := connect(t, url)
		// As nhost's hasura-auth would have created it, before tenantkit's migrations.
		if _, err := pool.Exec(ctx, `CREATE SCHEMA auth;
			CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
			INSERT INTO auth.users VALUES ('6a1f5c1e-3b7d-4e0a-9c2b-8d4e5f6a7b8c', 'ada@example.com')`); err != nil {
			t.Fatal(err)
		}
		migrate(t, url, "up")
		if !exists(t, pool, "SELECT FROM pg_attribute WHERE attrelid = 'auth.users'::regclass AND attname = 'email'") ||
			exists(t, pool, "SELECT FROM pg_attribute WHERE attrelid = 'auth.users'::regclass AND attname = 'display_name'") {
			t.Error("up replaced the existing auth.users")
		}
		migrate(t, url, "reset")
		var email string
		if err := pool.QueryRow(ctx, "SELECT email FROM auth.users").Scan(&email); err != nil || email != "ada@example.com" {
			t.Fatalf("auth.users after reset: email %q, err %v; want its row kept", email, err)
		}
		if exists(t, pool, `SELECT FROM pg_class WHERE oid = 'auth.users'::regclass
			AND has_table_privilege('tenantkit_system', oid, 'SELECT')`) {
			t.Error("tenantkit_system keeps SELECT on auth.users after reset")
		}
	})

	t.Run("status", func(t *testing.T) {
		t.Parallel()
		url := pgtest.EmptyDB(t)
		files, err := migrations.FS.ReadDir(".")
		if err != nil {
			t.Fatal(err)
		}
		check := func(out, want string) {
			t.Helper()
			n := 0
			for _, f := range files {
				if !strings.HasSuffix(f.Name(), ".sql") {
					continue
				}
				n++
				i := strings.Index(out, f.Name())
				if i < 0 {
					t.Errorf("status does not list %s:\n%s", f.Name(), out)
					continue
				}
				if line, _, _ := strings.Cut(out[i:], "\n"); !strings.Contains(line, want) {
					t.Errorf("status line %q: want %q", line, want)
				}
			}
			if n == 0 || strings.Count(out, "\n") != n {
				t.Errorf("status lists %d lines for %d migrations:\n%s", strings.Count(out, "\n"), n, out)
			}
		}
		check(migrate(t, url, "status"), "pending")
		migrate(t, url, "up")
		check(migrate(t, url, "status"), "applied")
	})

	t.Run("concurrent up", func(t *testing.T) {
		t.Parallel()
		url := pgtest.EmptyDB(t)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Go(func() {
				var out bytes.Buffer
				errs[i] = postgres.Migrate(ctx, url, "up", &out)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("up #%d: %v", i, err)
			}
		}
		pool := connect(t, url)
		// goose's own table is left out: goose creates it before taking its lock (Provider.Up
		// calls HasPending unlocked), so the two ups race to create it and the one that loses
		// retries; the identity sequence of the table that wins may be named …_id_seq1.
		if d := diff(withoutGoose(complete), withoutGoose(snapshot(t, pool))); d != "" {
			t.Errorf("schema after two concurrent ups differs from the template's:\n%s", d)
		}
		// Each migration applied once: the loser of the lock found nothing left to do.
		var applied, distinct int
		if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT version_id) FROM goose_db_version
			WHERE version_id > 0 AND is_applied`).Scan(&applied, &distinct); err != nil {
			t.Fatal(err)
		}
		if applied != distinct || applied == 0 {
			t.Errorf("goose_db_version: %d applied rows for %d versions", applied, distinct)
		}
	})

	t.Run("unknown command", func(t *testing.T) {
		t.Parallel()
		url := pgtest.EmptyDB(t)
		err := postgres.Migrate(ctx, url, "sideways", &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "sideways") {
			t.Errorf("Migrate(sideways) = %v, want an error naming the command", err)
		}
	})
}
