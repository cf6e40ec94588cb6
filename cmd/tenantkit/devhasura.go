package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// devEventSchema is where `tenantkit dev` installs its stand-in for Hasura's event catalog and
// trigger functions: never hdb_catalog, and its triggers are named <schema>_notify_hasura_…, so
// that nothing of it can be mistaken for Hasura's own by a real Hasura connected later. It is
// dropped (with its triggers) when dev stops, and any leftover when dev starts.
const devEventSchema = "tenantkit_dev_hasura"

// devMetadataDir is the Hasura metadata dev reads its event triggers from (TENANTKIT_HASURA_METADATA
// overrides it).
func devMetadataDir() string {
	if dir := os.Getenv("TENANTKIT_HASURA_METADATA"); dir != "" {
		return dir
	}
	return "hasura/metadata"
}

// devEvents stands in for Hasura's event delivery in development: Hasura's own trigger SQL (the
// same functions Hasura installs, in devEventSchema) records each write of a table with an event
// trigger, and a loop delivers them to the service with Hasura's payloads, headers and retries.
type devEvents struct {
	pool   *pgxpool.Pool
	client *hasuratest.Client
	names  []string
}

// startDevEvents installs the stand-in, unless Hasura's own event triggers are in this database
// (a real Hasura delivers them) or the metadata cannot be read. The grants are those `tenantkit
// hasura grant` gives on hdb_catalog, on devEventSchema.
func startDevEvents(ctx context.Context, dbURL, dir string, stdout io.Writer) (*devEvents, error) {
	if _, err := os.Stat(dir + "/databases"); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stdout, "tenantkit dev: no Hasura metadata at %s (set TENANTKIT_HASURA_METADATA): events are not delivered\n", dir)
		return nil, nil
	}
	meta, err := hasuratest.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("hasura metadata %s: %w", dir, err)
	}
	pool, err := devPool(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	d := &devEvents{pool: pool, client: hasuratest.NewClient(meta, nil)}
	installed, err := d.install(ctx, meta)
	if err != nil || !installed {
		pool.Close()
		if err == nil {
			fmt.Fprintln(stdout, "tenantkit dev: Hasura's own event catalog is in this database: its Hasura delivers the events")
		}
		return nil, err
	}
	return d, nil
}

// devPool opens the pool of dev's stand-ins for Hasura. Like Hasura behind a transaction pooler
// (HASURA_GRAPHQL_USE_PREPARED_STATEMENTS=false, https://github.com/hasura/graphql-engine/issues/7741),
// they keep no prepared statement on a server connection, so that they work whether DATABASE_URL
// reaches PostgreSQL directly or through PgBouncer in transaction mode: pgx's default statement
// cache would find its statements gone, or already there, on the next server connection.
func devPool(ctx context.Context, dbURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	return pgxpool.NewWithConfig(ctx, cfg)
}

// install puts the stand-in in place, in one transaction, after removing any leftover of a dev
// that did not stop cleanly; false when Hasura's own event catalog is in the database.
func (d *devEvents) install(ctx context.Context, meta *hasuratest.Metadata) (bool, error) {
	var hasura bool
	if err := d.pool.QueryRow(ctx, `SELECT to_regclass('hdb_catalog.event_log') IS NOT NULL`).Scan(&hasura); err != nil || hasura {
		return false, err
	}
	for _, et := range meta.ListEventTriggers() {
		d.names = append(d.names, et.Name)
	}
	if err := d.remove(ctx); err != nil {
		return false, err
	}
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if err := hasuratest.InstallEventCatalog(ctx, tx, devEventSchema); err != nil {
			return err
		}
		if err := hasuratest.InstallEventTriggers(ctx, tx, devEventSchema, meta); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, postgres.EventTriggerGrants(devEventSchema, postgres.AppRole, postgres.SystemRole))
		return err
	})
	return err == nil, err
}

// run delivers the events to the service at baseURL until ctx ends, logging each delivery.
func (d *devEvents) run(ctx context.Context, baseURL, secret string, log zerolog.Logger) {
	d.client.Env = map[string]string{"TENANTKIT_URL": baseURL, "TENANTKIT_SECRET": secret, "TENANTKIT_GRAPHQL_URL": baseURL + "/graphql"}
	d.client.RunEventDelivery(ctx, d.pool, devEventSchema, 250*time.Millisecond, func(r hasuratest.Delivered) {
		switch {
		case r.Err != nil && r.EventID == "":
			log.Warn().Err(r.Err).Msg("dev: event delivery failed")
		case r.Result == hasuratest.EventDelivered:
			log.Debug().Str("event", r.EventID).Str("trigger", r.Trigger).Int("status", r.Status).Msg("dev: event delivered")
		default:
			log.Warn().Err(r.Err).Str("event", r.EventID).Str("trigger", r.Trigger).Int("status", r.Status).
				Str("result", string(r.Result)).Time("next_retry_at", r.NextRetryAt).Msg("dev: event not delivered")
		}
	})
}

// remove drops the stand-in: its schema, and with it (CASCADE) its trigger functions, the row
// triggers on the tracked tables and the recorded events.
func (d *devEvents) remove(ctx context.Context) error {
	_, err := d.pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+devEventSchema+` CASCADE`)
	return err
}

// close removes the stand-in and closes its pool.
func (d *devEvents) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := d.remove(ctx)
	d.pool.Close()
	return err
}
