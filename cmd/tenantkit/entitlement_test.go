package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
)

const entitlementsQuery = `query($t: ID!) { entitlements(tenantId: $t) {
	tenantId status reason trialEndsAt currentPeriodEnd cancelAtPeriodEnd
	plan { key featureFlags } subscribedPlan { key }
	limits { metric limit used } features { key enabled } } }`

const checkQuery = `query($t: ID!, $f: String!) { checkEntitlement(tenantId: $t, feature: $f) { tenantId feature allowed reason } }`

// TestEntitlements: the entitlements and checkEntitlement queries of the remote schema, called as
// Hasura forwards them for role user (the shared secret, X-Hasura-User-Id and X-Hasura-Role).
func TestEntitlements(t *testing.T) {
	t.Parallel()
	s := newStack(t)

	// entitlements returns the tenant's entitlements as userID sees them (nil: null).
	entitlements := func(t *testing.T, tenant, userID string) map[string]any {
		t.Helper()
		data, code := s.graph(t, entitlementsQuery, map[string]any{"t": tenant}, session(userID))
		if code != "" {
			t.Fatalf("entitlements: %s", code)
		}
		e, _ := data["entitlements"].(map[string]any)
		return e
	}
	check := func(t *testing.T, tenant, userID, feature string) string {
		t.Helper()
		data, code := s.graph(t, checkQuery, map[string]any{"t": tenant, "f": feature}, session(userID))
		if code != "" {
			t.Fatalf("checkEntitlement %s: %s", feature, code)
		}
		c := data["checkEntitlement"].(map[string]any)
		if c["tenantId"] != tenant || c["feature"] != feature {
			t.Errorf("checkEntitlement answers about %v/%v", c["tenantId"], c["feature"])
		}
		b, _ := json.Marshal(map[string]any{"allowed": c["allowed"], "reason": c["reason"]})
		return string(b)
	}
	asJSON := func(v any) string { b, _ := json.Marshal(v); return string(b) }

	t.Run("a new tenant is on its trial of Starter", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		e := entitlements(t, tenant, owner)
		if e["tenantId"] != tenant || e["status"] != "trialing" || e["reason"] != "trial" || e["cancelAtPeriodEnd"] != false || e["currentPeriodEnd"] != nil {
			t.Errorf("entitlements = %v", e)
		}
		ends, err := time.Parse(time.RFC3339Nano, e["trialEndsAt"].(string))
		if err != nil || time.Until(ends) < 13*24*time.Hour || time.Until(ends) > 14*24*time.Hour {
			t.Errorf("trialEndsAt = %v (%v), want in 14 days", e["trialEndsAt"], err)
		}
		if got, want := asJSON(e["plan"]), `{"featureFlags":[],"key":"starter"}`; got != want {
			t.Errorf("plan = %s, want %s", got, want)
		}
		if got, want := asJSON(e["limits"]), `[{"limit":10,"metric":"projects","used":0},{"limit":5,"metric":"storage_gb","used":0},{"limit":5,"metric":"users","used":1}]`; got != want {
			t.Errorf("limits = %s\nwant     %s", got, want)
		}
		if got, want := asJSON(e["features"]), `[{"enabled":false,"key":"advanced_analytics"},{"enabled":false,"key":"sso"}]`; got != want {
			t.Errorf("features = %s, want %s", got, want)
		}
		if got := check(t, tenant, owner, "sso"); got != `{"allowed":false,"reason":"not_in_plan"}` {
			t.Errorf("sso on a Starter trial: %s", got)
		}
	})

	t.Run("entitlements follow the subscription's status", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		guest := s.user(t, "")
		exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'guest')`, tenant, guest)
		subscribe := func(status string) {
			exec(t, s, `UPDATE tenant_subscriptions SET plan_id = (SELECT id FROM subscription_plans WHERE key = 'professional'),
				status = $2::text::subscription_status, stripe_subscription_id = 'sub_e2e', trial_ends_at = NULL,
				current_period_end = '2030-01-31T00:00:00Z', cancel_at_period_end = ($2::text = 'past_due') WHERE tenant_id = $1`, tenant, status)
		}
		for _, c := range []struct {
			status, plan, reason, analytics string
		}{
			{"active", "professional", "subscription_active", `{"allowed":true,"reason":"subscription_active"}`},
			{"past_due", "professional", "past_due_grace", `{"allowed":true,"reason":"past_due_grace"}`},
			{"unpaid", "free", "subscription_unpaid", `{"allowed":false,"reason":"not_in_plan"}`},
			{"canceled", "free", "subscription_canceled", `{"allowed":false,"reason":"not_in_plan"}`},
		} {
			subscribe(c.status)
			for _, who := range []string{owner, guest} { // any role
				e := entitlements(t, tenant, who)
				plan, sub := e["plan"].(map[string]any), e["subscribedPlan"].(map[string]any)
				if e["status"] != c.status || e["reason"] != c.reason || plan["key"] != c.plan || sub["key"] != "professional" ||
					e["currentPeriodEnd"] != "2030-01-31T00:00:00Z" || e["cancelAtPeriodEnd"] != (c.status == "past_due") {
					t.Errorf("%s: entitlements = %v", c.status, e)
				}
				if got := check(t, tenant, who, "advanced_analytics"); got != c.analytics {
					t.Errorf("%s: advanced_analytics %s, want %s", c.status, got, c.analytics)
				}
			}
		}
		if got := check(t, tenant, owner, "teleportation"); got != `{"allowed":false,"reason":"unknown_feature"}` {
			t.Errorf("a feature no plan has: %s", got)
		}
	})

	t.Run("a non-member learns nothing, whether or not the tenant exists", func(t *testing.T) {
		t.Parallel()
		tenant, _ := s.tenant(t)
		stranger := s.user(t, "")
		for _, id := range []string{tenant, uuid.NewString()} {
			if e := entitlements(t, id, stranger); e != nil {
				t.Errorf("a stranger reads %v", e)
			}
			for _, f := range []string{"sso", "teleportation"} {
				if got := check(t, id, stranger, f); got != `{"allowed":false,"reason":"not_member"}` {
					t.Errorf("a stranger checks %s: %s", f, got)
				}
			}
		}
	})

	t.Run("bad calls are refused with a code", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		for _, c := range []struct {
			name, query string
			vars        map[string]any
			user, code  string
		}{
			{"entitlements without a user", entitlementsQuery, map[string]any{"t": tenant}, "", "unauthenticated"},
			{"a check without a user", checkQuery, map[string]any{"t": tenant, "f": "sso"}, "", "unauthenticated"},
			{"entitlements of a tenant id that is no UUID", entitlementsQuery, map[string]any{"t": "acme"}, owner, "invalid"},
			{"a check of a tenant id that is no UUID", checkQuery, map[string]any{"t": "acme", "f": "sso"}, owner, "invalid"},
			{"an upper-case feature", checkQuery, map[string]any{"t": tenant, "f": "SSO"}, owner, "invalid"},
			{"SQL as a feature", checkQuery, map[string]any{"t": tenant, "f": "sso' OR '1'='1"}, owner, "invalid"},
		} {
			if _, code := s.graph(t, c.query, c.vars, session(c.user)); code != c.code {
				t.Errorf("%s: code %q, want %s", c.name, code, c.code)
			}
		}
	})

	t.Run("plans list their feature flags", func(t *testing.T) {
		t.Parallel()
		data, code := s.graph(t, `{ plans { key featureFlags } }`, nil, session(s.user(t, "")))
		want := `[{"featureFlags":[],"key":"free"},{"featureFlags":[],"key":"starter"},` +
			`{"featureFlags":["advanced_analytics"],"key":"professional"},{"featureFlags":["advanced_analytics","sso"],"key":"enterprise"}]`
		if got := asJSON(data["plans"]); code != "" || got != want {
			t.Errorf("plans = %s (%s)\nwant    %s", got, code, want)
		}
	})
}
