package hasuratest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	gqlast "github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/tenantkit/tenantkit/internal/pgtest"
)

const schemaFixtureSQL = `
CREATE SCHEMA other;
CREATE TYPE level AS ENUM ('low', 'high');
CREATE TABLE tenants (id uuid PRIMARY KEY, name text NOT NULL, secret text);
CREATE TABLE things (
  id uuid PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  name text NOT NULL,
  data jsonb,
  n integer,
  big bigint,
  lvl level,
  owner_id uuid,
  CONSTRAINT things_name_key UNIQUE (tenant_id, name)
);
CREATE TABLE other.stuff (k text PRIMARY KEY, tenant_id uuid REFERENCES tenants (id));
`

var schemaFixtureFiles = map[string]string{
	"version.yaml": "version: 3\n",
	"databases/databases.yaml": `- name: default
  kind: postgres
  configuration:
    connection_info:
      database_url: postgres://x
  tables:
  - table: {name: tenants, schema: public}
    array_relationships:
    - name: things
      using: {foreign_key_constraint_on: {table: {name: things, schema: public}, column: tenant_id}}
    - name: stuff
      using: {foreign_key_constraint_on: {table: {name: stuff, schema: other}, column: tenant_id}}
    select_permissions:
    - role: user
      permission: {columns: [id, name], filter: {}}
  - table: {name: things, schema: public}
    object_relationships:
    - name: tenant
      using: {foreign_key_constraint_on: tenant_id}
    - name: owner
      using:
        manual_configuration:
          remote_table: {name: tenants, schema: public}
          column_mapping: {owner_id: id}
    select_permissions:
    - role: user
      permission: {columns: [id, tenant_id, name, data, n, lvl], filter: {}}
    insert_permissions:
    - role: user
      permission: {columns: [tenant_id, name, data, n], set: {n: "1"}, check: {}}
    update_permissions:
    - role: user
      permission: {columns: [name, data, n], filter: {}, check: {}}
    delete_permissions:
    - role: user
      permission: {filter: {}}
    - role: backend
      permission: {filter: {}, backend_only: true}
  - table: {name: stuff, schema: other}
    object_relationships:
    - name: tenant
      using: {foreign_key_constraint_on: tenant_id}
    select_permissions:
    - role: user
      permission: {columns: "*", filter: {}, allow_aggregations: true, query_root_fields: [select, select_aggregate]}
`,
	"actions.graphql": `type Query { ping(x: Int!): PingOutput! }
type Mutation { doIt(input: DoItInput!): PingOutput }
input DoItInput { a: uuid! b: [String!] }
type PingOutput { ok: Boolean! at: timestamptz }
`,
	"actions.yaml": `actions:
- name: ping
  definition: {kind: synchronous, handler: http://h/ping}
  permissions: [{role: user}]
- name: doIt
  definition: {kind: synchronous, handler: http://h/doIt}
  permissions: [{role: other}]
custom_types:
  input_objects: [{name: DoItInput}]
  objects: [{name: PingOutput}]
`,
	"remote_schemas.yaml": `- name: remote
  definition: {url: http://h/graphql}
  permissions:
  - role: user
    definition:
      schema: |
        schema { query: Query }
        type Query { hello(name: String! = "you"): Greeting! }
        type Greeting { text: String! at: Time }
        scalar Time
`,
}

func writeMetadata(t *testing.T, files map[string]string) *Metadata {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func schemaFixture(t *testing.T) (*Metadata, *DBCatalog) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.EmptyDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, schemaFixtureSQL); err != nil {
		t.Fatal(err)
	}
	cat, err := LoadDBCatalog(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	return writeMetadata(t, schemaFixtureFiles), cat
}

// validate returns gqlparser's verdict on an operation against s ("" when valid).
func validate(s *gqlast.Schema, op string) string {
	doc, err := parser.ParseQuery(&gqlast.Source{Input: op})
	if err != nil {
		return err.Error()
	}
	if errs := validator.ValidateWithRules(s, doc, nil); len(errs) > 0 {
		return errs.Error()
	}
	return ""
}

// TestSchema: the schema a role sees holds exactly what its permissions allow, with Hasura's
// names and argument shapes (checked by operations that must pass and must fail validation).
func TestSchema(t *testing.T) {
	t.Parallel()
	m, cat := schemaFixture(t)
	s, err := m.Schema("user", cat)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		op   string
		want string // "" valid, else a fragment of the error
	}{
		// select: permitted columns, relationships, arguments and operators
		{`{ things(where: {name: {_ilike: "%a%"}, tenant: {name: {_eq: "x"}}, data: {_has_key: "k"}}, order_by: [{name: asc}, {tenant: {name: desc_nulls_last}}], limit: 10, offset: 5, distinct_on: [name]) { id name data(path: "a.b") n lvl tenant { id name } owner { name } } }`, ""},
		{`query($id: uuid!) { things_by_pk(id: $id) { id } }`, ""},
		{`{ things { big } }`, `Cannot query field "big" on type "things"`},
		{`{ things(where: {big: {_eq: 1}}) { id } }`, `Field "big" is not defined by type "things_bool_exp"`},
		{`{ things(where: {n: {_ilike: "1"}}) { id } }`, `Field "_ilike" is not defined by type "Int_comparison_exp"`},
		{`{ tenants { secret } }`, `Cannot query field "secret"`},
		{`{ tenants { things(where: {n: {_gt: 1}}) { name } stuff { k } } }`, ""},
		{`{ things { lvl } } query Q($l: level) { things(where: {lvl: {_eq: $l}}) { id } }`, "must be the only defined operation"},
		{`query Q($l: level) { things(where: {lvl: {_eq: $l}}) { id } }`, ""},
		{`query Q($id: uuid!) { tenants_by_pk(id: $id) { name } }`, ""},
		// aggregates only where allowed; query_root_fields leaves out other_stuff_by_pk
		{`{ other_stuff_aggregate { aggregate { count } nodes { k tenant_id } } }`, ""},
		{`{ things_aggregate { aggregate { count } } }`, `Cannot query field "things_aggregate"`},
		{`{ other_stuff_by_pk(k: "a") { k } }`, `Cannot query field "other_stuff_by_pk"`},
		{`{ tenants { stuff_aggregate { aggregate { count } } } }`, ""},
		// subscriptions: the same, and streams
		{`subscription { other_stuff_by_pk(k: "a") { k } }`, ""},
		{`subscription { things_stream(batch_size: 10, cursor: {initial_value: {name: "a"}, ordering: ASC}) { id } }`, ""},
		// inserts: permitted columns minus presets; on_conflict with the update permission
		{`mutation($t: uuid!) { insert_things_one(object: {tenant_id: $t, name: "x", data: {a: 1}}, on_conflict: {constraint: things_name_key, update_columns: [name]}) { id } }`, ""},
		{`mutation { insert_things(objects: [{name: "x", n: 2}]) { affected_rows returning { id } } }`, `Field "n" is not defined by type "things_insert_input"`},
		{`mutation { insert_tenants_one(object: {name: "x"}) { id } }`, `Cannot query field "insert_tenants_one"`},
		// updates: _set, _inc on numbers, jsonb operators; by_pk; many
		{`mutation($id: uuid!) { update_things_by_pk(pk_columns: {id: $id}, _set: {name: "y"}, _inc: {n: 1}, _append: {data: {b: 2}}, _delete_key: {data: "a"}) { id } }`, ""},
		{`mutation { update_things(where: {}, _set: {tenant_id: "x"}) { affected_rows } }`, `Field "tenant_id" is not defined by type "things_set_input"`},
		{`mutation { update_things_many(updates: [{where: {id: {_eq: "x"}}, _set: {name: "z"}}]) { affected_rows } }`, ""},
		// deletes; a backend_only permission gives another role nothing (below)
		{`mutation($id: uuid!) { delete_things_by_pk(id: $id) { id } delete_things(where: {n: {_is_null: true}}) { affected_rows } }`, ""},
		// actions of the role, with their custom types; not another role's
		{`query { ping(x: 1) { ok at } }`, ""},
		{`mutation { doIt(input: {a: "x"}) { ok } }`, `Cannot query field "doIt"`},
		// the remote schema's permitted part
		{`{ hello { text at } }`, ""},
		{`{ hello(name: 1) { text } }`, "String cannot represent a non string value"},
	} {
		got := validate(s, c.op)
		switch {
		case c.want == "" && got != "":
			t.Errorf("%s\nrejected: %s", c.op, got)
		case c.want != "" && !strings.Contains(got, c.want):
			t.Errorf("%s\ngot %q, want an error containing %q", c.op, got, c.want)
		}
	}

	t.Run("a role without permissions sees Hasura's placeholder", func(t *testing.T) {
		for _, role := range []string{"nobody", "backend"} {
			s, err := m.Schema(role, cat)
			if err != nil {
				t.Fatal(err)
			}
			if got := validate(s, `{ no_queries_available }`); got != "" {
				t.Errorf("role %s: %s", role, got)
			}
			if s.Mutation != nil {
				t.Errorf("role %s has mutations: %v", role, s.Mutation.Fields)
			}
		}
		s, err := m.Schema("other", cat)
		if err != nil {
			t.Fatal(err)
		}
		if got := validate(s, `mutation { doIt(input: {a: "x", b: ["y"]}) { ok } }`); got != "" {
			t.Errorf("role other: %s", got)
		}
	})

	t.Run("what is not emulated is refused", func(t *testing.T) {
		for name, edit := range map[string]func(files map[string]string){
			"custom names": func(f map[string]string) {
				f["databases/databases.yaml"] = strings.Replace(f["databases/databases.yaml"], "  - table: {name: tenants, schema: public}\n",
					"  - table: {name: tenants, schema: public}\n    configuration: {custom_name: Tenant}\n", 1)
			},
			"remote customization": func(f map[string]string) {
				f["remote_schemas.yaml"] = strings.Replace(f["remote_schemas.yaml"], "  definition: {url: http://h/graphql}",
					"  definition: {url: http://h/graphql, customization: {root_fields_namespace: r}}", 1)
			},
			"a permitted column the table lacks": func(f map[string]string) {
				f["databases/databases.yaml"] = strings.Replace(f["databases/databases.yaml"], "columns: [id, name]", "columns: [id, name, nope]", 1)
			},
		} {
			files := map[string]string{}
			for k, v := range schemaFixtureFiles {
				files[k] = v
			}
			edit(files)
			if _, err := writeMetadata(t, files).Schema("user", cat); err == nil {
				t.Errorf("%s: no error", name)
			}
		}
		if _, err := m.Schema("admin", cat); err == nil {
			t.Error("admin: no error")
		}
	})
}
