package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/team"
)

var _ team.Store = (*DB)(nil)

// CreateTenant implements team.Store: the tenant, its owner and its trial subscription on the
// default plan, in one transaction on the system path (nobody is a member of a tenant before it
// exists), recording the caller as the actor.
func (db *DB) CreateTenant(ctx context.Context, s tenantkit.Session, nt team.NewTenant) (team.Tenant, error) {
	var t team.Tenant
	err := db.WithSystemAs(ctx, s, func(tx pgx.Tx) error {
		var known bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM auth.users WHERE id = $1)`, nt.OwnerID).Scan(&known); err != nil {
			return err
		}
		if !known {
			return tenantkit.Errorf(tenantkit.Unauthenticated, "your user account is unknown")
		}
		err := tx.QueryRow(ctx, `INSERT INTO tenants (slug, name) VALUES ($1, $2) RETURNING id::text, slug, name, created_at`,
			nt.Slug, nt.Name).Scan(&t.ID, &t.Slug, &t.Name, &t.CreatedAt)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner')`, t.ID, nt.OwnerID); err != nil {
			return err
		}
		// The trial plan (by key), else the default plan; no trial: the default plan at once.
		_, err = tx.Exec(ctx, `
			INSERT INTO tenant_subscriptions (tenant_id, plan_id, status, trial_ends_at)
			SELECT $1, coalesce((SELECT id FROM subscription_plans WHERE key = nullif($3, '') AND is_active),
			                    (SELECT id FROM subscription_plans WHERE is_default)),
			       'trialing', $2`, t.ID, nt.TrialEndsAt, nt.TrialPlan)
		return err
	})
	return t, err
}

const invitationColumns = `id::text, tenant_id::text, email, role, status, expires_at, coalesce(accepted_by::text, '')`

func scanInvitation(row pgx.Row) (team.Invitation, error) {
	var inv team.Invitation
	err := row.Scan(&inv.ID, &inv.TenantID, &inv.Email, &inv.Role, &inv.Status, &inv.ExpiresAt, &inv.AcceptedBy)
	return inv, err
}

// stageEmail puts the sealed token where the invitation event handler will find it.
func stageEmail(ctx context.Context, tx pgx.Tx, inv team.Invitation, tok team.SealedToken) error {
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT tenantkit.stage_invitation_email($1, $2, $3, $4)`, inv.TenantID, inv.ID, tok.Hash, tok.Sealed).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return errors.New("stage invitation email: the invitation does not carry the staged token")
	}
	return nil
}

// CreateInvitation implements team.Store.
func (db *DB) CreateInvitation(ctx context.Context, s tenantkit.Session, ni team.NewInvitation) (team.Invitation, error) {
	var inv team.Invitation
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		var err error
		inv, err = scanInvitation(tx.QueryRow(ctx, `
			INSERT INTO tenant_invitations (tenant_id, email, role, invited_by, token_hash, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			RETURNING `+invitationColumns,
			ni.TenantID, ni.Email, ni.Role, ni.InvitedBy, ni.Token.Hash, ni.ExpiresAt))
		if err != nil {
			return err
		}
		if err := recordSend(ctx, tx, inv, false, ni.Limits); err != nil {
			return err
		}
		return stageEmail(ctx, tx, inv, ni.Token)
	})
	return inv, err
}

// recordSend records the invitation email about to be staged and asks the domain whether the
// tenant may send it. tenantkit.record_invitation_send takes the tenant's send lock (held until
// commit) before it records and reads, so concurrent sends of one tenant are counted one after
// another; a refused send rolls back with the transaction, record included. The send is recorded
// after the invitation is written, so a send the write refuses (conflict, plan_limit, a rank
// error) is never counted and never reported as rate_limited.
func recordSend(ctx context.Context, tx pgx.Tx, inv team.Invitation, resend bool, limits team.SendLimits) error {
	l := limits.WithDefaults()
	rows, _ := tx.Query(ctx, `SELECT kind, sent FROM tenantkit.record_invitation_send($1, $2, $3, $4, $5, $6, $7)`,
		inv.TenantID, inv.ID, resend, l.TenantWindow, l.PerTenant+1, l.InvitationWindow, l.PerInvitation+1)
	var h team.SendHistory
	var kind string
	var at time.Time
	if _, err := pgx.ForEachRow(rows, []any{&kind, &at}, func() error {
		if kind == "tenant" {
			h.Tenant = append(h.Tenant, at)
		} else {
			h.Invitation = append(h.Invitation, at)
		}
		return nil
	}); err != nil {
		return err
	}
	if len(h.Tenant) == 0 {
		return errors.New("record invitation send: the send was not recorded (the caller may not invite in the tenant)")
	}
	return limits.Allow(h)
}

// invitationState reads an invitation the caller may see, after a state change matched no row:
// not_found when invisible, else the invitation with a conflict error.
func invitationState(ctx context.Context, tx pgx.Tx, id string) (team.Invitation, error) {
	inv, err := scanInvitation(tx.QueryRow(ctx, `SELECT `+invitationColumns+` FROM tenant_invitations WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return inv, tenantkit.Errorf(tenantkit.NotFound, "invitation not found")
	}
	if err != nil {
		return inv, err
	}
	return inv, tenantkit.Errorf(tenantkit.Conflict, "the invitation is %s", inv.Status)
}

// RotateInvitation implements team.Store.
func (db *DB) RotateInvitation(ctx context.Context, s tenantkit.Session, id string, tok team.SealedToken, expiresAt time.Time, limits team.SendLimits) (team.Invitation, error) {
	var inv team.Invitation
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		var err error
		inv, err = scanInvitation(tx.QueryRow(ctx, `
			UPDATE tenant_invitations SET token_hash = $2, expires_at = $3, status = 'pending'
			WHERE id = $1 AND status IN ('pending', 'expired')
			RETURNING `+invitationColumns, id, tok.Hash, expiresAt))
		if errors.Is(err, pgx.ErrNoRows) {
			inv, err = invitationState(ctx, tx, id)
		}
		if err != nil {
			return err
		}
		if err := recordSend(ctx, tx, inv, true, limits); err != nil {
			return err
		}
		return stageEmail(ctx, tx, inv, tok)
	})
	return inv, err
}

// RevokeInvitation implements team.Store. A revoked invitation comes back with a conflict error
// (the service treats that as success).
func (db *DB) RevokeInvitation(ctx context.Context, s tenantkit.Session, id string) (team.Invitation, error) {
	var inv team.Invitation
	var stateErr error
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		var err error
		inv, err = scanInvitation(tx.QueryRow(ctx, `
			UPDATE tenant_invitations SET status = 'revoked' WHERE id = $1 AND status = 'pending'
			RETURNING `+invitationColumns, id))
		if errors.Is(err, pgx.ErrNoRows) {
			inv, stateErr = invitationState(ctx, tx, id)
			return nil // nothing changed; report the state after the read-only transaction
		}
		return err
	})
	if err != nil {
		return inv, err
	}
	return inv, stateErr
}

// AcceptInvitation implements team.Store on the system path: the invitee is not yet a member, so
// RLS would not show them the invitation; decide checks that it is theirs. The caller's email is
// read in the same transaction, after the invitation's lock, by the session's user id: always
// the caller's own row as committed at that moment. An invitation to a deleted tenant is not
// found.
func (db *DB) AcceptInvitation(ctx context.Context, s tenantkit.Session, tokenHash []byte, readVerified bool,
	decide func(team.Invitation, bool, team.Invitee) (bool, error)) (team.Membership, error) {
	m := team.Membership{UserID: s.UserID()}
	err := db.WithSystemAs(ctx, s, func(tx pgx.Tx) error {
		inv, err := scanInvitation(tx.QueryRow(ctx, `SELECT `+invitationColumns+` FROM tenant_invitations
			WHERE token_hash = $1 AND tenant_id IN (SELECT id FROM tenants WHERE deleted_at IS NULL) FOR UPDATE`, tokenHash))
		found := err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		who, err := invitee(ctx, tx, s.UserID(), readVerified)
		if err != nil {
			return err
		}
		done, err := decide(inv, found, who)
		if err != nil {
			return err
		}
		m.TenantID = inv.TenantID
		if !done {
			if _, err := tx.Exec(ctx, `UPDATE tenant_invitations SET status = 'accepted', accepted_by = $3, accepted_at = now()
				WHERE tenant_id = $1 AND id = $2`, inv.TenantID, inv.ID, s.UserID()); err != nil {
				return err
			}
			// Someone already a member keeps their role: an invitation never demotes.
			if _, err := tx.Exec(ctx, `INSERT INTO tenant_users (tenant_id, user_id, role, invited_by)
				SELECT $1, $2, $3, invited_by FROM tenant_invitations WHERE tenant_id = $1 AND id = $4
				ON CONFLICT (tenant_id, user_id) DO NOTHING`, inv.TenantID, s.UserID(), inv.Role, inv.ID); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `SELECT role, permissions FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`,
			inv.TenantID, s.UserID()).Scan(&m.Role, &m.Permissions)
	})
	return m, err
}

// invitee reads the caller's row of auth.users. No row is Known false (not an empty email, which
// would answer a caller the database cannot see with invitation_email_mismatch); a NULL
// email_verified is unverified.
func invitee(ctx context.Context, tx pgx.Tx, userID string, readVerified bool) (team.Invitee, error) {
	var email *string
	who := team.Invitee{Known: true}
	var err error
	if readVerified {
		err = tx.QueryRow(ctx, `SELECT email, coalesce(email_verified, false) FROM auth.users WHERE id = $1`, userID).Scan(&email, &who.EmailVerified)
	} else {
		err = tx.QueryRow(ctx, `SELECT email FROM auth.users WHERE id = $1`, userID).Scan(&email)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return team.Invitee{}, nil
	}
	if err != nil {
		return team.Invitee{}, err
	}
	if email != nil {
		who.Email = *email
	}
	return who, nil
}

// CheckAuthUsers checks, at start, that accepting an invitation can read what it needs of
// auth.users as tenantkit_system: the email column, email_verified when requireVerified (the
// default; INVITATION_REQUIRE_VERIFIED_EMAIL=false is only for auth tables without it), and rows
// not hidden by row-level security without a policy for tenantkit_system (every caller would
// then be unknown). Errors name what is missing and how to fix it.
func (db *DB) CheckAuthUsers(ctx context.Context, requireVerified bool) error {
	var hasEmail, canEmail, hasVerified, canVerified, rls, policy bool
	err := db.queryRow(ctx, db.Pool, func(row pgx.Row) error {
		return row.Scan(&hasEmail, &canEmail, &hasVerified, &canVerified, &rls, &policy)
	}, `
		WITH c AS (SELECT attname, atttypid, has_column_privilege($1, attrelid, attnum, 'SELECT') AS can
		           FROM pg_attribute WHERE attrelid = to_regclass('auth.users') AND attnum > 0 AND NOT attisdropped)
		SELECT EXISTS (SELECT FROM c WHERE attname = 'email'),
		       EXISTS (SELECT FROM c WHERE attname = 'email' AND can),
		       EXISTS (SELECT FROM c WHERE attname = 'email_verified' AND atttypid = 'boolean'::regtype),
		       EXISTS (SELECT FROM c WHERE attname = 'email_verified' AND can),
		       coalesce((SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass('auth.users')), false),
		       EXISTS (SELECT FROM pg_policies WHERE schemaname = 'auth' AND tablename = 'users'
		               AND cmd IN ('SELECT', 'ALL') AND roles && ARRAY[$1, 'public']::name[])`,
		SystemRole)
	switch {
	case err != nil:
		return translate(err)
	case !hasEmail || !canEmail:
		return fmt.Errorf("auth.users: %s cannot read its email column, which accepting an invitation compares (run `tenantkit migrate up`)", SystemRole)
	case requireVerified && !hasVerified:
		return errors.New("INVITATION_REQUIRE_VERIFIED_EMAIL is true but auth.users has no boolean email_verified column: " +
			"use an auth table that verifies emails (hasura-auth does), or set INVITATION_REQUIRE_VERIFIED_EMAIL=false, only for auth tables without email_verified")
	case requireVerified && !canVerified:
		return fmt.Errorf("auth.users: %s cannot read email_verified (grant SELECT on auth.users to %s)", SystemRole, SystemRole)
	case rls && !policy:
		return fmt.Errorf("auth.users has row-level security without a SELECT policy for %s: every user would be unknown to acceptInvitation (add a policy for %s, or disable row-level security on auth.users)", SystemRole, SystemRole)
	}
	return nil
}

// memberExists tells "not allowed" from "no such member" after a write matched no row.
func memberExists(ctx context.Context, tx pgx.Tx, tenantID, userID string) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenant_users WHERE tenant_id = $1 AND user_id = $2)`, tenantID, userID).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return tenantkit.Errorf(tenantkit.Forbidden, "not allowed")
	}
	return tenantkit.Errorf(tenantkit.NotFound, "member not found")
}

// UpdateMember implements team.Store. Nil Permissions keeps the current custom grants.
func (db *DB) UpdateMember(ctx context.Context, s tenantkit.Session, m team.Membership) (team.Membership, error) {
	out := team.Membership{TenantID: m.TenantID, UserID: m.UserID}
	var perms any
	if m.Permissions != nil {
		perms = m.Permissions
	}
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			UPDATE tenant_users SET role = $3, permissions = coalesce(to_jsonb($4::text[]), permissions)
			WHERE tenant_id = $1 AND user_id = $2
			RETURNING role, permissions`, m.TenantID, m.UserID, m.Role, perms).Scan(&out.Role, &out.Permissions)
		if errors.Is(err, pgx.ErrNoRows) {
			return memberExists(ctx, tx, m.TenantID, m.UserID)
		}
		return err
	})
	return out, err
}

// RemoveMember implements team.Store.
func (db *DB) RemoveMember(ctx context.Context, s tenantkit.Session, tenantID, userID string) error {
	return db.WithUser(ctx, s, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $2`, tenantID, userID)
		if err == nil && tag.RowsAffected() == 0 {
			return memberExists(ctx, tx, tenantID, userID)
		}
		return err
	})
}

// TransferOwnership implements team.Store, under RLS as the (owner) caller: promote first, since a
// demoted caller could no longer make anyone owner.
func (db *DB) TransferOwnership(ctx context.Context, s tenantkit.Session, tenantID, from, to string) error {
	return db.WithUser(ctx, s, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE tenant_users SET role = 'owner' WHERE tenant_id = $1 AND user_id = $2`, tenantID, to)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return memberExists(ctx, tx, tenantID, to)
		}
		if _, err := tx.Exec(ctx, `UPDATE tenant_users SET role = 'admin' WHERE tenant_id = $1 AND user_id = $2`, tenantID, from); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT tenantkit.audit_as_member($1, 'ownership.transferred', $2, jsonb_build_object('from', $3::text))`, tenantID, to, from)
		return err
	})
}

// PendingInvitationEmail implements team.Store (system path: the event handler has no caller).
func (db *DB) PendingInvitationEmail(ctx context.Context, tenantID, invitationID string, tokenHash []byte) (team.InvitationEmail, bool, error) {
	var e team.InvitationEmail
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `
			SELECT i.id::text, i.tenant_id::text, i.email, i.role, i.status, i.expires_at, '',
			       t.name, coalesce(nullif(u.display_name, ''), u.email, ''), o.sealed_token
			FROM tenantkit.invitation_outbox o
			JOIN tenant_invitations i ON i.tenant_id = o.tenant_id AND i.id = o.invitation_id
			JOIN tenants t ON t.id = i.tenant_id AND t.deleted_at IS NULL
			LEFT JOIN auth.users u ON u.id = i.invited_by
			WHERE o.tenant_id = $1 AND o.invitation_id = $2 AND o.token_hash = $3
			  AND i.token_hash = $3 AND i.status = 'pending'`, tenantID, invitationID, tokenHash).Scan(
			&e.ID, &e.TenantID, &e.Email, &e.Role, &e.Status, &e.ExpiresAt, &e.AcceptedBy, &e.TenantName, &e.InviterName, &e.Sealed)
	})
	if tenantkit.ErrorCode(err) == tenantkit.NotFound {
		return e, false, nil
	}
	return e, err == nil, err
}

// ClearInvitationEmail implements team.Store.
func (db *DB) ClearInvitationEmail(ctx context.Context, tenantID, invitationID string, tokenHash []byte) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM tenantkit.invitation_outbox WHERE tenant_id = $1 AND invitation_id = $2 AND token_hash = $3`,
			tenantID, invitationID, tokenHash)
		return err
	})
}

// AuditLog implements team.Store; RLS shows the log to settings:read holders only.
func (db *DB) AuditLog(ctx context.Context, s tenantkit.Session, tenantID string, limit int) ([]team.AuditEntry, error) {
	var entries []team.AuditEntry
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			SELECT id::text, coalesce(actor_id::text, ''), action, coalesce(subject, ''), details::text::bytea, created_at
			FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT $2`, tenantID, limit)
		var err error
		entries, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (team.AuditEntry, error) {
			var e team.AuditEntry
			return e, r.Scan(&e.ID, &e.ActorID, &e.Action, &e.Subject, &e.Details, &e.CreatedAt)
		})
		return err
	})
	return entries, err
}
