package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/tenantkit/tenantkit/internal/hasurarules"
	"github.com/tenantkit/tenantkit/internal/maintenance"
	"github.com/tenantkit/tenantkit/internal/smoke"
)

// envVar is an environment variable a command reads, with what it does.
type envVar struct{ name, meaning string }

// serveVars are the variables of `tenantkit serve` (LoadConfig), in the README's order; a test
// keeps them, LoadConfig and the README's Configuration table in step.
var serveVars = []envVar{
	{"DATABASE_URL", "required: postgres:// URL of the system login (a member of tenantkit_system)"},
	{"APP_DATABASE_URL", "recommended: postgres:// URL of the user-work login (a member of tenantkit_app only)"},
	{"DATABASE_POOLER", "none (default) or transaction: the URLs go through PgBouncer or another transaction pooler"},
	{"TENANTKIT_SECRET", "required: the shared secret Hasura sends as X-Tenantkit-Secret (16+ characters)"},
	{"APP_URL", "required: base URL of the frontend, for links in emails and Stripe redirects"},
	{"LISTEN_ADDR", "address to listen on (default :8081)"},
	{"LOG_LEVEL", "trace, debug, info (default), warn or error"},
	{"LOG_FORMAT", "console or json (default: console when the log goes to a terminal, json otherwise)"},
	{"INVITATION_TTL", "how long invitation links stay valid, 1h to 2160h (default 168h)"},
	{"INVITATION_REQUIRE_VERIFIED_EMAIL", "true (default) or false: accepting needs auth.users.email_verified"},
	{"INVITATION_SENDS_PER_HOUR", "invitation emails one tenant may send per hour (default 50)"},
	{"INVITATION_RESENDS_PER_DAY", "resends of one invitation per 24 hours (default 5)"},
	{"TRIAL_PLAN", "key of the plan a new tenant tries (default starter)"},
	{"TRIAL_DAYS", "length of a new tenant's trial, 0 to 365 (default 14)"},
	{"SMTP_URL", "smtp:// or smtps:// mail server; unset: emails are written to the log"},
	{"STRIPE_SECRET_KEY", "Stripe API key; unset: billing is off"},
	{"STRIPE_API_URL", "Stripe API address override (stripe-mock in development)"},
	{"STRIPE_WEBHOOK_SECRET", "whsec_…: verifies Stripe-Signature (required with STRIPE_SECRET_KEY)"},
	{"STRIPE_AUTOMATIC_TAX", "true turns on Stripe Tax for checkouts (default false)"},
	{"TENANTKIT_PUBLIC_URL", "base URL browsers reach tenantkit at, for export download links; unset: exports are off"},
	{"EXPORT_LINK_MINUTES", "how long an export link stays valid, in minutes (default 15)"},
	{"TENANT_RESTORE_DAYS", "how long a deleted tenant can be restored before it is purged, 0 to 365 days (default 30)"},
	{"TENANT_PURGE_INTERVAL", "how often serve purges the deleted tenants whose restore window ended, 1m to 24h (default 1h)"},
	{"USAGE_RETENTION_MONTHS", "months of usage events kept before the current one, 13 to 120 (default 13)"},
	{"MAINTENANCE_INTERVAL", "how often serve runs the maintenance job (usage partitions, ledger pruning), 1m to 24h (default 1h)"},
	{"USAGE_FOLD_INTERVAL", "how often serve adds recorded usage events to billing_usage, 100ms to 1m (default 1s); Hasura's direct select of billing_usage trails by up to this"},
	{"METRICS_TOKEN", "when set, GET /metrics needs Authorization: Bearer <token>"},
	{"API_TOKEN_SIGNING_KEY_FILE", "PEM Ed25519 or RSA key signing API-key tokens; unset: POST /auth/token and the JWKS are off"},
	{"API_TOKEN_PREVIOUS_KEY_FILE", "the previous signing key during a rotation: listed in the JWKS, never used to sign"},
	{"API_TOKEN_ISSUER", "the tokens' iss (default tenantkit): the issuer of Hasura's jwt_secrets entry"},
	{"API_TOKEN_AUDIENCE", "the tokens' aud (default hasura): the audience of Hasura's jwt_secrets entry"},
	{"API_TOKEN_TTL", "how long a token lives, 1m to 1h (default 5m)"},
	{"API_TOKEN_EXCHANGES_PER_MINUTE", "token exchanges per source address per minute (default 30)"},
	{"API_TOKEN_FAILURES_PER_KEY_PER_HOUR", "wrong secrets per key prefix per hour before its exchanges wait (default 10)"},
	{"TRUSTED_PROXIES", "reverse proxies (addresses or CIDR prefixes) whose X-Forwarded-For names the client"},
	{"DNS_RESOLVER", "host:port of the DNS server verifyDomain asks (default: the system's resolver)"},
	{"TENANTKIT_ALLOW_DEV_SECRETS", "1 lets serve start with this repository's published development secrets"},
	{"PPROF_ADDR", "loopback host:port (e.g. 127.0.0.1:6060) serving Go's profiles at /debug/pprof/; unset: none"},
	{"GOGC, GOMEMLIMIT", "Go's collector settings (default GOGC=400, GOMEMLIMIT=160MiB)"},
}

var (
	databaseURLVar = envVar{"DATABASE_URL", "required: postgres:// URL of a login that owns the schema (the migration owner)"}
	jwtSecretVar   = envVar{"HASURA_GRAPHQL_JWT_SECRET", `Hasura's JWT secret, {"type":"HS256","key":"…"} (default: docker-compose.yml's development value)`}
	adminSecretVar = envVar{"HASURA_GRAPHQL_ADMIN_SECRET", "Hasura's admin secret (default: docker-compose.yml's development value)"}
	poolerVar      = envVar{"DATABASE_POOLER", "none (default) or transaction"}
)

// command is one command's help.
type command struct {
	name    string // as typed: "serve", "dev token"
	args    string // what follows the name, e.g. "up|down|reset|status"
	summary string
	flags   func(fs *flag.FlagSet) // the command's flags, registered as the command registers them
	env     []envVar
	noEnv   bool // the command reads no environment variable
}

var commands = []command{
	{name: "serve", summary: "Run the service: Hasura's actions, event triggers and remote schema, Stripe's webhooks.\n" +
		"Checks the configuration and the database roles at start and stops with one line per problem.",
		env: serveVars},
	{name: "migrate", args: "up|down|reset|status", summary: "Apply (up), roll back one (down) or all (reset), or list (status) the database migrations.\n" +
		"Concurrent runs wait for each other. up also installs the policies' form that suits DATABASE_POOLER, and\n" +
		"grants Hasura's event triggers what they need when hdb_catalog exists.",
		env: []envVar{databaseURLVar, {"DATABASE_DIRECT_URL", "PostgreSQL without the pooler; required with DATABASE_POOLER=transaction"},
			poolerVar}},
	{name: "dev", summary: "Development: find or start PostgreSQL (DATABASE_URL, else 127.0.0.1:5432, else a private cluster\n" +
		"under .dev/pgdata), create database tenantkit, migrate it, and serve with development defaults on\n" +
		"127.0.0.1:8081. Also stands in for Hasura: delivers its event triggers, and answers its GraphQL endpoint\n" +
		"(actions and remote schema, with JWTs from `tenantkit dev token`) on 127.0.0.1:8080/v1/graphql.",
		env: append([]envVar{
			{"DATABASE_URL", "the database to use (default: found or started as above)"},
			{"DEV_HASURA_ADDR", "where the stand-in for Hasura listens (default 127.0.0.1:8080)"},
			{"TENANTKIT_HASURA_METADATA", "the Hasura metadata directory (default hasura/metadata)"},
			jwtSecretVar, adminSecretVar,
			{"LISTEN_ADDR", "default 127.0.0.1:8081 (serve's default is :8081)"},
			{"TENANTKIT_SECRET, APP_URL", "default dev-secret-change-me and http://localhost:3000"},
		}, envVarsExcept(serveVars, "DATABASE_URL", "LISTEN_ADDR", "TENANTKIT_SECRET", "APP_URL")...)},
	{name: "dev token", summary: "Print a JWT that Hasura (HASURA_GRAPHQL_JWT_SECRET) and tenantkit dev accept for a user:\n" +
		"https://hasura.io/jwt/claims with x-hasura-default-role, x-hasura-allowed-roles and x-hasura-user-id.\n" +
		"Send it as Authorization: Bearer <token>.",
		flags: func(fs *flag.FlagSet) { tokenFlags(fs, &tokenOptions{}) }, env: []envVar{jwtSecretVar}},
	{name: "dev user", args: "EMAIL", summary: "Ask a running tenantkit dev for a user with this email (created with the email verified,\n" +
		"or the existing one) and print its id: the stand-in for signing up.",
		flags: func(fs *flag.FlagSet) { userFlags(fs, &userOptions{}, os.Getenv) },
		env:   []envVar{{"DEV_HASURA_ADDR", "the stand-in's address (default 127.0.0.1:8080)"}, adminSecretVar}},
	{name: "hasura grant", summary: "Let tenantkit_app and tenantkit_system run Hasura's event-trigger function. Run it as Hasura's\n" +
		"database user after Hasura's first start and after every Hasura upgrade.",
		env: []envVar{{"DATABASE_URL", "required: postgres:// URL of Hasura's database user (the owner of hdb_catalog)"}}},
	{name: "plans sync", summary: "Link every active plan to a Stripe product and price (idempotent).",
		env: []envVar{{"DATABASE_URL", "required"}, poolerVar, {"STRIPE_SECRET_KEY", "required"}, {"STRIPE_API_URL", "Stripe API address override"}}},
	{name: "usage report", summary: "Push each subscription's current-period api_calls total to Stripe (idempotent; run it hourly).\n" +
		"One item Stripe refuses does not stop the others; the exit status is 1 and the summary names it.",
		env: []envVar{{"DATABASE_URL", "required"}, poolerVar, {"STRIPE_SECRET_KEY", "required"}, {"STRIPE_API_URL", "Stripe API address override"}}},
	{name: "stripe reconcile", summary: "Compare the Stripe account with tenantkit's billing state: apply the events of the last 30 days\n" +
		"the ledger lacks and the drift of every subscription that belongs to a tenant, through the same state\n" +
		"machine as webhooks. Drift report and summary on stdout, progress on stderr; a second run changes nothing.",
		flags: func(fs *flag.FlagSet) { fs.Bool("dry-run", false, "report the drift, change nothing") },
		env: []envVar{{"DATABASE_URL", "required"}, poolerVar,
			{"STRIPE_SECRET_KEY", "required"}, {"STRIPE_API_URL", "Stripe API address override"}}},
	{name: "tenants purge", summary: "Purge the deleted tenants whose restore window (TENANT_RESTORE_DAYS) ended: their rows go, the\n" +
		"deletion record and an audit trail without personal data stay. serve also does it every TENANT_PURGE_INTERVAL.",
		env: []envVar{{"DATABASE_URL", "required"}, poolerVar}},
	{name: "maintenance run", summary: "Run the maintenance job once, as serve does every MAINTENANCE_INTERVAL: fold the recorded usage\n" +
		"events into billing_usage, create the usage_events partitions of this month and the next two, drop those\n" +
		"older than USAGE_RETENTION_MONTHS, and delete the ledger and outbox rows no longer needed\n" +
		"(docs/operations.md), in batches. Does nothing while another replica runs it.",
		flags: func(fs *flag.FlagSet) { fs.Int("batch", maintenance.DefaultBatch, "rows deleted per statement") },
		env: []envVar{{"DATABASE_URL", "required"}, poolerVar,
			{"USAGE_RETENTION_MONTHS", "months of usage events kept before the current one, 13 to 120 (default 13)"}}},
	{name: "healthcheck", summary: "Exit 0 when the service on this machine answers GET /readyz with 200 (container health checks).",
		env: []envVar{{"LISTEN_ADDR", "the service's address (default :8081)"}}},
	{name: "scaffold table", args: "NAME", summary: scaffoldSummary,
		flags: func(fs *flag.FlagSet) { scaffoldFlags(fs, &hasurarules.Scaffolded{}, new(string)) }, noEnv: true},
	{name: "smoke", summary: "Drive a running stack through Hasura as a frontend would; one PASS/FAIL line per step,\n" +
		"exit status 1 on any failure.",
		flags: func(fs *flag.FlagSet) { smokeFlags(fs, &smoke.Check{}) },
		env:   []envVar{{"HASURA_GRAPHQL_ADMIN_SECRET", "default of --admin-secret"}}},
}

func envVarsExcept(vars []envVar, names ...string) []envVar {
	var out []envVar
	for _, v := range vars {
		if !slices.Contains(names, v.name) {
			out = append(out, v)
		}
	}
	return out
}

// smokeFlags are the flags of `tenantkit smoke`.
func smokeFlags(fs *flag.FlagSet, check *smoke.Check) {
	fs.StringVar(&check.HasuraURL, "hasura-url", "http://localhost:8080", "Hasura's base URL")
	fs.StringVar(&check.AdminSecret, "admin-secret", "", "Hasura's admin secret (default: HASURA_GRAPHQL_ADMIN_SECRET)")
	fs.StringVar(&check.MailpitURL, "mailpit-url", "", "mailpit's base URL, to read and accept the invitation (optional)")
}

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// helpRequest reports whether args ask for help (tenantkit help [command…], or -h / --help
// anywhere) and for which command ("" for the list of commands).
func helpRequest(args []string) (string, bool) {
	asked := false
	var words []string
	for i, a := range args {
		switch {
		case i == 0 && a == "help":
			asked = true
		case isHelpFlag(a):
			asked = true
		case !strings.HasPrefix(a, "-"):
			words = append(words, a)
		}
	}
	if !asked {
		return "", false
	}
	// the longest command name the words start with
	best := ""
	for _, c := range commands {
		parts := strings.Fields(c.name)
		if len(parts) <= len(words) && slices.Equal(parts, words[:len(parts)]) && len(c.name) > len(best) {
			best = c.name
		}
	}
	return best, true
}

// printHelp writes a command's help: usage, what it does, its flags and its environment. It reads
// no configuration and connects to nothing.
func printHelp(w io.Writer, name string) error {
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		fmt.Fprint(w, usage)
		fmt.Fprintln(w, "\n`tenantkit <command> --help` lists a command's flags and environment variables.")
		return nil
	}
	c := commands[i]
	line := "usage: tenantkit " + c.name
	if c.flags != nil {
		line += " [flags]"
	}
	if c.args != "" {
		line += " " + c.args
	}
	fmt.Fprintf(w, "%s\n\n%s\n", line, c.summary)
	if c.flags != nil {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs)
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	if len(c.env) > 0 {
		fmt.Fprintln(w, "\nenvironment:")
		width := 0
		for _, v := range c.env {
			width = max(width, len(v.name))
		}
		for _, v := range c.env {
			fmt.Fprintf(w, "  %-*s  %s\n", width, v.name, v.meaning)
		}
	}
	return nil
}
