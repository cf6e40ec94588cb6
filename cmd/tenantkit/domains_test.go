package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantkit/tenantkit/internal/dnstest"
	"github.com/tenantkit/tenantkit/internal/hasuratest"
)

// tryDeliver is deliver for other goroutines than the test's: it reports instead of failing.
func (s *stack) tryDeliver(ctx context.Context, trigger, op, rowID string) (int, error) {
	var eventID string
	err := s.admin.QueryRow(ctx, `SELECT id FROM hdb_catalog.event_log
		WHERE trigger_name = $1 AND payload->>'op' = $2 AND payload->'data'->'new'->>'id' = $3::text
		ORDER BY created_at DESC, id LIMIT 1`, trigger, op, rowID).Scan(&eventID)
	if err != nil {
		return 0, err
	}
	d, err := s.hasura.RedeliverEvent(ctx, s.admin, hasuratest.HasuraCatalogSchema, eventID)
	return d.Status, err
}

// newDomainStack is a stack whose verifyDomain asks a DNS server of the test's.
func newDomainStack(t *testing.T) (*stack, *dnstest.Server) {
	t.Helper()
	dns := dnstest.Start(t)
	return newStack(t, "DNS_RESOLVER", dns.Addr()), dns
}

// signUp creates a user as an auth service would (email verified or not) and delivers the
// domain_join event Hasura's trigger logged for the insert; it returns the user's id.
func (s *stack) signUp(t *testing.T, email string, verified bool) string {
	t.Helper()
	var id string
	if err := s.admin.QueryRow(context.Background(), `INSERT INTO auth.users (email, email_verified) VALUES ($1, $2) RETURNING id::text`,
		email, verified).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if status := s.deliver(t, "domain_join", "INSERT", id); status != 200 {
		t.Fatalf("domain_join for %s: %d", email, status)
	}
	return id
}

func (s *stack) role(t *testing.T, tenant, user string) string {
	t.Helper()
	var role string
	err := s.admin.QueryRow(context.Background(), `SELECT coalesce((SELECT role::text FROM tenant_users WHERE tenant_id = $1 AND user_id = $2), '')`, tenant, user).Scan(&role)
	if err != nil {
		t.Fatal(err)
	}
	return role
}

// verified adds domain to the tenant with policy and role, publishes its record and verifies it.
func (s *stack) verified(t *testing.T, dns *dnstest.Server, tenant, owner, domain, policy, role string) string {
	t.Helper()
	d := s.ok(t, "addDomain", map[string]any{"tenantId": tenant, "domain": domain, "policy": policy, "defaultRole": role}, owner)
	dns.Set(d["recordName"].(string), d["recordValue"].(string))
	if v := s.ok(t, "verifyDomain", map[string]any{"domainId": d["domainId"]}, owner); v["verified"] != true {
		t.Fatalf("verifyDomain: %v", v)
	}
	return d["domainId"].(string)
}

func uniqueDomain() string { return "acme-" + uuid.NewString()[:8] + ".test" }

// TestDomainVerification: the domain actions and query through Hasura, verifyDomain asking the
// DNS server DNS_RESOLVER names. The rules (which domains, who may claim and verify, taken,
// unverified, the audit) are internal/team's domain_service_test.go.
func TestDomainVerification(t *testing.T) {
	t.Parallel()
	s, dns := newDomainStack(t)
	tenant, owner := s.tenant(t)
	member := s.member(t, tenant, "member")
	domain := uniqueDomain()

	s.fails(t, "invalid", "addDomain", map[string]any{"tenantId": tenant, "domain": "gmail.com"}, owner)
	d := s.ok(t, "addDomain", map[string]any{"tenantId": tenant, "domain": "  " + domain + ". "}, owner)
	id := d["domainId"].(string)
	if d["domain"] != domain || d["recordType"] != "TXT" || d["recordName"] != "_tenantkit-challenge."+domain ||
		d["verified"] != false || d["policy"] != "suggest" || d["defaultRole"] != "member" {
		t.Fatalf("addDomain: %v", d)
	}
	s.fails(t, "domain_unverified", "verifyDomain", map[string]any{"domainId": id}, owner)
	dns.Set(d["recordName"].(string), "v=spf1 -all", d["recordValue"].(string))
	v := s.ok(t, "verifyDomain", map[string]any{"domainId": id}, owner)
	if v["verified"] != true || v["verifiedAt"] == nil {
		t.Fatalf("verifyDomain: %v", v)
	}
	if q := dns.Queries(); len(q) == 0 || q[len(q)-1] != "_tenantkit-challenge."+domain {
		t.Errorf("the local DNS server saw %v", q)
	}
	data, c := s.graph(t, `query($t: ID!) { domains(tenantId: $t) { id domain verified recordName recordValue policy defaultRole } }`, map[string]any{"t": tenant}, session(owner))
	if c != "" || len(data["domains"].([]any)) != 1 || data["domains"].([]any)[0].(map[string]any)["verified"] != true {
		t.Errorf("domains: %v %s", data, c)
	}
	if _, c := s.graph(t, `query($t: ID!) { domains(tenantId: $t) { id } }`, map[string]any{"t": tenant}, session(member)); c != "forbidden" {
		t.Errorf("a member lists domains: %q", c)
	}
}

// TestDomainResolverDown: a resolver that does not answer is unavailable, never "unverified".
func TestDomainResolverDown(t *testing.T) {
	t.Parallel()
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	l.Close() // nobody answers there
	s := newStack(t, "DNS_RESOLVER", addr)
	tenant, owner := s.tenant(t)
	d := s.ok(t, "addDomain", map[string]any{"tenantId": tenant, "domain": uniqueDomain()}, owner)
	s.fails(t, "unavailable", "verifyDomain", map[string]any{"domainId": d["domainId"]}, owner)
}

// TestDomainSignUps: Hasura's domain_join event applies the domain rule (delivered again, or on
// an update of the user, it changes nothing twice), and an offer is listed and accepted through
// Hasura. The rule's cases are internal/team's domain_service_test.go.
func TestDomainSignUps(t *testing.T) {
	t.Parallel()
	s, dns := newDomainStack(t)
	tenant, owner := s.tenant(t)
	domain := uniqueDomain()
	domainID := s.verified(t, dns, tenant, owner, domain, "auto_join", "guest")

	t.Run("a verified address joins, once", func(t *testing.T) {
		u := s.signUp(t, "kim@"+domain, true)
		if r := s.role(t, tenant, u); r != "guest" {
			t.Fatalf("role %q, want guest", r)
		}
		if status := s.deliver(t, "domain_join", "INSERT", u); status != 200 {
			t.Fatalf("duplicate delivery: %d", status)
		}
		// a second event for the same user (the email re-verified) changes nothing either
		if _, err := s.admin.Exec(context.Background(), `UPDATE auth.users SET email_verified = false WHERE id = $1`, u); err != nil {
			t.Fatal(err)
		}
		if _, err := s.admin.Exec(context.Background(), `UPDATE auth.users SET email_verified = true WHERE id = $1`, u); err != nil {
			t.Fatal(err)
		}
		if status := s.deliver(t, "domain_join", "UPDATE", u); status != 200 {
			t.Fatalf("update event: %d", status)
		}
		if n := s.count(t, `SELECT count(*) FROM tenant_users WHERE user_id = $1`, u); n != 1 {
			t.Errorf("%d memberships", n)
		}
		if n := s.count(t, `SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND subject = $2 AND action IN ('member.joined', 'domain.joined')`, tenant, u); n != 2 {
			t.Errorf("%d audit entries for the join, want member.joined and domain.joined once each", n)
		}
	})

	t.Run("suggest: offered, then joined by accepting", func(t *testing.T) {
		s.ok(t, "setDomainPolicy", map[string]any{"domainId": domainID, "policy": "suggest", "defaultRole": "member"}, owner)
		u := s.signUp(t, "max@"+domain, true)
		if r := s.role(t, tenant, u); r != "" {
			t.Fatalf("joined as %s under suggest", r)
		}
		data, c := s.graph(t, `{ domainOffers { tenantId tenantName domain role } }`, nil, session(u))
		offers, _ := data["domainOffers"].([]any)
		if c != "" || len(offers) != 1 || offers[0].(map[string]any)["tenantId"] != tenant || offers[0].(map[string]any)["role"] != "member" {
			t.Fatalf("domainOffers: %v %s", data, c)
		}
		s.deliver(t, "domain_join", "INSERT", u) // a duplicate: still one offer
		if n := s.count(t, `SELECT count(*) FROM tenantkit.domain_offers WHERE user_id = $1`, u); n != 1 {
			t.Errorf("%d offers after a duplicate delivery", n)
		}
		m := s.ok(t, "acceptDomainOffer", map[string]any{"tenantId": tenant}, u)
		if m["role"] != "member" || s.role(t, tenant, u) != "member" {
			t.Fatalf("acceptDomainOffer: %v", m)
		}
		s.fails(t, "not_found", "acceptDomainOffer", map[string]any{"tenantId": tenant}, u)
		s.fails(t, "not_found", "acceptDomainOffer", map[string]any{"tenantId": tenant}, s.signUp(t, "zed@elsewhere-"+domain, true))
	})

}

// TestDomainSignUpsWithinSeatLimit: concurrent sign-ups on one domain, each event delivered
// twice at once, fill the plan's member limit exactly; the rest are offered the tenant instead.
func TestDomainSignUpsWithinSeatLimit(t *testing.T) {
	t.Parallel()
	s, dns := newDomainStack(t)
	ctx := context.Background()
	tenant, owner := s.tenant(t)
	if _, err := s.admin.Exec(ctx, `UPDATE tenant_subscriptions SET status = 'active',
		plan_id = (SELECT id FROM subscription_plans WHERE key = 'starter') WHERE tenant_id = $1`, tenant); err != nil {
		t.Fatal(err) // 5 users: the owner and 4 more
	}
	domain := uniqueDomain()
	s.verified(t, dns, tenant, owner, domain, "auto_join", "member")
	const n = 10
	var users []string
	for i := range n {
		var id string
		if err := s.admin.QueryRow(ctx, `INSERT INTO auth.users (email, email_verified) VALUES ($1, true) RETURNING id::text`,
			fmt.Sprintf("u%d@%s", i, domain)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		users = append(users, id)
	}
	// Each user's event is delivered twice at once, all users at once; a delivery answered 409 (the
	// same event in progress) or 5xx is retried, as Hasura retries it.
	var wg sync.WaitGroup
	failures := make(chan string, 2*n)
	for _, u := range users {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for attempt := 0; ; attempt++ {
					status, err := s.tryDeliver(ctx, "domain_join", "INSERT", u)
					if err == nil && status == 200 {
						return
					}
					if attempt == 50 || (err == nil && status != 409 && status < 500) {
						failures <- fmt.Sprintf("user %s: %d %v", u, status, err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
		}
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	members := s.count(t, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, tenant)
	offered := s.count(t, `SELECT count(*) FROM tenantkit.domain_offers WHERE tenant_id = $1`, tenant)
	if members != 5 || offered != n-4 {
		t.Fatalf("%d members and %d offers, want 5 (the plan's limit) and %d", members, offered, n-4)
	}
	if c := s.count(t, `SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = 'domain.offered' AND details->>'reason' = 'plan_limit'`, tenant); c != n-4 {
		t.Errorf("%d offers audited with reason plan_limit, want %d", c, n-4)
	}
	// an offered user joins once a seat is free
	var offeredUser string
	if err := s.admin.QueryRow(ctx, `SELECT user_id::text FROM tenantkit.domain_offers WHERE tenant_id = $1 LIMIT 1`, tenant).Scan(&offeredUser); err != nil {
		t.Fatal(err)
	}
	s.fails(t, "plan_limit", "acceptDomainOffer", map[string]any{"tenantId": tenant}, offeredUser)
	var joined string
	if err := s.admin.QueryRow(ctx, `SELECT user_id::text FROM tenant_users WHERE tenant_id = $1 AND role = 'member' LIMIT 1`, tenant).Scan(&joined); err != nil {
		t.Fatal(err)
	}
	s.ok(t, "removeMember", map[string]any{"tenantId": tenant, "userId": joined}, owner)
	s.ok(t, "acceptDomainOffer", map[string]any{"tenantId": tenant}, offeredUser)
}
