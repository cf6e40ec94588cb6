package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/pgtest"
)

// usageCommands are the commands the usage text lists: the leading lower-case words of each entry.
func usageCommands(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(usage, "\n") {
		if !strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "   ") {
			continue // not an entry, or a continuation line
		}
		var words []string
		for _, w := range strings.Fields(l) {
			if !regexp.MustCompile(`^[a-z]+$`).MatchString(w) {
				break
			}
			words = append(words, w)
		}
		name := ""
		for n := len(words); n > 0 && name == ""; n-- {
			if c := strings.Join(words[:n], " "); slices.ContainsFunc(commands, func(x command) bool { return x.name == c }) {
				name = c
			}
		}
		if name == "" {
			t.Errorf("usage lists %q, which has no help (add it to commands in commands.go)", strings.TrimSpace(l))
			continue
		}
		out = append(out, name)
	}
	return out
}

// TestHelp: every command answers --help, -h and `help COMMAND` with its usage, flags and
// environment variables, without reading the configuration (a broken one changes nothing) and
// without connecting to anything; the usage text and the help agree on the commands.
func TestHelp(t *testing.T) {
	t.Setenv("DATABASE_URL", "not a url")
	t.Setenv("TENANTKIT_SECRET", "")
	t.Setenv("LOG_FORMAT", "xml")
	listed := usageCommands(t)
	for _, c := range commands {
		if !slices.Contains(listed, c.name) {
			t.Errorf("command %q has help but the usage text does not list it", c.name)
		}
		words := strings.Fields(c.name)
		var first string
		for i, args := range [][]string{append(slices.Clone(words), "--help"), append(slices.Clone(words), "-h"),
			append([]string{"help"}, words...), append(slices.Clone(words), "--user", "x", "--help")} {
			if i == 3 && c.flags == nil {
				continue
			}
			var out bytes.Buffer
			if err := run(context.Background(), args, &out); err != nil {
				t.Errorf("%v: %v", args, err)
				continue
			}
			help := out.String()
			if first == "" {
				first = help
			} else if help != first {
				t.Errorf("%v answers differently from %s --help", args, c.name)
			}
			if !strings.HasPrefix(help, "usage: tenantkit "+c.name) || strings.Contains(help, "config:") {
				t.Errorf("%v:\n%s", args, help)
			}
		}
		if c.flags != nil {
			fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
			c.flags(fs)
			fs.VisitAll(func(f *flag.Flag) {
				if !strings.Contains(first, "  -"+f.Name+" ") && !strings.Contains(first, "  -"+f.Name+"\n") {
					t.Errorf("%s --help does not list flag -%s:\n%s", c.name, f.Name, first)
				}
			})
		}
		if len(c.env) == 0 && !c.noEnv {
			t.Errorf("%s: no environment variables listed", c.name)
		}
		for _, v := range c.env {
			if !strings.Contains(first, "\n  "+v.name+" ") {
				t.Errorf("%s --help does not list %s", c.name, v.name)
			}
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out); err != nil || !strings.Contains(out.String(), "tenantkit <command> --help") {
		t.Errorf("tenantkit --help: %v\n%s", err, out.String())
	}
}

// TestServeHelpListsEveryVariable: serve's help lists every variable LoadConfig reads, and the
// README's Configuration table lists every one of them.
func TestServeHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	read := map[string]bool{}
	_, _ = LoadConfig(func(k string) string { read[k] = true; return validEnv()(k) })
	var listed []string
	for _, v := range serveVars {
		listed = append(listed, strings.Split(v.name, ", ")...)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range read {
		if !slices.Contains(listed, name) {
			t.Errorf("LoadConfig reads %s, which serve --help does not list (serveVars)", name)
		}
	}
	for _, name := range listed {
		if !read[name] && name != "GOGC" && name != "GOMEMLIMIT" {
			t.Errorf("serve --help lists %s, which LoadConfig does not read", name)
		}
		if !read[name] {
			continue
		}
		if !strings.Contains(string(readme), "| `"+name+"` |") {
			t.Errorf("README.md's Configuration table has no row for %s", name)
		}
	}
}

// TestLogFormat: LOG_FORMAT forces console or json and refuses anything else; unset, a terminal
// gets console lines and anything else JSON.
func TestLogFormat(t *testing.T) {
	t.Parallel()
	if _, err := LoadConfig(validEnv("LOG_FORMAT", "xml")); len(configLines(err, "LOG_FORMAT")) != 1 {
		t.Errorf("LOG_FORMAT=xml: %v", err)
	}
	for _, v := range []string{"", "console", "json"} {
		if _, err := LoadConfig(validEnv("LOG_FORMAT", v)); err != nil {
			t.Errorf("LOG_FORMAT=%q: %v", v, err)
		}
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0) // a terminal's master side
	if err != nil {
		t.Fatalf("no pseudo-terminal to test with: %v", err)
	}
	defer pty.Close()
	for _, c := range []struct {
		format string
		out    io.Writer
		want   string
	}{
		{"", &bytes.Buffer{}, logJSON}, {"", devNull, logJSON}, {"", pty, logConsole},
		{logJSON, pty, logJSON}, {logConsole, &bytes.Buffer{}, logConsole},
	} {
		if got := logFormat(c.format, c.out); got != c.want {
			t.Errorf("LOG_FORMAT %q to %T: %s, want %s", c.format, c.out, got, c.want)
		}
	}
}

// TestConsoleLogs runs serve with LOG_FORMAT=console and SMTP_URL unset: readable lines instead of
// JSON, and an invitation email printed as text with its link alone on a line, not escaped inside
// the log line; with LOG_FORMAT=json the same start is JSON lines.
func TestConsoleLogs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, format := range []string{logConsole, logJSON} {
		dbURL := pgtest.NewDB(t)
		env := map[string]string{"DATABASE_URL": dbURL, "TENANTKIT_SECRET": testSecret, "APP_URL": "http://app.test",
			"LISTEN_ADDR": "127.0.0.1:0", "LOG_FORMAT": format}
		cfg, err := LoadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		runCtx, stop := context.WithCancel(ctx)
		served := make(chan error, 1)
		go func() { served <- serve(runCtx, cfg, &out) }()
		addr := regexp.MustCompile(`addr=(http://\S+)|"addr":"(http://[^"]+)"`)
		base := ""
		for deadline := time.Now().Add(10 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if m := addr.FindStringSubmatch(out.String()); m != nil {
				base = m[1] + m[2]
			}
		}
		if base == "" {
			stop()
			t.Fatalf("%s: serve did not start:\n%s", format, out.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		for _, l := range lines {
			isJSON := json.Valid([]byte(l))
			if isJSON != (format == logJSON) {
				t.Errorf("LOG_FORMAT=%s: line %q", format, l)
			}
		}
		if format == logConsole {
			if !regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d INF tenantkit listening addr=http://`).MatchString(out.String()) {
				t.Errorf("console: no readable start line:\n%s", out.String())
			}
			inviteAndDeliver(t, dbURL, base)
			text := out.String()
			link := regexp.MustCompile(`(?m)^http://app\.test/invitations/accept\?token=[A-Za-z0-9_-]+$`)
			if !link.MatchString(text) {
				t.Errorf("console: no invitation link on a line of its own:\n%s", text)
			}
			for _, l := range strings.Split(text, "\n") {
				if strings.Contains(l, "INF") && strings.Contains(l, "token=") {
					t.Errorf("console: a log line carries the link: %s", l)
				}
			}
		}
		stop()
		if err := <-served; err != nil {
			t.Fatal(err)
		}
	}
}

// inviteAndDeliver creates a user, a tenant and an invitation through the service at base, as
// Hasura would, and delivers the invitation_email event Hasura's trigger logged.
func inviteAndDeliver(t *testing.T, dbURL, base string) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var owner string
	if err := pool.QueryRow(ctx, `INSERT INTO auth.users (email, email_verified) VALUES ('owner@example.com', true) RETURNING id::text`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	c := hasuratest.NewClient(metadata(t), map[string]string{"TENANTKIT_URL": base, "TENANTKIT_SECRET": testSecret, "TENANTKIT_GRAPHQL_URL": base + "/graphql"})
	var tenant struct{ TenantID string }
	res, err := c.Action(ctx, "createTenant", map[string]any{"name": "Acme", "slug": "acme-console"}, session(owner))
	if err != nil || res.JSON(&tenant) != nil || tenant.TenantID == "" {
		t.Fatalf("createTenant: %v %v", err, res)
	}
	if res, err := c.Action(ctx, "inviteMember", map[string]any{"tenantId": tenant.TenantID, "email": "kim@example.com", "role": "member"}, session(owner)); err != nil || res.Status != 200 {
		t.Fatalf("inviteMember: %v %v", err, res)
	}
	if _, err := c.DeliverEvents(ctx, pool, hasuratest.HasuraCatalogSchema); err != nil {
		t.Fatal(err)
	}
}

// TestUnreachableDatabase: serve and migrate against a database nothing listens for stop with one
// line naming the address, the variable and what to check, said once, and not the missing-role
// message.
func TestUnreachableDatabase(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	t.Setenv("DATABASE_URL", "postgres://tenantkit:pw@127.0.0.1:"+port+"/tenantkit")
	t.Setenv("TENANTKIT_SECRET", testSecret)
	t.Setenv("APP_URL", "http://app.test")
	t.Setenv("LISTEN_ADDR", "127.0.0.1:0")
	for _, args := range [][]string{{"serve"}, {"migrate", "up"}} {
		var out bytes.Buffer
		err := run(context.Background(), args, &out)
		if err == nil {
			t.Fatalf("%v: no error", args)
		}
		msg := err.Error()
		want := "cannot reach PostgreSQL at 127.0.0.1:" + port + " (DATABASE_URL): no PostgreSQL server is listening there (connection refused); check that PostgreSQL is running and that the host and port in DATABASE_URL are right"
		if msg != want {
			t.Errorf("%v:\n got: %s\nwant: %s", args, msg, want)
		}
		if out.Len() != 0 {
			t.Errorf("%v printed more:\n%s", args, out.String())
		}
	}
}

// TestDevListensOnLoopback: with the development secrets, neither the service nor the stand-in for
// Hasura listens beyond this machine unless told to.
func TestDevListensOnLoopback(t *testing.T) {
	t.Parallel()
	for name, addr := range map[string]string{"LISTEN_ADDR": devDefaults["LISTEN_ADDR"], "DEV_HASURA_ADDR": devHasuraAddr} {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			t.Errorf("dev's default %s is %q, not a loopback address", name, addr)
		}
	}
}

// TestOperatorHelpListsWhatTheyRead: the help of each operator command lists every variable the
// command reads (run against a database that does not answer, so it reads them all and stops).
func TestOperatorHelpListsWhatTheyRead(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runs := map[string]func(getenv func(string) string) error{
		"plans sync":   func(g func(string) string) error { return plansSync(ctx, g, io.Discard) },
		"usage report": func(g func(string) string) error { return usageReport(ctx, g, io.Discard) },
		"stripe reconcile": func(g func(string) string) error {
			return stripeReconcile(ctx, g, nil, io.Discard, io.Discard, reconcileOptions{})
		},
		"tenants purge":   func(g func(string) string) error { return tenantsPurge(ctx, g, io.Discard) },
		"maintenance run": func(g func(string) string) error { return maintenanceRun(ctx, g, nil, io.Discard, io.Discard) },
	}
	for _, c := range commands {
		fn, ok := runs[c.name]
		if !ok {
			continue
		}
		delete(runs, c.name)
		read := map[string]bool{}
		err := fn(func(k string) string {
			read[k] = true
			switch k {
			case "DATABASE_URL":
				return "postgres://tenantkit@127.0.0.1:1/none?connect_timeout=2"
			case "STRIPE_SECRET_KEY":
				return "sk_test_unused"
			}
			return ""
		})
		if err == nil {
			t.Errorf("%s ran against a database that does not answer", c.name)
		}
		for k := range read {
			if !slices.ContainsFunc(c.env, func(v envVar) bool { return v.name == k }) {
				t.Errorf("%s reads %s; its help does not list it", c.name, k)
			}
		}
	}
	for name := range runs {
		t.Errorf("no command %q in commands", name)
	}
}
