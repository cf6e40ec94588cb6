package tenantkit

import (
	"regexp"
	"slices"
	"strings"
)

// Role is a member's role in a tenant. Roles are ordered: guest < member < admin < owner.
type Role string

// The tenant roles, from least to most.
const (
	Guest  Role = "guest"
	Member Role = "member"
	Admin  Role = "admin"
	Owner  Role = "owner"
)

// Roles lists every role from least to most.
var Roles = []Role{Guest, Member, Admin, Owner}

// RolePermissions is what each role grants. "resource:*" grants every action on the resource and
// "*" grants everything. The database has the same table (tenantkit.role_grants); a test keeps the
// two equal. Admins manage billing too ("billing:*") and the tenant's API keys ("api_keys:manage");
// deleting a tenant ("tenants:delete") and managing owners are left to owners.
var RolePermissions = map[Role][]string{
	Owner:  {"*"},
	Admin:  {"users:*", "projects:*", "settings:read", "settings:write", "billing:*", "api_keys:manage"},
	Member: {"projects:read", "projects:write"},
	Guest:  {"projects:read"},
}

// Valid reports whether r is one of the four roles.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// AtLeast reports whether r ranks at or above o. An invalid role ranks with nothing.
func (r Role) AtLeast(o Role) bool {
	i, j := slices.Index(Roles, r), slices.Index(Roles, o)
	return i >= 0 && j >= 0 && i >= j
}

var permissionPattern = regexp.MustCompile(`^(\*|[a-z][a-z0-9_]{0,62}:(\*|[a-z][a-z0-9_]{0,62}))$`)

// ValidPermission reports whether p is a well-formed permission or grant: "*", "resource:*" or
// "resource:action" in lowercase letters, digits and underscores.
func ValidPermission(p string) bool { return permissionPattern.MatchString(p) }

// GrantMatches reports whether grant g covers permission p. "users:*" covers "users:invite" but not
// "users" nor "usersettings:read" (the guide's prefix test matched those).
func GrantMatches(g, p string) bool {
	if g == "*" || g == p {
		return true
	}
	prefix, ok := strings.CutSuffix(g, "*")
	return ok && strings.HasSuffix(prefix, ":") && len(p) > len(prefix) && strings.HasPrefix(p, prefix)
}

// Allows reports whether a member with role r and the custom grants allows permission p.
func Allows(r Role, custom []string, p string) bool {
	for _, g := range RolePermissions[r] {
		if GrantMatches(g, p) {
			return true
		}
	}
	for _, g := range custom {
		if GrantMatches(g, p) {
			return true
		}
	}
	return false
}
