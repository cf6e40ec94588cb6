package hasurabool_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/hasurabool"
	"github.com/tenantkit/tenantkit/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The users of the test data; d is a member of no tenant.
var users = map[string]string{
	"a": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
	"b": "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb",
	"c": "cccccccc-cccc-cccc-cccc-cccccccccccc",
	"d": "dddddddd-dddd-dddd-dddd-dddddddddddd",
}

func pub(name string) hasurabool.Table { return hasurabool.Table{Schema: "public", Name: name} }

// tracked are the tables of testdata/schema.sql that the tests track, with their relationships:
// every form of relationship Hasura has, and three that cannot be resolved (on dup).
func tracked() hasurabool.Tables {
	members, projects := pub("members"), pub("projects")
	return hasurabool.Tables{
		pub("tenants"): {
			"members":  {Name: "members", Array: true, FKColumns: []string{"tenant_id"}, FKTable: &members},
			"projects": {Name: "projects", Array: true, Manual: true, Remote: projects, ColumnMapping: map[string]string{"id": "tenant_id"}},
		},
		members: {
			"tenant":   {Name: "tenant", FKColumns: []string{"tenant_id"}},
			"projects": {Name: "projects", Array: true, FKColumns: []string{"tenant_id", "owner_id"}, FKTable: &projects},
		},
		projects: {
			"tenant": {Name: "tenant", FKColumns: []string{"tenant_id"}},
			// a two-column foreign key, listed in another order than the constraint's
			"owner": {Name: "owner", FKColumns: []string{"owner_id", "tenant_id"}},
		},
		pub("dup"): {
			"tenant": {Name: "tenant", FKColumns: []string{"t"}}, // two foreign keys on t
			"nofk":   {Name: "nofk", FKColumns: []string{"u"}},   // none on u
			"hidden": {Name: "hidden", Manual: true, Remote: pub("untracked"), ColumnMapping: map[string]string{"u": "id"}},
		},
		{Schema: "other", Name: "Banned Users"}: {},
		{Schema: "other", Name: "levels"}:       {},
	}
}

// rowKey is how a row of each table is named in the expectations.
var rowKey = map[string]string{
	"projects":     "p.id::text",
	"tenants":      "p.id",
	"members":      "p.tenant_id || '/' || left(p.user_id::text, 1)",
	"dup":          "coalesce(p.t, '')",
	"untracked":    "p.id",
	"Banned Users": "left(p.user_id::text, 1)",
	"levels":       "coalesce(p.v, '-')",
}

// testDB returns a connection to an empty database holding testdata/schema.sql.
func testDB(t *testing.T) *pgx.Conn {
	t.Helper()
	schema, err := os.ReadFile("testdata/schema.sql")
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

// compileFunc compiles an expression for rows aliased p, its parameters numbered from firstParam.
type compileFunc func(firstParam int) (string, []any, error)

// compiler is compileFunc of cp's SQL.
func compiler(cp hasurabool.Compiler, schema, table string, expr map[string]any, session map[string]string) compileFunc {
	return func(firstParam int) (string, []any, error) {
		return cp.SQL(schema, table, "p", expr, session, firstParam)
	}
}

// selectWhere runs `SELECT key FROM table AS p WHERE pred`, twice: with the predicate's parameters
// numbered from 1, and from 3 after two parameters of the caller.
func selectWhere(t *testing.T, conn *pgx.Conn, schema, table string, compile compileFunc) ([]string, error) {
	t.Helper()
	var first []string
	for _, firstParam := range []int{1, 3} {
		pred, args, err := compile(firstParam)
		if err != nil {
			return nil, err
		}
		q := "SELECT " + rowKey[table] + " FROM " + pgx.Identifier{schema, table}.Sanitize() + " AS p WHERE "
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

type exprCase struct {
	Name    string            `yaml:"name"`
	Table   string            `yaml:"table"`
	User    string            `yaml:"user"`
	Session map[string]string `yaml:"session"`
	Where   map[string]any    `yaml:"where"`
	Want    []any             `yaml:"want"`
	Error   string            `yaml:"error"`
}

func loadCases(t *testing.T) []exprCase {
	t.Helper()
	b, err := os.ReadFile("testdata/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases []exprCase
	if err := yaml.UnmarshalWithOptions(b, &cases, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for i := range cases {
		c := &cases[i]
		if names[c.Name] || c.Name == "" {
			t.Fatalf("case name %q empty or repeated", c.Name)
		}
		names[c.Name] = true
		if c.Table == "" {
			c.Table = "projects"
		}
		if c.Session == nil {
			c.Session = map[string]string{}
		}
		if c.User != "" {
			uid, ok := users[c.User]
			if !ok {
				t.Fatalf("case %q: unknown user %q", c.Name, c.User)
			}
			c.Session["X-Hasura-User-Id"] = uid
		}
		if c.Where == nil {
			t.Fatalf("case %q: no where", c.Name)
		}
		if (c.Want == nil) == (c.Error == "") {
			t.Fatalf("case %q: give exactly one of want and error", c.Name)
		}
	}
	return cases
}

func schemaOf(table string) string {
	if table == "Banned Users" || table == "levels" {
		return "other"
	}
	return "public"
}

// TestCompile runs every expression of testdata/cases.yaml against PostgreSQL.
func TestCompile(t *testing.T) {
	conn := testDB(t)
	cat, err := hasurabool.LoadCatalog(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	cp := hasurabool.Compiler{Tracked: tracked(), Catalog: cat}

	t.Run("catalog", func(t *testing.T) {
		fks, err := cat.ForeignKeys("public", "projects")
		if err != nil {
			t.Fatal(err)
		}
		var owner *hasurabool.ForeignKey
		for i := range fks {
			if fks[i].Name == "projects_owner_fkey" {
				owner = &fks[i]
			}
		}
		want := hasurabool.ForeignKey{Name: "projects_owner_fkey", Schema: "public", Table: "projects",
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
		for _, c := range loadCases(t) {
			t.Run(c.Name, func(t *testing.T) {
				got, err := selectWhere(t, conn, schemaOf(c.Table), c.Table, compiler(cp, schemaOf(c.Table), c.Table, c.Where, c.Session))
				if c.Error != "" {
					if err == nil || !strings.Contains(err.Error(), c.Error) {
						t.Fatalf("error %v, want one containing %q", err, c.Error)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				want := []string{}
				for _, w := range c.Want {
					want = append(want, fmt.Sprint(w))
				}
				slices.Sort(want)
				if !slices.Equal(got, want) {
					pred, args, _ := cp.SQL(schemaOf(c.Table), c.Table, "p", c.Where, c.Session, 1)
					t.Errorf("selected %v, want %v\n%s\nargs %#v", got, want, pred, args)
				}
			})
		}
	})
}

// testCatalog is a Catalog for tests without a database.
type testCatalog struct {
	types map[string]string // "schema.table.column" → type
	fks   []hasurabool.ForeignKey
}

func (c testCatalog) ColumnType(schema, table, column string) (string, error) {
	return c.types[schema+"."+table+"."+column], nil
}

func (c testCatalog) ForeignKeys(schema, table string) ([]hasurabool.ForeignKey, error) {
	var out []hasurabool.ForeignKey
	for _, fk := range c.fks {
		if fk.Schema == schema && fk.Table == table {
			out = append(out, fk)
		}
	}
	return out, nil
}

func fixtureCatalog() testCatalog {
	return testCatalog{
		types: map[string]string{
			"public.projects.id": "integer", "public.projects.tenant_id": "text", "public.projects.owner_id": "uuid",
			"public.projects.data": "jsonb", "public.projects.score": "integer", "public.projects.tags": "text[]",
			"public.tenants.id": "text", "public.tenants.plan": "text",
			"public.members.tenant_id": "text", "public.members.user_id": "uuid", "public.members.role": "text",
			"other.Banned Users.user_id": "uuid",
		},
		fks: []hasurabool.ForeignKey{
			{Name: "p_t", Schema: "public", Table: "projects", Columns: []string{"tenant_id"}, RefSchema: "public", RefTable: "tenants", RefColumns: []string{"id"}},
			{Name: "m_t", Schema: "public", Table: "members", Columns: []string{"tenant_id"}, RefSchema: "public", RefTable: "tenants", RefColumns: []string{"id"}},
		},
	}
}

func ptr(s string) *string { return &s }

// TestCompileText pins the SQL: Hasura's forms, quoting, parameter numbering and reuse.
func TestCompileText(t *testing.T) {
	cp := hasurabool.Compiler{Tracked: tracked(), Catalog: fixtureCatalog()}
	uid := users["a"]
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
			table := "projects"
			if _, ok := c.expr["plan"]; ok {
				table = "tenants"
			}
			got, args, err := cp.SQL("public", table, "p", c.expr, c.session, c.first)
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
		cp    hasurabool.Compiler
		first int
		expr  map[string]any
		sess  map[string]string
		error string
	}{
		{"nil expression", cp, 1, nil, nil, "nil boolean expression"},
		{"no catalog", hasurabool.Compiler{Tracked: tracked()}, 1, map[string]any{}, nil, "needs a Catalog"},
		{"no tracked tables", hasurabool.Compiler{Catalog: fixtureCatalog()}, 1, map[string]any{}, nil, "needs the tracked tables"},
		{"parameter 0", cp, 0, map[string]any{}, nil, "firstParam 0"},
		{"conflicting session variables", cp, 1, map[string]any{}, map[string]string{"X-Hasura-A": "1", "x-hasura-a": "2"}, "given twice"},
		{"untracked root table", cp, 1, map[string]any{}, nil, "public.untracked is not tracked"},
	} {
		table := "projects"
		if c.name == "untracked root table" {
			table = "untracked"
		}
		if _, _, err := c.cp.SQL("public", table, "p", c.expr, c.sess, c.first); err == nil || !strings.Contains(err.Error(), c.error) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.error)
		}
	}
}

// TestResolve checks the column mapping of each form of relationship, sorted by local column.
func TestResolve(t *testing.T) {
	cat := fixtureCatalog()
	cat.fks = append(cat.fks, hasurabool.ForeignKey{Name: "p_o", Schema: "public", Table: "projects", Columns: []string{"tenant_id", "owner_id"},
		RefSchema: "public", RefTable: "members", RefColumns: []string{"tenant_id", "user_id"}})
	cp := hasurabool.Compiler{Tracked: tracked(), Catalog: cat}
	rels := tracked()
	for _, c := range []struct {
		table, rel string
		remote     hasurabool.Table
		mapping    [][2]string
	}{
		{"projects", "tenant", pub("tenants"), [][2]string{{"tenant_id", "id"}}},
		{"projects", "owner", pub("members"), [][2]string{{"owner_id", "user_id"}, {"tenant_id", "tenant_id"}}},
		{"tenants", "members", pub("members"), [][2]string{{"id", "tenant_id"}}},
		{"tenants", "projects", pub("projects"), [][2]string{{"id", "tenant_id"}}},
		{"members", "projects", pub("projects"), [][2]string{{"tenant_id", "tenant_id"}, {"user_id", "owner_id"}}},
	} {
		remote, mapping, err := cp.Resolve(pub(c.table), rels[pub(c.table)][c.rel])
		if err != nil || remote != c.remote || !reflect.DeepEqual(mapping, c.mapping) {
			t.Errorf("%s.%s: %v %v %v, want %v %v", c.table, c.rel, remote, mapping, err, c.remote, c.mapping)
		}
	}
}

// TestParseTable reads both spellings of a table name and refuses anything else.
func TestParseTable(t *testing.T) {
	for _, c := range []struct {
		in    any
		want  hasurabool.Table
		error string
	}{
		{"projects", pub("projects"), ""},
		{map[string]any{"name": "levels", "schema": "other"}, hasurabool.Table{Schema: "other", Name: "levels"}, ""},
		{map[string]any{"name": "projects"}, pub("projects"), ""},
		{"", hasurabool.Table{}, "empty table name"},
		{map[string]any{"schema": "other"}, hasurabool.Table{}, "without name"},
		{map[string]any{"name": "x", "nmae": "y"}, hasurabool.Table{}, `unknown field "nmae"`},
		{map[string]any{"name": 3}, hasurabool.Table{}, "want a string"},
		{[]any{"x"}, hasurabool.Table{}, "want a name or {schema, name}"},
	} {
		got, err := hasurabool.ParseTable(c.in)
		if c.error != "" {
			if err == nil || !strings.Contains(err.Error(), c.error) {
				t.Errorf("hasurabool.ParseTable(%v): error %v, want one containing %q", c.in, err, c.error)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("hasurabool.ParseTable(%v) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}
