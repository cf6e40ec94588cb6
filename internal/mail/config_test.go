package mail

import (
	"testing"
)

// The defaults of an SMTP_URL are policy (ports, STARTTLS), so they are pinned here.
func TestParseURLDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url                  string
		addr, startTLS, from string
		implicitTLS          bool
		user, pass           string
	}{
		{url: "smtp://mail.example.com", addr: "mail.example.com:587", startTLS: "require", from: "tenantkit@mail.example.com"},
		{url: "smtp://localhost", addr: "localhost:587", startTLS: "optional", from: "tenantkit@localhost"},
		{url: "smtp://127.0.0.1:1025", addr: "127.0.0.1:1025", startTLS: "optional", from: "tenantkit@127.0.0.1"},
		{url: "smtp://[::1]", addr: "[::1]:587", startTLS: "optional", from: "tenantkit@[::1]"},
		{url: "smtp://mailpit:1025?starttls=off", addr: "mailpit:1025", startTLS: "off", from: "tenantkit@mailpit"},
		{url: "smtp://mail.example.com?starttls=optional&from=Team%20%3Cteam@example.com%3E", addr: "mail.example.com:587", startTLS: "optional", from: "team@example.com"},
		{url: "smtps://mail.example.com", addr: "mail.example.com:465", implicitTLS: true, from: "tenantkit@mail.example.com", startTLS: "require"},
		{url: "smtps://us%40er:p%3Ass@mail.example.com:2465", addr: "mail.example.com:2465", implicitTLS: true, from: "tenantkit@mail.example.com", startTLS: "require", user: "us@er", pass: "p:ss"},
	} {
		cfg, err := parseURL(tc.url)
		if err != nil {
			t.Errorf("parseURL(%q): %v", tc.url, err)
			continue
		}
		if cfg.addr() != tc.addr || cfg.startTLS != tc.startTLS || cfg.from.Address != tc.from ||
			cfg.implicitTLS != tc.implicitTLS || cfg.user != tc.user || cfg.pass != tc.pass {
			t.Errorf("parseURL(%q) = addr %s, starttls %s, from %s, implicit TLS %v, user %q, pass %q; want %s, %s, %s, %v, %q, %q",
				tc.url, cfg.addr(), cfg.startTLS, cfg.from.Address, cfg.implicitTLS, cfg.user, cfg.pass,
				tc.addr, tc.startTLS, tc.from, tc.implicitTLS, tc.user, tc.pass)
		}
		if cfg.tls.ServerName != cfg.host {
			t.Errorf("parseURL(%q): TLS server name %q, want %q", tc.url, cfg.tls.ServerName, cfg.host)
		}
	}
}
