package main

// Invitations against an attacker: look-alike addresses, unverified accounts, callers the auth
// table does not have, and a tenant mailing too much. Each through Hasura's actions, as a frontend
// would call them.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/team"
)

// unverifiedUser creates a signed-up user who has not verified their email yet.
func (s *stack) unverifiedUser(t *testing.T, email string) string {
	t.Helper()
	id := s.user(t, email)
	exec(t, s, `UPDATE auth.users SET email_verified = false WHERE id = $1`, id)
	return id
}

// inviteLink invites email as role and returns the invitation's id and the emailed link's token.
func (s *stack) inviteLink(t *testing.T, tenant, by, email, role string) (id, token string) {
	t.Helper()
	id = s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": email, "role": role}, by)["invitationId"].(string)
	if st := s.deliver(t, "invitation_email", "INSERT", s.row(t, "tenant_invitations", "id = $1", id)["id"]); st != http.StatusOK {
		t.Fatalf("invitation event: %d", st)
	}
	links := s.links(t, email)
	if len(links) == 0 {
		t.Fatalf("no email to %s", email)
	}
	return id, links[len(links)-1]
}

func TestInvitationSecurity(t *testing.T) {
	t.Parallel()
	s := newStack(t)

	t.Run("look-alike addresses do not accept an invitation", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		email := "kim1." + tenant[:8] + "@example.com"
		_, token := s.inviteLink(t, tenant, owner, email, "admin")
		for _, c := range []struct{ name, email string }{
			{"Kelvin sign for k", "\u212A" + email[1:]},
			{"trailing no-break space", email + "\u00A0"},
			{"leading em space", "\u2003" + email},
			{"zero-width space", "ki\u200Bm" + email[3:]},
		} {
			u := s.user(t, c.email)
			r := s.action(t, "acceptInvitation", map[string]any{"token": token}, u)
			if r.code != "invitation_email_mismatch" || r.status != http.StatusForbidden {
				t.Errorf("%s (%q): %d %s %q, want 403 invitation_email_mismatch", c.name, c.email, r.status, r.code, r.msg)
			}
		}
		if n := s.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, tenant); n != 1 {
			t.Fatalf("%d members after the look-alikes, want only the owner", n)
		}
		// The address itself, in another ASCII case, does.
		kim := s.user(t, strings.ToUpper(email[:4])+email[4:])
		if m := s.ok(t, "acceptInvitation", map[string]any{"token": token}, kim); m["role"] != "admin" {
			t.Errorf("membership = %v", m)
		}
	})

	t.Run("look-alike addresses are not invited", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		for _, email := range []string{
			"kim1@example.com\u00A0", "\u2003kim1@example.com", "ki\u200Bm1@example.com",
			"Kim <kim1@example.com>", "<kim1@example.com>", "kim1@example.com (Kim)", `"kim1"@example.com`,
			"team: kim1@example.com;", "kim1@example.com, eve@example.com",
		} {
			s.fails(t, "invalid", "inviteMember", map[string]any{"tenantId": tenant, "email": email, "role": "member"}, owner)
		}
		// A Kelvin sign is a different address, invited as typed; ASCII letters are lowered.
		out := s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": " \u212AIM1@Example.COM\t", "role": "guest"}, owner)
		if out["email"] != "\u212Aim1@example.com" {
			t.Errorf("stored %q", out["email"])
		}
	})

	t.Run("an unverified email does not accept until verified", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		email := "una." + tenant[:8] + "@example.com"
		_, token := s.inviteLink(t, tenant, owner, email, "admin")
		una := s.unverifiedUser(t, email)
		r := s.action(t, "acceptInvitation", map[string]any{"token": token}, una)
		if r.code != "email_unverified" || r.status != http.StatusForbidden || !strings.Contains(r.msg, "verify your email") {
			t.Fatalf("unverified: %d %s %q, want 403 email_unverified", r.status, r.code, r.msg)
		}
		if n := s.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tenant, una); n != 0 {
			t.Fatal("an unverified user joined")
		}
		exec(t, s, `UPDATE auth.users SET email_verified = true WHERE id = $1`, una)
		if m := s.ok(t, "acceptInvitation", map[string]any{"token": token}, una); m["role"] != "admin" {
			t.Errorf("membership = %v", m)
		}
	})

	t.Run("a caller auth.users does not have is unauthenticated", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		_, token := s.inviteLink(t, tenant, owner, "ghost."+tenant[:8]+"@example.com", "member")
		s.fails(t, "unauthenticated", "acceptInvitation", map[string]any{"token": token}, "3f1d5b8e-9c1e-4a57-9a51-4f0a2b6c7d8e")
	})

	t.Run("sixty concurrent invitations send exactly fifty in the hour", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		exec(t, s, `UPDATE tenant_subscriptions SET plan_id = (SELECT id FROM subscription_plans WHERE key = 'enterprise') WHERE tenant_id = $1`, tenant)
		const n = 60
		results := make([]result, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = s.action(t, "inviteMember", map[string]any{"tenantId": tenant, "email": fmt.Sprintf("flood%d@example.com", i), "role": "guest"}, owner)
			}()
		}
		wg.Wait()
		codes := map[string]int{}
		for _, r := range results {
			codes[r.code]++
			if r.code == "rate_limited" && (r.status != http.StatusTooManyRequests || !strings.Contains(r.msg, "try again after") || !strings.Contains(r.msg, " UTC")) {
				t.Errorf("rate_limited answered %d %q, want 429 and when to retry", r.status, r.msg)
			}
		}
		if codes[""] != 50 || codes["rate_limited"] != n-50 {
			t.Errorf("answers by code %v, want 50 successes and %d rate_limited", codes, n-50)
		}
		if got := s.count(t, `SELECT count(*) FROM tenant_invitations WHERE tenant_id = $1`, tenant); got != 50 {
			t.Errorf("%d invitations, want 50", got)
		}
	})

	t.Run("an invitation is resent at most five times a day", func(t *testing.T) {
		t.Parallel()
		tenant, owner := s.tenant(t)
		id, _ := s.inviteLink(t, tenant, owner, "resent."+tenant[:8]+"@example.com", "member")
		for range 5 {
			s.ok(t, "resendInvitation", map[string]any{"invitationId": id}, owner)
		}
		hash := s.row(t, "tenant_invitations", "id = $1", id)["token_hash"]
		msg := s.fails(t, "rate_limited", "resendInvitation", map[string]any{"invitationId": id}, owner)
		if !strings.Contains(msg, "try again after") {
			t.Errorf("message %q does not say when to retry", msg)
		}
		if s.row(t, "tenant_invitations", "id = $1", id)["token_hash"] != hash {
			t.Error("a refused resend changed the link")
		}
	})
}

// TestInvitationConfig: the invitation variables' defaults, and one line per malformed value.
func TestInvitationConfig(t *testing.T) {
	t.Parallel()
	load := func(kv ...string) (Config, error) {
		env := map[string]string{"DATABASE_URL": "postgres://x@y/z", "TENANTKIT_SECRET": testSecret, "APP_URL": "http://app.test"}
		for i := 0; i+1 < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return LoadConfig(func(k string) string { return env[k] })
	}
	c, err := load()
	if err != nil || !c.RequireVerifiedEmail || c.InvitationSendsPerHour != 50 || c.InvitationResendsPerDay != 5 {
		t.Errorf("defaults: %v, %+v", err, c)
	}
	c, err = load("INVITATION_REQUIRE_VERIFIED_EMAIL", "false", "INVITATION_SENDS_PER_HOUR", "500", "INVITATION_RESENDS_PER_DAY", "1")
	if err != nil || c.RequireVerifiedEmail || c.InvitationSendsPerHour != 500 || c.InvitationResendsPerDay != 1 {
		t.Errorf("set: %v, %+v", err, c)
	}
	_, err = load("INVITATION_REQUIRE_VERIFIED_EMAIL", "sometimes", "INVITATION_SENDS_PER_HOUR", "0", "INVITATION_RESENDS_PER_DAY", "lots")
	for _, want := range []string{"INVITATION_REQUIRE_VERIFIED_EMAIL must be true or false",
		"INVITATION_SENDS_PER_HOUR must be a whole number", "INVITATION_RESENDS_PER_DAY must be a whole number"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("malformed values: %v, want %q", err, want)
		}
	}
}

// openService opens the service on databaseURL with the test environment and extra, as start
// does, but returns Open's error.
func openService(t *testing.T, databaseURL string, extra ...string) (*Main, error) {
	t.Helper()
	env := map[string]string{"DATABASE_URL": databaseURL, "TENANTKIT_SECRET": testSecret, "APP_URL": "http://app.test", "LISTEN_ADDR": "127.0.0.1:0"}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		return nil, err
	}
	m := &Main{Config: cfg, Log: zerolog.New(io.Discard)}
	if err := m.Open(context.Background()); err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, nil
}

// TestRequireVerifiedEmail: with an auth table that has no email_verified, serve refuses to start
// unless told INVITATION_REQUIRE_VERIFIED_EMAIL=false, and then accepts without it.
func TestRequireVerifiedEmail(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	admin, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	// Such a table cannot carry the domain_join trigger, which delivers email_verified: its
	// operator leaves that trigger out of Hasura's metadata.
	if _, err := admin.Exec(context.Background(), `DROP TRIGGER "notify_hasura_domain_join_INSERT" ON auth.users;
		DROP TRIGGER "notify_hasura_domain_join_UPDATE" ON auth.users;
		ALTER TABLE auth.users DROP COLUMN email_verified`); err != nil {
		t.Fatal(err)
	}
	for _, env := range [][]string{nil, {"INVITATION_REQUIRE_VERIFIED_EMAIL", "true"}} {
		if _, err := openService(t, url, env...); err == nil ||
			!strings.Contains(err.Error(), "INVITATION_REQUIRE_VERIFIED_EMAIL") || !strings.Contains(err.Error(), "email_verified") {
			t.Errorf("serve with %v on an auth table without email_verified: %v, want a start-up error naming both", env, err)
		}
	}

	m, err := openService(t, url, "INVITATION_REQUIRE_VERIFIED_EMAIL", "false")
	if err != nil {
		t.Fatalf("serve with INVITATION_REQUIRE_VERIFIED_EMAIL=false: %v", err)
	}
	var owner, invitee string
	if err := admin.QueryRow(context.Background(), `INSERT INTO auth.users (email) VALUES ('own@example.com') RETURNING id::text`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if err := admin.QueryRow(context.Background(), `INSERT INTO auth.users (email) VALUES ('plain@example.com') RETURNING id::text`).Scan(&invitee); err != nil {
		t.Fatal(err)
	}
	st := &stack{m: m, admin: admin, hasura: hasuratest.NewClient(metadata(t), map[string]string{
		"TENANTKIT_URL": m.HTTP.URL(), "TENANTKIT_SECRET": testSecret, "TENANTKIT_GRAPHQL_URL": m.HTTP.URL() + "/graphql",
	})}
	tenant := st.ok(t, "createTenant", map[string]any{"name": "Plain", "slug": "plain-auth"}, owner)["tenantId"].(string)
	st.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": "plain@example.com", "role": "member"}, owner)
	var sealed, hash []byte
	if err := admin.QueryRow(context.Background(), `SELECT sealed_token, token_hash FROM tenantkit.invitation_outbox`).Scan(&sealed, &hash); err != nil {
		t.Fatal(err)
	}
	box, err := team.NewTokenSealer(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	token, err := box.Open(sealed, hash)
	if err != nil {
		t.Fatal(err)
	}
	if out := st.ok(t, "acceptInvitation", map[string]any{"token": token}, invitee); out["role"] != "member" {
		t.Errorf("accept = %v", out)
	}
}
