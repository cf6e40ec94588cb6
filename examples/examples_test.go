package examples

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vektah/gqlparser/v2"
	gqlast "github.com/vektah/gqlparser/v2/ast"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// example is one .graphql file: its role (the directory under examples/, user at the top) and text.
type example struct {
	path, role, text string
}

// readExamples lists the examples: *.graphql here for role user, <role>/*.graphql for another role.
func readExamples(t *testing.T) []example {
	t.Helper()
	var out []example
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".graphql" {
			return err
		}
		role := "user"
		if dir := filepath.Dir(path); dir != "." {
			role = filepath.ToSlash(dir)
		}
		b, err := os.ReadFile(path)
		out = append(out, example{path: path, role: role, text: string(b)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no examples")
	}
	return out
}

// schemas builds the schema Hasura would expose to each role, from the repository's metadata and a
// migrated database.
func schemas(t *testing.T, meta *hasuratest.Metadata, roles []string) map[string]*gqlast.Schema {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cat, err := hasuratest.LoadDBCatalog(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*gqlast.Schema{}
	for _, role := range roles {
		if out[role], err = meta.Schema(role, cat); err != nil {
			t.Fatalf("role %s: %v", role, err)
		}
	}
	return out
}

// TestExamples: every example is one operation, named after its file, that Hasura would accept
// from its role; and every action and remote-schema field a role may use has an example.
func TestExamples(t *testing.T) {
	t.Parallel()
	meta, err := hasuratest.Load("../hasura/metadata")
	if err != nil {
		t.Fatal(err)
	}
	examples := readExamples(t)
	roles := []string{}
	for _, e := range examples {
		if !slices.Contains(roles, e.role) {
			roles = append(roles, e.role)
		}
	}
	// every role with an action or a remote schema permission needs examples too
	for _, a := range meta.Actions {
		for _, r := range a.Roles {
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
	}
	sort.Strings(roles)
	schema := schemas(t, meta, roles)

	used := map[string]map[string]bool{} // role → root fields the examples use
	for _, e := range examples {
		doc, errs := gqlparser.LoadQueryWithRules(schema[e.role], e.text, nil)
		if len(errs) > 0 {
			t.Errorf("%s (role %s): Hasura would refuse it:\n%s", e.path, e.role, errs.Error())
			continue
		}
		base := strings.TrimSuffix(filepath.Base(e.path), ".graphql")
		want := string(unicode.ToUpper(rune(base[0]))) + base[1:]
		if len(doc.Operations) != 1 || doc.Operations[0].Name != want {
			t.Errorf("%s: want exactly one operation, named %s (the file's name, capitalised)", e.path, want)
			continue
		}
		if used[e.role] == nil {
			used[e.role] = map[string]bool{}
		}
		for _, s := range doc.Operations[0].SelectionSet {
			if f, ok := s.(*gqlast.Field); ok {
				used[e.role][f.Name] = true
			}
		}
	}

	for _, a := range meta.Actions {
		for _, role := range a.Roles {
			if !used[role][a.Name] {
				t.Errorf("action %s (role %s) has no example: add examples/%s%s.graphql", a.Name, role, dirOf(role), a.Name)
			}
		}
	}
	for _, rs := range meta.RemoteSchemas {
		for role, sdl := range rs.Permissions {
			s, err := gqlparser.LoadSchema(&gqlast.Source{Input: sdl})
			if err != nil {
				t.Fatalf("remote schema %s, role %s: %v", rs.Name, role, err)
			}
			for _, root := range []*gqlast.Definition{s.Query, s.Mutation} {
				if root == nil {
					continue
				}
				for _, f := range root.Fields {
					if !strings.HasPrefix(f.Name, "__") && !used[role][f.Name] {
						t.Errorf("remote schema field %s (role %s) has no example: add examples/%s%s.graphql", f.Name, role, dirOf(role), f.Name)
					}
				}
			}
		}
	}
}

func dirOf(role string) string {
	if role == "user" {
		return ""
	}
	return role + "/"
}

// TestOperation: Operation serves the files the test validates, and panics on a name that is not
// one.
func TestOperation(t *testing.T) {
	for _, e := range readExamples(t) {
		name := strings.TrimSuffix(filepath.ToSlash(e.path), ".graphql")
		if got := Operation(name); got != e.text {
			t.Errorf("Operation(%q) is not %s", name, e.path)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Operation of a missing file did not panic")
		}
	}()
	Operation("noSuchOperation")
}
