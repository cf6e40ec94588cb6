package hasurarules

import (
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/goccy/go-yaml"

	"github.com/tenantkit/tenantkit"
)

// SpecFile is where `tenantkit scaffold table` lists the tables it scaffolded, relative to the
// repository; the generator writes their metadata like that of the built-in tables.
const SpecFile = "hasura/tenant_tables.yaml"

// Scaffolded is one tenant-owned table made by `tenantkit scaffold table`: its rows belong to one
// tenant, members allowed Read see them and members allowed Write create, change and delete them.
type Scaffolded struct {
	Name  string `yaml:"name"`
	Read  string `yaml:"read"`
	Write string `yaml:"write"`
	Limit string `yaml:"limit,omitempty"` // the plan limit metric counting its rows, if any
}

var tableName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)

// reserved are the names of tenantkit's own tables and Hasura's.
var reserved = map[string]bool{
	"tenants": true, "tenant_users": true, "tenant_invitations": true, "tenant_subscriptions": true,
	"subscription_plans": true, "billing_usage": true, "projects": true, "audit_log": true, "users": true,
	"goose_db_version": true,
}

// Validate reports what is wrong with s, naming the field.
func (s Scaffolded) Validate() error {
	switch {
	case !tableName.MatchString(s.Name):
		return fmt.Errorf("table name %q: use lowercase letters, digits and underscores, starting with a letter (at most 41)", s.Name)
	case reserved[s.Name] || len(s.Name) > 3 && s.Name[:3] == "pg_":
		return fmt.Errorf("table name %q is taken by tenantkit or PostgreSQL", s.Name)
	case !tenantkit.ValidPermission(s.Read) || s.Read == "*":
		return fmt.Errorf("read permission %q: want resource:action, e.g. projects:read", s.Read)
	case !tenantkit.ValidPermission(s.Write) || s.Write == "*":
		return fmt.Errorf("write permission %q: want resource:action, e.g. projects:write", s.Write)
	case s.Limit != "" && (!tableName.MatchString(s.Limit) || s.Limit == "users" || s.Limit == "projects"):
		return fmt.Errorf("limit metric %q: want a new metric name in lowercase letters, digits and underscores", s.Limit)
	}
	return nil
}

// LoadScaffolded reads the spec file at path; a missing file lists nothing.
func LoadScaffolded(path string) ([]Scaffolded, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []Scaffolded
	if err := yaml.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, s := range list {
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return list, nil
}

// File is the metadata of a scaffolded table: its tenant relationship and the user role's rules,
// built like those of projects (without the owner column), and the api_client role's from them.
func (s Scaffolded) File() File {
	f := s.userFile()
	f.Doc = withAPIClient(s.Name, f.Doc)
	return f
}

func (s Scaffolded) userFile() File {
	read := viaTenant(s.Read, tenantkit.Guest, "tenant")
	write := func() m { return viaTenant(s.Write, tenantkit.Guest, "tenant") }
	return File{"public_" + s.Name + ".yaml", kv(
		"table", table(s.Name),
		"object_relationships", []any{tenantRel},
		"select_permissions", userRule(kv("columns", strs("id", "tenant_id", "name", "created_at", "updated_at"), "filter", read)),
		"insert_permissions", userRule(kv("columns", strs("tenant_id", "name"), "check", write())),
		"update_permissions", userRule(kv("columns", strs("name"), "filter", write(), "check", write())),
		"delete_permissions", userRule(kv("filter", write())),
	)}
}

// Include adds `!include name` to the tables list (tables.yaml in dir) unless it is there, keeping
// the rest of the file as it is.
func Include(dir, name string) error {
	path := dir + "/tables.yaml"
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("- \"!include %s\"\n", name)
	if regexp.MustCompile(`(?m)^- "?!include ` + regexp.QuoteMeta(name) + `"?\s*$`).Match(raw) {
		return nil
	}
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		raw = append(raw, '\n')
	}
	return os.WriteFile(path, append(raw, line...), 0o644)
}
