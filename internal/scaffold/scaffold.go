// Package scaffold writes what a new tenant-owned table needs (`tenantkit scaffold table`): a
// migration with the table, its tenant key, index and forced RLS built on tenantkit's membership
// helpers (and, optionally, a plan limit on its row count), its entry in hasura/tenant_tables.yaml,
// and its Hasura table metadata with the user role's rules generated from the role table. The
// schema lint and the walls test (Hasura's rules equal RLS) then cover it like the built-in tables.
package scaffold

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"text/template"

	"github.com/goccy/go-yaml"

	"github.com/tenantkit/tenantkit/internal/hasurarules"
)

// TablesDir is where Hasura's table metadata lives, relative to the repository.
const TablesDir = "hasura/metadata/databases/default/tables"

var migrationName = regexp.MustCompile(`^(\d{5})_[a-z0-9_]+\.sql$`)

// Table scaffolds table t in the repository at dir and returns the files it wrote or changed.
// Nothing is written when t is invalid or clashes with a table or metric already scaffolded.
func Table(dir string, t hasurarules.Scaffolded) ([]string, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	specPath := filepath.Join(dir, hasurarules.SpecFile)
	list, err := hasurarules.LoadScaffolded(specPath)
	if err != nil {
		return nil, err
	}
	for _, s := range list {
		if s.Name == t.Name {
			return nil, fmt.Errorf("table %s is already scaffolded (%s)", t.Name, hasurarules.SpecFile)
		}
		if t.Limit != "" && s.Limit == t.Limit {
			return nil, fmt.Errorf("limit metric %s already counts the rows of %s", t.Limit, s.Name)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "migrations"))
	if err != nil {
		return nil, fmt.Errorf("no migrations directory in %s: run scaffold from the repository root or pass --dir", dir)
	}
	next := 1
	for _, e := range entries {
		if m := migrationName.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.Atoi(m[1])
			next = max(next, n+1)
		}
	}
	var sql bytes.Buffer
	if err := migration.Execute(&sql, t); err != nil {
		return nil, err
	}
	migrationPath := filepath.Join(dir, "migrations", fmt.Sprintf("%05d_%s.sql", next, t.Name))

	spec, err := yaml.Marshal(append(slices.Clone(list), t))
	if err != nil {
		return nil, err
	}
	tables := filepath.Join(dir, TablesDir)
	f := t.File()
	meta, err := hasurarules.Render(tables, f)
	if err != nil {
		return nil, err
	}
	header := []byte("# Tenant-owned tables made by `tenantkit scaffold table`; `make generate` writes their Hasura\n" +
		"# metadata from this list and the role table.\n")
	for _, w := range []struct {
		path string
		data []byte
	}{
		{migrationPath, sql.Bytes()},
		{specPath, append(header, spec...)},
		{filepath.Join(tables, f.Name), meta},
	} {
		if err := os.WriteFile(w.path, w.data, 0o644); err != nil {
			return nil, err
		}
	}
	if err := hasurarules.Include(tables, f.Name); err != nil {
		return nil, err
	}
	return []string{migrationPath, specPath, filepath.Join(tables, f.Name), filepath.Join(tables, "tables.yaml")}, nil
}

var migration = template.Must(template.New("migration").Parse(`-- {{.Name}}: a tenant-owned table made by ` + "`tenantkit scaffold table`" + `. Every row belongs to one
-- tenant (tenant_id); RLS is enabled and forced with tenantkit's membership helpers: members whose
-- role or grants allow {{.Read}} read the rows, {{.Write}} create, change and delete them; an API
-- key may do the same when its scopes and its creator's membership allow it.
-- Hasura's rules for the user role are generated from the same role table (hasura/tenant_tables.yaml,
-- make generate). Add your own columns to the table; keep tenant_id, the key and the policies.

-- +goose Up
CREATE TABLE public.{{.Name}} (
  tenant_id  uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
  id         uuid NOT NULL DEFAULT gen_random_uuid(),
  name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX {{.Name}}_tenant_created_idx ON public.{{.Name}} (tenant_id, created_at DESC);
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON public.{{.Name}}
  FOR EACH ROW EXECUTE FUNCTION tenantkit.touch_updated_at();

ALTER TABLE public.{{.Name}} ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.{{.Name}} FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON public.{{.Name}} TO tenantkit_system USING (true) WITH CHECK (true);
CREATE POLICY app_select ON public.{{.Name}} FOR SELECT TO tenantkit_app
  USING (array_position(ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role, c.permissions, '{{.Read}}')), tenant_id) IS NOT NULL);
CREATE POLICY app_insert ON public.{{.Name}} FOR INSERT TO tenantkit_app
  WITH CHECK (array_position(ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role, c.permissions, '{{.Write}}')), tenant_id) IS NOT NULL);
CREATE POLICY app_update ON public.{{.Name}} FOR UPDATE TO tenantkit_app
  USING (array_position(ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role, c.permissions, '{{.Write}}')), tenant_id) IS NOT NULL)
  WITH CHECK (array_position(ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role, c.permissions, '{{.Write}}')), tenant_id) IS NOT NULL);
CREATE POLICY app_delete ON public.{{.Name}} FOR DELETE TO tenantkit_app
  USING (array_position(ARRAY(SELECT c.tenant_id FROM tenantkit.caller_memberships c WHERE tenantkit.allows(c.role, c.permissions, '{{.Write}}')), tenant_id) IS NOT NULL);
-- API clients (tokens of POST /auth/token): the key's scopes and its creator's membership.
CREATE POLICY api_select ON public.{{.Name}} FOR SELECT TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants('{{.Read}}')), tenant_id) IS NOT NULL);
CREATE POLICY api_insert ON public.{{.Name}} FOR INSERT TO tenantkit_app
  WITH CHECK (array_position((SELECT tenantkit.api_key_tenants('{{.Write}}')), tenant_id) IS NOT NULL);
CREATE POLICY api_update ON public.{{.Name}} FOR UPDATE TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants('{{.Write}}')), tenant_id) IS NOT NULL)
  WITH CHECK (array_position((SELECT tenantkit.api_key_tenants('{{.Write}}')), tenant_id) IS NOT NULL);
CREATE POLICY api_delete ON public.{{.Name}} FOR DELETE TO tenantkit_app
  USING (array_position((SELECT tenantkit.api_key_tenants('{{.Write}}')), tenant_id) IS NOT NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.{{.Name}} TO tenantkit_app, tenantkit_system;
{{- if .Limit}}

-- The plan limit "{{.Limit}}" counts the tenant's rows (subscription_plans.limits ->> '{{.Limit}}').
INSERT INTO tenantkit.plan_limited_tables (metric, relation) VALUES ('{{.Limit}}', 'public.{{.Name}}');
CREATE TRIGGER plan_limit AFTER INSERT OR UPDATE OF tenant_id ON public.{{.Name}}
  FOR EACH ROW EXECUTE FUNCTION tenantkit.enforce_plan_limit('{{.Limit}}');
{{- end}}

-- +goose Down
{{- if .Limit}}
DELETE FROM tenantkit.plan_limited_tables WHERE metric = '{{.Limit}}';
{{- end}}
DROP TABLE public.{{.Name}};
`))
