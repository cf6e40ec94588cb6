// Package hasurarules writes the Hasura metadata of tenantkit's tenant tables: the `user` role's
// permission rules and the relationships they need, generated from the one role table
// (tenantkit.RolePermissions), so that Hasura's rules mirror the RLS policies of the migrations
// (the walls test in internal/postgres proves them equal). `make generate` runs it; the files it
// writes under hasura/metadata/databases/default/tables are committed, and `make check-generate`
// and TestGeneratedMetadataIsCurrent fail when they are stale. Event triggers already in a file are
// kept as they are.
//
// Deliberately not given to Hasura's `user` role: inserting or updating memberships and
// invitations (the team actions do that, with their rules and emails), deleting a tenant (the
// deleteTenant action does: soft deletion, the Stripe cancellation, the restore window), and any
// write on subscriptions, usage, plans, API keys and the audit log (system paths only). A deleted
// tenant is nobody's: every rule that reaches a tenant through its members also requires
// deleted_at to be null. The `api_client`
// role (tokens of POST /auth/token) gets every `user` rule rewritten for the caller's API key
// (apiclient.go).
package hasurarules

//go:generate go run ./generate ../../hasura/metadata/databases/default/tables ../../hasura/tenant_tables.yaml

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/tenantkit/tenantkit"
)

// m is an ordered mapping: the files keep Hasura's key order.
type m = yaml.MapSlice

func kv(pairs ...any) m {
	out := make(m, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, yaml.MapItem{Key: pairs[i], Value: pairs[i+1]})
	}
	return out
}

// rolesFor lists the roles at or above min whose grants cover perm ("" for any member).
func rolesFor(perm string, min tenantkit.Role) []any {
	var out []any
	for _, r := range tenantkit.Roles {
		if !r.AtLeast(min) {
			continue
		}
		if perm == "" || tenantkit.Allows(r, nil, perm) {
			out = append(out, string(r))
		}
	}
	return out
}

// grantKeys are the custom grants that cover perm: "*", perm itself and "resource:*".
func grantKeys(perm string) []any {
	resource, _, _ := strings.Cut(perm, ":")
	return []any{"*", perm, resource + ":*"}
}

// me is "this membership row is the caller's".
func me() m { return kv("user_id", kv("_eq", "X-Hasura-User-Id")) }

// memberCond: a membership row of the caller allowing perm ("" for any) with role ≥ min, by role
// or by custom grants (as tenantkit.allows in SQL).
func memberCond(perm string, min tenantkit.Role) m {
	c := []any{me()}
	if perm == "" {
		if min != tenantkit.Guest {
			c = append(c, kv("role", kv("_in", rolesFor("", min))))
		}
	} else {
		c = append(c, kv("_or", []any{
			kv("role", kv("_in", rolesFor(perm, min))),
			kv("_and", []any{kv("role", kv("_in", rolesFor("", min))), kv("permissions", kv("_has_keys_any", grantKeys(perm)))}),
		}))
	}
	if len(c) == 1 {
		return c[0].(m)
	}
	return kv("_and", c)
}

// live is "the tenant is not deleted": a deleted tenant (tenants.deleted_at set) is nobody's, as
// tenantkit.caller_memberships has it for RLS.
func live() m { return kv("deleted_at", kv("_is_null", true)) }

// ownTenant, on the tenants table itself: not deleted, and a membership of the caller allowing
// perm with role ≥ min.
func ownTenantMin(perm string, min tenantkit.Role) m {
	return kv("_and", []any{live(), kv("members", memberCond(perm, min))})
}

func ownTenant(perm string) m { return ownTenantMin(perm, tenantkit.Guest) }

// viaTenant: the row's tenant (through relationship rel) is not deleted and has such a membership.
func viaTenant(perm string, min tenantkit.Role, rel string) m {
	return kv(rel, ownTenantMin(perm, min))
}

// leaving is a member's own membership row of a live tenant (a member may always leave).
func leaving() m { return kv("_and", []any{me(), kv("tenant", live())}) }

// manageable: the row's role r is at most the caller's own, and the caller holds perm.
func manageable(perm string) m {
	var or []any
	for _, r := range tenantkit.Roles {
		or = append(or, kv("_and", []any{kv("role", kv("_eq", string(r))), viaTenant(perm, r, "tenant")}))
	}
	return kv("_or", or)
}

func table(name string) m { return kv("name", name, "schema", "public") }

func strs(s ...string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

var tenantRel = kv("name", "tenant", "using", kv("foreign_key_constraint_on", "tenant_id"))

func userRule(permission m) []any { return []any{kv("role", "user", "permission", permission)} }

// File is one generated metadata file.
type File struct {
	Name string // e.g. public_projects.yaml
	Doc  yaml.MapSlice
}

// Files returns the metadata of every built-in tenant table, as Hasura reads it: the `user` role's
// rules and, derived from them, the `api_client` role's.
func Files() []File {
	files := builtinFiles()
	for i, f := range files {
		files[i].Doc = withAPIClient(strings.TrimSuffix(strings.TrimPrefix(f.Name, "public_"), ".yaml"), f.Doc)
	}
	return files
}

func builtinFiles() []File {
	fk := func(name, tbl string) m {
		return kv("name", name, "using", kv("foreign_key_constraint_on", kv("column", "tenant_id", "table", table(tbl))))
	}
	return []File{
		{"public_tenants.yaml", kv(
			"table", table("tenants"),
			"object_relationships", []any{kv("name", "subscription", "using", kv("manual_configuration",
				kv("remote_table", table("tenant_subscriptions"), "column_mapping", kv("id", "tenant_id"))))},
			"array_relationships", []any{fk("members", "tenant_users"), fk("invitations", "tenant_invitations"),
				fk("projects", "projects"), fk("audit_log", "audit_log"), fk("usage", "billing_usage"), fk("api_keys", "api_keys")},
			"select_permissions", userRule(kv("columns", strs("id", "slug", "name", "settings", "created_at", "updated_at"),
				"filter", ownTenant(""))),
			"update_permissions", userRule(kv("columns", strs("name", "settings"),
				"filter", ownTenant("settings:write"), "check", ownTenant("settings:write"))),
		)},
		{"public_tenant_users.yaml", kv(
			"table", table("tenant_users"),
			"object_relationships", []any{tenantRel},
			"select_permissions", userRule(kv("columns", strs("tenant_id", "user_id", "role", "permissions", "invited_by", "joined_at"),
				"filter", viaTenant("", tenantkit.Guest, "tenant"))),
			"delete_permissions", userRule(kv("filter", kv("_or", []any{leaving(), manageable("users:write")}))),
		)},
		{"public_tenant_invitations.yaml", kv(
			"table", table("tenant_invitations"),
			"object_relationships", []any{tenantRel},
			"select_permissions", userRule(kv("columns", strs("id", "tenant_id", "email", "role", "invited_by", "status",
				"expires_at", "accepted_by", "accepted_at", "created_at", "updated_at"),
				"filter", viaTenant("users:invite", tenantkit.Guest, "tenant"))),
			"delete_permissions", userRule(kv("filter", manageable("users:invite"))),
		)},
		{"public_projects.yaml", kv(
			"table", table("projects"),
			"object_relationships", []any{tenantRel},
			"select_permissions", userRule(kv("columns", strs("id", "tenant_id", "name", "description", "owner_id", "settings",
				"created_at", "updated_at"), "filter", viaTenant("projects:read", tenantkit.Guest, "tenant"))),
			"insert_permissions", userRule(kv("columns", strs("tenant_id", "name", "description", "settings"),
				"set", kv("owner_id", "X-Hasura-User-Id"),
				"check", kv("_and", []any{viaTenant("projects:write", tenantkit.Guest, "tenant"), kv("owner_id", kv("_eq", "X-Hasura-User-Id"))}))),
			"update_permissions", userRule(kv("columns", strs("name", "description", "settings"),
				"filter", viaTenant("projects:write", tenantkit.Guest, "tenant"),
				"check", viaTenant("projects:write", tenantkit.Guest, "tenant"))),
			"delete_permissions", userRule(kv("filter", viaTenant("projects:write", tenantkit.Guest, "tenant"))),
		)},
		{"public_tenant_subscriptions.yaml", kv(
			"table", table("tenant_subscriptions"),
			"object_relationships", []any{tenantRel, kv("name", "plan", "using", kv("foreign_key_constraint_on", "plan_id"))},
			"select_permissions", userRule(kv("columns", strs("tenant_id", "plan_id", "status", "trial_ends_at",
				"current_period_start", "current_period_end", "cancel_at_period_end", "cancel_at", "canceled_at"),
				"filter", viaTenant("", tenantkit.Guest, "tenant"))),
		)},
		{"public_billing_usage.yaml", kv(
			"table", table("billing_usage"),
			"object_relationships", []any{tenantRel},
			"select_permissions", userRule(kv("columns", strs("tenant_id", "metric", "period_start", "period_end", "quantity"),
				"filter", viaTenant("", tenantkit.Guest, "tenant"))),
		)},
		{"public_audit_log.yaml", kv(
			"table", table("audit_log"),
			"object_relationships", []any{tenantRel},
			"select_permissions", userRule(kv("columns", strs("id", "tenant_id", "actor_id", "action", "subject", "details", "created_at"),
				"filter", viaTenant("settings:read", tenantkit.Guest, "tenant"))),
		)},
		{"public_subscription_plans.yaml", kv(
			"table", table("subscription_plans"),
			"select_permissions", userRule(kv("columns", strs("id", "key", "name", "description", "unit_amount", "currency",
				"interval", "features", "limits", "sort_order", "per_seat"), "filter", m{})),
		)},
		{"public_api_keys.yaml", kv(
			"table", table("api_keys"),
			"object_relationships", []any{tenantRel, kv("name", "creator", "using", kv("manual_configuration",
				kv("remote_table", table("tenant_users"), "column_mapping", kv("tenant_id", "tenant_id", "created_by", "user_id"))))},
			"select_permissions", userRule(kv("columns", strs("id", "tenant_id", "name", "prefix", "scopes", "created_by",
				"created_at", "expires_at", "revoked_at", "revoked_by", "last_used_at"),
				"filter", viaTenant("api_keys:manage", tenantkit.Guest, "tenant"))),
		)},
	}
}

// AllFiles returns Files and the files of the scaffolded tables listed in specPath.
func AllFiles(specPath string) ([]File, error) {
	list, err := LoadScaffolded(specPath)
	if err != nil {
		return nil, err
	}
	files := Files()
	for _, s := range list {
		files = append(files, s.File())
	}
	return files, nil
}

// Render returns the file's content: doc, followed by the event triggers of the file as it is in
// dir (those are written by hand).
func Render(dir string, f File) ([]byte, error) {
	doc := slices.Clone(f.Doc)
	old, err := os.ReadFile(filepath.Join(dir, f.Name))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if len(old) > 0 {
		var prev yaml.MapSlice
		if err := yaml.UnmarshalWithOptions(old, &prev, yaml.UseOrderedMap()); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		for _, item := range prev {
			if item.Key == "event_triggers" {
				doc = append(doc, item)
			}
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf, yaml.Indent(2), yaml.IndentSequence(false), yaml.UseSingleQuote(true))
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
