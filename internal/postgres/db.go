// Package postgres is tenantkit's PostgreSQL adapter: the connection pool, the two kinds of
// transaction (user-scoped under RLS, and the explicit system path), migrations, and the one place
// where pgx errors become tenantkit errors. SQL lives here and nowhere else.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

// The database roles the service switches to. See migrations/00001_roles.sql.
const (
	AppRole    = "tenantkit_app"
	SystemRole = "tenantkit_system"
)

// DefaultMaxConns is the pool size unless DATABASE_URL sets pool_max_conns.
const DefaultMaxConns = 16

// DefaultTimeouts are the session settings of the pool's connections unless DATABASE_URL sets them.
// Actions answer within Hasura's 30-second action timeout or not at all.
var DefaultTimeouts = map[string]string{
	"statement_timeout":                   "25s",
	"idle_in_transaction_session_timeout": "60s",
}

// DB is tenantkit's database: two pools, one per login role, so that an injected statement in user
// work cannot reach the system role (README "Database roles").
type DB struct {
	// Pool is the system pool (DATABASE_URL): WithSystem, WithSystemAs, QueryRowAsSystem and the
	// start-up and readiness checks.
	Pool *pgxpool.Pool
	// App is the user pool (APP_DATABASE_URL), whose login is a member of tenantkit_app only:
	// WithUser. Nil, or Pool itself, when the service runs with one login for both (the fallback).
	App *pgxpool.Pool

	pooler Pooler
	// sysSettings and appSettings are the set_config calls every transaction of Pool and App
	// begins with behind a transaction pooler (see configurePooled and pin); "" otherwise.
	sysSettings, appSettings string

	// boundaryWindow replaces billing.UsageBoundaryWindow when set (tests only).
	boundaryWindow time.Duration

	// members coalesces concurrent membership reads (membership.go).
	members memberships
}

// usageBoundaryWindow is how close to a month's end recordUsage claims its keys (insertUsage).
func (db *DB) usageBoundaryWindow() time.Duration {
	if db.boundaryWindow != 0 {
		return db.boundaryWindow
	}
	return billing.UsageBoundaryWindow
}

// Open connects the system pool to databaseURL and, unless appURL is empty, the user pool to appURL,
// and checks the login roles; the service refuses to start when they are wrong:
//   - each login can switch to the tenantkit role its pool uses, and neither role bypasses RLS;
//   - with appURL set, its login is neither a superuser nor BYPASSRLS, and is not a member of
//     tenantkit_system, so that inside a user transaction RESET ROLE, SET ROLE tenantkit_system or
//     set_config('role', …) gains nothing.
//
// With appURL empty, one pool serves both kinds of work (SeparateLogins reports false): that
// login can become tenantkit_system from inside a user transaction. Errors: invalid when a URL is
// malformed, a *ConnectError when the database cannot be reached or refuses the login, internal
// when the roles are wrong.
func Open(ctx context.Context, databaseURL, appURL string) (*DB, error) {
	return OpenWith(ctx, databaseURL, appURL, Options{})
}

// OpenWith is Open with options: behind a transaction pooler (o.Pooler), settings are applied in
// every transaction instead of when connecting, and no prepared statement outlives a round trip
// (docs/pooling.md). It also refuses to start when a setting sent when connecting did not reach
// PostgreSQL (a pooler dropped it).
func OpenWith(ctx context.Context, databaseURL, appURL string, o Options) (*DB, error) {
	pooler, err := ParsePooler(string(o.Pooler))
	if err != nil {
		return nil, tenantkit.Errorf(tenantkit.Invalid, "%s", err.Error())
	}
	pool, settings, sent, err := openPool(ctx, "DATABASE_URL", databaseURL, pooler)
	if err != nil {
		return nil, err
	}
	db := &DB{Pool: pool, App: pool, pooler: pooler, sysSettings: settings, appSettings: settings}
	appSent := sent
	if appURL != "" {
		if db.App, db.appSettings, appSent, err = openPool(ctx, "APP_DATABASE_URL", appURL, pooler); err != nil {
			pool.Close()
			return nil, err
		}
	}
	err = db.checkRoles(ctx)
	if err == nil {
		err = db.checkSettings(ctx, db.Pool, SystemRole, "DATABASE_URL", sent)
	}
	if err == nil && db.SeparateLogins() {
		err = db.checkSettings(ctx, db.App, AppRole, "APP_DATABASE_URL", appSent)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// openPool connects a pool to databaseURL (named name in errors) and returns it with the
// set_config calls its transactions begin with (behind a transaction pooler) and the names of the
// settings it sends when connecting (otherwise).
func openPool(ctx context.Context, name, databaseURL string, pooler Pooler) (*pgxpool.Pool, string, []string, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, "", nil, tenantkit.Errorf(tenantkit.Invalid, "%s is malformed: %s", name, redact(err))
	}
	if !strings.Contains(databaseURL, "pool_max_conns") {
		// pgxpool's default (4 on a 2-core machine) leaves the service waiting on round trips:
		// most of a request's time is spent waiting on the network, not on a CPU here or there.
		cfg.MaxConns = DefaultMaxConns
	}
	// Bounds, unless the URL sets them (e.g. ?statement_timeout=60s): a statement stuck behind
	// a lock, or a transaction left open, must not hold a pooled connection for ever. A statement
	// stopped this way is an unavailable error (retry later).
	for name, value := range DefaultTimeouts {
		if _, set := cfg.ConnConfig.RuntimeParams[name]; !set {
			cfg.ConnConfig.RuntimeParams[name] = value
		}
	}
	var pooled map[string]string
	var sent []string
	if pooler == TransactionPooler {
		if pooled, err = configurePooled(name, databaseURL, cfg); err != nil {
			return nil, "", nil, err
		}
	} else {
		sent = sentSettings(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, "", nil, fmt.Errorf("open database (%s): %w", name, err)
	}
	// Connect now, so that a server that cannot be reached is said so, once, before the role
	// checks (whose failure means something else: see describeConnect); a pooler refusing our
	// settings says what to set.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		var pe *pgconn.PgError
		if pooler == TransactionPooler || !errors.As(err, &pe) || pe.Code != "08P01" {
			if described := describeConnect(name, cfg.ConnConfig.Config, err); described != err {
				return nil, "", nil, described
			}
		}
		return nil, "", nil, connectError(name, pooler, err)
	}
	var settings string
	if pooled != nil {
		if settings, err = pin(ctx, pool, pooled); err != nil {
			pool.Close()
			return nil, "", nil, fmt.Errorf("%s: read the settings of a fresh session: %w", name, translate(err))
		}
	}
	return pool, settings, sent, nil
}

// app is the user pool: App, or Pool when the DB was built with one pool.
func (db *DB) app() *pgxpool.Pool {
	if db.App != nil {
		return db.App
	}
	return db.Pool
}

// SeparateLogins reports whether user work and system work connect with different login roles.
func (db *DB) SeparateLogins() bool { return db.app() != db.Pool }

// Close closes every connection of both pools.
func (db *DB) Close() {
	if db.SeparateLogins() {
		db.App.Close()
	}
	db.Pool.Close()
}

// Ping reports whether the database answers on both pools.
func (db *DB) Ping(ctx context.Context) error {
	for _, p := range []*pgxpool.Pool{db.Pool, db.app()} {
		if err := p.Ping(ctx); err != nil {
			return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "database unavailable", Err: err}
		}
	}
	return nil
}

func (db *DB) checkRoles(ctx context.Context) error {
	uses := []struct {
		pool *pgxpool.Pool
		role string
		url  string
	}{{db.app(), AppRole, "APP_DATABASE_URL"}, {db.Pool, SystemRole, "DATABASE_URL"}}
	if !db.SeparateLogins() {
		uses[0].url = "DATABASE_URL"
	}
	for _, u := range uses {
		var bypass bool
		err := pgx.BeginFunc(ctx, u.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+u.role); err != nil {
				return err
			}
			return tx.QueryRow(ctx, "SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&bypass)
		})
		if err != nil {
			return fmt.Errorf("cannot switch to role %s (run `tenantkit migrate up`, and grant the role to the login role of %s): %w", u.role, u.url, err)
		}
		if bypass {
			return fmt.Errorf("role %s can bypass row-level security; refusing to start", u.role)
		}
	}
	if !db.SeparateLogins() {
		return nil
	}
	// The user pool's login is what an injected statement in user work falls back to (RESET ROLE)
	// or tries to leave (SET ROLE): it must not be able to see past RLS itself, nor become the
	// system role. A superuser can become any role.
	var login string
	var super, bypass, system bool
	err := db.queryRow(ctx, db.App, func(row pgx.Row) error { return row.Scan(&login, &super, &bypass, &system) },
		`SELECT rolname::text, rolsuper, rolbypassrls, pg_has_role(rolname, $1, 'MEMBER')
		FROM pg_roles WHERE rolname = session_user`, SystemRole)
	if err != nil {
		return fmt.Errorf("check the login role of APP_DATABASE_URL: %w", err)
	}
	switch {
	case super:
		return fmt.Errorf("APP_DATABASE_URL: login role %s is a superuser, which can become any role; use a login that is a member of %s only (README \"Database roles\"); refusing to start", login, AppRole)
	case bypass:
		return fmt.Errorf("APP_DATABASE_URL: login role %s has BYPASSRLS; refusing to start", login)
	case system:
		return fmt.Errorf("APP_DATABASE_URL: login role %s is a member of %s, so an injected SET ROLE in user work would reach every tenant; REVOKE %s FROM %s (README \"Database roles\"); refusing to start", login, SystemRole, SystemRole, login)
	}
	return nil
}

// WithUser runs fn in a transaction as tenantkit_app, on the user pool, with hasura.user set to the
// session's variables, exactly as Hasura sets it, so that RLS applies to every statement fn runs.
// With separate logins (Open), no statement fn runs can leave tenantkit_app for a role that sees
// more. The transaction commits when fn returns nil; errors are translated (see translate).
func (db *DB) WithUser(ctx context.Context, s tenantkit.Session, fn func(pgx.Tx) error) error {
	claims, err := claimsOf(s)
	if err != nil {
		return err
	}
	return db.in(ctx, db.app(), AppRole, claims, fn)
}

// SystemRoleSQL is the first statement of QueryRowAsSystem's pipeline ($1: SystemRole), directly
// connected (behind a transaction pooler the pool's settings follow it).
const SystemRoleSQL = "SELECT set_config('role', $1, true), set_config('hasura.user', '', true)"

// QueryRowAsSystem runs one read-only statement as tenantkit_system in a single round trip: the
// role setting (with no caller; behind a transaction pooler, with the pool's settings too) and the
// statement are sent as one pipeline, which PostgreSQL runs as one implicit transaction, so the
// transaction-local settings end with it. For the hottest read, the caller's own membership
// (checkPermission), which its statement selects by the caller's id, so RLS would add its cost and
// no protection (docs/decisions.md); a transaction's four round trips (begin, role, statement,
// commit) would cost more than the statement. scan reads the row; errors are translated.
func (db *DB) QueryRowAsSystem(ctx context.Context, scan func(pgx.Row) error, sql string, args ...any) error {
	return db.querySystem(ctx, func(rows pgx.Rows) error {
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return err
			}
			return pgx.ErrNoRows
		}
		return scan(rows)
	}, sql, args...)
}

// querySystem is QueryRowAsSystem for a statement of any number of rows, which read reads.
func (db *DB) querySystem(ctx context.Context, read func(pgx.Rows) error, sql string, args ...any) error {
	batch := &pgx.Batch{}
	batch.Queue(SystemRoleSQL+db.sysSettings, SystemRole)
	batch.Queue(sql, args...)
	br := db.Pool.SendBatch(ctx, batch)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return translate(err)
	}
	rows, err := br.Query()
	if err == nil {
		err = read(rows)
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		_ = br.Close()
		return translate(err)
	}
	return translate(br.Close())
}

// WithSystem runs fn in a transaction as tenantkit_system: the explicit cross-tenant path for
// webhooks, event triggers, metrics and the few writes no member can make (creating a tenant,
// accepting an invitation). Every caller of WithSystem is a place to audit.
func (db *DB) WithSystem(ctx context.Context, fn func(pgx.Tx) error) error {
	return db.in(ctx, db.Pool, SystemRole, "", fn)
}

// WithSystemAs is WithSystem on behalf of a caller: hasura.user carries the caller's session so
// that triggers record who acted (audit_log.actor_id). RLS does not restrict the system role.
func (db *DB) WithSystemAs(ctx context.Context, s tenantkit.Session, fn func(pgx.Tx) error) error {
	claims, err := claimsOf(s)
	if err != nil {
		return err
	}
	return db.in(ctx, db.Pool, SystemRole, claims, fn)
}

func claimsOf(s tenantkit.Session) (string, error) {
	vars := s.Vars
	if vars == nil {
		vars = map[string]string{}
	}
	b, err := json.Marshal(vars)
	return string(b), err
}

func (db *DB) in(ctx context.Context, pool *pgxpool.Pool, role, claims string, fn func(pgx.Tx) error) error {
	// One round trip for the BEGIN and both settings (transaction-local), and behind a transaction
	// pooler the pool's own settings (timeouts): the begin query is sent as one simple-protocol
	// message, so the values are quoted literals (see quoteLiteral).
	begin := "BEGIN; SELECT set_config('role', " + quoteLiteral(role) + ", true), set_config('hasura.user', " + quoteLiteral(claims) + ", true)" + db.settingsOf(pool)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return translate(err)
	}
	defer conn.Release()
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{BeginQuery: begin}, fn)
	if isNoPartition(err) {
		// A backend can keep routing inserts by a partition list that lacks a partition attached
		// since (a usage batch found this month's partition missing, a concurrent one created it,
		// and every later insert on that backend still found none, while its catalog reads showed
		// the partition attached): the connection is closed, and the pool opens a new one.
		_ = conn.Conn().Close(context.WithoutCancel(ctx))
	}
	return translate(err)
}

// quoteLiteral quotes s as an escape-string constant (E'…'), whose meaning does not depend on
// standard_conforming_strings: backslashes and quotes are escaped, and a NUL (which no text value
// may hold) is dropped. Claims are JSON built from Hasura's session, so they may hold both quotes
// and backslashes (TestSettingsQuoting).
func quoteLiteral(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `'`, `\'`) + "'"
}

// uuidArray is ids as a parameter for a uuid[]: parsed into pgtype.UUID values, which pgx sends in
// binary, and as text with the simple protocol (behind a transaction pooler), where pgx encodes
// by Go type alone and has no plan for a [16]byte. pgx has no binary encoding of a string as a
// uuid: handed the []string, it fails the binary attempt first, formatting every element into the
// error it then discards, and falls back to text, which PostgreSQL parses again (for a usage
// batch, about a tenth of the service's CPU). If an id is not in canonical form (canonicalUUID),
// the strings go as they are, and PostgreSQL reads or refuses them as before: uuid.Parse alone
// would also accept forms PostgreSQL refuses (urn:uuid:…).
func uuidArray(ids []string) any {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		u, ok := canonicalUUID(id)
		if !ok {
			return ids
		}
		out[i] = u
	}
	return out
}

// canonicalUUID parses s when it is a uuid in its canonical form (36 characters, hyphens at 8, 13,
// 18 and 23, hex digits of either case), which PostgreSQL reads as the same uuid.
func canonicalUUID(s string) (pgtype.UUID, bool) {
	if len(s) != 36 {
		return pgtype.UUID{}, false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return pgtype.UUID{}, false
	}
	return pgtype.UUID{Bytes: u, Valid: true}, true
}

// translate turns pgx and PostgreSQL errors into tenantkit errors by SQLSTATE and constraint name,
// never by message. Errors that are already *tenantkit.Error pass through.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var te *tenantkit.Error
	if errors.As(err, &te) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return &tenantkit.Error{Code: tenantkit.NotFound, Message: "not found", Err: err}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "TK001":
			return &tenantkit.Error{Code: tenantkit.PlanLimit, Message: pe.Message, Err: err}
		case "TK002":
			return &tenantkit.Error{Code: tenantkit.LastOwner, Message: pe.Message, Err: err}
		case "TK003": // the usage fold's watermark is another server's (migration 00031): the operator's to fix
			return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "usage cannot be recorded or read until the operator rebases the usage fold (the database was copied from another server; see docs/operations.md): try again later", Err: err}
		case "42501": // insufficient_privilege
			// Row-level security refusing a row is the caller's problem (forbidden). Any other
			// privilege error (a missing grant, e.g. on Hasura's hdb_catalog) is the operator's:
			// never reported to the user as forbidden, and logged with its cause by the caller. PostgreSQL gives both the same SQLSTATE; the
			// routine that raised it (not localized) tells them apart.
			if pe.Routine == "ExecWithCheckOptions" {
				return &tenantkit.Error{Code: tenantkit.Forbidden, Message: "not allowed", Err: err}
			}
			// unavailable: it works again, and a retry succeeds, once the operator has fixed it.
			return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "the service is misconfigured (a database privilege is missing; its operator sees why on /readyz): try again later", Err: err}
		case "23505": // unique_violation
			return &tenantkit.Error{Code: tenantkit.Conflict, Message: "already exists", Err: err}
		case "23503", "23514", "22P02", "22001", "22021": // foreign key, check, invalid text, too long, NUL byte
			return &tenantkit.Error{Code: tenantkit.Invalid, Message: "invalid value", Err: err}
		case "57P01", "57P02", "57P03", "53300", "57014": // shutdown, crash, cannot connect now, too many connections, statement timeout or canceled
			return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "database unavailable", Err: err}
		case "25P03", "57P05": // idle_in_transaction_session_timeout, idle_session_timeout: the server closed the session
			return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "database unavailable", Err: err}
		case "26000", "42P05": // prepared statement does not exist, already exists
			// A statement prepared on one server connection and used on another: a transaction
			// pooler in front of PostgreSQL without DATABASE_POOLER=transaction (the operator's
			// to fix; logged with its cause). The service prepares no statement by name itself.
			return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "the service is misconfigured (a connection pooler it was not told about is in front of its database; its operator sees why in the log): try again later", Err: err}
		}
		if strings.HasPrefix(pe.Code, "08") { // class 08: connection exceptions
			return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "database unavailable", Err: err}
		}
		return err
	}
	if pgconn.SafeToRetry(err) || errors.Is(err, context.DeadlineExceeded) {
		return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "database unavailable", Err: err}
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "database unavailable", Err: err}
	}
	if connectionLost(err) {
		return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "database unavailable", Err: err}
	}
	return err
}

// connectionLost reports whether err says the connection broke under a statement (the server
// crashed, restarted or was stopped in the middle): the socket was reset or closed, or pgx had
// closed the connection after an earlier failure of the same operation. A crash sends no error
// message first, so these arrive without a SQLSTATE. If the statement was COMMIT, its outcome is
// unknown; a caller that retries meets its own committed work as a conflict.
func connectionLost(err error) bool {
	var ne net.Error
	return errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.As(err, &ne) || pgconn.Timeout(err)
}

// redact drops a connection string's password from a parse error.
func redact(err error) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return "cannot parse connection string"
	}
	return err.Error()
}
