package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigAPIKeys(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"DATABASE_URL": "postgres://x@127.0.0.1/db", "TENANTKIT_SECRET": "a-secret-of-sixteen-chars", "APP_URL": "https://app.example.com",
	}
	load := func(extra map[string]string) (Config, error) {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return LoadConfig(func(k string) string { return env[k] })
	}
	c, err := load(nil)
	if err != nil || c.APIKeys.SigningKey != nil || c.APIKeys.TTL != 5*time.Minute || c.APIKeys.Issuer != "tenantkit" || c.APIKeys.Audience != "hasura" {
		t.Fatalf("defaults: %+v, %v", c.APIKeys, err)
	}
	good := signingKeyFile(t)
	c, err = load(map[string]string{"API_TOKEN_SIGNING_KEY_FILE": good, "API_TOKEN_PREVIOUS_KEY_FILE": signingKeyFile(t),
		"API_TOKEN_TTL": "2m", "API_TOKEN_ISSUER": "https://auth.example.com", "TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1",
		"API_TOKEN_EXCHANGES_PER_MINUTE": "100", "API_TOKEN_FAILURES_PER_KEY_PER_HOUR": "5"})
	if err != nil || c.APIKeys.SigningKey == nil || len(c.APIKeys.PreviousKeys) != 1 || c.APIKeys.TTL != 2*time.Minute ||
		len(c.APIKeys.TrustedProxies) != 2 || c.APIKeys.ExchangesPerMinute != 100 || c.APIKeys.FailuresPerKeyHour != 5 {
		t.Fatalf("configured: %+v, %v", c.APIKeys, err)
	}

	dir := t.TempDir()
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallFile := filepath.Join(dir, "small.pem")
	smallPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)})
	_ = os.WriteFile(smallFile, smallPEM, 0o600)
	junk := filepath.Join(dir, "junk.pem")
	_ = os.WriteFile(junk, []byte("SECRET-CONTENT-0123456789"), 0o600)
	for name, extra := range map[string]map[string]string{
		"API_TOKEN_SIGNING_KEY_FILE: cannot read":             {"API_TOKEN_SIGNING_KEY_FILE": filepath.Join(dir, "missing.pem")},
		"API_TOKEN_SIGNING_KEY_FILE: not a PEM":               {"API_TOKEN_SIGNING_KEY_FILE": junk},
		"API_TOKEN_SIGNING_KEY_FILE: signing key: an RSA key": {"API_TOKEN_SIGNING_KEY_FILE": smallFile},
		"API_TOKEN_PREVIOUS_KEY_FILE needs":                   {"API_TOKEN_PREVIOUS_KEY_FILE": good},
		"API_TOKEN_TTL must":                                  {"API_TOKEN_TTL": "2h"},
		"API_TOKEN_EXCHANGES_PER_MINUTE must":                 {"API_TOKEN_EXCHANGES_PER_MINUTE": "0"},
		"API_TOKEN_FAILURES_PER_KEY_PER_HOUR must":            {"API_TOKEN_FAILURES_PER_KEY_PER_HOUR": "many"},
		"TRUSTED_PROXIES: \"nope\"":                           {"TRUSTED_PROXIES": "10.0.0.0/8,nope"},
		"API_TOKEN_ISSUER must be up to 200 printable":        {"API_TOKEN_ISSUER": "a\nb"},
	} {
		_, err := load(extra)
		if err == nil || !strings.Contains(err.Error(), "config: "+name) {
			t.Errorf("%v: %v, want a problem starting %q", extra, err, name)
			continue
		}
		if strings.Contains(err.Error(), "SECRET-CONTENT") || strings.Contains(err.Error(), string(smallPEM[40:60])) {
			t.Errorf("the problem echoes the file: %v", err)
		}
	}
}
