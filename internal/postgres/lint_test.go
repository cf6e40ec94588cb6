package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/pgtest"
)

// A schema lint in the spirit of Supabase's splinter: each rule queries the catalogs and returns
// its offenders, by name. TestSchemaLint runs every rule on the migrated schema (expecting none)
// and on a deliberately broken copy (expecting exactly the breakage), so no rule passes vacuously.

// querier is what the lint needs: a pool, a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// lintRule is one check; lint returns its offenders, sorted.
type lintRule struct {
	name string
	lint func(context.Context, querier) []string
}

var lintRules = []lintRule{
	{"tenant tables enable and force RLS", lintRLSForced},
	{"tenant tables have a policy for every command", lintPolicyPerCommand},
	{"policies call helpers once per statement", lintPolicyExpressions},
	{"security definers pin search_path", lintSecurityDefiners},
	{"foreign keys are indexed", lintForeignKeyIndexes},
	{"roles cannot bypass RLS", lintRoles},
	{"policy columns are indexed", lintPolicyColumnIndexes},
}

// tenantTablesSQL selects the tables RLS must wall off: every ordinary table of public and
// tenantkit with a tenant_id column, plus public.tenants. Columns: oid, name (schema.table).
const tenantTablesSQL = `
SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'tenantkit')
  AND (c.oid = to_regclass('public.tenants')
       OR EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))`

// queryStrings runs sql, which returns one text column. A failing query is reported as an offender,
// so that a broken lint fails loudly instead of passing.
func queryStrings(ctx context.Context, q querier, sql string, args ...any) []string {
	rows, err := q.Query(ctx, sql, args...)
	if err == nil {
		var list []string
		list, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err == nil {
			return list
		}
	}
	return []string{"lint query failed: " + err.Error()}
}

// Without ENABLE, tenantkit_app sees every tenant's rows; without FORCE, the tables' owner (the
// migration role, which is what Hasura usually connects as) does.
func lintRLSForced(ctx context.Context, q querier) []string {
	return queryStrings(ctx, q, `
SELECT t.name || ' (' || concat_ws(', ', CASE WHEN NOT c.relrowsecurity THEN 'not enabled' END,
                                         CASE WHEN NOT c.relforcerowsecurity THEN 'not forced' END) || ')'
FROM (`+tenantTablesSQL+`) t JOIN pg_class c ON c.oid = t.oid
WHERE NOT (c.relrowsecurity AND c.relforcerowsecurity)
ORDER BY 1`)
}

// A command without any policy is silently denied to every role: a table someone forgot to
// finish, not a decision (decisions are policies TO a role, e.g. system_all).
func lintPolicyPerCommand(ctx context.Context, q querier) []string {
	return queryStrings(ctx, q, `
SELECT format('%s (no %s policy)', t.name, cmd.name)
FROM (`+tenantTablesSQL+`) t
CROSS JOIN (VALUES ('r', 'SELECT'), ('a', 'INSERT'), ('w', 'UPDATE'), ('d', 'DELETE')) cmd(code, name)
WHERE NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = t.oid AND p.polcmd IN (cmd.code, '*'))
ORDER BY 1`)
}

var (
	currentSettingCall = regexp.MustCompile(`\bcurrent_setting\s*\(`)
	tenantkitName      = regexp.MustCompile(`\btenantkit\.`)
	subSelectEnd       = regexp.MustCompile(`\(\s*SELECT\s+(unnest\()?$`)
	// membershipSubSelect is the caller's tenants as the policies read them (migration 00026): a
	// sub-select of tenantkit.caller_memberships with a constant permission, which refers to
	// nothing of the outer row, so it runs once per statement (an InitPlan).
	membershipSubSelect = regexp.MustCompile(`ARRAY\(\s*SELECT c\.tenant_id\s+FROM tenantkit\.caller_memberships c(\s+WHERE tenantkit\.allows\(c\.role, c\.permissions, '[a-z_]+:[a-z_*]+'::text\))?\)`)
)

// A policy is evaluated per row unless its function calls sit in an uncorrelated sub-select, which
// the planner runs once per statement (an InitPlan, or a hashed SubPlan built once and probed per
// row), such as the membership sub-select above. current_setting must go through
// tenantkit.current_user_id(), which tolerates unset and malformed claims.
func lintPolicyExpressions(ctx context.Context, q querier) []string {
	rows, err := q.Query(ctx, `
SELECT format('policy %I on %I.%I', p.polname, n.nspname, c.relname),
       concat_ws(' ', pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY 1`)
	if err != nil {
		return []string{"lint query failed: " + err.Error()}
	}
	var offenders []string
	var name, expr string
	_, err = pgx.ForEachRow(rows, []any{&name, &expr}, func() error {
		if currentSettingCall.MatchString(expr) {
			offenders = append(offenders, name+": calls current_setting directly")
		}
		expr = membershipSubSelect.ReplaceAllString(expr, "ARRAY[]")
		for _, loc := range tenantkitName.FindAllStringIndex(expr, -1) {
			if !subSelectEnd.MatchString(expr[:loc[0]]) {
				offenders = append(offenders, name+": calls tenantkit outside a scalar sub-select")
				break
			}
		}
		return nil
	})
	if err != nil {
		return []string{"lint query failed: " + err.Error()}
	}
	return offenders
}

// A SECURITY DEFINER function resolves names with its caller's search_path unless it pins its
// own: anyone who can create an object in a schema on that path (public, $user, or pg_temp
// when it is not last) can make the function run their code with its owner's rights.
func lintSecurityDefiners(ctx context.Context, q querier) []string {
	rows, err := q.Query(ctx, `
SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
       (SELECT substr(c, length('search_path=') + 1) FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef AND n.nspname IN ('public', 'tenantkit', 'auth')
ORDER BY 1`)
	if err != nil {
		return []string{"lint query failed: " + err.Error()}
	}
	var offenders []string
	var name string
	var path *string
	_, err = pgx.ForEachRow(rows, []any{&name, &path}, func() error {
		if path == nil {
			offenders = append(offenders, name+": no search_path")
			return nil
		}
		var schemas []string
		for s := range strings.SplitSeq(*path, ",") {
			schemas = append(schemas, strings.Trim(strings.TrimSpace(s), `"`))
		}
		switch {
		case slices.Contains(schemas, "public"), slices.Contains(schemas, "$user"):
			offenders = append(offenders, fmt.Sprintf("%s: search_path %q includes public or $user", name, *path))
		case schemas[len(schemas)-1] != "pg_temp":
			offenders = append(offenders, fmt.Sprintf("%s: search_path %q does not end with pg_temp", name, *path))
		}
		return nil
	})
	if err != nil {
		return []string{"lint query failed: " + err.Error()}
	}
	return offenders
}

// An unindexed foreign key makes every delete or key update of the referenced row scan the
// referencing table (e.g. deleting a tenant scans every tenant table), under lock.
func lintForeignKeyIndexes(ctx context.Context, q querier) []string {
	return queryStrings(ctx, q, `
SELECT format('%I.%I.%I (%s)', n.nspname, c.relname, f.conname,
              (SELECT string_agg(a.attname, ', ' ORDER BY k.ord)
               FROM unnest(f.conkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.attnum))
FROM pg_constraint f JOIN pg_class c ON c.oid = f.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE f.contype = 'f' AND n.nspname IN ('public', 'tenantkit', 'auth')
  AND NOT EXISTS (
    SELECT FROM pg_index i,
      LATERAL (SELECT (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(f.conkey)] AS lead) l
    WHERE i.indrelid = f.conrelid AND i.indisvalid AND i.indpred IS NULL
      AND i.indnkeyatts >= cardinality(f.conkey) AND l.lead @> f.conkey AND l.lead <@ f.conkey)
ORDER BY 1`)
}

// The service's roles must be held to RLS: no login (only reachable through SET ROLE), no
// superuser, no BYPASSRLS, and tenantkit_app owns nothing (an owner could disable RLS or
// redefine what it owns).
func lintRoles(ctx context.Context, q querier) []string {
	return queryStrings(ctx, q, `
SELECT r.name || ': ' || p.problem
FROM (VALUES ('tenantkit_app'), ('tenantkit_system')) r(name)
LEFT JOIN pg_roles ro ON ro.rolname = r.name
CROSS JOIN LATERAL (VALUES (ro.oid IS NULL, 'missing'), (ro.rolcanlogin, 'LOGIN'),
                           (ro.rolsuper, 'SUPERUSER'), (ro.rolbypassrls, 'BYPASSRLS')) p(bad, problem)
WHERE p.bad
UNION ALL
SELECT 'tenantkit_app: owns ' || o.what FROM (
  SELECT format('relation %I.%I', relnamespace::regnamespace, relname), relowner FROM pg_class
  UNION ALL SELECT format('function %I.%I(%s)', pronamespace::regnamespace, proname,
                          pg_get_function_identity_arguments(oid)), proowner FROM pg_proc
  UNION ALL SELECT 'schema ' || quote_ident(nspname), nspowner FROM pg_namespace
  UNION ALL SELECT 'type ' || oid::regtype::text, typowner FROM pg_type
) o(what, owner)
WHERE o.owner = (SELECT oid FROM pg_roles WHERE rolname = 'tenantkit_app')
ORDER BY 1`)
}

// Policies filter every statement by tenant_id (tenants by id; membership lookups by
// tenant_users.user_id): without an index leading with that column, each one is a scan.
func lintPolicyColumnIndexes(ctx context.Context, q querier) []string {
	return queryStrings(ctx, q, `
SELECT t.name || '.' || quote_ident(a.attname)
FROM (SELECT oid, name, CASE WHEN oid = to_regclass('public.tenants') THEN 'id' ELSE 'tenant_id' END AS col
      FROM (`+tenantTablesSQL+`) tt
      UNION ALL
      SELECT oid, 'public.tenant_users', 'user_id' FROM pg_class WHERE oid = to_regclass('public.tenant_users')) t
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = t.col
WHERE NOT EXISTS (SELECT FROM pg_index i
                  WHERE i.indrelid = t.oid AND i.indisvalid AND i.indpred IS NULL AND i.indkey[0] = a.attnum)
ORDER BY 1`)
}

// subplanNames returns the "Subplan Name" of every node of sql's plan, run as role.
func subplans(ctx context.Context, pool *pgxpool.Pool, role, sql string) (names []string, conds string, err error) {
	var raw []byte
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+role); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql).Scan(&raw)
	})
	if err != nil {
		return nil, "", err
	}
	var plan any
	if err := json.Unmarshal(raw, &plan); err != nil {
		return nil, "", err
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["Subplan Name"].(string); ok {
				names = append(names, s)
			}
			for _, k := range []string{"Filter", "Index Cond", "Recheck Cond", "Join Filter"} {
				if s, ok := v[k].(string); ok {
					conds += s + " "
				}
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(plan)
	return names, conds, nil
}

func connect(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestSchemaLint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := connect(t, pgtest.NewDB(t))
	// The policies' helper form (migration 00028) is held to the same rules.
	helper := connect(t, pgtest.NewDB(t))
	if _, err := helper.Exec(ctx, `SELECT tenantkit.set_policy_form('helper')`); err != nil {
		t.Fatal(err)
	}

	for _, r := range lintRules {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			if off := r.lint(ctx, pool); len(off) > 0 {
				t.Errorf("%d offender(s):\n  %s", len(off), strings.Join(off, "\n  "))
			}
			if off := r.lint(ctx, helper); len(off) > 0 {
				t.Errorf("helper form: %d offender(s):\n  %s", len(off), strings.Join(off, "\n  "))
			}
		})
	}

	t.Run("rules see the schema", func(t *testing.T) {
		t.Parallel()
		// Each rule's subjects exist, so a green lint is not an empty one.
		tables := queryStrings(ctx, pool, "SELECT name FROM ("+tenantTablesSQL+") t ORDER BY 1")
		for _, want := range []string{"public.projects", "public.tenant_users", "public.tenant_invitations",
			"public.tenant_subscriptions", "public.billing_usage", "public.tenants", "tenantkit.usage_events"} {
			if !slices.Contains(tables, want) {
				t.Errorf("tenant tables %v lack %s", tables, want)
			}
		}
		counts := map[string]string{
			"policies calling tenantkit": `SELECT count(*) FROM pg_policy
				WHERE concat(pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)) LIKE '%tenantkit.%'`,
			"security definers": `SELECT count(*) FROM pg_proc WHERE prosecdef AND pronamespace = 'tenantkit'::regnamespace`,
			"foreign keys": `SELECT count(*) FROM pg_constraint WHERE contype = 'f'
				AND connamespace IN ('public'::regnamespace, 'tenantkit'::regnamespace)`,
		}
		for what, sql := range counts {
			var n int
			if err := pool.QueryRow(ctx, sql).Scan(&n); err != nil || n < 5 {
				t.Errorf("%s: %d (err %v), want at least 5", what, n, err)
			}
		}
	})

	t.Run("policies on projects run their helper once per statement", func(t *testing.T) {
		t.Parallel()
		for form, pool := range map[string]*pgxpool.Pool{"inline": pool, "helper": helper} {
			names, conds, err := subplans(ctx, pool, "tenantkit_app",
				fmt.Sprintf("SELECT * FROM projects WHERE tenant_id = '%s' ORDER BY created_at DESC LIMIT 50", uuid.NewString()))
			if err != nil {
				t.Fatal(err)
			}
			if len(names) == 0 {
				t.Fatalf("%s form: no subplan: the policy's helper call is missing from the plan", form)
			}
			for _, n := range names {
				if !strings.HasPrefix(n, "InitPlan") && !strings.Contains(conds, "hashed "+n) {
					t.Errorf("%s form: %s in %q runs per row: want an InitPlan or a hashed SubPlan", form, n, conds)
				}
			}
		}
	})

	t.Run("detects violations", func(t *testing.T) {
		t.Parallel()
		broken := connect(t, pgtest.NewDB(t))
		for _, sql := range []string{
			`CREATE TABLE public.leaky (tenant_id uuid REFERENCES tenants (id))`,
			`ALTER TABLE projects NO FORCE ROW LEVEL SECURITY`,
			`CREATE FUNCTION public.leaky_definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'`,
			`CREATE FUNCTION public.public_definer() RETURNS int LANGUAGE sql SECURITY DEFINER
				SET search_path = public, pg_temp AS 'SELECT 1'`,
			`CREATE POLICY leak ON projects USING (current_setting('x.y', true) = '1')`,
			`CREATE POLICY per_row ON tenants FOR SELECT USING (id = ANY (tenantkit.member_tenants()))`,
			`CREATE FUNCTION public.app_owned() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
			`ALTER FUNCTION public.app_owned() OWNER TO tenantkit_app`,
		} {
			if _, err := broken.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		want := map[string][]string{
			"tenant tables enable and force RLS": {"public.leaky (not enabled, not forced)", "public.projects (not forced)"},
			"tenant tables have a policy for every command": {
				"public.leaky (no DELETE policy)", "public.leaky (no INSERT policy)",
				"public.leaky (no SELECT policy)", "public.leaky (no UPDATE policy)"},
			"policies call helpers once per statement": {
				"policy leak on public.projects: calls current_setting directly",
				"policy per_row on public.tenants: calls tenantkit outside a scalar sub-select"},
			"security definers pin search_path": {
				"public.leaky_definer(): no search_path",
				`public.public_definer(): search_path "public, pg_temp" includes public or $user`},
			"foreign keys are indexed":   {"public.leaky.leaky_tenant_id_fkey (tenant_id)"},
			"roles cannot bypass RLS":    {"tenantkit_app: owns function public.app_owned()"},
			"policy columns are indexed": {"public.leaky.tenant_id"},
		}
		for _, r := range lintRules {
			if got := r.lint(ctx, broken); !slices.Equal(got, want[r.name]) {
				t.Errorf("%s:\n got  %q\n want %q", r.name, got, want[r.name])
			}
		}
	})
}
