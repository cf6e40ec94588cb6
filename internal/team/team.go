// Package team is the domain of tenants, members, invitations and permissions: the rules users
// expect (slugs, who may invite whom, invitation lifecycle, the last owner) on top of a Store that
// persists them. The Store runs under RLS, so the database enforces the same boundaries again.
package team

import (
	"context"
	"time"

	"github.com/tenantkit/tenantkit"
)

// Finer error codes a client must tell apart (on top of tenantkit's codes).
const (
	SlugTaken               = "slug_taken"
	InvitationNotFound      = "invitation_not_found"
	InvitationExpired       = "invitation_expired"
	InvitationRevoked       = "invitation_revoked"
	InvitationUsed          = "invitation_used"
	InvitationEmailMismatch = "invitation_email_mismatch"
	// EmailUnverified: the signed-in user's email address is not verified (auth.users.email_verified).
	EmailUnverified = "email_unverified"
	// RateLimited: too many invitation emails for now; the message says when to try again.
	RateLimited = "rate_limited"
)

// Tenant is an organisation using the platform.
type Tenant struct {
	ID        string
	Slug      string
	Name      string
	CreatedAt time.Time
}

// Membership is a user's place in a tenant.
type Membership struct {
	TenantID    string
	UserID      string
	Role        tenantkit.Role
	Permissions []string // custom grants on top of the role's
}

// Invitation is an invitation to join a tenant. Its token is never stored, only its hash.
type Invitation struct {
	ID         string
	TenantID   string
	Email      string
	Role       tenantkit.Role
	Status     string // pending, accepted, revoked, expired
	ExpiresAt  time.Time
	AcceptedBy string
}

// AuditEntry is one team event: who (ActorID, empty for the system) did what to whom, when.
type AuditEntry struct {
	ID        string
	ActorID   string
	Action    string // tenant.created, member.invited, member.joined, member.role_changed, …
	Subject   string // the user id or email the action was about
	Details   []byte // JSON object
	CreatedAt time.Time
}

// NewTenant is what CreateTenant stores.
type NewTenant struct {
	Slug, Name  string
	OwnerID     string
	TrialEndsAt time.Time
	TrialPlan   string // key of the trial plan ("": the default plan)
}

// NewInvitation is what CreateInvitation stores: the token's hash, and the token sealed for the
// email outbox; Limits bound the invitation emails of the tenant.
type NewInvitation struct {
	TenantID  string
	Email     string
	Role      tenantkit.Role
	InvitedBy string
	Token     SealedToken
	ExpiresAt time.Time
	Limits    SendLimits
}

// Invitee is the signed-in user accepting an invitation, as the auth table knows them.
type Invitee struct {
	Known         bool   // the auth table has a row for the caller's id
	Email         string // auth.users.email ("" when NULL)
	EmailVerified bool   // auth.users.email_verified; false when it was not read
}

// InvitationEmail is what the invitation email needs, read from the outbox.
type InvitationEmail struct {
	Invitation
	TenantName  string
	InviterName string
	Sealed      []byte
}

// Store persists the team domain. Methods taking a session run as that caller under RLS (except
// CreateTenant and AcceptInvitation, the system path, which record the caller as the actor).
// Errors are tenantkit errors: not_found, forbidden (RLS refused), conflict, plan_limit,
// last_owner, unavailable, and whatever the domain's callbacks (decide, SendLimits.Allow) return.
type Store interface {
	CreateTenant(ctx context.Context, s tenantkit.Session, t NewTenant) (Tenant, error)
	// Membership returns the caller's own membership of the tenant; not_found when none. It reads
	// on the system path, selecting the row by the caller's id (what RLS would allow anyway).
	Membership(ctx context.Context, s tenantkit.Session, tenantID string) (Membership, error)
	// CreateInvitation stores the invitation, records the email it causes and, in the same
	// transaction and under the tenant's send lock, asks inv.Limits.Allow whether the tenant may
	// send it (see SendHistory).
	CreateInvitation(ctx context.Context, s tenantkit.Session, inv NewInvitation) (Invitation, error)
	// RotateInvitation replaces the token and expiry of a pending or expired invitation and, as
	// CreateInvitation, records the resend and asks limits.Allow.
	RotateInvitation(ctx context.Context, s tenantkit.Session, invitationID string, tok SealedToken, expiresAt time.Time, limits SendLimits) (Invitation, error)
	RevokeInvitation(ctx context.Context, s tenantkit.Session, invitationID string) (Invitation, error)
	// AcceptInvitation locks the invitation with this token hash, reads the caller from the auth
	// table in the same transaction (email_verified only when readVerified: the column may not
	// exist), asks decide whether to proceed (decide returns done=true for an idempotent repeat),
	// then makes the caller a member and marks the invitation accepted, all in one transaction.
	AcceptInvitation(ctx context.Context, s tenantkit.Session, tokenHash []byte, readVerified bool,
		decide func(inv Invitation, found bool, who Invitee) (done bool, err error)) (Membership, error)
	UpdateMember(ctx context.Context, s tenantkit.Session, m Membership) (Membership, error)
	RemoveMember(ctx context.Context, s tenantkit.Session, tenantID, userID string) error
	// TransferOwnership makes to an owner and from an admin, atomically.
	TransferOwnership(ctx context.Context, s tenantkit.Session, tenantID, from, to string) error
	// PendingInvitationEmail returns the outbox entry of the invitation if its token hash is still
	// tokenHash (false when sent already or superseded by a newer token).
	PendingInvitationEmail(ctx context.Context, tenantID, invitationID string, tokenHash []byte) (InvitationEmail, bool, error)
	// ClearInvitationEmail removes the outbox entry once its email was accepted for delivery.
	ClearInvitationEmail(ctx context.Context, tenantID, invitationID string, tokenHash []byte) error
	// AuditLog returns the tenant's latest entries, newest first, as far as the caller may read them.
	AuditLog(ctx context.Context, s tenantkit.Session, tenantID string, limit int) ([]AuditEntry, error)
	// DeleteTenant locks the tenant, reads its DeletionState and asks decide; when decide returns
	// fresh, it marks the tenant deleted at DeletedAt by the caller, records the deletion, moves
	// the tenant's own billing row to the default plan (canceled) and queues the deletion's Stripe
	// writes, all in one transaction. It returns the deletion decide returned.
	DeleteTenant(ctx context.Context, s tenantkit.Session, tenantID string,
		decide func(DeletionState) (d Deletion, fresh bool, err error)) (Deletion, error)
	// RestoreTenant locks the tenant, reads its DeletionState and asks decide; when decide says
	// restore, it clears the deletion mark and records the restore by the caller. It returns the
	// tenant.
	RestoreTenant(ctx context.Context, s tenantkit.Session, tenantID string,
		decide func(DeletionState) (restore bool, err error)) (Tenant, error)
	// PurgeDeletedTenants purges (tenantkit.purge_tenant) every deleted tenant whose restore
	// window ended at or before cutoff, unless another purge holds the purge lock (ran false).
	PurgeDeletedTenants(ctx context.Context, cutoff time.Time) (purged int, ran bool, err error)
}
