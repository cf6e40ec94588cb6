package hasuratest

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/pgtest"
)

const permFixture = "testdata/permissions/metadata"

// The users of the test data; d is a member of no tenant.
var permUsers = map[string]string{
	"a": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
	"b": "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb",
	"c": "cccccccc-cccc-cccc-cccc-cccccccccccc",
	"d": "dddddddd-dddd-dddd-dddd-dddddddddddd",
}

// permRowKey is how a row of each table with rules is named in the expectations.
var permRowKey = map[string]string{
	"projects": "p.id::text",
	"tenants":  "p.id",
	"members":  "p.tenant_id || '/' || left(p.user_id::text, 1)",
}

// permDB returns a connection to an empty database holding the schema and data of the compiler's
// tests (internal/hasurabool/testdata: schema.sql, described in cases.yaml).
func permDB(t *testing.T) *pgx.Conn {
	t.Helper()
	schema, err := os.ReadFile("../hasurabool/testdata/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), pgtest.EmptyDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(t.Context(), string(schema)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// permSelect returns the keys of the rows of schema.table that expr selects.
func permSelect(t *testing.T, conn *pgx.Conn, m *Metadata, cat Catalog, schema, table string, expr map[string]any, session map[string]string) ([]string, error) {
	t.Helper()
	pred, args, err := m.SQL(schema, table, "p", expr, session, 1, cat)
	if err != nil {
		return nil, err
	}
	q := "SELECT " + permRowKey[table] + " FROM " + pgx.Identifier{schema, table}.Sanitize() + " AS p WHERE " + pred
	rows, err := conn.Query(t.Context(), q, args...)
	if err != nil {
		t.Fatalf("query failed: %v\n%s\nargs %#v", err, q, args)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("query failed: %v\n%s\nargs %#v", err, q, args)
	}
	slices.Sort(keys)
	return append([]string{}, keys...), nil
}

// TestPermissionSQL runs every permission of the fixture metadata, compiled by Metadata.SQL with the
// fixture's relationships, against PostgreSQL (the expressions one by one are internal/hasurabool's
// tests).
func TestPermissionSQL(t *testing.T) {
	conn := permDB(t)
	m, err := Load(permFixture)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := LoadCatalog(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}

	{
		type key struct{ role, table, command, part string }
		// Rows each rule's filter or check selects, per user (a, b, c, d); "*" = same for all.
		want := map[key]map[string][]string{
			{"user", "tenants", "select", "filter"}: {"a": {"t1"}, "b": {"t1", "t2"}, "c": {"t2", "t3"}, "d": {}},
			{"user", "tenants", "update", "filter"}: {"a": {"t1"}, "b": {"t2"}, "c": {}, "d": {}},
			{"user", "tenants", "update", "check"}:  {"*": {"t1", "t2", "t3"}},
			{"user", "tenants", "delete", "filter"}: {"a": {"t1"}, "b": {}, "c": {}, "d": {}},

			{"user", "members", "select", "filter"}: {"a": {"t1/a", "t1/b"}, "b": {"t1/a", "t1/b", "t2/b", "t2/c"}, "c": {"t2/b", "t2/c", "t3/c"}, "d": {}},
			{"user", "members", "insert", "check"}:  {"a": {"t1/a", "t1/b"}, "b": {"t2/b", "t2/c"}, "c": {}, "d": {}},
			{"user", "members", "update", "filter"}: {"a": {"t1/a"}, "b": {"t1/b", "t2/b"}, "c": {"t2/c", "t3/c"}, "d": {}},
			{"user", "members", "update", "check"}:  {"*": {"t1/b", "t2/b", "t3/c"}},
			{"user", "members", "delete", "filter"}: {"a": {"t1/a", "t1/b"}, "b": {"t1/b", "t2/b"}, "c": {"t2/c", "t3/c"}, "d": {}},

			{"user", "projects", "select", "filter"}: {"a": {"1", "2", "3", "7"}, "b": {"1", "2", "4", "5", "7"}, "c": {"1", "5", "6", "7"}, "d": {"1", "7"}},
			{"user", "projects", "insert", "check"}:  {"a": {"1"}, "b": {}, "c": {"5", "6"}, "d": {}},
			{"user", "projects", "update", "filter"}: {"a": {"1"}, "b": {"2", "4"}, "c": {"5", "6"}, "d": {}},
			{"user", "projects", "update", "check"}:  {"*": {"1", "3", "5", "6"}},
			{"user", "projects", "delete", "filter"}: {"a": {"1"}, "b": {"2", "4"}, "c": {}, "d": {}},

			{"auditor", "tenants", "select", "filter"}: {"*": {"t1"}},
			{"auditor", "tenants", "update", "filter"}: {"*": {}},
			{"auditor", "tenants", "delete", "filter"}: {"a": {"t1"}, "b": {"t1", "t2"}, "c": {"t2", "t3"}, "d": {}},

			{"auditor", "members", "select", "filter"}: {"*": {"t1/b", "t2/b"}},
			{"auditor", "members", "insert", "check"}:  {"*": {"t2/c", "t3/c"}},
			{"auditor", "members", "update", "filter"}: {"*": {"t1/a", "t3/c"}},
			{"auditor", "members", "delete", "filter"}: {"*": {"t1/a"}},

			{"auditor", "projects", "select", "filter"}: {"*": {"1", "4", "5"}},
			{"auditor", "projects", "insert", "check"}:  {"*": {"1", "7"}},
			{"auditor", "projects", "update", "filter"}: {"*": {"1"}},
			{"auditor", "projects", "update", "check"}:  {"*": {"1", "2", "6"}},
			{"auditor", "projects", "delete", "filter"}: {"*": {"3"}},
		}
		seen := map[key]bool{}
		for _, role := range []string{"user", "auditor"} {
			rules, err := m.Rules(role)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				for _, part := range []struct {
					name string
					expr map[string]any
				}{{"filter", r.Filter}, {"check", r.Check}} {
					if part.expr == nil {
						continue
					}
					k := key{role, r.Table, r.Command, part.name}
					perUser, ok := want[k]
					if !ok {
						t.Errorf("no expectation for %+v", k)
						continue
					}
					seen[k] = true
					for _, u := range []string{"a", "b", "c", "d"} {
						session := map[string]string{
							"X-Hasura-User-Id":     permUsers[u],
							"x-hasura-keys":        "{k,x}",
							"X-HASURA-ALLOWED-IDS": "{1,2,7}",
						}
						got, err := permSelect(t, conn, m, cat, r.Schema, r.Table, part.expr, session)
						if err != nil {
							t.Errorf("%+v: %v", k, err)
							continue
						}
						w, ok := perUser[u]
						if !ok {
							w = perUser["*"]
						}
						w = slices.Sorted(slices.Values(w))
						if !slices.Equal(got, w) {
							t.Errorf("%+v for user %s: selected %v, want %v", k, u, got, w)
						}
					}
				}
			}
		}
		for k := range want {
			if !seen[k] {
				t.Errorf("%+v: no such rule in the fixture", k)
			}
		}
	}
}

// TestPermissionRules checks what Rules reads from the fixture.
func TestPermissionRules(t *testing.T) {
	m, err := Load(permFixture)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := m.Rules("user")
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 6*4 {
		t.Fatalf("%d rules, want 24 (6 tables × 4 commands)", len(rules))
	}
	byKey := map[string]Rule{}
	for i, r := range rules {
		if r.Command != PermissionCommands[i%4] || r.Role != "user" || r.Source != "default" {
			t.Errorf("rule %d: %+v", i, r)
		}
		byKey[r.Schema+"."+r.Table+"/"+r.Command] = r
	}
	for _, k := range []string{"public.tenants/insert", "public.dup/select", "other.Banned Users/delete"} {
		if r, ok := byKey[k]; !ok || r.Allowed || r.Filter != nil || r.Check != nil || r.Columns != nil {
			t.Errorf("%s: %+v, want a rule that is not allowed", k, r)
		}
	}
	r := byKey["public.members/insert"]
	if !r.Allowed || r.Filter != nil || r.Check == nil || !slices.Equal(r.Columns, []string{"tenant_id", "user_id", "role"}) ||
		!reflect.DeepEqual(r.Set, map[string]any{"role": "member"}) || r.BackendOnly {
		t.Errorf("members insert: %+v", r)
	}
	r = byKey["public.members/select"]
	if !r.Allowed || !slices.Equal(r.Columns, []string{"*"}) || r.Check != nil || r.Filter["tenant"] == nil {
		t.Errorf("members select: %+v", r)
	}
	r = byKey["public.projects/update"]
	if !r.Allowed || !reflect.DeepEqual(r.Filter, map[string]any{"owner_id": "X-Hasura-User-Id"}) || r.Check == nil {
		t.Errorf("projects update: %+v", r)
	}
	// Rules returns copies.
	r.Filter["owner_id"] = "changed"
	again, _ := m.Rules("user")
	for _, r2 := range again {
		if r2.Table == "projects" && r2.Command == "update" && r2.Filter["owner_id"] != "X-Hasura-User-Id" {
			t.Error("Rules shares its maps with the metadata")
		}
	}

	auditor, err := m.Rules("auditor")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range auditor {
		switch r.Table + "/" + r.Command {
		case "members/insert":
			if !r.BackendOnly || r.Columns != nil {
				t.Errorf("auditor members insert: %+v", r)
			}
		case "tenants/update":
			if r.Check != nil || r.Columns == nil || len(r.Columns) != 0 {
				t.Errorf("auditor tenants update: %+v", r)
			}
		case "projects/delete":
			if !r.Allowed || r.Filter == nil {
				t.Errorf("auditor projects delete: %+v", r)
			}
		}
	}

	nobody, err := m.Rules("nobody")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range nobody {
		if r.Allowed {
			t.Errorf("role nobody: %+v", r)
		}
	}
}

// noCatalog is an empty Catalog.
type noCatalog struct{}

func (noCatalog) ColumnType(schema, table, column string) (string, error) { return "", nil }
func (noCatalog) ForeignKeys(schema, table string) ([]ForeignKey, error)  { return nil, nil }

// TestPermissionMetadataErrors checks that malformed relationships and permissions are rejected.
func TestPermissionMetadataErrors(t *testing.T) {
	for _, c := range []struct {
		name, table, error string
	}{
		{"misspelt filter", `
table: {name: x, schema: public}
select_permissions:
  - role: user
    permission: {columns: "*", filters: {}}`, `unknown field "filters"`},
		{"select without filter", `
table: {name: x, schema: public}
select_permissions:
  - role: user
    permission: {columns: "*"}`, "select permission without filter"},
		{"insert without check", `
table: {name: x, schema: public}
insert_permissions:
  - role: user
    permission: {columns: "*"}`, "insert permission without check"},
		{"two entries for a role", `
table: {name: x, schema: public}
delete_permissions:
  - role: user
    permission: {filter: {}}
  - role: user
    permission: {filter: {}}`, `role "user" has two entries`},
		{"filter not an object", `
table: {name: x, schema: public}
delete_permissions:
  - role: user
    permission: {filter: [a]}`, "filter is not an object"},
		{"bad columns", `
table: {name: x, schema: public}
update_permissions:
  - role: user
    permission: {columns: all, filter: {}}`, `columns must be "*" or a list`},
		{"both using kinds", `
table: {name: x, schema: public}
object_relationships:
  - name: r
    using:
      foreign_key_constraint_on: a
      manual_configuration: {remote_table: y, column_mapping: {a: b}}`, "exactly one of foreign_key_constraint_on and manual_configuration"},
		{"array relationship on a column", `
table: {name: x, schema: public}
array_relationships:
  - name: r
    using: {foreign_key_constraint_on: a}`, "must be {table, column}"},
		{"column and columns", `
table: {name: x, schema: public}
array_relationships:
  - name: r
    using: {foreign_key_constraint_on: {table: y, column: a, columns: [a]}}`, "exactly one of column and columns"},
		{"empty column mapping", `
table: {name: x, schema: public}
object_relationships:
  - name: r
    using: {manual_configuration: {remote_table: y, column_mapping: {}}}`, "empty column_mapping"},
		{"relationship defined twice", `
table: {name: x, schema: public}
object_relationships:
  - name: r
    using: {foreign_key_constraint_on: a}
array_relationships:
  - name: r
    using: {foreign_key_constraint_on: {table: y, column: a}}`, `relationship "r" defined twice`},
		{"misspelt using", `
table: {name: x, schema: public}
object_relationships:
  - name: r
    using: {foreign_key_constraint: a}`, `unknown field "foreign_key_constraint"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			tables := filepath.Join(dir, "databases", "default", "tables")
			if err := os.MkdirAll(tables, 0o755); err != nil {
				t.Fatal(err)
			}
			files := map[string]string{
				filepath.Join(dir, "version.yaml"):                "version: 3\n",
				filepath.Join(dir, "databases", "databases.yaml"): "- name: default\n  kind: postgres\n  tables: \"!include default/tables/tables.yaml\"\n",
				filepath.Join(tables, "tables.yaml"):              "- \"!include x.yaml\"\n",
				filepath.Join(tables, "x.yaml"):                   strings.TrimPrefix(c.table, "\n") + "\n",
			}
			for p, body := range files {
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m, err := Load(dir)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			_, err = m.Rules("user")
			if err == nil || !strings.Contains(err.Error(), c.error) {
				t.Fatalf("Rules: error %v, want one containing %q", err, c.error)
			}
			_, _, err = m.SQL("public", "x", "p", map[string]any{}, nil, 1, noCatalog{})
			if err == nil || !strings.Contains(err.Error(), c.error) {
				t.Fatalf("SQL: error %v, want one containing %q", err, c.error)
			}
		})
	}
}
