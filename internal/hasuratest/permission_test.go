package hasuratest

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const permFixture = "testdata/permissions/metadata"

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
