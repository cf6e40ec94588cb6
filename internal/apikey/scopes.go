package apikey

import (
	"slices"

	"github.com/tenantkit/tenantkit"
)

// MaxScopes bounds a key's scopes (tenantkit.valid_permissions allows 100 grants).
const MaxScopes = 50

// Scopes are the grants a key was created with, in the grammar of the role table ("*",
// "resource:*", "resource:action"). What a key may do at a given moment is the intersection of its
// scopes with what its creator's membership allows at that moment (Effective).

// ValidateScopes checks the scopes of a new key and returns them sorted, without duplicates: one
// to MaxScopes well-formed grants. Errors: invalid.
func ValidateScopes(scopes []string) ([]string, error) {
	if len(scopes) == 0 {
		return nil, tenantkit.Errorf(tenantkit.Invalid, "scopes must name at least one permission, e.g. projects:read")
	}
	out := slices.Clone(scopes)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxScopes {
		return nil, tenantkit.Errorf(tenantkit.Invalid, "a key has at most %d scopes", MaxScopes)
	}
	for _, s := range out {
		if !tenantkit.ValidPermission(s) {
			return nil, tenantkit.Errorf(tenantkit.Invalid, "scope %q is not of the form resource:action, resource:* or *", s)
		}
	}
	return out, nil
}

// Exceeding returns the scopes a member with role and custom grants does not hold (each scope must
// be covered by one of the member's grants: "projects:*" needs "projects:*" or "*", not
// "projects:read"). A key may be created only with none.
func Exceeding(scopes []string, role tenantkit.Role, custom []string) []string {
	var out []string
	for _, s := range scopes {
		if !tenantkit.Allows(role, custom, s) {
			out = append(out, s)
		}
	}
	return out
}

// Allows reports whether a key with scopes, whose creator now has role and custom grants, allows
// permission p: a scope covers p and the creator's grants allow p. An invalid role (the creator
// is no longer a member) allows nothing. This is the rule the database applies to API-client
// sessions (tenantkit.api_key_tenants) and Hasura's api_client permissions encode.
func Allows(scopes []string, role tenantkit.Role, custom []string, p string) bool {
	if !role.Valid() || !tenantkit.Allows(role, custom, p) {
		return false
	}
	for _, s := range scopes {
		if tenantkit.GrantMatches(s, p) {
			return true
		}
	}
	return false
}

// Effective returns what a key with scopes allows now that its creator has role and custom grants,
// as a sorted list of grants: exactly the permissions both a scope and one of the creator's grants
// cover. A scope the creator still holds stays as it is; a wider scope narrows to the creator's
// grants it covers ("projects:*" for a creator who holds projects:read and projects:write gives
// those two). Grants of this grammar are nested or disjoint, so this is the intersection of the two
// sets of permissions, and Allows(scopes, role, custom, p) holds exactly when a grant of the result
// covers p. Empty when the creator is no longer a member or holds none of it.
func Effective(scopes []string, role tenantkit.Role, custom []string) []string {
	if !role.Valid() {
		return []string{}
	}
	grants := append(slices.Clone(tenantkit.RolePermissions[role]), custom...)
	out := []string{}
	for _, s := range scopes {
		if tenantkit.Allows(role, custom, s) {
			out = append(out, s)
			continue
		}
		for _, g := range grants {
			if tenantkit.GrantMatches(s, g) {
				out = append(out, g)
			}
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	// drop grants another grant of the list covers ("projects:read" next to "projects:*")
	all := slices.Clone(out)
	return slices.DeleteFunc(out, func(g string) bool {
		return slices.ContainsFunc(all, func(h string) bool { return h != g && tenantkit.GrantMatches(h, g) })
	})
}
