package team

import (
	"context"
	"encoding/hex"
	"fmt"
	"html"
	"net/url"
	"slices"
	"time"

	"github.com/tenantkit/tenantkit"
)

// Service implements team management. Configure every field; see cmd/tenantkit.
type Service struct {
	Store         Store
	Sealer        *TokenSealer
	Mailer        tenantkit.Mailer
	AppURL        string        // links in emails: AppURL + "/invitations/accept?token=…"
	InvitationTTL time.Duration // how long an invitation stays valid (default 7 days)
	TrialPeriod   time.Duration // a new tenant's trial (0: 14 days; negative: none, the default plan at once)
	TrialPlan     string        // key of the plan a new tenant tries ("": the default plan)
	// AllowUnverifiedEmail lets users whose email is not verified accept invitations, and stops
	// reading auth.users.email_verified: only for auth tables without that column. The zero value
	// requires a verified email.
	AllowUnverifiedEmail bool
	SendLimits           SendLimits // invitation emails per tenant and per invitation (zero: defaults)
	// RestoreWindow is how long a deleted tenant may be restored (zero: DefaultRestoreWindow;
	// negative: not at all, it is purged at the next purge run).
	RestoreWindow time.Duration
	Now           func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) ttl() time.Duration {
	if s.InvitationTTL > 0 {
		return s.InvitationTTL
	}
	return 7 * 24 * time.Hour
}

func (s *Service) trial() time.Duration {
	if s.TrialPeriod < 0 {
		return 0
	}
	if s.TrialPeriod > 0 {
		return s.TrialPeriod
	}
	return 14 * 24 * time.Hour
}

// caller returns the signed-in user of the session. Errors: unauthenticated.
func caller(sess tenantkit.Session) (string, error) {
	if ValidateID("x-hasura-user-id", sess.UserID()) != nil {
		return "", tenantkit.Errorf(tenantkit.Unauthenticated, "sign in first")
	}
	return sess.UserID(), nil
}

// MembershipReader reads the caller's own membership of a tenant (Store, DomainStore and
// apikey.Store all do); not_found when there is none.
type MembershipReader interface {
	Membership(ctx context.Context, s tenantkit.Session, tenantID string) (Membership, error)
}

// Member returns the caller's membership of the tenant. A non-member gets not_found, whether or not
// the tenant exists, so the answer reveals nothing. Errors: invalid, not_found.
func Member(ctx context.Context, r MembershipReader, sess tenantkit.Session, tenantID string) (Membership, error) {
	if err := ValidateID("tenantId", tenantID); err != nil {
		return Membership{}, err
	}
	m, err := r.Membership(ctx, sess, tenantID)
	if tenantkit.ErrorCode(err) == tenantkit.NotFound {
		return m, tenantkit.Errorf(tenantkit.NotFound, "tenant not found")
	}
	return m, err
}

// Require returns the caller's membership of the tenant when its role or custom grants allow perm:
// the one check of "may the caller do this in this tenant" for team, domains and API keys.
// Errors: invalid, not_found (not a member), forbidden.
func Require(ctx context.Context, r MembershipReader, sess tenantkit.Session, tenantID, perm string) (Membership, error) {
	m, err := Member(ctx, r, sess, tenantID)
	if err != nil {
		return m, err
	}
	if !tenantkit.Allows(m.Role, m.Permissions, perm) {
		return m, tenantkit.Errorf(tenantkit.Forbidden, "your role does not allow %s", perm)
	}
	return m, nil
}

// member is Member with the service's store.
func (s *Service) member(ctx context.Context, sess tenantkit.Session, tenantID string) (Membership, error) {
	return Member(ctx, s.Store, sess, tenantID)
}

// require is Require with the service's store.
func (s *Service) require(ctx context.Context, sess tenantkit.Session, tenantID, perm string) (Membership, error) {
	return Require(ctx, s.Store, sess, tenantID, perm)
}

// CreateTenant creates a tenant whose owner is the caller, on a trial of the default plan, in one
// transaction. Errors: unauthenticated, invalid, slug_taken.
func (s *Service) CreateTenant(ctx context.Context, sess tenantkit.Session, name, slug string) (Tenant, error) {
	uid, err := caller(sess)
	if err != nil {
		return Tenant{}, err
	}
	if name, err = ValidateName(name); err != nil {
		return Tenant{}, err
	}
	if err := ValidateSlug(slug); err != nil {
		return Tenant{}, err
	}
	t, err := s.Store.CreateTenant(ctx, sess, NewTenant{Slug: slug, Name: name, OwnerID: uid, TrialEndsAt: s.now().Add(s.trial()), TrialPlan: s.TrialPlan})
	if tenantkit.ErrorCode(err) == tenantkit.Conflict {
		return t, tenantkit.Errorf(SlugTaken, "slug %q is taken", slug)
	}
	return t, err
}

// Invite invites email (NormalizeEmail) to the tenant with role. The caller needs users:invite and
// may not invite above their own role; the plan's member limit counts pending invitations; the
// email counts against the tenant's SendLimits. The email goes out through the invitation event
// trigger. Errors: unauthenticated, invalid, not_found, forbidden, conflict (a pending invitation
// for that email exists), plan_limit, rate_limited.
func (s *Service) Invite(ctx context.Context, sess tenantkit.Session, tenantID, email, role string) (Invitation, error) {
	uid, err := caller(sess)
	if err != nil {
		return Invitation{}, err
	}
	r, err := ParseRole(role)
	if err != nil {
		return Invitation{}, err
	}
	if email, err = NormalizeEmail(email); err != nil {
		return Invitation{}, err
	}
	m, err := s.require(ctx, sess, tenantID, "users:invite")
	if err != nil {
		return Invitation{}, err
	}
	if !m.Role.AtLeast(r) {
		return Invitation{}, tenantkit.Errorf(tenantkit.Forbidden, "you cannot invite someone as %s, above your own role", r)
	}
	_, tok, err := s.Sealer.NewToken()
	if err != nil {
		return Invitation{}, err
	}
	inv, err := s.Store.CreateInvitation(ctx, sess, NewInvitation{
		TenantID: tenantID, Email: email, Role: r, InvitedBy: uid, Token: tok, ExpiresAt: s.now().Add(s.ttl()),
		Limits: s.SendLimits,
	})
	if tenantkit.ErrorCode(err) == tenantkit.Conflict {
		return inv, tenantkit.Errorf(tenantkit.Conflict, "%s already has a pending invitation", email)
	}
	return inv, err
}

// Resend gives a pending or expired invitation a new token (the old link stops working) and a new
// expiry; the event trigger emails the new link. The email counts against the tenant's and the
// invitation's SendLimits. Errors: unauthenticated, invalid, not_found, forbidden, plan_limit (an
// expired invitation takes a seat again), invitation_used, invitation_revoked, rate_limited.
func (s *Service) Resend(ctx context.Context, sess tenantkit.Session, invitationID string) (Invitation, error) {
	if _, err := caller(sess); err != nil {
		return Invitation{}, err
	}
	if err := ValidateID("invitationId", invitationID); err != nil {
		return Invitation{}, err
	}
	_, tok, err := s.Sealer.NewToken()
	if err != nil {
		return Invitation{}, err
	}
	inv, err := s.Store.RotateInvitation(ctx, sess, invitationID, tok, s.now().Add(s.ttl()), s.SendLimits)
	return inv, invitationStateError(inv, err, "pending", "expired")
}

// Revoke ends a pending invitation. Revoking a revoked invitation again succeeds (idempotent).
// Errors: unauthenticated, invalid, not_found, forbidden, invitation_used.
func (s *Service) Revoke(ctx context.Context, sess tenantkit.Session, invitationID string) (Invitation, error) {
	if _, err := caller(sess); err != nil {
		return Invitation{}, err
	}
	if err := ValidateID("invitationId", invitationID); err != nil {
		return Invitation{}, err
	}
	inv, err := s.Store.RevokeInvitation(ctx, sess, invitationID)
	if tenantkit.ErrorCode(err) == tenantkit.Conflict && inv.Status == "revoked" {
		return inv, nil
	}
	return inv, invitationStateError(inv, err, "pending")
}

// invitationStateError turns a refused state change into the code of the invitation's state. An
// invitation the caller sees in a state the change allows (changeable) was refused by the rank
// rule: an admin acting on an owner's invitation is forbidden, as with memberships.
func invitationStateError(inv Invitation, err error, changeable ...string) error {
	if tenantkit.ErrorCode(err) != tenantkit.Conflict {
		return err
	}
	switch {
	case inv.Status == "accepted":
		return tenantkit.Errorf(InvitationUsed, "the invitation was already accepted")
	case inv.Status == "revoked":
		return tenantkit.Errorf(InvitationRevoked, "the invitation was revoked")
	case slices.Contains(changeable, inv.Status):
		return tenantkit.Errorf(tenantkit.Forbidden, "you cannot change an invitation above your own role")
	}
	return err
}

// Accept makes the caller a member with the invitation's role. It works only for the signed-in
// user whose auth.users.email is the invitation's address (SameEmail: equal once normalised, no
// Unicode folding) and, unless AllowUnverifiedEmail, verified; only once; and repeating it as that
// user succeeds again without a second membership. Errors: unauthenticated (also when the auth
// table has no row for the caller), invitation_not_found (also for malformed tokens),
// invitation_expired, invitation_revoked, invitation_used, invitation_email_mismatch,
// email_unverified, plan_limit.
func (s *Service) Accept(ctx context.Context, sess tenantkit.Session, token string) (Membership, error) {
	uid, err := caller(sess)
	if err != nil {
		return Membership{}, err
	}
	hash, ok := HashToken(token)
	if !ok {
		return Membership{}, tenantkit.Errorf(InvitationNotFound, "invitation not found")
	}
	return s.Store.AcceptInvitation(ctx, sess, hash, !s.AllowUnverifiedEmail, func(inv Invitation, found bool, who Invitee) (bool, error) {
		// The clock is read here, once the invitation is locked: the wait for the lock may be long.
		return acceptDecision(inv, found, who, uid, !s.AllowUnverifiedEmail, s.now())
	})
}

// acceptDecision is whether uid, known to the auth table as who, may accept inv at now (done: it
// already has). It is the whole rule of Accept, for the store to apply under its lock.
func acceptDecision(inv Invitation, found bool, who Invitee, uid string, requireVerified bool, now time.Time) (bool, error) {
	switch {
	case !who.Known:
		return false, tenantkit.Errorf(tenantkit.Unauthenticated, "your user account is unknown; sign in again")
	case !found:
		return false, tenantkit.Errorf(InvitationNotFound, "invitation not found")
	case inv.Status == "accepted" && inv.AcceptedBy == uid:
		return true, nil
	case inv.Status == "accepted":
		return false, tenantkit.Errorf(InvitationUsed, "the invitation was already accepted")
	case inv.Status == "revoked":
		return false, tenantkit.Errorf(InvitationRevoked, "the invitation was revoked")
	case inv.Status == "expired" || !now.Before(inv.ExpiresAt):
		return false, tenantkit.Errorf(InvitationExpired, "the invitation expired; ask for a new one")
	case !SameEmail(who.Email, inv.Email):
		return false, tenantkit.Errorf(InvitationEmailMismatch, "the invitation was sent to another email address")
	case requireVerified && !who.EmailVerified:
		return false, tenantkit.Errorf(EmailUnverified, "verify your email address first: an invitation can be accepted only from a verified address")
	}
	return false, nil
}

// ChangeRole sets a member's role and, when permissions is not nil, their custom grants. The
// caller needs users:write, must rank at least the member's current and new role, and can grant
// only permissions they hold themselves; the last owner cannot be demoted. Errors: unauthenticated,
// invalid, not_found, forbidden, last_owner.
func (s *Service) ChangeRole(ctx context.Context, sess tenantkit.Session, tenantID, userID, role string, permissions []string) (Membership, error) {
	if _, err := caller(sess); err != nil {
		return Membership{}, err
	}
	r, err := ParseRole(role)
	if err != nil {
		return Membership{}, err
	}
	if err := ValidateID("userId", userID); err != nil {
		return Membership{}, err
	}
	for _, p := range permissions {
		if !tenantkit.ValidPermission(p) {
			return Membership{}, tenantkit.Errorf(tenantkit.Invalid, "permission %q is not of the form resource:action", p)
		}
	}
	me, err := s.require(ctx, sess, tenantID, "users:write")
	if err != nil {
		return Membership{}, err
	}
	if !me.Role.AtLeast(r) {
		return Membership{}, tenantkit.Errorf(tenantkit.Forbidden, "you cannot make someone %s, above your own role", r)
	}
	for _, p := range permissions {
		if !tenantkit.Allows(me.Role, me.Permissions, p) {
			return Membership{}, tenantkit.Errorf(tenantkit.Forbidden, "you cannot grant %s, which you do not hold", p)
		}
	}
	m := Membership{TenantID: tenantID, UserID: userID, Role: r, Permissions: permissions}
	out, err := s.Store.UpdateMember(ctx, sess, m)
	if tenantkit.ErrorCode(err) == tenantkit.Forbidden {
		return out, tenantkit.Errorf(tenantkit.Forbidden, "you cannot change the role of someone above your own role")
	}
	return out, err
}

// Remove removes a member; a member may remove themself (leave). The caller otherwise needs
// users:write and a role at least the member's; the last owner can neither be removed nor leave.
// Errors: unauthenticated, invalid, not_found, forbidden, last_owner.
func (s *Service) Remove(ctx context.Context, sess tenantkit.Session, tenantID, userID string) error {
	uid, err := caller(sess)
	if err != nil {
		return err
	}
	if err := ValidateID("userId", userID); err != nil {
		return err
	}
	if _, err := s.member(ctx, sess, tenantID); err != nil {
		return err
	}
	err = s.Store.RemoveMember(ctx, sess, tenantID, userID)
	if tenantkit.ErrorCode(err) == tenantkit.Forbidden && userID != uid {
		return tenantkit.Errorf(tenantkit.Forbidden, "you cannot remove this member")
	}
	return err
}

// Transfer makes userID (already a member) an owner and the caller, an owner, an admin, in one
// transaction. Errors: unauthenticated, invalid, not_found, forbidden (the caller is not an owner).
func (s *Service) Transfer(ctx context.Context, sess tenantkit.Session, tenantID, userID string) error {
	uid, err := caller(sess)
	if err != nil {
		return err
	}
	if err := ValidateID("userId", userID); err != nil {
		return err
	}
	me, err := s.member(ctx, sess, tenantID)
	if err != nil {
		return err
	}
	if me.Role != tenantkit.Owner {
		return tenantkit.Errorf(tenantkit.Forbidden, "only an owner can transfer ownership")
	}
	if userID == uid {
		return tenantkit.Errorf(tenantkit.Invalid, "you already own this tenant")
	}
	return s.Store.TransferOwnership(ctx, sess, tenantID, uid, userID)
}

// Check reports whether the caller's role and custom grants allow permission in the tenant, and
// the caller's role there. A non-member gets false and no role, never an error that reveals whether
// the tenant exists. Errors: invalid (malformed permission or id), unavailable.
func (s *Service) Check(ctx context.Context, sess tenantkit.Session, tenantID, permission string) (bool, tenantkit.Role, error) {
	if !tenantkit.ValidPermission(permission) {
		return false, "", tenantkit.Errorf(tenantkit.Invalid, "permission must be of the form resource:action")
	}
	if err := ValidateID("tenantId", tenantID); err != nil {
		return false, "", err
	}
	if _, err := caller(sess); err != nil {
		return false, "", nil
	}
	m, err := s.Store.Membership(ctx, sess, tenantID)
	if tenantkit.ErrorCode(err) == tenantkit.NotFound {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	return tenantkit.Allows(m.Role, m.Permissions, permission), m.Role, nil
}

// Permissions returns the caller's role in the tenant and its effective grants (the role's plus
// the custom ones, deduplicated, sorted). A non-member gets no role and no grants.
func (s *Service) Permissions(ctx context.Context, sess tenantkit.Session, tenantID string) (tenantkit.Role, []string, error) {
	if err := ValidateID("tenantId", tenantID); err != nil {
		return "", nil, err
	}
	if _, err := caller(sess); err != nil {
		return "", []string{}, nil
	}
	m, err := s.Store.Membership(ctx, sess, tenantID)
	if tenantkit.ErrorCode(err) == tenantkit.NotFound {
		return "", []string{}, nil
	}
	if err != nil {
		return "", nil, err
	}
	grants := append(slices.Clone(tenantkit.RolePermissions[m.Role]), m.Permissions...)
	slices.Sort(grants)
	return m.Role, slices.Compact(grants), nil
}

// AuditLog returns the tenant's latest team events, newest first (at most limit, 1 to 500). Only
// members holding settings:read (admins and owners) may read it. Errors: unauthenticated, invalid,
// not_found, forbidden.
func (s *Service) AuditLog(ctx context.Context, sess tenantkit.Session, tenantID string, limit int) ([]AuditEntry, error) {
	if _, err := caller(sess); err != nil {
		return nil, err
	}
	if limit < 1 || limit > 500 {
		return nil, tenantkit.Errorf(tenantkit.Invalid, "limit must be between 1 and 500")
	}
	if _, err := s.require(ctx, sess, tenantID, "settings:read"); err != nil {
		return nil, err
	}
	return s.Store.AuditLog(ctx, sess, tenantID, limit)
}

// SendInvitationEmail emails the invitation link for the token whose hash the event carried, if
// that token is still the invitation's current one and has not been emailed yet; the outbox entry
// is cleared only after the mail server accepted the message, so a failure is retried with the
// same link; a database outage right after the mail server accepted the message is waited out
// (up to clearPatience) rather than answered with a retry that would send it twice. Errors:
// unavailable (retry), invalid (the recipient was refused for good).
func (s *Service) SendInvitationEmail(ctx context.Context, tenantID, invitationID string, tokenHash []byte) error {
	e, ok, err := s.Store.PendingInvitationEmail(ctx, tenantID, invitationID, tokenHash)
	if err != nil || !ok {
		return err
	}
	token, err := s.Sealer.Open(e.Sealed, tokenHash)
	if err != nil {
		return fmt.Errorf("open sealed invitation token: %w", err)
	}
	link := s.AppURL + "/invitations/accept?token=" + url.QueryEscape(token)
	inviter := e.InviterName
	if inviter == "" {
		inviter = "A teammate"
	}
	subject := fmt.Sprintf("%s invited you to join %s", inviter, e.TenantName)
	text := fmt.Sprintf("%s invited you to join %s as %s.\n\nAccept the invitation:\n%s\n\nThe link works until %s and only for %s.\n",
		inviter, e.TenantName, e.Role, link, e.ExpiresAt.UTC().Format("2 January 2006 15:04 MST"), e.Email)
	body := fmt.Sprintf(`<p>%s invited you to join <strong>%s</strong> as %s.</p><p><a href="%s">Accept the invitation</a></p><p>The link works until %s and only for %s.</p>`,
		html.EscapeString(inviter), html.EscapeString(e.TenantName), e.Role, html.EscapeString(link),
		e.ExpiresAt.UTC().Format("2 January 2006 15:04 MST"), html.EscapeString(e.Email))
	err = s.Mailer.Send(ctx, tenantkit.Email{
		ID:      "invitation-" + invitationID + "-" + hex.EncodeToString(tokenHash[:8]),
		To:      e.Email,
		Subject: subject,
		Text:    text,
		HTML:    body,
	})
	if err != nil {
		return err
	}
	return s.clearInvitationEmail(ctx, tenantID, invitationID, tokenHash)
}

// clearPatience bounds how long SendInvitationEmail waits for the database to record an email the
// mail server has accepted. Past it (or if the process dies meanwhile) the outbox entry stays and
// a retried event sends the email again.
const clearPatience = 20 * time.Second

// clearInvitationEmail records that the mail server accepted the email. The database may be away
// just then (an outage is often why an event is being retried at all): it tries again, with
// back-off and even if the caller gave up, for up to clearPatience, because giving up here means
// the next delivery of the event sends the same email a second time.
func (s *Service) clearInvitationEmail(ctx context.Context, tenantID, invitationID string, tokenHash []byte) error {
	return tenantkit.RetryUnavailable(context.WithoutCancel(ctx), time.Now().Add(clearPatience), 50*time.Millisecond, 2*time.Second,
		func(ctx context.Context) error {
			return s.Store.ClearInvitationEmail(ctx, tenantID, invitationID, tokenHash)
		})
}
