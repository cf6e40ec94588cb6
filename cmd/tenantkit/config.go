package main

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Config is everything the service reads from its environment. See README "Configuration".
type Config struct {
	DatabaseURL  string // DATABASE_URL, required
	Secret       string // TENANTKIT_SECRET, required: the shared secret Hasura sends as X-Tenantkit-Secret
	ListenAddr   string // LISTEN_ADDR, default ":8081"
	AppURL       string // APP_URL, required: base of links in emails and Stripe redirects
	LogLevel     zerolog.Level
	SMTPURL      string // SMTP_URL, optional: unset writes emails to the log
	StripeKey    string // STRIPE_SECRET_KEY
	StripeHook   string // STRIPE_WEBHOOK_SECRET
	StripeAPIURL string // STRIPE_API_URL, optional: stripe-mock in development and tests
	// INVITATION_TTL, optional (Go duration, 1h to 90 days; default 168h): how long an invitation
	// link stays valid.
	InvitationTTL time.Duration
	// TRIAL_PLAN, optional (a plan key; default starter): the plan a new tenant tries.
	TrialPlan string
	// TRIAL_DAYS, optional (0 to 365; default 14): the trial's length; 0 puts a new tenant on the
	// default (free) plan at once.
	TrialDays int
}

// planKey is the form of subscription_plans.key.
var planKey = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// minSecretLen keeps guessable shared secrets out of production.
const minSecretLen = 16

// LoadConfig reads the environment through getenv. It returns every problem at once, one line
// each ("config: …"), naming the variable but never echoing its value.
func LoadConfig(getenv func(string) string) (Config, error) {
	c := Config{
		DatabaseURL:  getenv("DATABASE_URL"),
		Secret:       getenv("TENANTKIT_SECRET"),
		ListenAddr:   getenv("LISTEN_ADDR"),
		AppURL:       strings.TrimRight(getenv("APP_URL"), "/"),
		SMTPURL:      getenv("SMTP_URL"),
		StripeKey:    getenv("STRIPE_SECRET_KEY"),
		StripeHook:   getenv("STRIPE_WEBHOOK_SECRET"),
		StripeAPIURL: getenv("STRIPE_API_URL"),
	}
	var problems []string
	if c.ListenAddr == "" {
		c.ListenAddr = ":8081"
	}
	switch {
	case c.DatabaseURL == "":
		problems = append(problems, "DATABASE_URL is required (e.g. postgres://tenantkit@127.0.0.1:5432/tenantkit)")
	case !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://"):
		problems = append(problems, "DATABASE_URL must be a postgres:// URL")
	}
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
	c.InvitationTTL = 7 * 24 * time.Hour
	if v := getenv("INVITATION_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Hour || d > 90*24*time.Hour {
			problems = append(problems, "INVITATION_TTL must be a duration between 1h and 2160h (e.g. 168h)")
		}
		c.InvitationTTL = d
	}
	c.TrialPlan, c.TrialDays = "starter", 14
	if v := getenv("TRIAL_PLAN"); v != "" {
		if !planKey.MatchString(v) {
			problems = append(problems, "TRIAL_PLAN must be a plan key (lowercase letters, digits, - and _)")
		}
		c.TrialPlan = v
	}
	if v := getenv("TRIAL_DAYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 365 {
			problems = append(problems, "TRIAL_DAYS must be a whole number of days from 0 to 365")
		}
		c.TrialDays = n
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
	if len(problems) > 0 {
		return c, fmt.Errorf("config: %s", strings.Join(problems, "\nconfig: "))
	}
	return c, nil
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
