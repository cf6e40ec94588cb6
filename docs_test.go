package tenantkit_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit"
)

// checkedPermissions are the permissions tenantkit's rules check, with what each allows; the
// README's role table shows which role holds which.
var checkedPermissions = []struct{ perm, allows string }{
	{"projects:read", "read the tenant's projects (the example tenant-owned table)"},
	{"projects:write", "create, edit and delete projects"},
	{"users:invite", "invite, resend and revoke invitations; see pending invitations"},
	{"users:write", "change members' roles and custom permissions, remove members"},
	{"settings:read", "read the audit log"},
	{"settings:write", "rename the tenant, change its settings, claim and verify email domains"},
	{"billing:manage", "checkout, billing portal, cancel, resume, change plan"},
	{"api_keys:manage", "create, list and revoke the tenant's API keys"},
	{"tenants:delete", "delete the tenant"},
}

// roleTable is the README's role → permission table, generated from tenantkit.RolePermissions.
func roleTable() string {
	var b strings.Builder
	b.WriteString("| role | grants (`tenantkit.RolePermissions`) |\n|---|---|\n")
	for i := len(tenantkit.Roles) - 1; i >= 0; i-- {
		r := tenantkit.Roles[i]
		var gs []string
		for _, g := range tenantkit.RolePermissions[r] {
			gs = append(gs, "`"+g+"`")
		}
		fmt.Fprintf(&b, "| %s | %s |\n", r, strings.Join(gs, ", "))
	}
	b.WriteString("\n| permission | allows |")
	for i := len(tenantkit.Roles) - 1; i >= 0; i-- {
		fmt.Fprintf(&b, " %s |", tenantkit.Roles[i])
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(tenantkit.Roles)) + "\n")
	for _, p := range checkedPermissions {
		fmt.Fprintf(&b, "| `%s` | %s |", p.perm, p.allows)
		for i := len(tenantkit.Roles) - 1; i >= 0; i-- {
			mark := " "
			if tenantkit.Allows(tenantkit.Roles[i], nil, p.perm) {
				mark = "✓"
			}
			fmt.Fprintf(&b, " %s |", mark)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestReadmeRoleTable: the README's role table is the one RolePermissions gives (run with -v on
// a failure to get the table to paste).
func TestReadmeRoleTable(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := roleTable()
	if !bytes.Contains(readme, []byte(want)) {
		t.Errorf("README.md does not hold the role table of tenantkit.RolePermissions; paste:\n\n%s", want)
	}
	for _, r := range tenantkit.Roles {
		for _, g := range tenantkit.RolePermissions[r] {
			if !tenantkit.ValidPermission(g) {
				t.Errorf("role %s grants %q, not a permission", r, g)
			}
		}
	}
}

// repoFiles lists the repository's text files (not .git, build output, fuzz corpora or go.sum).
func repoFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", ".dev", "testdata", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "go.sum" || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte{0}) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDocsStandAlone: nothing in the repository points at files outside it or carries planning
// notes; an upstream issue is cited by its URL (or owner/repo#N), never as a bare number.
func TestDocsStandAlone(t *testing.T) {
	forbidden := []struct {
		re   *regexp.Regexp
		what string
	}{
		{regexp.MustCompile(`\.\./shared|shared/reference`), "a path outside the repository"},
		{regexp.MustCompile(`\bDESIGN(\.md|'s)?\b`), "a design document outside the repository"},
		{regexp.MustCompile(`(?i)\b(next|this|last|previous) session\b`), "planning text"},
		{regexp.MustCompile(`(?i)\bround [0-9]+\b`), "planning text"},
		{regexp.MustCompile(`(?i)\b(issue|ticket|PR) ?#?[0-9]+\b`), "an issue number (cite its URL)"},
		{regexp.MustCompile(`(^|[\s(\[])#[0-9]+\b`), "an issue number (cite its URL)"},
	}
	self, _ := filepath.Abs("docs_test.go")
	for _, path := range repoFiles(t) {
		if abs, _ := filepath.Abs(path); abs == self {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, f := range forbidden {
				if loc := f.re.FindStringIndex(line); loc != nil {
					t.Errorf("%s:%d: %s: %q", path, i+1, f.what, line[loc[0]:loc[1]])
				}
			}
		}
	}
}

// TestReadmeLayoutListsEveryPackage: the README's layout table has one row per Go package (the
// root package as *.go) and no row for a directory that does not exist.
func TestReadmeLayoutListsEveryPackage(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)`").FindAllStringSubmatch(string(readme), -1) {
		rows[strings.TrimSuffix(m[1], "/")] = true
	}
	var pkgs []string
	for _, path := range repoFiles(t) {
		if filepath.Ext(path) != ".go" {
			continue
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		if dir == "." {
			dir = "*.go"
		}
		if !slices.Contains(pkgs, dir) {
			pkgs = append(pkgs, dir)
		}
	}
	for _, p := range pkgs {
		if !rows[p] {
			t.Errorf("README.md's layout table has no row for package %s (one line saying what it is)", p)
		}
	}
	layout := string(readme)
	start := strings.Index(layout, "### Layout")
	if start < 0 {
		t.Fatal("README.md has no Layout section")
	}
	end := strings.Index(layout[start+1:], "\n#")
	section := layout[start : start+1+end]
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)`").FindAllStringSubmatch(section, -1) {
		p := strings.TrimSuffix(m[1], "/")
		if p == "*.go" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the layout table lists %s, which does not exist", p)
		}
	}
}

// ruleHome is a rule's home in docs/rules.md: → `file` (`Name`).
var ruleHome = regexp.MustCompile("→ `([^`]+)` \\(`([^`]+)`\\)")

// TestRulesDocNamesRealHomes: every rule of docs/rules.md names one file that exists and a name it
// defines: a Go function, method (Type.Method), variable or constant, or, in a migration, an SQL
// function or view created in the migration's Up part.
func TestRulesDocNamesRealHomes(t *testing.T) {
	doc, err := os.ReadFile("docs/rules.md")
	if err != nil {
		t.Fatal(err)
	}
	rules := 0
	for i, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "- ") {
			continue
		}
		rules++
		homes := ruleHome.FindAllStringSubmatch(line, -1)
		if len(homes) != 1 {
			t.Errorf("docs/rules.md:%d: %d homes (want one: → `file` (`Name`)): %s", i+1, len(homes), line)
			continue
		}
		file, name := homes[0][1], homes[0][2]
		src, err := os.ReadFile(filepath.FromSlash(file))
		if err != nil {
			t.Errorf("docs/rules.md:%d: %v", i+1, err)
			continue
		}
		if !definesName(file, string(src), name) {
			t.Errorf("docs/rules.md:%d: %s does not define %s", i+1, file, name)
		}
	}
	if rules < 50 {
		t.Errorf("docs/rules.md lists %d rules; the rules of team, billing, keys, domains, export, isolation and Hasura are more", rules)
	}
}

// definesName reports whether src (the file named file) defines name.
func definesName(file, src, name string) bool {
	q := regexp.QuoteMeta
	var pattern string
	switch {
	case strings.HasSuffix(file, ".sql"):
		up, _, _ := strings.Cut(src, "-- +goose Down")
		src, pattern = up, `(?m)^CREATE (OR REPLACE )?(FUNCTION `+q(name)+`\(|VIEW `+q(name)+` )`
	case strings.Contains(name, "."):
		typ, method, _ := strings.Cut(name, ".")
		pattern = `(?m)^func \(\w+ \*?` + q(typ) + `\) ` + q(method) + `\(`
	default:
		pattern = `(?m)^(func ` + q(name) + `[(\[]|(var|const|type) ` + q(name) + `\b|\t` + q(name) + `\s+(\S+\s+)?=)`
	}
	return regexp.MustCompile(pattern).MatchString(src)
}
