package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
)

// Pooler says what stands between the service and PostgreSQL (DATABASE_POOLER; README "Behind a
// connection pooler", docs/pooling.md).
type Pooler string

const (
	// NoPooler: the service's connections are PostgreSQL sessions of their own (a direct
	// connection, or a pooler in session mode that passes the startup settings on, which
	// PgBouncer does not). Settings are sent once, when connecting, and pgx caches prepared
	// statements per connection.
	NoPooler Pooler = "none"
	// TransactionPooler: a pooler that hands a server connection to a client for one transaction
	// at a time (PgBouncer's pool_mode = transaction). Nothing may outlive a transaction:
	// settings are applied in every transaction (SET LOCAL, in the round trip that begins it) and
	// no prepared statement is kept (PooledQueryMode unless the URL chooses another safe mode).
	TransactionPooler Pooler = "transaction"
)

// ParsePooler reads DATABASE_POOLER: "" or "none", or "transaction".
func ParsePooler(s string) (Pooler, error) {
	switch Pooler(s) {
	case "", NoPooler:
		return NoPooler, nil
	case TransactionPooler:
		return TransactionPooler, nil
	}
	return NoPooler, errors.New("DATABASE_POOLER must be none (direct connections) or transaction (behind PgBouncer, or another transaction pooler)")
}

// Options are Open's choices beyond the two URLs.
type Options struct {
	// Pooler is what stands between the service and PostgreSQL; "" is NoPooler.
	Pooler Pooler
}

// PooledQueryMode is pgx's query mode behind a transaction pooler unless the URL sets
// default_query_exec_mode: every statement is parsed, bound and run in one round trip as the
// unnamed statement, with its parameters in text form, so nothing is left on the server
// connection and nothing is sent outside the round trip that carries the settings.
// docs/pooling.md has the measured cost of each mode.
const PooledQueryMode = pgx.QueryExecModeExec

// pooledModes are the query modes that keep nothing on a server connection and send every
// statement in the round trip (and so the implicit or explicit transaction) that applies the
// settings. Refused: cache_statement keeps named prepared statements on the connection;
// describe_exec describes in one round trip and runs in the next, which outside a transaction may
// be another connection; cache_describe describes each new statement in a round trip of its own,
// which outside a transaction runs without the service's settings, so a statement stuck there
// behind a lock would wait for ever (measured: TestPoolerTimeouts hangs in that mode).
var pooledModes = map[string]pgx.QueryExecMode{
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
}

// pgbouncerParams are the startup parameters PgBouncer keeps per client and restores on every
// server connection it hands out (its "varcache"); it refuses any other ("unsupported startup
// parameter") unless told to ignore it, and then it is silently lost.
var pgbouncerParams = []string{"application_name", "client_encoding", "datestyle", "standard_conforming_strings", "timezone"}

// pinned are the settings every transaction behind a transaction pooler sets, whether or not
// the URL does: a session-level SET left on a server connection by whoever used it before (an
// injected statement, another program with the same login) would otherwise reach the next
// transaction. Those the URL leaves unset are pinned to the value a fresh session of the login
// has (pg_settings.reset_val: PostgreSQL's default, or the role's or database's), read at start.
// role and hasura.user are set by every transaction anyway.
var pinned = []string{"idle_in_transaction_session_timeout", "lock_timeout", "search_path", "statement_timeout"}

// configurePooled makes cfg fit a transaction pooler: the settings PgBouncer cannot carry leave
// the startup packet and are returned, to be applied in every transaction; the query mode is
// PooledQueryMode unless the URL chose a safe one.
func configurePooled(name, databaseURL string, cfg *pgxpool.Config) (map[string]string, error) {
	// pgx.ParseConfig has already consumed default_query_exec_mode: read it again, raw.
	raw, err := pgconn.ParseConfig(databaseURL)
	if err != nil {
		return nil, tenantkit.Errorf(tenantkit.Invalid, "%s is malformed: %s", name, redact(err))
	}
	if mode, set := raw.RuntimeParams["default_query_exec_mode"]; set {
		if _, ok := pooledModes[mode]; !ok {
			return nil, fmt.Errorf("%s: default_query_exec_mode=%s is not safe behind a transaction pooler (DATABASE_POOLER=transaction): it sends statements outside the round trip that applies the settings, or keeps them on a server connection that other clients get next; use exec (the default) or simple_protocol (docs/pooling.md)", name, mode)
		}
	} else {
		cfg.ConnConfig.DefaultQueryExecMode = PooledQueryMode
	}
	settings := map[string]string{}
	for name, value := range cfg.ConnConfig.RuntimeParams {
		if !slices.Contains(pgbouncerParams, strings.ToLower(name)) {
			settings[name] = value
			delete(cfg.ConnConfig.RuntimeParams, name)
		}
	}
	return settings, nil
}

// pin adds to settings the pinned ones it lacks, with the value a fresh session has, and returns
// them as set_config calls, in name order, each transaction-local:
// ", set_config('lock_timeout', E'0', true), …".
func pin(ctx context.Context, pool *pgxpool.Pool, settings map[string]string) (string, error) {
	var missing []string
	for _, name := range pinned {
		if _, set := settings[name]; !set {
			missing = append(missing, name)
		}
	}
	rows, _ := pool.Query(ctx, `SELECT name, reset_val FROM pg_settings WHERE name = ANY($1)`, missing)
	var name, value string
	_, err := pgx.ForEachRow(rows, []any{&name, &value}, func() error {
		settings[name] = value
		return nil
	})
	if err != nil {
		return "", err
	}
	names := slices.Sorted(maps.Keys(settings))
	var b strings.Builder
	for _, name := range names {
		b.WriteString(", set_config(" + quoteLiteral(name) + ", " + quoteLiteral(settings[name]) + ", true)")
	}
	return b.String(), nil
}

// settingsOf is the set_config calls each transaction on pool begins with ("" without a
// transaction pooler, whose connections carry their settings from the start).
func (db *DB) settingsOf(pool *pgxpool.Pool) string {
	if pool == db.Pool {
		return db.sysSettings
	}
	return db.appSettings
}

// queryRow runs one statement on pool outside a transaction and scans its row. Behind a
// transaction pooler, the pool's settings are applied in the same round trip: both statements are
// sent as one pipeline, which PostgreSQL runs as one implicit transaction, so the settings end
// with it and the statement is bounded by statement_timeout like any other.
func (db *DB) queryRow(ctx context.Context, pool *pgxpool.Pool, scan func(pgx.Row) error, sql string, args ...any) error {
	settings := db.settingsOf(pool)
	if settings == "" {
		return scan(pool.QueryRow(ctx, sql, args...))
	}
	batch := &pgx.Batch{}
	batch.Queue("SELECT" + strings.TrimPrefix(settings, ","))
	batch.Queue(sql, args...)
	br := pool.SendBatch(ctx, batch)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return err
	}
	if err := scan(br.QueryRow()); err != nil {
		_ = br.Close()
		return err
	}
	return br.Close()
}

// checkSettings makes sure every statement runs with the settings DATABASE_URL asks for (the
// default timeouts included), and refuses to start otherwise:
//   - behind a transaction pooler, a transaction that applies them must succeed (an invalid
//     value, or a setting the role may not change, stops the service here rather than failing
//     every transaction);
//   - without one, PostgreSQL must have received them when connecting: a pooler that ignores
//     startup parameters (PgBouncer's ignore_startup_parameters) would silently drop them, and
//     with them the statement timeout.
func (db *DB) checkSettings(ctx context.Context, pool *pgxpool.Pool, role, name string, sent []string) error {
	if db.pooler == TransactionPooler {
		err := db.in(ctx, pool, role, "", func(pgx.Tx) error { return nil })
		if err != nil {
			return fmt.Errorf("%s: cannot apply its settings in a transaction (DATABASE_POOLER=transaction): %w", name, err)
		}
		return nil
	}
	if len(sent) == 0 {
		return nil
	}
	var lost []string
	err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(name ORDER BY name), '{}') FROM pg_settings
		WHERE lower(name) = ANY($1) AND source <> 'client'`, sent).Scan(&lost)
	if err != nil {
		return fmt.Errorf("%s: read the session settings: %w", name, translate(err))
	}
	if len(lost) > 0 {
		return fmt.Errorf("%s: PostgreSQL did not receive the settings sent when connecting (%s): a connection pooler in front of it drops them (e.g. PgBouncer's ignore_startup_parameters), and with them the statement timeout; set DATABASE_POOLER=transaction so that they are applied in every transaction (README \"Behind a connection pooler\"); refusing to start",
			name, strings.Join(lost, ", "))
	}
	return nil
}

// sentSettings are the lower-cased names of the settings cfg sends when connecting that
// pg_settings knows (custom settings, with a dot, are not checked).
func sentSettings(cfg *pgxpool.Config) []string {
	var names []string
	for name := range cfg.ConnConfig.RuntimeParams {
		if !strings.Contains(name, ".") {
			names = append(names, strings.ToLower(name))
		}
	}
	slices.Sort(names)
	return names
}

// connectError explains a failure to connect at start-up; a pooler's refusal of a startup
// parameter (SQLSTATE 08P01, sent by PgBouncer for its own errors) gets the fix.
func connectError(name string, pooler Pooler, err error) error {
	msg := "cannot connect (" + name + ")"
	var pe *pgconn.PgError
	if pooler != TransactionPooler && errors.As(err, &pe) && pe.Code == "08P01" {
		msg += ", a connection pooler refused: if it is PgBouncer (in either pool mode), set DATABASE_POOLER=transaction (README \"Behind a connection pooler\")"
	}
	return &tenantkit.Error{Code: tenantkit.Unavailable, Message: msg, Err: err}
}
