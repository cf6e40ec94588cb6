package hasuratest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
)

// HasuraRole stands in for Hasura's database user in test databases: it owns the event catalog
// and the trigger functions, and grants tenantkit's roles only what `tenantkit hasura grant`
// grants. It is created cluster-wide (NOLOGIN) the first time it is needed.
const HasuraRole = "hasuratest_hasura"

// NoGrantsEnv, set to 1, leaves out the grants, to show that without them the suite fails.
const NoGrantsEnv = "TENANTKIT_TEST_NO_HASURA_GRANTS"

// eventSQLVersion changes whenever the SQL that InstallEventCatalog and InstallEventTriggers
// write changes, so that test templates built with the old SQL are not reused.
const eventSQLVersion = "hasura-events-1"

// WithEventTriggers wraps a test-template migration (see internal/pgtest: Migrate and TemplateKey)
// so that every test database also carries Hasura's event catalog and the event triggers of the
// metadata in metadataDir, installed as Hasura installs them: by HasuraRole, which owns them and
// grants nothing, then followed by grants (the SQL grants, run as HasuraRole as an operator runs
// `tenantkit hasura grant` as Hasura's user). Every test that writes a table with an event trigger
// then goes through Hasura's own trigger function. It returns the migration and its template key.
func WithEventTriggers(metadataDir, grants string, migrate func(ctx context.Context, databaseURL string) error, key string) (func(ctx context.Context, databaseURL string) error, string) {
	noGrants := os.Getenv(NoGrantsEnv) == "1"
	sum := sha256.New()
	_ = filepath.WalkDir(metadataDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(path)
			fmt.Fprintf(sum, "%s\x00%d\x00", path, len(b))
			sum.Write(b)
		}
		return nil
	})
	key += "\x00" + eventSQLVersion + "\x00" + hex.EncodeToString(sum.Sum(nil)) + "\x00" + grants + fmt.Sprint("\x00no-grants=", noGrants)
	return func(ctx context.Context, databaseURL string) error {
		if err := migrate(ctx, databaseURL); err != nil {
			return err
		}
		meta, err := Load(metadataDir)
		if err != nil {
			return err
		}
		conn, err := pgx.Connect(ctx, databaseURL)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if !noGrants {
			return InstallAsHasura(ctx, conn, meta, grants)
		}
		return InstallAsHasura(ctx, conn, meta, "")
	}, key
}

// InstallAsHasura creates HasuraRole when missing, gives it what Hasura's user has in a real
// deployment to install its event triggers (it may create its schema and put triggers on the
// tracked tables), installs the event catalog and meta's triggers in hdb_catalog as that role, and
// then, still as that role, runs grants (none when empty). conn must be a superuser's.
func InstallAsHasura(ctx context.Context, conn *pgx.Conn, meta *Metadata, grants string) error {
	// Roles are cluster-wide and test processes run in parallel: another may create it concurrently.
	if _, err := conn.Exec(ctx, `DO $$ BEGIN
		  CREATE ROLE `+HasuraRole+` NOLOGIN;
		EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
		END $$`); err != nil {
		return err
	}
	tables, schemas := map[string]bool{}, map[string]bool{}
	for _, et := range meta.ListEventTriggers() {
		tables[pgx.Identifier{et.Schema, et.Table}.Sanitize()] = true
		schemas[pgx.Identifier{et.Schema}.Sanitize()] = true
	}
	if _, err := conn.Exec(ctx, `DO $$ BEGIN
		  EXECUTE format('GRANT CREATE ON DATABASE %I TO `+HasuraRole+`', current_database());
		END $$`); err != nil {
		return err
	}
	// Hasura's user reaches the schemas of the tables it tracks (auth for auth.users).
	for sch := range schemas {
		if _, err := conn.Exec(ctx, "GRANT USAGE ON SCHEMA "+sch+" TO "+HasuraRole); err != nil {
			return err
		}
	}
	for tbl := range tables {
		if _, err := conn.Exec(ctx, "GRANT TRIGGER ON "+tbl+" TO "+HasuraRole); err != nil {
			return err
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+HasuraRole); err != nil {
		return err
	}
	if err := InstallEventCatalog(ctx, tx, HasuraCatalogSchema); err != nil {
		return err
	}
	if err := InstallEventTriggers(ctx, tx, HasuraCatalogSchema, meta); err != nil {
		return err
	}
	if grants != "" {
		if _, err := tx.Exec(ctx, grants); err != nil {
			return fmt.Errorf("grants as %s: %w", HasuraRole, err)
		}
	}
	return tx.Commit(ctx)
}
