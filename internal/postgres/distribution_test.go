package postgres_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit/internal/pgtest"
)

// The road past one database is distributing by tenant (Citus 11 or later): every table that
// carries tenant_id becomes a distributed table on tenant_id, colocated with the others, and every
// table without it a reference table (copied to every node) or a coordinator-local one. Citus
// refuses what it cannot enforce on one shard (Citus docs, "Creating and Modifying Distributed
// Objects (DDL)": primary keys, unique and exclusion constraints must include the distribution
// column; foreign keys are allowed between colocated distributed tables when they include the
// distribution column, from distributed to reference tables, between reference tables, and
// between local and reference tables, but never from a reference table to a distributed one).
// This lint keeps the schema in that shape; docs/scaling.md carries the same table of placements.

// placement is where a table would live under Citus, and why, for every table that is not the
// default (tenant_id → distributed by tenant_id; no tenant_id → reference).
type placement struct {
	kind   string // "reference" or "local"
	reason string
}

// placements lists the exceptions: tables that carry tenant_id but are not distributed. Each one
// names the Citus mechanism that covers it. A name here that is not a table is itself an offender.
var placements = map[string]placement{
	"public.tenants": {"reference",
		"one row per tenant, joined by every membership check; as a reference table the slug stays globally unique and every tenant table's foreign key to it is distributed → reference"},
	"tenantkit.stripe_subscriptions": {"reference",
		"one row per Stripe subscription, looked up by Stripe's own id from webhooks that do not know the tenant; Stripe guarantees the id's uniqueness"},
	"tenantkit.tenant_deletions": {"reference",
		"the retention record of a deleted tenant outlives the tenant's shard rows; small and append-only"},
	"tenantkit.email_outbox": {"local",
		"drained by one sender across all tenants, rows without a tenant allowed; a coordinator-local table (citus_add_local_table_to_metadata) may reference the tenants reference table"},
	"tenantkit.tenant_exports": {"reference",
		"one row per export link, found by the link's id alone (GET /exports/{id}); few rows, short-lived"},
	"tenantkit.stripe_outbox": {"local",
		"drained by one sender across all tenants, its idempotency keys unique across them; like email_outbox, a coordinator-local table referencing tenants"},
	"public.goose_db_version": {"local", "the migration ledger of the coordinator"},
	"public.tenant_domains": {"reference",
		"a few rows per tenant, looked up by domain when a user signs up (who names no tenant); a verified domain is unique across tenants, which only a reference table can enforce"},
}

// distributionSQL finds the offenders. $1 holds the names of the exception tables, $2 those of
// them placed local. Tables are those of public, tenantkit and auth.
const distributionSQL = `
WITH t AS (
  SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name,
         (SELECT a.attnum FROM pg_attribute a
          WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) AS dist
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname IN ('public', 'tenantkit', 'auth')
), placed AS (
  SELECT oid, name,
         CASE WHEN name = ANY ($2::text[]) THEN 'local'
              WHEN name = ANY ($1::text[]) OR dist IS NULL THEN 'reference'
              ELSE 'distributed' END AS kind,
         CASE WHEN name = ANY ($1::text[]) THEN NULL ELSE dist END AS dist
  FROM t
), cols AS (
  SELECT u.oid, u.key,
         (SELECT string_agg(a.attname, ', ' ORDER BY k.ord)
          FROM unnest(u.key) WITH ORDINALITY k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = u.oid AND a.attnum = k.attnum) AS list
  FROM (SELECT conrelid AS oid, conkey AS key FROM pg_constraint WHERE contype IN ('p', 'u', 'x')
        UNION
        SELECT indrelid, string_to_array(indkey::text, ' ')::int2[] FROM pg_index WHERE indisunique) u
)
SELECT p.name || ': tenant_id is nullable'
FROM placed p JOIN pg_attribute a ON a.attrelid = p.oid AND a.attnum = p.dist
WHERE p.kind = 'distributed' AND NOT a.attnotnull
UNION ALL
SELECT p.name || ': unique key (' || c.list || ') lacks tenant_id'
FROM placed p JOIN cols c ON c.oid = p.oid
WHERE p.kind = 'distributed' AND NOT p.dist = ANY (c.key)
UNION ALL
SELECT format('%s: foreign key %I from a %s table to a %s table', src.name, f.conname, src.kind, dst.kind)
FROM pg_constraint f JOIN placed src ON src.oid = f.conrelid JOIN placed dst ON dst.oid = f.confrelid
WHERE f.contype = 'f' AND src.oid <> dst.oid
  AND ((src.kind <> 'distributed' AND dst.kind = 'distributed')
       OR (src.kind = 'distributed' AND dst.kind = 'local'))
UNION ALL
SELECT format('%s: foreign key %I to %s does not pair tenant_id with tenant_id', src.name, f.conname, dst.name)
FROM pg_constraint f JOIN placed src ON src.oid = f.conrelid JOIN placed dst ON dst.oid = f.confrelid
WHERE f.contype = 'f' AND src.kind = 'distributed' AND dst.kind = 'distributed'
  AND NOT EXISTS (SELECT FROM unnest(f.conkey, f.confkey) k(src_col, dst_col)
                  WHERE k.src_col = src.dist AND k.dst_col = dst.dist)
UNION ALL
SELECT e || ': listed as an exception but is not a table'
FROM unnest($1::text[]) e WHERE NOT EXISTS (SELECT FROM t WHERE t.name = e)
ORDER BY 1`

func lintDistribution(ctx context.Context, q querier) []string {
	var listed, local []string
	for name, p := range placements {
		listed = append(listed, name)
		if p.kind == "local" {
			local = append(local, name)
		}
	}
	return queryStrings(ctx, q, distributionSQL, listed, local)
}

func TestDistributableByTenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("schema", func(t *testing.T) {
		t.Parallel()
		pool := connect(t, pgtest.NewDB(t))
		if off := lintDistribution(ctx, pool); len(off) > 0 {
			t.Errorf("%d table(s) would block distributing by tenant_id (fix, or add to placements with the Citus mechanism that covers it):\n  %s",
				len(off), strings.Join(off, "\n  "))
		}
		// Not vacuous: most tenant tables are distributed, and each exception has a reason.
		var distributed int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
			WHERE a.attname = 'tenant_id' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
			  AND c.relnamespace IN ('public'::regnamespace, 'tenantkit'::regnamespace)
			  AND NOT format('%I.%I', c.relnamespace::regnamespace, c.relname) = ANY ($1)`, slices.Sorted(maps.Keys(placements))).Scan(&distributed); err != nil || distributed < 8 {
			t.Errorf("distributed tables: %d (err %v), want at least 8", distributed, err)
		}
		for name, p := range placements {
			if p.reason == "" || (p.kind != "reference" && p.kind != "local") {
				t.Errorf("placement of %s: %+v", name, p)
			}
		}
	})

	t.Run("detects violations", func(t *testing.T) {
		t.Parallel()
		broken := connect(t, pgtest.NewDB(t))
		for _, sql := range []string{
			`CREATE TABLE public.lint_notes (id uuid PRIMARY KEY, tenant_id uuid REFERENCES tenants (id),
				project_id uuid, UNIQUE (tenant_id, id))`,
			`CREATE TABLE public.lint_note_links (tenant_id uuid NOT NULL, note_id uuid,
				FOREIGN KEY (tenant_id, note_id) REFERENCES lint_notes (tenant_id, id))`,
			`CREATE TABLE public.lint_crossed (note_tenant uuid NOT NULL, tenant_id uuid NOT NULL, note_id uuid,
				FOREIGN KEY (note_tenant, note_id) REFERENCES lint_notes (tenant_id, id))`,
			`CREATE TABLE public.lint_tags (id int PRIMARY KEY, project_tenant uuid, project_id uuid,
				FOREIGN KEY (project_tenant, project_id) REFERENCES projects (tenant_id, id))`,
			`CREATE UNIQUE INDEX projects_name_key ON projects (name)`,
			`CREATE TABLE public.lint_mailings (tenant_id uuid NOT NULL, id uuid,
				PRIMARY KEY (tenant_id, id), outbox_id uuid REFERENCES tenantkit.email_outbox (id))`,
		} {
			if _, err := broken.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		want := []string{
			"public.lint_crossed: foreign key lint_crossed_note_tenant_note_id_fkey to public.lint_notes does not pair tenant_id with tenant_id",
			"public.lint_mailings: foreign key lint_mailings_outbox_id_fkey from a distributed table to a local table",
			"public.lint_notes: tenant_id is nullable",
			"public.lint_notes: unique key (id) lacks tenant_id",
			"public.lint_tags: foreign key lint_tags_project_tenant_project_id_fkey from a reference table to a distributed table",
			"public.projects: unique key (name) lacks tenant_id",
		}
		if got := lintDistribution(ctx, broken); !slices.Equal(got, want) {
			t.Errorf("offenders:\n got  %q\n want %q", got, want)
		}
	})
}
