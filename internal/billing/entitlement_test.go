package billing

import (
	"context"
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit"
)

// The caller and the input are checked before anything is read: a Service without a Store
// answers these (the rules about what is read are tested with the real store in
// internal/postgres/entitlement_test.go).
func TestEntitlementInput(t *testing.T) {
	t.Parallel()
	s := &Service{}
	ctx := context.Background()
	user := tenantkit.UserSession("7d1c6f0e-5b1a-4c33-9a0e-2f4c1b9d8e71")
	tenant := "0b6f3c1e-8a2d-4e5f-9c7b-1d2e3f4a5b6c"
	for _, c := range []struct {
		name            string
		sess            tenantkit.Session
		tenant, feature string
		code            string
	}{
		{"no session", tenantkit.Session{}, tenant, "sso", tenantkit.Unauthenticated},
		{"a user id that is no UUID", tenantkit.UserSession("alice"), tenant, "sso", tenantkit.Unauthenticated},
		{"a service without a user", tenantkit.NewSession(map[string]string{"x-hasura-role": "service"}), tenant, "sso", tenantkit.Unauthenticated},
		{"a tenant id that is no UUID", user, "acme", "sso", tenantkit.Invalid},
		{"an empty feature", user, tenant, "", tenantkit.Invalid},
		{"an upper-case feature", user, tenant, "SSO", tenantkit.Invalid},
		{"a feature starting with a digit", user, tenant, "2fa", tenantkit.Invalid},
		{"a feature with a space", user, tenant, "sso ", tenantkit.Invalid},
		{"a feature of 65 characters", user, tenant, "a" + strings.Repeat("b", 64), tenantkit.Invalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.feature == "sso" {
				if _, ok, err := s.Entitlements(ctx, c.sess, c.tenant); ok || tenantkit.ErrorCode(err) != c.code {
					t.Errorf("Entitlements: ok %v, %v; want %s", ok, err, c.code)
				}
			}
			if allowed, _, err := s.CheckEntitlement(ctx, c.sess, c.tenant, c.feature); allowed || tenantkit.ErrorCode(err) != c.code {
				t.Errorf("CheckEntitlement: allowed %v, %v; want %s", allowed, err, c.code)
			}
		})
	}
}
