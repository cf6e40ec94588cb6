package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestCreateTenant(t *testing.T) {
	t.Parallel()
	s := newStack(t)

	// The rules of a new tenant (owner, trial, slugs, names, who may create): internal/team's
	// service_test.go. Here, what the action answers.
	t.Run("the action answers the tenant the caller owns", func(t *testing.T) {
		t.Parallel()
		out := s.ok(t, "createTenant", map[string]any{"name": "  Acme Inc ", "slug": "acme-inc"}, s.user(t, ""))
		if out["slug"] != "acme-inc" || out["name"] != "Acme Inc" || out["role"] != "owner" || out["tenantId"] == "" {
			t.Errorf("output = %v", out)
		}
	})

	t.Run("twenty concurrent creations of one slug make one tenant", func(t *testing.T) {
		t.Parallel()
		var wg sync.WaitGroup
		codes := make([]string, 20)
		users := make([]string, 20)
		for i := range users {
			users[i] = s.user(t, "")
		}
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := s.action(t, "createTenant", map[string]any{"name": "Race", "slug": "race-slug"}, users[i])
				codes[i] = r.code
			}()
		}
		wg.Wait()
		won := 0
		for _, c := range codes {
			switch c {
			case "":
				won++
			case "slug_taken":
			default:
				t.Errorf("unexpected code %q", c)
			}
		}
		if won != 1 || s.count(t, `SELECT count(*) FROM tenants WHERE slug = 'race-slug'`) != 1 {
			t.Errorf("%d winners, want 1", won)
		}
	})

	t.Run("metrics count actions by name and code", func(t *testing.T) {
		t.Parallel()
		a, b := s.user(t, ""), s.user(t, "")
		s.ok(t, "createTenant", map[string]any{"name": "M", "slug": "metrics-slug"}, a)
		s.fails(t, "slug_taken", "createTenant", map[string]any{"name": "M", "slug": "metrics-slug"}, b)
		body := scrapeMetrics(t, s.m)
		for _, want := range []string{
			`tenantkit_http_requests_total{code="slug_taken",name="createTenant",route="POST /actions/{name}",status="409"}`,
			`tenantkit_http_request_duration_seconds_count{name="createTenant",route="POST /actions/{name}"}`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})

	t.Run("membership reads and their statements are counted", func(t *testing.T) {
		t.Parallel()
		owner := s.user(t, "")
		tenant := s.ok(t, "createTenant", map[string]any{"name": "R", "slug": "reads-slug"}, owner)["tenantId"]
		scrape := func() (reads, statements float64) {
			body := scrapeMetrics(t, s.m)
			return metricValue(t, body, "tenantkit_membership_reads_total"), metricValue(t, body, "tenantkit_membership_statements_total")
		}
		reads, statements := scrape()
		const checks = 3
		for range checks {
			if out := s.ok(t, "checkPermission", map[string]any{"tenantId": tenant, "permission": "users:invite"}, owner); out["allowed"] != true {
				t.Fatalf("the owner's check: %v", out)
			}
		}
		// Other subtests read memberships meanwhile: at least these checks' reads, in at least one
		// statement and no more statements than reads.
		r, n := scrape()
		if r-reads < checks || n-statements < 1 || n > r {
			t.Errorf("after %d checks: reads %v → %v, statements %v → %v", checks, reads, r, statements, n)
		}
	})
}

func TestInvitations(t *testing.T) {
	t.Parallel()
	s := newStack(t)

	// invite invites email as role and delivers the insert event as Hasura would.
	invite := func(t *testing.T, tenant, by, email, role string) string {
		t.Helper()
		out := s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": email, "role": role}, by)
		id := out["invitationId"].(string)
		row := s.row(t, "tenant_invitations", "id = $1", id)
		if st := s.deliver(t, "invitation_email", "INSERT", row["id"]); st != http.StatusOK {
			t.Fatalf("invitation event: %d", st)
		}
		return id
	}

	t.Run("invite, email, accept", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		bob := s.user(t, "bob.accept@example.com")
		out := s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": "  Bob.Accept@Example.COM ", "role": "member"}, owner)
		if out["email"] != "bob.accept@example.com" || out["status"] != "pending" {
			t.Fatalf("invitation = %v", out)
		}
		id := out["invitationId"].(string)
		if n := s.count(t, `SELECT count(*) FROM tenantkit.invitation_outbox WHERE invitation_id = $1`, id); n != 1 {
			t.Fatalf("outbox entries = %d", n)
		}
		row := s.row(t, "tenant_invitations", "id = $1", id)
		if st := s.deliver(t, "invitation_email", "INSERT", row["id"]); st != http.StatusOK {
			t.Fatalf("event: %d", st)
		}
		links := s.links(t, "bob.accept@example.com")
		if len(links) != 1 {
			t.Fatalf("%d emails, want 1", len(links))
		}
		if n := s.count(t, `SELECT count(*) FROM tenantkit.invitation_outbox WHERE invitation_id = $1`, id); n != 0 {
			t.Errorf("outbox still holds the sealed token after the email was accepted")
		}
		// the stored hash is not the token
		if n := s.count(t, `SELECT count(*) FROM tenant_invitations WHERE token_hash = convert_to($1, 'UTF8') OR encode(token_hash, 'base64') LIKE '%' || $1 || '%'`, links[0]); n != 0 {
			t.Errorf("the token is stored in clear")
		}
		// the same delivery again sends nothing
		if st := s.deliver(t, "invitation_email", "INSERT", row["id"]); st != http.StatusOK {
			t.Fatalf("duplicate event: %d", st)
		}
		if n := len(s.links(t, "bob.accept@example.com")); n != 1 {
			t.Errorf("%d emails after a duplicate delivery, want 1", n)
		}

		m := s.ok(t, "acceptInvitation", map[string]any{"token": links[0]}, bob)
		if m["tenantId"] != tenant || m["role"] != "member" {
			t.Errorf("membership = %v", m)
		}
		again := s.ok(t, "acceptInvitation", map[string]any{"token": links[0]}, bob)
		if again["role"] != "member" {
			t.Errorf("second accept = %v", again)
		}
		if n := s.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tenant, bob); n != 1 {
			t.Errorf("memberships = %d", n)
		}
		s.fails(t, "invitation_used", "acceptInvitation", map[string]any{"token": links[0]}, s.user(t, ""))
		for action, want := range map[string]int{"tenant.created": 1, "member.invited": 1, "member.joined": 2, "invitation.accepted": 1} {
			if n := s.count(t, `SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = $2`, tenant, action); n != want {
				t.Errorf("audit %s entries = %d, want %d", action, n, want)
			}
		}
	})

	t.Run("each bad token has its own code and changes nothing", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		carol := s.user(t, "carol.codes@example.com")
		mallory := s.user(t, "mallory.codes@example.com")
		invite(t, tenant, owner, "carol.codes@example.com", "member")
		token := s.links(t, "carol.codes@example.com")[0]

		s.fails(t, "invitation_email_mismatch", "acceptInvitation", map[string]any{"token": token}, mallory)
		s.fails(t, "invitation_not_found", "acceptInvitation", map[string]any{"token": "AAAA" + token[4:]}, carol)
		s.fails(t, "invitation_not_found", "acceptInvitation", map[string]any{"token": "not-a-token"}, carol)
		s.fails(t, "invitation_not_found", "acceptInvitation", map[string]any{"token": ""}, carol)
		s.fails(t, "unauthenticated", "acceptInvitation", map[string]any{"token": token}, "")

		exec(t, s, `UPDATE tenant_invitations SET expires_at = now() - interval '1 minute' WHERE tenant_id = $1`, tenant)
		s.fails(t, "invitation_expired", "acceptInvitation", map[string]any{"token": token}, carol)

		exec(t, s, `UPDATE tenant_invitations SET expires_at = now() + interval '1 day' WHERE tenant_id = $1`, tenant)
		id := s.row(t, "tenant_invitations", "tenant_id = $1", tenant)["id"].(string)
		s.ok(t, "revokeInvitation", map[string]any{"invitationId": id}, owner)
		s.ok(t, "revokeInvitation", map[string]any{"invitationId": id}, owner) // idempotent
		s.fails(t, "invitation_revoked", "acceptInvitation", map[string]any{"token": token}, carol)
		s.fails(t, "invitation_revoked", "resendInvitation", map[string]any{"invitationId": id}, owner)
		if n := s.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, tenant); n != 1 {
			t.Errorf("members = %d, want only the owner", n)
		}
	})

	t.Run("resend rotates the link", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		dan := s.user(t, "dan.resend@example.com")
		id := invite(t, tenant, owner, "dan.resend@example.com", "guest")
		old := s.row(t, "tenant_invitations", "id = $1", id)
		s.ok(t, "resendInvitation", map[string]any{"invitationId": id}, owner)
		updated := s.row(t, "tenant_invitations", "id = $1", id)
		if st := s.deliver(t, "invitation_email", "UPDATE", updated["id"]); st != http.StatusOK {
			t.Fatalf("resend event: %d", st)
		}
		links := s.links(t, "dan.resend@example.com")
		if len(links) != 2 || links[0] == links[1] {
			t.Fatalf("links = %v, want two different", links)
		}
		// the first event, delivered late, finds its token superseded and sends nothing
		if st := s.deliver(t, "invitation_email", "INSERT", old["id"]); st != http.StatusOK {
			t.Fatalf("late event: %d", st)
		}
		if n := len(s.links(t, "dan.resend@example.com")); n != 2 {
			t.Errorf("%d emails after a superseded event, want 2", n)
		}
		s.fails(t, "invitation_not_found", "acceptInvitation", map[string]any{"token": links[0]}, dan)
		if m := s.ok(t, "acceptInvitation", map[string]any{"token": links[1]}, dan); m["role"] != "guest" {
			t.Errorf("membership = %v", m)
		}
	})

	t.Run("a failed send is retried with the same link and sent once", func(t *testing.T) {
		t.Parallel()
		s := newStack(t) // its own SMTP peer: the failure it injects must hit this delivery only
		tenant, owner := s.tenant(t)
		out := s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": "erin.retry@example.com", "role": "member"}, owner)
		row := s.row(t, "tenant_invitations", "id = $1", out["invitationId"])
		s.smtp.FailData(1)
		if st := s.deliver(t, "invitation_email", "INSERT", row["id"]); st < 500 {
			t.Fatalf("delivery during an SMTP failure: %d, want 5xx so Hasura retries", st)
		}
		if st := s.deliver(t, "invitation_email", "INSERT", row["id"]); st != http.StatusOK {
			t.Fatalf("retry: %d", st)
		}
		if st := s.deliver(t, "invitation_email", "INSERT", row["id"]); st != http.StatusOK {
			t.Fatalf("duplicate: %d", st)
		}
		if n := len(s.links(t, "erin.retry@example.com")); n != 1 {
			t.Errorf("%d emails, want 1", n)
		}
	})

	t.Run("fifty concurrent accepts make one membership", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		frank := s.user(t, "frank.race@example.com")
		invite(t, tenant, owner, "frank.race@example.com", "member")
		token := s.links(t, "frank.race@example.com")[0]
		var wg sync.WaitGroup
		results := make([]result, 50)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = s.action(t, "acceptInvitation", map[string]any{"token": token}, frank)
			}()
		}
		wg.Wait()
		for i, r := range results {
			if r.status != 200 {
				t.Errorf("accept %d: %d %s", i, r.status, r.code)
			}
		}
		if n := s.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tenant, frank); n != 1 {
			t.Errorf("memberships = %d", n)
		}
		if n := s.count(t, `SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = 'member.joined'`, tenant); n != 2 {
			t.Errorf("member.joined entries = %d, want 2 (owner and frank)", n)
		}
	})

	t.Run("who may invite whom", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		admin, member := s.user(t, "grace.admin@example.com"), s.user(t, "heidi.member@example.com")
		invite(t, tenant, owner, "grace.admin@example.com", "admin")
		invite(t, tenant, owner, "heidi.member@example.com", "member")
		s.ok(t, "acceptInvitation", map[string]any{"token": s.links(t, "grace.admin@example.com")[0]}, admin)
		s.ok(t, "acceptInvitation", map[string]any{"token": s.links(t, "heidi.member@example.com")[0]}, member)

		s.fails(t, "forbidden", "inviteMember", map[string]any{"tenantId": tenant, "email": "x1@example.com", "role": "owner"}, admin)
		s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": "x2@example.com", "role": "admin"}, admin)
		s.fails(t, "forbidden", "inviteMember", map[string]any{"tenantId": tenant, "email": "x3@example.com", "role": "guest"}, member)
		s.fails(t, "not_found", "inviteMember", map[string]any{"tenantId": tenant, "email": "x4@example.com", "role": "guest"}, s.user(t, ""))
		s.fails(t, "conflict", "inviteMember", map[string]any{"tenantId": tenant, "email": "X2@example.com", "role": "member"}, owner)
		s.fails(t, "invalid", "inviteMember", map[string]any{"tenantId": tenant, "email": "not an email", "role": "member"}, owner)
		s.fails(t, "invalid", "inviteMember", map[string]any{"tenantId": tenant, "email": "y@example.com", "role": "superuser"}, owner)
		s.fails(t, "invalid", "inviteMember", map[string]any{"tenantId": "not-a-uuid", "email": "y@example.com", "role": "member"}, owner)
		// Starter allows 5 seats: owner, admin, member and the pending x2 make 4; one more fits.
		s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": "x5@example.com", "role": "guest"}, owner)
		s.fails(t, "plan_limit", "inviteMember", map[string]any{"tenantId": tenant, "email": "x6@example.com", "role": "guest"}, owner)
	})
}

func TestMyPermissions(t *testing.T) {
	t.Parallel()
	s := newStack(t)

	// team creates a tenant with an owner, an admin and a member (joined directly, as the system).
	team := func(t *testing.T) (tenant, owner, admin, member string) {
		t.Helper()
		tenant, owner = s.tenant(t)
		admin, member = s.user(t, ""), s.user(t, "")
		exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'admin'), ($1, $3, 'member')`, tenant, admin, member)
		return
	}
	// The rules of roles (who grants what, the last owner, leaving, transfer, checkPermission):
	// internal/team's service_test.go. Here, myPermissions through the remote schema.
	t.Run("myPermissions through the remote schema", func(t *testing.T) {
		t.Parallel()
		tenant, _, admin, _ := team(t)
		q := `query($t: ID!) { myPermissions(tenantId: $t) { tenantId role permissions } }`
		res, err := s.hasura.RemoteSchema(context.Background(), "tenantkit", q, map[string]any{"t": tenant}, session(admin))
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Data struct {
				MyPermissions struct {
					Role        *string
					Permissions []string
				}
			}
			Errors []any
		}
		if err := res.JSON(&body); err != nil || len(body.Errors) > 0 {
			t.Fatalf("%v %s", err, res.Body)
		}
		p := body.Data.MyPermissions
		if p.Role == nil || *p.Role != "admin" || strings.Join(p.Permissions, ",") != "api_keys:manage,billing:*,projects:*,settings:read,settings:write,users:*" {
			t.Errorf("myPermissions = %v %v", p.Role, p.Permissions)
		}
		res, _ = s.hasura.RemoteSchema(context.Background(), "tenantkit", q, map[string]any{"t": tenant}, session(s.user(t, "")))
		if err := res.JSON(&body); err != nil || body.Data.MyPermissions.Role != nil || len(body.Data.MyPermissions.Permissions) != 0 {
			t.Errorf("a stranger's permissions: %s", res.Body)
		}
	})
}

func TestAuditLog(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	tenant, owner := s.tenant(t)
	admin, member := s.user(t, ""), s.user(t, "")
	exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'admin'), ($1, $3, 'member')`, tenant, admin, member)
	s.ok(t, "changeMemberRole", map[string]any{"tenantId": tenant, "userId": member, "role": "guest"}, admin)

	query := func(t *testing.T, user string, limit int) (entries []map[string]any, code string) {
		t.Helper()
		q := `query($t: ID!, $n: Int!) { auditLog(tenantId: $t, limit: $n) { action actorId subject details createdAt } }`
		res, err := s.hasura.RemoteSchema(context.Background(), "tenantkit", q, map[string]any{"t": tenant, "n": limit}, session(user))
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Data   *struct{ AuditLog []map[string]any }
			Errors []struct {
				Extensions struct{ Code string }
			}
		}
		if err := res.JSON(&body); err != nil {
			t.Fatal(err)
		}
		if len(body.Errors) > 0 {
			return nil, body.Errors[0].Extensions.Code
		}
		return body.Data.AuditLog, ""
	}

	t.Run("admins and owners read the latest events first", func(t *testing.T) {
		t.Parallel()
		for _, u := range []string{owner, admin} {
			entries, code := query(t, u, 50)
			if code != "" || len(entries) < 4 {
				t.Fatalf("as %s: %d entries, code %q", u, len(entries), code)
			}
			last := entries[0]
			if last["action"] != "member.role_changed" || last["actorId"] != admin || last["subject"] != member ||
				!strings.Contains(last["details"].(string), `"to": "guest"`) {
				t.Errorf("latest entry = %v", last)
			}
			if entries[len(entries)-1]["action"] != "tenant.created" {
				t.Errorf("oldest entry = %v", entries[len(entries)-1])
			}
		}
		if entries, _ := query(t, owner, 2); len(entries) != 2 {
			t.Errorf("limit 2 gave %d entries", len(entries))
		}
	})

	t.Run("members, strangers and bad limits are refused", func(t *testing.T) {
		t.Parallel()
		if _, code := query(t, member, 50); code != "forbidden" {
			t.Errorf("member: code %q", code)
		}
		if _, code := query(t, s.user(t, ""), 50); code != "not_found" {
			t.Errorf("stranger: code %q", code)
		}
		if _, code := query(t, owner, 0); code != "invalid" {
			t.Errorf("limit 0: code %q", code)
		}
	})
}

func exec(t *testing.T, s *stack, sql string, args ...any) {
	t.Helper()
	if _, err := s.admin.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}
