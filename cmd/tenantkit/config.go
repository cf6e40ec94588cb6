package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit/internal/maintenance"
	"github.com/tenantkit/tenantkit/internal/postgres"
	"github.com/tenantkit/tenantkit/internal/team"
)

// Config is everything the service reads from its environment. See README "Configuration".
type Config struct {
	DatabaseURL string // DATABASE_URL, required: the system pool's login (member of tenantkit_system)
	// APP_DATABASE_URL, optional: the user pool's login, a member of tenantkit_app only. Unset, one
	// pool (DATABASE_URL) serves both kinds of work and serve warns that the separation is off.
	AppDatabaseURL string
	// DATABASE_POOLER, optional (none or transaction; default none): transaction when the URLs
	// lead to PgBouncer (either pool mode) or another transaction pooler; see docs/pooling.md.
	Pooler       postgres.Pooler
	Secret       string // TENANTKIT_SECRET, required: the shared secret Hasura sends as X-Tenantkit-Secret
	ListenAddr   string // LISTEN_ADDR, default ":8081"
	AppURL       string // APP_URL, required: base of links in emails and Stripe redirects
	LogLevel     zerolog.Level
	SMTPURL      string // SMTP_URL, optional: unset writes emails to the log
	StripeKey    string // STRIPE_SECRET_KEY
	StripeHook   string // STRIPE_WEBHOOK_SECRET
	StripeAPIURL string // STRIPE_API_URL, optional: stripe-mock in development and tests
	// STRIPE_AUTOMATIC_TAX, optional (true or false; default false): Stripe Tax on checkouts (needs
	// STRIPE_SECRET_KEY, and Stripe Tax set up in the Stripe account).
	StripeAutomaticTax bool
	// METRICS_TOKEN, optional: when set, GET /metrics needs Authorization: Bearer <token>.
	MetricsToken string
	// TENANTKIT_PUBLIC_URL, optional: where browsers reach this service (the export download links
	// point there); unset, exportTenant answers unavailable.
	PublicURL string
	// EXPORT_LINK_MINUTES, optional (1 to 1440; default 15): how long an export link works.
	ExportLinkTTL time.Duration
	// DevSecrets names the variables that hold a published development value, which only dev and
	// TENANTKIT_ALLOW_DEV_SECRETS=1 accept; serve warns about each at start.
	DevSecrets []string
	// INVITATION_TTL, optional (Go duration, 1h to 90 days; default 168h): how long an invitation
	// link stays valid.
	InvitationTTL time.Duration
	// TRIAL_PLAN, optional (a plan key; default starter): the plan a new tenant tries.
	TrialPlan string
	// TRIAL_DAYS, optional (0 to 365; default 14): the trial's length; 0 puts a new tenant on the
	// default (free) plan at once.
	TrialDays int
	// INVITATION_REQUIRE_VERIFIED_EMAIL, optional (true or false; default true): accepting an
	// invitation needs auth.users.email_verified; false only for auth tables without that column.
	RequireVerifiedEmail bool
	// INVITATION_SENDS_PER_HOUR, optional (1 to 100000; default 50): invitation emails (new and
	// resent) a tenant may send per hour.
	InvitationSendsPerHour int
	// INVITATION_RESENDS_PER_DAY, optional (1 to 1000; default 5): resends of one invitation per day.
	InvitationResendsPerDay int
	// LOG_FORMAT, optional: console (readable lines) or json; unset: console when the log output
	// is a terminal, json otherwise.
	LogFormat string
	// APIKeys: API_TOKEN_* and TRUSTED_PROXIES (apikeyconfig.go).
	APIKeys APIKeyConfig
	// DNS_RESOLVER, optional (host:port): the DNS server verifyDomain asks (domains.go).
	DNSResolver string
	// TENANT_RESTORE_DAYS, optional (0 to 365; default 30): how long a deleted tenant may be
	// restored before it is purged; 0 purges it at the next purge run.
	RestoreDays int
	// TENANT_PURGE_INTERVAL, optional (Go duration, 1m to 24h; default 1h): how often serve purges
	// the deleted tenants whose restore window ended.
	PurgeInterval time.Duration
	// USAGE_RETENTION_MONTHS, optional (13 to 120; default 13): the usage events of this many
	// months before the current one are kept; older months' partitions are dropped.
	UsageRetentionMonths int
	// MAINTENANCE_INTERVAL, optional (Go duration, 1m to 24h; default 1h): how often serve runs
	// the maintenance job (usage partitions, ledger pruning).
	MaintenanceInterval time.Duration
	// USAGE_FOLD_INTERVAL, optional (Go duration, 100ms to 1m; default 1s): how often serve folds
	// the recorded counter events into billing_usage. tenantkit's own readers are exact at every
	// moment; Hasura's direct select of billing_usage trails by up to this interval.
	UsageFoldInterval time.Duration
	// PPROF_ADDR, optional (a loopback host:port): where a second listener serves Go's profiles
	// (net/http/pprof under /debug/pprof/); unset, there is none.
	PprofAddr string
}

// planKey is the form of subscription_plans.key.
var planKey = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// minSecretLen keeps guessable shared secrets out of production.
const minSecretLen = 16

// metricsToken is the token68 form (RFC 7235) a bearer token must have to travel in a header as is.
var metricsToken = regexp.MustCompile(`^[A-Za-z0-9._~+/-]+=*$`)

// secretVars are the variables that authenticate callers of the service: a value everybody can
// read must never guard a deployed service.
var secretVars = []string{"TENANTKIT_SECRET", "STRIPE_WEBHOOK_SECRET", "METRICS_TOKEN"}

// publishedSecrets are the development values printed in this repository (devDefaults,
// docker-compose.yml's defaults, .env.example, the README's examples); a test keeps the list
// complete.
var publishedSecrets = map[string]bool{
	"dev-secret-change-me":                   true,
	"whsec_dev_change_me":                    true,
	"dev-admin-secret-change-me":             true,
	"dev-jwt-key-change-me-0123456789abcdef": true,
}

// LoadConfig reads serve's configuration through getenv. It returns every problem at once, one line
// each ("config: …"), naming the variable but never echoing its value. A published development
// secret (publishedSecrets) in any of secretVars is a problem unless TENANTKIT_ALLOW_DEV_SECRETS=1.
func LoadConfig(getenv func(string) string) (Config, error) {
	return loadConfig(getenv, false)
}

// loadDevConfig is LoadConfig for `tenantkit dev`, whose own defaults are published secrets: it
// accepts them without the opt-in.
func loadDevConfig(getenv func(string) string) (Config, error) {
	return loadConfig(getenv, true)
}

func loadConfig(getenv func(string) string, dev bool) (Config, error) {
	c := Config{
		DatabaseURL:    getenv("DATABASE_URL"),
		AppDatabaseURL: getenv("APP_DATABASE_URL"),
		Secret:         getenv("TENANTKIT_SECRET"),
		ListenAddr:     getenv("LISTEN_ADDR"),
		AppURL:         strings.TrimRight(getenv("APP_URL"), "/"),
		SMTPURL:        getenv("SMTP_URL"),
		StripeKey:      getenv("STRIPE_SECRET_KEY"),
		StripeHook:     getenv("STRIPE_WEBHOOK_SECRET"),
		StripeAPIURL:   getenv("STRIPE_API_URL"),
		MetricsToken:   getenv("METRICS_TOKEN"),
		PublicURL:      strings.TrimRight(getenv("TENANTKIT_PUBLIC_URL"), "/"),
	}
	var problems []string
	allowDev := dev
	switch getenv("TENANTKIT_ALLOW_DEV_SECRETS") {
	case "", "0":
	case "1":
		allowDev = true
	default:
		problems = append(problems, "TENANTKIT_ALLOW_DEV_SECRETS must be 0 or 1")
	}
	for _, name := range secretVars {
		if !publishedSecrets[getenv(name)] {
			continue
		}
		if !allowDev {
			problems = append(problems, name+" is a development value published in this repository: set a secret of your own (README, Security)")
			continue
		}
		c.DevSecrets = append(c.DevSecrets, name)
	}
	if c.ListenAddr == "" {
		c.ListenAddr = ":8081"
	}
	switch {
	case c.DatabaseURL == "":
		problems = append(problems, "DATABASE_URL is required (e.g. postgres://tenantkit@127.0.0.1:5432/tenantkit)")
	case !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://"):
		problems = append(problems, "DATABASE_URL must be a postgres:// URL")
	}
	if v := c.AppDatabaseURL; v != "" && !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://") {
		problems = append(problems, "APP_DATABASE_URL must be a postgres:// URL")
	}
	pooler, err := postgres.ParsePooler(getenv("DATABASE_POOLER"))
	if err != nil {
		problems = append(problems, err.Error())
	}
	c.Pooler = pooler
	if len(c.Secret) < minSecretLen {
		problems = append(problems, fmt.Sprintf("TENANTKIT_SECRET is required and must be at least %d characters", minSecretLen))
	}
	if u, err := url.Parse(c.AppURL); c.AppURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, "APP_URL is required and must be an http(s) URL (e.g. https://app.example.com)")
	}
	for name, v := range map[string]string{"SMTP_URL": c.SMTPURL, "STRIPE_API_URL": c.StripeAPIURL} {
		if u, err := url.Parse(v); v != "" && (err != nil || u.Scheme == "" || u.Host == "") {
			problems = append(problems, name+" must be a URL")
		}
	}
	if c.StripeKey != "" && !strings.HasPrefix(c.StripeHook, "whsec_") {
		problems = append(problems, "STRIPE_WEBHOOK_SECRET (whsec_…) is required when STRIPE_SECRET_KEY is set")
	}
	if c.MetricsToken != "" {
		if len(c.MetricsToken) < minSecretLen || !metricsToken.MatchString(c.MetricsToken) {
			problems = append(problems, fmt.Sprintf("METRICS_TOKEN must be at least %d characters of A-Z, a-z, 0-9, -._~+/ (e.g. openssl rand -hex 32)", minSecretLen))
		}
		if c.MetricsToken == c.Secret {
			problems = append(problems, "METRICS_TOKEN must differ from TENANTKIT_SECRET: a scraper's token must not let it call actions")
		}
	}
	c.InvitationTTL = 7 * 24 * time.Hour
	problems = append(problems, configDuration(getenv, "INVITATION_TTL", time.Hour, 90*24*time.Hour, "168h", &c.InvitationTTL)...)
	c.TrialPlan, c.TrialDays = "starter", 14
	if v := getenv("TRIAL_PLAN"); v != "" {
		if !planKey.MatchString(v) {
			problems = append(problems, "TRIAL_PLAN must be a plan key (lowercase letters, digits, - and _)")
		}
		c.TrialPlan = v
	}
	problems = append(problems, configInt(getenv, "TRIAL_DAYS", "days", 0, 365, &c.TrialDays)...)
	if u, err := url.Parse(c.PublicURL); c.PublicURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
		problems = append(problems, "TENANTKIT_PUBLIC_URL must be an http(s) URL without query (e.g. https://api.example.com)")
	}
	exportMinutes := 15
	problems = append(problems, configInt(getenv, "EXPORT_LINK_MINUTES", "minutes", 1, 1440, &exportMinutes)...)
	c.ExportLinkTTL = time.Duration(exportMinutes) * time.Minute
	if v := getenv("STRIPE_AUTOMATIC_TAX"); v != "" {
		tax, err := strconv.ParseBool(v)
		switch {
		case err != nil:
			problems = append(problems, "STRIPE_AUTOMATIC_TAX must be true or false")
		case tax && c.StripeKey == "":
			problems = append(problems, "STRIPE_AUTOMATIC_TAX is true but STRIPE_SECRET_KEY is unset (billing, and with it tax, is off)")
		}
		c.StripeAutomaticTax = tax
	}
	c.RequireVerifiedEmail = true
	if v := getenv("INVITATION_REQUIRE_VERIFIED_EMAIL"); v != "" {
		req, err := strconv.ParseBool(v)
		if err != nil {
			problems = append(problems, "INVITATION_REQUIRE_VERIFIED_EMAIL must be true or false")
		}
		c.RequireVerifiedEmail = err != nil || req
	}
	c.InvitationSendsPerHour, c.InvitationResendsPerDay = team.DefaultSendsPerTenant, team.DefaultResendsPerInvitation
	problems = append(problems, configInt(getenv, "INVITATION_SENDS_PER_HOUR", "", 1, 100000, &c.InvitationSendsPerHour)...)
	problems = append(problems, configInt(getenv, "INVITATION_RESENDS_PER_DAY", "", 1, 1000, &c.InvitationResendsPerDay)...)
	problems = append(problems, loadAPIKeyConfig(getenv, &c.APIKeys)...)
	problems = append(problems, loadDomainConfig(getenv, &c)...)
	c.RestoreDays = 30
	problems = append(problems, configInt(getenv, "TENANT_RESTORE_DAYS", "days", 0, 365, &c.RestoreDays)...)
	c.PurgeInterval = time.Hour
	problems = append(problems, configDuration(getenv, "TENANT_PURGE_INTERVAL", time.Minute, 24*time.Hour, "1h", &c.PurgeInterval)...)
	// The range is the maintenance package's (maintenance.ValidRetention): billing reads the usage
	// of open billing periods, up to a year.
	c.UsageRetentionMonths = maintenance.DefaultRetentionMonths
	problems = append(problems, configInt(getenv, "USAGE_RETENTION_MONTHS", "months", maintenance.MinRetentionMonths, maintenance.MaxRetentionMonths, &c.UsageRetentionMonths)...)
	c.MaintenanceInterval = time.Hour
	problems = append(problems, configDuration(getenv, "MAINTENANCE_INTERVAL", time.Minute, 24*time.Hour, "1h", &c.MaintenanceInterval)...)
	c.UsageFoldInterval = maintenance.DefaultFoldInterval
	problems = append(problems, configDuration(getenv, "USAGE_FOLD_INTERVAL", maintenance.MinFoldInterval, maintenance.MaxFoldInterval, "1s", &c.UsageFoldInterval)...)
	if c.PprofAddr = getenv("PPROF_ADDR"); c.PprofAddr != "" && !loopbackAddr(c.PprofAddr) {
		problems = append(problems, "PPROF_ADDR must be a loopback host:port (e.g. 127.0.0.1:6060): profiles are not for the network")
	}
	level := getenv("LOG_LEVEL")
	if level == "" {
		level = "info"
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || lvl == zerolog.NoLevel {
		problems = append(problems, "LOG_LEVEL must be one of trace, debug, info, warn, error")
	}
	c.LogLevel = lvl
	switch c.LogFormat = getenv("LOG_FORMAT"); c.LogFormat {
	case "", logConsole, logJSON:
	default:
		problems = append(problems, "LOG_FORMAT must be console or json (unset: console on a terminal, json otherwise)")
	}
	if len(problems) > 0 {
		return c, fmt.Errorf("config: %s", strings.Join(problems, "\nconfig: "))
	}
	return c, nil
}

// configInt sets *into from the variable name when it is set: a whole number (of unit, when given)
// from min to max. It returns the problem with the value, if any.
func configInt(getenv func(string) string, name, unit string, min, max int, into *int) []string {
	v := getenv(name)
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	*into = n
	if err != nil || n < min || n > max {
		if unit != "" {
			unit = " of " + unit
		}
		return []string{fmt.Sprintf("%s must be a whole number%s from %d to %d", name, unit, min, max)}
	}
	return nil
}

// configDuration sets *into from the variable name when it is set: a duration from min to max
// (example: a valid value for the message). It returns the problem with the value, if any.
func configDuration(getenv func(string) string, name string, min, max time.Duration, example string, into *time.Duration) []string {
	v := getenv(name)
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	*into = d
	if err != nil || d < min || d > max {
		return []string{fmt.Sprintf("%s must be a duration from %s to %s (e.g. %s)", name, shortDuration(min), shortDuration(max), example)}
	}
	return nil
}

// shortDuration spells d as a person would write it for these variables: 1m, 24h, 2160h.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// loopbackAddr reports whether addr is host:port with a loopback host (localhost, 127.0.0.0/8, ::1).
func loopbackAddr(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// envWithDefaults returns a getenv that falls back to defaults for unset variables.
func envWithDefaults(defaults map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := os.LookupEnv(k); ok && v != "" {
			return v
		}
		return defaults[k]
	}
}
