package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
)

// hasuraAuthEntry stands for the users' issuer next to tenantkit's in HASURA_GRAPHQL_JWT_SECRETS.
const hasuraAuthEntry = `{"jwk_url": "http://127.0.0.1:1/unused", "issuer": "hasura-auth"}`

// readmeEntry is the jwt_secrets entry README "API keys" tells operators to add for tenantkit, its
// JWKS address pointed at url.
func readmeEntry(t *testing.T, url string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	entry := regexp.MustCompile(`\{"jwk_url": "http://tenantkit:8081/\.well-known/jwks\.json"[^}]*\}`).Find(readme)
	if entry == nil {
		t.Fatal("README.md has no jwt_secrets entry for tenantkit's JWKS")
	}
	return strings.ReplaceAll(string(entry), "http://tenantkit:8081", url)
}

// signingKeyFile writes a fresh Ed25519 private key (PKCS#8 PEM, what openssl genpkey writes) to a
// file of the test's and returns its path.
func signingKeyFile(t *testing.T) string {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "api-token-key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newKeyStack is a stack that signs API tokens, with the default issuer and audience (those of the
// README's jwt_secrets entry).
func newKeyStack(t *testing.T, env ...string) *stack {
	t.Helper()
	return newStack(t, append([]string{"API_TOKEN_SIGNING_KEY_FILE", signingKeyFile(t)}, env...)...)
}

// exchange posts key to /auth/token from the test's address and returns the status and body.
func (s *stack) exchange(t *testing.T, key string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.m.HTTP.URL()+"/auth/token", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("decode /auth/token: %v", err)
	}
	return res.StatusCode, body, res.Header
}

func code(body map[string]any) string {
	ext, _ := body["extensions"].(map[string]any)
	c, _ := ext["code"].(string)
	return c
}

// hasuraSession authenticates a token as Hasura would with the README's jwt_secrets entry next to
// another issuer's.
func (s *stack) hasuraSession(t *testing.T, token, role string) (map[string]string, error) {
	t.Helper()
	entries := "[" + hasuraAuthEntry + "," + readmeEntry(t, s.m.HTTP.URL()) + "]"
	secrets, err := hasuratest.ParseJWTSecrets(entries)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Authorization": {"Bearer " + token}}
	if role != "" {
		h.Set("X-Hasura-Role", role)
	}
	return (&hasuratest.JWTAuth{Secrets: secrets}).Session(context.Background(), h)
}

// hasuraRows returns the ids of table's rows Hasura's select permission for the session's role
// lets it read, run as Hasura runs it (no RLS).
func (s *stack) hasuraRows(t *testing.T, table string, session map[string]string) []string {
	t.Helper()
	ctx := context.Background()
	meta, cat, rules := s.hasuraRules(t, session["x-hasura-role"])
	for _, r := range rules {
		if r.Table != table || r.Command != "select" {
			continue
		}
		if !r.Allowed {
			return nil
		}
		where, args, err := meta.SQL("public", table, "t", r.Filter, session, 1, cat)
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := s.admin.Query(ctx, "SELECT t.id::text FROM public."+table+" t WHERE "+where+" ORDER BY 1", args...)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	t.Fatalf("%s is not tracked", table)
	return nil
}

func (s *stack) member(t *testing.T, tenant, role string) string {
	t.Helper()
	u := s.user(t, "")
	if _, err := s.admin.Exec(context.Background(), `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, $3)`, tenant, u, role); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	s := newKeyStack(t)
	ctx := context.Background()
	tenant, owner := s.tenant(t)
	other, otherOwner := s.tenant(t)
	if _, err := s.admin.Exec(ctx, `UPDATE tenant_subscriptions SET status = 'active',
		plan_id = (SELECT id FROM subscription_plans WHERE key = 'enterprise') WHERE tenant_id = $1`, tenant); err != nil {
		t.Fatal(err) // room for every member below
	}
	admin := s.member(t, tenant, "admin")
	member := s.member(t, tenant, "member")
	for range 3 {
		s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": fmt.Sprintf("i%d-%s@example.com", time.Now().UnixNano(), tenant[:4]), "role": "guest"}, owner)
	}
	var projects []string // the tenant's; the other tenant's projects must stay out of reach
	for i := range 3 {
		var p string
		if err := s.admin.QueryRow(ctx, `INSERT INTO projects (tenant_id, name, owner_id) VALUES ($1, $2, $3) RETURNING id::text`, tenant, fmt.Sprint("p", i), owner).Scan(&p); err != nil {
			t.Fatal(err)
		}
		if err := s.admin.QueryRow(ctx, `INSERT INTO projects (tenant_id, name, owner_id) VALUES ($1, $2, $3) RETURNING id::text`, other, fmt.Sprint("q", i), otherOwner).Scan(new(string)); err != nil {
			t.Fatal(err)
		}
		projects = append(projects, p)
	}
	slices.Sort(projects)

	// Which scopes a key may have, and who may create, revoke and list keys: internal/apikey's
	// service_test.go. Here, a member given api_keys:manage creates a key through the action.
	t.Run("a member given api_keys:manage creates a key", func(t *testing.T) {
		s.ok(t, "changeMemberRole", map[string]any{"tenantId": tenant, "userId": member, "role": "member", "permissions": []string{"api_keys:manage"}}, owner)
		s.ok(t, "createApiKey", map[string]any{"tenantId": tenant, "name": "member's", "scopes": []string{"projects:write"}}, member)
		if n := s.count(t, `SELECT count(*) FROM api_keys WHERE tenant_id = $1`, tenant); n != 1 {
			t.Fatalf("%d keys after one creation", n)
		}
	})

	out := s.ok(t, "createApiKey", map[string]any{"tenantId": tenant, "name": "CI deploy", "scopes": []string{"users:invite", "projects:*"}}, admin)
	key, keyID := out["key"].(string), out["keyId"].(string)
	if !strings.HasPrefix(key, out["prefix"].(string)+"_") || !strings.HasPrefix(key, "tk_live_") {
		t.Fatalf("key %q does not start with its prefix %q", key, out["prefix"])
	}
	if !slices.Equal(toStrings(out["scopes"]), []string{"projects:*", "users:invite"}) {
		t.Errorf("scopes %v", out["scopes"])
	}

	t.Run("stored only as a digest", func(t *testing.T) {
		var stored []byte
		var row string
		if err := s.admin.QueryRow(ctx, `SELECT key_hash, row_to_json(k)::text FROM api_keys k WHERE id = $1`, keyID).Scan(&stored, &row); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(key))
		if string(stored) != string(sum[:]) || strings.Contains(row, key[len("tk_live_")+17:]) {
			t.Errorf("the key is not stored as its SHA-256 only: %s", row)
		}
		var app bool
		if err := s.admin.QueryRow(ctx, `SELECT has_column_privilege('tenantkit_app', 'api_keys', 'key_hash', 'SELECT')`).Scan(&app); err != nil || app {
			t.Errorf("tenantkit_app may read key_hash (%v)", err)
		}
	})

	status, body, _ := s.exchange(t, key)
	if status != 200 {
		t.Fatalf("exchange: %d %v", status, body)
	}
	token := body["access_token"].(string)
	if body["token_type"] != "Bearer" || body["tenant_id"] != tenant || body["api_key_id"] != keyID {
		t.Errorf("token response %v", body)
	}
	if ttl := body["expires_in"].(float64); ttl < 290 || ttl > 300 {
		t.Errorf("expires_in %v, want the default 5 minutes", ttl)
	}

	t.Run("Hasura accepts the token as configured in the README", func(t *testing.T) {
		session, err := s.hasuraSession(t, token, "")
		if err != nil {
			t.Fatalf("Hasura would refuse the token: %v", err)
		}
		want := map[string]string{"x-hasura-role": "api_client", "x-hasura-tenant-id": tenant, "x-hasura-api-key-id": keyID,
			"x-hasura-api-key-creator-id": admin, "x-hasura-scopes": "{projects:*,users:invite}"}
		for k, v := range want {
			if session[k] != v {
				t.Errorf("%s = %q, want %q", k, session[k], v)
			}
		}
		if _, err := s.hasuraSession(t, token, "user"); err == nil {
			t.Error("the token may be used with role user")
		}
		if got := s.hasuraRows(t, "projects", session); !slices.Equal(got, projects) {
			t.Errorf("the API client reads projects %v, want the tenant's %v", got, projects)
		}
		if got := s.hasuraRows(t, "tenant_invitations", session); len(got) != 3 {
			t.Errorf("the API client reads %d invitations, want 3 (users:invite)", len(got))
		}
		if got := s.hasuraRows(t, "audit_log", session); len(got) != 0 {
			t.Errorf("the API client reads the audit log without settings:read: %v", got)
		}
		if got := s.hasuraRows(t, "tenants", session); !slices.Equal(got, []string{tenant}) {
			t.Errorf("the API client reads tenants %v", got)
		}
	})

	t.Run("a demoted creator's key loses what the creator lost", func(t *testing.T) {
		s.ok(t, "changeMemberRole", map[string]any{"tenantId": tenant, "userId": admin, "role": "member"}, owner)
		status, body, _ := s.exchange(t, key)
		if status != 200 || !slices.Equal(toStrings(body["scopes"]), []string{"projects:read", "projects:write"}) {
			t.Fatalf("after demotion: %d %v, want scopes projects:read and projects:write", status, body)
		}
		session, err := s.hasuraSession(t, token, "") // the token issued before the demotion
		if err != nil {
			t.Fatal(err)
		}
		if got := s.hasuraRows(t, "tenant_invitations", session); len(got) != 0 {
			t.Errorf("the earlier token still reads %d invitations after its creator lost users:invite", len(got))
		}
		if got := s.hasuraRows(t, "projects", session); !slices.Equal(got, projects) {
			t.Errorf("the earlier token reads projects %v", got)
		}
		s.ok(t, "removeMember", map[string]any{"tenantId": tenant, "userId": admin}, owner)
		if status, body, _ := s.exchange(t, key); status != 403 || code(body) != "forbidden" {
			t.Errorf("after the creator left: %d %v, want 403 forbidden", status, body)
		}
		if got := s.hasuraRows(t, "projects", session); len(got) != 0 {
			t.Errorf("the earlier token still reads %d projects after its creator left", len(got))
		}
	})

	key2 := s.ok(t, "createApiKey", map[string]any{"tenantId": tenant, "name": "reader", "scopes": []string{"projects:read"}}, owner)
	secret2, id2 := key2["key"].(string), key2["keyId"].(string)

	t.Run("revocation takes effect on the next exchange and on issued tokens", func(t *testing.T) {
		status, body, _ := s.exchange(t, secret2)
		if status != 200 {
			t.Fatalf("exchange: %d %v", status, body)
		}
		session, err := s.hasuraSession(t, body["access_token"].(string), "")
		if err != nil {
			t.Fatal(err)
		}
		if got := s.hasuraRows(t, "projects", session); len(got) != 3 {
			t.Fatalf("reads %d projects before revocation", len(got))
		}
		if r := s.ok(t, "revokeApiKey", map[string]any{"keyId": id2}, owner); r["revokedAt"] == nil || r["tenantId"] != tenant {
			t.Errorf("revokeApiKey: %v", r)
		}
		if status, body, _ := s.exchange(t, secret2); status != 401 || code(body) != "api_key_revoked" {
			t.Errorf("exchange of a revoked key: %d %v", status, body)
		}
		if got := s.hasuraRows(t, "projects", session); len(got) != 0 {
			t.Errorf("a token of a revoked key still reads %d projects", len(got))
		}
	})

	t.Run("wrong, unknown and malformed keys", func(t *testing.T) {
		wrong := secret2[:len(secret2)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(secret2, "a")]
		for _, k := range []string{wrong, "tk_live_aaaaaaaaaaaaaaaa_" + strings.Repeat("a", 52), "tk_live_nope", ""} {
			status, body, h := s.exchange(t, k)
			want := "invalid_api_key"
			if k == "" {
				want = "invalid"
			}
			if code(body) != want || (want == "invalid_api_key" && (status != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "Bearer"))) {
				t.Errorf("key %.20q: %d %v %v", k, status, body, h)
			}
		}
	})

	t.Run("expired key", func(t *testing.T) {
		k := s.ok(t, "createApiKey", map[string]any{"tenantId": tenant, "name": "short", "scopes": []string{"projects:read"},
			"expiresAt": time.Now().Add(90 * time.Second).Format(time.RFC3339Nano)}, owner)
		status, body, _ := s.exchange(t, k["key"].(string))
		if status != 200 {
			t.Fatalf("%d %v", status, body)
		}
		exp, _ := time.Parse(time.RFC3339, body["expires_at"].(string))
		keyExp, _ := time.Parse(time.RFC3339Nano, k["expiresAt"].(string))
		if exp.After(keyExp) {
			t.Errorf("the token expires at %v, after its key (%v)", exp, keyExp)
		}
		if _, err := s.admin.Exec(ctx, `UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1`, k["keyId"]); err != nil {
			t.Fatal(err)
		}
		if status, body, _ := s.exchange(t, k["key"].(string)); status != 401 || code(body) != "api_key_expired" {
			t.Errorf("exchange of an expired key: %d %v", status, body)
		}
	})

	t.Run("listing shows no secret, to managers only", func(t *testing.T) {
		data, c := s.graph(t, `query($t: ID!) { apiKeys(tenantId: $t) { id name prefix scopes createdBy status lastUsedAt revokedAt } }`,
			map[string]any{"t": tenant}, session(owner))
		if c != "" {
			t.Fatalf("apiKeys: %s", c)
		}
		raw, _ := json.Marshal(data)
		if strings.Contains(string(raw), key[len("tk_live_")+17:]) || strings.Contains(string(raw), secret2[len("tk_live_")+17:]) {
			t.Fatal("the listing shows a secret")
		}
		byID := map[string]map[string]any{}
		for _, k := range data["apiKeys"].([]any) {
			byID[k.(map[string]any)["id"].(string)] = k.(map[string]any)
		}
		if len(byID) != 4 || byID[id2]["status"] != "revoked" || byID[keyID]["status"] != "active" || byID[keyID]["createdBy"] != admin ||
			byID[keyID]["lastUsedAt"] == nil {
			t.Errorf("listing %s", raw)
		}
		if _, c := s.graph(t, `query($t: ID!) { apiKeys(tenantId: $t) { id } }`, map[string]any{"t": tenant}, session(s.member(t, tenant, "guest"))); c != "forbidden" {
			t.Errorf("a guest lists keys: %q", c)
		}
		if _, c := s.graph(t, `query($t: ID!) { apiKeys(tenantId: $t) { id } }`, map[string]any{"t": other}, session(owner)); c != "not_found" {
			t.Errorf("another tenant's keys: %q", c)
		}
	})

	t.Run("creation and revocation are audited", func(t *testing.T) {
		rows, _ := s.admin.Query(ctx, `SELECT action, coalesce(actor_id::text, ''), details->>'key_id' FROM audit_log
			WHERE tenant_id = $1 AND action LIKE 'api_key.%' ORDER BY seq`, tenant)
		type entry struct{ action, actor, key string }
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (entry, error) {
			var e entry
			return e, r.Scan(&e.action, &e.actor, &e.key)
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []entry{{"api_key.created", member, ""}, {"api_key.created", admin, keyID}, {"api_key.created", owner, id2},
			{"api_key.revoked", owner, id2}, {"api_key.created", owner, ""}, {"api_key.updated", "", ""}}
		if len(got) != len(want) {
			t.Fatalf("audit entries %v, want %d", got, len(want))
		}
		for i, w := range want {
			if got[i].action != w.action || got[i].actor != w.actor || (w.key != "" && got[i].key != w.key) {
				t.Errorf("entry %d: %v, want %v", i, got[i], w)
			}
		}
	})

	t.Run("exchanges are counted", func(t *testing.T) {
		raw := scrapeMetrics(t, s.m)
		for outcome, n := range map[string]int{"issued": 4, "inactive": 1, "revoked": 1, "expired": 1, "mismatch": 1, "unknown": 1, "malformed": 2} {
			line := fmt.Sprintf(`tenantkit_api_key_exchanges_total{outcome=%q} %d`, outcome, n)
			if !strings.Contains(raw, line+"\n") {
				t.Errorf("metrics lack %s", line)
			}
		}
	})
}

// TestAPIKeyLastUsed: an exchange stamps last_used_at, at most once a minute.
func TestAPIKeyLastUsed(t *testing.T) {
	t.Parallel()
	s := newKeyStack(t)
	tenant, owner := s.tenant(t)
	k := s.ok(t, "createApiKey", map[string]any{"tenantId": tenant, "name": "k", "scopes": []string{"projects:read"}}, owner)
	stamp := func() *time.Time {
		var at *time.Time
		if err := s.admin.QueryRow(context.Background(), `SELECT last_used_at FROM api_keys WHERE id = $1`, k["keyId"]).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	if stamp() != nil {
		t.Fatal("a new key has been used")
	}
	s.exchange(t, k["key"].(string))
	first := stamp()
	if first == nil {
		t.Fatal("an exchange left no last-used stamp")
	}
	s.exchange(t, k["key"].(string))
	if second := stamp(); !second.Equal(*first) {
		t.Errorf("a second exchange within the minute moved the stamp from %v to %v", first, second)
	}
	if _, err := s.admin.Exec(context.Background(), `UPDATE api_keys SET last_used_at = now() - interval '2 minutes' WHERE id = $1`, k["keyId"]); err != nil {
		t.Fatal(err)
	}
	before := stamp()
	s.exchange(t, k["key"].(string))
	if after := stamp(); !after.After(*before) {
		t.Errorf("an exchange after two minutes left the stamp at %v", after)
	}
}

// TestAPIKeyThrottle: too many exchanges from one address, or wrong secrets for one key, are
// refused with 429 and Retry-After, before anything is checked.
func TestAPIKeyThrottle(t *testing.T) {
	t.Parallel()
	t.Run("per address", func(t *testing.T) {
		t.Parallel()
		s := newKeyStack(t, "API_TOKEN_EXCHANGES_PER_MINUTE", "3")
		for i := range 3 {
			if status, body, _ := s.exchange(t, "tk_live_nope"); status != 401 {
				t.Fatalf("exchange %d: %d %v", i+1, status, body)
			}
		}
		status, body, h := s.exchange(t, "tk_live_nope")
		if retry, _ := strconv.Atoi(h.Get("Retry-After")); status != 429 || code(body) != "rate_limited" || retry < 1 || retry > 20 {
			t.Fatalf("4th exchange in a minute: %d %v Retry-After %q", status, body, h.Get("Retry-After"))
		}
	})
	t.Run("per key", func(t *testing.T) {
		t.Parallel()
		s := newKeyStack(t, "API_TOKEN_FAILURES_PER_KEY_PER_HOUR", "2")
		tenant, owner := s.tenant(t)
		k := s.ok(t, "createApiKey", map[string]any{"tenantId": tenant, "name": "k", "scopes": []string{"projects:read"}}, owner)["key"].(string)
		wrong := k[:len(k)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(k, "a")]
		for range 2 {
			if status, _, _ := s.exchange(t, wrong); status != 401 {
				t.Fatalf("wrong secret: %d", status)
			}
		}
		status, body, h := s.exchange(t, k)
		if status != 429 || h.Get("Retry-After") == "" {
			t.Fatalf("the key after two wrong secrets: %d %v, want 429 with Retry-After", status, body)
		}
		other := s.ok(t, "createApiKey", map[string]any{"tenantId": tenant, "name": "k2", "scopes": []string{"projects:read"}}, owner)["key"].(string)
		if status, body, _ := s.exchange(t, other); status != 200 {
			t.Fatalf("another key was throttled: %d %v", status, body)
		}
	})
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
