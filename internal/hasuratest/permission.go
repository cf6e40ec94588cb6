package hasuratest

// Hasura permission rules as SQL.
//
// Rules lists what a role may do on every tracked table; SQL compiles a permission's boolean
// expression (a select/update/delete filter, an insert/update check) into a PostgreSQL predicate,
// so that a test can compare the rows Hasura would allow with the rows PostgreSQL's RLS allows.
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
//   - Permission entries (Hasura/RQL/Types/Permission.hs): select {columns, filter, limit,
//     allow_aggregations, computed_fields, query_root_fields, subscription_root_fields}; insert
//     {check, set, columns, backend_only, validate_input}; update {columns, filter, check, set,
//     backend_only, validate_input}; delete {filter, backend_only, validate_input}. filter (and
//     insert's check) are required; update's check is optional (none = no check).
//
// Not emulated: _cast, PostGIS, ltree and _jsonb_path_* operators, computed fields, remote
// relationships, aggregation predicates and inherited roles (all rejected as errors, never taken
// as TRUE), and Hasura's type validation of literal values (a literal is sent as text and cast by
// PostgreSQL, which rejects what does not parse at execution).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Rule is a role's permission on a table and command.
type Rule struct {
	Source                       string // the database (source) of databases.yaml
	Schema, Table, Role, Command string // command: select|insert|update|delete
	// Filter is the select/update/delete `filter`; nil when none (insert, or no permission).
	Filter map[string]any
	// Check is the insert `check` or the update `check`; nil when none.
	Check map[string]any
	// Columns are the allowed columns as written; ["*"] for all columns.
	Columns []string
	// Set are the column presets (insert and update `set`); values may be session variables.
	Set map[string]any
	// BackendOnly is the permission's backend_only (usable only with the admin secret and
	// x-hasura-use-backend-only-permissions: true, never by an ordinary client).
	BackendOnly bool
	// AllowAggregations is a select permission's allow_aggregations.
	AllowAggregations bool
	// QueryRootFields and SubscriptionRootFields are a select permission's query_root_fields and
	// subscription_root_fields (select, select_by_pk, select_aggregate, select_stream); nil when
	// not set, which allows every root field.
	QueryRootFields, SubscriptionRootFields []string
	// Allowed is set when a permission entry exists for the role and command.
	Allowed bool
}

// ForeignKey is a foreign key constraint: Columns of Schema.Table reference RefColumns of
// RefSchema.RefTable, position by position.
type ForeignKey struct {
	Name                string
	Schema, Table       string
	Columns             []string
	RefSchema, RefTable string
	RefColumns          []string
}

// Catalog describes the database the expressions are compiled for.
type Catalog interface {
	// ColumnType returns the SQL type of schema.table.column, spelt so that it can follow "::"
	// (as format_type prints it: "uuid", "text", "jsonb", "integer", "public.my_enum", "text[]"),
	// or "" and a nil error when the table has no such column.
	ColumnType(schema, table, column string) (string, error)
	// ForeignKeys returns the foreign key constraints defined on schema.table.
	ForeignKeys(schema, table string) ([]ForeignKey, error)
}

// PermissionCommands are the commands Rules reports, in its order.
var PermissionCommands = []string{"select", "insert", "update", "delete"}

// Rules returns the permissions of role on every tracked table of every source: one Rule for each
// table and command (select, insert, update, delete), in the order of the metadata. A table or
// command without an entry for the role has Allowed false. Numbers in expressions and presets are
// json.Number.
func (m *Metadata) Rules(role string) ([]Rule, error) {
	pm, err := m.permissionModel()
	if err != nil {
		return nil, err
	}
	var out []Rule
	for _, src := range pm.sources {
		for _, t := range src.tables {
			for _, cmd := range PermissionCommands {
				r := Rule{Source: src.name, Schema: t.Schema, Table: t.Name, Role: role, Command: cmd}
				if p := t.perms[cmd][role]; p != nil {
					r.Allowed = true
					r.Filter = bxClone(p.filter)
					r.Check = bxClone(p.check)
					r.Columns = slices.Clone(p.columns)
					r.Set = bxClone(p.set)
					r.BackendOnly = p.backendOnly
					r.AllowAggregations = p.allowAggregations
					r.QueryRootFields = slices.Clone(p.queryRootFields)
					r.SubscriptionRootFields = slices.Clone(p.subscriptionRootFields)
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// SQL compiles a Hasura boolean expression for rows of schema.table, aliased as alias, into a SQL
// predicate (with Hasura's null semantics, see the comment at the top of this file). Values become
// parameters $firstParam, $firstParam+1, …, returned in args in that order: a literal is a text
// (string, or nil for a NULL element) or text[] ([]string, or []*string when an element is null)
// parameter cast to the column's type; a session variable is one text parameter however often it
// is used, its value taken from session (keys matched case-insensitively; a missing one is an
// error). cat supplies column types and foreign keys. Unknown operators, columns, relationships
// and tables are errors, as is a nil expr.
func (m *Metadata) SQL(schema, table, alias string, expr map[string]any, session map[string]string, firstParam int, cat Catalog) (sql string, args []any, err error) {
	if cat == nil {
		return "", nil, errors.New("hasuratest: SQL needs a Catalog")
	}
	if alias == "" {
		return "", nil, errors.New("hasuratest: SQL needs a table alias")
	}
	if firstParam < 1 {
		return "", nil, fmt.Errorf("hasuratest: firstParam %d, want >= 1", firstParam)
	}
	if expr == nil {
		return "", nil, fmt.Errorf("hasuratest: %s.%s: nil boolean expression (no permission?)", schema, table)
	}
	pm, err := m.permissionModel()
	if err != nil {
		return "", nil, err
	}
	root := bxTable{Schema: schema, Name: table}
	src, err := pm.sourceOf(root)
	if err != nil {
		return "", nil, err
	}
	sess := make(map[string]string, len(session))
	for k, v := range session {
		lk := strings.ToLower(k)
		if prev, dup := sess[lk]; dup && prev != v {
			return "", nil, fmt.Errorf("hasuratest: session variable %s given twice with different values", lk)
		}
		sess[lk] = v
	}
	norm, err := bxNormalise(expr)
	if err != nil {
		return "", nil, fmt.Errorf("hasuratest: %s.%s: %w", schema, table, err)
	}
	c := &bxCompiler{
		src: src, cat: cat, session: sess, next: firstParam,
		sessParams: map[string]string{}, root: root, rootAlias: alias,
		fks: map[bxTable][]ForeignKey{},
	}
	out, err := c.boolExp(root, alias, norm, "")
	if err != nil {
		return "", nil, fmt.Errorf("hasuratest: %s.%s: %w", schema, table, err)
	}
	return out, c.args, nil
}

// ---- the permission model read from the table files ----

type bxTable struct{ Schema, Name string }

func (q bxTable) String() string { return q.Schema + "." + q.Name }

type permModel struct{ sources []*permSource }

type permSource struct {
	name   string
	tables []*permTable
	byName map[bxTable]*permTable
}

type permTable struct {
	bxTable
	rels  map[string]*permRel
	perms map[string]map[string]*permEntry // command → role → entry
	// configured: the table file has a configuration (custom names), which Schema does not emulate
	configured bool
}

// permRel is a relationship as written; its column mapping is resolved against a Catalog.
type permRel struct {
	name  string
	array bool
	// foreign_key_constraint_on
	fkCols  []string
	fkTable *bxTable // the table holding the foreign key when it is not this one
	// manual_configuration
	manual     bool
	remote     bxTable
	colMapping map[string]string // local → remote
}

type permEntry struct {
	filter, check, set map[string]any
	columns            []string
	backendOnly        bool
	allowAggregations  bool
	// nil: not set (every root field)
	queryRootFields, subscriptionRootFields []string
}

var permModels sync.Map // *Metadata → *permModelOnce

type permModelOnce struct {
	once  sync.Once
	model *permModel
	err   error
}

// permissionModel reads the relationships and permissions of the table files, once per Metadata.
func (m *Metadata) permissionModel() (*permModel, error) {
	v, _ := permModels.LoadOrStore(m, &permModelOnce{})
	o := v.(*permModelOnce)
	o.once.Do(func() { o.model, o.err = m.readPermissionModel() })
	return o.model, o.err
}

func (m *Metadata) readPermissionModel() (*permModel, error) {
	v, err := m.readOptional("databases/databases.yaml")
	if err != nil {
		return nil, err
	}
	pm := &permModel{}
	if v == nil {
		return pm, nil
	}
	srcs, ok := v.([]any)
	if !ok {
		return nil, errors.New("databases/databases.yaml: not a list")
	}
	for _, s := range srcs {
		sm, ok := s.(map[string]any)
		if !ok {
			return nil, errors.New("databases/databases.yaml: a source is not an object")
		}
		name, _ := sm["name"].(string)
		src := &permSource{name: name, byName: map[bxTable]*permTable{}}
		var tables []any
		if sm["tables"] != nil {
			if tables, ok = sm["tables"].([]any); !ok {
				return nil, fmt.Errorf("database %s: tables is not a list", name)
			}
		}
		for _, item := range tables {
			t, err := parsePermTable(item)
			if err != nil {
				return nil, fmt.Errorf("database %s: %w", name, err)
			}
			if src.byName[t.bxTable] != nil {
				return nil, fmt.Errorf("database %s: table %s tracked twice", name, t.bxTable)
			}
			src.byName[t.bxTable] = t
			src.tables = append(src.tables, t)
		}
		pm.sources = append(pm.sources, src)
	}
	return pm, nil
}

func (pm *permModel) sourceOf(q bxTable) (*permSource, error) {
	var found []*permSource
	for _, s := range pm.sources {
		if s.byName[q] != nil {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("hasuratest: table %s is not tracked in the metadata", q)
	case 1:
		return found[0], nil
	default:
		return nil, fmt.Errorf("hasuratest: table %s is tracked in %d sources", q, len(found))
	}
}

// parseBxTable reads a Hasura table name: "name" (schema public) or {schema, name}.
func parseBxTable(v any) (bxTable, error) {
	if s, ok := v.(string); ok {
		if s == "" {
			return bxTable{}, errors.New("empty table name")
		}
		return bxTable{Schema: "public", Name: s}, nil
	}
	var q struct {
		Schema string `json:"schema"`
		Name   string `json:"name"`
	}
	if err := permDecode(v, &q); err != nil {
		return bxTable{}, fmt.Errorf("table name: %w", err)
	}
	if q.Name == "" {
		return bxTable{}, errors.New("table name without name")
	}
	if q.Schema == "" {
		q.Schema = "public"
	}
	return bxTable{Schema: q.Schema, Name: q.Name}, nil
}

func parsePermTable(item any) (*permTable, error) {
	tm, ok := item.(map[string]any)
	if !ok {
		return nil, errors.New("a table entry is not an object")
	}
	q, err := parseBxTable(tm["table"])
	if err != nil {
		return nil, err
	}
	t := &permTable{bxTable: q, rels: map[string]*permRel{}, perms: map[string]map[string]*permEntry{}}
	if c, ok := tm["configuration"].(map[string]any); ok && len(c) > 0 {
		t.configured = true
	}
	for _, kind := range []string{"object_relationships", "array_relationships"} {
		items, err := bxList(tm[kind])
		if err != nil {
			return nil, fmt.Errorf("table %s: %s: %w", q, kind, err)
		}
		for _, it := range items {
			r, err := parsePermRel(it, kind == "array_relationships")
			if err != nil {
				return nil, fmt.Errorf("table %s: %s: %w", q, kind, err)
			}
			if t.rels[r.name] != nil {
				return nil, fmt.Errorf("table %s: relationship %q defined twice", q, r.name)
			}
			t.rels[r.name] = r
		}
	}
	for _, cmd := range PermissionCommands {
		key := cmd + "_permissions"
		items, err := bxList(tm[key])
		if err != nil {
			return nil, fmt.Errorf("table %s: %s: %w", q, key, err)
		}
		t.perms[cmd] = map[string]*permEntry{}
		for i, it := range items {
			var raw struct {
				Role       string         `json:"role"`
				Permission map[string]any `json:"permission"`
				Comment    string         `json:"comment"`
			}
			if err := permDecode(it, &raw); err != nil {
				return nil, fmt.Errorf("table %s: %s[%d]: %w", q, key, i, err)
			}
			if raw.Role == "" {
				return nil, fmt.Errorf("table %s: %s[%d]: no role", q, key, i)
			}
			if t.perms[cmd][raw.Role] != nil {
				return nil, fmt.Errorf("table %s: %s: role %q has two entries", q, key, raw.Role)
			}
			if raw.Permission == nil {
				return nil, fmt.Errorf("table %s: %s: role %q: no permission", q, key, raw.Role)
			}
			e, err := parsePermEntry(cmd, raw.Permission)
			if err != nil {
				return nil, fmt.Errorf("table %s: %s: role %q: %w", q, key, raw.Role, err)
			}
			t.perms[cmd][raw.Role] = e
		}
	}
	return t, nil
}

func bxList(v any) ([]any, error) {
	if v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, errors.New("not a list")
	}
	return l, nil
}

func parsePermRel(item any, array bool) (*permRel, error) {
	var raw struct {
		Name  string `json:"name"`
		Using struct {
			FK     any `json:"foreign_key_constraint_on"`
			Manual *struct {
				RemoteTable    any               `json:"remote_table"`
				ColumnMapping  map[string]string `json:"column_mapping"`
				InsertionOrder any               `json:"insertion_order"`
			} `json:"manual_configuration"`
		} `json:"using"`
		Comment string `json:"comment"`
	}
	if err := permDecode(item, &raw); err != nil {
		return nil, err
	}
	if raw.Name == "" {
		return nil, errors.New("a relationship has no name")
	}
	r := &permRel{name: raw.Name, array: array}
	u := raw.Using
	switch {
	case (u.FK == nil) == (u.Manual == nil):
		return nil, fmt.Errorf("relationship %s: exactly one of foreign_key_constraint_on and manual_configuration must be set", r.name)
	case u.Manual != nil:
		q, err := parseBxTable(u.Manual.RemoteTable)
		if err != nil {
			return nil, fmt.Errorf("relationship %s: remote_table: %w", r.name, err)
		}
		if len(u.Manual.ColumnMapping) == 0 {
			return nil, fmt.Errorf("relationship %s: empty column_mapping", r.name)
		}
		r.manual, r.remote, r.colMapping = true, q, u.Manual.ColumnMapping
	default:
		// column | [columns] (object relationships only) or {table, column | columns}.
		switch fk := u.FK.(type) {
		case string, []any:
			if array {
				return nil, fmt.Errorf("relationship %s: an array relationship's foreign_key_constraint_on must be {table, column}", r.name)
			}
			cols, err := bxColumns(fk)
			if err != nil {
				return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: %w", r.name, err)
			}
			r.fkCols = cols
		case map[string]any:
			var on struct {
				Table   any `json:"table"`
				Column  any `json:"column"`
				Columns any `json:"columns"`
			}
			if err := permDecode(fk, &on); err != nil {
				return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: %w", r.name, err)
			}
			q, err := parseBxTable(on.Table)
			if err != nil {
				return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: %w", r.name, err)
			}
			if (on.Column == nil) == (on.Columns == nil) {
				return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: exactly one of column and columns must be set", r.name)
			}
			cols, err := bxColumns(bxFirst(on.Column, on.Columns))
			if err != nil {
				return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: %w", r.name, err)
			}
			r.fkCols, r.fkTable = cols, &q
		default:
			return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: want a column, a list of columns or {table, column}", r.name)
		}
	}
	return r, nil
}

func bxFirst(a, b any) any {
	if a != nil {
		return a
	}
	return b
}

// bxColumns reads "col" or ["a", "b"] (non-empty, strings only).
func bxColumns(v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil, errors.New("empty column name")
		}
		return []string{v}, nil
	case []any:
		if len(v) == 0 {
			return nil, errors.New("empty column list")
		}
		out := make([]string, 0, len(v))
		for _, c := range v {
			s, ok := c.(string)
			if !ok || s == "" {
				return nil, fmt.Errorf("column %v is not a name", c)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, errors.New("want a column name or a list of them")
	}
}

func parsePermEntry(cmd string, perm map[string]any) (*permEntry, error) {
	e := &permEntry{}
	var columns any
	var filter, check any
	var set map[string]any
	switch cmd {
	case "select":
		var p struct {
			Columns                any      `json:"columns"`
			Filter                 any      `json:"filter"`
			Limit                  *int     `json:"limit"`
			AllowAggregations      bool     `json:"allow_aggregations"`
			ComputedFields         []string `json:"computed_fields"`
			QueryRootFields        []string `json:"query_root_fields"`
			SubscriptionRootFields []string `json:"subscription_root_fields"`
		}
		if err := permDecode(perm, &p); err != nil {
			return nil, err
		}
		columns, filter = p.Columns, p.Filter
		e.allowAggregations = p.AllowAggregations
		e.queryRootFields, e.subscriptionRootFields = p.QueryRootFields, p.SubscriptionRootFields
		if filter == nil {
			return nil, errors.New("select permission without filter")
		}
	case "insert":
		var p struct {
			Check         any            `json:"check"`
			Set           map[string]any `json:"set"`
			Columns       any            `json:"columns"`
			BackendOnly   bool           `json:"backend_only"`
			ValidateInput any            `json:"validate_input"`
		}
		if err := permDecode(perm, &p); err != nil {
			return nil, err
		}
		columns, check, set, e.backendOnly = p.Columns, p.Check, p.Set, p.BackendOnly
		if check == nil {
			return nil, errors.New("insert permission without check")
		}
	case "update":
		var p struct {
			Columns       any            `json:"columns"`
			Filter        any            `json:"filter"`
			Check         any            `json:"check"`
			Set           map[string]any `json:"set"`
			BackendOnly   bool           `json:"backend_only"`
			ValidateInput any            `json:"validate_input"`
		}
		if err := permDecode(perm, &p); err != nil {
			return nil, err
		}
		columns, filter, check, set, e.backendOnly = p.Columns, p.Filter, p.Check, p.Set, p.BackendOnly
		if filter == nil {
			return nil, errors.New("update permission without filter")
		}
	case "delete":
		var p struct {
			Filter        any  `json:"filter"`
			BackendOnly   bool `json:"backend_only"`
			ValidateInput any  `json:"validate_input"`
		}
		if err := permDecode(perm, &p); err != nil {
			return nil, err
		}
		filter, e.backendOnly = p.Filter, p.BackendOnly
		if filter == nil {
			return nil, errors.New("delete permission without filter")
		}
	}
	var ok bool
	if filter != nil {
		if e.filter, ok = filter.(map[string]any); !ok {
			return nil, errors.New("filter is not an object")
		}
	}
	if check != nil {
		if e.check, ok = check.(map[string]any); !ok {
			return nil, errors.New("check is not an object")
		}
	}
	e.set = set
	switch c := columns.(type) {
	case nil:
	case string:
		if c != "*" {
			return nil, fmt.Errorf(`columns must be "*" or a list, got %q`, c)
		}
		e.columns = []string{"*"}
	case []any:
		e.columns = []string{}
		if len(c) > 0 {
			cols, err := bxColumns(c)
			if err != nil {
				return nil, fmt.Errorf("columns: %w", err)
			}
			e.columns = cols
		}
	default:
		return nil, fmt.Errorf(`columns must be "*" or a list, got %s`, bxKind(c))
	}
	return e, nil
}

// permDecode converts a YAML/JSON value to dst through JSON, rejecting keys dst does not know and
// keeping numbers as json.Number.
func permDecode(v any, dst any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	return dec.Decode(dst)
}

// bxNormalise turns any JSON-marshalable value into map[string]any / []any / string /
// json.Number / bool / nil.
func bxNormalise(v any) (any, error) {
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

func bxClone(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	v, err := bxNormalise(m)
	if err != nil {
		return m
	}
	return v.(map[string]any)
}

// ---- the compiler ----

type bxCompiler struct {
	src        *permSource
	cat        Catalog
	session    map[string]string // lower-cased names
	args       []any
	next       int
	sessParams map[string]string // session variable → "$n"
	root       bxTable
	rootAlias  string
	fresh      int
	fks        map[bxTable][]ForeignKey
}

func bxIdent(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

func bxPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// param adds a parameter and returns its placeholder.
func (c *bxCompiler) param(v any) string {
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
func (c *bxCompiler) sessionParam(name string) (string, error) {
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

func (c *bxCompiler) table(q bxTable) (*permTable, error) {
	t := c.src.byName[q]
	if t == nil {
		return nil, fmt.Errorf("table %s is not tracked in source %s", q, c.src.name)
	}
	return t, nil
}

func (c *bxCompiler) columnType(q bxTable, col string) (string, error) {
	typ, err := c.cat.ColumnType(q.Schema, q.Name, col)
	if err != nil {
		return "", fmt.Errorf("type of %s.%s: %w", q, col, err)
	}
	return typ, nil
}

func (c *bxCompiler) boolExp(t bxTable, alias string, v any, path string) (string, error) {
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
	switch len(parts) {
	case 0:
		return "TRUE", nil
	case 1:
		return parts[0], nil
	default:
		return "(" + strings.Join(parts, " AND ") + ")", nil
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

func (c *bxCompiler) exists(v any, path string) (string, error) {
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
	q, err := parseBxTable(obj["_table"])
	if err != nil {
		return "", fmt.Errorf("%s._table: %w", path, err)
	}
	if _, err := c.table(q); err != nil {
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

func (c *bxCompiler) field(t bxTable, alias, name string, val any, path string) (string, error) {
	tbl, err := c.table(t)
	if err != nil {
		return "", err
	}
	if rel := tbl.rels[name]; rel != nil {
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

// resolveRelationship returns a relationship's remote table and its column mapping, sorted by the
// local column: pairs of (local column, remote column).
func (c *bxCompiler) resolveRelationship(t bxTable, r *permRel) (bxTable, [][2]string, error) {
	var remote bxTable
	var mapping [][2]string
	switch {
	case r.manual:
		remote = r.remote
		for l, rc := range r.colMapping {
			mapping = append(mapping, [2]string{l, rc})
		}
	case r.fkTable == nil:
		fks, err := c.foreignKeys(t)
		if err != nil {
			return remote, nil, err
		}
		var match []ForeignKey
		for _, fk := range fks {
			if bxSameColumns(fk.Columns, r.fkCols) {
				match = append(match, fk)
			}
		}
		fk, err := bxOneForeignKey(match, t, r.fkCols)
		if err != nil {
			return remote, nil, fmt.Errorf("relationship %s: %w", r.name, err)
		}
		remote = bxTable{Schema: fk.RefSchema, Name: fk.RefTable}
		for i := range fk.Columns {
			mapping = append(mapping, [2]string{fk.Columns[i], fk.RefColumns[i]})
		}
	default:
		remote = *r.fkTable
		fks, err := c.foreignKeys(remote)
		if err != nil {
			return remote, nil, err
		}
		var match []ForeignKey
		for _, fk := range fks {
			if bxSameColumns(fk.Columns, r.fkCols) && fk.RefSchema == t.Schema && fk.RefTable == t.Name {
				match = append(match, fk)
			}
		}
		fk, err := bxOneForeignKey(match, remote, r.fkCols)
		if err != nil {
			return remote, nil, fmt.Errorf("relationship %s: %w referencing %s", r.name, err, t)
		}
		for i := range fk.Columns {
			mapping = append(mapping, [2]string{fk.RefColumns[i], fk.Columns[i]})
		}
	}
	if _, err := c.table(remote); err != nil {
		return remote, nil, fmt.Errorf("relationship %s: remote %w", r.name, err)
	}
	sort.Slice(mapping, func(i, j int) bool { return mapping[i][0] < mapping[j][0] })
	for _, pair := range mapping {
		for _, side := range []struct {
			q   bxTable
			col string
		}{{t, pair[0]}, {remote, pair[1]}} {
			typ, err := c.columnType(side.q, side.col)
			if err != nil {
				return remote, nil, err
			}
			if typ == "" {
				return remote, nil, fmt.Errorf("relationship %s: %s has no column %q", r.name, side.q, side.col)
			}
		}
	}
	return remote, mapping, nil
}

func (c *bxCompiler) foreignKeys(q bxTable) ([]ForeignKey, error) {
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

func bxOneForeignKey(match []ForeignKey, on bxTable, cols []string) (ForeignKey, error) {
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

func (c *bxCompiler) relationship(t bxTable, alias string, r *permRel, val any, path string) (string, error) {
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

func (c *bxCompiler) columnOps(t bxTable, alias, col, typ string, val any, path string) (string, error) {
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
	switch len(parts) {
	case 0:
		return "TRUE", nil
	case 1:
		return parts[0], nil
	default:
		return "(" + strings.Join(parts, " AND ") + ")", nil
	}
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
func (c *bxCompiler) scalar(v any, typ, path string) (string, error) {
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
func (c *bxCompiler) array(v any, typ, path string) (string, error) {
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
func (c *bxCompiler) columnRef(t bxTable, alias, col, typ string, v any, path string) (string, error) {
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

// CatalogQuerier is what LoadCatalog needs: *pgx.Conn, *pgxpool.Pool and pgx.Tx all fit.
type CatalogQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// PGCatalog is a Catalog snapshot of a PostgreSQL database's columns and foreign keys.
type PGCatalog struct {
	columns map[[3]string]string
	fks     map[bxTable][]ForeignKey
}

// LoadCatalog reads the columns (of tables, views, materialized views and foreign tables) and the
// foreign keys of every schema except pg_catalog, information_schema and pg_toast. Column types
// are spelt as format_type prints them for built-in types ("uuid", "character varying(20)",
// "text[]") and schema-qualified otherwise ("public.tenant_role", "public.tenant_role[]"), so
// that the casts SQL writes do not depend on the search_path.
func LoadCatalog(ctx context.Context, q CatalogQuerier) (*PGCatalog, error) {
	cat := &PGCatalog{columns: map[[3]string]string{}, fks: map[bxTable][]ForeignKey{}}
	rows, err := q.Query(ctx, `
		SELECT n.nspname::text, c.relname::text, a.attname::text,
		  CASE WHEN bn.nspname = 'pg_catalog' THEN format_type(a.atttypid, a.atttypmod)
		       ELSE quote_ident(bn.nspname) || '.' || quote_ident(bt.typname) || CASE WHEN bt.oid <> t.oid THEN '[]' ELSE '' END
		  END
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END
		JOIN pg_catalog.pg_namespace bn ON bn.oid = bt.typnamespace
		WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'`)
	if err != nil {
		return nil, fmt.Errorf("hasuratest: read columns: %w", err)
	}
	var s, t, col, typ string
	if _, err := pgx.ForEachRow(rows, []any{&s, &t, &col, &typ}, func() error {
		cat.columns[[3]string{s, t, col}] = typ
		return nil
	}); err != nil {
		return nil, fmt.Errorf("hasuratest: read columns: %w", err)
	}
	rows, err = q.Query(ctx, `
		SELECT con.conname::text, n.nspname::text, c.relname::text, rn.nspname::text, rc.relname::text,
		  ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
		        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
		  ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
		        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord)
		FROM pg_catalog.pg_constraint con
		JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid
		JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
		WHERE con.contype = 'f'
		ORDER BY n.nspname, c.relname, con.conname`)
	if err != nil {
		return nil, fmt.Errorf("hasuratest: read foreign keys: %w", err)
	}
	var fk ForeignKey
	if _, err := pgx.ForEachRow(rows, []any{&fk.Name, &fk.Schema, &fk.Table, &fk.RefSchema, &fk.RefTable, &fk.Columns, &fk.RefColumns}, func() error {
		k := bxTable{Schema: fk.Schema, Name: fk.Table}
		cat.fks[k] = append(cat.fks[k], ForeignKey{
			Name: fk.Name, Schema: fk.Schema, Table: fk.Table, Columns: slices.Clone(fk.Columns),
			RefSchema: fk.RefSchema, RefTable: fk.RefTable, RefColumns: slices.Clone(fk.RefColumns),
		})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("hasuratest: read foreign keys: %w", err)
	}
	return cat, nil
}

// ColumnType implements Catalog.
func (c *PGCatalog) ColumnType(schema, table, column string) (string, error) {
	return c.columns[[3]string{schema, table, column}], nil
}

// ForeignKeys implements Catalog.
func (c *PGCatalog) ForeignKeys(schema, table string) ([]ForeignKey, error) {
	return slices.Clone(c.fks[bxTable{Schema: schema, Name: table}]), nil
}
