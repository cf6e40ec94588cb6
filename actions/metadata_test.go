package actions_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/tenantkit/tenantkit/actions"
	"github.com/tenantkit/tenantkit/internal/hasuratest"
)

// TestMetadataMatchesHandlers: every action and event trigger in hasura/metadata has a handler
// here and the other way round, with the same argument names, the handler path Hasura will call,
// the shared-secret header, and a permission for role user.
func TestMetadataMatchesHandlers(t *testing.T) {
	meta, err := hasuratest.Load("../hasura/metadata")
	if err != nil {
		t.Fatal(err)
	}
	h := &actions.Handler{}
	inputs := h.Inputs()
	seen := map[string]bool{}
	for _, a := range meta.ListActions() {
		seen[a.Name] = true
		fields, ok := inputs[a.Name]
		if !ok {
			t.Errorf("action %s is in the metadata but has no handler", a.Name)
			continue
		}
		if a.HandlerPath != "/actions/"+a.Name {
			t.Errorf("action %s: handler path %q, want /actions/%s", a.Name, a.HandlerPath, a.Name)
		}
		var args []string
		for _, arg := range a.Arguments {
			args = append(args, arg.Name)
		}
		slices.Sort(args)
		slices.Sort(fields)
		if !slices.Equal(args, fields) {
			t.Errorf("action %s: metadata arguments %v, handler decodes %v", a.Name, args, fields)
		}
		role := "user"
		if a.Name == "recordUsage" {
			role = "service" // trusted backends only
		}
		if !slices.Equal(a.Roles, []string{role}) {
			t.Errorf("action %s: permissions for %v, want only %s", a.Name, a.Roles, role)
		}
	}
	for name := range inputs {
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
