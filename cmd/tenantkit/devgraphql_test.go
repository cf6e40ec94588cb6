package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// devHasura starts dev's stand-in for Hasura's GraphQL endpoint in front of a stack.
func devHasura(t *testing.T, s *stack) *devGraphQL {
	t.Helper()
	env := map[string]string{}
	d, err := startDevGraphQL(context.Background(), "127.0.0.1:0", s.m.Config.DatabaseURL, "../../hasura/metadata",
		s.m.HTTP.URL(), testSecret, func(k string) string { return env[k] }, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

// gqlResponse is a GraphQL answer of the stand-in.
type gqlResponse struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []gqlError                 `json:"errors"`
}

func (r gqlResponse) field(t *testing.T, name string) map[string]any {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("errors: %+v", r.Errors)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Data[name], &m); err != nil {
		t.Fatalf("%s: %v in %s", name, err, r.Data[name])
	}
	return m
}

// send posts an operation to the stand-in with the given headers.
func send(t *testing.T, d *devGraphQL, headers map[string]string, query string, vars map[string]any) gqlResponse {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, d.URL()+"/v1/graphql", bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out gqlResponse
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// example reads an operation of examples/.
func example(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/" + name + ".graphql")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func bearer(t *testing.T, user string) map[string]string {
	t.Helper()
	s, err := parseJWTSecret(devJWTSecret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.mintToken(user, "user", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Authorization": "Bearer " + tok}
}

// devUserID asks the stand-in for a verified user, as `tenantkit dev user` does.
func devUserID(t *testing.T, d *devGraphQL, email string) string {
	t.Helper()
	var out bytes.Buffer
	if err := devUser(context.Background(), []string{"--hasura-url", d.URL(), email}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out.String())
}

// TestDevStandInServesTheFirstSession plays the README's first session through dev's stand-in for
// Hasura with the operations of examples/: two users, a tenant, an invitation accepted with the
// emailed link, a permission checked before and after a role change, the audit log. Then what the
// stand-in refuses, each with Hasura's error shape.
func TestDevStandInServesTheFirstSession(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	d := devHasura(t, s)
	alice := devUserID(t, d, "alice@example.com")
	bob := devUserID(t, d, "bob@example.com")
	if again := devUserID(t, d, "alice@example.com"); again != alice || bob == alice {
		t.Fatalf("dev user: alice %s then %s, bob %s", alice, again, bob)
	}
	asAlice, asBob := bearer(t, alice), bearer(t, bob)

	tenant := send(t, d, asAlice, example(t, "createTenant"), map[string]any{"name": "Acme", "slug": "acme"}).field(t, "createTenant")
	if tenant["role"] != "owner" || tenant["slug"] != "acme" {
		t.Fatalf("createTenant: %v", tenant)
	}
	tid := tenant["tenantId"].(string)
	inv := send(t, d, asAlice, example(t, "inviteMember"), map[string]any{"tenantId": tid, "email": "bob@example.com", "role": "member"}).field(t, "inviteMember")
	if status := s.deliver(t, "invitation_email", "INSERT", inv["invitationId"]); status != http.StatusOK {
		t.Fatalf("invitation_email: %d", status)
	}
	links := s.links(t, "bob@example.com")
	if len(links) != 1 {
		t.Fatalf("links: %v", links)
	}
	joined := send(t, d, asBob, example(t, "acceptInvitation"), map[string]any{"token": links[0]}).field(t, "acceptInvitation")
	if joined["role"] != "member" || joined["userId"] != bob {
		t.Fatalf("acceptInvitation: %v", joined)
	}
	check := func(want bool, role string) {
		t.Helper()
		got := send(t, d, asBob, example(t, "checkPermission"), map[string]any{"tenantId": tid, "permission": "users:invite"}).field(t, "checkPermission")
		if got["allowed"] != want || got["role"] != role {
			t.Errorf("checkPermission: %v, want allowed %v as %s", got, want, role)
		}
	}
	check(false, "member")
	changed := send(t, d, asAlice, example(t, "changeMemberRole"), map[string]any{"tenantId": tid, "userId": bob, "role": "admin"}).field(t, "changeMemberRole")
	if changed["role"] != "admin" {
		t.Fatalf("changeMemberRole: %v", changed)
	}
	check(true, "admin")
	// a remote-schema field, with the variable default of the example and an alias
	r := send(t, d, asAlice, strings.Replace(example(t, "auditLog"), "auditLog(", "log: auditLog(", 1), map[string]any{"tenantId": tid})
	if len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	var log []map[string]any
	if err := json.Unmarshal(r.Data["log"], &log); err != nil || len(log) == 0 {
		t.Fatalf("auditLog: %s (%v)", r.Data["log"], err)
	}
	if log[0]["action"] != "member.role_changed" || log[0]["subject"] != bob {
		t.Errorf("latest audit entry %v, want member.role_changed of bob", log[0])
	}
	// actions and remote fields in one request, answered in the order asked, with __typename
	mixed := send(t, d, asBob, `query Mixed($t: uuid!, $id: ID!) { __typename p: checkPermission(tenantId: $t, permission: "users:write") { allowed __typename } me: myPermissions(tenantId: $id) { role } }`,
		map[string]any{"t": tid, "id": tid})
	if len(mixed.Errors) > 0 {
		t.Fatal(mixed.Errors)
	}
	raw, _ := json.Marshal(mixed.Data)
	if !strings.Contains(string(raw), `"p":{"allowed":true,"__typename":"CheckPermissionOutput"}`) || !strings.Contains(string(raw), `"me":{"role":"admin"}`) ||
		!strings.Contains(string(raw), `"__typename":"query_root"`) {
		t.Errorf("mixed: %s", raw)
	}

	refusals := []struct {
		name    string
		headers map[string]string
		query   string
		vars    map[string]any
		code    string
		message string
	}{
		{"an action's own error, code kept", asAlice, example(t, "createTenant"), map[string]any{"name": "Again", "slug": "acme"}, "slug_taken", ""},
		{"a table field", asAlice, example(t, "myTenants"), nil, "not-supported", "served by Hasura itself"},
		{"a column the role may not select", asAlice, `{ tenant_invitations { token_hash } }`, nil, "validation-failed", `Cannot query field "token_hash"`},
		{"another role's action", asAlice, example(t, "service/recordUsage"), map[string]any{"events": []any{}}, "validation-failed", `Cannot query field "recordUsage"`},
		{"a missing variable", asAlice, example(t, "createTenant"), map[string]any{"name": "x"}, "validation-failed", "slug"},
		{"no token", map[string]string{}, example(t, "plans"), nil, "invalid-headers", "Missing 'Authorization'"},
		{"a token of another key", map[string]string{"Authorization": "Bearer " + strings.Repeat("a", 10) + ".b.c"}, example(t, "plans"), nil, "invalid-jwt", ""},
		{"a role the token does not allow", map[string]string{"Authorization": asAlice["Authorization"], "X-Hasura-Role": "service"}, example(t, "plans"), nil, "access-denied", "not in allowed roles"},
		{"a wrong admin secret", map[string]string{"X-Hasura-Admin-Secret": "nope"}, example(t, "plans"), nil, "access-denied", ""},
		{"role admin", map[string]string{"X-Hasura-Admin-Secret": devAdminSecret}, example(t, "plans"), nil, "not-supported", "not admin"},
	}
	for _, c := range refusals {
		r := send(t, d, c.headers, c.query, c.vars)
		if len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != c.code || !strings.Contains(r.Errors[0].Message, c.message) || r.Data != nil {
			t.Errorf("%s: got %+v, want one error with code %s and message containing %q, no data", c.name, r, c.code, c.message)
		}
	}
	// the admin secret with a role and a user acts as that user, as in Hasura
	asBobByAdmin := map[string]string{"X-Hasura-Admin-Secret": devAdminSecret, "X-Hasura-Role": "user", "X-Hasura-User-Id": bob}
	if got := send(t, d, asBobByAdmin, example(t, "myPermissions"), map[string]any{"tenantId": tid}).field(t, "myPermissions"); got["role"] != "admin" {
		t.Errorf("myPermissions as bob through the admin secret: %v", got)
	}
	// nothing was created by the refused calls
	if n := s.count(t, `SELECT count(*) FROM tenants`); n != 1 {
		t.Errorf("%d tenants, want 1", n)
	}
}
