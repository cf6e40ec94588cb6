package actions_test

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	gqlast "github.com/vektah/gqlparser/v2/ast"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/actions"
	"github.com/tenantkit/tenantkit/internal/hasuratest"
)

// TestMetadataMatchesHandlers: every action and event trigger in hasura/metadata has a handler
// here and the other way round, with the same arguments and output fields (names and types, see
// checkType), the handler path Hasura will call, the shared-secret header, and a permission for
// role user.
func TestMetadataMatchesHandlers(t *testing.T) {
	meta, err := hasuratest.Load("../hasura/metadata")
	if err != nil {
		t.Fatal(err)
	}
	h := &actions.Handler{}
	sigs := h.Signatures()
	seen := map[string]bool{}
	for _, a := range meta.ListActions() {
		seen[a.Name] = true
		sig, ok := sigs[a.Name]
		if !ok {
			t.Errorf("action %s is in the metadata but has no handler", a.Name)
			continue
		}
		if a.HandlerPath != "/actions/"+a.Name {
			t.Errorf("action %s: handler path %q, want /actions/%s", a.Name, a.HandlerPath, a.Name)
		}
		field := meta.Action(a.Name).Field
		args := gqlast.FieldList{}
		for _, arg := range field.Arguments {
			args = append(args, &gqlast.FieldDefinition{Name: arg.Name, Type: arg.Type})
		}
		for _, p := range checkFields(a.Name+" input", args, sig.Input, meta.Types, false) {
			t.Errorf("action %s: %s", a.Name, p)
		}
		for _, p := range checkType(a.Name+" output", field.Type, sig.Output, meta.Types, true) {
			t.Errorf("action %s: %s", a.Name, p)
		}
		role := "user"
		if a.Name == "recordUsage" {
			role = "service" // trusted backends only
		}
		if !slices.Equal(a.Roles, []string{role}) {
			t.Errorf("action %s: permissions for %v, want only %s", a.Name, a.Roles, role)
		}
	}
	for name := range sigs {
		if !seen[name] {
			t.Errorf("handler for action %s has no metadata entry", name)
		}
	}

	triggers := h.Triggers()
	found := map[string]bool{}
	for _, tr := range meta.ListEventTriggers() {
		found[tr.Name] = true
		table, ok := triggers[tr.Name]
		if !ok {
			t.Errorf("event trigger %s is in the metadata but has no handler", tr.Name)
			continue
		}
		if tr.WebhookPath != "/events/"+tr.Name || table != tr.Schema+"."+tr.Table {
			t.Errorf("event trigger %s: webhook %q on %s.%s, handler expects /events/%s on %s", tr.Name, tr.WebhookPath, tr.Schema, tr.Table, tr.Name, table)
		}
		if !slices.ContainsFunc(tr.Headers, func(hd hasuratest.Header) bool {
			return hd.Name == "X-Tenantkit-Secret" && hd.ValueFromEnv == "TENANTKIT_SECRET"
		}) {
			t.Errorf("event trigger %s does not send X-Tenantkit-Secret from TENANTKIT_SECRET", tr.Name)
		}
	}
	for name := range triggers {
		if !found[name] {
			t.Errorf("handler for trigger %s has no metadata entry", name)
		}
	}
	if len(seen) < 9 || len(found) < 1 {
		t.Fatalf("metadata lists %d actions and %d triggers: too few to be the real metadata", len(seen), len(found))
	}
}

// TestMetadataEnvironment: every environment variable the metadata refers to is given to Hasura in
// docker-compose.yml and documented in the README.
func TestMetadataEnvironment(t *testing.T) {
	meta, err := hasuratest.Load("../hasura/metadata")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	vars := meta.EnvVarsReferenced()
	if len(vars) < 4 {
		t.Fatalf("metadata refers to only %v", vars)
	}
	for _, v := range vars {
		if _, ok := compose.Services["hasura"].Environment[v]; !ok {
			t.Errorf("metadata uses %s but docker-compose.yml does not give it to the hasura service", v)
		}
		if !strings.Contains(string(readme), "`"+v+"`") {
			t.Errorf("metadata uses %s but the README does not document it", v)
		}
	}
}

// checkType lists where the Go type goT cannot carry GraphQL type gt of actions.graphql: in an
// output (what the handler answers), a non-null field must never encode as null or be left out; in
// an input (what it decodes), a nullable argument must decode to a pointer or slice so that
// "absent" stays visible. Scalars map as Hasura encodes them (uuid, timestamptz: strings on the
// wire; timestamptz may decode to time.Time), except that a uuid input must decode into a
// tenantkit.ID, so that every id reaches the services in its one canonical spelling.
func checkType(path string, gt *gqlast.Type, goT reflect.Type, types map[string]*gqlast.Definition, output bool) []string {
	if goT.Kind() == reflect.Pointer {
		if output && gt.NonNull {
			return []string{path + ": non-null " + gt.String() + " is the pointer " + goT.String() + ", which may encode as null"}
		}
		goT = goT.Elem()
	} else if !output && !gt.NonNull && goT.Kind() != reflect.Slice {
		return []string{path + ": nullable " + gt.String() + " decodes into " + goT.String() + "; use a pointer"}
	}
	if gt.Elem != nil {
		if goT.Kind() != reflect.Slice {
			return []string{fmt.Sprintf("%s: list %s is %s", path, gt, goT)}
		}
		return checkType(path+"[]", gt.Elem, goT.Elem(), types, output)
	}
	kind := goT.Kind()
	ok := false
	switch gt.NamedType {
	case "uuid":
		if !output {
			if goT != reflect.TypeFor[tenantkit.ID]() {
				return []string{fmt.Sprintf("%s: uuid argument decodes into %s; use tenantkit.ID (canonical ids)", path, goT)}
			}
			return nil
		}
		ok = kind == reflect.String
	case "String", "ID":
		ok = kind == reflect.String
	case "timestamptz":
		ok = goT == reflect.TypeFor[time.Time]() || kind == reflect.String
	case "Boolean":
		ok = kind == reflect.Bool
	case "Int":
		ok = kind >= reflect.Int && kind <= reflect.Int64
	case "Float":
		ok = kind == reflect.Float64 || kind == reflect.Float32
	default:
		def, known := types[gt.NamedType]
		switch {
		case !known:
			return []string{path + ": type " + gt.NamedType + " is not defined in actions.graphql and not a known scalar"}
		case def.Kind == gqlast.Enum || def.Kind == gqlast.Scalar:
			ok = kind == reflect.String
		case kind == reflect.Struct:
			return checkFields(path, def.Fields, goT, types, output)
		}
	}
	if !ok {
		return []string{fmt.Sprintf("%s: %s is %s", path, gt, goT)}
	}
	return nil
}

// checkFields compares a GraphQL object's (or an argument list's) fields with the JSON fields of
// the struct goT, by name and by checkType.
func checkFields(path string, fields gqlast.FieldList, goT reflect.Type, types map[string]*gqlast.Definition, output bool) []string {
	if goT.Kind() != reflect.Struct {
		return []string{path + " is " + goT.String() + ", want a struct"}
	}
	var problems []string
	goFields := map[string]reflect.StructField{}
	for f := range goT.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			problems = append(problems, path+"."+f.Name+": no json tag")
			continue
		}
		if output && strings.Contains(opts, "omitempty") {
			problems = append(problems, path+"."+name+": omitempty may leave the field out")
		}
		goFields[name] = f
	}
	for _, fd := range fields {
		f, ok := goFields[fd.Name]
		if !ok {
			problems = append(problems, path+"."+fd.Name+": declared in actions.graphql, missing from "+goT.String())
			continue
		}
		delete(goFields, fd.Name)
		problems = append(problems, checkType(path+"."+fd.Name, fd.Type, f.Type, types, output)...)
	}
	for name := range goFields {
		problems = append(problems, path+"."+name+": in "+goT.String()+" but not declared in actions.graphql")
	}
	slices.Sort(problems)
	return problems
}

// TestCheckTypeCatchesMismatches: the type comparison above finds each kind of disagreement.
func TestCheckTypeCatchesMismatches(t *testing.T) {
	meta, err := hasuratest.Load("../hasura/metadata")
	if err != nil {
		t.Fatal(err)
	}
	out := meta.Types["TransferOwnershipOutput"]
	in := meta.Types["UsageEventInput"]
	if out == nil || in == nil {
		t.Fatal("actions.graphql lacks TransferOwnershipOutput or UsageEventInput")
	}
	type good struct {
		TenantID        string `json:"tenantId"`
		OwnerID         string `json:"ownerId"`
		PreviousOwnerID string `json:"previousOwnerId"`
	}
	if p := checkFields("ok", out.Fields, reflect.TypeFor[good](), meta.Types, true); len(p) != 0 {
		t.Fatalf("a matching struct was refused: %v", p)
	}
	cases := map[string]struct {
		typ    reflect.Type
		fields gqlast.FieldList
		output bool
	}{
		"field missing": {reflect.TypeFor[struct {
			TenantID string `json:"tenantId"`
			OwnerID  string `json:"ownerId"`
		}](), out.Fields, true},
		"extra field": {reflect.TypeFor[struct {
			good
			Extra string `json:"extra"`
		}](), out.Fields, true},
		"wrong scalar": {reflect.TypeFor[struct {
			TenantID        int    `json:"tenantId"`
			OwnerID         string `json:"ownerId"`
			PreviousOwnerID string `json:"previousOwnerId"`
		}](), out.Fields, true},
		"nullable pointer for non-null": {reflect.TypeFor[struct {
			TenantID        *string `json:"tenantId"`
			OwnerID         string  `json:"ownerId"`
			PreviousOwnerID string  `json:"previousOwnerId"`
		}](), out.Fields, true},
		"omitempty": {reflect.TypeFor[struct {
			TenantID        string `json:"tenantId,omitempty"`
			OwnerID         string `json:"ownerId"`
			PreviousOwnerID string `json:"previousOwnerId"`
		}](), out.Fields, true},
		"nullable input into a value": {reflect.TypeFor[struct {
			TenantID       tenantkit.ID `json:"tenantId"`
			Metric         string       `json:"metric"`
			Quantity       float64      `json:"quantity"`
			IdempotencyKey string       `json:"idempotencyKey"`
			OccurredAt     time.Time    `json:"occurredAt"`
		}](), in.Fields, false},
		"uuid argument as a plain string": {reflect.TypeFor[struct {
			TenantID       string     `json:"tenantId"`
			Metric         string     `json:"metric"`
			Quantity       float64    `json:"quantity"`
			IdempotencyKey string     `json:"idempotencyKey"`
			OccurredAt     *time.Time `json:"occurredAt"`
		}](), in.Fields, false},
		"float as int": {reflect.TypeFor[struct {
			TenantID       tenantkit.ID `json:"tenantId"`
			Metric         string       `json:"metric"`
			Quantity       int          `json:"quantity"`
			IdempotencyKey string       `json:"idempotencyKey"`
			OccurredAt     *time.Time   `json:"occurredAt"`
		}](), in.Fields, false},
	}
	for name, c := range cases {
		if p := checkFields(name, c.fields, c.typ, meta.Types, c.output); len(p) == 0 {
			t.Errorf("%s: not caught", name)
		}
	}
}
