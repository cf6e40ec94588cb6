package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/apikey"
	"github.com/tenantkit/tenantkit/internal/hasurarules"
	"github.com/tenantkit/tenantkit/internal/scaffold"
)

// scaffoldedTables seeds two rows per tenant of w into each scaffolded table of list and returns
// their descriptions for the walls comparison; the model allows what the table's permissions say.
func scaffoldedTables(ctx context.Context, t *testing.T, admin *pgxpool.Pool, w *world, list []hasurarules.Scaffolded) []table {
	t.Helper()
	var out []table
	for _, s := range list {
		if _, err := admin.Exec(ctx, fmt.Sprintf(`INSERT INTO public.%s (tenant_id, name)
			SELECT t, 'row ' || n FROM unnest($1::uuid[]) t, generate_series(1, 2) n`, s.Name), w.tenants); err != nil {
			t.Fatalf("seed %s: %v", s.Name, err)
		}
		rows, _ := admin.Query(ctx, fmt.Sprintf(`SELECT tenant_id || '/' || id FROM public.%s`, s.Name))
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		tenantOf := func(k string) string { tn, _, _ := strings.Cut(k, "/"); return tn }
		s := s
		out = append(out, table{
			name: s.Name, key: "tenant_id || '/' || id", noopSet: "name = name", appCanRead: true,
			rows:      func(*world) []string { return keys },
			canSelect: func(w *world, u, k string) bool { return w.has(u, tenantOf(k), s.Read) },
			canUpdate: func(w *world, u, k string) bool {
				return w.has(u, tenantOf(k), s.Write) && w.has(u, tenantOf(k), s.Read)
			},
			canDelete: func(w *world, u, k string) bool {
				return w.has(u, tenantOf(k), s.Write) && w.has(u, tenantOf(k), s.Read)
			},
		})
	}
	return out
}

// goosUp returns the Up part of a goose migration.
func gooseUp(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, up, ok := strings.Cut(string(raw), "-- +goose Up")
	up, _, ok2 := strings.Cut(up, "-- +goose Down")
	if !ok || !ok2 {
		t.Fatalf("%s: no goose Up and Down sections", path)
	}
	return up
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), raw, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestScaffoldedTable: `tenantkit scaffold table` writes a table that the walls test, the schema
// lint and the plan limits cover like the built-in ones. A table whose writes need another
// permission than its reads (settings:write, admins and owners) is scaffolded into a copy of the
// repository, its migration applied, and Hasura's generated rules compared with its RLS policies
// on the seeded world; then its plan limit is exercised.
func TestScaffoldedTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repo := t.TempDir()
	copyTree(t, "../../migrations", filepath.Join(repo, "migrations"))
	copyTree(t, "../../hasura", filepath.Join(repo, "hasura"))
	spec := hasurarules.Scaffolded{Name: "notes", Read: "projects:read", Write: "settings:write", Limit: "notes"}
	files, err := scaffold.Table(repo, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scaffold.Table(repo, spec); err == nil {
		t.Fatal("scaffolding the same table twice succeeded")
	}

	s := seed(t)
	w := newWorld(rand.New(rand.NewPCG(s, s^0x5caf)), 12, 50)
	db, admin := setup(t)
	if _, err := admin.Exec(ctx, gooseUp(t, files[0])); err != nil {
		t.Fatalf("scaffolded migration: %v", err)
	}
	w.load(ctx, t, admin)
	list, err := hasurarules.LoadScaffolded(filepath.Join(repo, hasurarules.SpecFile))
	if err != nil || len(list) != 1 {
		t.Fatalf("spec: %v %v", list, err)
	}
	tbs := scaffoldedTables(ctx, t, admin, w, list)

	// RLS is what the model (the role table) allows.
	for _, u := range w.users {
		var got []string
		if err := w.as(ctx, db, u, func(tx pgx.Tx) error {
			got, err = keys(ctx, tx, "SELECT tenant_id || '/' || id FROM notes")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, k := range tbs[0].rows(w) {
			if tbs[0].canSelect(w, u, k) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("user %s sees %d notes under RLS, the role table allows %d", u, len(got), len(want))
		}
	}

	// Hasura's generated rules equal RLS, for members and for API keys.
	var keys []string
	for _, k := range w.keys {
		keys = append(keys, k.id)
	}
	inserts := map[string]func(tenant, id, owner string) string{"notes": insertScaffolded("notes")}
	checked := 0
	for role, principals := range map[string][]string{"user": w.users, apikey.Role: keys} {
		n := wallsAgree(ctx, t, s, w, db, admin, filepath.Join(repo, "hasura", "metadata"), role, principals, tbs, inserts)
		if n < len(principals)*3 {
			t.Fatalf("%s: only %d comparisons", role, n)
		}
		checked += n
	}

	// The schema lint sees the table and finds nothing wrong with it.
	for _, r := range lintRules {
		for _, off := range r.lint(ctx, admin) {
			if strings.Contains(off, "notes") {
				t.Errorf("%s: %s", r.name, off)
			}
		}
	}
	if off := lintDistribution(ctx, admin); len(off) > 0 {
		t.Errorf("distribution lint: %v", off)
	}

	// The plan limit counts the tenant's rows: a plan allowing 3 notes refuses the fourth.
	tn := w.tenants[0]
	if _, err := admin.Exec(ctx, `UPDATE subscription_plans SET limits = limits || '{"notes": 3}' WHERE key = 'enterprise'`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `INSERT INTO notes (tenant_id, name) VALUES ($1, 'third')`, tn); err != nil {
		t.Fatalf("third note: %v", err)
	}
	_, err = admin.Exec(ctx, `INSERT INTO notes (tenant_id, name) VALUES ($1, 'fourth')`, tn)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "TK001" || pe.ConstraintName != "plan_limit_notes" {
		t.Fatalf("fourth note: %v, want TK001 plan_limit_notes", err)
	}
	t.Logf("seed %d: %d comparisons of the scaffolded table's Hasura rules with RLS", s, checked)
}
