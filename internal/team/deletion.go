package team

import (
	"context"
	"time"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
)

// Deleting a tenant is soft, then final:
//
//   - DeleteTenant (owners: tenants:delete) marks the tenant deleted, in one transaction with its
//     audit entry, its deletion record and the cancellation of every live Stripe subscription it
//     has (queued in the Stripe outbox, sent after commit: never a Stripe call inside the
//     transaction). From that commit on the tenant is nobody's: RLS and Hasura's rules hide it and
//     everything in it from every member, invitations to it cannot be accepted, and its Stripe
//     events change nothing of it (internal/billing). Its slug stays taken.
//   - RestoreTenant (an owner of the deleted tenant) brings it back within RestoreWindow of the
//     deletion (default 30 days), on the default (free) plan: the subscription was canceled at
//     Stripe, and a new checkout starts a new one.
//   - After the window, PurgeDeleted removes the tenant and every row it owns, keeping its deletion
//     record and its audit log's actions without personal data (tenantkit.purge_tenant).
//
// Repeating a deletion or a restore (a retry, a concurrent duplicate) changes nothing twice and
// answers the same.

// RestoreExpired is the error code of a restore after the window: the tenant is about to be purged.
const RestoreExpired = "restore_expired"

// DefaultRestoreWindow is how long a deleted tenant may be restored unless configured.
const DefaultRestoreWindow = 30 * 24 * time.Hour

// Deletion is a tenant's deletion: when, until when it may be restored, and the Stripe writes it
// queued (none when it was deleted before).
type Deletion struct {
	TenantID     string
	DeletedAt    time.Time
	RestoreUntil time.Time
	Writes       []billing.StripeWrite
}

// DeletionState is what deciding a deletion or a restore needs, read by the store with the tenant
// locked.
type DeletionState struct {
	Tenant Tenant
	// Member is the caller's membership, whether or not the tenant is deleted; IsMember false when
	// the caller has none (or the tenant does not exist).
	Member   Membership
	IsMember bool
	// Deleted is the tenant's current deletion; nil when the tenant is not deleted.
	Deleted *Deletion
	// Subscriptions are the statuses of the tenant's Stripe subscriptions, by id.
	Subscriptions map[string]string
}

func (s *Service) restoreWindow() time.Duration {
	switch {
	case s.RestoreWindow < 0:
		return 0
	case s.RestoreWindow > 0:
		return s.RestoreWindow
	}
	return DefaultRestoreWindow
}

// mayDelete is the rule of who may delete or restore a tenant: its owners (tenants:delete, which
// only owners hold and only they can grant). Errors: not_found, forbidden.
func mayDelete(st DeletionState) error {
	switch {
	case !st.IsMember:
		return tenantkit.Errorf(tenantkit.NotFound, "tenant not found")
	case !tenantkit.Allows(st.Member.Role, st.Member.Permissions, "tenants:delete"):
		return tenantkit.Errorf(tenantkit.Forbidden, "only an owner can delete or restore the tenant")
	}
	return nil
}

// DeleteTenant deletes the tenant for its owner (see above). A tenant already deleted answers its
// existing deletion. Errors: unauthenticated, invalid, not_found, forbidden.
func (s *Service) DeleteTenant(ctx context.Context, sess tenantkit.Session, tenantID string) (Deletion, error) {
	if _, err := caller(sess); err != nil {
		return Deletion{}, err
	}
	if err := ValidateID("tenantId", tenantID); err != nil {
		return Deletion{}, err
	}
	return s.Store.DeleteTenant(ctx, sess, tenantID, func(st DeletionState) (Deletion, bool, error) {
		if err := mayDelete(st); err != nil {
			return Deletion{}, false, err
		}
		if st.Deleted != nil {
			return *st.Deleted, false, nil
		}
		// The clock is read here, once the tenant is locked.
		now := s.now().UTC().Truncate(time.Microsecond) // as PostgreSQL stores it
		return Deletion{TenantID: tenantID, DeletedAt: now, RestoreUntil: now.Add(s.restoreWindow()),
			Writes: billing.CancelOnDeletion(tenantID, now, st.Subscriptions)}, true, nil
	})
}

// RestoreTenant brings a deleted tenant back for its owner, within the restore window, on the
// default plan, and returns it with the caller's role. A tenant that is not deleted is answered as
// it is. Errors: unauthenticated, invalid, not_found (also once purged), forbidden,
// restore_expired.
func (s *Service) RestoreTenant(ctx context.Context, sess tenantkit.Session, tenantID string) (Tenant, tenantkit.Role, error) {
	if _, err := caller(sess); err != nil {
		return Tenant{}, "", err
	}
	if err := ValidateID("tenantId", tenantID); err != nil {
		return Tenant{}, "", err
	}
	var role tenantkit.Role
	t, err := s.Store.RestoreTenant(ctx, sess, tenantID, func(st DeletionState) (bool, error) {
		if err := mayDelete(st); err != nil {
			return false, err
		}
		role = st.Member.Role
		if st.Deleted == nil {
			return false, nil
		}
		if !s.now().Before(st.Deleted.RestoreUntil) {
			return false, tenantkit.Errorf(RestoreExpired, "the tenant was deleted on %s and could be restored until %s: it is being purged",
				st.Deleted.DeletedAt.UTC().Format("2 January 2006"), st.Deleted.RestoreUntil.UTC().Format("2 January 2006 15:04 MST"))
		}
		return true, nil
	})
	return t, role, err
}

// PurgeDeleted purges every deleted tenant whose restore window has ended, in batches, and
// returns how many it purged. Only one purge runs at a time across replicas: when another holds
// the purge lock, it returns at once (ran false).
func (s *Service) PurgeDeleted(ctx context.Context) (purged int, ran bool, err error) {
	return s.Store.PurgeDeletedTenants(ctx, s.now())
}

// RunPurge purges every interval until ctx ends, logging what it did through report.
func (s *Service) RunPurge(ctx context.Context, interval time.Duration, report func(purged int, ran bool, err error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		n, ran, err := s.PurgeDeleted(ctx)
		if ctx.Err() != nil {
			return
		}
		report(n, ran, err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
