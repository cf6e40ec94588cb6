package hasuratest

// Hasura permission rules, and their boolean expressions as SQL.
//
// Rules lists what a role may do on every tracked table; SQL compiles a permission's boolean
// expression (a select/update/delete filter, an insert/update check) into a PostgreSQL predicate
// with internal/hasurabool, over the tables and relationships of the metadata.
//
// Permission entries (Hasura/RQL/Types/Permission.hs, hasura/graphql-engine): select {columns,
// filter, limit, allow_aggregations, computed_fields, query_root_fields, subscription_root_fields};
// insert {check, set, columns, backend_only, validate_input}; update {columns, filter, check, set,
// backend_only, validate_input}; delete {filter, backend_only, validate_input}. filter (and
// insert's check) are required; update's check is optional (none = no check). Relationships
// (Hasura/RQL/Types/Relationships/Local.hs): object_relationships using foreign_key_constraint_on:
// column | [columns] or {table, column(s)}; array_relationships using foreign_key_constraint_on:
// {table, column(s)}; either using manual_configuration: {remote_table, column_mapping}. How
// each is resolved and compiled: the package comment of internal/hasurabool.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/tenantkit/tenantkit/internal/hasurabool"
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

// The database catalog the expressions are compiled against (internal/hasurabool).
type (
	// ForeignKey is a foreign key constraint.
	ForeignKey = hasurabool.ForeignKey
	// Catalog describes the database the expressions are compiled for.
	Catalog = hasurabool.Catalog
	// PGCatalog is a Catalog snapshot of a PostgreSQL database.
	PGCatalog = hasurabool.PGCatalog
	// CatalogQuerier is what LoadCatalog needs.
	CatalogQuerier = hasurabool.CatalogQuerier
)

// LoadCatalog reads the columns and foreign keys of a PostgreSQL database (hasurabool.LoadCatalog).
func LoadCatalog(ctx context.Context, q CatalogQuerier) (*PGCatalog, error) {
	return hasurabool.LoadCatalog(ctx, q)
}

// SQL compiles a Hasura boolean expression for rows of schema.table, aliased as alias, into a SQL
// predicate with parameters from $firstParam (hasurabool.Compiler.SQL), over the tables and
// relationships of the metadata's source that tracks schema.table. cat supplies column types and
// foreign keys.
func (m *Metadata) SQL(schema, table, alias string, expr map[string]any, session map[string]string, firstParam int, cat Catalog) (sql string, args []any, err error) {
	if cat == nil {
		return "", nil, errors.New("hasuratest: SQL needs a Catalog")
	}
	pm, err := m.permissionModel()
	if err != nil {
		return "", nil, err
	}
	src, err := pm.sourceOf(hasurabool.Table{Schema: schema, Name: table})
	if err != nil {
		return "", nil, err
	}
	return hasurabool.Compiler{Tracked: src, Catalog: cat}.SQL(schema, table, alias, expr, session, firstParam)
}

// ---- the permission model read from the table files ----

type permModel struct{ sources []*permSource }

type permSource struct {
	name   string
	tables []*permTable
	byName map[hasurabool.Table]*permTable
}

type permTable struct {
	hasurabool.Table
	rels  map[string]*hasurabool.Relationship
	perms map[string]map[string]*permEntry // command → role → entry
	// configured: the table file has a configuration (custom names), which Schema does not emulate
	configured bool
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
		src := &permSource{name: name, byName: map[hasurabool.Table]*permTable{}}
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
			if src.byName[t.Table] != nil {
				return nil, fmt.Errorf("database %s: table %s tracked twice", name, t.Table)
			}
			src.byName[t.Table] = t
			src.tables = append(src.tables, t)
		}
		pm.sources = append(pm.sources, src)
	}
	return pm, nil
}

func (pm *permModel) sourceOf(q hasurabool.Table) (*permSource, error) {
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

// Relationships implements hasurabool.Tracked.
func (s *permSource) Relationships(q hasurabool.Table) (map[string]*hasurabool.Relationship, bool) {
	t := s.byName[q]
	if t == nil {
		return nil, false
	}
	return t.rels, true
}

func parsePermTable(item any) (*permTable, error) {
	tm, ok := item.(map[string]any)
	if !ok {
		return nil, errors.New("a table entry is not an object")
	}
	q, err := hasurabool.ParseTable(tm["table"])
	if err != nil {
		return nil, err
	}
	t := &permTable{Table: q, rels: map[string]*hasurabool.Relationship{}, perms: map[string]map[string]*permEntry{}}
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
			if t.rels[r.Name] != nil {
				return nil, fmt.Errorf("table %s: relationship %q defined twice", q, r.Name)
			}
			t.rels[r.Name] = r
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

func parsePermRel(item any, array bool) (*hasurabool.Relationship, error) {
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
	r := &hasurabool.Relationship{Name: raw.Name, Array: array}
	u := raw.Using
	switch {
	case (u.FK == nil) == (u.Manual == nil):
		return nil, fmt.Errorf("relationship %s: exactly one of foreign_key_constraint_on and manual_configuration must be set", r.Name)
	case u.Manual != nil:
		q, err := hasurabool.ParseTable(u.Manual.RemoteTable)
		if err != nil {
			return nil, fmt.Errorf("relationship %s: remote_table: %w", r.Name, err)
		}
		if len(u.Manual.ColumnMapping) == 0 {
			return nil, fmt.Errorf("relationship %s: empty column_mapping", r.Name)
		}
		r.Manual, r.Remote, r.ColumnMapping = true, q, u.Manual.ColumnMapping
	default:
		// column | [columns] (object relationships only) or {table, column | columns}.
		switch fk := u.FK.(type) {
		case string, []any:
			if array {
				return nil, fmt.Errorf("relationship %s: an array relationship's foreign_key_constraint_on must be {table, column}", r.Name)
			}
			cols, err := bxColumns(fk)
			if err != nil {
				return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: %w", r.Name, err)
			}
			r.FKColumns = cols
		case map[string]any:
			var on struct {
				Table   any `json:"table"`
				Column  any `json:"column"`
				Columns any `json:"columns"`
			}
			if err := permDecode(fk, &on); err != nil {
				return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: %w", r.Name, err)
			}
			q, err := hasurabool.ParseTable(on.Table)
			if err != nil {
				return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: %w", r.Name, err)
			}
			if (on.Column == nil) == (on.Columns == nil) {
				return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: exactly one of column and columns must be set", r.Name)
			}
			cols, err := bxColumns(bxFirst(on.Column, on.Columns))
			if err != nil {
				return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: %w", r.Name, err)
			}
			r.FKColumns, r.FKTable = cols, &q
		default:
			return nil, fmt.Errorf("relationship %s: foreign_key_constraint_on: want a column, a list of columns or {table, column}", r.Name)
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
		return nil, fmt.Errorf(`columns must be "*" or a list, got %T`, c)
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

func bxClone(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	v, err := hasurabool.Normalise(m)
	if err != nil {
		return m
	}
	return v.(map[string]any)
}

// ---- the compiler ----
