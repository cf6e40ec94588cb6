package hasurarules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/tenantkit/tenantkit"
)

const dir = "../../hasura/metadata/databases/default/tables"

// The committed metadata is what the role table generates: run `make generate` after changing
// either.
func TestGeneratedMetadataIsCurrent(t *testing.T) {
	files, err := AllFiles("../../" + SpecFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		want, err := Render(dir, f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale: run make generate", f.Name)
		}
	}
}

// The rules follow the role table: a grant added to a role reaches the Hasura rules of every
// permission it covers, and no more.
func TestRulesFollowTheRoleTable(t *testing.T) {
	if got := rolesFor("users:invite", tenantkit.Guest); !slices.Equal(got, []any{"admin", "owner"}) {
		t.Errorf("roles for users:invite = %v", got)
	}
	if got := rolesFor("", tenantkit.Admin); !slices.Equal(got, []any{"admin", "owner"}) {
		t.Errorf("roles at least admin = %v", got)
	}
	saved := tenantkit.RolePermissions[tenantkit.Member]
	t.Cleanup(func() { tenantkit.RolePermissions[tenantkit.Member] = saved })
	tenantkit.RolePermissions[tenantkit.Member] = append(slices.Clone(saved), "users:invite")
	if got := rolesFor("users:invite", tenantkit.Guest); !slices.Equal(got, []any{"member", "admin", "owner"}) {
		t.Errorf("with members granted users:invite: %v", got)
	}
	out, err := yaml.MarshalWithOptions(viaTenant("users:invite", tenantkit.Guest, "tenant"))
	if err != nil {
		t.Fatal(err)
	}
	// The first _in is the roles that grant the permission.
	_, after, _ := strings.Cut(string(out), "_in:\n")
	if first, _, _ := strings.Cut(after, "\n"); strings.TrimSpace(first) != "- member" {
		t.Errorf("rule does not follow the role table:\n%s", out)
	}
}

// Event triggers are written by hand and survive generation.
func TestRenderKeepsEventTriggers(t *testing.T) {
	tmp := t.TempDir()
	f := Files()[0]
	hand := "table:\n  name: tenants\n  schema: public\nevent_triggers:\n- name: tenant_created\n  definition:\n    enable_manual: false\n"
	if err := os.WriteFile(filepath.Join(tmp, f.Name), []byte(hand), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := Render(tmp, f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(out), "event_triggers:\n- name: tenant_created\n  definition:\n    enable_manual: false\n") {
		t.Errorf("event triggers lost:\n%s", out)
	}
}
