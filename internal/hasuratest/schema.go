package hasuratest

// The GraphQL schema Hasura exposes to a role.
//
// Schema builds, from the metadata and the database's catalog, the schema a client of Hasura
// (graphql-engine v2, Postgres source, default settings) sees when its session has a given role, so
// that the GraphQL a frontend sends can be validated without a running Hasura. It follows
// Hasura's schema generation (server/src-lib/Hasura/GraphQL/Schema/*.hs and
// Hasura/Backends/Postgres/Schema/*.hs, hasura/graphql-engine; docs:
// https://hasura.io/docs/latest/api-reference/graphql-api/query/,
// https://hasura.io/docs/latest/api-reference/graphql-api/mutation/,
// https://hasura.io/docs/latest/auth/authorization/permissions/):
//
//   - Root types are query_root, mutation_root and subscription_root. A tracked table in schema
//     public is named after the table, in another schema <schema>_<table>.
//   - A table is visible only with a select permission for the role; its object type, boolean
//     expression (<t>_bool_exp), order (<t>_order_by) and column enum (<t>_select_column) hold the
//     permitted columns only, plus the relationships whose remote table the role may select.
//     Root fields: <t>(distinct_on, limit, offset, order_by, where), <t>_by_pk(<primary key>)
//     when every primary-key column is permitted, <t>_aggregate with allow_aggregations, and
//     <t>_stream in subscriptions; query_root_fields / subscription_root_fields restrict them.
//   - Column types: integer is Int, boolean Boolean, real Float, text and varchar String; every
//     other type is a scalar of its own name (uuid, timestamptz, jsonb, bigint, numeric, an enum
//     type's name, _text for text[]). A NOT NULL column is non-null in the object type; every
//     input field is nullable. A jsonb field takes path: String.
//   - Comparison operators (<scalar>_comparison_exp): _eq _neq _gt _gte _lt _lte _in _nin
//     _is_null on every type; the (i)like/(n)(i)regex/(n)similar family on String; _cast,
//     _contains, _contained_in, _has_key, _has_keys_any, _has_keys_all on jsonb.
//   - Object relationships are non-null when this table holds the foreign key and its columns are
//     NOT NULL, nullable otherwise; array relationships take the same arguments as the root list
//     field and have an _aggregate companion when the remote table allows aggregations.
//   - Inserts (insert_<t>, insert_<t>_one) take the insert permission's columns minus its presets;
//     on_conflict exists when the role may also update the table; insert_<t>_one and returning
//     need a select permission. Updates (update_<t>, update_<t>_by_pk, update_<t>_many) take the
//     update permission's columns minus presets in _set, numeric ones in _inc, jsonb ones in
//     _append, _prepend, _delete_key, _delete_elem and _delete_at_path. Deletes: delete_<t> and
//     delete_<t>_by_pk. backend_only permissions give an ordinary client nothing.
//   - Actions with a permission for the role are fields of query_root (type Query in
//     actions.graphql) or mutation_root (type Mutation), with the custom types of actions.graphql.
//   - A remote schema's permission for the role is an SDL whose Query (Mutation) fields join
//     query_root (mutation_root) and whose types join the schema as they are.
//   - A role with no query field at all gets query_root { no_queries_available: String! }.
//
// Not emulated (Schema refuses rather than guess when the metadata uses them): table
// configuration (custom names), remote schema customization. Not generated: nested inserts,
// aggregate functions other than count, aggregate boolean expressions and order_by beyond count,
// computed fields, remote relationships, inherited roles, Relay, the admin role (which sees
// every table, column and the remote schema's own introspection).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/hasurabool"
	"github.com/vektah/gqlparser/v2"
	gqlast "github.com/vektah/gqlparser/v2/ast"
	gqlparserp "github.com/vektah/gqlparser/v2/parser"
)

// DBCatalog describes the tables of a database as Schema needs them: columns in order with their
// types and nullability, primary keys and unique constraints, and (as a Catalog) foreign keys.
type DBCatalog struct {
	*hasurabool.PGCatalog
	tables map[hasurabool.Table]*dbTable
}

type dbTable struct {
	columns []dbColumn
	pkey    []string
	// unique are the primary key and unique constraints, by name
	unique []string
}

type dbColumn struct {
	name    string
	sqlType string // pg_type.typname: int4, text, jsonb, _text, tenant_role, …
	gqlType string // the GraphQL scalar Hasura names it
	notNull bool
}

func (t *dbTable) column(name string) (dbColumn, bool) {
	for _, c := range t.columns {
		if c.name == name {
			return c, true
		}
	}
	return dbColumn{}, false
}

// LoadDBCatalog reads what Schema needs of a database: LoadCatalog's columns and foreign keys, and
// every relation's columns (in order, with their type and NOT NULL), primary key and unique
// constraints.
func LoadDBCatalog(ctx context.Context, q CatalogQuerier) (*DBCatalog, error) {
	pg, err := LoadCatalog(ctx, q)
	if err != nil {
		return nil, err
	}
	cat := &DBCatalog{PGCatalog: pg, tables: map[hasurabool.Table]*dbTable{}}
	table := func(s, n string) *dbTable {
		k := hasurabool.Table{Schema: s, Name: n}
		if cat.tables[k] == nil {
			cat.tables[k] = &dbTable{}
		}
		return cat.tables[k]
	}
	rows, err := q.Query(ctx, `
		SELECT n.nspname::text, c.relname::text, a.attname::text, a.attnotnull, t.typname::text, tn.nspname::text
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
		WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
		ORDER BY 1, 2, a.attnum`)
	if err != nil {
		return nil, fmt.Errorf("hasuratest: read columns: %w", err)
	}
	var s, n, col, typ, typSchema string
	var notNull bool
	if _, err := pgx.ForEachRow(rows, []any{&s, &n, &col, &notNull, &typ, &typSchema}, func() error {
		t := table(s, n)
		t.columns = append(t.columns, dbColumn{name: col, sqlType: typ, gqlType: scalarName(typ, typSchema), notNull: notNull})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("hasuratest: read columns: %w", err)
	}
	rows, err = q.Query(ctx, `
		SELECT n.nspname::text, c.relname::text, con.conname::text, con.contype::text,
		  ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
		        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord)
		FROM pg_catalog.pg_constraint con
		JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE con.contype IN ('p', 'u')
		ORDER BY 1, 2, 3`)
	if err != nil {
		return nil, fmt.Errorf("hasuratest: read constraints: %w", err)
	}
	var name, kind string
	var cols []string
	if _, err := pgx.ForEachRow(rows, []any{&s, &n, &name, &kind, &cols}, func() error {
		t := table(s, n)
		t.unique = append(t.unique, name)
		if kind == "p" {
			t.pkey = slices.Clone(cols)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("hasuratest: read constraints: %w", err)
	}
	return cat, nil
}

// scalarName is the GraphQL scalar Hasura gives a PostgreSQL type (Hasura.Backends.Postgres.
// Instances.Schema: Int, Boolean, Float and String for integer, boolean, real and text/varchar;
// the type's name otherwise, an array type's name being its element's with a leading _). A type
// outside public and pg_catalog is prefixed with its schema.
func scalarName(typ, schema string) string {
	switch typ {
	case "int4":
		return "Int"
	case "bool":
		return "Boolean"
	case "float4":
		return "Float"
	case "text", "varchar":
		return "String"
	case "int2":
		return "smallint"
	case "int8":
		return "bigint"
	}
	if schema != "pg_catalog" && schema != "public" {
		return schema + "_" + typ
	}
	return typ
}

func isNumeric(sqlType string) bool {
	return slices.Contains([]string{"int2", "int4", "int8", "float4", "float8", "numeric", "money"}, sqlType)
}

func isStringLike(gqlType string) bool {
	return gqlType == "String" || gqlType == "bpchar" || gqlType == "citext" || gqlType == "name"
}

// Schema returns the schema Hasura would expose to role, checked by gqlparser; SchemaSDL is its
// text.
func (m *Metadata) Schema(role string, cat *DBCatalog) (*gqlast.Schema, error) {
	sdl, err := m.SchemaSDL(role, cat)
	if err != nil {
		return nil, err
	}
	s, gerr := gqlparser.LoadSchema(&gqlast.Source{Name: "hasura schema for role " + role, Input: sdl})
	if gerr != nil {
		return nil, fmt.Errorf("hasuratest: the schema built for role %s does not load: %w", role, gerr)
	}
	return s, nil
}

// SchemaSDL returns the schema Hasura would expose to role, as SDL (see the top of this file).
func (m *Metadata) SchemaSDL(role string, cat *DBCatalog) (string, error) {
	if role == "admin" {
		return "", errors.New("hasuratest: the admin role's schema is not emulated (it sees every table and the remote schemas' own introspection)")
	}
	pm, err := m.permissionModel()
	if err != nil {
		return "", err
	}
	b := &schemaBuilder{m: m, role: role, cat: cat, defs: map[string]string{}, scalars: map[string]bool{}}
	for _, src := range pm.sources {
		if err := b.source(src); err != nil {
			return "", err
		}
	}
	if err := b.actions(); err != nil {
		return "", err
	}
	if err := b.remoteSchemas(); err != nil {
		return "", err
	}
	if b.err != nil {
		return "", b.err
	}
	return b.sdl(), nil
}

// schemaBuilder accumulates the definitions of one role's schema.
type schemaBuilder struct {
	m    *Metadata
	role string
	cat  *DBCatalog

	query, mutation, subscription []string
	defs                          map[string]string // type name → its SDL
	order                         []string
	scalars                       map[string]bool
	err                           error // the first conflicting definition
}

// def adds a type definition once; a second, different definition of the same name is an error,
// kept in b.err.
func (b *schemaBuilder) def(name, sdl string) {
	if prev, ok := b.defs[name]; ok {
		if prev != sdl && b.err == nil {
			b.err = fmt.Errorf("hasuratest: role %s: type %s is defined twice, differently", b.role, name)
		}
		return
	}
	b.defs[name] = sdl
	b.order = append(b.order, name)
}

// use records that a named type is used, declaring it as a scalar unless it is built in or defined.
func (b *schemaBuilder) use(typ string) string {
	base := strings.Trim(typ, "[]!")
	b.scalars[base] = true
	return typ
}

func (b *schemaBuilder) sdl() string {
	var out strings.Builder
	out.WriteString("schema {\n  query: query_root\n")
	if len(b.mutation) > 0 {
		out.WriteString("  mutation: mutation_root\n")
	}
	if len(b.subscription) > 0 {
		out.WriteString("  subscription: subscription_root\n")
	}
	out.WriteString("}\n\n")
	if len(b.query) == 0 {
		b.query = []string{"no_queries_available: String!"}
	}
	for _, r := range []struct {
		name   string
		fields []string
	}{{"query_root", b.query}, {"mutation_root", b.mutation}, {"subscription_root", b.subscription}} {
		if len(r.fields) > 0 {
			out.WriteString("type " + r.name + " {\n  " + strings.Join(r.fields, "\n  ") + "\n}\n\n")
		}
	}
	for _, name := range b.order {
		out.WriteString(b.defs[name] + "\n\n")
	}
	var scalars []string
	for s := range b.scalars {
		switch s {
		case "Int", "Float", "String", "Boolean", "ID":
			continue
		}
		if _, ok := b.defs[s]; !ok {
			scalars = append(scalars, s)
		}
	}
	sort.Strings(scalars)
	for _, s := range scalars {
		out.WriteString("scalar " + s + "\n")
	}
	return out.String()
}

// ---- tables ----

// tableInfo is what the role may do with one tracked table.
type tableInfo struct {
	q                                hasurabool.Table
	name                             string // its GraphQL name
	db                               *dbTable
	sel, ins, upd, del               *permEntry
	selCols                          []dbColumn
	pkSelectable                     bool
	rels                             []relInfo
	insCols, updCols                 []dbColumn
	aggregates                       bool
	queryRootFields, subscriptionRFs []string
}

type relInfo struct {
	name    string
	array   bool
	target  *tableInfo
	notNull bool
}

func gqlTableName(q hasurabool.Table) string {
	if q.Schema == "public" {
		return q.Name
	}
	return q.Schema + "_" + q.Name
}

// columns resolves a permission's column list against the catalog ("*": every column).
func (b *schemaBuilder) columns(ti *tableInfo, perm []string, what string) ([]dbColumn, error) {
	if slices.Equal(perm, []string{"*"}) {
		return slices.Clone(ti.db.columns), nil
	}
	var out []dbColumn
	for _, c := range ti.db.columns { // catalog order, as Hasura lists them
		if slices.Contains(perm, c.name) {
			out = append(out, c)
		}
	}
	for _, p := range perm {
		if _, ok := ti.db.column(p); !ok {
			return nil, fmt.Errorf("hasuratest: %s: %s permission of role %s names column %q, which the table does not have", ti.q, what, b.role, p)
		}
	}
	return out, nil
}

func (b *schemaBuilder) source(src *permSource) error {
	infos := map[hasurabool.Table]*tableInfo{}
	var visible []*tableInfo
	for _, t := range src.tables {
		sel := t.perms["select"][b.role]
		if sel == nil {
			continue
		}
		if t.configured {
			return fmt.Errorf("hasuratest: %s: table configuration (custom names) is not emulated", t.Table)
		}
		db := b.cat.tables[t.Table]
		if db == nil {
			return fmt.Errorf("hasuratest: %s is tracked but not in the database", t.Table)
		}
		ti := &tableInfo{q: t.Table, name: gqlTableName(t.Table), db: db, sel: sel, aggregates: sel.allowAggregations,
			queryRootFields: sel.queryRootFields, subscriptionRFs: sel.subscriptionRootFields}
		var err error
		if ti.selCols, err = b.columns(ti, sel.columns, "select"); err != nil {
			return err
		}
		ti.pkSelectable = len(db.pkey) > 0
		for _, k := range db.pkey {
			if !slices.ContainsFunc(ti.selCols, func(c dbColumn) bool { return c.name == k }) {
				ti.pkSelectable = false
			}
		}
		for cmd, dst := range map[string]**permEntry{"insert": &ti.ins, "update": &ti.upd, "delete": &ti.del} {
			if p := t.perms[cmd][b.role]; p != nil && !p.backendOnly {
				*dst = p
			}
		}
		for _, pc := range []struct {
			p    *permEntry
			into *[]dbColumn
			what string
		}{{ti.ins, &ti.insCols, "insert"}, {ti.upd, &ti.updCols, "update"}} {
			if pc.p == nil {
				continue
			}
			cols, err := b.columns(ti, pc.p.columns, pc.what)
			if err != nil {
				return err
			}
			for _, c := range cols {
				if _, preset := pc.p.set[c.name]; !preset {
					*pc.into = append(*pc.into, c)
				}
			}
		}
		infos[t.Table] = ti
		visible = append(visible, ti)
	}
	// Relationships, now that every visible table is known.
	comp := hasurabool.Compiler{Tracked: src, Catalog: b.cat}
	for _, ti := range visible {
		pt := src.byName[ti.q]
		names := make([]string, 0, len(pt.rels))
		for n := range pt.rels {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			r := pt.rels[n]
			remote, mapping, err := comp.Resolve(ti.q, r)
			if err != nil {
				return fmt.Errorf("hasuratest: %s: %w", ti.q, err)
			}
			target := infos[remote]
			if target == nil {
				continue // the role may not select the remote table
			}
			ri := relInfo{name: n, array: r.Array, target: target}
			if !r.Array && !r.Manual && r.FKTable == nil {
				ri.notNull = true
				for _, pair := range mapping {
					if c, _ := ti.db.column(pair[0]); !c.notNull {
						ri.notNull = false
					}
				}
			}
			ti.rels = append(ti.rels, ri)
		}
	}
	for _, ti := range visible {
		if err := b.table(ti); err != nil {
			return err
		}
	}
	return nil
}

func rootAllowed(list []string, field string) bool {
	return list == nil || slices.Contains(list, field)
}

// listArgs are the arguments of a list field over t.
func listArgs(t *tableInfo) string {
	return "(distinct_on: [" + t.name + "_select_column!], limit: Int, offset: Int, order_by: [" + t.name +
		"_order_by!], where: " + t.name + "_bool_exp)"
}

func (b *schemaBuilder) pkArgs(t *tableInfo) string {
	var args []string
	for _, k := range t.db.pkey {
		c, _ := t.db.column(k)
		args = append(args, k+": "+b.use(c.gqlType)+"!")
	}
	return "(" + strings.Join(args, ", ") + ")"
}

func (b *schemaBuilder) table(t *tableInfo) error {
	n := t.name
	if len(t.selCols) == 0 {
		return fmt.Errorf("hasuratest: %s: role %s may select no column (Hasura hides such a table; not emulated)", t.q, b.role)
	}
	// object type
	var fields []string
	for _, c := range t.selCols {
		typ := b.use(c.gqlType)
		if c.notNull {
			typ += "!"
		}
		if c.sqlType == "jsonb" || c.sqlType == "json" {
			fields = append(fields, c.name+"(path: String): "+typ)
		} else {
			fields = append(fields, c.name+": "+typ)
		}
	}
	for _, r := range t.rels {
		switch {
		case r.array:
			fields = append(fields, r.name+listArgs(r.target)+": ["+r.target.name+"!]!")
			if r.target.aggregates {
				fields = append(fields, r.name+"_aggregate"+listArgs(r.target)+": "+r.target.name+"_aggregate!")
			}
		case r.notNull:
			fields = append(fields, r.name+": "+r.target.name+"!")
		default:
			fields = append(fields, r.name+": "+r.target.name)
		}
	}
	b.def(n, "type "+n+" {\n  "+strings.Join(fields, "\n  ")+"\n}")
	// boolean expression, order, column enum
	bools := []string{"_and: [" + n + "_bool_exp!]", "_not: " + n + "_bool_exp", "_or: [" + n + "_bool_exp!]"}
	orders := []string{}
	var cols []string
	for _, c := range t.selCols {
		b.comparison(c.gqlType, c.sqlType)
		bools = append(bools, c.name+": "+c.gqlType+"_comparison_exp")
		orders = append(orders, c.name+": order_by")
		cols = append(cols, c.name)
	}
	for _, r := range t.rels {
		bools = append(bools, r.name+": "+r.target.name+"_bool_exp")
		switch {
		case !r.array:
			orders = append(orders, r.name+": "+r.target.name+"_order_by")
		case r.target.aggregates:
			orders = append(orders, r.name+"_aggregate: "+r.target.name+"_aggregate_order_by")
		}
	}
	b.def(n+"_bool_exp", "input "+n+"_bool_exp {\n  "+strings.Join(bools, "\n  ")+"\n}")
	b.def(n+"_order_by", "input "+n+"_order_by {\n  "+strings.Join(orders, "\n  ")+"\n}")
	b.def(n+"_select_column", "enum "+n+"_select_column {\n  "+strings.Join(cols, "\n  ")+"\n}")
	b.def("order_by", "enum order_by {\n  asc\n  asc_nulls_first\n  asc_nulls_last\n  desc\n  desc_nulls_first\n  desc_nulls_last\n}")
	if t.aggregates {
		b.def(n+"_aggregate", "type "+n+"_aggregate {\n  aggregate: "+n+"_aggregate_fields\n  nodes: ["+n+"!]!\n}")
		b.def(n+"_aggregate_fields", "type "+n+"_aggregate_fields {\n  count(columns: ["+n+"_select_column!], distinct: Boolean): Int!\n}")
		b.def(n+"_aggregate_order_by", "input "+n+"_aggregate_order_by {\n  count: order_by\n}")
	}
	// query and subscription roots
	for _, root := range []struct {
		into   *[]string
		fields []string
	}{{&b.query, t.queryRootFields}, {&b.subscription, t.subscriptionRFs}} {
		if rootAllowed(root.fields, "select") {
			*root.into = append(*root.into, n+listArgs(t)+": ["+n+"!]!")
		}
		if t.pkSelectable && rootAllowed(root.fields, "select_by_pk") {
			*root.into = append(*root.into, n+"_by_pk"+b.pkArgs(t)+": "+n)
		}
		if t.aggregates && rootAllowed(root.fields, "select_aggregate") {
			*root.into = append(*root.into, n+"_aggregate"+listArgs(t)+": "+n+"_aggregate!")
		}
	}
	if rootAllowed(t.subscriptionRFs, "select_stream") {
		b.subscription = append(b.subscription, n+"_stream(batch_size: Int!, cursor: ["+n+"_stream_cursor_input]!, where: "+n+"_bool_exp): ["+n+"!]!")
		b.def(n+"_stream_cursor_input", "input "+n+"_stream_cursor_input {\n  initial_value: "+n+"_stream_cursor_value_input!\n  ordering: cursor_ordering\n}")
		b.def(n+"_stream_cursor_value_input", "input "+n+"_stream_cursor_value_input {\n  "+b.inputFields(t.selCols)+"\n}")
		b.def("cursor_ordering", "enum cursor_ordering {\n  ASC\n  DESC\n}")
	}
	return b.mutations(t)
}

// inputFields lists columns as nullable input fields.
func (b *schemaBuilder) inputFields(cols []dbColumn) string {
	var out []string
	for _, c := range cols {
		out = append(out, c.name+": "+b.use(c.gqlType))
	}
	return strings.Join(out, "\n  ")
}

func (b *schemaBuilder) comparison(gqlType, sqlType string) {
	t := b.use(gqlType)
	ops := []string{"_eq: " + t, "_gt: " + t, "_gte: " + t, "_in: [" + t + "!]", "_is_null: Boolean", "_lt: " + t,
		"_lte: " + t, "_neq: " + t, "_nin: [" + t + "!]"}
	if isStringLike(gqlType) {
		for _, op := range []string{"_ilike", "_iregex", "_like", "_nilike", "_niregex", "_nlike", "_nregex", "_nsimilar", "_regex", "_similar"} {
			ops = append(ops, op+": String")
		}
	}
	if sqlType == "jsonb" {
		ops = append(ops, "_cast: jsonb_cast_exp", "_contained_in: jsonb", "_contains: jsonb", "_has_key: String",
			"_has_keys_all: [String!]", "_has_keys_any: [String!]")
		b.def("jsonb_cast_exp", "input jsonb_cast_exp {\n  String: String_comparison_exp\n}")
		b.comparison("String", "text")
	}
	slices.SortStableFunc(ops, func(a, c string) int { return cmp.Compare(a[:strings.Index(a, ":")], c[:strings.Index(c, ":")]) })
	b.def(gqlType+"_comparison_exp", "input "+gqlType+"_comparison_exp {\n  "+strings.Join(ops, "\n  ")+"\n}")
}

func (b *schemaBuilder) mutations(t *tableInfo) error {
	n := t.name
	if t.ins == nil && t.upd == nil && t.del == nil {
		return nil
	}
	resp := "type " + n + "_mutation_response {\n  affected_rows: Int!\n  returning: [" + n + "!]!\n}"
	b.def(n+"_mutation_response", resp)
	if t.ins != nil && len(t.insCols) > 0 {
		b.def(n+"_insert_input", "input "+n+"_insert_input {\n  "+b.inputFields(t.insCols)+"\n}")
		conflict := ""
		if t.upd != nil && len(t.db.unique) > 0 {
			conflict = ", on_conflict: " + n + "_on_conflict"
			b.def(n+"_constraint", "enum "+n+"_constraint {\n  "+strings.Join(t.db.unique, "\n  ")+"\n}")
			upd := []string{"_PLACEHOLDER"}
			if len(t.updCols) > 0 {
				upd = nil
				for _, c := range t.updCols {
					upd = append(upd, c.name)
				}
			}
			b.def(n+"_update_column", "enum "+n+"_update_column {\n  "+strings.Join(upd, "\n  ")+"\n}")
			b.def(n+"_on_conflict", "input "+n+"_on_conflict {\n  constraint: "+n+"_constraint!\n  update_columns: ["+n+
				"_update_column!]! = []\n  where: "+n+"_bool_exp\n}")
		}
		b.mutation = append(b.mutation, "insert_"+n+"(objects: ["+n+"_insert_input!]!"+conflict+"): "+n+"_mutation_response")
		b.mutation = append(b.mutation, "insert_"+n+"_one(object: "+n+"_insert_input!"+conflict+"): "+n)
	}
	if t.upd != nil && len(t.updCols) > 0 {
		args := []string{"_set: " + n + "_set_input"}
		b.def(n+"_set_input", "input "+n+"_set_input {\n  "+b.inputFields(t.updCols)+"\n}")
		var nums, jsons []dbColumn
		for _, c := range t.updCols {
			if isNumeric(c.sqlType) {
				nums = append(nums, c)
			}
			if c.sqlType == "jsonb" {
				jsons = append(jsons, c)
			}
		}
		if len(nums) > 0 {
			args = append(args, "_inc: "+n+"_inc_input")
			b.def(n+"_inc_input", "input "+n+"_inc_input {\n  "+b.inputFields(nums)+"\n}")
		}
		if len(jsons) > 0 {
			for _, op := range []struct{ arg, input, typ string }{
				{"_append", "_append_input", "jsonb"}, {"_delete_at_path", "_delete_at_path_input", "[String!]"},
				{"_delete_elem", "_delete_elem_input", "Int"}, {"_delete_key", "_delete_key_input", "String"},
				{"_prepend", "_prepend_input", "jsonb"},
			} {
				var fs []string
				for _, c := range jsons {
					fs = append(fs, c.name+": "+op.typ)
				}
				args = append(args, op.arg+": "+n+op.input)
				b.def(n+op.input, "input "+n+op.input+" {\n  "+strings.Join(fs, "\n  ")+"\n}")
			}
		}
		sort.Slice(args, func(i, j int) bool { return args[i] < args[j] })
		b.mutation = append(b.mutation, "update_"+n+"("+strings.Join(args, ", ")+", where: "+n+"_bool_exp!): "+n+"_mutation_response")
		if t.pkSelectable {
			var pk []string
			for _, k := range t.db.pkey {
				c, _ := t.db.column(k)
				pk = append(pk, k+": "+b.use(c.gqlType)+"!")
			}
			b.def(n+"_pk_columns_input", "input "+n+"_pk_columns_input {\n  "+strings.Join(pk, "\n  ")+"\n}")
			b.mutation = append(b.mutation, "update_"+n+"_by_pk("+strings.Join(args, ", ")+", pk_columns: "+n+"_pk_columns_input!): "+n)
		}
		b.def(n+"_updates", "input "+n+"_updates {\n  "+strings.Join(args, "\n  ")+"\n  where: "+n+"_bool_exp!\n}")
		b.mutation = append(b.mutation, "update_"+n+"_many(updates: ["+n+"_updates!]!): ["+n+"_mutation_response]")
	}
	if t.del != nil {
		b.mutation = append(b.mutation, "delete_"+n+"(where: "+n+"_bool_exp!): "+n+"_mutation_response")
		if t.pkSelectable {
			b.mutation = append(b.mutation, "delete_"+n+"_by_pk"+b.pkArgs(t)+": "+n)
		}
	}
	return nil
}

// ---- actions and remote schemas ----

func (b *schemaBuilder) actions() error {
	used := false
	for _, a := range b.m.Actions {
		if !slices.Contains(a.Roles, b.role) {
			continue
		}
		if a.Kind == "asynchronous" {
			return fmt.Errorf("hasuratest: action %s is asynchronous, which Schema does not emulate", a.Name)
		}
		used = true
		f := fieldSDL(a.Field)
		if a.Type == "query" {
			b.query = append(b.query, f)
		} else {
			b.mutation = append(b.mutation, f)
		}
		b.useTypes(a.Field)
	}
	if !used {
		return nil
	}
	names := make([]string, 0, len(b.m.Types))
	for name := range b.m.Types {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b.def(name, defSDL(b.m.Types[name]))
		for _, f := range b.m.Types[name].Fields {
			b.useTypes(f)
		}
	}
	return nil
}

func (b *schemaBuilder) useTypes(f *gqlast.FieldDefinition) {
	b.use(f.Type.Name())
	for _, a := range f.Arguments {
		b.use(a.Type.Name())
	}
}

func (b *schemaBuilder) remoteSchemas() error {
	for _, rs := range b.m.RemoteSchemas {
		sdl, ok := rs.Permissions[b.role]
		if !ok {
			continue
		}
		if rs.Customized {
			return fmt.Errorf("hasuratest: remote schema %s: customization is not emulated", rs.Name)
		}
		doc, err := gqlparserp.ParseSchema(&gqlast.Source{Name: "remote schema " + rs.Name + " for role " + b.role, Input: sdl})
		if err != nil {
			return fmt.Errorf("hasuratest: remote schema %s, role %s: %w", rs.Name, b.role, err)
		}
		roots := map[gqlast.Operation]string{gqlast.Query: "Query", gqlast.Mutation: "Mutation", gqlast.Subscription: "Subscription"}
		for _, sd := range doc.Schema {
			for _, op := range sd.OperationTypes {
				roots[op.Operation] = op.Type
			}
		}
		rootOf := map[string]*[]string{roots[gqlast.Query]: &b.query, roots[gqlast.Mutation]: &b.mutation, roots[gqlast.Subscription]: nil}
		for _, d := range doc.Definitions {
			if into, isRoot := rootOf[d.Name]; isRoot {
				if into == nil {
					continue // Hasura never sends subscriptions to a remote schema
				}
				for _, f := range d.Fields {
					*into = append(*into, fieldSDL(f))
					b.useTypes(f)
				}
				continue
			}
			b.def(d.Name, defSDL(d))
		}
	}
	return nil
}

// fieldSDL prints a field definition: name(arguments): Type, with argument defaults.
func fieldSDL(f *gqlast.FieldDefinition) string {
	s := f.Name
	if len(f.Arguments) > 0 {
		var args []string
		for _, a := range f.Arguments {
			arg := a.Name + ": " + a.Type.String()
			if a.DefaultValue != nil {
				arg += " = " + a.DefaultValue.String()
			}
			args = append(args, arg)
		}
		s += "(" + strings.Join(args, ", ") + ")"
	}
	return s + ": " + f.Type.String()
}

// defSDL prints a type definition without descriptions or directives.
func defSDL(d *gqlast.Definition) string {
	switch d.Kind {
	case gqlast.Scalar:
		return "scalar " + d.Name
	case gqlast.Enum:
		var vals []string
		for _, v := range d.EnumValues {
			vals = append(vals, v.Name)
		}
		return "enum " + d.Name + " {\n  " + strings.Join(vals, "\n  ") + "\n}"
	case gqlast.Union:
		return "union " + d.Name + " = " + strings.Join(d.Types, " | ")
	}
	kw := map[gqlast.DefinitionKind]string{gqlast.Object: "type", gqlast.InputObject: "input", gqlast.Interface: "interface"}[d.Kind]
	head := kw + " " + d.Name
	if len(d.Interfaces) > 0 {
		head += " implements " + strings.Join(d.Interfaces, " & ")
	}
	var fields []string
	for _, f := range d.Fields {
		if strings.HasPrefix(f.Name, "__") {
			continue
		}
		s := fieldSDL(f)
		if d.Kind == gqlast.InputObject && f.DefaultValue != nil {
			s += " = " + f.DefaultValue.String()
		}
		fields = append(fields, s)
	}
	return head + " {\n  " + strings.Join(fields, "\n  ") + "\n}"
}
