package hasuratest

// Hasura's event-trigger SQL, reproduced so that tenantkit's writes run under the very triggers
// graphql-engine v2 installs. Sources (hasura/graphql-engine):
//
//   - server/src-rsr/init_pg_source.sql @ 03edeb4aaa56ccdd75df900a4fbfd09e9c94a691: the source
//     catalog (gen_hasura_uuid, hdb_source_catalog_version, event_log with the event_log_fetch_events
//     index, event_invocation_logs with trigger_name and without the foreign key,
//     hdb_event_log_cleanups, insert_event_log);
//   - server/src-rsr/pg_source_migrations/0_to_1.sql … 3_to_4.sql (3_to_4 @
//     13dd2243bde1c0b55187777bc520eeb98a66f4de replaces insert_event_log with the NULLIF version
//     used below);
//   - server/src-rsr/trigger.sql.shakespeare @ d7425db3f0583f5d14620783b25170958b13de83 (the
//     function template) as rendered by mkTriggerFunctionQ / mkTrigger in
//     server/src-lib/Hasura/Backends/Postgres/DDL/EventTrigger.hs @
//     3f773fa686d9c2fd78af43c9a8c90cd594f4a3ee: the table's schema and name are SQL literals
//     (no longer TG_TABLE_SCHEMA/TG_TABLE_NAME) and CREATE TRIGGER is a separate statement, run
//     only when pg_trigger has no trigger of that name on the table (the template's own
//     DROP TRIGGER IF EXISTS + CREATE TRIGGER lines are gone). The rendered text, down to the
//     spacing of the row expressions, was checked against the pg_dump (PostgreSQL 16.8) of a
//     database a current Hasura v2 had installed its triggers in, published in a public
//     repository.
//
// What a writer needs. Neither function is SECURITY DEFINER, and PostgreSQL checks no privilege
// on a trigger's own function when the trigger fires, so the trigger body runs with the
// privileges of the role that wrote the row. The body calls <schema>.insert_event_log, which
// needs USAGE on the schema (without it: SQLSTATE 42501 "permission denied for schema
// hdb_catalog"), EXECUTE on the function (PostgreSQL grants EXECUTE to PUBLIC on every new
// function and Hasura does not revoke it, so this holds unless someone revoked it), and INSERT
// on event_log, at least on the five columns it names (id, schema_name, table_name,
// trigger_name, payload; without it: 42501 "permission denied for table event_log").
// gen_random_uuid is pg_catalog's (PostgreSQL 13 and later). postgres.EventTriggerGrants writes
// these statements; eventsql_test.go proves each one necessary and the set sufficient. USAGE is
// checked only when PL/pgSQL plans the call, and the plan lives as long as the session: on a
// connection where a more privileged role already fired the trigger, a role lacking USAGE writes
// without error (TestEventWriterPlanCache), so only a fresh session shows the grant missing.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// HasuraCatalogSchema is the schema graphql-engine keeps its source catalog in.
const HasuraCatalogSchema = "hdb_catalog"

// hasuraSourceCatalogVersion is the version InstallEventCatalog records in
// hdb_source_catalog_version when the table is empty. The catalog it creates is the state after
// pg_source_migrations/3_to_4.sql; recording 3 rather than 4 means a real graphql-engine that
// later finds this catalog re-runs 3_to_4 (a CREATE OR REPLACE of insert_event_log with the same
// body) and recreates its triggers, instead of refusing a version it does not know if its own
// latest were 3 (server/src-lib/Hasura/Backends/Postgres/DDL/Source.hs @
// ba353b0776fe29e7aed738cfca104cd701e3f88c, prepareCatalog / migrateSourceCatalogFrom).
const hasuraSourceCatalogVersion = "3"

// Querier runs SQL: *pgx.Conn, *pgxpool.Pool, *pgxpool.Conn and pgx.Tx all fit. The install
// functions and DeliverEvents act as whatever role the connection currently has.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// schemaSQL is how a schema is written in the generated SQL: Hasura's own text for hdb_catalog,
// a quoted identifier for any other.
func schemaSQL(schema string) string {
	if schema == HasuraCatalogSchema {
		return schema
	}
	return pgx.Identifier{schema}.Sanitize()
}

// InstallEventCatalog creates Hasura's event catalog in schema (normally HasuraCatalogSchema) as
// init_pg_source.sql does, brought to the state of the last source migration: the schema,
// gen_hasura_uuid, hdb_source_catalog_version (one row, written only when the table is empty),
// event_log and its indexes, event_invocation_logs, hdb_event_log_cleanups and insert_event_log.
// Every statement is idempotent (IF NOT EXISTS, OR REPLACE), so running it again changes nothing.
// It runs as the connection's current role, which must be allowed to create the schema (or own
// it) and ends up owning what it creates. Like Hasura it grants nothing, and unlike Hasura it
// does not create the pgcrypto extension: gen_random_uuid is built in since PostgreSQL 13.
func InstallEventCatalog(ctx context.Context, db Querier, schema string) error {
	if schema == "" {
		return errors.New("hasuratest: InstallEventCatalog: empty schema name")
	}
	s := schemaSQL(schema)
	_, err := db.Exec(ctx, strings.ReplaceAll(eventCatalogSQL, "{{schema}}", s))
	if err != nil {
		return fmt.Errorf("hasuratest: installing the event catalog in %s: %w", s, err)
	}
	return nil
}

// eventCatalogSQL is init_pg_source.sql with IF NOT EXISTS added, explicit names for the indexes
// Hasura leaves unnamed (the names PostgreSQL generates for them), and insert_event_log as
// pg_source_migrations/3_to_4.sql defines it. Hasura's comments are left out.
const eventCatalogSQL = `CREATE SCHEMA IF NOT EXISTS {{schema}};

CREATE OR REPLACE FUNCTION {{schema}}.gen_hasura_uuid() RETURNS uuid AS
'select gen_random_uuid()' LANGUAGE SQL;

CREATE TABLE IF NOT EXISTS {{schema}}.hdb_source_catalog_version(
  version TEXT NOT NULL,
  upgraded_on TIMESTAMPTZ NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS hdb_source_catalog_version_one_row
ON {{schema}}.hdb_source_catalog_version((version IS NOT NULL));

CREATE TABLE IF NOT EXISTS {{schema}}.event_log
(
  id TEXT DEFAULT {{schema}}.gen_hasura_uuid() PRIMARY KEY,
  schema_name TEXT NOT NULL,
  table_name TEXT NOT NULL,
  trigger_name TEXT NOT NULL,
  payload JSONB NOT NULL,
  delivered BOOLEAN NOT NULL DEFAULT FALSE,
  error BOOLEAN NOT NULL DEFAULT FALSE,
  tries INTEGER NOT NULL DEFAULT 0,
  created_at TIMESTAMP DEFAULT NOW(),
  locked TIMESTAMPTZ,
  next_retry_at TIMESTAMP,
  archived BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX IF NOT EXISTS event_log_trigger_name_idx ON {{schema}}.event_log (trigger_name);
CREATE INDEX IF NOT EXISTS event_log_fetch_events
  ON {{schema}}.event_log (locked NULLS FIRST, next_retry_at NULLS FIRST, created_at)
  WHERE delivered = 'f'
    and error = 'f'
    and archived = 'f'
;

CREATE TABLE IF NOT EXISTS {{schema}}.event_invocation_logs
(
  id TEXT DEFAULT {{schema}}.gen_hasura_uuid() PRIMARY KEY,
  trigger_name TEXT,
  event_id TEXT,
  status INTEGER,
  request JSON,
  response JSON,
  created_at TIMESTAMP DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS event_invocation_logs_event_id_idx ON {{schema}}.event_invocation_logs (event_id);

CREATE OR REPLACE FUNCTION
  {{schema}}.insert_event_log(schema_name text, table_name text, trigger_name text, op text, row_data json)
  RETURNS text AS $$
  DECLARE
    id text;
    payload json;
    session_variables json;
    server_version_num int;
    trace_context json;
  BEGIN
    id := gen_random_uuid();
    server_version_num := current_setting('server_version_num');
    IF server_version_num >= 90600 THEN
      session_variables := NULLIF(current_setting('hasura.user', 't'), '');
      trace_context := NULLIF(current_setting('hasura.tracecontext', 't'), '');
    ELSE
      BEGIN
        session_variables := current_setting('hasura.user');
      EXCEPTION WHEN OTHERS THEN
                  session_variables := NULL;
      END;
      BEGIN
        trace_context := current_setting('hasura.tracecontext');
      EXCEPTION WHEN OTHERS THEN
        trace_context := NULL;
      END;
    END IF;
    payload := json_build_object(
      'op', op,
      'data', row_data,
      'session_variables', session_variables,
      'trace_context', trace_context
    );
    INSERT INTO {{schema}}.event_log
                (id, schema_name, table_name, trigger_name, payload)
    VALUES
    (id, schema_name, table_name, trigger_name, payload);
    RETURN id;
  END;
$$ LANGUAGE plpgsql;

CREATE TABLE IF NOT EXISTS {{schema}}.hdb_event_log_cleanups
(
  id TEXT DEFAULT {{schema}}.gen_hasura_uuid() PRIMARY KEY,
  trigger_name TEXT NOT NULL,
  scheduled_at TIMESTAMP NOT NULL,
  deleted_event_logs INTEGER,
  deleted_event_invocation_logs INTEGER,
  status TEXT NOT NULL,
  CHECK (status IN ('scheduled', 'paused', 'completed', 'dead')),

  UNIQUE (trigger_name, scheduled_at)
);

INSERT INTO {{schema}}.hdb_source_catalog_version(version, upgraded_on)
  VALUES ('` + hasuraSourceCatalogVersion + `', NOW())
ON CONFLICT ((version IS NOT NULL)) DO NOTHING;
`

// ---- triggers ----

// eventOps are the operations that have a SQL trigger, in the order Hasura creates them
// (mkAllTriggersQ).
var eventOps = []string{"INSERT", "UPDATE", "DELETE"}

// validTriggerName is what Hasura accepts as an event trigger name: letters, digits,
// underscores and hyphens, at most 42 characters so that notify_hasura_<name>_INSERT fits
// PostgreSQL's 63-byte identifiers (the console's rule, frontend/libs/console/legacy-ce/src/lib/
// components/Services/Events/EventTriggers/Common/Tooltips.ts).
func validTriggerName(name string) error {
	if name == "" || len([]rune(name)) > 42 {
		return fmt.Errorf("event trigger name %q: must be 1 to 42 characters", name)
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' && r != '-' {
			return fmt.Errorf("event trigger name %q: only letters, digits, underscores and hyphens", name)
		}
	}
	return nil
}

// sqlTriggerName is the name of both the trigger function and the row trigger for one operation
// of an event trigger: Hasura's notify_hasura_<trigger>_<OP> (pgTriggerName) in hdb_catalog. In
// any other schema the name is prefixed with "<schema>_": trigger names are unique per table, and
// graphql-engine creates its own trigger only when none of that name exists on the table
// (mkTrigger) and, at startup, only when no function of that name exists in any schema
// (createMissingSQLTriggers queries pg_proc by proname alone). With Hasura's names, a catalog
// installed elsewhere for development would silently keep a real Hasura from installing its
// triggers on the same database, or the reverse.
func sqlTriggerName(schema, trigger, op string) (string, error) {
	name := "notify_hasura_" + trigger + "_" + op
	if schema != HasuraCatalogSchema {
		name = schema + "_" + name
	}
	if len(name) > 63 {
		return "", fmt.Errorf("hasuratest: %q is longer than PostgreSQL's 63-byte identifiers", name)
	}
	return name, nil
}

// column is a table column as the trigger function reads it.
type column struct {
	name string
	geo  bool // geometry or geography: delivered as GeoJSON
}

// InstallEventTriggers installs, in schema, the trigger function and the row trigger of every
// operation of every event trigger in m (all sources: the database db is taken to hold them all),
// exactly as graphql-engine does when it applies metadata: CREATE OR REPLACE FUNCTION
// <schema>.notify_hasura_<trigger>_<OP>() from the trigger.sql.shakespeare template, then CREATE
// TRIGGER ... AFTER <OP> ON <table> FOR EACH ROW unless the table already has a trigger of that
// name. Operations the trigger does not enable lose their function and trigger (DROP FUNCTION ...
// CASCADE, as Hasura's dropDanglingSQLTrigger), so running it again after a metadata change
// brings every listed trigger up to date; a trigger removed from the metadata altogether is left
// in place. Outside hdb_catalog the names carry a "<schema>_" prefix (see sqlTriggerName).
//
// The function body is Hasura's: data.new / data.old hold the operation's payload columns
// (row_to_json of NEW / OLD, geometry and geography as GeoJSON), and an UPDATE writes an event
// only when the row of the operation's listened columns changed, compared as records (NULL equals
// NULL; a listened json column, which has no equality operator, makes the comparison fall back
// to the binary *<> operator). It calls <schema>.insert_event_log, so InstallEventCatalog must
// have run. It runs as the connection's current role, which needs CREATE on schema and TRIGGER
// on the tables, and grants nothing. An unknown table or column, or a name Hasura would refuse,
// is an error and nothing is installed. Columns are listed in ordinal order; graphql-engine
// lists them in the order of its column map, which changes nothing but the text.
func InstallEventTriggers(ctx context.Context, db Querier, schema string, m *Metadata) error {
	if schema == "" {
		return errors.New("hasuratest: InstallEventTriggers: empty schema name")
	}
	var script strings.Builder
	for _, src := range m.Sources {
		for _, tbl := range src.Tables {
			if len(tbl.EventTriggers) == 0 {
				continue
			}
			cols, err := tableColumns(ctx, db, tbl.Schema, tbl.Name)
			if err != nil {
				return err
			}
			for _, et := range tbl.EventTriggers {
				if err := validTriggerName(et.Name); err != nil {
					return fmt.Errorf("hasuratest: %w", err)
				}
				for _, op := range eventOps {
					name, err := sqlTriggerName(schema, et.Name, op)
					if err != nil {
						return err
					}
					fn := schemaSQL(schema) + "." + pgx.Identifier{name}.Sanitize()
					spec := et.opSpec(op)
					if spec == nil {
						script.WriteString("DROP FUNCTION IF EXISTS " + fn + "() CASCADE;\n")
						continue
					}
					body, err := triggerFunctionSQL(schema, name, et, op, spec, cols)
					if err != nil {
						return err
					}
					script.WriteString(body)
					var exists bool
					err = db.QueryRow(ctx, `SELECT EXISTS (
						  SELECT 1 FROM pg_trigger
						  WHERE NOT tgisinternal
						  AND tgname = $1 AND tgrelid = (quote_ident($2) || '.' || quote_ident($3))::regclass)`,
						name, tbl.Schema, tbl.Name).Scan(&exists)
					if err != nil {
						return fmt.Errorf("hasuratest: looking for trigger %s: %w", name, err)
					}
					if !exists {
						fmt.Fprintf(&script, "CREATE TRIGGER %s AFTER %s ON %s FOR EACH ROW EXECUTE PROCEDURE %s();\n",
							pgx.Identifier{name}.Sanitize(), op, pgx.Identifier{tbl.Schema, tbl.Name}.Sanitize(), fn)
					}
				}
			}
		}
	}
	if script.Len() == 0 {
		return nil
	}
	// One simple-protocol Exec: the statements run in one implicit transaction.
	if _, err := db.Exec(ctx, script.String()); err != nil {
		return fmt.Errorf("hasuratest: installing event triggers in %s: %w", schemaSQL(schema), err)
	}
	return nil
}

func (et *EventTrigger) opSpec(op string) *OperationSpec {
	switch op {
	case "INSERT":
		return et.Insert
	case "UPDATE":
		return et.Update
	case "DELETE":
		return et.Delete
	}
	return nil
}

// tableColumns lists a table's columns in ordinal order.
func tableColumns(ctx context.Context, db Querier, schema, table string) ([]column, error) {
	rows, err := db.Query(ctx, `
		SELECT a.attname, t.typname IN ('geometry', 'geography')
		FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = to_regclass(quote_ident($1) || '.' || quote_ident($2))
		  AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, schema, table)
	if err != nil {
		return nil, fmt.Errorf("hasuratest: columns of %s.%s: %w", schema, table, err)
	}
	var cols []column
	var c column
	if _, err := pgx.ForEachRow(rows, []any{&c.name, &c.geo}, func() error {
		cols = append(cols, c)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("hasuratest: columns of %s.%s: %w", schema, table, err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("hasuratest: table %s.%s does not exist (or has no columns)", schema, table)
	}
	return cols, nil
}

// pickColumns resolves a column spec against the table (getColInfos: the table's order).
func pickColumns(spec Columns, cols []column, what string) ([]column, error) {
	if spec.All {
		return cols, nil
	}
	for _, n := range spec.Names {
		if !slices.ContainsFunc(cols, func(c column) bool { return c.name == n }) {
			return nil, fmt.Errorf("%s names column %q, which the table does not have", what, n)
		}
	}
	var out []column
	for _, c := range cols {
		if slices.Contains(spec.Names, c.name) {
			out = append(out, c)
		}
	}
	return out, nil
}

// rowExpression renders mkRowExp over the columns of OLD or NEW the way Hasura's SQL printer does:
// (SELECT  "e"  FROM  (SELECT  NEW."a" , NEW."b"        ) AS "e"      ).
func rowExpression(v string, cols []column) string {
	exprs := make([]string, len(cols))
	for i, c := range cols {
		ref := v + "." + pgx.Identifier{c.name}.Sanitize()
		if c.geo {
			// toJSONableExp: ST_AsGeoJSON(col, 15, 4)::json, aliased to the column's name.
			ref = "(ST_AsGeoJSON(" + ref + ", 15, 4 ))::json AS " + pgx.Identifier{c.name}.Sanitize()
		}
		exprs[i] = ref
	}
	return `(SELECT  "e"  FROM  (SELECT  ` + strings.Join(exprs, " , ") + `        ) AS "e"      )`
}

// pgFmtLit is Hasura's pgFmtLit: a single-quoted literal, prefixed with E and with doubled
// backslashes when the text has a backslash.
func pgFmtLit(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(q, `\`) {
		return "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}

// triggerFunctionSQL renders trigger.sql.shakespeare for one operation (mkTriggerFunctionQ).
// Hasura's two comments inside the body are left out. The trigger name goes into a literal
// unescaped, as in Hasura; validTriggerName keeps quotes out of it.
func triggerFunctionSQL(schema, name string, et *EventTrigger, op string, spec *OperationSpec, cols []column) (string, error) {
	where := fmt.Sprintf("event trigger %q %s", et.Name, strings.ToLower(op))
	listen, err := pickColumns(spec.Columns, cols, where+" columns")
	if err != nil {
		return "", fmt.Errorf("hasuratest: %w", err)
	}
	deliver, err := pickColumns(spec.Payload, cols, where+" payload")
	if err != nil {
		return "", fmt.Errorf("hasuratest: %w", err)
	}
	oldPayload, newPayload := "NULL", "NULL"
	if op != "INSERT" {
		oldPayload = "row_to_json(" + rowExpression("OLD", deliver) + " )"
	}
	if op != "DELETE" {
		newPayload = "row_to_json(" + rowExpression("NEW", deliver) + " )"
	}
	s := schemaSQL(schema)
	insert := fmt.Sprintf("PERFORM %s.insert_event_log(CAST(%s AS text), CAST(%s AS text), CAST('%s' AS text), TG_OP, _data);",
		s, pgFmtLit(et.Schema), pgFmtLit(et.Table), et.Name)
	return "CREATE OR REPLACE function " + s + "." + pgx.Identifier{name}.Sanitize() + `() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
  DECLARE
    _old record;
    _new record;
    _data json;
  BEGIN
    IF TG_OP = 'UPDATE' THEN
      _old := row(` + rowExpression("OLD", listen) + ` );
      _new := row(` + rowExpression("NEW", listen) + ` );
    ELSE
      _old := row((select 1));
      _new := row((select 1));
    END IF;
    _data := json_build_object(
      'old', ` + oldPayload + `,
      'new', ` + newPayload + `
    );
    BEGIN
      IF (TG_OP <> 'UPDATE') OR (_old <> _new) THEN
        ` + insert + `
      END IF;
      EXCEPTION WHEN undefined_function THEN
        IF (TG_OP <> 'UPDATE') OR (_old *<> _new) THEN
          ` + insert + `
        END IF;
    END;

    RETURN NULL;
  END;
$$;
`, nil
}
