// Package pglocal finds a PostgreSQL server to run tests against: one named
// by an environment variable, one already running on 127.0.0.1:5432, or a
// throwaway cluster started with initdb.
package pglocal

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// forceEnv, set to "initdb", makes Find skip the environment variables and
// the local server and always start a throwaway cluster.
const forceEnv = "TENANTKIT_TEST_PG"

// localURLs are tried, in order, when no environment variable is set.
var localURLs = []string{
	"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
	"postgres://root@127.0.0.1:5432/postgres?sslmode=disable",
}

// Server is a reachable PostgreSQL server.
type Server struct {
	// URL is a postgres:// URL for a role allowed to CREATE DATABASE.
	URL string
	// Source says where the server came from: "env:<VAR>", "local" or "initdb".
	Source string
	// DataDir is the data directory of a cluster started by this process;
	// empty otherwise.
	DataDir string

	pgCtl    string // set only for a cluster this process started
	tmpDir   string // socket dir, log file and (by default) DataDir; removed by Stop
	osUser   string // OS user that runs initdb and pg_ctl; "" = current user
	opts     string // the server options pg_ctl start passes on (port, socket dir, tuning)
	logFile  string
	started  bool
	stopOnce sync.Once
	stopErr  error
}

// Options configures Find.
type Options struct {
	// EnvVars are checked in order; the first non-empty one wins. If it names
	// a server that cannot be reached, Find fails instead of falling back.
	EnvVars []string
	// DataDir is where the initdb fallback cluster lives. An existing cluster
	// there is reused and kept by Stop. "" means a fresh temporary directory
	// that Stop removes.
	DataDir string
	// Port is the TCP port of the fallback cluster; 0 picks a free one.
	Port int
}

// Find returns a PostgreSQL server, trying in order: the variables in
// o.EnvVars, a server on 127.0.0.1:5432 (as role postgres, then root), and a
// throwaway cluster created with initdb and started with pg_ctl. Setting
// TENANTKIT_TEST_PG=initdb skips straight to the throwaway cluster.
// Call Stop when done.
func Find(ctx context.Context, o Options) (*Server, error) {
	force := os.Getenv(forceEnv)
	if force != "" && force != "initdb" {
		return nil, fmt.Errorf("pglocal: %s=%q: the only supported value is \"initdb\"", forceEnv, force)
	}
	if force == "" {
		for _, name := range o.EnvVars {
			u := os.Getenv(name)
			if u == "" {
				continue
			}
			if err := probe(ctx, u, 10*time.Second); err != nil {
				return nil, fmt.Errorf("pglocal: server from $%s: %w", name, err)
			}
			return &Server{URL: u, Source: "env:" + name}, nil
		}
		for _, u := range localURLs {
			if probe(ctx, u, 2*time.Second) == nil {
				return &Server{URL: u, Source: "local"}, nil
			}
		}
	}
	initdb, pgCtl, ok := findBinaries()
	if !ok {
		envVar := "TEST_DATABASE_URL"
		if len(o.EnvVars) > 0 {
			envVar = o.EnvVars[0]
		}
		if force != "" {
			return nil, fmt.Errorf("pglocal: %s=initdb but initdb and pg_ctl were not found in PATH or /usr/lib/postgresql/*/bin: install PostgreSQL server binaries (Debian: apt-get install postgresql)", forceEnv)
		}
		return nil, fmt.Errorf("pglocal: no PostgreSQL found: set %s, start a server on 127.0.0.1:5432, or install PostgreSQL server binaries (Debian: apt-get install postgresql) so a throwaway cluster can be started with initdb", envVar)
	}
	s, err := startCluster(ctx, initdb, pgCtl, o)
	if err != nil {
		return nil, fmt.Errorf("pglocal: start throwaway cluster with %s: %w", initdb, err)
	}
	return s, nil
}

// ErrNoBinaries is returned (wrapped) by StartCluster when initdb and pg_ctl are not installed.
var ErrNoBinaries = errors.New("pglocal: initdb and pg_ctl were not found in PATH or /usr/lib/postgresql/*/bin: install PostgreSQL server binaries (Debian: apt-get install postgresql)")

// StartCluster always starts a new cluster with initdb and pg_ctl, ignoring
// environment variables and any running server: a cluster of its own that a
// test may stop and start again (StopServer, StartServer) without disturbing
// other tests. Call Stop when done.
func StartCluster(ctx context.Context, o Options) (*Server, error) {
	initdb, pgCtl, ok := findBinaries()
	if !ok {
		return nil, ErrNoBinaries
	}
	s, err := startCluster(ctx, initdb, pgCtl, o)
	if err != nil {
		return nil, fmt.Errorf("pglocal: start cluster with %s: %w", initdb, err)
	}
	return s, nil
}

// StopServer stops a cluster this process started, as an outage would, and
// keeps its data directory so that StartServer can bring it back: mode is
// pg_ctl's shutdown mode, "fast" (sessions are terminated, every committed
// transaction is kept) or "immediate" (a crash; the cluster runs with
// synchronous_commit=off, so the last acknowledged commits may be lost unless
// the database sets it on: ALTER DATABASE … SET synchronous_commit = on). It
// returns once the server has exited. Not safe for concurrent use with
// StartServer or Stop.
func (s *Server) StopServer(ctx context.Context, mode string) error {
	if s == nil || s.pgCtl == "" || !s.started {
		return errors.New("pglocal: StopServer: not a running cluster started by this process")
	}
	if err := s.run(ctx, s.pgCtl, "stop", "-D", s.DataDir, "-m", mode, "-w", "-t", "30"); err != nil {
		return fmt.Errorf("pglocal: stop server: %w", err)
	}
	s.started = false
	return nil
}

// StartServer starts a cluster stopped by StopServer again, on the same port
// and data directory, and returns once it accepts connections.
func (s *Server) StartServer(ctx context.Context) error {
	if s == nil || s.pgCtl == "" || s.started {
		return errors.New("pglocal: StartServer: not a cluster stopped by StopServer")
	}
	s.started = true // from here on Stop must stop it, even if it fails to come up
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("pglocal: start server: %w", err)
	}
	return nil
}

// Stop stops the cluster this process started and removes its temporary
// directory (including DataDir unless Options.DataDir was set). It is a no-op
// for servers found elsewhere, and safe to call more than once.
func (s *Server) Stop() error {
	if s == nil || s.pgCtl == "" {
		return nil
	}
	s.stopOnce.Do(func() {
		var errs []error
		if s.started {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.run(ctx, s.pgCtl, "stop", "-D", s.DataDir, "-m", "fast", "-w"); err != nil {
				errs = append(errs, err)
			}
		}
		if err := os.RemoveAll(s.tmpDir); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			s.stopErr = fmt.Errorf("pglocal: stop cluster: %w", err)
		}
	})
	return s.stopErr
}

// WithDatabase returns databaseURL with its database name replaced by
// dbname, keeping everything else (credentials, host, query parameters).
func WithDatabase(databaseURL, dbname string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the URL, password included
		}
		return "", fmt.Errorf("pglocal: invalid database URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", errors.New("pglocal: database URL must start with postgres:// or postgresql://")
	}
	if dbname == "" {
		return "", errors.New("pglocal: empty database name")
	}
	u.Path, u.RawPath = "/"+dbname, ""
	return u.String(), nil
}

// probe connects to databaseURL and checks that its role may create databases.
func probe(ctx context.Context, databaseURL string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var ok bool
	err = conn.QueryRow(ctx, "select rolsuper or rolcreatedb from pg_roles where rolname = current_user").Scan(&ok)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("role is not allowed to CREATE DATABASE")
	}
	return nil
}

// findBinaries looks for initdb and pg_ctl in PATH, then in
// /usr/lib/postgresql/<version>/bin, newest version first.
func findBinaries() (initdb, pgCtl string, ok bool) {
	initdb, err1 := exec.LookPath("initdb")
	pgCtl, err2 := exec.LookPath("pg_ctl")
	if err1 == nil && err2 == nil {
		return initdb, pgCtl, true
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(version(b), version(a)) })
	for _, dir := range dirs {
		initdb, pgCtl = filepath.Join(dir, "initdb"), filepath.Join(dir, "pg_ctl")
		if isExecutable(initdb) && isExecutable(pgCtl) {
			return initdb, pgCtl, true
		}
	}
	return "", "", false
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// startCluster creates (unless o.DataDir already holds one) and starts a
// cluster listening on 127.0.0.1 only, tuned for speed over durability.
func startCluster(ctx context.Context, initdb, pgCtl string, o Options) (_ *Server, err error) {
	tmp, err := os.MkdirTemp("", "tenantkit-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Source: "initdb", DataDir: o.DataDir, pgCtl: pgCtl, tmpDir: tmp}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if s.DataDir == "" {
		s.DataDir = filepath.Join(tmp, "data")
	}
	// initdb and pg_ctl run in tmp (see run): a relative DataDir would land there, and be removed
	// with it by Stop.
	if s.DataDir, err = filepath.Abs(s.DataDir); err != nil {
		return nil, err
	}
	// initdb and postgres refuse to run as root, so run them as "postgres".
	var uid, gid = -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and initdb refuses to run as root, but there is no OS user \"postgres\" to run it as (create one, e.g. useradd --system postgres): %w", err)
		}
		s.osUser = u.Username
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		if err := os.Chown(tmp, uid, gid); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(s.DataDir), 0o755); err != nil {
			return nil, err
		}
		if err := os.Mkdir(s.DataDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if err := os.Chown(s.DataDir, uid, gid); err != nil {
			return nil, err
		}
		err := s.run(ctx, initdb, "-D", s.DataDir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--no-locale")
		if err != nil {
			return nil, err
		}
	}
	port := o.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	s.logFile = filepath.Join(tmp, "postgres.log")
	// pg_ctl passes these options through /bin/sh, hence the quoting.
	s.opts = fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off", port, shellQuote([]string{tmp}))
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	s.started = true
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// start runs pg_ctl start with the cluster's options and waits until the
// server accepts connections.
func (s *Server) start(ctx context.Context) error {
	if err := s.run(ctx, s.pgCtl, "start", "-D", s.DataDir, "-l", s.logFile, "-w", "-t", "30", "-o", s.opts); err != nil {
		log, _ := os.ReadFile(s.logFile)
		return fmt.Errorf("%w\nserver log:\n%s", err, log)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := probe(ctx, s.URL, 2*time.Second)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("cluster does not accept connections: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs a PostgreSQL binary, as s.osUser if set, and returns its output
// in the error if it fails.
func (s *Server) run(ctx context.Context, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	if s.osUser != "" {
		if runuser, err := exec.LookPath("runuser"); err == nil {
			cmd = exec.CommandContext(ctx, runuser, append([]string{"-u", s.osUser, "--", bin}, args...)...)
		} else {
			cmd = exec.CommandContext(ctx, "su", s.osUser, "-s", "/bin/sh", "-c", shellQuote(append([]string{"exec", bin}, args...)))
		}
	}
	cmd.Dir = s.tmpDir // a directory the OS user can enter
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func shellQuote(words []string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
