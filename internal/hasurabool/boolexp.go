// Package hasurabool compiles a Hasura boolean expression — a permission's filter or check — into
// a PostgreSQL predicate, with Hasura's semantics, so that a test can compare the rows Hasura would
// allow with the rows PostgreSQL's row-level security allows.
//
// The compiler needs two things of the world around it: which tables are tracked and their
// relationships (Tracked: internal/hasuratest reads them from the metadata), and the database's
// column types and foreign keys (Catalog: LoadCatalog reads them from PostgreSQL).
//
// # What Hasura does, and where that was checked (hasura/graphql-engine, server/src-lib/)
//
//   - Parsing (Hasura/RQL/IR/BoolExp.hs, instance FromJSON GBoolExp): an object is the AND of its
//     keys; _and/$and and _or/$or take a list, _not/$not an object, _exists/$exists an object
//     {_table, _where}; every other key is a field. An empty _and (and {}) is TRUE, an empty _or
//     FALSE (Hasura/Backends/Postgres/Translate/BoolExp.hs translateBoolExp: foldr with
//     BELit True / BELit False).
//   - A field is a column or a relationship (annColExp in Hasura/RQL/DDL/Permission/Internal.hs,
//     formerly in Translate/BoolExp.hs); anything else is an error. A relationship applies the
//     nested expression to the related rows: EXISTS (SELECT 1 FROM remote AS _be_N_schema_table
//     WHERE remote.rcol = current.lcol … AND nested). The remote table's own permissions are NOT
//     applied inside a permission (RelationshipFilters{rfTargetTablePermissions = BoolAnd []}:
//     "we do not include the permissions of the target table, since those only apply to GraphQL
//     queries"). _exists is EXISTS (SELECT 1 FROM table AS _exists_table_N WHERE …); the root
//     table ("$" in column comparisons) stays the permission's table in both.
//   - Column operators (Hasura/Backends/Postgres/DDL/BoolExp.hs parseBoolExpOperations): a
//     non-object value is _eq; an object is the AND of its operators ({} is TRUE); an unknown
//     operator is "Unknown operator". _eq and _neq/_ne are NOT plain = and <>
//     (Translate/BoolExp.hs equalsBoolExpBuilder, notEqualsBoolExpBuilder):
//     _eq v  → (col = v) OR (col IS NULL AND v IS NULL)
//     _neq v → (col <> v) OR (col IS NOT NULL AND v IS NULL)
//     so {_eq: null} selects the NULL rows but is NULL (not FALSE) on the others, and
//     {_not: {c: {_eq: null}}} selects nothing at all; SQL emits exactly these forms. (Hasura
//     emits plain col = v for NOT NULL columns; on such a column both forms give the same
//     three-valued result.) _in is col = ANY(array), _nin NOT (col = ANY(array)) (so an empty
//     _nin is TRUE even for a NULL column), _gt/_lt/_gte/_lte the plain comparison, _is_null
//     takes a boolean. jsonb: _contains @>, _contained_in <@ (also on array columns), _has_key ?,
//     _has_keys_any ?|, _has_keys_all ?& (keys are text). _ceq/_cne(_cneq)/_cgt/_clt/_cgte/_clte
//     compare with another column of the current table ("col" or ["col"]) or of the root table
//     (["$", "col"]), whose type must be the same. Each operator also has a $-prefixed spelling
//     ($eq, $in, …), accepted too. json (not jsonb) columns are rejected ("JSON column can not be
//     part of boolean expression").
//   - Values (Hasura/Backends/Postgres/DDL.hs parseCollectableType, SQL/Value.hs parsePGValue): a
//     string starting with "x-hasura-" in any case (Hasura/Server/Utils.hs isSessionVariable), or
//     the legacy "REQ_USER_ID", is a session variable, looked up lower-cased; its text is cast to
//     the column's type, or for _in/_nin/_has_keys_* to an array of it (so it must be a
//     PostgreSQL array literal such as "{a,b}"). JSON null is SQL NULL. Array operators need a
//     JSON list (or a session variable); the list's elements are literal values, never session
//     variables. jsonb columns take any JSON value (a string is the JSON string).
//   - Relationships (Hasura/RQL/Types/Relationships/Local.hs, Hasura/RQL/DDL/Relationship.hs):
//     object_relationships using foreign_key_constraint_on: column | [columns] (a foreign key on
//     this table with exactly those columns) or {table, column(s)} (a foreign key on that table,
//     with those columns, referencing this one); array_relationships using
//     foreign_key_constraint_on: {table, column(s)}; either using manual_configuration:
//     {remote_table, column_mapping: {local: remote}}. No or several matching foreign keys is an
//     error; the remote table must be tracked.
//
// Not emulated: _cast, PostGIS, ltree and _jsonb_path_* operators, computed fields, remote
// relationships, aggregation predicates and inherited roles (all rejected as errors, never taken
// as TRUE), and Hasura's type validation of literal values (a literal is sent as text and cast by
// PostgreSQL, which rejects what does not parse at execution).
package hasurabool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Table is a table's schema and name.
type Table struct{ Schema, Name string }

func (q Table) String() string { return q.Schema + "." + q.Name }

// ParseTable reads a Hasura table name: "name" (schema public) or {schema, name}.
func ParseTable(v any) (Table, error) {
	switch v := v.(type) {
	case string:
		if v == "" {
			return Table{}, errors.New("empty table name")
		}
		return Table{Schema: "public", Name: v}, nil
	case map[string]any:
		var q Table
		for k, x := range v {
			s, ok := x.(string)
			switch {
			case k != "schema" && k != "name":
				return Table{}, fmt.Errorf("table name: unknown field %q", k)
			case !ok:
				return Table{}, fmt.Errorf("table name: %s is %s, want a string", k, bxKind(x))
			case k == "schema":
				q.Schema = s
			default:
				q.Name = s
			}
		}
		if q.Name == "" {
			return Table{}, errors.New("table name without name")
		}
		if q.Schema == "" {
			q.Schema = "public"
		}
		return q, nil
	default:
		return Table{}, fmt.Errorf("table name: want a name or {schema, name}, got %s", bxKind(v))
	}
}

// Relationship is a tracked table's relationship as the metadata writes it; its column mapping is
// resolved against a Catalog.
type Relationship struct {
	Name  string
	Array bool // an array relationship; an object relationship otherwise
	// foreign_key_constraint_on: the columns, and the table holding the foreign key when it is
	// not this one (nil: a foreign key of this table)
	FKColumns []string
	FKTable   *Table
	// manual_configuration: the remote table and the column mapping, local → remote
	Manual        bool
	Remote        Table
	ColumnMapping map[string]string
}

// Tracked is what the compiler knows of the metadata: the tables of one source and their
// relationships.
type Tracked interface {
	// Relationships returns the relationships of table t by name; ok is false when t is not
	// tracked.
	Relationships(t Table) (rels map[string]*Relationship, ok bool)
}

// Tables is a Tracked held in a map: tracked table → its relationships by name.
type Tables map[Table]map[string]*Relationship

// Relationships implements Tracked.
func (ts Tables) Relationships(t Table) (map[string]*Relationship, bool) {
	rels, ok := ts[t]
	return rels, ok
}

// Compiler compiles boolean expressions over the tables of Tracked, with the column types and
// foreign keys of Catalog.
type Compiler struct {
	Tracked Tracked
	Catalog Catalog
}

// SQL compiles a Hasura boolean expression for rows of schema.table, aliased as alias, into a SQL
// predicate (with Hasura's null semantics, see the package comment). Values become parameters
// $firstParam, $firstParam+1, …, returned in args in that order: a literal is a text (string, or
// nil for a NULL element) or text[] ([]string, or []*string when an element is null) parameter
// cast to the column's type; a session variable is one text parameter however often it is used,
// its value taken from session (keys matched case-insensitively; a missing one is an error).
// Unknown operators, columns, relationships and tables are errors, as is a nil expr.
func (cp Compiler) SQL(schema, table, alias string, expr map[string]any, session map[string]string, firstParam int) (sql string, args []any, err error) {
	if cp.Catalog == nil {
		return "", nil, errors.New("hasurabool: SQL needs a Catalog")
	}
	if cp.Tracked == nil {
		return "", nil, errors.New("hasurabool: SQL needs the tracked tables")
	}
	if alias == "" {
		return "", nil, errors.New("hasurabool: SQL needs a table alias")
	}
	if firstParam < 1 {
		return "", nil, fmt.Errorf("hasurabool: firstParam %d, want >= 1", firstParam)
	}
	if expr == nil {
		return "", nil, fmt.Errorf("hasurabool: %s.%s: nil boolean expression (no permission?)", schema, table)
	}
	root := Table{Schema: schema, Name: table}
	sess := make(map[string]string, len(session))
	for k, v := range session {
		lk := strings.ToLower(k)
		if prev, dup := sess[lk]; dup && prev != v {
			return "", nil, fmt.Errorf("hasurabool: session variable %s given twice with different values", lk)
		}
		sess[lk] = v
	}
	norm, err := Normalise(expr)
	if err != nil {
		return "", nil, fmt.Errorf("hasurabool: %s.%s: %w", schema, table, err)
	}
	c := cp.compiler()
	c.session, c.next, c.root, c.rootAlias = sess, firstParam, root, alias
	if _, err := c.relationships(root); err != nil {
		return "", nil, fmt.Errorf("hasurabool: %w", err)
	}
	out, err := c.boolExp(root, alias, norm, "")
	if err != nil {
		return "", nil, fmt.Errorf("hasurabool: %s.%s: %w", schema, table, err)
	}
	return out, c.args, nil
}

// Resolve returns the remote table of relationship r of table t and its column mapping, sorted by
// the local column: pairs of (local column, remote column). The foreign key must exist and be the
// only one on those columns, the remote table must be tracked and every mapped column must exist.
func (cp Compiler) Resolve(t Table, r *Relationship) (remote Table, mapping [][2]string, err error) {
	return cp.compiler().resolveRelationship(t, r)
}

func (cp Compiler) compiler() *compiler {
	return &compiler{tracked: cp.Tracked, cat: cp.Catalog, sessParams: map[string]string{}, fks: map[Table][]ForeignKey{}}
}

// Normalise turns any JSON-marshalable value into the plain values the compiler reads:
// map[string]any, []any, string, json.Number, bool and nil.
func Normalise(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// ---- the compiler ----

type compiler struct {
	tracked    Tracked
	cat        Catalog
	session    map[string]string // lower-cased names
	args       []any
	next       int
	sessParams map[string]string // session variable → "$n"
	root       Table
	rootAlias  string
	fresh      int
	fks        map[Table][]ForeignKey
}

func bxIdent(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

func bxPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// param adds a parameter and returns its placeholder.
func (c *compiler) param(v any) string {
	c.args = append(c.args, v)
	p := "$" + strconv.Itoa(c.next)
	c.next++
	return p
}

// bxSessionVariable reports whether s names a session variable, and which (lower-cased).
func bxSessionVariable(s string) (string, bool) {
	l := strings.ToLower(s)
	if strings.HasPrefix(l, "x-hasura-") {
		return l, true
	}
	if l == "req_user_id" {
		return "x-hasura-user-id", true
	}
	return "", false
}

// sessionParam returns the text parameter holding session variable name.
func (c *compiler) sessionParam(name string) (string, error) {
	if p, ok := c.sessParams[name]; ok {
		return p, nil
	}
	v, ok := c.session[name]
	if !ok {
		return "", fmt.Errorf("missing session variable %q", name)
	}
	p := c.param(v)
	c.sessParams[name] = p
	return p, nil
}

// relationships returns the relationships of a tracked table, and an error for any other.
func (c *compiler) relationships(q Table) (map[string]*Relationship, error) {
	rels, ok := c.tracked.Relationships(q)
	if !ok {
		return nil, fmt.Errorf("table %s is not tracked", q)
	}
	return rels, nil
}

func (c *compiler) columnType(q Table, col string) (string, error) {
	typ, err := c.cat.ColumnType(q.Schema, q.Name, col)
	if err != nil {
		return "", fmt.Errorf("type of %s.%s: %w", q, col, err)
	}
	return typ, nil
}

func (c *compiler) boolExp(t Table, alias string, v any, path string) (string, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return "", fmt.Errorf("%s: a boolean expression must be an object, got %s", bxPathOr(path), bxKind(v))
	}
	keys := slices.Sorted(maps.Keys(obj))
	var parts []string
	for _, k := range keys {
		val, p := obj[k], bxPath(path, k)
		var s string
		var err error
		switch k {
		case "_and", "$and", "_or", "$or":
			list, ok := val.([]any)
			if !ok {
				return "", fmt.Errorf("%s: want a list of boolean expressions, got %s", p, bxKind(val))
			}
			op, empty := " AND ", "TRUE"
			if k == "_or" || k == "$or" {
				op, empty = " OR ", "FALSE"
			}
			subs := make([]string, 0, len(list))
			for i, item := range list {
				sub, err := c.boolExp(t, alias, item, fmt.Sprintf("%s[%d]", p, i))
				if err != nil {
					return "", err
				}
				subs = append(subs, sub)
			}
			if len(subs) == 0 {
				s = empty
			} else {
				s = "(" + strings.Join(subs, op) + ")"
			}
		case "_not", "$not":
			sub, err := c.boolExp(t, alias, val, p)
			if err != nil {
				return "", err
			}
			s = "(NOT " + sub + ")"
		case "_exists", "$exists":
			s, err = c.exists(val, p)
		default:
			s, err = c.field(t, alias, k, val, p)
		}
		if err != nil {
			return "", err
		}
		parts = append(parts, s)
	}
	return bxAnd(parts), nil
}

// bxAnd is the conjunction of parts: TRUE for none (Hasura's empty object), the part itself for one.
func bxAnd(parts []string) string {
	switch len(parts) {
	case 0:
		return "TRUE"
	case 1:
		return parts[0]
	default:
		return "(" + strings.Join(parts, " AND ") + ")"
	}
}

func bxPathOr(p string) string {
	if p == "" {
		return "expression"
	}
	return p
}

func bxKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func (c *compiler) exists(v any, path string) (string, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return "", fmt.Errorf("%s: want {_table, _where}, got %s", path, bxKind(v))
	}
	for k := range obj {
		if k != "_table" && k != "_where" {
			return "", fmt.Errorf("%s: unknown key %q (want _table and _where)", path, k)
		}
	}
	if obj["_table"] == nil || obj["_where"] == nil {
		return "", fmt.Errorf("%s: both _table and _where are required", path)
	}
	q, err := ParseTable(obj["_table"])
	if err != nil {
		return "", fmt.Errorf("%s._table: %w", path, err)
	}
	if _, err := c.relationships(q); err != nil {
		return "", fmt.Errorf("%s._table: %w", path, err)
	}
	alias := "_exists_table_" + strconv.Itoa(c.fresh)
	c.fresh++
	where, err := c.boolExp(q, alias, obj["_where"], path+"._where")
	if err != nil {
		return "", err
	}
	return "(EXISTS (SELECT 1 FROM " + bxIdent(q.Schema, q.Name) + " AS " + bxIdent(alias) + " WHERE " + where + "))", nil
}

func (c *compiler) field(t Table, alias, name string, val any, path string) (string, error) {
	rels, err := c.relationships(t)
	if err != nil {
		return "", err
	}
	if rel := rels[name]; rel != nil {
		return c.relationship(t, alias, rel, val, path)
	}
	typ, err := c.columnType(t, name)
	if err != nil {
		return "", err
	}
	if typ == "" {
		return "", fmt.Errorf("%s: %s has no column or relationship %q", path, t, name)
	}
	if typ == "json" {
		return "", fmt.Errorf("%s: JSON column can not be part of boolean expression", path)
	}
	return c.columnOps(t, alias, name, typ, val, path)
}

func (c *compiler) resolveRelationship(t Table, r *Relationship) (Table, [][2]string, error) {
	var remote Table
	var mapping [][2]string
	switch {
	case r.Manual:
		remote = r.Remote
		for l, rc := range r.ColumnMapping {
			mapping = append(mapping, [2]string{l, rc})
		}
	case r.FKTable == nil:
		fks, err := c.foreignKeys(t)
		if err != nil {
			return remote, nil, err
		}
		var match []ForeignKey
		for _, fk := range fks {
			if bxSameColumns(fk.Columns, r.FKColumns) {
				match = append(match, fk)
			}
		}
		fk, err := bxOneForeignKey(match, t, r.FKColumns)
		if err != nil {
			return remote, nil, fmt.Errorf("relationship %s: %w", r.Name, err)
		}
		remote = Table{Schema: fk.RefSchema, Name: fk.RefTable}
		for i := range fk.Columns {
			mapping = append(mapping, [2]string{fk.Columns[i], fk.RefColumns[i]})
		}
	default:
		remote = *r.FKTable
		fks, err := c.foreignKeys(remote)
		if err != nil {
			return remote, nil, err
		}
		var match []ForeignKey
		for _, fk := range fks {
			if bxSameColumns(fk.Columns, r.FKColumns) && fk.RefSchema == t.Schema && fk.RefTable == t.Name {
				match = append(match, fk)
			}
		}
		fk, err := bxOneForeignKey(match, remote, r.FKColumns)
		if err != nil {
			return remote, nil, fmt.Errorf("relationship %s: %w referencing %s", r.Name, err, t)
		}
		for i := range fk.Columns {
			mapping = append(mapping, [2]string{fk.RefColumns[i], fk.Columns[i]})
		}
	}
	if _, err := c.relationships(remote); err != nil {
		return remote, nil, fmt.Errorf("relationship %s: remote %w", r.Name, err)
	}
	sort.Slice(mapping, func(i, j int) bool { return mapping[i][0] < mapping[j][0] })
	for _, pair := range mapping {
		for _, side := range []struct {
			q   Table
			col string
		}{{t, pair[0]}, {remote, pair[1]}} {
			typ, err := c.columnType(side.q, side.col)
			if err != nil {
				return remote, nil, err
			}
			if typ == "" {
				return remote, nil, fmt.Errorf("relationship %s: %s has no column %q", r.Name, side.q, side.col)
			}
		}
	}
	return remote, mapping, nil
}

func (c *compiler) foreignKeys(q Table) ([]ForeignKey, error) {
	if fks, ok := c.fks[q]; ok {
		return fks, nil
	}
	fks, err := c.cat.ForeignKeys(q.Schema, q.Name)
	if err != nil {
		return nil, fmt.Errorf("foreign keys of %s: %w", q, err)
	}
	c.fks[q] = fks
	return fks, nil
}

func bxSameColumns(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func bxOneForeignKey(match []ForeignKey, on Table, cols []string) (ForeignKey, error) {
	switch len(match) {
	case 1:
		if len(match[0].Columns) != len(match[0].RefColumns) {
			return ForeignKey{}, fmt.Errorf("foreign key %s has %d columns and %d referenced columns", match[0].Name, len(match[0].Columns), len(match[0].RefColumns))
		}
		return match[0], nil
	case 0:
		return ForeignKey{}, fmt.Errorf("no foreign key constraint on %s (%s)", on, strings.Join(cols, ", "))
	default:
		return ForeignKey{}, fmt.Errorf("more than one foreign key constraint on %s (%s)", on, strings.Join(cols, ", "))
	}
}

func (c *compiler) relationship(t Table, alias string, r *Relationship, val any, path string) (string, error) {
	remote, mapping, err := c.resolveRelationship(t, r)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	// Aliases as Hasura draws them: _be_<n>_<schema>_<table>.
	relAlias := "_be_" + strconv.Itoa(c.fresh) + "_" + remote.Schema + "_" + remote.Name
	c.fresh++
	inner, err := c.boolExp(remote, relAlias, val, path)
	if err != nil {
		return "", err
	}
	conds := make([]string, 0, len(mapping)+1)
	for _, pair := range mapping {
		conds = append(conds, "("+bxIdent(relAlias, pair[1])+" = "+bxIdent(alias, pair[0])+")")
	}
	conds = append(conds, inner)
	return "(EXISTS (SELECT 1 FROM " + bxIdent(remote.Schema, remote.Name) + " AS " + bxIdent(relAlias) +
		" WHERE " + strings.Join(conds, " AND ") + "))", nil
}

// ---- column operators ----

func bxIsJSONB(typ string) bool { return typ == "jsonb" }

func bxIsArray(typ string) bool { return strings.HasSuffix(typ, "]") }

func bxIsString(typ string) bool {
	switch {
	case typ == "text", typ == "citext", typ == "name", typ == "bpchar", typ == "\"char\"":
		return true
	case strings.HasPrefix(typ, "character varying"), strings.HasPrefix(typ, "character("), typ == "character":
		return true
	case strings.HasSuffix(typ, ".citext"):
		return true
	}
	return false
}

var bxCompareOps = map[string]string{
	"_gt": ">", "$gt": ">", "_lt": "<", "$lt": "<", "_gte": ">=", "$gte": ">=", "_lte": "<=", "$lte": "<=",
}

var bxTextOps = map[string]string{
	"_like": "LIKE", "$like": "LIKE", "_nlike": "NOT LIKE", "$nlike": "NOT LIKE",
	"_ilike": "ILIKE", "$ilike": "ILIKE", "_nilike": "NOT ILIKE", "$nilike": "NOT ILIKE",
	"_similar": "SIMILAR TO", "$similar": "SIMILAR TO", "_nsimilar": "NOT SIMILAR TO", "$nsimilar": "NOT SIMILAR TO",
	"_regex": "~", "$regex": "~", "_iregex": "~*", "$iregex": "~*",
	"_nregex": "!~", "$nregex": "!~", "_niregex": "!~*", "$niregex": "!~*",
}

var bxColumnOps = map[string]string{
	"_ceq": "=", "$ceq": "=", "_cne": "<>", "$cne": "<>", "_cneq": "<>", "$cneq": "<>",
	"_cgt": ">", "$cgt": ">", "_clt": "<", "$clt": "<", "_cgte": ">=", "$cgte": ">=", "_clte": "<=", "$clte": "<=",
}

// bxUnsupportedOps are Hasura operators this emulation does not compile.
var bxUnsupportedOps = map[string]bool{
	"_cast": true, "$cast": true,
	"_jsonb_path_exists": true, "$jsonb_path_exists": true, "_jsonb_path_match": true, "$jsonb_path_match": true,
	"_st_contains": true, "$st_contains": true, "_st_crosses": true, "$st_crosses": true,
	"_st_equals": true, "$st_equals": true, "_st_overlaps": true, "$st_overlaps": true,
	"_st_touches": true, "$st_touches": true, "_st_within": true, "$st_within": true,
	"_st_intersects": true, "$st_intersects": true, "_st_3d_intersects": true, "$st_3d_intersects": true,
	"_st_d_within": true, "$st_d_within": true, "_st_3d_d_within": true, "$st_3d_d_within": true,
	"_ancestor": true, "$ancestor": true, "_ancestor_any": true, "$ancestor_any": true,
	"_descendant": true, "$descendant": true, "_descendant_any": true, "$descendant_any": true,
	"_matches": true, "$matches": true, "_matches_any": true, "$matches_any": true,
	"_matches_fulltext": true, "$matches_fulltext": true,
}

func (c *compiler) columnOps(t Table, alias, col, typ string, val any, path string) (string, error) {
	lhs := bxIdent(alias, col)
	ops, ok := val.(map[string]any)
	if !ok {
		// A bare value is _eq.
		v, err := c.scalar(val, typ, path)
		if err != nil {
			return "", err
		}
		return bxEquals(lhs, v), nil
	}
	keys := slices.Sorted(maps.Keys(ops))
	var parts []string
	for _, op := range keys {
		arg, p := ops[op], bxPath(path, op)
		var s string
		switch {
		case op == "_eq" || op == "$eq":
			v, err := c.scalar(arg, typ, p)
			if err != nil {
				return "", err
			}
			s = bxEquals(lhs, v)
		case op == "_neq" || op == "$neq" || op == "_ne" || op == "$ne":
			v, err := c.scalar(arg, typ, p)
			if err != nil {
				return "", err
			}
			s = "((" + lhs + " <> " + v + ") OR ((" + lhs + " IS NOT NULL) AND (" + v + " IS NULL)))"
		case op == "_in" || op == "$in" || op == "_nin" || op == "$nin":
			a, err := c.array(arg, typ, p)
			if err != nil {
				return "", err
			}
			s = "(" + lhs + " = ANY(" + a + "))"
			if op == "_nin" || op == "$nin" {
				s = "(NOT " + s + ")"
			}
		case bxCompareOps[op] != "":
			v, err := c.scalar(arg, typ, p)
			if err != nil {
				return "", err
			}
			s = "(" + lhs + " " + bxCompareOps[op] + " " + v + ")"
		case bxTextOps[op] != "":
			if !bxIsString(typ) {
				return "", fmt.Errorf("%s: %s is of type %s; this operator works only on string columns", p, col, typ)
			}
			v, err := c.scalar(arg, typ, p)
			if err != nil {
				return "", err
			}
			s = "(" + lhs + " " + bxTextOps[op] + " " + v + ")"
		case op == "_is_null" || op == "$is_null":
			b, ok := arg.(bool)
			if !ok {
				return "", fmt.Errorf("%s: want true or false, got %s", p, bxKind(arg))
			}
			if b {
				s = "(" + lhs + " IS NULL)"
			} else {
				s = "(" + lhs + " IS NOT NULL)"
			}
		case op == "_contains" || op == "$contains" || op == "_contained_in" || op == "$contained_in":
			if !bxIsJSONB(typ) && !bxIsArray(typ) {
				return "", fmt.Errorf("%s: %s is of type %s; this operator works only on jsonb and array columns", p, col, typ)
			}
			v, err := c.scalar(arg, typ, p)
			if err != nil {
				return "", err
			}
			sym := "@>"
			if strings.HasSuffix(op, "_contained_in") {
				sym = "<@"
			}
			s = "(" + lhs + " " + sym + " " + v + ")"
		case op == "_has_key" || op == "$has_key":
			if !bxIsJSONB(typ) {
				return "", fmt.Errorf("%s: %s is of type %s; this operator works only on jsonb columns", p, col, typ)
			}
			if _, isStr := arg.(string); !isStr {
				return "", fmt.Errorf("%s: want a key (a string), got %s", p, bxKind(arg))
			}
			v, err := c.scalar(arg, "text", p)
			if err != nil {
				return "", err
			}
			s = "(" + lhs + " ? " + v + ")"
		case op == "_has_keys_any" || op == "$has_keys_any" || op == "_has_keys_all" || op == "$has_keys_all":
			if !bxIsJSONB(typ) {
				return "", fmt.Errorf("%s: %s is of type %s; this operator works only on jsonb columns", p, col, typ)
			}
			if list, isList := arg.([]any); isList {
				for _, k := range list {
					if _, isStr := k.(string); !isStr {
						return "", fmt.Errorf("%s: keys must be strings, got %s", p, bxKind(k))
					}
				}
			}
			a, err := c.array(arg, "text", p)
			if err != nil {
				return "", err
			}
			sym := "?|"
			if strings.HasSuffix(op, "_all") {
				sym = "?&"
			}
			s = "(" + lhs + " " + sym + " " + a + ")"
		case bxColumnOps[op] != "":
			rhs, err := c.columnRef(t, alias, col, typ, arg, p)
			if err != nil {
				return "", err
			}
			s = "(" + lhs + " " + bxColumnOps[op] + " " + rhs + ")"
		case bxUnsupportedOps[op]:
			return "", fmt.Errorf("%s: operator %s is not supported by this emulation", p, op)
		default:
			return "", fmt.Errorf("%s: unknown operator %q on column %s", p, op, col)
		}
		parts = append(parts, s)
	}
	return bxAnd(parts), nil
}

// bxEquals is Hasura's equalsBoolExpBuilder: col = v, or both NULL.
func bxEquals(lhs, v string) string {
	return "((" + lhs + " = " + v + ") OR ((" + lhs + " IS NULL) AND (" + v + " IS NULL)))"
}

// bxText renders a JSON scalar as the text PostgreSQL parses for typ.
func bxText(v any, typ, path string) (string, error) {
	if bxIsJSONB(typ) {
		b, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return string(b), nil
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	default:
		return "", fmt.Errorf("%s: %s is not a value for type %s", path, bxKind(v), typ)
	}
}

// scalar renders a value (literal or session variable) of type typ.
func (c *compiler) scalar(v any, typ, path string) (string, error) {
	switch x := v.(type) {
	case nil:
		return "NULL::" + typ, nil
	case string:
		if name, ok := bxSessionVariable(x); ok {
			p, err := c.sessionParam(name)
			if err != nil {
				return "", fmt.Errorf("%s: %w", path, err)
			}
			return "(" + p + "::text)::" + typ, nil
		}
	case []any:
		if !bxIsJSONB(typ) {
			if !bxIsArray(typ) {
				return "", fmt.Errorf("%s: a list is not a value for type %s", path, typ)
			}
			elems, err := bxTextElements(x, strings.TrimSuffix(typ, "[]"), path)
			if err != nil {
				return "", err
			}
			return "(" + c.param(elems) + "::text[])::" + typ, nil
		}
	}
	text, err := bxText(v, typ, path)
	if err != nil {
		return "", err
	}
	return "(" + c.param(text) + "::text)::" + typ, nil
}

// array renders a list value (or a session variable holding an array literal) as typ[].
func (c *compiler) array(v any, typ, path string) (string, error) {
	switch x := v.(type) {
	case string:
		if name, ok := bxSessionVariable(x); ok {
			p, err := c.sessionParam(name)
			if err != nil {
				return "", fmt.Errorf("%s: %w", path, err)
			}
			return "(" + p + "::text)::" + typ + "[]", nil
		}
	case []any:
		elems, err := bxTextElements(x, typ, path)
		if err != nil {
			return "", err
		}
		return "(" + c.param(elems) + "::text[])::" + typ + "[]", nil
	}
	return "", fmt.Errorf("%s: want a list of values or a session variable, got %s", path, bxKind(v))
}

// bxTextElements renders list elements as a text[] parameter: []string, or []*string when an
// element is null. Elements are literals, even when they look like session variables (as in
// Hasura).
func bxTextElements(list []any, typ, path string) (any, error) {
	texts := make([]*string, len(list))
	hasNull := false
	for i, e := range list {
		if e == nil {
			hasNull = true
			continue
		}
		s, err := bxText(e, typ, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		texts[i] = &s
	}
	if hasNull {
		return texts, nil
	}
	out := make([]string, len(texts))
	for i, s := range texts {
		out[i] = *s
	}
	return out, nil
}

// columnRef resolves the operand of a column comparison operator: "col" or ["col"] (current
// table) or ["$", "col"] (root table); its type must equal the compared column's.
func (c *compiler) columnRef(t Table, alias, col, typ string, v any, path string) (string, error) {
	q, a, name := t, alias, ""
	switch x := v.(type) {
	case string:
		name = x
	case []any:
		switch {
		case len(x) == 1:
			name, _ = x[0].(string)
		case len(x) == 2 && x[0] == "$":
			q, a = c.root, c.rootAlias
			name, _ = x[1].(string)
		case len(x) == 0:
			return "", fmt.Errorf("%s: path cannot be empty", path)
		default:
			return "", fmt.Errorf("%s: relationship references are not supported in column comparisons", path)
		}
	default:
		return "", fmt.Errorf("%s: want a column name or a path, got %s", path, bxKind(v))
	}
	if name == "" {
		return "", fmt.Errorf("%s: want a column name", path)
	}
	rtyp, err := c.columnType(q, name)
	if err != nil {
		return "", err
	}
	if rtyp == "" {
		return "", fmt.Errorf("%s: %s has no column %q", path, q, name)
	}
	if rtyp != typ {
		return "", fmt.Errorf("%s: incompatible column types: %s has type %s, but %s has type %s", path, col, typ, name, rtyp)
	}
	return bxIdent(a, name), nil
}

// ---- a Catalog read from PostgreSQL ----
