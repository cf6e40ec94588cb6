package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Hasura's event triggers are row triggers that graphql-engine installs on the tracked tables. Their
// function (hdb_catalog.notify_hasura_<trigger>_<OP>) runs as the role that wrote the row — for
// tenantkit, tenantkit_app or tenantkit_system — and calls hdb_catalog.insert_event_log, which is
// not SECURITY DEFINER and inserts into hdb_catalog.event_log. Hasura creates hdb_catalog as its own
// database user and grants nothing, so without the grants below every write of tenantkit to a table
// with an event trigger (creating a tenant, inviting a member) fails with "permission denied for
// schema hdb_catalog".

// EventTriggerGrants returns the GRANT statements that let roles write rows of tables carrying
// Hasura's event triggers whose catalog is in schema, and nothing more: USAGE on the schema,
// EXECUTE on insert_event_log (PUBLIC's unless revoked; granted so that a revoke does not break
// the writers) and INSERT on event_log; "" for no roles. Nothing here reads Hasura's catalog or
// metadata.
func EventTriggerGrants(schema string, roles ...string) string {
	if len(roles) == 0 {
		return ""
	}
	s := pgx.Identifier{schema}.Sanitize()
	to := make([]string, len(roles))
	for i, r := range roles {
		to[i] = pgx.Identifier{r}.Sanitize()
	}
	list := strings.Join(to, ", ")
	return "GRANT USAGE ON SCHEMA " + s + " TO " + list + ";\n" +
		"GRANT EXECUTE ON FUNCTION " + s + ".insert_event_log(text, text, text, text, json) TO " + list + ";\n" +
		"GRANT INSERT ON " + s + ".event_log TO " + list + ";"
}

// HasuraGrants are the only privileges tenantkit's roles need to write tables carrying Hasura's
// event triggers (catalog hdb_catalog): what `tenantkit hasura grant` runs.
var HasuraGrants = EventTriggerGrants("hdb_catalog", AppRole, SystemRole)

// ErrNoHasuraCatalog is returned by GrantHasura when Hasura has not created its catalog yet.
var ErrNoHasuraCatalog = errors.New("hdb_catalog does not exist yet (Hasura creates it on its first start)")

// GrantHasura gives tenantkit's roles HasuraGrants, connected as a role that may grant them
// (Hasura's database user, which owns hdb_catalog, or a superuser). Run it after Hasura's first
// start and after every Hasura upgrade; running it again changes nothing. ErrNoHasuraCatalog when
// hdb_catalog does not exist yet; a permission error names the role to run it as.
func GrantHasura(ctx context.Context, databaseURL string) error {
	conn, err := Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect: %s", redact(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	var owner string
	// One round trip per statement and no prepared statement (QueryExecModeExec), so that this works
	// through a transaction pooler too (docs/pooling.md).
	err = conn.QueryRow(ctx, `SELECT n.nspname IS NOT NULL, coalesce(pg_get_userbyid(n.nspowner), '')
		FROM (SELECT 1) x LEFT JOIN pg_namespace n ON n.nspname = 'hdb_catalog'`, pgx.QueryExecModeExec).Scan(&exists, &owner)
	if err != nil {
		return err
	}
	if !exists {
		return ErrNoHasuraCatalog
	}
	_, err = conn.Exec(ctx, "BEGIN;\n"+HasuraGrants+"\nCOMMIT;")
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		_, _ = conn.Exec(ctx, "ROLLBACK")
		return fmt.Errorf("%s: connect as %s (the owner of hdb_catalog, i.e. Hasura's database user) or a superuser", pe.Message, owner)
	}
	return err
}

// HasuraEventProblem reports, in one operator-facing sentence with the fix, when a table tenantkit
// writes carries a Hasura event trigger that tenantkit's roles cannot run; "" when there is none
// (no trigger, or the grants are in place).
func (db *DB) HasuraEventProblem(ctx context.Context) (string, error) {
	var tables []string
	var missing []string
	err := db.queryRow(ctx, db.Pool, func(row pgx.Row) error { return row.Scan(&tables, &missing) }, `
		WITH hasura AS (
		  SELECT DISTINCT c.oid::regclass::text AS tbl
		  FROM pg_trigger t
		  JOIN pg_class c ON c.oid = t.tgrelid
		  JOIN pg_proc p ON p.oid = t.tgfoid
		  JOIN pg_namespace pn ON pn.oid = p.pronamespace
		  WHERE NOT t.tgisinternal AND (pn.nspname IN ('hdb_catalog', 'hdb_views') OR p.proname LIKE 'notify\_hasura\_%')
		), need AS (
		  SELECT r.rolname,
		         has_schema_privilege(r.oid, 'hdb_catalog', 'USAGE') AS usage,
		         has_table_privilege(r.oid, 'hdb_catalog.event_log', 'INSERT') AS ins,
		         has_function_privilege(r.oid, 'hdb_catalog.insert_event_log(text, text, text, text, json)', 'EXECUTE') AS exec
		  FROM pg_roles r
		  WHERE r.rolname IN ('tenantkit_app', 'tenantkit_system')
		    AND to_regclass('hdb_catalog.event_log') IS NOT NULL
		    AND to_regprocedure('hdb_catalog.insert_event_log(text, text, text, text, json)') IS NOT NULL
		)
		SELECT coalesce((SELECT array_agg(tbl ORDER BY tbl) FROM hasura), '{}'),
		       coalesce((SELECT array_agg(rolname ORDER BY rolname) FROM need WHERE NOT (usage AND ins AND exec)), '{}')
		       || CASE WHEN EXISTS (SELECT 1 FROM hasura) AND NOT EXISTS (SELECT 1 FROM need)
		               THEN ARRAY['tenantkit_app', 'tenantkit_system'] ELSE '{}' END`)
	if err != nil || len(tables) == 0 || len(missing) == 0 {
		return "", err
	}
	return fmt.Sprintf("Hasura event triggers on %s call hdb_catalog.insert_event_log, which %s cannot run: "+
		"creating tenants and invitations fails until they can. Fix: run `tenantkit hasura grant` with "+
		"DATABASE_URL of Hasura's database user (the owner of hdb_catalog), or as that user: %s",
		strings.Join(tables, ", "), strings.Join(missing, " and "), strings.ReplaceAll(HasuraGrants, "\n", " ")), nil
}
