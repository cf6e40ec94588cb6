package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
)

// ConnectError says, in one line, why a login could not connect: the variable that holds the URL,
// the host and port (or socket) it names, what went wrong, and what to check. It never holds the
// password. pgx's own error lists every attempt (with sslmode=prefer, one with TLS and one
// without, so the same refusal appears twice); this keeps the first cause only.
type ConnectError struct {
	Var    string // DATABASE_URL or APP_DATABASE_URL
	Target string // host:port, or the socket directory
	User   string
	DB     string
	// Unreachable is set when nothing answered (refused, timed out, unknown host): the server is
	// down or the address is wrong, as opposed to a server that answered and refused the login.
	Unreachable bool
	Problem     string // what happened, e.g. "connection refused"
	Check       string // what to check
	Err         error
}

func (e *ConnectError) Error() string {
	if e.Unreachable {
		return fmt.Sprintf("cannot reach PostgreSQL at %s (%s): %s; check %s", e.Target, e.Var, e.Problem, e.Check)
	}
	return fmt.Sprintf("PostgreSQL at %s (%s) refused user %q on database %q: %s; check %s", e.Target, e.Var, e.User, e.DB, e.Problem, e.Check)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// ConnConfig parses databaseURL for a single connection (migrations, start-up checks, operator
// commands). The URL is the one the service's pools use, so pgxpool's own parameters
// (pool_max_conns and the other pool_ settings) are taken out: sent to PostgreSQL as settings,
// they would make it refuse the connection.
func ConnConfig(databaseURL string) (*pgx.ConnConfig, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	return cfg.ConnConfig, nil
}

// Connect opens a single connection to databaseURL as ConnConfig parses it.
func Connect(ctx context.Context, databaseURL string) (*pgx.Conn, error) {
	cfg, err := ConnConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// Reachable connects once to databaseURL (named by variable, e.g. "DATABASE_URL") and returns nil,
// or a *ConnectError saying why it could not.
func Reachable(ctx context.Context, variable, databaseURL string) error {
	cfg, err := ConnConfig(databaseURL)
	if err != nil {
		return tenantkit.Errorf(tenantkit.Invalid, "%s is malformed: %s", variable, redact(err))
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return describeConnect(variable, cfg.Config, err)
	}
	return conn.Close(ctx)
}

// describeConnect turns a failed connection attempt into a *ConnectError; any other error is
// returned as is.
func describeConnect(variable string, cfg pgconn.Config, err error) error {
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		return err
	}
	e := &ConnectError{Var: variable, Target: target(cfg), User: cfg.User, DB: cfg.Database, Err: err}
	var pgErr *pgconn.PgError
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &pgErr):
		switch pgErr.Code {
		case "28P01":
			e.Problem = "wrong password"
			e.Check = "the user and password in " + variable
		case "28000":
			e.Problem = pgErr.Message
			e.Check = "that role " + strconv.Quote(cfg.User) + " exists and may log in from this host (pg_hba.conf)"
		case "3D000":
			e.Problem = "the database does not exist"
			e.Check = "the database name in " + variable + " (create it with createdb; `tenantkit migrate up` does not)"
		case "53300":
			e.Problem = "the server has no connection slot left (" + pgErr.Message + ")"
			e.Check = "max_connections on the server and pool_max_conns in " + variable
		case "57P03":
			e.Problem = "the server is starting up or shutting down"
			e.Check = "the server's state, then try again"
			e.Unreachable = true
		default:
			e.Problem = pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
			e.Check = "the server's log"
		}
	case errors.As(err, &dnsErr):
		e.Unreachable = true
		e.Problem = fmt.Sprintf("unknown host %q", dnsErr.Name)
		e.Check = "the host in " + variable
	case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist):
		e.Unreachable = true
		e.Problem = "no PostgreSQL server is listening there (connection refused)"
		e.Check = "that PostgreSQL is running and that the host and port in " + variable + " are right"
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		e.Unreachable = true
		e.Problem = "no answer (timed out)"
		e.Check = "that the host and port in " + variable + " are right and that no firewall drops the connection"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		e.Unreachable = true
		e.Problem = "the host cannot be reached (no route)"
		e.Check = "the host in " + variable + " and the network"
	default:
		e.Unreachable = true
		e.Problem = firstCause(err)
		e.Check = "that PostgreSQL is running and that the host and port in " + variable + " are right"
	}
	return e
}

// target is the address cfg connects to: host:port, or the Unix socket directory and port.
func target(cfg pgconn.Config) string {
	if strings.HasPrefix(cfg.Host, "/") {
		return fmt.Sprintf("socket %s/.s.PGSQL.%d", cfg.Host, cfg.Port)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// firstCause is the innermost message of err's first chain, e.g. "connect: network is
// unreachable", without pgx's list of attempts.
func firstCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
