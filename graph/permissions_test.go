package graph_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

// adminOnly is what Hasura's remote-schema permissions hide from role user.
var adminOnly = map[string]bool{"Query.saasMetrics": true, "SaasMetrics": true, "MoneyAmount": true}

// TestRemoteSchemaPermissions: the schema role user sees through Hasura (remote_schemas.yaml) is
// the served schema (every graph/*.graphqls) minus the platform-admin parts, field for field and
// argument for argument.
func TestRemoteSchemaPermissions(t *testing.T) {
	files, err := filepath.Glob("*.graphqls")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema files: %v", err)
	}
	var served []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		served = append(append(served, b...), '\n')
	}
	raw, err := os.ReadFile("../hasura/metadata/remote_schemas.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var remotes []struct {
		Name        string
		Permissions []struct {
			Role       string
			Definition struct{ Schema string }
		}
	}
	if err := yaml.Unmarshal(raw, &remotes); err != nil {
		t.Fatal(err)
	}
	var userSDL string
	for _, r := range remotes {
		for _, p := range r.Permissions {
			if r.Name == "tenantkit" && p.Role == "user" {
				userSDL = p.Definition.Schema
			}
		}
	}
	if userSDL == "" {
		t.Fatal("remote_schemas.yaml gives role user no permission on the tenantkit remote schema")
	}
	full := shape(t, "graph/*.graphqls", string(served), true)
	user := shape(t, "remote_schemas.yaml (user)", userSDL, false)
	if !slices.Equal(full, user) {
		t.Errorf("role user's schema differs from the served one minus %v:\nserved: %v\nuser:   %v", adminOnly, full, user)
	}
	if slices.ContainsFunc(user, func(s string) bool { return strings.Contains(s, "saasMetrics") }) {
		t.Error("role user can see saasMetrics")
	}
}

// shape lists the object types' fields with their arguments (minus admin-only parts when asked).
func shape(t *testing.T, name, sdl string, dropAdmin bool) []string {
	t.Helper()
	doc, err := gqlparser.LoadSchema(&ast.Source{Name: name, Input: sdl})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out []string
	for _, def := range doc.Types {
		if def.BuiltIn || (dropAdmin && adminOnly[def.Name]) {
			continue
		}
		if def.Kind == ast.Scalar {
			out = append(out, "scalar "+def.Name)
		}
		for _, f := range def.Fields {
			if strings.HasPrefix(f.Name, "__") || (dropAdmin && adminOnly[def.Name+"."+f.Name]) {
				continue
			}
			var args []string
			for _, a := range f.Arguments {
				args = append(args, a.Name+":"+a.Type.String())
			}
			out = append(out, def.Name+"."+f.Name+"("+strings.Join(args, ",")+"):"+f.Type.String())
		}
	}
	slices.Sort(out)
	return out
}
