package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/postgres"
	"github.com/tenantkit/tenantkit/internal/team"
)

// Invitations through the team service on a real database: the send limits counted in the
// database under the tenant's lock, and accept reading the caller from auth.users.

// fxTeams is the team service on db, as cmd/tenantkit builds it, with these send limits.
func fxTeams(t testing.TB, db *postgres.DB, limits team.SendLimits) *team.Service {
	t.Helper()
	box, err := team.NewTokenSealer("test-secret-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	return &team.Service{Store: db, Sealer: box, AppURL: "http://app.test", SendLimits: limits}
}

// fxUserWith creates an auth user with that email and verification and returns its id.
func fxUserWith(t testing.TB, admin *pgxpool.Pool, email string, verified bool) string {
	t.Helper()
	var id string
	fxQueryRow(t, admin, `INSERT INTO auth.users (email, email_verified) VALUES ($1, $2) RETURNING id::text`, email, verified).Scan(&id)
	return id
}

// fxInviteToken invites email as role through svc, as the tenant's owner, and returns the
// invitation and its token (read back from the outbox, as the email would carry it).
func fxInviteToken(t testing.TB, admin *pgxpool.Pool, svc *team.Service, tn fxTenantRef, email string, role tenantkit.Role) (team.Invitation, string) {
	t.Helper()
	inv, err := svc.Invite(context.Background(), tenantkit.UserSession(tn.owner), tn.id, email, string(role))
	if err != nil {
		t.Fatalf("invite %s: %v", email, err)
	}
	var sealed, hash []byte
	fxQueryRow(t, admin, `SELECT sealed_token, token_hash FROM tenantkit.invitation_outbox WHERE invitation_id = $1`, inv.ID).Scan(&sealed, &hash)
	token, err := svc.Sealer.Open(sealed, hash)
	if err != nil {
		t.Fatal(err)
	}
	return inv, token
}

// fxSendBlocker holds a lock that stops every invitation transaction of the database just before
// it records its send (a SHARE lock on tenantkit.invitation_sends), so that concurrent sends
// really overlap there, and returns a function that waits until n transactions of the database are
// waiting on a lock (that one, or the tenant's send lock behind it), then releases it.
func fxSendBlocker(t *testing.T, admin *pgxpool.Pool, n int) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	fxTxExec(t, tx, `LOCK TABLE tenantkit.invitation_sends IN SHARE MODE`)
	return func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		var waiting int
		for time.Now().Before(deadline) {
			fxQueryRow(t, admin, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
			if waiting >= n {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if waiting < n {
			t.Errorf("only %d of %d transactions queued behind the blocker", waiting, n)
		}
	}
}

func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	return tenantkit.ErrorCode(err)
}

func TestInvitationSendLimits(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	wide := fxWidePool(t, db, 24)
	ctx := context.Background()
	limits := team.SendLimits{PerTenant: 5, TenantWindow: time.Hour, PerInvitation: 2, InvitationWindow: 24 * time.Hour}
	svc := fxTeams(t, wide, limits)
	invite := func(tn fxTenantRef, email string) (team.Invitation, error) {
		return svc.Invite(ctx, tenantkit.UserSession(tn.owner), tn.id, email, "member")
	}
	sends := func(tn fxTenantRef) int64 {
		return fxCount(t, admin, `SELECT count(*) FROM tenantkit.invitation_sends WHERE tenant_id = $1`, tn.id)
	}

	t.Run("concurrent invitations at the limit make exactly the limit", func(t *testing.T) {
		t.Parallel()
		// Its own database: the blocker below holds up every invitation in it.
		db, admin := setup(t)
		svc := fxTeams(t, fxWidePool(t, db, 24), limits)
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		const n = 20
		errs := make([]error, n)
		var wg sync.WaitGroup
		release := fxSendBlocker(t, admin, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = svc.Invite(ctx, tenantkit.UserSession(tn.owner), tn.id, fmt.Sprintf("race%d@example.com", i), "member")
			}()
		}
		release()
		if !fxAwait(&wg, 30*time.Second) {
			t.Fatal("invitations did not finish within 30 s")
		}
		codes := map[string]int{}
		for _, err := range errs {
			codes[codeOf(err)]++
			if tenantkit.ErrorCode(err) == team.RateLimited && !strings.Contains(tenantkit.ErrorMessage(err), "try again after") {
				t.Errorf("rate_limited without a time to retry: %q", tenantkit.ErrorMessage(err))
			}
		}
		if codes["ok"] != 5 || codes[team.RateLimited] != n-5 {
			t.Errorf("answers %v, want 5 ok and %d rate_limited", codes, n-5)
		}
		if got := fxCount(t, admin, `SELECT count(*) FROM tenant_invitations WHERE tenant_id = $1`, tn.id); got != 5 {
			t.Errorf("%d invitations stored, want 5", got)
		}
		if got := fxCount(t, admin, `SELECT count(*) FROM tenantkit.invitation_outbox WHERE tenant_id = $1`, tn.id); got != 5 {
			t.Errorf("%d emails staged, want 5", got)
		}
		if got := fxCount(t, admin, `SELECT count(*) FROM tenantkit.invitation_sends WHERE tenant_id = $1`, tn.id); got != 5 {
			t.Errorf("%d sends recorded, want 5", got)
		}
		// Another tenant has its own count.
		other := fxTenant(t, admin, fxPlanKey("enterprise"))
		if _, err := svc.Invite(ctx, tenantkit.UserSession(other.owner), other.id, "race0@example.com", "member"); err != nil {
			t.Errorf("another tenant's first invitation: %v", err)
		}
	})

	t.Run("a refused invitation is not counted", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		if _, err := invite(tn, "dup@example.com"); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if _, err := invite(tn, "DUP@example.com"); tenantkit.ErrorCode(err) != tenantkit.Conflict {
				t.Fatalf("duplicate invitation: %v, want conflict", err)
			}
		}
		for i := range 4 {
			if _, err := invite(tn, fmt.Sprintf("next%d@example.com", i)); err != nil {
				t.Fatalf("invitation %d of 5: %v", i+2, err)
			}
		}
		if _, err := invite(tn, "sixth@example.com"); tenantkit.ErrorCode(err) != team.RateLimited {
			t.Errorf("sixth invitation: %v, want rate_limited", err)
		}
		if got := sends(tn); got != 5 {
			t.Errorf("%d sends recorded, want 5", got)
		}
	})

	t.Run("sends leave the window after an hour", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		for i := range 5 {
			if _, err := invite(tn, fmt.Sprintf("w%d@example.com", i)); err != nil {
				t.Fatal(err)
			}
		}
		_, err := invite(tn, "w5@example.com")
		if tenantkit.ErrorCode(err) != team.RateLimited {
			t.Fatalf("sixth invitation: %v", err)
		}
		// The retry time is the oldest send's, an hour on, rounded up to the minute.
		var oldest time.Time
		fxQueryRow(t, admin, `SELECT min(sent_at) FROM tenantkit.invitation_sends WHERE tenant_id = $1`, tn.id).Scan(&oldest)
		retry := oldest.Add(time.Hour).Truncate(time.Minute).Add(time.Minute).UTC().Format("15:04 UTC")
		if !strings.Contains(tenantkit.ErrorMessage(err), "try again after "+retry) {
			t.Errorf("message %q, want the retry time %s", tenantkit.ErrorMessage(err), retry)
		}
		fxExec(t, admin, `UPDATE tenantkit.invitation_sends SET sent_at = sent_at - interval '61 minutes' WHERE tenant_id = $1`, tn.id)
		if _, err := invite(tn, "w5@example.com"); err != nil {
			t.Errorf("an hour later: %v", err)
		}
		// Sends older than both windows are pruned by the next send.
		fxExec(t, admin, `UPDATE tenantkit.invitation_sends SET sent_at = sent_at - interval '25 hours' WHERE tenant_id = $1`, tn.id)
		if _, err := invite(tn, "w6@example.com"); err != nil {
			t.Fatal(err)
		}
		if got := sends(tn); got != 1 {
			t.Errorf("%d sends kept, want only the newest", got)
		}
	})

	t.Run("resends per invitation and per tenant", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		inv, err := invite(tn, "resent@example.com")
		if err != nil {
			t.Fatal(err)
		}
		owner := tenantkit.UserSession(tn.owner)
		for i := range 2 {
			if _, err := svc.Resend(ctx, owner, inv.ID); err != nil {
				t.Fatalf("resend %d: %v", i+1, err)
			}
		}
		var hash []byte
		fxQueryRow(t, admin, `SELECT token_hash FROM tenant_invitations WHERE id = $1`, inv.ID).Scan(&hash)
		_, err = svc.Resend(ctx, owner, inv.ID)
		if tenantkit.ErrorCode(err) != team.RateLimited || !strings.Contains(tenantkit.ErrorMessage(err), "invitation was resent 2 times") {
			t.Fatalf("third resend: %v, want rate_limited for the invitation", err)
		}
		var after []byte
		fxQueryRow(t, admin, `SELECT token_hash FROM tenant_invitations WHERE id = $1`, inv.ID).Scan(&after)
		if string(after) != string(hash) {
			t.Error("a refused resend changed the token: the link already sent stopped working")
		}
		// The invitation and its two resends count against the tenant: two more emails fit.
		if got := sends(tn); got != 3 {
			t.Errorf("%d sends recorded, want 3", got)
		}
		for i := range 2 {
			if _, err := invite(tn, fmt.Sprintf("more%d@example.com", i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := invite(tn, "one-too-many@example.com"); tenantkit.ErrorCode(err) != team.RateLimited {
			t.Errorf("sixth email of the hour: %v, want rate_limited", err)
		}
	})

	t.Run("concurrent resends at the limit make exactly the limit", func(t *testing.T) {
		t.Parallel()
		db, admin := setup(t)
		svc := fxTeams(t, fxWidePool(t, db, 24), limits)
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		inv, err := svc.Invite(ctx, tenantkit.UserSession(tn.owner), tn.id, "race.resend@example.com", "member")
		if err != nil {
			t.Fatal(err)
		}
		const n = 10
		errs := make([]error, n)
		var wg sync.WaitGroup
		// Resends of one invitation also queue on its row (the UPDATE), so they are counted one
		// after another even before the tenant's send lock; the blocker makes sure all ten are
		// in flight together.
		release := fxSendBlocker(t, admin, n)
		for i := range n {
			wg.Add(1)
			go func() { defer wg.Done(); _, errs[i] = svc.Resend(ctx, tenantkit.UserSession(tn.owner), inv.ID) }()
		}
		release()
		if !fxAwait(&wg, 30*time.Second) {
			t.Fatal("resends did not finish within 30 s")
		}
		codes := map[string]int{}
		for _, err := range errs {
			codes[codeOf(err)]++
		}
		if codes["ok"] != 2 || codes[team.RateLimited] != n-2 {
			t.Errorf("answers %v, want 2 ok and %d rate_limited", codes, n-2)
		}
	})

	t.Run("only members who may invite record sends", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		member := fxMember(t, admin, tn.id, tenantkit.Member)
		stranger := fxUser(t, admin)
		for _, u := range []string{member, stranger} {
			err := fxAs(ctx, db, u, func(tx pgx.Tx) error {
				var n int
				err := tx.QueryRow(ctx, `SELECT count(*) FROM tenantkit.record_invitation_send($1, gen_random_uuid(), false, '1 hour', 51, '1 day', 6)`, tn.id).Scan(&n)
				if err == nil && n != 0 {
					err = fmt.Errorf("%d sends returned", n)
				}
				return err
			})
			if err != nil {
				t.Errorf("as %s: %v", u, err)
			}
		}
		if got := sends(tn); got != 0 {
			t.Errorf("%d sends recorded by members who may not invite", got)
		}
	})
}

func TestAcceptInvitationCaller(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	svc := fxTeams(t, db, team.SendLimits{})

	t.Run("only the verified owner of the exact address joins", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		_, token := fxInviteToken(t, admin, svc, tn, "kim1@example.com", tenantkit.Admin)
		for _, c := range []struct{ name, email string }{
			{"Kelvin sign", "\u212Aim1@example.com"},
			{"trailing no-break space", "kim1@example.com\u00A0"},
			{"leading em space", "\u2003kim1@example.com"},
			{"zero-width space", "ki\u200Bm1@example.com"},
		} {
			u := fxUserWith(t, admin, c.email, true)
			if _, err := svc.Accept(ctx, tenantkit.UserSession(u), token); tenantkit.ErrorCode(err) != team.InvitationEmailMismatch {
				t.Errorf("%s (%q): %v, want %s", c.name, c.email, err, team.InvitationEmailMismatch)
			}
		}
		kim := fxUserWith(t, admin, "Kim1@Example.com", false)
		_, err := svc.Accept(ctx, tenantkit.UserSession(kim), token)
		if tenantkit.ErrorCode(err) != team.EmailUnverified || !strings.Contains(tenantkit.ErrorMessage(err), "verify your email") {
			t.Errorf("unverified invitee: %v, want %s", err, team.EmailUnverified)
		}
		if got := fxCount(t, admin, `SELECT count(*) FROM tenant_users WHERE tenant_id = $1`, tn.id); got != 1 {
			t.Fatalf("%d members after the refusals, want only the owner", got)
		}
		fxExec(t, admin, `UPDATE auth.users SET email_verified = true WHERE id = $1`, kim)
		m, err := svc.Accept(ctx, tenantkit.UserSession(kim), token)
		if err != nil || m.Role != tenantkit.Admin {
			t.Errorf("verified invitee: %+v, %v", m, err)
		}
	})

	t.Run("non-ASCII capitals are stored as typed and compared exactly", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		inv, token := fxInviteToken(t, admin, svc, tn, "JOS\u00C9@Example.com", tenantkit.Member)
		if inv.Email != "jos\u00C9@example.com" {
			t.Fatalf("stored %q", inv.Email)
		}
		lower := fxUserWith(t, admin, "jos\u00E9@example.com", true)
		if _, err := svc.Accept(ctx, tenantkit.UserSession(lower), token); tenantkit.ErrorCode(err) != team.InvitationEmailMismatch {
			t.Errorf("a Unicode-lowered address: %v, want mismatch", err)
		}
		same := fxUserWith(t, admin, "JOS\u00C9@EXAMPLE.COM", true)
		if _, err := svc.Accept(ctx, tenantkit.UserSession(same), token); err != nil {
			t.Errorf("the address in another ASCII case: %v", err)
		}
	})

	t.Run("the email compared is the caller's current one", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		_, token := fxInviteToken(t, admin, svc, tn, "new.address@example.com", tenantkit.Member)
		u := fxUserWith(t, admin, "old.address@example.com", true)
		if _, err := svc.Accept(ctx, tenantkit.UserSession(u), token); tenantkit.ErrorCode(err) != team.InvitationEmailMismatch {
			t.Fatalf("before the change: %v", err)
		}
		fxExec(t, admin, `UPDATE auth.users SET email = 'new.address@example.com' WHERE id = $1`, u)
		if _, err := svc.Accept(ctx, tenantkit.UserSession(u), token); err != nil {
			t.Errorf("after the change: %v", err)
		}
	})

	t.Run("a caller auth.users does not have is unauthenticated", func(t *testing.T) {
		t.Parallel()
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		_, token := fxInviteToken(t, admin, svc, tn, "ghost@example.com", tenantkit.Member)
		ghost := "3f1d5b8e-9c1e-4a57-9a51-4f0a2b6c7d8e"
		if _, err := svc.Accept(ctx, tenantkit.UserSession(ghost), token); tenantkit.ErrorCode(err) != tenantkit.Unauthenticated {
			t.Errorf("unknown user: %v, want unauthenticated (not an email mismatch)", err)
		}
	})

	t.Run("many users accepting at once each compare their own email", func(t *testing.T) {
		t.Parallel()
		wide := fxWidePool(t, db, 24)
		svc := fxTeams(t, wide, team.SendLimits{})
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		const n = 24
		users, tokens := make([]string, n), make([]string, n)
		for i := range n {
			email := fmt.Sprintf("load%d.%s@example.com", i, tn.id[:8])
			_, tokens[i] = fxInviteToken(t, admin, svc, tn, email, tenantkit.Member)
			users[i] = fxUserWith(t, admin, email, true)
		}
		// Each user first tries its neighbour's link (mismatch), then its own (joins), all at once.
		errs := make([][2]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := tenantkit.UserSession(users[i])
				_, errs[i][0] = svc.Accept(ctx, s, tokens[(i+1)%n])
				_, errs[i][1] = svc.Accept(ctx, s, tokens[i])
			}()
		}
		if !fxAwait(&wg, 60*time.Second) {
			t.Fatal("accepts did not finish within 60 s")
		}
		for i, e := range errs {
			if c := tenantkit.ErrorCode(e[0]); c != team.InvitationEmailMismatch && c != team.InvitationUsed {
				t.Errorf("user %d with another's link: %v", i, e[0])
			}
			if e[1] != nil {
				t.Errorf("user %d with its own link: %v", i, e[1])
			}
		}
		if got := fxCount(t, admin, `SELECT count(*) FROM tenant_invitations i JOIN auth.users u ON u.id = i.accepted_by
			WHERE i.tenant_id = $1 AND u.email = i.email`, tn.id); got != n {
			t.Errorf("%d invitations accepted by their own addressee, want %d", got, n)
		}
	})
}

// TestAcceptWithoutEmailVerified: an auth table without email_verified works only when the service
// is told not to require it, and the service says so at start.
func TestAcceptWithoutEmailVerified(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	if err := db.CheckAuthUsers(ctx, true); err != nil {
		t.Fatalf("the migrated schema: %v", err)
	}
	tn := fxTenant(t, admin, fxPlanKey("enterprise"))
	// Such a table cannot carry the domain_join trigger, which delivers email_verified (joining by
	// domain needs verified addresses): its operator leaves the trigger out of Hasura's metadata.
	fxExec(t, admin, `DROP TRIGGER "notify_hasura_domain_join_INSERT" ON auth.users`)
	fxExec(t, admin, `DROP TRIGGER "notify_hasura_domain_join_UPDATE" ON auth.users`)
	fxExec(t, admin, `ALTER TABLE auth.users DROP COLUMN email_verified`)
	err := db.CheckAuthUsers(ctx, true)
	if err == nil || !strings.Contains(err.Error(), "INVITATION_REQUIRE_VERIFIED_EMAIL") || !strings.Contains(err.Error(), "email_verified") {
		t.Errorf("required but missing: %v", err)
	}
	if err := db.CheckAuthUsers(ctx, false); err != nil {
		t.Errorf("not required: %v", err)
	}

	svc := fxTeams(t, db, team.SendLimits{})
	svc.AllowUnverifiedEmail = true
	_, token := fxInviteToken(t, admin, svc, tn, "plain@example.com", tenantkit.Member)
	var u string
	fxQueryRow(t, admin, `INSERT INTO auth.users (email) VALUES ('plain@example.com') RETURNING id::text`).Scan(&u)
	if _, err := svc.Accept(ctx, tenantkit.UserSession(u), token); err != nil {
		t.Errorf("accept without email_verified: %v", err)
	}
}

// TestCheckAuthUsers: the start-up check names what accept could not read.
func TestCheckAuthUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("row-level security hiding the users", func(t *testing.T) {
		t.Parallel()
		db, admin := setup(t)
		svc := fxTeams(t, db, team.SendLimits{})
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		_, token := fxInviteToken(t, admin, svc, tn, "hidden@example.com", tenantkit.Member)
		u := fxUserWith(t, admin, "hidden@example.com", true)
		fxExec(t, admin, `ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY`)
		if err := db.CheckAuthUsers(ctx, true); err == nil || !strings.Contains(err.Error(), "row-level security") {
			t.Errorf("RLS without a policy: %v", err)
		}
		// Were the service running: the invitee is told the truth about who the database sees.
		if _, err := svc.Accept(ctx, tenantkit.UserSession(u), token); tenantkit.ErrorCode(err) != tenantkit.Unauthenticated {
			t.Errorf("accept while auth.users hides its rows: %v, want unauthenticated (not an email mismatch)", err)
		}
		fxExec(t, admin, `CREATE POLICY tenantkit_read ON auth.users FOR SELECT TO tenantkit_system USING (true)`)
		if err := db.CheckAuthUsers(ctx, true); err != nil {
			t.Errorf("RLS with a policy for tenantkit_system: %v", err)
		}
		if _, err := svc.Accept(ctx, tenantkit.UserSession(u), token); err != nil {
			t.Errorf("accept with the policy: %v", err)
		}
	})

	t.Run("no read access", func(t *testing.T) {
		t.Parallel()
		db, admin := setup(t)
		fxExec(t, admin, `REVOKE SELECT ON auth.users FROM tenantkit_system`)
		fxExec(t, admin, `GRANT SELECT (id, email) ON auth.users TO tenantkit_system`)
		if err := db.CheckAuthUsers(ctx, false); err != nil {
			t.Errorf("id and email readable, verification not required: %v", err)
		}
		if err := db.CheckAuthUsers(ctx, true); err == nil || !strings.Contains(err.Error(), "email_verified") {
			t.Errorf("email_verified not readable: %v", err)
		}
		fxExec(t, admin, `REVOKE SELECT ON auth.users FROM tenantkit_system`)
		if err := db.CheckAuthUsers(ctx, false); err == nil || !strings.Contains(err.Error(), "email") {
			t.Errorf("email not readable: %v", err)
		}
	})
}

// TestInvitationEmailForm: the table holds addresses in NormalizeEmail's form, whatever writes them.
func TestInvitationEmailForm(t *testing.T) {
	t.Parallel()
	_, admin := setup(t)
	tn := fxTenant(t, admin, fxPlanKey("enterprise"))
	for _, c := range []struct {
		email string
		ok    bool
	}{
		{"kim1@example.com", true},
		{"\u212Aim1@example.com", true},
		{"jos\u00C9@example.com", true},
		{"Kim1@example.com", false},
		{" kim1@example.com", false},
		{"kim1@example.com\t", false},
		{"kim1@example.com\n", false},
	} {
		_, err := admin.Exec(context.Background(), `INSERT INTO tenant_invitations (tenant_id, email, token_hash)
			VALUES ($1, $2, sha256(gen_random_uuid()::text::bytea))`, tn.id, c.email)
		if (err == nil) != c.ok {
			t.Errorf("%q: %v, want stored %v", c.email, err, c.ok)
		}
	}
}
