// Package pgbouncer starts PgBouncer (Debian's package, or any pgbouncer binary on PATH) in
// transaction pooling mode in front of a test PostgreSQL server: the tests that prove tenantkit
// works behind a transaction pooler (docs/pooling.md) run through it.
//
// When no pgbouncer binary is installed, Start skips the test with a message saying what to
// install, unless TENANTKIT_REQUIRE_PGBOUNCER=1 (set by CI), which makes it fail instead.
package pgbouncer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequireEnv, set to 1, makes Start fail rather than skip when pgbouncer is not installed.
const RequireEnv = "TENANTKIT_REQUIRE_PGBOUNCER"

// Options configure one PgBouncer.
type Options struct {
	// PoolSize is default_pool_size: server connections per database and login role (default 4).
	PoolSize int
	// IgnoreStartupParameters are accepted from clients and dropped (ignore_startup_parameters):
	// how an operator makes a pooler accept what it cannot carry, silently losing it.
	IgnoreStartupParameters []string
	// Users are the login roles clients may connect as (trust authentication: PgBouncer still
	// wants to know them), besides the upstream URL's user.
	Users []string
	// MaxClientConn is max_client_conn: client connections beyond it are refused (default 2000).
	MaxClientConn int
}

// Bouncer is a running PgBouncer. It is stopped when the test that started it ends.
type Bouncer struct {
	// Port is where it listens, on 127.0.0.1.
	Port int
	// AdminUser is the login role allowed on its admin console (the upstream URL's user).
	AdminUser string

	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Binary returns the path of the pgbouncer binary: on PATH, or Debian's /usr/sbin/pgbouncer.
func Binary() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
}

// Require returns the pgbouncer binary, or ends the test: skipped with the reason, or failed when
// RequireEnv is 1 (CI), so that the pooler tests never vanish from CI unnoticed.
func Require(tb testing.TB) string {
	tb.Helper()
	bin, err := Binary()
	if err == nil {
		return bin
	}
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("%v: the PgBouncer tests cannot run, and %s=1 requires them", err, RequireEnv)
	}
	tb.Skipf("%v: PgBouncer tests skipped (%s=1 makes this a failure)", err, RequireEnv)
	return ""
}

// Start starts PgBouncer in transaction pooling mode in front of the server of upstream (a
// postgres:// URL of a role that may log in without a password, or with the URL's), forwarding
// every database name to the same database there. It is stopped when tb ends.
func Start(tb testing.TB, upstream string, o Options) *Bouncer {
	tb.Helper()
	bin := Require(tb)
	b, err := start(bin, upstream, o)
	if err != nil {
		tb.Fatalf("pgbouncer: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Stop(); err != nil {
			tb.Errorf("pgbouncer: %v", err)
		}
	})
	return b
}

func start(bin, upstream string, o Options) (_ *Bouncer, err error) {
	u, err := url.Parse(upstream)
	if err != nil || u.User == nil {
		return nil, errors.New("upstream must be a postgres:// URL with a user")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "5432"
	}
	dir, err := os.MkdirTemp("", "tenantkit-pgbouncer-")
	if err != nil {
		return nil, err
	}
	b := &Bouncer{AdminUser: u.User.Username(), dir: dir, done: make(chan struct{})}
	defer func() {
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			if len(log) > 0 {
				err = fmt.Errorf("%w\npgbouncer log:\n%s", err, log)
			}
			_ = b.Stop()
		}
	}()
	users := map[string]string{b.AdminUser: ""}
	if pw, ok := u.User.Password(); ok {
		users[b.AdminUser] = pw
	}
	for _, name := range o.Users {
		if _, ok := users[name]; !ok {
			users[name] = ""
		}
	}
	var userList strings.Builder
	for name, pw := range users {
		fmt.Fprintf(&userList, "%s %s\n", quote(name), quote(pw))
	}
	if o.PoolSize == 0 {
		o.PoolSize = 4
	}
	if o.MaxClientConn == 0 {
		o.MaxClientConn = 2000
	}
	if b.Port, err = freePort(); err != nil {
		return nil, err
	}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
admin_users = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = %d
ignore_startup_parameters = %s
server_login_retry = 1
stats_period = 1
log_connections = 0
log_disconnections = 0
logfile = %s
`, host, port, b.Port, filepath.Join(dir, "users.txt"), b.AdminUser, o.PoolSize, o.MaxClientConn,
		strings.Join(o.IgnoreStartupParameters, ","), filepath.Join(dir, "pgbouncer.log"))
	for name, content := range map[string]string{"pgbouncer.ini": ini, "users.txt": userList.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	b.cmd = exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	b.cmd.Dir = dir
	b.cmd.SysProcAttr = &syscall.SysProcAttr{}
	setDeathSignal(b.cmd.SysProcAttr) // no orphan when the test process dies
	if os.Geteuid() == 0 {
		// PgBouncer refuses to run as root: run it as the OS user "postgres", which Debian's
		// PostgreSQL packages create (and pglocal uses for initdb).
		pu, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and pgbouncer refuses to, but there is no OS user \"postgres\" to run it as: %w", err)
		}
		uid, _ := strconv.Atoi(pu.Uid)
		gid, _ := strconv.Atoi(pu.Gid)
		for _, name := range []string{"", "pgbouncer.ini", "users.txt"} {
			if err := os.Chown(filepath.Join(dir, name), uid, gid); err != nil {
				return nil, err
			}
		}
		b.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	out, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	b.cmd.Stdout, b.cmd.Stderr = out, out
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		_, err := b.Admin(ctx, "SHOW VERSION")
		if err == nil {
			return b, nil
		}
		select {
		case <-b.done:
			stderr, _ := os.ReadFile(filepath.Join(dir, "stderr.log"))
			return nil, fmt.Errorf("pgbouncer exited at start: %s", stderr)
		case <-ctx.Done():
			return nil, fmt.Errorf("pgbouncer does not answer on port %d: %w", b.Port, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL returns databaseURL (a URL of the upstream server) through the bouncer: the same user,
// database and parameters, at the bouncer's address.
func (b *Bouncer) URL(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		panic(fmt.Sprintf("pgbouncer: database URL: %v", err))
	}
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port))
	return u.String()
}

// Admin runs a command on PgBouncer's admin console (SHOW POOLS, KILL db, PAUSE, RESUME, …) and
// returns the rows it answers, each column by name.
func (b *Bouncer) Admin(ctx context.Context, command string) ([]map[string]string, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s@127.0.0.1:%d/pgbouncer?sslmode=disable&default_query_exec_mode=simple_protocol",
		url.PathEscape(b.AdminUser), b.Port))
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, command)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		row := map[string]string{}
		for i, v := range rows.RawValues() {
			row[rows.FieldDescriptions()[i].Name] = string(v)
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// Log returns what PgBouncer logged so far.
func (b *Bouncer) Log() string {
	log, _ := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log"))
	return string(log)
}

var stopMu sync.Mutex

// Stop ends PgBouncer (SIGTERM: immediate shutdown, every connection closed) and removes its directory.
func (b *Bouncer) Stop() error {
	stopMu.Lock()
	defer stopMu.Unlock()
	if b.cmd != nil && b.cmd.Process != nil {
		select {
		case <-b.done:
		default:
			_ = b.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-b.done:
			case <-time.After(5 * time.Second):
				_ = b.cmd.Process.Kill()
				<-b.done
			}
		}
	}
	return os.RemoveAll(b.dir)
}

// quote writes s as a double-quoted auth_file field.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
