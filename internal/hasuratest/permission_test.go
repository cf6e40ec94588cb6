package hasuratest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/pglocal"
)

const permFixture = "testdata/permissions/metadata"

// The users of the test data; d is a member of no tenant.
var permUsers = map[string]string{
	"a": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
	"b": "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb",
	"c": "cccccccc-cccc-cccc-cccc-cccccccccccc",
	"d": "dddddddd-dddd-dddd-dddd-dddddddddddd",
}

// permSchema is the database of the tests: see testdata/permissions/cases.yaml for the data.
const permSchema = `
CREATE SCHEMA other;
CREATE TABLE other."Banned Users" (user_id uuid PRIMARY KEY);
CREATE TABLE tenants (
  id text PRIMARY KEY,
  name text NOT NULL,
  plan text,
  settings jsonb,
  raw json
);
CREATE TABLE members (
  tenant_id text NOT NULL REFERENCES tenants (id),
  user_id uuid NOT NULL,
  role text,
  perms jsonb,
  PRIMARY KEY (tenant_id, user_id)
);
CREATE TABLE projects (
  tenant_id text NOT NULL REFERENCES tenants (id),
  id integer NOT NULL UNIQUE,
  owner_id uuid,
  data jsonb,
  score integer,
  tags text[],
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT projects_owner_fkey FOREIGN KEY (tenant_id, owner_id) REFERENCES members (tenant_id, user_id)
);
CREATE TABLE dup (
  t text,
  u text,
  CONSTRAINT dup_t1 FOREIGN KEY (t) REFERENCES tenants (id),
  CONSTRAINT dup_t2 FOREIGN KEY (t) REFERENCES tenants (id)
);
CREATE TABLE untracked (id text);
CREATE TYPE other."Level" AS ENUM ('low', 'high');
CREATE TABLE other.levels (l other."Level", ls other."Level"[], v varchar(20));

INSERT INTO tenants VALUES
  ('t1', 'Acme', 'pro', '{"sso": true, "tier": 2}', '{}'),
  ('t2', 'Beta', NULL, '{"beta": true}', NULL),
  ('t3', 'Gamma', 'free', NULL, NULL);
INSERT INTO members VALUES
  ('t1', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'owner', '["*"]'),
  ('t1', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', 'member', '["projects:read"]'),
  ('t2', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', 'admin', '["users:write"]'),
  ('t2', 'cccccccc-cccc-cccc-cccc-cccccccccccc', 'guest', NULL),
  ('t3', 'cccccccc-cccc-cccc-cccc-cccccccccccc', NULL, '[]');
INSERT INTO projects VALUES
  ('t1', 1, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', '{"public": true, "k": 1}', 10, '{red,blue}'),
  ('t1', 2, 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', '{"k": 2}', NULL, '{blue}'),
  ('t1', 3, NULL, NULL, 5, NULL),
  ('t2', 4, 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', '{"public": false}', -1, '{}'),
  ('t2', 5, 'cccccccc-cccc-cccc-cccc-cccccccccccc', '{"x": null}', 0, '{red}'),
  ('t3', 6, 'cccccccc-cccc-cccc-cccc-cccccccccccc', '{}', 6, NULL),
  ('t3', 7, NULL, '{"public": true}', NULL, '{green}');
INSERT INTO other."Banned Users" VALUES ('cccccccc-cccc-cccc-cccc-cccccccccccc');
INSERT INTO other.levels VALUES ('low', '{low,high}', 'x'), ('high', '{high}', 'y'), (NULL, NULL, NULL);
`

// permRowKey is how a row of each table is named in the expectations.
var permRowKey = map[string]string{
	"projects":     "p.id::text",
	"tenants":      "p.id",
	"members":      "p.tenant_id || '/' || left(p.user_id::text, 1)",
	"dup":          "coalesce(p.t, '')",
	"untracked":    "p.id",
	"Banned Users": "left(p.user_id::text, 1)",
	"levels":       "coalesce(p.v, '-')",
}

// permDB creates a database with permSchema on the server of TEST_DATABASE_URL, else on
// 127.0.0.1:5432, else on a throwaway cluster, and drops it when the test ends.
func permDB(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	server, err := pglocal.Find(ctx, pglocal.Options{EnvVars: []string{"TEST_DATABASE_URL"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := server.Stop(); err != nil {
			t.Error(err)
		}
	})
	admin, err := pgx.Connect(ctx, server.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "tkperm_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := pglocal.WithDatabase(server.URL, name)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, permSchema); err != nil {
		t.Fatal(err)
	}
	return conn
}

// permSelect runs `SELECT key FROM table AS p WHERE pred`, twice: with the predicate's parameters
// numbered from 1, and from 3 after two parameters of the caller.
func permSelect(t *testing.T, conn *pgx.Conn, m *Metadata, cat Catalog, schema, table string, expr map[string]any, session map[string]string) ([]string, error) {
	t.Helper()
	var first []string
	for _, firstParam := range []int{1, 3} {
		pred, args, err := m.SQL(schema, table, "p", expr, session, firstParam, cat)
		if err != nil {
			return nil, err
		}
		q := "SELECT " + permRowKey[table] + " FROM " + pgx.Identifier{schema, table}.Sanitize() + " AS p WHERE "
		if firstParam == 3 {
			q += "$1::int = 1 AND $2::text = 'x' AND "
			args = append([]any{1, "x"}, args...)
		}
		rows, err := conn.Query(context.Background(), q+pred, args...)
		if err != nil {
			t.Fatalf("query failed: %v\n%s\nargs %#v", err, q+pred, args)
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("query failed: %v\n%s\nargs %#v", err, q+pred, args)
		}
		slices.Sort(keys)
		if keys == nil {
			keys = []string{}
		}
		if firstParam == 1 {
			first = keys
		} else if !slices.Equal(first, keys) {
			t.Fatalf("parameters from $3 select %v, from $1 %v", keys, first)
		}
	}
	return first, nil
}

type permCase struct {
	Name    string
	Table   string
	User    string
	Session map[string]string
	Where   map[string]any
	Want    []string
	Error   string
}

func loadPermCases(t *testing.T) []permCase {
	t.Helper()
	v, err := readYAML("testdata/permissions/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var raw []struct {
		Name    string            `json:"name"`
		Table   string            `json:"table"`
		User    string            `json:"user"`
		Session map[string]string `json:"session"`
		Where   map[string]any    `json:"where"`
		Want    []any             `json:"want"`
		Error   string            `json:"error"`
	}
	if err := decodeStrict(v, &raw); err != nil {
		t.Fatal(err)
	}
	var out []permCase
	names := map[string]bool{}
	for _, r := range raw {
		if names[r.Name] || r.Name == "" {
			t.Fatalf("case name %q empty or repeated", r.Name)
		}
		names[r.Name] = true
		c := permCase{Name: r.Name, Table: r.Table, User: r.User, Session: map[string]string{}, Where: r.Where, Error: r.Error}
		if c.Table == "" {
			c.Table = "projects"
		}
		for k, v := range r.Session {
			c.Session[k] = v
		}
		if c.User != "" {
			uid, ok := permUsers[c.User]
			if !ok {
				t.Fatalf("case %q: unknown user %q", c.Name, c.User)
			}
			c.Session["X-Hasura-User-Id"] = uid
		}
		if c.Where == nil {
			t.Fatalf("case %q: no where", c.Name)
		}
		if (r.Want == nil) == (c.Error == "") {
			t.Fatalf("case %q: give exactly one of want and error", c.Name)
		}
		c.Want = []string{}
		for _, w := range r.Want {
			c.Want = append(c.Want, fmt.Sprint(w))
		}
		slices.Sort(c.Want)
		out = append(out, c)
	}
	return out
}

func schemaOf(table string) string {
	if table == "Banned Users" || table == "levels" {
		return "other"
	}
	return "public"
}

// TestPermissionSQL runs every expression of testdata/permissions/cases.yaml and every permission
// of the fixture metadata against PostgreSQL.
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

	t.Run("catalog", func(t *testing.T) {
		fks, err := cat.ForeignKeys("public", "projects")
		if err != nil {
			t.Fatal(err)
		}
		var owner *ForeignKey
		for i := range fks {
			if fks[i].Name == "projects_owner_fkey" {
				owner = &fks[i]
			}
		}
		want := ForeignKey{Name: "projects_owner_fkey", Schema: "public", Table: "projects",
			Columns: []string{"tenant_id", "owner_id"}, RefSchema: "public", RefTable: "members", RefColumns: []string{"tenant_id", "user_id"}}
		if owner == nil || !reflect.DeepEqual(*owner, want) {
			t.Errorf("projects foreign keys %+v, want one %+v", fks, want)
		}
		for _, c := range []struct{ schema, table, column, want string }{
			{"public", "projects", "owner_id", "uuid"},
			{"public", "projects", "tags", "text[]"},
			{"public", "tenants", "settings", "jsonb"},
			{"other", "Banned Users", "user_id", "uuid"},
			{"public", "projects", "nope", ""},
			{"other", "levels", "l", `other."Level"`},
			{"other", "levels", "ls", `other."Level"[]`},
			{"other", "levels", "v", "character varying(20)"},
		} {
			if got, err := cat.ColumnType(c.schema, c.table, c.column); err != nil || got != c.want {
				t.Errorf("ColumnType(%s, %s, %s) = %q, %v; want %q", c.schema, c.table, c.column, got, err, c.want)
			}
		}
	})

	t.Run("cases", func(t *testing.T) {
		for _, c := range loadPermCases(t) {
			t.Run(c.Name, func(t *testing.T) {
				got, err := permSelect(t, conn, m, cat, schemaOf(c.Table), c.Table, c.Where, c.Session)
				if c.Error != "" {
					if err == nil || !strings.Contains(err.Error(), c.Error) {
						t.Fatalf("error %v, want one containing %q", err, c.Error)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, c.Want) {
					pred, args, _ := m.SQL(schemaOf(c.Table), c.Table, "p", c.Where, c.Session, 1, cat)
					t.Errorf("selected %v, want %v\n%s\nargs %#v", got, c.Want, pred, args)
				}
			})
		}
	})

	t.Run("rules", func(t *testing.T) {
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
	})
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

// permCatalog is a Catalog for tests without a database.
type permCatalog struct {
	types map[string]string // "schema.table.column" → type
	fks   []ForeignKey
}

func (c permCatalog) ColumnType(schema, table, column string) (string, error) {
	return c.types[schema+"."+table+"."+column], nil
}

func (c permCatalog) ForeignKeys(schema, table string) ([]ForeignKey, error) {
	var out []ForeignKey
	for _, fk := range c.fks {
		if fk.Schema == schema && fk.Table == table {
			out = append(out, fk)
		}
	}
	return out, nil
}

func fixtureCatalog() permCatalog {
	return permCatalog{
		types: map[string]string{
			"public.projects.id": "integer", "public.projects.tenant_id": "text", "public.projects.owner_id": "uuid",
			"public.projects.data": "jsonb", "public.projects.score": "integer", "public.projects.tags": "text[]",
			"public.tenants.id": "text", "public.tenants.plan": "text",
			"public.members.tenant_id": "text", "public.members.user_id": "uuid", "public.members.role": "text",
		},
		fks: []ForeignKey{
			{Name: "p_t", Schema: "public", Table: "projects", Columns: []string{"tenant_id"}, RefSchema: "public", RefTable: "tenants", RefColumns: []string{"id"}},
			{Name: "m_t", Schema: "public", Table: "members", Columns: []string{"tenant_id"}, RefSchema: "public", RefTable: "tenants", RefColumns: []string{"id"}},
		},
	}
}

// TestPermissionSQLText pins the SQL: Hasura's forms, quoting, parameter numbering and reuse.
func TestPermissionSQLText(t *testing.T) {
	m, err := Load(permFixture)
	if err != nil {
		t.Fatal(err)
	}
	cat := fixtureCatalog()
	uid := permUsers["a"]
	for _, c := range []struct {
		name    string
		expr    map[string]any
		session map[string]string
		first   int
		want    string
		args    []any
	}{
		{
			name:    "eq is null-safe as in Hasura",
			expr:    map[string]any{"owner_id": map[string]any{"_eq": "X-Hasura-User-Id"}},
			session: map[string]string{"x-hasura-user-id": uid},
			first:   1,
			want:    `(("p"."owner_id" = ($1::text)::uuid) OR (("p"."owner_id" IS NULL) AND (($1::text)::uuid IS NULL)))`,
			args:    []any{uid},
		},
		{
			name:  "neq null",
			expr:  map[string]any{"plan": map[string]any{"_neq": nil}},
			first: 1,
			want:  `(("p"."plan" <> NULL::text) OR (("p"."plan" IS NOT NULL) AND (NULL::text IS NULL)))`,
		},
		{
			name: "not over a relationship, a session variable used twice, numbering from 4",
			expr: map[string]any{
				"_not":     map[string]any{"tenant": map[string]any{"members": map[string]any{"user_id": "X-Hasura-User-Id"}}},
				"owner_id": map[string]any{"_neq": "x-hasura-user-id"},
				"id":       map[string]any{"_in": []any{1, 2}},
			},
			session: map[string]string{"X-HASURA-USER-ID": uid},
			first:   4,
			want: `((NOT (EXISTS (SELECT 1 FROM "public"."tenants" AS "_be_0_public_tenants" WHERE ("_be_0_public_tenants"."id" = "p"."tenant_id") AND ` +
				`(EXISTS (SELECT 1 FROM "public"."members" AS "_be_1_public_members" WHERE ("_be_1_public_members"."tenant_id" = "_be_0_public_tenants"."id") AND ` +
				`(("_be_1_public_members"."user_id" = ($4::text)::uuid) OR (("_be_1_public_members"."user_id" IS NULL) AND (($4::text)::uuid IS NULL)))))))) AND ` +
				`("p"."id" = ANY(($5::text[])::integer[])) AND ` +
				`(("p"."owner_id" <> ($4::text)::uuid) OR (("p"."owner_id" IS NOT NULL) AND (($4::text)::uuid IS NULL))))`,
			args: []any{uid, []string{"1", "2"}},
		},
		{
			name:  "exists with a quoted table name and a root column",
			expr:  map[string]any{"_exists": map[string]any{"_table": map[string]any{"schema": "other", "name": "Banned Users"}, "_where": map[string]any{"user_id": map[string]any{"_ceq": []any{"$", "owner_id"}}}}},
			first: 1,
			want:  `(EXISTS (SELECT 1 FROM "other"."Banned Users" AS "_exists_table_0" WHERE ("_exists_table_0"."user_id" = "p"."owner_id")))`,
		},
		{
			name:  "in with a null element",
			expr:  map[string]any{"score": map[string]any{"_nin": []any{nil, 10}}},
			first: 1,
			want:  `(NOT ("p"."score" = ANY(($1::text[])::integer[])))`,
			args:  []any{[]*string{nil, ptr("10")}},
		},
		{
			name:  "empty and, empty or",
			expr:  map[string]any{"_and": []any{}, "_or": []any{}},
			first: 1,
			want:  `(TRUE AND FALSE)`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			cat := cat
			cat.types["other.Banned Users.user_id"] = "uuid"
			table := "projects"
			if _, ok := c.expr["plan"]; ok {
				table = "tenants"
			}
			got, args, err := m.SQL("public", table, "p", c.expr, c.session, c.first, cat)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("SQL\n got %s\nwant %s", got, c.want)
			}
			if !reflect.DeepEqual(args, c.args) && !(len(args) == 0 && len(c.args) == 0) {
				t.Errorf("args %#v, want %#v", args, c.args)
			}
		})
	}

	for _, c := range []struct {
		name  string
		call  func() error
		error string
	}{
		{"nil expression", func() error {
			_, _, err := m.SQL("public", "projects", "p", nil, nil, 1, cat)
			return err
		}, "nil boolean expression"},
		{"no catalog", func() error {
			_, _, err := m.SQL("public", "projects", "p", map[string]any{}, nil, 1, nil)
			return err
		}, "needs a Catalog"},
		{"parameter 0", func() error {
			_, _, err := m.SQL("public", "projects", "p", map[string]any{}, nil, 0, cat)
			return err
		}, "firstParam 0"},
		{"conflicting session variables", func() error {
			_, _, err := m.SQL("public", "projects", "p", map[string]any{}, map[string]string{"X-Hasura-A": "1", "x-hasura-a": "2"}, 1, cat)
			return err
		}, "given twice"},
	} {
		if err := c.call(); err == nil || !strings.Contains(err.Error(), c.error) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.error)
		}
	}
}

func ptr(s string) *string { return &s }

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
			_, _, err = m.SQL("public", "x", "p", map[string]any{}, nil, 1, fixtureCatalog())
			if err == nil || !strings.Contains(err.Error(), c.error) {
				t.Fatalf("SQL: error %v, want one containing %q", err, c.error)
			}
		})
	}
}
