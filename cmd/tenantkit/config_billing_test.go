package main

import (
	"strings"
	"testing"
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
