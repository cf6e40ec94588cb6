package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/team"
)

// deletionState locks the tenant and reads what a deletion or a restore is decided on. The
// tenant's billing row is locked first, as ApplyStripeEvent locks it: a Stripe event being
// applied finishes before the subscriptions are read (a subscription it adds is seen, and
// canceled), and an event applied after the deletion sees it.
func deletionState(ctx context.Context, tx pgx.Tx, tenantID, userID string) (team.DeletionState, error) {
	st := team.DeletionState{Subscriptions: map[string]string{}}
	if _, err := tx.Exec(ctx, `SELECT FROM tenant_subscriptions WHERE tenant_id = $1 FOR UPDATE`, tenantID); err != nil {
		return st, err
	}
	var deletedAt, restoreUntil *time.Time
	var role *tenantkit.Role
	var perms []string
	err := tx.QueryRow(ctx, `
		SELECT t.id::text, t.slug, t.name, t.created_at, t.deleted_at,
		       (SELECT d.restore_until FROM tenantkit.tenant_deletions d
		        WHERE d.tenant_id = t.id AND d.restored_at IS NULL AND d.purged_at IS NULL ORDER BY d.seq DESC LIMIT 1),
		       m.role, coalesce(m.permissions, '[]')
		FROM tenants t LEFT JOIN tenant_users m ON m.tenant_id = t.id AND m.user_id = $2
		WHERE t.id = $1
		FOR UPDATE OF t`, tenantID, userID).Scan(&st.Tenant.ID, &st.Tenant.Slug, &st.Tenant.Name, &st.Tenant.CreatedAt,
		&deletedAt, &restoreUntil, &role, &perms)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil // no such tenant: nobody's member
	}
	if err != nil {
		return st, err
	}
	if role != nil {
		st.IsMember = true
		st.Member = team.Membership{TenantID: tenantID, UserID: userID, Role: *role, Permissions: perms}
	}
	if deletedAt != nil {
		d := team.Deletion{TenantID: tenantID, DeletedAt: deletedAt.UTC()}
		if restoreUntil != nil {
			d.RestoreUntil = restoreUntil.UTC()
		}
		st.Deleted = &d
	}
	rows, _ := tx.Query(ctx, `
		SELECT id, status::text FROM tenantkit.stripe_subscriptions WHERE tenant_id = $1
		UNION
		SELECT stripe_subscription_id, status::text FROM tenant_subscriptions
		WHERE tenant_id = $1 AND stripe_subscription_id IS NOT NULL
		  AND NOT EXISTS (SELECT FROM tenantkit.stripe_subscriptions WHERE id = stripe_subscription_id)`, tenantID)
	var id, status string
	_, err = pgx.ForEachRow(rows, []any{&id, &status}, func() error {
		st.Subscriptions[id] = status
		return nil
	})
	return st, err
}

// DeleteTenant implements team.Store on the system path, recording the caller as the actor: the
// deletion mark, the deletion record, the tenant's billing row on the default plan (its
// subscription is being canceled) and the Stripe writes, in one transaction.
func (db *DB) DeleteTenant(ctx context.Context, s tenantkit.Session, tenantID string,
	decide func(team.DeletionState) (team.Deletion, bool, error)) (team.Deletion, error) {
	var d team.Deletion
	err := db.WithSystemAs(ctx, s, func(tx pgx.Tx) error {
		st, err := deletionState(ctx, tx, tenantID, s.UserID())
		if err != nil {
			return err
		}
		var fresh bool
		if d, fresh, err = decide(st); err != nil || !fresh {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE tenants SET deleted_at = $2, deleted_by = $3 WHERE id = $1`, tenantID, d.DeletedAt, s.UserID())
		b.Queue(`INSERT INTO tenantkit.tenant_deletions (tenant_id, slug, name, actor_id, deleted_at, restore_until)
			SELECT id, slug, name, $3, $2, $4 FROM tenants WHERE id = $1`, tenantID, d.DeletedAt, s.UserID(), d.RestoreUntil)
		b.Queue(`
			UPDATE tenant_subscriptions SET status = 'canceled', plan_id = (SELECT id FROM subscription_plans WHERE is_default),
			  cancel_at_period_end = false, cancel_at = NULL, canceled_at = coalesce(canceled_at, $2)
			WHERE tenant_id = $1`, tenantID, d.DeletedAt)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		return queueWrites(ctx, tx, d.Writes)
	})
	return d, err
}

// RestoreTenant implements team.Store on the system path, recording the caller as the actor.
func (db *DB) RestoreTenant(ctx context.Context, s tenantkit.Session, tenantID string,
	decide func(team.DeletionState) (bool, error)) (team.Tenant, error) {
	var t team.Tenant
	err := db.WithSystemAs(ctx, s, func(tx pgx.Tx) error {
		st, err := deletionState(ctx, tx, tenantID, s.UserID())
		if err != nil {
			return err
		}
		restore, err := decide(st)
		if err != nil {
			return err
		}
		t = st.Tenant
		if !restore {
			return nil
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE tenants SET deleted_at = NULL, deleted_by = NULL WHERE id = $1`, tenantID)
		b.Queue(`UPDATE tenantkit.tenant_deletions SET restored_at = clock_timestamp(), restored_by = $2
			WHERE tenant_id = $1 AND restored_at IS NULL AND purged_at IS NULL`, tenantID, s.UserID())
		return tx.SendBatch(ctx, b).Close()
	})
	return t, err
}

// purgeLock is the advisory lock key each transaction of a purge takes (pg_try_advisory_xact_lock),
// so that only one replica purges at a time.
const purgeLock = `hashtext('tenantkit.purge'), 0`

// purgeBatch is how many tenants one round of the purge looks up; each is purged in its own
// transaction, whose statements may take up to purgeTimeout (a large tenant's rows go by cascade).
const (
	purgeBatch   = 20
	purgeTimeout = "15min"
)

// PurgeDeletedTenants implements team.Store. Each tenant is purged in a transaction of its own,
// and every transaction of the run first takes the purge lock at transaction level
// (pg_try_advisory_xact_lock): while a purge runs on another replica, this one stops at its next
// transaction. A transaction lock, not a session lock, so that it holds behind a transaction
// pooler too. ran is false when the lock was taken before anything was done.
func (db *DB) PurgeDeletedTenants(ctx context.Context, cutoff time.Time) (purged int, ran bool, err error) {
	errBusy := errors.New("another purge holds the lock")
	locked := func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(`+purgeLock+`)`).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return errBusy
		}
		return nil
	}
	ran = true
	defer func() {
		if errors.Is(err, errBusy) {
			ran, err = purged > 0, nil
		}
	}()
	for {
		var due []string
		err := db.WithSystem(ctx, func(tx pgx.Tx) error {
			if err := locked(tx); err != nil {
				return err
			}
			rows, _ := tx.Query(ctx, `
				SELECT d.tenant_id::text FROM tenantkit.tenant_deletions d JOIN tenants t ON t.id = d.tenant_id AND t.deleted_at IS NOT NULL
				WHERE d.restored_at IS NULL AND d.purged_at IS NULL AND d.restore_until <= $1
				ORDER BY d.restore_until, d.seq LIMIT $2`, cutoff, purgeBatch)
			var err error
			due, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil || len(due) == 0 {
			return purged, true, err
		}
		progress := false
		for _, tenant := range due {
			var done bool
			err := db.WithSystem(ctx, func(tx pgx.Tx) error {
				if err := locked(tx); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = '`+purgeTimeout+`'`); err != nil {
					return err
				}
				return tx.QueryRow(ctx, `SELECT tenantkit.purge_tenant($1, $2)`, tenant, cutoff).Scan(&done)
			})
			if err != nil {
				return purged, true, err
			}
			if done {
				purged++
				progress = true
			}
		}
		if !progress {
			return purged, true, nil
		}
	}
}
