// Command tenantkit is the tenantkit service and its operator commands:
//
//	tenantkit serve                      serve Hasura actions, events, remote schema and webhooks
//	tenantkit migrate up|down|reset|status
//	tenantkit dev                        find or start a local PostgreSQL, migrate, and serve with
//	                                     development defaults (the README's run command)
//	tenantkit dev token|user             development JWTs and users
//	tenantkit stripe reconcile [--dry-run]
//	                                     apply what the Stripe account holds and tenantkit missed
//
// and the others `tenantkit help` lists. Configuration comes from the environment; `tenantkit
// <command> --help` lists a command's flags and variables (README "Configuration").
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit/actions"
	"github.com/tenantkit/tenantkit/graph"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/emailoutbox"
	"github.com/tenantkit/tenantkit/internal/export"
	"github.com/tenantkit/tenantkit/internal/mail"
	"github.com/tenantkit/tenantkit/internal/maintenance"
	"github.com/tenantkit/tenantkit/internal/pglocal"
	"github.com/tenantkit/tenantkit/internal/postgres"
	"github.com/tenantkit/tenantkit/internal/server"
	"github.com/tenantkit/tenantkit/internal/smoke"
	"github.com/tenantkit/tenantkit/internal/stripe"
	"github.com/tenantkit/tenantkit/internal/team"
)

const usage = `usage: tenantkit <command>

commands:
  serve                          run the service (configuration from the environment)
  migrate up|down|reset|status   apply or inspect database migrations (DATABASE_DIRECT_URL, else
                                 DATABASE_URL)
  dev                            development: find or start PostgreSQL, migrate, serve with defaults
  dev token --user ID [--role R] print a development JWT Hasura accepts (HASURA_GRAPHQL_JWT_SECRET)
  dev user EMAIL                 ask a running dev for a user with this verified email; print its id
  hasura grant                   let tenantkit's roles run Hasura's event triggers (DATABASE_URL of
                                 Hasura's database user; after Hasura's first start and upgrades)
  plans sync                     link every active plan to a Stripe product and price (idempotent)
  usage report                   push each subscription's api_calls total to Stripe (idempotent)
  stripe reconcile [--dry-run]   compare the Stripe account with tenantkit's billing state and apply
                                 what is missing (drift report on stdout, progress on stderr)
  tenants purge                  purge the deleted tenants whose restore window ended (DATABASE_URL;
                                 serve also does it every TENANT_PURGE_INTERVAL)
  maintenance run [--batch N]    fold usage into billing_usage, create and drop usage partitions,
                                 prune ledgers and outboxes (DATABASE_URL; serve also does it every
                                 MAINTENANCE_INTERVAL)
  healthcheck                    exit 0 when the local service is ready (for container health checks)
  scaffold table NAME [flags]    write a migration and Hasura metadata for a new tenant-owned table
  smoke --hasura-url URL --admin-secret S [--mailpit-url URL]
                                 drive a running stack through Hasura; one PASS/FAIL line per step
`

func main() {
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tenantkit:", err)
		os.Exit(1)
	}
}

// tuneGC makes the collector run a quarter as often as Go's default (GOGC=400) while a soft memory
// limit of 160 MiB keeps the heap bounded: the service's live heap is a few MiB, so the default
// collects every few milliseconds under load, and those cycles showed up as the p99 of
// checkPermission on a 2-core machine (bench/README.md). GOGC or GOMEMLIMIT, when set, win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(160 << 20)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return errors.New("no command")
	}
	if name, ok := helpRequest(args); ok {
		return printHelp(stdout, name) // before any configuration check
	}
	switch args[0] {
	case "serve":
		if len(args) > 1 {
			return fmt.Errorf("serve takes no arguments (configuration comes from the environment: tenantkit serve --help)")
		}
		cfg, err := LoadConfig(os.Getenv)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stdout)
	case "migrate":
		if len(args) != 2 {
			return errors.New("usage: tenantkit migrate up|down|reset|status")
		}
		dbURL, err := migrationURL(os.Getenv)
		if err != nil {
			return err
		}
		if err := postgres.Migrate(ctx, dbURL, args[1], stdout); err != nil || args[1] != "up" {
			return err
		}
		if err := usePolicyForm(ctx, dbURL, os.Getenv, stdout); err != nil {
			return err
		}
		// Hasura may have created its catalog already (it does on its first start): grant what its
		// event triggers need when this role may; otherwise say how.
		switch err := postgres.GrantHasura(ctx, dbURL); {
		case errors.Is(err, postgres.ErrNoHasuraCatalog):
		case err != nil:
			fmt.Fprintf(stdout, "hasura: event-trigger grants not given (%v); run `tenantkit hasura grant` as Hasura's database user\n", err)
		default:
			fmt.Fprintln(stdout, "hasura: tenantkit_app and tenantkit_system may run Hasura's event triggers")
		}
		return nil
	case "hasura":
		if len(args) != 2 || args[1] != "grant" {
			return errors.New("usage: tenantkit hasura grant")
		}
		dbURL := os.Getenv("DATABASE_URL")
		if dbURL == "" {
			return errors.New("config: DATABASE_URL is required (Hasura's database user, the owner of hdb_catalog)")
		}
		if err := postgres.GrantHasura(ctx, dbURL); err != nil {
			return fmt.Errorf("hasura grant: %w", err)
		}
		fmt.Fprintln(stdout, "hasura: tenantkit_app and tenantkit_system may run Hasura's event triggers:\n"+postgres.HasuraGrants)
		return nil
	case "dev":
		if len(args) > 1 {
			switch args[1] {
			case "token":
				return devToken(args[2:], os.Getenv, stdout)
			case "user":
				return devUser(ctx, args[2:], os.Getenv, stdout)
			}
			return fmt.Errorf("dev: unknown subcommand %q (dev, dev token, dev user; tenantkit dev --help)", args[1])
		}
		return dev(ctx, stdout)
	case "plans":
		if len(args) != 2 || args[1] != "sync" {
			return errors.New("usage: tenantkit plans sync")
		}
		return plansSync(ctx, os.Getenv, stdout)
	case "usage":
		if len(args) != 2 || args[1] != "report" {
			return errors.New("usage: tenantkit usage report")
		}
		return usageReport(ctx, os.Getenv, stdout)
	case "stripe":
		if len(args) < 2 || args[1] != "reconcile" {
			return errors.New("usage: tenantkit stripe reconcile [--dry-run]")
		}
		return stripeReconcile(ctx, os.Getenv, args[2:], stdout, os.Stderr, reconcileOptions{})
	case "tenants":
		if len(args) != 2 || args[1] != "purge" {
			return errors.New("usage: tenantkit tenants purge")
		}
		return tenantsPurge(ctx, os.Getenv, stdout)
	case "maintenance":
		if len(args) < 2 || args[1] != "run" {
			return errors.New("usage: tenantkit maintenance run [--batch N]")
		}
		return maintenanceRun(ctx, os.Getenv, args[2:], stdout, os.Stderr)
	case "smoke":
		fs := flag.NewFlagSet("smoke", flag.ContinueOnError)
		check := &smoke.Check{Out: stdout}
		smokeFlags(fs, check)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if check.AdminSecret == "" {
			check.AdminSecret = os.Getenv("HASURA_GRAPHQL_ADMIN_SECRET")
		}
		if n := check.Run(ctx); n > 0 {
			return fmt.Errorf("smoke: %d step(s) failed", n)
		}
		return nil
	case "healthcheck":
		return healthcheck(ctx, os.Getenv("LISTEN_ADDR"))
	case "scaffold":
		return scaffoldCommand(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stdout, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// Main is the running service: what serve builds, and what end-to-end tests start on ":0".
type Main struct {
	Config Config
	Log    zerolog.Logger
	DB     *postgres.DB
	HTTP   *server.Server
	Meter  *billing.Meter
	Outbox *emailoutbox.Sender
	// StripeOutbox sends the queued Stripe writes (nil when billing is off: they stay queued).
	StripeOutbox *billing.StripeOutbox
	// Console, when set (tenantkit dev, console logs), gets logged emails as plain text (links on
	// their own lines).
	Console io.Writer

	stopMeter func()       // stops the meter (after its final flush) and the outbox senders
	pprof     *http.Server // PPROF_ADDR's listener; nil when unset
	pprofAddr string       // where it listens
	closing   sync.Once
	closeErr  error
}

// Open connects to the database (refusing to start when the tenantkit roles are unusable) and
// starts the HTTP server.
func (m *Main) Open(ctx context.Context) error {
	sender, err := mail.New(m.Config.SMTPURL, m.Log)
	if err != nil {
		return err
	}
	if ls, ok := sender.(mail.LogSender); ok && m.Console != nil {
		ls.Console = m.Console
		sender = ls
	}
	box, err := team.NewTokenSealer(m.Config.Secret)
	if err != nil {
		return err
	}
	db, err := postgres.OpenWith(ctx, m.Config.DatabaseURL, m.Config.AppDatabaseURL, postgres.Options{Pooler: m.Config.Pooler})
	if err != nil {
		return err
	}
	m.DB = db
	if err := db.CheckPlan(ctx, m.Config.TrialPlan); err != nil {
		db.Close()
		return fmt.Errorf("TRIAL_PLAN: %w", err)
	}
	if err := db.CheckAuthUsers(ctx, m.Config.RequireVerifiedEmail); err != nil {
		db.Close()
		return err
	}
	trial := time.Duration(m.Config.TrialDays) * 24 * time.Hour
	if trial == 0 {
		trial = -1 // no trial
	}
	teams := &team.Service{Store: db, Sealer: box, Mailer: sender, AppURL: m.Config.AppURL, InvitationTTL: m.Config.InvitationTTL,
		TrialPeriod: trial, TrialPlan: m.Config.TrialPlan, AllowUnverifiedEmail: !m.Config.RequireVerifiedEmail,
		SendLimits: team.SendLimits{PerTenant: m.Config.InvitationSendsPerHour, TenantWindow: time.Hour,
			PerInvitation: m.Config.InvitationResendsPerDay, InvitationWindow: 24 * time.Hour},
		RestoreWindow: restoreWindow(m.Config.RestoreDays)}
	metrics := server.NewMetrics((&actions.Handler{}).Names())
	metrics.MembershipReads(db.MembershipReads)
	bills := &billing.Service{Store: db, Authorize: teams.Check, AppURL: m.Config.AppURL, Count: metrics.Count,
		AutomaticTax: m.Config.StripeAutomaticTax}
	var webhooks http.Handler
	if m.Config.StripeKey != "" {
		sc := stripe.New(m.Config.StripeKey, m.Config.StripeAPIURL)
		bills.Stripe = sc
		webhooks = &stripe.Webhook{Secret: m.Config.StripeHook, Billing: bills}
		m.StripeOutbox = &billing.StripeOutbox{Store: db, Stripe: sc, Usage: bills, Log: m.Log, Count: metrics.Count}
	}
	m.Meter = &billing.Meter{Store: db, Log: m.Log, Alerts: bills.UsageAlerts}
	m.Outbox = &emailoutbox.Sender{Store: db, Mailer: sender, Log: m.Log}
	keys, tokens, err := m.apiKeys(db, metrics)
	if err != nil {
		db.Close()
		return err
	}
	exports, err := export.New(db, teams.Check, m.Config.Secret, m.Config.PublicURL, m.Config.ExportLinkTTL)
	if err != nil {
		db.Close()
		return err
	}
	domains := &team.Domains{Store: db, Resolver: newTXTResolver(m.Config.DNSResolver)}
	hasura := &actions.Handler{Team: teams, Billing: bills, Meter: m.Meter, Events: db, Keys: keys, Domains: domains, Exports: exports}
	m.HTTP = &server.Server{
		Addr:         m.Config.ListenAddr,
		Secret:       m.Config.Secret,
		DB:           db,
		Problems:     db.HasuraEventProblem,
		Graph:        graph.NewHandler(&graph.Resolver{Plans: db, Team: teams, Billing: bills, Keys: keys, Domains: domains}),
		Action:       http.HandlerFunc(hasura.ServeAction),
		Event:        http.HandlerFunc(hasura.ServeEvent),
		Metrics:      metrics,
		MetricsToken: m.Config.MetricsToken,
		Stripe:       webhooks,
		Tokens:       tokens,
		Export:       &server.ExportDownload{Exports: exports},
		Log:          m.Log,
	}
	if err := m.HTTP.Open(); err != nil {
		db.Close()
		return fmt.Errorf("listen on %s: %w", m.Config.ListenAddr, err)
	}
	if m.Config.PprofAddr != "" {
		if m.pprof, m.pprofAddr, err = startPprof(m.Config.PprofAddr, m.Log); err != nil {
			_ = m.HTTP.Close(ctx)
			db.Close()
			return fmt.Errorf("PPROF_ADDR: listen on %s: %w", m.Config.PprofAddr, err)
		}
	}
	meterCtx, stopMeter := context.WithCancel(context.WithoutCancel(ctx))
	runners := []func(context.Context){m.Meter.Run, m.Outbox.Run, func(ctx context.Context) {
		teams.RunPurge(ctx, m.Config.PurgeInterval, func(n int, ran bool, err error) {
			switch {
			case err != nil:
				m.Log.Warn().Err(err).Msg("purge of deleted tenants failed; tried again at the next interval")
			case n > 0:
				m.Log.Info().Int("purged", n).Msg("deleted tenants purged")
			case !ran:
				m.Log.Debug().Msg("purge skipped: another replica holds the purge lock")
			}
		})
	}}
	runners = append(runners, func(ctx context.Context) {
		job := &maintenance.Service{Store: db, RetentionMonths: m.Config.UsageRetentionMonths}
		job.RunEvery(ctx, m.Config.MaintenanceInterval, func(r maintenance.Report, err error) { logMaintenance(m.Log, r, err) })
	}, func(ctx context.Context) {
		maintenance.FoldEvery(ctx, db, m.Config.UsageFoldInterval, func(n int64, err error) {
			logFold(m.Log, n, err)
			metrics.UsageFold(n, err)
		})
	})
	if m.StripeOutbox != nil {
		runners = append(runners, m.StripeOutbox.Run)
	}
	done := make(chan struct{}, len(runners))
	for _, run := range runners {
		go func() { defer func() { done <- struct{}{} }(); run(meterCtx) }()
	}
	m.stopMeter = func() {
		stopMeter()
		for range runners {
			<-done
		}
	}
	return nil
}

// Close lets in-flight requests finish (up to 20 s), then closes the database pool. Closing
// again returns the first close's result.
func (m *Main) Close() error {
	m.closing.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		m.closeErr = m.HTTP.Close(ctx)
		if m.pprof != nil {
			_ = m.pprof.Close()
		}
		m.stopMeter() // after the last request: its final flush records every counted call
		m.DB.Close()
	})
	return m.closeErr
}

func serve(ctx context.Context, cfg Config, stdout io.Writer) error {
	return serveWith(ctx, cfg, stdout, nil)
}

// devMode is what tenantkit dev adds to serve: stand-ins for Hasura's event delivery and for its
// GraphQL endpoint.
type devMode struct {
	events *devEvents // nil when the database's own Hasura delivers the events
	// hasuraAddr is where the stand-in for Hasura's GraphQL endpoint listens ("" for none); it
	// reads the metadata in metadataDir and the database at dbURL.
	hasuraAddr, dbURL, metadataDir string
	getenv                         func(string) string
}

// serveWith is serve; with dev (tenantkit dev), it also runs dev's stand-ins for Hasura. With dev
// or console logs, emails logged (SMTP_URL unset) are printed as plain text.
func serveWith(ctx context.Context, cfg Config, stdout io.Writer, dev *devMode) error {
	format := logFormat(cfg.LogFormat, stdout)
	log := newLogger(stdout, format, cfg.LogLevel)
	m := &Main{Config: cfg, Log: log}
	if dev != nil || format == logConsole {
		m.Console = stdout // emails as plain text, links on lines of their own
	}
	if err := m.Open(ctx); err != nil {
		return err
	}
	var events *devEvents
	if dev != nil {
		events = dev.events
	}
	if dev != nil && dev.hasuraAddr != "" {
		gql, err := startDevGraphQL(ctx, dev.hasuraAddr, dev.dbURL, dev.metadataDir, m.HTTP.URL(), cfg.Secret, dev.getenv, log)
		if err != nil {
			_ = m.Close()
			return err
		}
		defer gql.close()
		log.Warn().Str("url", gql.URL()+"/v1/graphql").
			Msg("development: standing in for Hasura's GraphQL endpoint (actions and remote schema; users: tenantkit dev user EMAIL, tokens: tenantkit dev token --user ID)")
	}
	if events != nil {
		log.Warn().Strs("triggers", events.names).Str("schema", devEventSchema).
			Msg("development: standing in for Hasura's event delivery (Hasura's trigger SQL in schema " + devEventSchema + ", removed when dev stops)")
		deliveryCtx, stopDelivery := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() { defer close(done); events.run(deliveryCtx, m.HTTP.URL(), cfg.Secret, log) }()
		defer func() { stopDelivery(); <-done }()
	}
	if len(cfg.DevSecrets) > 0 {
		log.Warn().Strs("variables", cfg.DevSecrets).
			Msg("DEVELOPMENT SECRETS: these hold values published in tenantkit's repository, so anyone can forge calls to this service; never expose it")
	}
	if !m.DB.SeparateLogins() {
		log.Warn().Msg("APP_DATABASE_URL is unset: user work and system work share DATABASE_URL's login, so a statement injected into user work could switch to tenantkit_system and read every tenant (defence in depth off; README \"Database roles\")")
	}
	if cfg.SMTPURL == "" {
		log.Warn().Msg("SMTP_URL is unset: emails, invitation links included, are written to this log (development only)")
	}
	if cfg.StripeKey == "" {
		log.Warn().Msg("STRIPE_SECRET_KEY is unset: billing is off (no Stripe customers, checkouts or usage reports)")
	}
	if cfg.APIKeys.SigningKey == nil {
		log.Warn().Msg("API_TOKEN_SIGNING_KEY_FILE is unset: API keys cannot be exchanged for tokens (POST /auth/token and /.well-known/jwks.json are off)")
	}
	if cfg.PublicURL == "" {
		log.Warn().Msg("TENANTKIT_PUBLIC_URL is unset: tenant exports are off (exportTenant answers unavailable)")
	}
	if problem, err := m.DB.PolicyFormProblem(ctx, cfg.Pooler); err != nil {
		log.Warn().Err(err).Msg("could not read the policies' form")
	} else if problem != "" {
		log.Warn().Str("problem", problem).Msg("statements under row-level security cost more than they need")
	}
	if problem, err := m.DB.HasuraEventProblem(ctx); err != nil {
		log.Warn().Err(err).Msg("could not check Hasura's event triggers")
	} else if problem != "" {
		log.Error().Str("problem", problem).Msg("misconfigured: /readyz answers 503 until this is fixed")
	}
	log.Info().Str("addr", m.HTTP.URL()).Bool("smtp", cfg.SMTPURL != "").Bool("billing", cfg.StripeKey != "").Msg("tenantkit listening")
	<-ctx.Done()
	log.Info().Msg("shutting down")
	return m.Close()
}

// devDefaults are used by `tenantkit dev` for variables left unset. Never use them in production.
var devDefaults = map[string]string{
	"TENANTKIT_SECRET": "dev-secret-change-me",
	"APP_URL":          "http://localhost:3000",
	"LISTEN_ADDR":      "127.0.0.1:8081", // development secrets: never on every interface
	// the export links of `make run` (LISTEN_ADDR's port on this machine)
	"TENANTKIT_PUBLIC_URL": "http://localhost:8081",
}

// dev finds a PostgreSQL (DATABASE_URL, the local server, or a throwaway cluster under .dev/),
// creates the database "tenantkit" when missing, migrates it and serves.
func dev(ctx context.Context, stdout io.Writer) error {
	dbURL, source := os.Getenv("DATABASE_URL"), "DATABASE_URL"
	if dbURL == "" {
		srv, err := pglocal.Find(ctx, pglocal.Options{DataDir: ".dev/pgdata", Port: 54329})
		if err != nil {
			return err
		}
		defer srv.Stop()
		if dbURL, err = ensureDatabase(ctx, srv.URL, "tenantkit"); err != nil {
			return err
		}
		source = srv.Source
	}
	fmt.Fprintf(stdout, "tenantkit dev: database %s (%s)\n", redactURL(dbURL), source)
	if err := postgres.Migrate(ctx, dbURL, "up", stdout); err != nil {
		return err
	}
	if err := usePolicyForm(ctx, dbURL, os.Getenv, stdout); err != nil {
		return err
	}
	defaults := map[string]string{"DATABASE_URL": dbURL}
	if os.Getenv("APP_DATABASE_URL") == "" {
		appURL, err := ensureDevAppLogin(ctx, dbURL)
		if err != nil {
			fmt.Fprintf(stdout, "tenantkit dev: cannot create the login role %s (%v): user work shares DATABASE_URL's login\n", devAppLogin, err)
		} else {
			defaults["APP_DATABASE_URL"] = appURL
			fmt.Fprintf(stdout, "tenantkit dev: user work connects as %s (a member of %s only), system work as DATABASE_URL's login\n", devAppLogin, postgres.AppRole)
		}
	}
	for k, v := range devDefaults {
		defaults[k] = v
	}
	cfg, err := loadDevConfig(envWithDefaults(defaults))
	if err != nil {
		return err
	}
	if cfg.APIKeys.SigningKey == nil {
		// a throwaway key: tokens issued before a restart stop verifying, which is fine in development
		if _, cfg.APIKeys.SigningKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "tenantkit dev: API tokens are signed with a throwaway Ed25519 key (set API_TOKEN_SIGNING_KEY_FILE to keep one)")
	}
	events, err := startDevEvents(ctx, dbURL, devMetadataDir(), stdout)
	if err != nil {
		return fmt.Errorf("stand-in for Hasura's events: %w", err)
	}
	if events != nil {
		defer func() {
			if err := events.close(); err != nil {
				fmt.Fprintf(stdout, "tenantkit dev: removing the stand-in for Hasura's events: %v (drop schema %s by hand)\n", err, devEventSchema)
			}
		}()
	}
	hasuraAddr := os.Getenv("DEV_HASURA_ADDR")
	if hasuraAddr == "" {
		hasuraAddr = devHasuraAddr
	}
	if _, err := os.Stat(devMetadataDir() + "/databases"); err != nil {
		hasuraAddr = "" // said above: no metadata, no stand-in
	}
	return serveWith(ctx, cfg, stdout, &devMode{events: events, hasuraAddr: hasuraAddr, dbURL: dbURL,
		metadataDir: devMetadataDir(), getenv: os.Getenv})
}

// devAppLogin is the user pool's login role `tenantkit dev` makes, so that development runs with
// the separation production has (README "Database roles").
const devAppLogin = "tenantkit_app_login"

// ensureDevAppLogin creates devAppLogin when missing (LOGIN NOINHERIT, a member of tenantkit_app),
// gives it a new random password, and returns dbURL with it as the user. It needs a login role that
// may create roles (dev's local server runs as a superuser). Open then refuses devAppLogin if
// someone made it a member of tenantkit_system.
func ensureDevAppLogin(ctx context.Context, dbURL string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", errors.New("DATABASE_URL is malformed")
	}
	conn, err := postgres.Connect(ctx, dbURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	// A fresh password each start: the role must not be reachable with a value this repository
	// publishes. rand.Text is base32, so it needs no quoting beyond the quotes.
	password := rand.Text()
	for _, stmt := range []string{
		`DO $$ BEGIN
  CREATE ROLE ` + devAppLogin + ` LOGIN NOINHERIT;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$`,
		`ALTER ROLE ` + devAppLogin + ` LOGIN NOINHERIT NOSUPERUSER NOBYPASSRLS PASSWORD '` + password + `'`,
		`GRANT ` + postgres.AppRole + ` TO ` + devAppLogin,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return "", err
		}
	}
	u.User = url.UserPassword(devAppLogin, password)
	return u.String(), nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func ensureDatabase(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := postgres.Connect(ctx, adminURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", err
		}
	}
	return pglocal.WithDatabase(adminURL, name)
}

// usePolicyForm installs the policies' form that suits DATABASE_POOLER (postgres.PolicyFormFor):
// `migrate up` and `dev` run it after the migrations, as the owner of the tables.
func usePolicyForm(ctx context.Context, dbURL string, getenv func(string) string, stdout io.Writer) error {
	pooler, err := postgres.ParsePooler(getenv("DATABASE_POOLER"))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	form := postgres.PolicyFormFor(pooler)
	n, err := postgres.SetPolicyForm(ctx, dbURL, form)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "policies: %s form for DATABASE_POOLER=%s (%d rewritten)\n", form, pooler, n)
	return nil
}

// migrationURL is where `tenantkit migrate` connects: DATABASE_DIRECT_URL when set, else
// DATABASE_URL. Migrations hold a session-level advisory lock from start to end (so that
// concurrent runs wait for each other) and run statements outside transactions: behind a
// transaction pooler (DATABASE_POOLER=transaction) they need a direct connection.
func migrationURL(getenv func(string) string) (string, error) {
	if u := getenv("DATABASE_DIRECT_URL"); u != "" {
		return u, nil
	}
	pooler, err := postgres.ParsePooler(getenv("DATABASE_POOLER"))
	if err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	if pooler == postgres.TransactionPooler {
		return "", errors.New("config: DATABASE_DIRECT_URL is required with DATABASE_POOLER=transaction: migrations hold a session-level lock and must connect to PostgreSQL directly, not through the pooler (README \"Behind a connection pooler\")")
	}
	if u := getenv("DATABASE_URL"); u != "" {
		return u, nil
	}
	return "", errors.New("config: DATABASE_URL is required")
}

// billingCommand opens what the billing commands need (DATABASE_URL, DATABASE_POOLER,
// STRIPE_SECRET_KEY, STRIPE_API_URL) and runs fn.
func billingCommand(ctx context.Context, getenv func(string) string, fn func(*billing.Service) error) error {
	db, client, err := openBilling(ctx, getenv)
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(&billing.Service{Store: db, Stripe: client})
}

// openBilling opens the database (system work only) and the Stripe client the billing commands use,
// from DATABASE_URL, DATABASE_POOLER, STRIPE_SECRET_KEY and STRIPE_API_URL.
func openBilling(ctx context.Context, getenv func(string) string) (*postgres.DB, *stripe.Client, error) {
	key := getenv("STRIPE_SECRET_KEY")
	if getenv("DATABASE_URL") == "" || key == "" {
		return nil, nil, errors.New("config: DATABASE_URL and STRIPE_SECRET_KEY are required")
	}
	db, err := openSystemDB(ctx, getenv)
	if err != nil {
		return nil, nil, err
	}
	return db, stripe.New(key, getenv("STRIPE_API_URL")), nil
}

// openSystemDB opens the database an operator command uses for system work only, from
// DATABASE_URL and DATABASE_POOLER.
func openSystemDB(ctx context.Context, getenv func(string) string) (*postgres.DB, error) {
	dbURL := getenv("DATABASE_URL")
	if dbURL == "" {
		return nil, errors.New("config: DATABASE_URL is required")
	}
	pooler, err := postgres.ParsePooler(getenv("DATABASE_POOLER"))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return postgres.OpenWith(ctx, dbURL, "", postgres.Options{Pooler: pooler})
}

// plansSync links the active plans to Stripe products and prices.
func plansSync(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	return billingCommand(ctx, getenv, func(b *billing.Service) error {
		changed, err := b.SyncPlans(ctx)
		if err == nil {
			fmt.Fprintf(stdout, "plans sync: %d plan(s) linked anew, the others already were\n", changed)
		}
		return err
	})
}

// usageReport pushes each subscription's api_calls total of its current period to Stripe. Run it
// as often as you like (hourly; the closer to a period's end the last run, the fewer calls are
// billed with the next period): it reports totals, not increments. It fails, naming them, when
// some subscriptions could not be reported; the others are.
func usageReport(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	return billingCommand(ctx, getenv, func(b *billing.Service) error {
		run, err := b.ReportUsage(ctx)
		fmt.Fprintln(stdout, run.Summary())
		return err
	})
}

// restoreWindow is TENANT_RESTORE_DAYS as team.Service.RestoreWindow (0 days: none).
func restoreWindow(days int) time.Duration {
	if days == 0 {
		return -1
	}
	return time.Duration(days) * 24 * time.Hour
}

// tenantsPurge purges the deleted tenants whose restore window ended (DATABASE_URL,
// DATABASE_POOLER; the same purge serve runs every TENANT_PURGE_INTERVAL, under the same
// transaction-level lock, which holds behind a transaction pooler too).
func tenantsPurge(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	db, err := openSystemDB(ctx, getenv) // system work only
	if err != nil {
		return err
	}
	defer db.Close()
	n, ran, err := (&team.Service{Store: db}).PurgeDeleted(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("tenants purge: %d tenant(s) purged, then: %w", n, err)
	case !ran:
		fmt.Fprintln(stdout, "tenants purge: another purge is running (it holds the purge lock); nothing done")
	default:
		fmt.Fprintf(stdout, "tenants purge: %d deleted tenant(s) purged\n", n)
	}
	return nil
}

// healthcheck asks the service on LISTEN_ADDR (default :8081) whether it is ready: the container
// image has no shell or curl.
func healthcheck(ctx context.Context, addr string) error {
	if addr == "" {
		addr = ":8081"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s", res.Status)
	}
	return nil
}
