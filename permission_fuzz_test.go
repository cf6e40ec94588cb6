package tenantkit_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit"
)

// refGrantMatches is the documented meaning of a grant, written without looking at GrantMatches,
// for well-formed grants and permissions: "*" covers everything; "resource:*" covers
// "resource:*" and "resource:<action>" of that same resource; any other grant covers exactly
// itself.
func refGrantMatches(g, p string) bool {
	if g == "*" {
		return true
	}
	if p == "*" {
		return false
	}
	gRes, gAct, _ := strings.Cut(g, ":")
	pRes, pAct, _ := strings.Cut(p, ":")
	return gRes == pRes && (gAct == "*" || gAct == pAct)
}

// refValidPermission parses the documented shape of a permission or grant by hand: "*", or
// "resource:action" where resource is a lowercase letter followed by up to 62 lowercase letters,
// digits or underscores, and action is "*" or has the shape of a resource.
func refValidPermission(p string) bool {
	if p == "*" {
		return true
	}
	res, act, ok := strings.Cut(p, ":")
	return ok && refName(res) && (act == "*" || refName(act))
}

func refName(s string) bool {
	if len(s) < 1 || len(s) > 63 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

const nameAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789_"

// wellFormed maps any string onto a well-formed permission, so that the comparison with the
// reference also runs on inputs the fuzzer did not happen to make well-formed: "" and anything
// starting with '*' become "*"; otherwise the parts before and after the first ':' become a
// resource and an action (an action starting with '*' becomes the wildcard). Equal parts map to
// equal names and a prefix to a prefix, so "users" versus "usersettings" cases survive the mapping.
func wellFormed(s string) string {
	if s == "" || s[0] == '*' {
		return "*"
	}
	res, act, _ := strings.Cut(s, ":")
	if strings.HasPrefix(act, "*") {
		return name(res) + ":*"
	}
	return name(res) + ":" + name(act)
}

func name(s string) string {
	var b strings.Builder
	b.WriteByte('a' + byte(len(s)%26)) // a letter first; the length keeps "" and "x" apart
	for i := 0; i < len(s) && b.Len() < 63; i++ {
		b.WriteByte(nameAlphabet[int(s[i])%len(nameAlphabet)])
	}
	return b.String()
}

// FuzzPermissionReference compares ValidPermission with a hand-written parser of the documented
// shape on any string, and GrantMatches with refGrantMatches on well-formed grants and permissions
// derived from the input. (FuzzGrantMatches in permission_test.go checks the rules that hold for
// arbitrary strings.)
func FuzzPermissionReference(f *testing.F) {
	f.Fuzz(func(t *testing.T, grant, perm string) {
		for _, s := range []string{grant, perm} {
			if got, want := tenantkit.ValidPermission(s), refValidPermission(s); got != want {
				t.Errorf("ValidPermission(%q) = %v, the documented shape says %v", s, got, want)
			}
		}
		if tenantkit.ValidPermission(grant) && tenantkit.ValidPermission(perm) {
			if got, want := tenantkit.GrantMatches(grant, perm), refGrantMatches(grant, perm); got != want {
				t.Errorf("GrantMatches(%q, %q) = %v, reference %v", grant, perm, got, want)
			}
		}
		g, p := wellFormed(grant), wellFormed(perm)
		if !refValidPermission(g) || !refValidPermission(p) {
			t.Fatalf("test bug: wellFormed made %q and %q", g, p)
		}
		if got, want := tenantkit.GrantMatches(g, p), refGrantMatches(g, p); got != want {
			t.Errorf("GrantMatches(%q, %q) = %v, reference %v", g, p, got, want)
		}
	})
}

// FuzzAllows checks Allows against the role table and refGrantMatches: a role and custom grants
// (comma-separated) allow a permission exactly when one of the grants covers it, custom grants only
// add, and a higher role never allows less.
func FuzzAllows(f *testing.F) {
	f.Fuzz(func(t *testing.T, role, custom, perm string) {
		r := tenantkit.Role(role)
		var grants []string
		if custom != "" {
			grants = strings.Split(custom, ",")
		}
		got := tenantkit.Allows(r, grants, perm)
		want := false
		for _, g := range append(slices.Clone(tenantkit.RolePermissions[r]), grants...) {
			want = want || tenantkit.GrantMatches(g, perm)
		}
		if got != want {
			t.Errorf("Allows(%q, %q, %q) = %v, but the grants say %v", role, grants, perm, got, want)
		}
		if got && !r.Valid() && len(grants) == 0 {
			t.Errorf("Allows(%q, nil, %q) = true for a role that does not exist", role, perm)
		}
		if tenantkit.Allows(r, nil, perm) && !got {
			t.Errorf("Allows(%q, %q, %q): custom grants took a permission away", role, grants, perm)
		}

		// Well-formed inputs: the reference, and the order of the roles.
		p := wellFormed(perm)
		wf := make([]string, len(grants))
		for i, g := range grants {
			wf[i] = wellFormed(g)
		}
		var prev bool
		for i, rr := range tenantkit.Roles {
			got := tenantkit.Allows(rr, wf, p)
			want := false
			for _, g := range append(slices.Clone(tenantkit.RolePermissions[rr]), wf...) {
				want = want || refGrantMatches(g, p)
			}
			if got != want {
				t.Errorf("Allows(%q, %q, %q) = %v, reference %v", rr, wf, p, got, want)
			}
			if i > 0 && prev && !tenantkit.Allows(rr, nil, p) {
				t.Errorf("%s allows %q but %s, ranked higher, does not", tenantkit.Roles[i-1], p, rr)
			}
			prev = tenantkit.Allows(rr, nil, p)
		}
		if !tenantkit.Allows(tenantkit.Owner, nil, p) {
			t.Errorf("owner does not allow %q", p)
		}
	})
}
