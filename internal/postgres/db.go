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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
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

// DB is a pool of connections to tenantkit's database.
type DB struct {
	Pool *pgxpool.Pool
}

// Open connects to databaseURL and checks that the login role can switch to both tenantkit roles
// and that neither can bypass RLS: the service refuses to start otherwise. Errors: unavailable when
// the database cannot be reached, internal when the roles are wrong.
func Open(ctx context.Context, databaseURL string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, tenantkit.Errorf(tenantkit.Invalid, "DATABASE_URL is malformed: %s", redact(err))
	}
	if !strings.Contains(databaseURL, "pool_max_conns") {
		// pgxpool's default (4 on a 2-core machine) leaves the service waiting on round trips:
		// most of a request's time is spent waiting on the network, not on a CPU here or there.
		cfg.MaxConns = DefaultMaxConns
	}
	// Bounds, unless DATABASE_URL sets them (e.g. ?statement_timeout=60s): a statement stuck behind
	// a lock, or a transaction left open, must not hold a pooled connection for ever. A statement
	// stopped this way is an unavailable error (retry later).
	for name, value := range DefaultTimeouts {
		if _, set := cfg.ConnConfig.RuntimeParams[name]; !set {
			cfg.ConnConfig.RuntimeParams[name] = value
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db := &DB{Pool: pool}
	if err := db.checkRoles(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Close closes every connection.
func (db *DB) Close() { db.Pool.Close() }

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.Pool.Ping(ctx); err != nil {
		return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "database unavailable", Err: err}
	}
	return nil
}

func (db *DB) checkRoles(ctx context.Context) error {
	for _, role := range []string{AppRole, SystemRole} {
		var bypass bool
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+role); err != nil {
				return err
			}
			return tx.QueryRow(ctx, "SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&bypass)
		})
		if err != nil {
			return fmt.Errorf("cannot switch to role %s (run `tenantkit migrate up`, and grant the role to the service's login role): %w", role, err)
		}
		if bypass {
			return fmt.Errorf("role %s can bypass row-level security; refusing to start", role)
		}
	}
	return nil
}

// WithUser runs fn in a transaction as tenantkit_app with hasura.user set to the session's
// variables, exactly as Hasura sets it, so that RLS applies to every statement fn runs. The
// transaction commits when fn returns nil; errors are translated (see translate).
func (db *DB) WithUser(ctx context.Context, s tenantkit.Session, fn func(pgx.Tx) error) error {
	claims, err := claimsOf(s)
	if err != nil {
		return err
	}
	return db.in(ctx, AppRole, claims, fn)
}

// QueryRowAsSystem runs one read-only statement as tenantkit_system in a single round trip: the
// role setting and the statement are sent as one pipeline, which PostgreSQL runs as one implicit
// transaction, so the transaction-local role ends with it. For the hottest read, the caller's own
// membership (checkPermission), which its statement selects by the caller's id, so RLS would add
// its cost and no protection (docs/decisions.md); a transaction's four round trips (begin, role,
// statement, commit) would cost more than the statement. scan reads the row; errors are translated.
func (db *DB) QueryRowAsSystem(ctx context.Context, scan func(pgx.Row) error, sql string, args ...any) error {
	batch := &pgx.Batch{}
	batch.Queue("SELECT set_config('role', $1, true)", SystemRole)
	batch.Queue(sql, args...)
	br := db.Pool.SendBatch(ctx, batch)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return translate(err)
	}
	if err := scan(br.QueryRow()); err != nil {
		_ = br.Close()
		return translate(err)
	}
	return translate(br.Close())
}

// WithSystem runs fn in a transaction as tenantkit_system: the explicit cross-tenant path for
// webhooks, event triggers, metrics and the few writes no member can make (creating a tenant,
// accepting an invitation). Every caller of WithSystem is a place to audit.
func (db *DB) WithSystem(ctx context.Context, fn func(pgx.Tx) error) error {
	return db.in(ctx, SystemRole, "", fn)
}

// WithSystemAs is WithSystem on behalf of a caller: hasura.user carries the caller's session so
// that triggers record who acted (audit_log.actor_id). RLS does not restrict the system role.
func (db *DB) WithSystemAs(ctx context.Context, s tenantkit.Session, fn func(pgx.Tx) error) error {
	claims, err := claimsOf(s)
	if err != nil {
		return err
	}
	return db.in(ctx, SystemRole, claims, fn)
}

func claimsOf(s tenantkit.Session) (string, error) {
	vars := s.Vars
	if vars == nil {
		vars = map[string]string{}
	}
	b, err := json.Marshal(vars)
	return string(b), err
}

func (db *DB) in(ctx context.Context, role, claims string, fn func(pgx.Tx) error) error {
	// One round trip for the BEGIN and both settings (transaction-local): the begin query is sent
	// as one simple-protocol message, so the values are quoted literals (see quoteLiteral).
	begin := "BEGIN; SELECT set_config('role', " + quoteLiteral(role) + ", true), set_config('hasura.user', " + quoteLiteral(claims) + ", true)"
	return translate(pgx.BeginTxFunc(ctx, db.Pool, pgx.TxOptions{BeginQuery: begin}, fn))
}

// quoteLiteral quotes s as an escape-string constant (E'…'), whose meaning does not depend on
// standard_conforming_strings: backslashes and quotes are escaped, and a NUL (which no text value
// may hold) is dropped. Claims are JSON built from Hasura's session, so they may hold both quotes
// and backslashes (TestSettingsQuoting).
func quoteLiteral(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `'`, `\'`) + "'"
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
