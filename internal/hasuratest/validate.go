package hasuratest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	gqlast "github.com/vektah/gqlparser/v2/ast"
)

// coerceArguments checks the input of an action call against the action's arguments in
// actions.graphql, as Hasura's GraphQL validation would, and returns the JSON object Hasura
// would send as "input": the given arguments (an explicit null stays null), omitted optional
// arguments absent (Hasura.GraphQL.Schema.Action.actionInputArguments drops them).
func (m *Metadata) coerceArguments(a *Action, input map[string]any) (map[string]any, error) {
	norm, err := normaliseRow(input)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	var unknown []string
	for k := range norm {
		if a.Field.Arguments.ForName(k) == nil {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, rejected("action %s has no argument %s (declared: %s)", a.Name, strings.Join(unknown, ", "), argNames(a))
	}
	for _, arg := range a.Field.Arguments {
		v, ok := norm[arg.Name]
		if !ok {
			if arg.Type.NonNull {
				return nil, rejected("action %s: missing required argument %s: %s", a.Name, arg.Name, arg.Type.String())
			}
			continue
		}
		cv, err := m.coerceValue(a.Name+"."+arg.Name, arg.Type, v)
		if err != nil {
			return nil, err
		}
		out[arg.Name] = cv
	}
	return out, nil
}

func argNames(a *Action) string {
	var names []string
	for _, arg := range a.Field.Arguments {
		names = append(names, arg.Name+": "+arg.Type.String())
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// coerceValue checks one input value against a GraphQL input type. Built-in scalars are checked
// as GraphQL does (Int is a 32-bit integer; an ID may be given as an integer and is sent as a
// string); enums must name a declared value; input objects may hold only declared fields and
// must hold their non-null ones; names that are neither built in nor defined in actions.graphql
// are Postgres or custom scalars and take any JSON value.
func (m *Metadata) coerceValue(path string, t *gqlast.Type, v any) (any, error) {
	if v == nil {
		if t.NonNull {
			return nil, rejected("%s: null for non-null type %s", path, t.String())
		}
		return nil, nil
	}
	if t.Elem != nil {
		list, ok := v.([]any)
		if !ok {
			return nil, rejected("%s: %s expects a list, got %s", path, t.String(), jsonText(v))
		}
		out := make([]any, len(list))
		for i, item := range list {
			cv, err := m.coerceValue(fmt.Sprintf("%s[%d]", path, i), t.Elem, item)
			if err != nil {
				return nil, err
			}
			out[i] = cv
		}
		return out, nil
	}
	name := t.NamedType
	switch name {
	case "String":
		if _, ok := v.(string); !ok {
			return nil, rejected("%s: String expected, got %s", path, jsonText(v))
		}
		return v, nil
	case "Boolean":
		if _, ok := v.(bool); !ok {
			return nil, rejected("%s: Boolean expected, got %s", path, jsonText(v))
		}
		return v, nil
	case "Int":
		n, ok := v.(json.Number)
		if !ok {
			return nil, rejected("%s: Int expected, got %s", path, jsonText(v))
		}
		i, err := n.Int64()
		if err != nil || i < math.MinInt32 || i > math.MaxInt32 {
			return nil, rejected("%s: Int (32-bit integer) expected, got %s", path, n)
		}
		return n, nil
	case "Float":
		n, ok := v.(json.Number)
		if !ok {
			return nil, rejected("%s: Float expected, got %s", path, jsonText(v))
		}
		return n, nil
	case "ID":
		switch v := v.(type) {
		case string:
			return v, nil
		case json.Number:
			if _, err := v.Int64(); err != nil {
				return nil, rejected("%s: ID expected, got %s", path, v)
			}
			return v.String(), nil
		}
		return nil, rejected("%s: ID expected, got %s", path, jsonText(v))
	}
	def := m.Types[name]
	if def == nil || def.Kind == gqlast.Scalar {
		return v, nil
	}
	switch def.Kind {
	case gqlast.Enum:
		s, ok := v.(string)
		if !ok || def.EnumValues.ForName(s) == nil {
			var vals []string
			for _, ev := range def.EnumValues {
				vals = append(vals, ev.Name)
			}
			return nil, rejected("%s: %s expects one of %s, got %s", path, name, strings.Join(vals, ", "), jsonText(v))
		}
		return s, nil
	case gqlast.InputObject:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, rejected("%s: input object %s expected, got %s", path, name, jsonText(v))
		}
		var unknown []string
		for k := range obj {
			if def.Fields.ForName(k) == nil {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return nil, rejected("%s: input %s has no field %s", path, name, strings.Join(unknown, ", "))
		}
		out := make(map[string]any, len(obj))
		for _, f := range def.Fields {
			fv, ok := obj[f.Name]
			if !ok {
				if f.Type.NonNull {
					return nil, rejected("%s: input %s: missing required field %s: %s", path, name, f.Name, f.Type.String())
				}
				continue
			}
			cv, err := m.coerceValue(path+"."+f.Name, f.Type, fv)
			if err != nil {
				return nil, err
			}
			out[f.Name] = cv
		}
		return out, nil
	default:
		return nil, rejected("%s: %s is an output type", path, name)
	}
}

func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(b.String())
}
