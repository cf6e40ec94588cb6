package main

import (
	"strings"
	"testing"
	"time"
)

func TestConfigAutomaticTax(t *testing.T) {
	for _, tc := range []struct {
		env     []string
		want    bool
		problem string
	}{
		{nil, false, ""},
		{[]string{"STRIPE_AUTOMATIC_TAX", "true"}, true, ""},
		{[]string{"STRIPE_AUTOMATIC_TAX", "false"}, false, ""},
		{[]string{"STRIPE_AUTOMATIC_TAX", "yes"}, false, "STRIPE_AUTOMATIC_TAX must be true or false"},
		{[]string{"STRIPE_AUTOMATIC_TAX", "true", "STRIPE_SECRET_KEY", "", "STRIPE_WEBHOOK_SECRET", ""}, true,
			"STRIPE_AUTOMATIC_TAX is true but STRIPE_SECRET_KEY is unset"},
	} {
		c, err := LoadConfig(validEnv(tc.env...))
		lines := configLines(err, "STRIPE_AUTOMATIC_TAX")
		switch {
		case tc.problem == "" && err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.problem != "" && (len(lines) != 1 || !strings.Contains(lines[0], tc.problem)):
			t.Errorf("%v: problems %q, want one saying %q", tc.env, err, tc.problem)
		case tc.problem == "" && c.StripeAutomaticTax != tc.want:
			t.Errorf("%v: StripeAutomaticTax %v", tc.env, c.StripeAutomaticTax)
		}
	}
}

func TestConfigExports(t *testing.T) {
	c, err := LoadConfig(validEnv())
	if err != nil || c.PublicURL != "" || c.ExportLinkTTL != 15*time.Minute {
		t.Fatalf("defaults: %q %s %v", c.PublicURL, c.ExportLinkTTL, err)
	}
	c, err = LoadConfig(validEnv("TENANTKIT_PUBLIC_URL", "https://api.example.com/", "EXPORT_LINK_MINUTES", "90"))
	if err != nil || c.PublicURL != "https://api.example.com" || c.ExportLinkTTL != 90*time.Minute {
		t.Fatalf("set: %q %s %v", c.PublicURL, c.ExportLinkTTL, err)
	}
	for _, bad := range [][]string{
		{"TENANTKIT_PUBLIC_URL", "api.example.com"}, {"TENANTKIT_PUBLIC_URL", "ftp://api.example.com"},
		{"TENANTKIT_PUBLIC_URL", "https://api.example.com/?x=1"}, {"TENANTKIT_PUBLIC_URL", "https://user:pw@api.example.com"},
		{"EXPORT_LINK_MINUTES", "0"}, {"EXPORT_LINK_MINUTES", "1441"}, {"EXPORT_LINK_MINUTES", "15m"},
	} {
		_, err := LoadConfig(validEnv(bad...))
		if len(configLines(err, bad[0])) != 1 {
			t.Errorf("%v: %v (want one problem naming the variable)", bad, err)
		}
	}
}
