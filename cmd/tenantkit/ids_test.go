package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tenantkit/tenantkit/internal/stripetest"
)

// TestIDSpellings: a UUID is one id however its hex digits are cased. Ids are canonicalised where
// they enter (action inputs, remote-schema arguments, x-hasura-user-id), so the meter, the
// services and the answers never see two spellings of one id; spellings other than the
// 36-character form are refused as invalid.
func TestIDSpellings(t *testing.T) {
	t.Parallel()
	s := newStack(t, withStripe(t)...)
	sm, err := stripeMock()
	if err != nil {
		t.Fatal(err)
	}
	env := commandEnv(s.m, "STRIPE_SECRET_KEY", stripetest.TestKey, "STRIPE_API_URL", sm.URL)
	if err := plansSync(context.Background(), func(k string) string { return env[k] }, io.Discard); err != nil {
		t.Fatalf("plans sync: %v", err) // so that checkout reaches Stripe
	}

	t.Run("checkPermission with an upper-case tenant id is metered as the tenant's call", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		apiCalls := func() int {
			t.Helper()
			if err := s.m.Meter.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			return s.count(t, `SELECT coalesce(sum(quantity), 0)::int FROM tenantkit.usage_hours($1) WHERE metric = 'api_calls'`, tenant)
		}
		before := apiCalls()
		for _, id := range []string{tenant, strings.ToUpper(tenant), mixedCase(tenant)} {
			out := s.ok(t, "checkPermission", map[string]any{"tenantId": id, "permission": "projects:read"}, owner)
			if out["allowed"] != true || out["role"] != "owner" {
				t.Errorf("checkPermission(%s) = %v, want allowed as owner", id, out)
			}
		}
		if got := apiCalls() - before; got != 3 {
			t.Errorf("api_calls grew by %d for three allowed checks (lower, upper and mixed case), want 3", got)
		}
	})

	t.Run("every action and query taking an id answers alike for both spellings", func(t *testing.T) {
		t.Parallel()
		lower := idScript(t, s, func(id string) string { return id })
		upper := idScript(t, s, strings.ToUpper)
		if len(lower) < 30 {
			t.Fatalf("the script ran only %d steps", len(lower))
		}
		for i := range max(len(lower), len(upper)) {
			var l, u string
			if i < len(lower) {
				l = lower[i]
			}
			if i < len(upper) {
				u = upper[i]
			}
			if l != u {
				t.Errorf("step %d differs:\n  ids in lower case: %s\n  ids in upper case: %s", i, l, u)
			}
		}
	})

	t.Run("other spellings of a UUID are refused as invalid", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		for _, id := range []string{"{" + tenant + "}", "urn:uuid:" + tenant, strings.ReplaceAll(tenant, "-", ""), " " + tenant} {
			msg := s.fails(t, "invalid", "checkPermission", map[string]any{"tenantId": id, "permission": "projects:read"}, owner)
			if !strings.Contains(msg, "tenantId must be a UUID") {
				t.Errorf("checkPermission(%q): message %q does not name the argument", id, msg)
			}
			if _, code := s.graph(t, `query($t: ID!) { myPermissions(tenantId: $t) { role } }`, map[string]any{"t": id}, session(owner)); code != "invalid" {
				t.Errorf("myPermissions(%q): code %q, want invalid", id, code)
			}
		}
		// a user id in another spelling is nobody's
		if out := s.ok(t, "checkPermission", map[string]any{"tenantId": tenant, "permission": "projects:read"}, "{"+owner+"}"); out["allowed"] != false || out["role"] != nil {
			t.Errorf("checkPermission as {owner}: %v, want a non-member's answer", out)
		}
		s.fails(t, "unauthenticated", "inviteMember", map[string]any{"tenantId": tenant, "email": "x@example.com", "role": "member"}, "{"+owner+"}")
	})
}

// mixedCase upper-cases every other letter of id.
func mixedCase(id string) string {
	b := []byte(id)
	for i := 0; i < len(b); i += 2 {
		if b[i] >= 'a' && b[i] <= 'f' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

var timestampPattern = regexp.MustCompile(`"\d{4}-\d\d-\d\dT[^"]*"`)

// idScript runs the same team, billing and remote-schema calls on a new tenant, every id argument
// and every x-hasura-user-id written through spell, and returns a transcript of the answers with
// this run's ids, emails and slug replaced by names and timestamps left out. Two spellings of the
// same ids must give the same transcript: the same answers, the same effects, canonical ids in
// every output (an id echoed in another spelling is not replaced, so it shows), and the same
// api_calls.
func idScript(t *testing.T, s *stack, spell func(string) string) []string {
	t.Helper()
	ctx := context.Background()
	run := uuid.NewString()[:8]
	names := map[string]string{}
	email := func(who string) string {
		addr := who + "-" + run + "@ids.example.com"
		names[addr] = "<" + who + "@>"
		return addr
	}
	user := func(who string) string {
		id := s.user(t, email(who))
		names[id] = "<" + who + ">"
		return id
	}
	owner, ann, bob := user("owner"), user("ann"), user("bob")
	var plan string
	if err := s.admin.QueryRow(ctx, `SELECT id::text FROM subscription_plans WHERE key = 'professional'`).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	names[plan] = "<plan>"

	var lines []string
	note := func(step string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, step+" "+timestampPattern.ReplaceAllString(string(b), `"<time>"`))
	}
	call := func(name string, in map[string]any, as string) map[string]any {
		t.Helper()
		r := s.action(t, name, in, as)
		note(name, map[string]any{"status": r.status, "code": r.code, "msg": r.msg, "out": r.out})
		return r.out
	}
	query := func(field, q string, vars map[string]any, as string) {
		t.Helper()
		data, code := s.graph(t, q, vars, session(as))
		note(field, map[string]any{"code": code, "data": data})
	}
	token := func(addr, invitation string) string {
		t.Helper()
		if st := s.deliver(t, "invitation_email", "INSERT", invitation); st != http.StatusOK {
			t.Fatalf("invitation email event: %d", st)
		}
		links := s.links(t, addr)
		if len(links) == 0 {
			t.Fatalf("no invitation email to %s", addr)
		}
		return links[len(links)-1]
	}

	slug := "ids-" + run
	names[slug] = "<slug>"
	tenant := call("createTenant", map[string]any{"name": "Ids", "slug": slug}, spell(owner))["tenantId"].(string)
	names[tenant] = "<tenant>"
	T := spell(tenant)

	call("checkPermission", map[string]any{"tenantId": T, "permission": "users:invite"}, spell(owner))
	inv := call("inviteMember", map[string]any{"tenantId": T, "email": email("ann"), "role": "admin"}, spell(owner))["invitationId"].(string)
	names[inv] = "<ann-invitation>"
	annToken := token(email("ann"), inv)
	call("acceptInvitation", map[string]any{"token": annToken}, spell(ann))
	call("acceptInvitation", map[string]any{"token": annToken}, spell(ann)) // repeated by the same user: the same answer

	inv = call("inviteMember", map[string]any{"tenantId": T, "email": email("bob"), "role": "member"}, spell(ann))["invitationId"].(string)
	names[inv] = "<bob-invitation>"
	call("resendInvitation", map[string]any{"invitationId": spell(inv)}, spell(owner))
	call("revokeInvitation", map[string]any{"invitationId": spell(inv)}, spell(owner))
	call("revokeInvitation", map[string]any{"invitationId": spell(inv)}, spell(ann)) // idempotent
	call("resendInvitation", map[string]any{"invitationId": spell(inv)}, spell(owner))
	inv = call("inviteMember", map[string]any{"tenantId": T, "email": email("bob"), "role": "member"}, spell(owner))["invitationId"].(string)
	names[inv] = "<bob-invitation-2>"
	call("acceptInvitation", map[string]any{"token": token(email("bob"), inv)}, spell(bob))

	call("changeMemberRole", map[string]any{"tenantId": T, "userId": spell(bob), "role": "guest"}, spell(ann))
	call("changeMemberRole", map[string]any{"tenantId": T, "userId": spell(bob), "role": "member", "permissions": []string{"users:invite"}}, spell(owner))
	call("changeMemberRole", map[string]any{"tenantId": T, "userId": spell(owner), "role": "admin"}, spell(ann)) // above ann's role
	call("checkPermission", map[string]any{"tenantId": T, "permission": "users:invite"}, spell(bob))
	// The caller names themself in another spelling than their session's.
	call("transferOwnership", map[string]any{"tenantId": T, "userId": spell(owner)}, owner)
	call("transferOwnership", map[string]any{"tenantId": T, "userId": spell(ann)}, owner)
	call("transferOwnership", map[string]any{"tenantId": T, "userId": spell(owner)}, spell(ann))
	call("removeMember", map[string]any{"tenantId": T, "userId": spell(bob)}, spell(ann))
	call("removeMember", map[string]any{"tenantId": T, "userId": spell(bob)}, spell(ann)) // gone already
	call("removeMember", map[string]any{"tenantId": T, "userId": spell(ann)}, ann)        // leaves
	call("checkPermission", map[string]any{"tenantId": T, "permission": "projects:read"}, spell(ann))

	call("createCheckoutSession", map[string]any{"tenantId": T, "planId": spell(plan)}, spell(owner))
	call("createBillingPortalSession", map[string]any{"tenantId": T}, spell(owner))
	call("cancelSubscription", map[string]any{"tenantId": T}, spell(owner))
	call("resumeSubscription", map[string]any{"tenantId": T}, spell(owner))
	call("changePlan", map[string]any{"tenantId": T, "planId": spell(plan)}, spell(owner))

	usage := func(key string, id string) {
		r := s.record(t, map[string]any{"tenantId": id, "metric": "exports", "quantity": 2, "idempotencyKey": key})
		note("recordUsage", map[string]any{"status": r.status, "code": r.code, "out": r.out})
	}
	usage("export-1", T)
	usage("export-1", tenant) // the same event, named in canonical form: a duplicate
	usage("export-2", T)
	if n := s.count(t, `SELECT count(*) FROM tenantkit.usage_events WHERE tenant_id = $1 AND metric = 'exports'`, tenant); n != 2 {
		note("usage_events", n)
	}

	query("myPermissions", `query($t: ID!) { myPermissions(tenantId: $t) { tenantId role permissions } }`, map[string]any{"t": T}, spell(owner))
	query("checkEntitlement", `query($t: ID!) { checkEntitlement(tenantId: $t, feature: "sso") { tenantId feature allowed reason } }`, map[string]any{"t": T}, spell(owner))
	query("entitlements", `query($t: ID!) { entitlements(tenantId: $t) { tenantId status reason plan { key } limits { metric limit used } } }`, map[string]any{"t": T}, spell(owner))
	query("auditLog", `query($t: ID!) { auditLog(tenantId: $t, limit: 100) { actorId action subject details } }`, map[string]any{"t": T}, spell(owner))
	data, code := s.graph(t, `query($t: ID!) { usage(tenantId: $t) { metric quantity } }`, map[string]any{"t": T}, session(spell(owner)))
	var exports []any
	if data != nil {
		for _, u := range data["usage"].([]any) {
			if u.(map[string]any)["metric"] == "exports" { // api_calls are flushed in the background: compared below
				exports = append(exports, u)
			}
		}
	}
	note("usage", map[string]any{"code": code, "exports": exports})

	if err := s.m.Meter.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	note("api_calls", s.count(t, `SELECT coalesce(sum(quantity), 0)::int FROM tenantkit.usage_hours($1) WHERE metric = 'api_calls'`, tenant))
	var members []string
	rows, _ := s.admin.Query(ctx, `SELECT user_id::text, role::text FROM tenant_users WHERE tenant_id = $1`, tenant)
	for rows.Next() {
		var id, role string
		if err := rows.Scan(&id, &role); err != nil {
			t.Fatal(err)
		}
		members = append(members, names[id]+":"+role)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(members)
	note("members", members)
	note("steps", fmt.Sprint(len(lines)))
	for i := range lines { // names last: most ids are known only after the step that made them
		for id, name := range names {
			lines[i] = strings.ReplaceAll(lines[i], id, name)
		}
	}
	return lines
}
