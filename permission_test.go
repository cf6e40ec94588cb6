package tenantkit_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit"
)

func TestGrantMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		grant string
		perm  string
		want  bool
	}{
		{"everything covers a permission", "*", "users:invite", true},
		{"everything covers a wildcard", "*", "projects:*", true},
		{"everything covers everything", "*", "*", true},
		{"exact match", "projects:read", "projects:read", true},
		{"another action of the resource", "projects:read", "projects:write", false},
		{"another resource with the action", "projects:read", "users:read", false},
		{"a specific grant does not cover the wildcard", "projects:read", "projects:*", false},
		{"a specific grant does not cover everything", "projects:read", "*", false},
		{"wildcard covers an action", "users:*", "users:invite", true},
		{"wildcard covers itself", "users:*", "users:*", true},
		{"wildcard does not cover the bare resource", "users:*", "users", false},
		{"wildcard does not cover a longer resource name", "users:*", "usersettings:read", false},
		{"wildcard does not cover an empty action", "users:*", "users:", false},
		{"wildcard does not cover another resource", "users:*", "projects:read", false},
		{"wildcard does not cover everything", "users:*", "*", false},
		{"wildcard is case-sensitive", "users:*", "Users:invite", false},
		{"a star without colon is not a wildcard", "users*", "users:invite", false},
		{"a star without colon is not a prefix", "users*", "usersx", false},
		{"a grant does not cover its prefix", "projects:read", "projects:re", false},
		{"a grant does not cover its extension", "projects:read", "projects:readall", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tenantkit.GrantMatches(tt.grant, tt.perm); got != tt.want {
				t.Errorf("GrantMatches(%q, %q) = %v, want %v", tt.grant, tt.perm, got, tt.want)
			}
		})
	}
}

// The role table (RolePermissions), one row per permission: which roles allow it without custom grants.
func TestAllowsRoleTable(t *testing.T) {
	t.Parallel()
	all := []tenantkit.Role{tenantkit.Guest, tenantkit.Member, tenantkit.Admin, tenantkit.Owner}
	adminUp := []tenantkit.Role{tenantkit.Admin, tenantkit.Owner}
	ownerOnly := []tenantkit.Role{tenantkit.Owner}
	tests := []struct {
		perm    string
		allowed []tenantkit.Role
	}{
		{"projects:read", all},
		{"projects:write", []tenantkit.Role{tenantkit.Member, tenantkit.Admin, tenantkit.Owner}},
		{"projects:delete", adminUp},
		{"projects:*", adminUp},
		{"users:read", adminUp},
		{"users:invite", adminUp},
		{"users:write", adminUp},
		{"users:*", adminUp},
		{"settings:read", adminUp},
		{"settings:write", adminUp},
		{"settings:delete", ownerOnly},
		{"settings:*", ownerOnly},
		{"billing:read", adminUp},
		{"billing:write", adminUp},
		{"tenants:delete", ownerOnly},
		{"tenants:*", ownerOnly},
		{"api_keys:manage", adminUp},
		{"api_keys:*", ownerOnly},
		{"reports:read", ownerOnly},
		{"*", ownerOnly},
	}
	for _, tt := range tests {
		for _, r := range tenantkit.Roles {
			want := false
			for _, a := range tt.allowed {
				want = want || a == r
			}
			if got := tenantkit.Allows(r, nil, tt.perm); got != want {
				t.Errorf("Allows(%s, nil, %q) = %v, want %v", r, tt.perm, got, want)
			}
		}
	}
	t.Run("an unknown role allows nothing", func(t *testing.T) {
		t.Parallel()
		for _, p := range []string{"projects:read", "*", ""} {
			if tenantkit.Allows("superuser", nil, p) || tenantkit.Allows("", nil, p) {
				t.Errorf("an unknown role allows %q", p)
			}
		}
	})
}

func TestAllowsCustomGrants(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		role   tenantkit.Role
		custom []string
		perm   string
		want   bool
	}{
		{"a custom grant adds a permission", tenantkit.Member, []string{"users:invite"}, "users:invite", true},
		{"a custom grant adds only itself", tenantkit.Member, []string{"users:invite"}, "users:write", false},
		{"a custom wildcard adds the resource", tenantkit.Guest, []string{"billing:*"}, "billing:read", true},
		{"a custom wildcard stays on its resource", tenantkit.Guest, []string{"billing:*"}, "billingx:read", false},
		{"custom everything", tenantkit.Guest, []string{"*"}, "tenants:delete", true},
		{"the role still counts with custom grants", tenantkit.Guest, []string{"users:invite"}, "projects:read", true},
		{"any of several custom grants", tenantkit.Member, []string{"reports:read", "settings:write"}, "settings:write", true},
		{"none of several custom grants", tenantkit.Member, []string{"reports:read", "settings:write"}, "settings:read", false},
		{"custom grants of an unknown role", "nobody", []string{"projects:read"}, "projects:read", true},
		{"empty custom grants", tenantkit.Member, []string{}, "users:invite", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tenantkit.Allows(tt.role, tt.custom, tt.perm); got != tt.want {
				t.Errorf("Allows(%s, %q, %q) = %v, want %v", tt.role, tt.custom, tt.perm, got, tt.want)
			}
		})
	}
}

func TestRoleOrder(t *testing.T) {
	t.Parallel()
	t.Run("roles are ordered guest < member < admin < owner", func(t *testing.T) {
		t.Parallel()
		order := []tenantkit.Role{tenantkit.Guest, tenantkit.Member, tenantkit.Admin, tenantkit.Owner}
		for i, a := range order {
			for j, b := range order {
				if got, want := a.AtLeast(b), i >= j; got != want {
					t.Errorf("%s.AtLeast(%s) = %v, want %v", a, b, got, want)
				}
			}
		}
	})
	t.Run("an invalid role is at least no valid role", func(t *testing.T) {
		t.Parallel()
		for _, bad := range []tenantkit.Role{"", "superuser", "Owner", "owner "} {
			for _, r := range tenantkit.Roles {
				if bad.AtLeast(r) {
					t.Errorf("%q.AtLeast(%s) = true", bad, r)
				}
			}
		}
	})
	t.Run("valid roles", func(t *testing.T) {
		t.Parallel()
		for _, r := range []tenantkit.Role{"guest", "member", "admin", "owner"} {
			if !r.Valid() {
				t.Errorf("%q.Valid() = false", r)
			}
		}
		for _, r := range []tenantkit.Role{"", "Owner", "OWNER", "owner ", " owner", "superuser", "user", "guests"} {
			if r.Valid() {
				t.Errorf("%q.Valid() = true", r)
			}
		}
	})
	t.Run("every role has grants and every grant is valid", func(t *testing.T) {
		t.Parallel()
		if len(tenantkit.RolePermissions) != len(tenantkit.Roles) {
			t.Errorf("RolePermissions has %d roles, Roles %d", len(tenantkit.RolePermissions), len(tenantkit.Roles))
		}
		for _, r := range tenantkit.Roles {
			if len(tenantkit.RolePermissions[r]) == 0 {
				t.Errorf("role %s grants nothing", r)
			}
			for _, g := range tenantkit.RolePermissions[r] {
				if !tenantkit.ValidPermission(g) {
					t.Errorf("role %s has malformed grant %q", r, g)
				}
			}
		}
	})
}

func TestValidPermission(t *testing.T) {
	t.Parallel()
	part63 := "a" + strings.Repeat("b", 62)
	part64 := part63 + "c"
	valid := []string{
		"*", "projects:*", "users:invite", "a:b", "billing_v2:read_all", "x1:y2",
		part63 + ":read", "users:" + part63, part63 + ":" + part63,
	}
	invalid := []string{
		"", " ", "Projects:read", "projects:Read", "USERS:INVITE", "users", "users:", ":read", ":", ":*",
		"a:b:c", "users:*x", "users:**", "*:read", "**", "*:*", "users*", "1users:read", "_users:read",
		"users:1read", "users:_read", "users-x:read", "usérs:read",
		" users:read", "users:read ", "users: read", "users :read", "users:\tread", "users:read\n", "\nusers:read",
		"users:read;", "users:read;DROP TABLE tenants", "users:read' OR '1'='1", "users:read--", "users:read/*",
		"users:read\x00", `users:read"`, "users:%", "users:.*", "users:read|admin:*",
		part64 + ":read", "users:" + part64, part64 + ":*",
	}
	for _, p := range valid {
		if !tenantkit.ValidPermission(p) {
			t.Errorf("ValidPermission(%q) = false, want true", p)
		}
	}
	for _, p := range invalid {
		if tenantkit.ValidPermission(p) {
			t.Errorf("ValidPermission(%q) = true, want false", p)
		}
	}
}

func TestErrorCode(t *testing.T) {
	t.Parallel()
	cause := errors.New("connection reset by peer")
	coded := &tenantkit.Error{Code: tenantkit.PlanLimit, Message: "the plan allows 10 projects", Err: cause}
	tests := []struct {
		name        string
		err         error
		wantCode    string
		wantMessage string
	}{
		{"a coded error", coded, tenantkit.PlanLimit, "the plan allows 10 projects"},
		{"a coded error wrapped once", fmt.Errorf("create project: %w", coded), tenantkit.PlanLimit, "the plan allows 10 projects"},
		{"a coded error wrapped twice", fmt.Errorf("handler: %w", fmt.Errorf("create project: %w", coded)), tenantkit.PlanLimit, "the plan allows 10 projects"},
		{"a coded error joined with others", errors.Join(io.EOF, coded), tenantkit.PlanLimit, "the plan allows 10 projects"},
		{"Errorf", tenantkit.Errorf(tenantkit.NotFound, "project %s not found", "p1"), tenantkit.NotFound, "project p1 not found"},
		{"the outermost coded error wins",
			&tenantkit.Error{Code: tenantkit.Forbidden, Message: "not allowed", Err: coded}, tenantkit.Forbidden, "not allowed"},
		{"a plain error is internal", cause, tenantkit.Internal, "internal error"},
		{"a wrapped plain error is internal", fmt.Errorf("x: %w", io.ErrUnexpectedEOF), tenantkit.Internal, "internal error"},
		{"a plain error formatted without %w is internal", fmt.Errorf("x: %v", coded), tenantkit.Internal, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tenantkit.ErrorCode(tt.err); got != tt.wantCode {
				t.Errorf("ErrorCode = %q, want %q", got, tt.wantCode)
			}
			if got := tenantkit.ErrorMessage(tt.err); got != tt.wantMessage {
				t.Errorf("ErrorMessage = %q, want %q", got, tt.wantMessage)
			}
		})
	}
	t.Run("nil has no code", func(t *testing.T) {
		t.Parallel()
		if got := tenantkit.ErrorCode(nil); got != "" {
			t.Errorf("ErrorCode(nil) = %q, want \"\"", got)
		}
	})
	t.Run("the cause stays reachable but is not the message", func(t *testing.T) {
		t.Parallel()
		err := fmt.Errorf("wrap: %w", coded)
		if !errors.Is(err, cause) {
			t.Error("errors.Is(err, cause) = false")
		}
		if strings.Contains(tenantkit.ErrorMessage(err), cause.Error()) {
			t.Errorf("ErrorMessage leaks the cause: %q", tenantkit.ErrorMessage(err))
		}
		if got, want := coded.Error(), "plan_limit: the plan allows 10 projects: connection reset by peer"; got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
		if got, want := tenantkit.Errorf(tenantkit.Invalid, "bad %d", 1).Error(), "invalid: bad 1"; got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
	})
}

func TestSession(t *testing.T) {
	t.Parallel()
	t.Run("NewSession lower-cases names", func(t *testing.T) {
		t.Parallel()
		s := tenantkit.NewSession(map[string]string{"X-Hasura-User-Id": "u1", "X-HASURA-ROLE": "user", "X-Hasura-Org": "Acme"})
		if s.UserID() != "u1" || s.Role() != "user" || s.Vars["x-hasura-org"] != "Acme" {
			t.Errorf("got %v", s.Vars)
		}
		if _, ok := s.Vars["X-Hasura-User-Id"]; ok {
			t.Errorf("the original name is kept: %v", s.Vars)
		}
	})
	t.Run("NewSession copies the variables", func(t *testing.T) {
		t.Parallel()
		vars := map[string]string{"x-hasura-user-id": "u1"}
		s := tenantkit.NewSession(vars)
		vars["x-hasura-user-id"] = "u2"
		if s.UserID() != "u1" {
			t.Errorf("UserID = %q after the caller's map changed", s.UserID())
		}
	})
	t.Run("UserSession", func(t *testing.T) {
		t.Parallel()
		s := tenantkit.UserSession("u1")
		if s.UserID() != "u1" || s.Role() != "user" || len(s.Vars) != 2 {
			t.Errorf("got %v", s.Vars)
		}
	})
	t.Run("the zero session is nobody", func(t *testing.T) {
		t.Parallel()
		var s tenantkit.Session
		if s.UserID() != "" || s.Role() != "" {
			t.Errorf("got %q, %q", s.UserID(), s.Role())
		}
		if got := tenantkit.SessionFrom(t.Context()); got.UserID() != "" {
			t.Errorf("SessionFrom(empty context) = %v", got.Vars)
		}
	})
	t.Run("a context carries its session", func(t *testing.T) {
		t.Parallel()
		ctx := tenantkit.WithSession(t.Context(), tenantkit.UserSession("u1"))
		if got := tenantkit.SessionFrom(ctx).UserID(); got != "u1" {
			t.Errorf("UserID = %q", got)
		}
	})
}

// FuzzGrantMatches checks the algebra of grants on arbitrary strings, not just well-formed ones:
// the database has the same function (tenantkit.grant_matches) and a test keeps the two equal on
// edge cases, so these invariants hold for it too.
func FuzzGrantMatches(f *testing.F) {
	for _, s := range [][2]string{
		{"*", "users:invite"}, {"users:*", "users:invite"}, {"users:*", "users"}, {"users:*", "users:"},
		{"users:*", "usersettings:read"}, {"projects:read", "projects:read"}, {"projects:read", "projects:*"},
		{":*", ":"}, {":*", ":x"}, {"*", ""}, {"", ""}, {"a:*", "a:b:c"}, {"users*", "users:x"},
		{"é:*", "é:x"}, {"users:*", "*"}, {"x:*", "x:*"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, g, p string) {
		got := tenantkit.GrantMatches(g, p)
		if !tenantkit.GrantMatches("*", p) {
			t.Fatalf("\"*\" does not cover %q", p)
		}
		if !tenantkit.GrantMatches(g, g) {
			t.Fatalf("%q does not cover itself", g)
		}
		if !tenantkit.GrantMatches(p, p) {
			t.Fatalf("%q does not cover itself", p)
		}
		resource, isWildcard := strings.CutSuffix(g, ":*")
		switch {
		case g == "*":
			if !got {
				t.Fatalf("\"*\" does not cover %q", p)
			}
		case !isWildcard:
			if got != (g == p) {
				t.Fatalf("GrantMatches(%q, %q) = %v, but %q is no wildcard", g, p, got, g)
			}
		default:
			// "r:*" covers exactly itself and "r:" followed by at least one byte.
			want := g == p || (strings.HasPrefix(p, resource+":") && len(p) > len(resource)+1)
			if got != want {
				t.Fatalf("GrantMatches(%q, %q) = %v, want %v", g, p, got, want)
			}
		}
		if got && g != p && g != "*" {
			// Anything a wildcard covers stays inside its resource: "users:*" never reaches
			// "usersettings:…" nor the bare "users".
			if !strings.HasPrefix(p, resource+":") || len(p) <= len(resource)+1 {
				t.Fatalf("GrantMatches(%q, %q) escapes resource %q", g, p, resource)
			}
		}
		// Well-formed grants cover well-formed permissions of the same resource only.
		if got && tenantkit.ValidPermission(g) && tenantkit.ValidPermission(p) && g != "*" {
			gr, _, _ := strings.Cut(g, ":")
			pr, _, _ := strings.Cut(p, ":")
			if gr != pr {
				t.Fatalf("GrantMatches(%q, %q) crosses resources", g, p)
			}
		}
		// Coverage is transitive: a grant covering a wildcard covers what the wildcard covers.
		if q := p + "x"; got && tenantkit.GrantMatches(p, q) && !tenantkit.GrantMatches(g, q) {
			t.Fatalf("%q covers %q which covers %q, but not %q", g, p, q, q)
		}
		// Custom grants only add to a role; roles are monotonic in the hierarchy; owners have it all.
		for i, r := range tenantkit.Roles {
			base := tenantkit.Allows(r, nil, p)
			if withCustom := tenantkit.Allows(r, []string{g}, p); withCustom != (base || got) {
				t.Fatalf("Allows(%s, [%q], %q) = %v, want %v", r, g, p, withCustom, base || got)
			}
			if i+1 < len(tenantkit.Roles) && base && !tenantkit.Allows(tenantkit.Roles[i+1], nil, p) {
				t.Fatalf("%s allows %q but %s does not", r, p, tenantkit.Roles[i+1])
			}
		}
		if !tenantkit.Allows(tenantkit.Owner, nil, p) {
			t.Fatalf("owner does not allow %q", p)
		}
	})
}
