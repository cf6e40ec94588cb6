package hasuratest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// hasuraRole stands in for Hasura's database user: it owns the event catalog and the trigger
// functions, and nothing grants tenantkit's roles anything on them.
const hasuraRole = "hasuratest_hasura"

const repoMetadata = "../../hasura/metadata"

func loadRepoMetadata(t *testing.T) *Metadata {
	t.Helper()
	m, err := Load(repoMetadata)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// eventDB returns a pool on a fresh migrated database in which hasuraRole has installed the event
// catalog and meta's triggers in schema hdb_catalog. setupSQL runs first, as the superuser
// (tables for test-only metadata).
func eventDB(t *testing.T, meta *Metadata, setupSQL string) *pgxpool.Pool {
	t.Helper()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if setupSQL != "" {
		mustExec(t, pool, setupSQL)
	}
	// Roles are cluster-wide and tests run in parallel: another test may create it concurrently.
	mustExec(t, pool, `DO $$ BEGIN
		  CREATE ROLE `+hasuraRole+` NOLOGIN;
		EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
		END $$`)
	// What Hasura's user has in a real deployment: it may create its schema, put triggers on the
	// tracked tables and write them (policies in place of its usual BYPASSRLS or ownership).
	mustExec(t, pool, `DO $$
		DECLARE r record;
		BEGIN
		  EXECUTE format('GRANT CREATE ON DATABASE %I TO `+hasuraRole+`', current_database());
		  GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON ALL TABLES IN SCHEMA public TO `+hasuraRole+`;
		  GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO `+hasuraRole+`;
		  IF to_regclass('auth.users') IS NOT NULL THEN -- tracked too (the domain_join trigger)
		    GRANT USAGE ON SCHEMA auth TO `+hasuraRole+`;
		    GRANT SELECT, TRIGGER ON auth.users TO `+hasuraRole+`;
		  END IF;
		  FOR r IN SELECT relname FROM pg_class
		           WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND relrowsecurity LOOP
		    EXECUTE format('CREATE POLICY hasuratest ON public.%I TO `+hasuraRole+` USING (true) WITH CHECK (true)', r.relname);
		  END LOOP;
		END $$`)
	installAsHasura(t, pool, HasuraCatalogSchema, meta)
	return pool
}

// installAsHasura installs the event catalog and meta's triggers in schema as hasuraRole.
func installAsHasura(t *testing.T, pool *pgxpool.Pool, schema string, meta *Metadata) {
	t.Helper()
	ctx := t.Context()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET ROLE "+hasuraRole); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "RESET ROLE") //nolint:errcheck
	if err := InstallEventCatalog(ctx, conn, schema); err != nil {
		t.Fatal(err)
	}
	if err := InstallEventTriggers(ctx, conn, schema, meta); err != nil {
		t.Fatal(err)
	}
}

func mustExec(t *testing.T, db Querier, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

// writeAs runs sql in a transaction as role (SET LOCAL ROLE), with hasura.user set to session
// when it is not empty, and returns the first column of the first row it returns (if any). It
// uses a new connection: PL/pgSQL caches the plans of a trigger function per session, and the
// schema's USAGE is checked only when a plan is made, so a session in which a more privileged
// role already ran the trigger would not show a missing USAGE grant (see TestEventWriterPrivileges).
func writeAs(ctx context.Context, pool *pgxpool.Pool, role, session, sql string, args ...any) (string, error) {
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
		return "", err
	}
	if session != "" {
		if _, err := tx.Exec(ctx, "SELECT set_config('hasura.user', $1, true)", session); err != nil {
			return "", err
		}
	}
	var out string
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return "", err
	}
	for rows.Next() {
		if out == "" {
			var v any
			if err := rows.Scan(&v); err != nil {
				return "", err
			}
			out = toText(v)
		}
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	return out, tx.Commit(ctx)
}

func toText(v any) string {
	switch v := v.(type) {
	case [16]byte:
		return uuidText(v)
	case nil:
		return ""
	case string:
		return v
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

func uuidText(b [16]byte) string {
	const hex = "0123456789abcdef"
	var s strings.Builder
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s.WriteByte('-')
		}
		s.WriteByte(hex[c>>4])
		s.WriteByte(hex[c&15])
	}
	return s.String()
}

// logRow is one hdb_catalog.event_log row.
type logRow struct {
	ID, Schema, Table, Trigger string
	Payload                    map[string]any
	Delivered, Error, Locked   bool
	Tries                      int
	NextRetryAt                *time.Time
}

func eventLog(t *testing.T, db Querier, schema string) []logRow {
	t.Helper()
	rows, err := db.Query(t.Context(), `SELECT id, schema_name, table_name, trigger_name, payload::text, delivered, error,
		  locked IS NOT NULL, tries, next_retry_at AT TIME ZONE current_setting('TIMEZONE')
		FROM `+schemaSQL(schema)+`.event_log ORDER BY created_at, id`)
	if err != nil {
		t.Fatal(err)
	}
	var out []logRow
	var r logRow
	var payload string
	if _, err := pgx.ForEachRow(rows, []any{&r.ID, &r.Schema, &r.Table, &r.Trigger, &payload, &r.Delivered, &r.Error, &r.Locked, &r.Tries, &r.NextRetryAt}, func() error {
		r.Payload = decodeJSON(t, []byte(payload))
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, b)
	}
	return m
}

// rowJSON is the row as row_to_json renders it, decoded.
func rowJSON(t *testing.T, db Querier, table, id string) map[string]any {
	t.Helper()
	var s string
	if err := db.QueryRow(t.Context(), `SELECT row_to_json(t)::text FROM `+table+` t WHERE id = $1`, id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return decodeJSON(t, []byte(s))
}

func wantSQLState(t *testing.T, err error, code, msg string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code || !strings.Contains(pe.Message, msg) {
		t.Fatalf("error %v, want SQLSTATE %s with %q", err, code, msg)
	}
}

const (
	insertTenant     = `INSERT INTO tenants (slug, name) VALUES ($1, 'Acme') RETURNING id`
	insertInvitation = `INSERT INTO tenant_invitations (tenant_id, email, role, invited_by, token_hash)
		VALUES ($1, $2, 'member', $3, sha256(convert_to($2, 'UTF8'))) RETURNING id`
)

func TestEventTriggerSQL(t *testing.T) {
	t.Parallel()
	meta := loadRepoMetadata(t)

	t.Run("an INSERT writes Hasura's event, session and trace context included", func(t *testing.T) {
		t.Parallel()
		pool := eventDB(t, meta, "")
		ctx := t.Context()
		session := `{"x-hasura-role":"user","x-hasura-user-id":"6a3c5f0e-8a41-4c59-9d2e-2f1f2b7f4d10"}`
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck
		mustExec(t, tx, "SET LOCAL ROLE "+hasuraRole)
		mustExec(t, tx, `SELECT set_config('hasura.user', $1, true), set_config('hasura.tracecontext', '{"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"}', true)`, session)
		var id string
		if err := tx.QueryRow(ctx, `INSERT INTO tenants (slug, name) VALUES ('acme', 'Acme') RETURNING id::text`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}

		log := eventLog(t, pool, HasuraCatalogSchema)
		if len(log) != 1 {
			t.Fatalf("%d events, want 1: %+v", len(log), log)
		}
		e := log[0]
		if e.Schema != "public" || e.Table != "tenants" || e.Trigger != "tenant_created" || e.Delivered || e.Error || e.Tries != 0 || e.Locked || e.NextRetryAt != nil || len(e.ID) != 36 {
			t.Fatalf("event row %+v", e)
		}
		want := map[string]any{
			"op":                "INSERT",
			"data":              map[string]any{"old": nil, "new": rowJSON(t, pool, "tenants", id)},
			"session_variables": decodeJSON(t, []byte(session)),
			"trace_context":     map[string]any{"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"},
		}
		if !reflect.DeepEqual(e.Payload, want) {
			t.Fatalf("payload\n got %v\nwant %v", e.Payload, want)
		}
	})

	t.Run("a setting left empty by an earlier SET LOCAL is null, not an error", func(t *testing.T) {
		t.Parallel()
		pool := eventDB(t, meta, "")
		ctx := t.Context()
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		// After a transaction-local set_config, the session keeps hasura.user defined as ''.
		mustExec(t, conn, `BEGIN; SELECT set_config('hasura.user', '{"x-hasura-role":"admin"}', true); COMMIT`)
		var setting string
		if err := conn.QueryRow(ctx, `SELECT current_setting('hasura.user', true)`).Scan(&setting); err != nil || setting != "" {
			t.Fatalf("hasura.user after the transaction: %q, %v (the case this test is about no longer arises)", setting, err)
		}
		mustExec(t, conn, `INSERT INTO tenants (slug, name) VALUES ('acme', 'Acme')`)
		log := eventLog(t, pool, HasuraCatalogSchema)
		if len(log) != 1 || log[0].Payload["session_variables"] != nil || log[0].Payload["trace_context"] != nil {
			t.Fatalf("events %+v", log)
		}
	})

	t.Run("invitation_email fires on INSERT and on UPDATE only when token_hash changes", func(t *testing.T) {
		t.Parallel()
		pool := eventDB(t, meta, "")
		ctx := t.Context()
		tenant, err := writeAs(ctx, pool, hasuraRole, "", insertTenant, "acme")
		if err != nil {
			t.Fatal(err)
		}
		inv, err := writeAs(ctx, pool, hasuraRole, "", insertInvitation, tenant, "ann@example.com", nil)
		if err != nil {
			t.Fatal(err)
		}
		count := func() []logRow {
			var out []logRow
			for _, e := range eventLog(t, pool, HasuraCatalogSchema) {
				if e.Trigger == "invitation_email" {
					out = append(out, e)
				}
			}
			return out
		}
		if got := count(); len(got) != 1 || got[0].Payload["op"] != "INSERT" || got[0].Table != "tenant_invitations" {
			t.Fatalf("after INSERT: %+v", got)
		}
		before := rowJSON(t, pool, "tenant_invitations", inv)
		// status and expires_at change, updated_at is touched: none of them is listened to.
		if _, err := writeAs(ctx, pool, hasuraRole, "", `UPDATE tenant_invitations SET status = 'revoked', expires_at = now() + interval '1 day' WHERE id = $1`, inv); err != nil {
			t.Fatal(err)
		}
		if got := count(); len(got) != 1 {
			t.Fatalf("an UPDATE that leaves token_hash alone wrote an event: %+v", got[1:])
		}
		// Setting token_hash to its own value is no change either.
		if _, err := writeAs(ctx, pool, hasuraRole, "", `UPDATE tenant_invitations SET token_hash = token_hash WHERE id = $1`, inv); err != nil {
			t.Fatal(err)
		}
		if got := count(); len(got) != 1 {
			t.Fatalf("an UPDATE to the same token_hash wrote an event: %+v", got[1:])
		}
		mid := rowJSON(t, pool, "tenant_invitations", inv)
		if _, err := writeAs(ctx, pool, hasuraRole, "", `UPDATE tenant_invitations SET token_hash = sha256('new'::bytea) WHERE id = $1`, inv); err != nil {
			t.Fatal(err)
		}
		got := count()
		if len(got) != 2 {
			t.Fatalf("%d invitation events after the token_hash change, want 2", len(got))
		}
		// The payload is the whole row (no payload spec), old and new.
		want := map[string]any{"old": mid, "new": rowJSON(t, pool, "tenant_invitations", inv)}
		if got[1].Payload["op"] != "UPDATE" || !reflect.DeepEqual(got[1].Payload["data"], want) {
			t.Fatalf("UPDATE payload %v, want data %v", got[1].Payload, want)
		}
		if reflect.DeepEqual(before, mid) {
			t.Fatal("the first UPDATE changed nothing, so the test proves nothing")
		}
	})

	t.Run("the functions and triggers are Hasura's", func(t *testing.T) {
		t.Parallel()
		pool := eventDB(t, meta, "")
		rows, err := pool.Query(t.Context(), `
			SELECT t.tgname, c.relname, p.oid::regprocedure::text, pg_get_userbyid(p.proowner), p.prosecdef, pg_get_triggerdef(t.oid)
			FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
			WHERE t.tgname LIKE 'notify_hasura_%' ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		var name, table, fn, owner, def string
		var secdef bool
		if _, err := pgx.ForEachRow(rows, []any{&name, &table, &fn, &owner, &secdef, &def}, func() error {
			if owner != hasuraRole || secdef {
				t.Errorf("%s: owner %s, security definer %v", fn, owner, secdef)
			}
			got = append(got, def)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		want := []string{
			`CREATE TRIGGER "notify_hasura_domain_join_INSERT" AFTER INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION hdb_catalog."notify_hasura_domain_join_INSERT"()`,
			`CREATE TRIGGER "notify_hasura_domain_join_UPDATE" AFTER UPDATE ON auth.users FOR EACH ROW EXECUTE FUNCTION hdb_catalog."notify_hasura_domain_join_UPDATE"()`,
			`CREATE TRIGGER "notify_hasura_invitation_email_INSERT" AFTER INSERT ON public.tenant_invitations FOR EACH ROW EXECUTE FUNCTION hdb_catalog."notify_hasura_invitation_email_INSERT"()`,
			`CREATE TRIGGER "notify_hasura_invitation_email_UPDATE" AFTER UPDATE ON public.tenant_invitations FOR EACH ROW EXECUTE FUNCTION hdb_catalog."notify_hasura_invitation_email_UPDATE"()`,
			`CREATE TRIGGER "notify_hasura_tenant_created_INSERT" AFTER INSERT ON public.tenants FOR EACH ROW EXECUTE FUNCTION hdb_catalog."notify_hasura_tenant_created_INSERT"()`,
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("triggers\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		var src string
		if err := pool.QueryRow(t.Context(), `SELECT prosrc FROM pg_proc WHERE proname = 'notify_hasura_invitation_email_UPDATE'`).Scan(&src); err != nil {
			t.Fatal(err)
		}
		for _, part := range []string{
			`_old := row((SELECT  "e"  FROM  (SELECT  OLD."token_hash"        ) AS "e"      ) );`,
			`'old', row_to_json((SELECT  "e"  FROM  (SELECT  OLD."id" , OLD."tenant_id" , OLD."email" , OLD."role" , OLD."invited_by" , OLD."status" , OLD."token_hash" , OLD."expires_at" , OLD."accepted_by" , OLD."accepted_at" , OLD."created_at" , OLD."updated_at"        ) AS "e"      ) ),`,
			`PERFORM hdb_catalog.insert_event_log(CAST('public' AS text), CAST('tenant_invitations' AS text), CAST('invitation_email' AS text), TG_OP, _data);`,
			`EXCEPTION WHEN undefined_function THEN`,
			`IF (TG_OP <> 'UPDATE') OR (_old *<> _new) THEN`,
		} {
			if !strings.Contains(src, part) {
				t.Errorf("the UPDATE function lacks\n%s\nin\n%s", part, src)
			}
		}
	})

	t.Run("installing again changes nothing; a metadata change drops what it no longer has", func(t *testing.T) {
		t.Parallel()
		pool := eventDB(t, meta, "")
		installAsHasura(t, pool, HasuraCatalogSchema, meta)
		installAsHasura(t, pool, HasuraCatalogSchema, meta)
		triggers := func() map[string]int {
			rows, err := pool.Query(t.Context(), `SELECT c.relname, count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
				WHERE t.tgname LIKE 'notify_hasura_%' GROUP BY 1`)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]int{}
			var rel string
			var n int
			if _, err := pgx.ForEachRow(rows, []any{&rel, &n}, func() error { out[rel] = n; return nil }); err != nil {
				t.Fatal(err)
			}
			return out
		}
		if got := triggers(); !reflect.DeepEqual(got, map[string]int{"tenants": 1, "tenant_invitations": 2, "users": 2}) {
			t.Fatalf("triggers after three installs: %v", got)
		}
		var version string
		if err := pool.QueryRow(t.Context(), `SELECT string_agg(version, ',') FROM hdb_catalog.hdb_source_catalog_version`).Scan(&version); err != nil || version != hasuraSourceCatalogVersion {
			t.Fatalf("hdb_source_catalog_version %q, %v", version, err)
		}
		if _, err := writeAs(t.Context(), pool, hasuraRole, "", insertTenant, "acme"); err != nil {
			t.Fatal(err)
		}
		if n := len(eventLog(t, pool, HasuraCatalogSchema)); n != 1 {
			t.Fatalf("%d events for one INSERT", n)
		}

		// invitation_email loses its update operation.
		changed, err := Load(repoMetadata)
		if err != nil {
			t.Fatal(err)
		}
		et, err := changed.EventTrigger("invitation_email")
		if err != nil {
			t.Fatal(err)
		}
		et.Update = nil
		installAsHasura(t, pool, HasuraCatalogSchema, changed)
		if got := triggers(); !reflect.DeepEqual(got, map[string]int{"tenants": 1, "tenant_invitations": 1, "users": 2}) {
			t.Fatalf("triggers after dropping the update operation: %v", got)
		}
		var fns int
		if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_proc WHERE proname = 'notify_hasura_invitation_email_UPDATE'`).Scan(&fns); err != nil || fns != 0 {
			t.Fatalf("%d UPDATE functions left, %v", fns, err)
		}
	})

	t.Run("a catalog in another schema lives beside Hasura's", func(t *testing.T) {
		t.Parallel()
		pool := eventDB(t, meta, "")
		const dev = "tenantkit_dev_events"
		installAsHasura(t, pool, dev, meta)
		if _, err := writeAs(t.Context(), pool, hasuraRole, "", insertTenant, "acme"); err != nil {
			t.Fatal(err)
		}
		hasura, other := eventLog(t, pool, HasuraCatalogSchema), eventLog(t, pool, dev)
		if len(hasura) != 1 || len(other) != 1 || !reflect.DeepEqual(hasura[0].Payload, other[0].Payload) {
			t.Fatalf("hdb_catalog events %+v, %s events %+v", hasura, dev, other)
		}
		var n int
		if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_trigger WHERE tgname = $1`, dev+"_notify_hasura_tenant_created_INSERT").Scan(&n); err != nil || n != 1 {
			t.Fatalf("%d prefixed triggers, %v", n, err)
		}
	})

	t.Run("an UPDATE listening to a json column falls back to binary comparison", func(t *testing.T) {
		t.Parallel()
		m := widgetMetadata(RetryConf{TimeoutSec: 60})
		et := m.Sources[0].Tables[0].EventTriggers[0]
		et.Update = &OperationSpec{Columns: Columns{All: true}, Payload: Columns{Names: []string{"id", "doc"}}}
		pool := eventDB(t, m, widgetsTable)
		ctx := t.Context()
		id, err := writeAs(ctx, pool, hasuraRole, "", `INSERT INTO widgets (name, doc) VALUES ('w', '{"a": 1}') RETURNING id`)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := writeAs(ctx, pool, hasuraRole, "", `UPDATE widgets SET doc = doc WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		if n := len(eventLog(t, pool, HasuraCatalogSchema)); n != 1 {
			t.Fatalf("%d events after an UPDATE that changed nothing, want 1", n)
		}
		if _, err := writeAs(ctx, pool, hasuraRole, "", `UPDATE widgets SET doc = '{"a": 2}' WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		log := eventLog(t, pool, HasuraCatalogSchema)
		if len(log) != 2 {
			t.Fatalf("%d events after changing doc, want 2", len(log))
		}
		want := map[string]any{"old": map[string]any{"id": json.Number(id), "doc": map[string]any{"a": json.Number("1")}},
			"new": map[string]any{"id": json.Number(id), "doc": map[string]any{"a": json.Number("2")}}}
		if !reflect.DeepEqual(log[1].Payload["data"], want) {
			t.Fatalf("payload data %v, want %v (payload columns only)", log[1].Payload["data"], want)
		}
	})

	t.Run("names and tables Hasura would refuse are errors", func(t *testing.T) {
		t.Parallel()
		pool := eventDB(t, &Metadata{}, widgetsTable)
		for _, c := range []struct {
			name string
			edit func(*EventTrigger)
			want string
		}{
			{"quote in the name", func(et *EventTrigger) { et.Name = "it's" }, "only letters"},
			{"name too long", func(et *EventTrigger) { et.Name = strings.Repeat("x", 43) }, "1 to 42"},
			{"unknown table", func(et *EventTrigger) { et.Table = "nope" }, "does not exist"},
			{"unknown column", func(et *EventTrigger) { et.Insert.Columns = Columns{Names: []string{"nope"}} }, `column "nope"`},
		} {
			m := widgetMetadata(RetryConf{})
			et := m.Sources[0].Tables[0].EventTriggers[0]
			c.edit(et)
			m.Sources[0].Tables[0].Name = et.Table
			err := InstallEventTriggers(t.Context(), pool, HasuraCatalogSchema, m)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
			}
		}
	})
}

// TestEventWriterPrivileges finds the privileges a role that writes a table needs under Hasura's
// triggers, by removing each in turn: tenantkit_system creating a tenant, tenantkit_app inviting a
// member as the tenant's owner.
func TestEventWriterPrivileges(t *testing.T) {
	t.Parallel()
	meta := loadRepoMetadata(t)
	const owner = "7d0c1c33-5a8e-4b8b-9d7e-3f5a2a1c9e01"
	ownerSession := `{"x-hasura-role":"user","x-hasura-user-id":"` + owner + `"}`

	type writer struct {
		role, session string
		write         func(ctx context.Context, pool *pgxpool.Pool, n int) error
	}
	writers := []writer{
		{"tenantkit_system", "", func(ctx context.Context, pool *pgxpool.Pool, n int) error {
			_, err := writeAs(ctx, pool, "tenantkit_system", "", insertTenant, "t-"+strings.Repeat("x", n+2))
			return err
		}},
		{"tenantkit_app", ownerSession, func(ctx context.Context, pool *pgxpool.Pool, n int) error {
			var tenant string
			if err := pool.QueryRow(ctx, `SELECT id::text FROM tenants WHERE slug = 'owned'`).Scan(&tenant); err != nil {
				return err
			}
			_, err := writeAs(ctx, pool, "tenantkit_app", ownerSession, insertInvitation, tenant, "m"+strings.Repeat("x", n)+"@example.com", owner)
			return err
		}},
	}
	// setup gives the writers' fixtures: a tenant owned by owner.
	setup := func(t *testing.T) *pgxpool.Pool {
		pool := eventDB(t, meta, "")
		mustExec(t, pool, `INSERT INTO auth.users (id, email) VALUES ($1, 'owner@example.com')`, owner)
		mustExec(t, pool, `INSERT INTO tenants (slug, name) VALUES ('owned', 'Owned')`)
		mustExec(t, pool, `INSERT INTO tenant_users (tenant_id, user_id, role) SELECT id, $1, 'owner' FROM tenants WHERE slug = 'owned'`, owner)
		mustExec(t, pool, `DELETE FROM hdb_catalog.event_log`)
		return pool
	}

	for _, w := range writers {
		t.Run(w.role, func(t *testing.T) {
			t.Parallel()

			t.Run("each grant is needed and the two together suffice", func(t *testing.T) {
				t.Parallel()
				pool := setup(t)
				ctx := t.Context()
				wantSQLState(t, w.write(ctx, pool, 1), "42501", "permission denied for schema hdb_catalog")
				mustExec(t, pool, `GRANT USAGE ON SCHEMA hdb_catalog TO `+w.role)
				wantSQLState(t, w.write(ctx, pool, 2), "42501", "permission denied for table event_log")
				mustExec(t, pool, `GRANT INSERT ON hdb_catalog.event_log TO `+w.role)
				if err := w.write(ctx, pool, 3); err != nil {
					t.Fatalf("with USAGE and INSERT: %v", err)
				}
				log := eventLog(t, pool, HasuraCatalogSchema)
				if len(log) != 1 {
					t.Fatalf("%d events, want 1", len(log))
				}
				if w.session != "" && !reflect.DeepEqual(log[0].Payload["session_variables"], decodeJSON(t, []byte(w.session))) {
					t.Fatalf("session_variables %v, want %s", log[0].Payload["session_variables"], w.session)
				}
			})

			t.Run("EXECUTE on insert_event_log comes from PUBLIC", func(t *testing.T) {
				t.Parallel()
				pool := setup(t)
				ctx := t.Context()
				mustExec(t, pool, `GRANT USAGE ON SCHEMA hdb_catalog TO `+w.role+`;
					GRANT INSERT ON hdb_catalog.event_log TO `+w.role+`;
					REVOKE EXECUTE ON FUNCTION hdb_catalog.insert_event_log(text, text, text, text, json) FROM PUBLIC`)
				wantSQLState(t, w.write(ctx, pool, 1), "42501", "permission denied for function insert_event_log")
				mustExec(t, pool, postgres.EventTriggerGrants(HasuraCatalogSchema, w.role))
				if err := w.write(ctx, pool, 2); err != nil {
					t.Fatalf("with EventTriggerGrants: %v", err)
				}
			})

			t.Run("INSERT on the five columns insert_event_log names is enough", func(t *testing.T) {
				t.Parallel()
				pool := setup(t)
				mustExec(t, pool, `GRANT USAGE ON SCHEMA hdb_catalog TO `+w.role+`;
					GRANT INSERT (id, schema_name, table_name, trigger_name, payload) ON hdb_catalog.event_log TO `+w.role)
				if err := w.write(t.Context(), pool, 1); err != nil {
					t.Fatal(err)
				}
			})

			t.Run("the trigger function itself needs no privilege", func(t *testing.T) {
				t.Parallel()
				pool := setup(t)
				mustExec(t, pool, `DO $$ DECLARE f regprocedure; BEGIN
					  FOR f IN SELECT oid::regprocedure FROM pg_proc WHERE proname LIKE 'notify_hasura_%' LOOP
					    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
					  END LOOP;
					END $$;
					GRANT USAGE ON SCHEMA hdb_catalog TO `+w.role+`;
					GRANT INSERT ON hdb_catalog.event_log TO `+w.role)
				if err := w.write(t.Context(), pool, 1); err != nil {
					t.Fatal(err)
				}
				if n := len(eventLog(t, pool, HasuraCatalogSchema)); n != 1 {
					t.Fatalf("%d events, want 1", n)
				}
			})
		})
	}
}

const widgetsTable = `CREATE TABLE public.widgets (id serial PRIMARY KEY, name text NOT NULL, doc json)`

// widgetMetadata is metadata with one trigger, widget_changed, on INSERT into public.widgets.
func widgetMetadata(rc RetryConf, headers ...Header) *Metadata {
	et := &EventTrigger{
		Name: "widget_changed", Source: "default", Schema: "public", Table: "widgets",
		Insert:  &OperationSpec{Columns: Columns{All: true}, Payload: Columns{All: true}},
		Webhook: "{{TENANTKIT_URL}}/events/widget_changed", Headers: headers, Retry: rc,
	}
	return &Metadata{Sources: []*Source{{Name: "default", Kind: "postgres", Tables: []*Table{
		{Schema: "public", Name: "widgets", EventTriggers: []*EventTrigger{et}},
	}}}}
}

// TestEventWriterPlanCache shows why the privilege tests write on fresh connections: PL/pgSQL
// keeps the plans of a trigger function for the life of the session, and USAGE on the schema is
// checked only while planning. Once a privileged role has run the trigger on a connection, a
// role without USAGE but with INSERT on event_log writes through it there, and fails on any
// new connection. A test that writes through a pool can therefore miss a missing USAGE grant.
func TestEventWriterPlanCache(t *testing.T) {
	t.Parallel()
	pool := eventDB(t, loadRepoMetadata(t), "")
	ctx := t.Context()
	mustExec(t, pool, `GRANT INSERT ON hdb_catalog.event_log TO tenantkit_system`)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	mustExec(t, conn, `INSERT INTO tenants (slug, name) VALUES ('first', 'First')`) // as the superuser
	mustExec(t, conn, `BEGIN; SET LOCAL ROLE tenantkit_system; INSERT INTO tenants (slug, name) VALUES ('second', 'Second'); COMMIT`)
	if n := len(eventLog(t, pool, HasuraCatalogSchema)); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
	_, err = writeAs(ctx, pool, "tenantkit_system", "", insertTenant, "third")
	wantSQLState(t, err, "42501", "permission denied for schema hdb_catalog")
}
