package postgres_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/apikey"
	"github.com/tenantkit/tenantkit/internal/hasurarules"
	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// serviceOnly are the commands Hasura's `user` role is deliberately not given although RLS lets
// tenantkit_app perform them: memberships and invitations change through the team actions, which
// add their own rules and emails. For these the test checks that Hasura allows nothing.
var serviceOnly = map[string]bool{
	"tenant_users/insert": true, "tenant_users/update": true,
	"tenant_invitations/insert": true, "tenant_invitations/update": true,
	"api_keys/insert": true, "api_keys/update": true, // createApiKey, revokeApiKey
}

// TestHasuraRulesEqualRLS: the two walls agree. On the seeded world of the isolation test, for
// every user and every tracked table, the rows Hasura's `user` permissions select, update
// (filter and check) and delete — compiled from hasura/metadata to SQL and run without RLS, as
// Hasura runs them — are exactly the rows RLS lets tenantkit_app select, update and delete under
// the same session; and likewise for every API key of the world, with Hasura's `api_client`
// permissions and the session a token of the key carries. Reproduce with TENANTKIT_SEED.
func TestHasuraRulesEqualRLS(t *testing.T) {
	t.Parallel()
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, s^0x51ed))
	w := newWorld(rng, 30, 120)
	db, admin := setup(t)
	ctx := context.Background()
	w.load(ctx, t, admin)
	var keys []string
	for _, k := range w.keys {
		keys = append(keys, k.id)
	}
	// The built-in tables and those made by `tenantkit scaffold table` (hasura/tenant_tables.yaml).
	scaffolded, err := hasurarules.LoadScaffolded("../../" + hasurarules.SpecFile)
	if err != nil {
		t.Fatal(err)
	}
	tbs := append(tables(), scaffoldedTables(ctx, t, admin, w, scaffolded)...)
	inserts := map[string]func(tenant, id, owner string) string{"projects": insertProject}
	for _, sc := range scaffolded {
		inserts[sc.Name] = insertScaffolded(sc.Name)
	}
	for _, c := range []struct {
		role       string
		principals []string
	}{{"user", w.users}, {apikey.Role, keys}} {
		t.Run(c.role, func(t *testing.T) {
			checked := wallsAgree(ctx, t, s, w, db, admin, "../../hasura/metadata", c.role, c.principals, tbs, inserts)
			if checked < len(c.principals)*5 {
				t.Fatalf("only %d principal×table×command comparisons: the walls were not really compared", checked)
			}
			t.Logf("seed %d: %d comparisons of Hasura's %s rules with RLS", s, checked, c.role)
		})
	}
}

func insertProject(tn, id, owner string) string {
	return fmt.Sprintf("INSERT INTO projects (tenant_id, id, name, owner_id) VALUES ('%s', '%s', 'new', '%s')", tn, id, owner)
}

func insertScaffolded(table string) func(tn, id, owner string) string {
	return func(tn, id, _ string) string {
		return fmt.Sprintf("INSERT INTO %s (tenant_id, id, name) VALUES ('%s', '%s', 'new')", table, tn, id)
	}
}

// wallsAgree compares Hasura's rules for role (from the metadata in dir) with RLS for each
// principal (a user, or a key's API client) on the tables tbs, and the inserts of each table of
// inserts (which writes the INSERT of one row); it returns the number of comparisons made.
func wallsAgree(ctx context.Context, t *testing.T, s uint64, w *world, db *postgres.DB, admin *pgxpool.Pool, dir, role string,
	principals []string, tbs []table, inserts map[string]func(tenant, id, owner string) string) int {
	meta, cat, rules := roleRules(ctx, t, admin, dir, role)
	byTable := map[string]map[string]hasuratest.Rule{}
	for _, r := range rules {
		if byTable[r.Table] == nil {
			byTable[r.Table] = map[string]hasuratest.Rule{}
		}
		byTable[r.Table][r.Command] = r
	}
	var checked int
	for _, tb := range tbs {
		cmds, tracked := byTable[tb.name]
		if !tracked {
			continue // tenantkit.* tables are not tracked by Hasura
		}
		for _, u := range principals {
			session := w.session(u).Vars
			// Hasura: rows its rules allow, run as the superuser (Hasura's path has no RLS).
			hasura := func(conds ...map[string]any) []string {
				where, args := "true", []any{}
				for _, c := range conds {
					sql, a, err := meta.SQL("public", tb.name, "t", c, session, len(args)+1, cat)
					if err != nil {
						t.Fatalf("%s: compile %v: %v", tb.name, c, err)
					}
					where, args = where+" AND ("+sql+")", append(args, a...)
				}
				rows, _ := admin.Query(ctx, fmt.Sprintf("SELECT %s FROM %s t WHERE %s", tb.key, tb.name, where), args...)
				got, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatalf("%s: %v", tb.name, err)
				}
				slices.Sort(got)
				return got
			}
			var rls map[string][]string
			err := w.as(ctx, db, u, func(tx pgx.Tx) error {
				rls = map[string][]string{}
				for cmd, sql := range map[string]string{
					"select": fmt.Sprintf("SELECT %s FROM %s", tb.key, tb.name),
					"update": fmt.Sprintf("UPDATE %s SET %s RETURNING %s", tb.name, tb.noopSet, tb.key),
					"delete": fmt.Sprintf("DELETE FROM %s RETURNING %s", tb.name, tb.key),
				} {
					got, err := keys(ctx, tx, sql)
					if err != nil {
						return err
					}
					rls[cmd] = got
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			sel := cmds["select"]
			for _, cmd := range []string{"select", "update", "delete"} {
				r := cmds[cmd]
				var want []string
				switch {
				case !r.Allowed:
					want = nil
				case cmd == "select":
					want = hasura(r.Filter)
				case cmd == "update": // the no-op rewrite: the filter, the check on the same row, and visibility
					conds := []map[string]any{r.Filter, sel.Filter}
					if r.Check != nil {
						conds = append(conds, r.Check)
					}
					want = hasura(conds...)
				case cmd == "delete":
					want = hasura(r.Filter, sel.Filter)
				}
				got := rls[cmd]
				if serviceOnly[tb.name+"/"+cmd] {
					if r.Allowed {
						t.Errorf("%s %s is service-only but Hasura's %s role may do it", cmd, tb.name, role)
					}
					continue
				}
				checked++
				if !slices.Equal(got, want) {
					t.Errorf("seed %d (TENANTKIT_SEED=%d): %s %s, %s on %s: RLS allows %d rows, Hasura %d\n  only RLS: %v\n  only Hasura: %v",
						s, s, role, u, cmd, tb.name, len(got), len(want), minus(got, want), minus(want, got))
					return checked
				}
			}
		}
	}
	// Inserts. For a sample of principals and every tenant, Hasura's check on the new row (with a
	// preset owner_id: the user, or the key's creator) must accept exactly the inserts RLS accepts.
	for _, table := range slices.Sorted(maps.Keys(inserts)) {
		checked += insertsAgree(ctx, t, s, w, db, admin, meta, cat, byTable, role, principals, table, inserts[table])
	}
	return checked
}

// insertsAgree compares Hasura's insert check on table with RLS for a sample of principals and
// every tenant; sqlFor writes the INSERT of one row.
func insertsAgree(ctx context.Context, t *testing.T, s uint64, w *world, db *postgres.DB, admin *pgxpool.Pool,
	meta *hasuratest.Metadata, cat *hasuratest.PGCatalog, byTable map[string]map[string]hasuratest.Rule,
	role string, principals []string, table string, sqlFor func(tenant, id, owner string) string) int {
	ins := byTable[table]["insert"]
	if !ins.Allowed {
		t.Fatalf("%s has no insert permission for role %s", table, role)
	}
	checked := 0
	for i, u := range principals {
		if i%4 != 0 {
			continue
		}
		session := w.session(u).Vars
		check, args, err := meta.SQL("public", table, "t", ins.Check, session, 2, cat)
		if err != nil {
			t.Fatal(err)
		}
		owner := w.person(u)
		if preset := fmt.Sprint(ins.Set["owner_id"]); ins.Set["owner_id"] != nil && session[strings.ToLower(preset)] != owner {
			t.Fatalf("%s: projects insert presets owner_id from %s = %q, want %s", role, preset, session[strings.ToLower(preset)], owner)
		}
		for _, tn := range w.tenants {
			id := uuid.NewString()
			insert := sqlFor(tn, id, owner)
			var rlsResult string
			if err := w.as(ctx, db, u, func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, "SELECT public.tk_try($1)", insert).Scan(&rlsResult)
			}); err != nil {
				t.Fatal(err)
			}
			var hasuraOK bool
			err := pgx.BeginFunc(ctx, admin, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, insert); err != nil {
					return err
				}
				if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+table+" t WHERE t.id = $1 AND ("+check+"))",
					append([]any{id}, args...)...).Scan(&hasuraOK); err != nil {
					return err
				}
				return errRollback
			})
			if err != nil && err != errRollback {
				t.Fatal(err)
			}
			checked++
			if hasuraOK != (rlsResult == "ok:1") {
				t.Errorf("seed %d: %s %s inserting into %s of %s: RLS %s, Hasura allowed=%v", s, role, u, table, tn, rlsResult, hasuraOK)
				return checked
			}
		}
	}
	return checked
}

// TestMetadataMatchesDatabase: every table Hasura tracks exists in the migrated database, every
// column a permission names or presets exists, and every relationship resolves to a real foreign
// key (compiling `{relationship: {}}` makes the translator find it).
func TestMetadataMatchesDatabase(t *testing.T) {
	t.Parallel()
	_, admin := setup(t)
	ctx := context.Background()
	meta, cat, rules := userRules(ctx, t, admin, "../../hasura/metadata")
	tablesSeen := map[string]bool{}
	for _, r := range rules {
		q := r.Schema + "." + r.Table
		if !tablesSeen[q] {
			tablesSeen[q] = true
			var exists bool
			if err := admin.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, q).Scan(&exists); err != nil || !exists {
				t.Errorf("tracked table %s does not exist (%v)", q, err)
				continue
			}
		}
		var cols []string
		if !(len(r.Columns) == 1 && r.Columns[0] == "*") {
			cols = append(cols, r.Columns...)
		}
		for c := range r.Set {
			cols = append(cols, c)
		}
		for _, c := range cols {
			if typ, err := cat.ColumnType(r.Schema, r.Table, c); err != nil || typ == "" {
				t.Errorf("%s permission on %s names column %s, which does not exist", r.Command, q, c)
			}
		}
	}
	if len(tablesSeen) < 9 {
		t.Fatalf("only %d tracked tables", len(tablesSeen))
	}
	// relationships, read from the table files
	files, _ := filepath.Glob("../../hasura/metadata/databases/default/tables/*.yaml")
	rels := 0
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		var tf struct {
			Table  struct{ Schema, Name string }
			Object []struct{ Name string } `yaml:"object_relationships"`
			Array  []struct{ Name string } `yaml:"array_relationships"`
		}
		if err := yaml.Unmarshal(raw, &tf); err != nil || tf.Table.Name == "" {
			continue // tables.yaml
		}
		for _, rel := range append(tf.Object, tf.Array...) {
			rels++
			if _, _, err := meta.SQL(tf.Table.Schema, tf.Table.Name, "t", map[string]any{rel.Name: map[string]any{}},
				map[string]string{"x-hasura-role": "user"}, 1, cat); err != nil {
				t.Errorf("relationship %s on %s.%s: %v", rel.Name, tf.Table.Schema, tf.Table.Name, err)
			}
		}
	}
	if rels < 10 {
		t.Fatalf("only %d relationships checked", rels)
	}
}

// userRules loads hasura/metadata, the migrated database's catalog, and the `user` role's rules.
func userRules(ctx context.Context, t *testing.T, admin *pgxpool.Pool, dir string) (*hasuratest.Metadata, *hasuratest.PGCatalog, []hasuratest.Rule) {
	t.Helper()
	return roleRules(ctx, t, admin, dir, "user")
}

// roleRules loads the metadata in dir (hasura/metadata), the migrated database's catalog, and the
// role's rules.
func roleRules(ctx context.Context, t *testing.T, admin *pgxpool.Pool, dir, role string) (*hasuratest.Metadata, *hasuratest.PGCatalog, []hasuratest.Rule) {
	t.Helper()
	meta, err := hasuratest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := hasuratest.LoadCatalog(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := meta.Rules(role)
	if err != nil {
		t.Fatal(err)
	}
	return meta, cat, rules
}
