package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tenantkit/tenantkit/internal/hasurarules"
	"github.com/tenantkit/tenantkit/internal/scaffold"
)

const scaffoldSummary = `Write a migration for the tenant-owned table public.NAME (tenant_id, foreign key, index, forced
RLS on tenantkit's membership helpers, optionally a plan limit), list it in hasura/tenant_tables.yaml
and write its Hasura metadata with the user role's rules generated from the role table. Then add
your columns to the migration and run make test: the schema lint and the walls test cover the table.`

// scaffoldFlags are the flags of `tenantkit scaffold table`.
func scaffoldFlags(fs *flag.FlagSet, t *hasurarules.Scaffolded, dir *string) {
	fs.StringVar(&t.Read, "read", "projects:read", "permission that lets a member read the rows")
	fs.StringVar(&t.Write, "write", "projects:write", "permission that lets a member create, change and delete rows")
	fs.StringVar(&t.Limit, "limit", "", "plan limit metric counting the tenant's rows (a subscription_plans.limits key), optional")
	fs.StringVar(dir, "dir", ".", "the repository's root (holds migrations/ and hasura/)")
}

// scaffoldCommand is `tenantkit scaffold table NAME …`.
func scaffoldCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("scaffold table", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var t hasurarules.Scaffolded
	dir := new(string)
	scaffoldFlags(fs, &t, dir)
	const usage = "usage: tenantkit scaffold table NAME [--read PERM] [--write PERM] [--limit METRIC] [--dir DIR]"
	if len(args) < 2 || args[0] != "table" {
		return errors.New(usage)
	}
	// NAME before or after the flags.
	rest := args[1:]
	if !strings.HasPrefix(rest[0], "-") {
		t.Name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if t.Name == "" && fs.NArg() > 0 {
		t.Name = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return err
		}
	}
	if t.Name == "" || fs.NArg() > 0 {
		return errors.New(usage)
	}
	files, err := scaffold.Table(*dir, t)
	if err != nil {
		return fmt.Errorf("scaffold: %w", err)
	}
	fmt.Fprintf(stdout, "scaffold: table %s (read %s, write %s", t.Name, t.Read, t.Write)
	if t.Limit != "" {
		fmt.Fprintf(stdout, ", plan limit %q", t.Limit)
	}
	fmt.Fprintln(stdout, ")")
	for _, f := range files {
		fmt.Fprintln(stdout, "  wrote", f)
	}
	return nil
}
