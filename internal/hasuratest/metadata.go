package hasuratest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	gqlast "github.com/vektah/gqlparser/v2/ast"
	gqlparser "github.com/vektah/gqlparser/v2/parser"
)

// Metadata is a loaded hasura/metadata directory (Hasura CLI config v3 layout).
type Metadata struct {
	// Dir is the directory Load read.
	Dir string
	// Actions are the entries of actions.yaml joined with their fields in actions.graphql.
	Actions []*Action
	// Types are the input, object, enum and scalar types defined in actions.graphql.
	Types map[string]*gqlast.Definition
	// Sources are the databases of databases/databases.yaml with their tables (includes resolved).
	Sources []*Source
	// RemoteSchemas are the entries of remote_schemas.yaml.
	RemoteSchemas []*RemoteSchema

	envVars []string
}

// Header is one configured header: exactly one of Value and ValueFromEnv is set.
type Header struct {
	Name         string
	Value        string
	ValueFromEnv string
}

// Action is an action: its actions.yaml entry and its field in actions.graphql.
type Action struct {
	Name                 string
	Kind                 string // "synchronous" or "asynchronous"
	Type                 string // "query" or "mutation", from the root type that declares the field
	Handler              string // as written, e.g. "{{TENANTKIT_URL}}/actions/createTenant"
	Headers              []Header
	ForwardClientHeaders bool
	TimeoutSeconds       int // definition.timeout, default 30
	Roles                []string
	Comment              string
	// Field is the action's field definition in actions.graphql (arguments and output type).
	Field *gqlast.FieldDefinition
	// Transformed is set when the action has a request_transform or response_transform, which
	// this client does not emulate (Action refuses to call such an action).
	Transformed bool
}

// Source is one database of databases.yaml.
type Source struct {
	Name   string
	Kind   string
	Tables []*Table
}

// Table is one table file: only what the client needs of it.
type Table struct {
	Schema        string
	Name          string
	EventTriggers []*EventTrigger
}

// Columns is an event trigger column specification: "*" (All) or a list of column names.
type Columns struct {
	All   bool
	Names []string
}

// List returns Names, or ["*"] for All.
func (c Columns) List() []string {
	if c.All {
		return []string{"*"}
	}
	return slices.Clone(c.Names)
}

// UnmarshalJSON accepts "*" or a list of column names.
func (c *Columns) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s != "*" {
			return fmt.Errorf(`columns must be "*" or a list, got %q`, s)
		}
		*c = Columns{All: true}
		return nil
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return fmt.Errorf(`columns must be "*" or a list of names: %w`, err)
	}
	*c = Columns{Names: names}
	return nil
}

// OperationSpec is a trigger's spec for one operation. Columns are the columns Hasura listens to
// (for UPDATE: the event fires only when one of them changed); Payload are the columns delivered
// in data.old/data.new (default: all).
type OperationSpec struct {
	Columns Columns
	Payload Columns
}

// RetryConf is an event trigger's retry_conf, with Hasura's defaults filled in.
type RetryConf struct {
	NumRetries   int
	IntervalSec  int
	TimeoutSec   int
	ToleranceSec int
}

// EventTrigger is one entry of a table's event_triggers.
type EventTrigger struct {
	Name           string
	Source         string
	Schema         string
	Table          string
	EnableManual   bool
	Insert         *OperationSpec
	Update         *OperationSpec
	Delete         *OperationSpec
	Webhook        string // as written, may contain {{ENV}} templates
	WebhookFromEnv string
	Headers        []Header
	Retry          RetryConf
	Transformed    bool // request_transform or response_transform present (not emulated)
}

// RemoteSchema is one entry of remote_schemas.yaml.
type RemoteSchema struct {
	Name                 string
	URL                  string
	URLFromEnv           string
	Headers              []Header
	ForwardClientHeaders bool
	TimeoutSeconds       int
	Comment              string
	// Permissions are the schemas each role may see (role → SDL), from permissions[].definition.
	Permissions map[string]string
	// Customized is set when the entry has a customization (type and field prefixes), which this
	// package does not emulate.
	Customized bool
}

// ---- raw (file) shapes; decoded strictly so that a misspelt key is an error ----

type rawHeader struct {
	Name         string  `json:"name"`
	Value        *string `json:"value"`
	ValueFromEnv *string `json:"value_from_env"`
}

type rawActionsFile struct {
	Actions     []rawAction    `json:"actions"`
	CustomTypes rawCustomTypes `json:"custom_types"`
}

type rawAction struct {
	Name       string `json:"name"`
	Definition struct {
		Kind                 string          `json:"kind"`
		Type                 string          `json:"type"`
		Handler              string          `json:"handler"`
		Headers              []rawHeader     `json:"headers"`
		ForwardClientHeaders bool            `json:"forward_client_headers"`
		Timeout              *int            `json:"timeout"`
		OutputType           string          `json:"output_type"`
		Arguments            []rawArgument   `json:"arguments"`
		RequestTransform     json.RawMessage `json:"request_transform"`
		ResponseTransform    json.RawMessage `json:"response_transform"`
	} `json:"definition"`
	Permissions []struct {
		Role    string `json:"role"`
		Comment string `json:"comment"`
	} `json:"permissions"`
	Comment string `json:"comment"`
}

type rawArgument struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Description string `json:"description"`
}

type rawTypeName struct {
	Name          string          `json:"name"`
	Description   string          `json:"description"`
	Fields        json.RawMessage `json:"fields"`
	Values        json.RawMessage `json:"values"`
	Relationships json.RawMessage `json:"relationships"`
}

type rawCustomTypes struct {
	Enums        []rawTypeName `json:"enums"`
	InputObjects []rawTypeName `json:"input_objects"`
	Objects      []rawTypeName `json:"objects"`
	Scalars      []rawTypeName `json:"scalars"`
}

type rawSource struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Tables []any  `json:"tables"`
}

type rawTable struct {
	Table struct {
		Schema string `json:"schema"`
		Name   string `json:"name"`
	} `json:"table"`
}

type rawOpSpec struct {
	Columns *Columns `json:"columns"`
	Payload *Columns `json:"payload"`
}

type rawEventTrigger struct {
	Name       string `json:"name"`
	Definition struct {
		EnableManual bool       `json:"enable_manual"`
		Insert       *rawOpSpec `json:"insert"`
		Update       *rawOpSpec `json:"update"`
		Delete       *rawOpSpec `json:"delete"`
	} `json:"definition"`
	RetryConf *struct {
		NumRetries   *int `json:"num_retries"`
		IntervalSec  *int `json:"interval_sec"`
		TimeoutSec   *int `json:"timeout_sec"`
		ToleranceSec *int `json:"tolerance_sec"`
	} `json:"retry_conf"`
	Webhook              string          `json:"webhook"`
	WebhookFromEnv       string          `json:"webhook_from_env"`
	Headers              []rawHeader     `json:"headers"`
	RequestTransform     json.RawMessage `json:"request_transform"`
	ResponseTransform    json.RawMessage `json:"response_transform"`
	CleanupConfig        json.RawMessage `json:"cleanup_config"`
	TriggerOnReplication *bool           `json:"trigger_on_replication"`
}

type rawRemoteSchema struct {
	Name       string `json:"name"`
	Definition struct {
		URL                  string          `json:"url"`
		URLFromEnv           string          `json:"url_from_env"`
		Headers              []rawHeader     `json:"headers"`
		ForwardClientHeaders bool            `json:"forward_client_headers"`
		TimeoutSeconds       *int            `json:"timeout_seconds"`
		Customization        json.RawMessage `json:"customization"`
	} `json:"definition"`
	Comment             string          `json:"comment"`
	Permissions         json.RawMessage `json:"permissions"`
	RemoteRelationships json.RawMessage `json:"remote_relationships"`
}

// decodeStrict converts a YAML value to dst through JSON, rejecting keys dst does not know.
func decodeStrict(v any, dst any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(dst)
}

// decodeLoose converts a YAML value to dst through JSON, ignoring keys dst does not know.
func decodeLoose(v any, dst any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, dst)
}

func convertHeaders(raw []rawHeader) ([]Header, error) {
	out := make([]Header, 0, len(raw))
	seen := map[string]bool{}
	for _, h := range raw {
		if h.Name == "" {
			return nil, errors.New("header without a name")
		}
		if (h.Value == nil) == (h.ValueFromEnv == nil) {
			return nil, fmt.Errorf("header %q: exactly one of value and value_from_env must be set", h.Name)
		}
		if k := strings.ToLower(h.Name); seen[k] {
			return nil, fmt.Errorf("header %q configured twice", h.Name)
		} else {
			seen[k] = true
		}
		hd := Header{Name: h.Name}
		if h.Value != nil {
			hd.Value = *h.Value
		} else {
			hd.ValueFromEnv = *h.ValueFromEnv
		}
		out = append(out, hd)
	}
	return out, nil
}

// Load reads a Hasura metadata directory: actions.yaml + actions.graphql (parsed with gqlparser),
// databases/databases.yaml with its "!include"d table files, and remote_schemas.yaml. Files that
// do not exist count as empty. Besides parsing, it checks the consistency Hasura (or the CLI)
// would enforce when applying the metadata, and is stricter than Hasura in one respect: an
// unknown key in an action, event trigger, header or remote schema entry is an error, because
// Hasura silently ignores it and the setting it was meant to be never takes effect.
func Load(dir string) (*Metadata, error) {
	m := &Metadata{Dir: dir, Types: map[string]*gqlast.Definition{}}
	if err := m.checkVersion(); err != nil {
		return nil, err
	}
	if err := m.loadActions(); err != nil {
		return nil, err
	}
	if err := m.loadSources(); err != nil {
		return nil, err
	}
	if err := m.loadRemoteSchemas(); err != nil {
		return nil, err
	}
	if err := m.scanEnv(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metadata) path(name string) string { return filepath.Join(m.Dir, filepath.FromSlash(name)) }

// readOptional reads a YAML file under the metadata directory, resolving includes; a missing
// file reads as nil.
func (m *Metadata) readOptional(name string) (any, error) {
	p := m.path(name)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return loadYAML(p, map[string]any{}, 0)
}

func (m *Metadata) checkVersion() error {
	v, err := m.readOptional("version.yaml")
	if err != nil || v == nil {
		return err
	}
	var ver struct {
		Version int `json:"version"`
	}
	if err := decodeLoose(v, &ver); err != nil {
		return fmt.Errorf("version.yaml: %w", err)
	}
	if ver.Version != 3 {
		return fmt.Errorf("version.yaml: metadata version %d, want 3 (config v3 directory format)", ver.Version)
	}
	return nil
}

func (m *Metadata) loadActions() error {
	v, err := m.readOptional("actions.yaml")
	if err != nil {
		return err
	}
	var file rawActionsFile
	if v != nil {
		// Each action on its own, so that an error names the action.
		var top struct {
			Actions     []any `json:"actions"`
			CustomTypes any   `json:"custom_types"`
		}
		if err := decodeStrict(v, &top); err != nil {
			return fmt.Errorf("actions.yaml: %w", err)
		}
		if top.CustomTypes != nil {
			if err := decodeStrict(top.CustomTypes, &file.CustomTypes); err != nil {
				return fmt.Errorf("actions.yaml: custom_types: %w", err)
			}
		}
		for i, item := range top.Actions {
			var ra rawAction
			if err := decodeStrict(item, &ra); err != nil {
				name := fmt.Sprint(i)
				if mm, ok := item.(map[string]any); ok && mm["name"] != nil {
					name = fmt.Sprintf("%q", mm["name"])
				}
				return fmt.Errorf("actions.yaml: action %s: %w", name, err)
			}
			file.Actions = append(file.Actions, ra)
		}
	}
	fields, err := m.loadActionsGraphQL()
	if err != nil {
		return err
	}
	for _, check := range []struct {
		kind  gqlast.DefinitionKind
		names []rawTypeName
	}{
		{gqlast.Enum, file.CustomTypes.Enums},
		{gqlast.InputObject, file.CustomTypes.InputObjects},
		{gqlast.Object, file.CustomTypes.Objects},
		{gqlast.Scalar, file.CustomTypes.Scalars},
	} {
		for _, t := range check.names {
			def := m.Types[t.Name]
			if def == nil || def.Kind != check.kind {
				return fmt.Errorf("actions.yaml: custom_types lists %s %q, which actions.graphql does not define", strings.ToLower(string(check.kind)), t.Name)
			}
		}
	}
	seen := map[string]bool{}
	for _, ra := range file.Actions {
		a, err := m.buildAction(ra, fields)
		if err != nil {
			return fmt.Errorf("actions.yaml: action %q: %w", ra.Name, err)
		}
		if seen[a.Name] {
			return fmt.Errorf("actions.yaml: action %q defined twice", a.Name)
		}
		seen[a.Name] = true
		m.Actions = append(m.Actions, a)
	}
	for name, f := range fields {
		if !seen[name] {
			return fmt.Errorf("actions.graphql: %s field %q has no entry in actions.yaml", f.op, name)
		}
	}
	return nil
}

type rootField struct {
	op    string // "query" or "mutation"
	field *gqlast.FieldDefinition
}

// loadActionsGraphQL parses actions.graphql: the fields of type Query / type Mutation (or their
// `extend type` forms) are the actions, everything else are custom types.
func (m *Metadata) loadActionsGraphQL() (map[string]rootField, error) {
	p := m.path("actions.graphql")
	src, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]rootField{}, nil
	}
	if err != nil {
		return nil, err
	}
	doc, err := gqlparser.ParseSchema(&gqlast.Source{Name: "actions.graphql", Input: string(src)})
	if err != nil {
		return nil, fmt.Errorf("actions.graphql: %w", err)
	}
	fields := map[string]rootField{}
	for _, def := range append(slices.Clone(doc.Definitions), doc.Extensions...) {
		var op string
		switch def.Name {
		case "Query":
			op = "query"
		case "Mutation":
			op = "mutation"
		case "Subscription":
			return nil, errors.New("actions.graphql: actions cannot be subscriptions")
		}
		if op != "" {
			if def.Kind != gqlast.Object {
				return nil, fmt.Errorf("actions.graphql: %s must be an object type", def.Name)
			}
			for _, f := range def.Fields {
				if prev, dup := fields[f.Name]; dup {
					return nil, fmt.Errorf("actions.graphql: field %q declared twice (%s and %s)", f.Name, prev.op, op)
				}
				fields[f.Name] = rootField{op: op, field: f}
			}
			continue
		}
		if _, dup := m.Types[def.Name]; dup {
			return nil, fmt.Errorf("actions.graphql: type %q defined twice", def.Name)
		}
		switch def.Kind {
		case gqlast.Object, gqlast.InputObject, gqlast.Enum, gqlast.Scalar:
			m.Types[def.Name] = def
		default:
			return nil, fmt.Errorf("actions.graphql: %s %q: actions support only object, input, enum and scalar types", strings.ToLower(string(def.Kind)), def.Name)
		}
	}
	// Every named type an argument or output refers to must be usable there. Names that are
	// neither built in nor defined are allowed: Hasura resolves them as Postgres scalars (uuid,
	// timestamptz, …).
	for name, f := range fields {
		for _, arg := range f.field.Arguments {
			// Hasura's ArgumentDefinition (and InputObjectFieldDefinition) has a name, a type and a
			// description only: a default written in the SDL never reaches Hasura.
			if arg.DefaultValue != nil {
				return nil, fmt.Errorf("actions.graphql: argument %s.%s has a default value, which Hasura actions do not support", name, arg.Name)
			}
			if def := m.Types[arg.Type.Name()]; def != nil && def.Kind == gqlast.Object {
				return nil, fmt.Errorf("actions.graphql: argument %s.%s: %s is an output type", name, arg.Name, def.Name)
			}
		}
		if def := m.Types[f.field.Type.Name()]; def != nil && def.Kind == gqlast.InputObject {
			return nil, fmt.Errorf("actions.graphql: %s returns input type %s", name, def.Name)
		}
	}
	for _, def := range m.Types {
		for _, f := range def.Fields {
			if f.DefaultValue != nil {
				return nil, fmt.Errorf("actions.graphql: field %s.%s has a default value, which Hasura custom types do not support", def.Name, f.Name)
			}
			if len(f.Arguments) > 0 {
				return nil, fmt.Errorf("actions.graphql: field %s.%s has arguments, which Hasura custom types do not support", def.Name, f.Name)
			}
			ref := m.Types[f.Type.Name()]
			if ref == nil {
				continue
			}
			if def.Kind == gqlast.InputObject && ref.Kind == gqlast.Object {
				return nil, fmt.Errorf("actions.graphql: input %s.%s has output type %s", def.Name, f.Name, ref.Name)
			}
			if def.Kind == gqlast.Object && ref.Kind == gqlast.InputObject {
				return nil, fmt.Errorf("actions.graphql: type %s.%s has input type %s", def.Name, f.Name, ref.Name)
			}
		}
	}
	return fields, nil
}

func (m *Metadata) buildAction(ra rawAction, fields map[string]rootField) (*Action, error) {
	d := ra.Definition
	if ra.Name == "" {
		return nil, errors.New("no name")
	}
	rf, ok := fields[ra.Name]
	if !ok {
		return nil, errors.New("actions.graphql declares no Query or Mutation field of that name")
	}
	a := &Action{
		Name:                 ra.Name,
		Kind:                 d.Kind,
		Type:                 rf.op,
		Handler:              d.Handler,
		ForwardClientHeaders: d.ForwardClientHeaders,
		TimeoutSeconds:       30,
		Comment:              ra.Comment,
		Field:                rf.field,
		Transformed:          len(d.RequestTransform) > 0 || len(d.ResponseTransform) > 0,
	}
	if a.Kind == "" {
		a.Kind = "synchronous"
	}
	if a.Kind != "synchronous" && a.Kind != "asynchronous" {
		return nil, fmt.Errorf("kind %q, want synchronous or asynchronous", a.Kind)
	}
	if d.Type != "" && d.Type != rf.op {
		return nil, fmt.Errorf("actions.yaml says type %s but actions.graphql declares it on %s", d.Type, rf.op)
	}
	if a.Kind == "asynchronous" && a.Type == "query" {
		return nil, errors.New("an asynchronous action must be a mutation")
	}
	if a.Handler == "" {
		return nil, errors.New("no handler")
	}
	if _, err := parseTemplate(a.Handler); err != nil {
		return nil, fmt.Errorf("handler: %w", err)
	}
	if d.Timeout != nil {
		if *d.Timeout <= 0 {
			return nil, fmt.Errorf("timeout %d, want > 0", *d.Timeout)
		}
		a.TimeoutSeconds = *d.Timeout
	}
	hs, err := convertHeaders(d.Headers)
	if err != nil {
		return nil, err
	}
	a.Headers = hs
	for _, p := range ra.Permissions {
		if p.Role == "" {
			return nil, errors.New("permission without a role")
		}
		if slices.Contains(a.Roles, p.Role) {
			return nil, fmt.Errorf("role %q has two permission entries", p.Role)
		}
		a.Roles = append(a.Roles, p.Role)
	}
	// Older exports repeat the signature in actions.yaml; when they do, it must agree.
	if d.OutputType != "" && d.OutputType != rf.field.Type.String() {
		return nil, fmt.Errorf("actions.yaml output_type %s, actions.graphql %s", d.OutputType, rf.field.Type.String())
	}
	if d.Arguments != nil {
		if len(d.Arguments) != len(rf.field.Arguments) {
			return nil, fmt.Errorf("actions.yaml lists %d arguments, actions.graphql %d", len(d.Arguments), len(rf.field.Arguments))
		}
		for _, ya := range d.Arguments {
			ga := rf.field.Arguments.ForName(ya.Name)
			if ga == nil || ga.Type.String() != ya.Type {
				return nil, fmt.Errorf("actions.yaml argument %s: %s does not match actions.graphql", ya.Name, ya.Type)
			}
		}
	}
	return a, nil
}

func (m *Metadata) loadSources() error {
	v, err := m.readOptional("databases/databases.yaml")
	if err != nil || v == nil {
		return err
	}
	var raws []rawSource
	if err := decodeLoose(v, &raws); err != nil {
		return fmt.Errorf("databases/databases.yaml: %w", err)
	}
	for _, rs := range raws {
		src := &Source{Name: rs.Name, Kind: rs.Kind}
		triggers := map[string]bool{}
		for _, rt := range rs.Tables {
			var t rawTable
			if err := decodeLoose(rt, &t); err != nil {
				return fmt.Errorf("database %s: table: %w", rs.Name, err)
			}
			if t.Table.Name == "" {
				return fmt.Errorf("database %s: a table entry has no table.name", rs.Name)
			}
			if t.Table.Schema == "" {
				t.Table.Schema = "public"
			}
			tbl := &Table{Schema: t.Table.Schema, Name: t.Table.Name}
			// The rest of a table file is Hasura's business; its triggers are decoded strictly.
			var items []any
			if mm, ok := rt.(map[string]any); ok && mm["event_triggers"] != nil {
				if items, ok = mm["event_triggers"].([]any); !ok {
					return fmt.Errorf("database %s: table %s.%s: event_triggers is not a list", rs.Name, tbl.Schema, tbl.Name)
				}
			}
			for i, item := range items {
				var ret rawEventTrigger
				if err := decodeStrict(item, &ret); err != nil {
					name := fmt.Sprint(i)
					if mm, ok := item.(map[string]any); ok && mm["name"] != nil {
						name = fmt.Sprintf("%q", mm["name"])
					}
					return fmt.Errorf("database %s: table %s.%s: event trigger %s: %w", rs.Name, tbl.Schema, tbl.Name, name, err)
				}
				et, err := buildTrigger(ret, src.Name, tbl)
				if err != nil {
					return fmt.Errorf("database %s: table %s.%s: event trigger %q: %w", rs.Name, tbl.Schema, tbl.Name, ret.Name, err)
				}
				if triggers[et.Name] {
					return fmt.Errorf("database %s: event trigger %q defined twice", rs.Name, et.Name)
				}
				triggers[et.Name] = true
				tbl.EventTriggers = append(tbl.EventTriggers, et)
			}
			src.Tables = append(src.Tables, tbl)
		}
		m.Sources = append(m.Sources, src)
	}
	return nil
}

func buildTrigger(r rawEventTrigger, source string, tbl *Table) (*EventTrigger, error) {
	if r.Name == "" {
		return nil, errors.New("no name")
	}
	et := &EventTrigger{
		Name:           r.Name,
		Source:         source,
		Schema:         tbl.Schema,
		Table:          tbl.Name,
		EnableManual:   r.Definition.EnableManual,
		Webhook:        r.Webhook,
		WebhookFromEnv: r.WebhookFromEnv,
		// Hasura's RetryConf defaults (Hasura.RQL.Types.EventTrigger).
		Retry:       RetryConf{NumRetries: 0, IntervalSec: 10, TimeoutSec: 60},
		Transformed: len(r.RequestTransform) > 0 || len(r.ResponseTransform) > 0,
	}
	if (et.Webhook == "") == (et.WebhookFromEnv == "") {
		return nil, errors.New("exactly one of webhook and webhook_from_env must be set")
	}
	if et.Webhook != "" {
		if _, err := parseTemplate(et.Webhook); err != nil {
			return nil, fmt.Errorf("webhook: %w", err)
		}
	}
	conv := func(op string, s *rawOpSpec) (*OperationSpec, error) {
		if s == nil {
			return nil, nil
		}
		if s.Columns == nil {
			return nil, fmt.Errorf("%s: no columns", op)
		}
		spec := &OperationSpec{Columns: *s.Columns, Payload: Columns{All: true}}
		if s.Payload != nil {
			spec.Payload = *s.Payload
		}
		return spec, nil
	}
	var err error
	if et.Insert, err = conv("insert", r.Definition.Insert); err != nil {
		return nil, err
	}
	if et.Update, err = conv("update", r.Definition.Update); err != nil {
		return nil, err
	}
	if et.Delete, err = conv("delete", r.Definition.Delete); err != nil {
		return nil, err
	}
	if et.Insert == nil && et.Update == nil && et.Delete == nil && !et.EnableManual {
		return nil, errors.New("none of insert, update, delete or enable_manual is set")
	}
	if rc := r.RetryConf; rc != nil {
		set := func(dst *int, src *int, name string) error {
			if src == nil {
				return nil
			}
			if *src < 0 {
				return fmt.Errorf("retry_conf.%s is negative", name)
			}
			*dst = *src
			return nil
		}
		for _, e := range []error{
			set(&et.Retry.NumRetries, rc.NumRetries, "num_retries"),
			set(&et.Retry.IntervalSec, rc.IntervalSec, "interval_sec"),
			set(&et.Retry.TimeoutSec, rc.TimeoutSec, "timeout_sec"),
			set(&et.Retry.ToleranceSec, rc.ToleranceSec, "tolerance_sec"),
		} {
			if e != nil {
				return nil, e
			}
		}
	}
	if et.Headers, err = convertHeaders(r.Headers); err != nil {
		return nil, err
	}
	return et, nil
}

func (m *Metadata) loadRemoteSchemas() error {
	v, err := m.readOptional("remote_schemas.yaml")
	if err != nil || v == nil {
		return err
	}
	items, ok := v.([]any)
	if !ok {
		return errors.New("remote_schemas.yaml: not a list")
	}
	for i, item := range items {
		var r rawRemoteSchema
		if err := decodeStrict(item, &r); err != nil {
			name := fmt.Sprint(i)
			if mm, ok := item.(map[string]any); ok && mm["name"] != nil {
				name = fmt.Sprintf("%q", mm["name"])
			}
			return fmt.Errorf("remote_schemas.yaml: remote schema %s: %w", name, err)
		}
		d := r.Definition
		rs := &RemoteSchema{
			Name: r.Name, URL: d.URL, URLFromEnv: d.URLFromEnv,
			ForwardClientHeaders: d.ForwardClientHeaders, TimeoutSeconds: 60, Comment: r.Comment,
		}
		if rs.Name == "" {
			return errors.New("remote_schemas.yaml: an entry has no name")
		}
		if m.RemoteSchema(rs.Name) != nil {
			return fmt.Errorf("remote_schemas.yaml: %q defined twice", rs.Name)
		}
		if (rs.URL == "") == (rs.URLFromEnv == "") {
			return fmt.Errorf("remote_schemas.yaml: %s: exactly one of url and url_from_env must be set", rs.Name)
		}
		if d.TimeoutSeconds != nil {
			rs.TimeoutSeconds = *d.TimeoutSeconds
		}
		rs.Customized = len(d.Customization) > 0 && string(d.Customization) != "null"
		if len(r.Permissions) > 0 && string(r.Permissions) != "null" {
			var perms []struct {
				Role       string `json:"role"`
				Definition struct {
					Schema string `json:"schema"`
				} `json:"definition"`
				Comment string `json:"comment"`
			}
			dec := json.NewDecoder(bytes.NewReader(r.Permissions))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&perms); err != nil {
				return fmt.Errorf("remote_schemas.yaml: %s: permissions: %w", rs.Name, err)
			}
			rs.Permissions = map[string]string{}
			for _, p := range perms {
				if p.Role == "" || p.Definition.Schema == "" {
					return fmt.Errorf("remote_schemas.yaml: %s: a permission without role or schema", rs.Name)
				}
				if _, dup := rs.Permissions[p.Role]; dup {
					return fmt.Errorf("remote_schemas.yaml: %s: role %q has two permissions", rs.Name, p.Role)
				}
				rs.Permissions[p.Role] = p.Definition.Schema
			}
		}
		if rs.Headers, err = convertHeaders(d.Headers); err != nil {
			return fmt.Errorf("remote_schemas.yaml: %s: %w", rs.Name, err)
		}
		m.RemoteSchemas = append(m.RemoteSchemas, rs)
	}
	return nil
}

// Action returns the action named name, or nil.
func (m *Metadata) Action(name string) *Action {
	for _, a := range m.Actions {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// RemoteSchema returns the remote schema named name, or nil.
func (m *Metadata) RemoteSchema(name string) *RemoteSchema {
	for _, r := range m.RemoteSchemas {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// EventTrigger returns the event trigger named name (in any source), or an error when there is
// none or more than one.
func (m *Metadata) EventTrigger(name string) (*EventTrigger, error) {
	var found []*EventTrigger
	for _, s := range m.Sources {
		for _, t := range s.Tables {
			for _, et := range t.EventTriggers {
				if et.Name == name {
					found = append(found, et)
				}
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("hasuratest: no event trigger %q in the metadata", name)
	case 1:
		return found[0], nil
	default:
		return nil, fmt.Errorf("hasuratest: event trigger %q is defined in %d sources", name, len(found))
	}
}

// ---- helpers for consistency tests ----

// Arg is one argument of an action.
type Arg struct {
	Name     string
	Type     string // GraphQL type as written, e.g. "uuid!"
	Required bool   // non-null without a default
}

// ActionInfo summarises an action.
type ActionInfo struct {
	Name        string
	Kind        string
	Type        string
	HandlerPath string // the handler after its leading {{ENV}} template, e.g. "/actions/createTenant"
	Arguments   []Arg
	OutputType  string
	Roles       []string
}

// ListActions returns every action, in the order of actions.yaml.
func (m *Metadata) ListActions() []ActionInfo {
	out := make([]ActionInfo, 0, len(m.Actions))
	for _, a := range m.Actions {
		info := ActionInfo{
			Name: a.Name, Kind: a.Kind, Type: a.Type, HandlerPath: urlPath(a.Handler),
			OutputType: a.Field.Type.String(), Roles: slices.Clone(a.Roles),
		}
		for _, arg := range a.Field.Arguments {
			info.Arguments = append(info.Arguments, Arg{
				Name: arg.Name, Type: arg.Type.String(), Required: arg.Type.NonNull && arg.DefaultValue == nil,
			})
		}
		out = append(out, info)
	}
	return out
}

// TriggerInfo summarises an event trigger.
type TriggerInfo struct {
	Name           string
	Source         string
	Schema         string
	Table          string
	WebhookPath    string // the webhook after its leading {{ENV}} template; "" for webhook_from_env
	WebhookFromEnv string
	Ops            []string            // of INSERT, UPDATE, DELETE, MANUAL, in that order
	Columns        map[string][]string // op → listened columns (["*"] for all); no entry for MANUAL
	Payload        map[string][]string // op → delivered columns (["*"] for all)
	Headers        []Header
	Retry          RetryConf
}

// ListEventTriggers returns every event trigger of every table of every source.
func (m *Metadata) ListEventTriggers() []TriggerInfo {
	var out []TriggerInfo
	for _, s := range m.Sources {
		for _, t := range s.Tables {
			for _, et := range t.EventTriggers {
				info := TriggerInfo{
					Name: et.Name, Source: et.Source, Schema: et.Schema, Table: et.Table,
					WebhookFromEnv: et.WebhookFromEnv,
					Columns:        map[string][]string{}, Payload: map[string][]string{},
					Headers: slices.Clone(et.Headers), Retry: et.Retry,
				}
				if et.Webhook != "" {
					info.WebhookPath = urlPath(et.Webhook)
				}
				for _, o := range []struct {
					op   string
					spec *OperationSpec
				}{{"INSERT", et.Insert}, {"UPDATE", et.Update}, {"DELETE", et.Delete}} {
					if o.spec != nil {
						info.Ops = append(info.Ops, o.op)
						info.Columns[o.op] = o.spec.Columns.List()
						info.Payload[o.op] = o.spec.Payload.List()
					}
				}
				if et.EnableManual {
					info.Ops = append(info.Ops, "MANUAL")
				}
				out = append(out, info)
			}
		}
	}
	return out
}

// urlPath returns what follows a leading {{ENV}} template in a handler or webhook, or the path
// (and query) of a literal URL.
func urlPath(s string) string {
	if strings.HasPrefix(s, "{{") {
		if i := strings.Index(s, "}}"); i >= 0 {
			return s[i+2:]
		}
	}
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		return u.RequestURI()
	}
	return s
}

var templateVar = regexp.MustCompile(`\{\{([^{}]*)\}\}`)

// envVarName matches what can be an environment variable, as opposed to a Kriti template
// expression such as {{$body.input}}.
var envVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// EnvVarsReferenced returns, sorted and without duplicates, every environment variable any YAML
// file under the metadata directory refers to: the {{VAR}} templates in any string (Hasura
// interprets them in action handlers, event trigger webhooks and remote schema urls; request and
// response transforms are skipped, their {{…}} are Kriti expressions) and the values of from_env,
// value_from_env, webhook_from_env, url_from_env and any other *_from_env key. Load collects
// them, so every YAML file in the directory must parse.
func (m *Metadata) EnvVarsReferenced() []string { return slices.Clone(m.envVars) }

func (m *Metadata) scanEnv() error {
	set := map[string]bool{}
	err := filepath.WalkDir(m.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			return nil
		}
		v, err := readYAML(p)
		if err != nil {
			return err
		}
		collectEnv(v, "", set)
		return nil
	})
	if err != nil {
		return err
	}
	m.envVars = make([]string, 0, len(set))
	for k := range set {
		m.envVars = append(m.envVars, k)
	}
	sort.Strings(m.envVars)
	return nil
}

func collectEnv(v any, key string, set map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, item := range v {
			if k == "request_transform" || k == "response_transform" {
				continue
			}
			collectEnv(item, k, set)
		}
	case []any:
		for _, item := range v {
			collectEnv(item, key, set)
		}
	case string:
		if key == "from_env" || strings.HasSuffix(key, "_from_env") {
			if v != "" {
				set[v] = true
			}
			return
		}
		for _, sm := range templateVar.FindAllStringSubmatch(v, -1) {
			if envVarName.MatchString(sm[1]) {
				set[sm[1]] = true
			}
		}
	}
}
