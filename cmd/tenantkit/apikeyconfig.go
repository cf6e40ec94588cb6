package main

import (
	"crypto"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/tenantkit/tenantkit/internal/apikey"
)

// APIKeyConfig is the configuration of API keys' token exchange (README "API keys").
type APIKeyConfig struct {
	// API_TOKEN_SIGNING_KEY_FILE, optional: a PEM private key (Ed25519, or RSA of at least 2048
	// bits) tokens are signed with. Unset, POST /auth/token and the JWKS are off (keys can still be
	// created; `tenantkit dev` makes a throwaway key).
	SigningKey crypto.PrivateKey
	// API_TOKEN_PREVIOUS_KEY_FILE, optional: the key signing used before a rotation (PEM public or
	// private key), kept in the JWKS until the tokens it signed have expired.
	PreviousKeys []crypto.PublicKey
	Issuer       string        // API_TOKEN_ISSUER, default "tenantkit": the iss of Hasura's jwt_secrets entry
	Audience     string        // API_TOKEN_AUDIENCE, default "hasura": its audience
	TTL          time.Duration // API_TOKEN_TTL, 1m to 1h, default 5m: how long a token lives
	// API_TOKEN_EXCHANGES_PER_MINUTE (1 to 100000, default 30): exchanges per source address.
	ExchangesPerMinute int
	// API_TOKEN_FAILURES_PER_KEY_PER_HOUR (1 to 100000, default 10): wrong secrets per key prefix.
	FailuresPerKeyHour int
	// TRUSTED_PROXIES, optional: comma-separated addresses or CIDR prefixes of the reverse proxies
	// in front of the service, whose X-Forwarded-For names the client of POST /auth/token.
	TrustedProxies []netip.Prefix
}

// loadAPIKeyConfig reads the API key variables into c and returns the problems, one per variable,
// naming it but never echoing a value or a key.
func loadAPIKeyConfig(getenv func(string) string, c *APIKeyConfig) []string {
	var problems []string
	c.Issuer, c.Audience, c.TTL = "tenantkit", "hasura", apikey.DefaultTTL
	c.ExchangesPerMinute, c.FailuresPerKeyHour = apikey.DefaultExchangesPerMinute, apikey.DefaultFailuresPerKeyHour
	if path := getenv("API_TOKEN_SIGNING_KEY_FILE"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, "API_TOKEN_SIGNING_KEY_FILE: cannot read the file")
		} else if c.SigningKey, err = apikey.ParsePrivateKey(data); err != nil {
			problems = append(problems, "API_TOKEN_SIGNING_KEY_FILE: "+err.Error()+" (e.g. openssl genpkey -algorithm ed25519)")
		} else if _, err := apikey.NewSigner(c.SigningKey); err != nil {
			problems = append(problems, "API_TOKEN_SIGNING_KEY_FILE: "+err.Error())
		}
	}
	if path := getenv("API_TOKEN_PREVIOUS_KEY_FILE"); path != "" {
		data, err := os.ReadFile(path)
		var pub crypto.PublicKey
		if err == nil {
			pub, err = apikey.ParsePublicKey(data)
		}
		if err != nil {
			problems = append(problems, "API_TOKEN_PREVIOUS_KEY_FILE: cannot read a PEM public or private key from the file")
		} else {
			c.PreviousKeys = append(c.PreviousKeys, pub)
		}
		if c.SigningKey == nil && getenv("API_TOKEN_SIGNING_KEY_FILE") == "" {
			problems = append(problems, "API_TOKEN_PREVIOUS_KEY_FILE needs API_TOKEN_SIGNING_KEY_FILE")
		}
	}
	for name, into := range map[string]*string{"API_TOKEN_ISSUER": &c.Issuer, "API_TOKEN_AUDIENCE": &c.Audience} {
		if v := getenv(name); v != "" {
			if len(v) > 200 || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				problems = append(problems, name+" must be up to 200 printable characters")
			}
			*into = v
		}
	}
	problems = append(problems, configDuration(getenv, "API_TOKEN_TTL", time.Minute, time.Hour, "5m", &c.TTL)...)
	problems = append(problems, configInt(getenv, "API_TOKEN_EXCHANGES_PER_MINUTE", "", 1, 100000, &c.ExchangesPerMinute)...)
	problems = append(problems, configInt(getenv, "API_TOKEN_FAILURES_PER_KEY_PER_HOUR", "", 1, 100000, &c.FailuresPerKeyHour)...)
	if v := getenv("TRUSTED_PROXIES"); v != "" {
		for item := range strings.SplitSeq(v, ",") {
			item = strings.TrimSpace(item)
			p, err := netip.ParsePrefix(item)
			if err != nil {
				a, aerr := netip.ParseAddr(item)
				if aerr != nil {
					problems = append(problems, fmt.Sprintf("TRUSTED_PROXIES: %q is neither an address nor a CIDR prefix", item))
					continue
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			c.TrustedProxies = append(c.TrustedProxies, p.Masked())
		}
	}
	return problems
}
