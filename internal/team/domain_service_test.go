package team_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/dnstest"
	"github.com/tenantkit/tenantkit/internal/team"
)

func uniqueDomain() string { return "acme-" + uuid.NewString()[:8] + ".test" }

// domainWorld is the domains service over a fresh database, asking a DNS server of the test's.
type domainWorld struct {
	*world
	domains *team.Domains
	dns     *dnstest.Server
}

func newDomainWorld(t *testing.T) *domainWorld {
	t.Helper()
	w := newWorld(t)
	dns := dnstest.Start(t)
	return &domainWorld{world: w, domains: &team.Domains{Store: w.db, Resolver: dns.Resolver()}, dns: dns}
}

// tenant creates a tenant and returns it with its owner.
func (w *domainWorld) tenant(t *testing.T) (tenant, owner string) {
	t.Helper()
	owner = w.user(t)
	tn, err := w.svc.CreateTenant(context.Background(), as(owner), "Acme", "acme-"+owner[:8])
	if err != nil {
		t.Fatal(err)
	}
	return tn.ID, owner
}

// signUp creates a user as an auth service would (email verified or not) and applies the domain
// rule to it, as the domain_join event does; it returns the user's id.
func (w *domainWorld) signUp(t *testing.T, email string, verified bool) string {
	t.Helper()
	var id string
	if err := w.admin.QueryRow(context.Background(), `INSERT INTO auth.users (email, email_verified) VALUES ($1, $2) RETURNING id::text`,
		email, verified).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := w.domains.SignedUp(context.Background(), id); err != nil {
		t.Fatalf("SignedUp(%s): %v", email, err)
	}
	return id
}

func (w *domainWorld) role(t *testing.T, tenant, user string) string {
	t.Helper()
	var role string
	if err := w.admin.QueryRow(context.Background(), `SELECT coalesce((SELECT role::text FROM tenant_users WHERE tenant_id = $1 AND user_id = $2), '')`,
		tenant, user).Scan(&role); err != nil {
		t.Fatal(err)
	}
	return role
}

// verified adds domain to the tenant with policy and role, publishes its record and verifies it.
func (w *domainWorld) verified(t *testing.T, tenant, owner, domain, policy, role string) string {
	t.Helper()
	ctx := context.Background()
	d, err := w.domains.Add(ctx, as(owner), tenant, domain, policy, role)
	if err != nil {
		t.Fatal(err)
	}
	w.dns.Set(d.RecordName(), d.Token)
	if v, err := w.domains.Verify(ctx, as(owner), d.ID); err != nil || v.VerifiedAt == nil {
		t.Fatalf("Verify: %+v, %v", v, err)
	}
	return d.ID
}

func TestDomainVerification(t *testing.T) {
	t.Parallel()
	w := newDomainWorld(t)
	ctx := context.Background()
	tenant, owner := w.tenant(t)
	other, otherOwner := w.tenant(t)
	member := w.user(t)
	w.exec(t, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'member')`, tenant, member)
	domain := uniqueDomain()

	add := func(by, tenant, domain, policy, role string) (team.Domain, error) {
		return w.domains.Add(ctx, as(by), tenant, domain, policy, role)
	}
	for _, bad := range []string{"gmail.com", "mail.yahoo.com", "acme", "192.168.0.1", "acme.com/x"} {
		if _, err := add(owner, tenant, bad, "", ""); code(err) != tenantkit.Invalid {
			t.Errorf("add %q: %v, want invalid", bad, err)
		}
	}
	for _, c := range []struct{ by, tenant, policy, role, want string }{
		{member, tenant, "", "", tenantkit.Forbidden},
		{owner, tenant, "", "owner", tenantkit.Invalid},
		{owner, tenant, "everyone", "", tenantkit.Invalid},
		{owner, other, "", "", tenantkit.NotFound},
	} {
		if _, err := add(c.by, c.tenant, domain, c.policy, c.role); code(err) != c.want {
			t.Errorf("add by %s to %s (policy %q role %q): %v, want %s", c.by, c.tenant, c.policy, c.role, err, c.want)
		}
	}

	d, err := add(owner, tenant, "  "+domain+". ", "", "")
	if err != nil || d.Domain != domain || d.RecordName() != "_tenantkit-challenge."+domain || d.VerifiedAt != nil ||
		d.Policy != team.PolicySuggest || d.DefaultRole != tenantkit.Member {
		t.Fatalf("Add = %+v, %v", d, err)
	}
	if _, err := add(owner, tenant, domain, "", ""); code(err) != tenantkit.Conflict {
		t.Errorf("adding it twice: %v", err)
	}
	// another tenant may claim it too, until one of them verifies it
	od, err := add(otherOwner, other, domain, "", "")
	if err != nil {
		t.Fatal(err)
	}

	verify := func(by, id string) (team.Domain, error) { return w.domains.Verify(ctx, as(by), id) }
	if _, err := verify(owner, d.ID); code(err) != team.DomainUnverified {
		t.Errorf("no record: %v", err)
	}
	w.dns.Set(d.RecordName(), "v=spf1 -all", "tenantkit-verification=somethingelse")
	if _, err := verify(owner, d.ID); code(err) != team.DomainUnverified {
		t.Errorf("another record: %v", err)
	}
	for _, who := range []string{member, otherOwner} { // members do not see domains
		if _, err := verify(who, d.ID); code(err) != tenantkit.NotFound {
			t.Errorf("verify by %s: %v, want not_found", who, err)
		}
	}
	w.dns.Set(d.RecordName(), "v=spf1 -all", d.Token)
	v, err := verify(owner, d.ID)
	if err != nil || v.VerifiedAt == nil {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	if again, err := verify(owner, d.ID); err != nil || !again.VerifiedAt.Equal(*v.VerifiedAt) {
		t.Errorf("verifying again: %+v, %v", again, err)
	}
	if q := w.dns.Queries(); len(q) == 0 || q[len(q)-1] != "_tenantkit-challenge."+domain {
		t.Errorf("the DNS server saw %v", q)
	}

	// the other tenant's record is published too, but the domain is taken
	w.dns.Set(d.RecordName(), d.Token, od.Token)
	if _, err := verify(otherOwner, od.ID); code(err) != team.DomainTaken {
		t.Errorf("verify of a taken domain: %v", err)
	}
	third, _ := w.tenant(t)
	w.exec(t, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner')`, third, otherOwner)
	if _, err := add(otherOwner, third, domain, "", ""); code(err) != team.DomainTaken {
		t.Errorf("add of a taken domain: %v", err)
	}
	if n := w.count(t, `SELECT count(*) FROM tenant_domains WHERE domain = $1 AND verified_at IS NOT NULL`, domain); n != 1 {
		t.Errorf("%d tenants verified %s", n, domain)
	}

	if list, err := w.domains.List(ctx, as(owner), tenant); err != nil || len(list) != 1 || list[0].VerifiedAt == nil {
		t.Errorf("List = %+v, %v", list, err)
	}
	if _, err := w.domains.List(ctx, as(member), tenant); code(err) != tenantkit.Forbidden {
		t.Errorf("a member lists domains: %v", err)
	}
	rows, _ := w.admin.Query(ctx, `SELECT action FROM audit_log WHERE tenant_id = $1 AND action LIKE 'domain.%' ORDER BY seq`, tenant)
	actions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(actions) != "[domain.added domain.verified]" {
		t.Errorf("audit %v", actions)
	}
}

func TestDomainSignUps(t *testing.T) {
	t.Parallel()
	w := newDomainWorld(t)
	ctx := context.Background()
	tenant, owner := w.tenant(t)
	domain := uniqueDomain()
	domainID := w.verified(t, tenant, owner, domain, team.PolicyAutoJoin, "guest")

	t.Run("a verified address joins, once", func(t *testing.T) {
		u := w.signUp(t, "kim@"+domain, true)
		if r := w.role(t, tenant, u); r != "guest" {
			t.Fatalf("role %q, want guest", r)
		}
		// the rule applied again (a repeated event, the email re-verified) changes nothing
		w.exec(t, `UPDATE auth.users SET email_verified = false WHERE id = $1`, u)
		w.exec(t, `UPDATE auth.users SET email_verified = true WHERE id = $1`, u)
		for range 2 {
			if outcome, err := w.domains.SignedUp(ctx, u); err != nil || outcome != team.AlreadyMember {
				t.Errorf("again: %q, %v; want %q", outcome, err, team.AlreadyMember)
			}
		}
		if n := w.count(t, `SELECT count(*) FROM tenant_users WHERE user_id = $1`, u); n != 1 {
			t.Errorf("%d memberships", n)
		}
		if n := w.count(t, `SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND subject = $2 AND action IN ('member.joined', 'domain.joined')`, tenant, u); n != 2 {
			t.Errorf("%d audit entries for the join, want member.joined and domain.joined once each", n)
		}
	})

	t.Run("an unverified address waits for its verification", func(t *testing.T) {
		u := w.signUp(t, "lee@"+domain, false)
		if r := w.role(t, tenant, u); r != "" {
			t.Fatalf("an unverified address joined as %s", r)
		}
		w.exec(t, `UPDATE auth.users SET email_verified = true WHERE id = $1`, u)
		if _, err := w.domains.SignedUp(ctx, u); err != nil {
			t.Fatal(err)
		}
		if r := w.role(t, tenant, u); r != "guest" {
			t.Errorf("after verification: role %q, want guest", r)
		}
	})

	t.Run("other domains join nothing", func(t *testing.T) {
		pending := uniqueDomain() // claimed with auto_join, never verified
		if _, err := w.domains.Add(ctx, as(owner), tenant, pending, team.PolicyAutoJoin, ""); err != nil {
			t.Fatal(err)
		}
		for _, email := range []string{"kim@eu." + domain, "kim@not-" + domain, "kim@gmail.com", "kim@" + pending} {
			u := w.signUp(t, email, true)
			if n := w.count(t, `SELECT count(*) FROM tenant_users WHERE user_id = $1`, u); n != 0 {
				t.Errorf("%s joined %d tenants", email, n)
			}
		}
	})

	t.Run("suggest: offered, then joined by accepting", func(t *testing.T) {
		if _, err := w.domains.SetPolicy(ctx, as(owner), domainID, team.PolicySuggest, "member"); err != nil {
			t.Fatal(err)
		}
		u := w.signUp(t, "max@"+domain, true)
		if r := w.role(t, tenant, u); r != "" {
			t.Fatalf("joined as %s under suggest", r)
		}
		offers, err := w.domains.Offers(ctx, as(u))
		if err != nil || len(offers) != 1 || offers[0].TenantID != tenant || offers[0].Role != tenantkit.Member || offers[0].Domain != domain {
			t.Fatalf("Offers = %+v, %v", offers, err)
		}
		if _, err := w.domains.SignedUp(ctx, u); err != nil { // again: still one offer
			t.Fatal(err)
		}
		if n := w.count(t, `SELECT count(*) FROM tenantkit.domain_offers WHERE user_id = $1`, u); n != 1 {
			t.Errorf("%d offers after the rule ran twice", n)
		}
		m, err := w.domains.AcceptOffer(ctx, as(u), tenant)
		if err != nil || m.Role != tenantkit.Member || w.role(t, tenant, u) != "member" {
			t.Fatalf("AcceptOffer = %+v, %v", m, err)
		}
		if _, err := w.domains.AcceptOffer(ctx, as(u), tenant); code(err) != tenantkit.NotFound {
			t.Errorf("accepting twice: %v", err)
		}
		if _, err := w.domains.AcceptOffer(ctx, as(w.signUp(t, "zed@elsewhere-"+domain, true)), tenant); code(err) != tenantkit.NotFound {
			t.Errorf("accepting without an offer: %v", err)
		}
	})

	t.Run("an offer follows the address", func(t *testing.T) {
		u := w.signUp(t, "ana@"+domain, true)
		w.exec(t, `UPDATE auth.users SET email = 'ana@elsewhere.test' WHERE id = $1`, u)
		if _, err := w.domains.AcceptOffer(ctx, as(u), tenant); code(err) != team.InvitationEmailMismatch {
			t.Errorf("accepting after the address moved: %v", err)
		}
	})

	t.Run("removing the domain stops joins and changes no membership", func(t *testing.T) {
		before := w.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, tenant)
		pending := w.signUp(t, "pat@"+domain, true) // offered (suggest)
		removed, err := w.domains.Remove(ctx, as(owner), domainID)
		if err != nil || removed.Domain != domain {
			t.Fatalf("Remove = %+v, %v", removed, err)
		}
		if after := w.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, tenant); after != before {
			t.Errorf("members %d → %d", before, after)
		}
		if _, err := w.domains.AcceptOffer(ctx, as(pending), tenant); code(err) != tenantkit.NotFound {
			t.Errorf("accepting a withdrawn offer: %v", err)
		}
		u := w.signUp(t, "late@"+domain, true)
		if n := w.count(t, `SELECT count(*) FROM tenant_users WHERE user_id = $1`, u) + w.count(t, `SELECT count(*) FROM tenantkit.domain_offers WHERE user_id = $1`, u); n != 0 {
			t.Errorf("a sign-up after the removal joined or was offered (%d)", n)
		}
	})
}
