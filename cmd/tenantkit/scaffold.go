package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/tenantkit/tenantkit/internal/hasurarules"
	"github.com/tenantkit/tenantkit/internal/scaffold"
)

const scaffoldUsage = `usage: tenantkit scaffold table NAME [--read PERM] [--write PERM] [--limit METRIC] [--dir DIR]

Writes a migration for the tenant-owned table public.NAME (tenant_id, foreign key, index, forced
RLS on tenantkit's membership helpers), lists it in hasura/tenant_tables.yaml and writes its Hasura
metadata with the user role's rules generated from the role table. Then: add your columns to the
migration, run make test (the schema lint and the walls test cover the table), tenantkit migrate up,
and apply the Hasura metadata.

flags:
`

// scaffoldCommand is `tenantkit scaffold table NAME …`.
func scaffoldCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("scaffold table", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var t hasurarules.Scaffolded
	fs.StringVar(&t.Read, "read", "projects:read", "permission that lets a member read the rows")
	fs.StringVar(&t.Write, "write", "projects:write", "permission that lets a member create, change and delete rows")
	fs.StringVar(&t.Limit, "limit", "", "plan limit metric counting the tenant's rows (subscription_plans.limits key), optional")
	dir := fs.String("dir", ".", "the repository's root (holds migrations/ and hasura/)")
	fs.Usage = func() { fmt.Fprint(stdout, scaffoldUsage); fs.PrintDefaults() }
	if len(args) < 2 || args[0] != "table" {
		fs.Usage()
		return errors.New("usage: tenantkit scaffold table NAME [flags]")
	}
	t.Name = args[1]
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("scaffold: unexpected argument %q", fs.Arg(0))
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
