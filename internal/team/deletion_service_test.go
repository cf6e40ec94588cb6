package team_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/team"
)

// TestTenantDeletion: who may delete and restore a tenant, the restore window, and that a refused
// or repeated call changes nothing (the Stripe side is cmd/tenantkit's deletion_test.go).
func TestTenantDeletion(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	traces := func(t *testing.T, tenant string) int {
		t.Helper()
		return w.count(t, `SELECT (SELECT count(*) FROM tenants WHERE id = $1 AND deleted_at IS NOT NULL)
			+ (SELECT count(*) FROM tenantkit.tenant_deletions WHERE tenant_id = $1)
			+ (SELECT count(*) FROM tenantkit.stripe_outbox WHERE tenant_id = $1)`, tenant)
	}

	t.Run("owners only; bad input changes nothing", func(t *testing.T) {
		t.Parallel()
		tenant, owner, admin, member := w.team(t)
		for _, c := range []struct {
			by, tenant, want string
		}{
			{admin, tenant, tenantkit.Forbidden}, {member, tenant, tenantkit.Forbidden}, {w.user(t), tenant, tenantkit.NotFound},
			{owner, "5b0b0c8e-3d6a-4f55-9a56-0c8a2b1d4e77", tenantkit.NotFound}, {owner, "{" + tenant + "}", tenantkit.Invalid},
			{"", tenant, tenantkit.Unauthenticated},
		} {
			if _, err := w.svc.DeleteTenant(ctx, as(c.by), c.tenant); code(err) != c.want {
				t.Errorf("delete by %q of %s: %v, want %s", c.by, c.tenant, err, c.want)
			}
		}
		if _, _, err := w.svc.RestoreTenant(ctx, as(admin), tenant); code(err) != tenantkit.Forbidden {
			t.Errorf("restore by an admin: %v", err)
		}
		if n := traces(t, tenant); n != 0 {
			t.Errorf("refused deletions left %d traces", n)
		}
	})

	t.Run("restore within the window, refused after it", func(t *testing.T) {
		t.Parallel()
		now := time.Now()
		svc := *w.svc
		svc.RestoreWindow, svc.Now = time.Hour, func() time.Time { return now }
		tenant, owner, admin, _ := w.team(t)
		d, err := svc.DeleteTenant(ctx, as(owner), tenant)
		if err != nil || !d.RestoreUntil.Equal(d.DeletedAt.Add(time.Hour)) {
			t.Fatalf("DeleteTenant = %+v, %v", d, err)
		}
		if again, err := svc.DeleteTenant(ctx, as(owner), tenant); err != nil || !again.DeletedAt.Equal(d.DeletedAt) {
			t.Errorf("deleting again: %+v, %v; want the same deletion", again, err)
		}
		if ok, role, err := svc.Check(ctx, as(admin), tenant, "projects:read"); ok || role != "" || err != nil {
			t.Errorf("a member of a deleted tenant: %v %q %v", ok, role, err)
		}
		if _, _, err := svc.RestoreTenant(ctx, as(admin), tenant); code(err) != tenantkit.Forbidden {
			t.Errorf("restore by an admin: %v", err)
		}
		if _, _, err := svc.RestoreTenant(ctx, as(w.user(t)), tenant); code(err) != tenantkit.NotFound {
			t.Errorf("restore by a stranger: %v", err)
		}
		for range 2 { // a repeated restore answers the same
			tn, role, err := svc.RestoreTenant(ctx, as(owner), tenant)
			if err != nil || tn.ID != tenant || role != tenantkit.Owner || tn.Name != "Acme" {
				t.Errorf("RestoreTenant = %+v %q, %v", tn, role, err)
			}
		}
		if ok, _, _ := svc.Check(ctx, as(admin), tenant, "projects:read"); !ok {
			t.Error("the admin does not see the restored tenant")
		}
		if plan := w.count(t, `SELECT count(*) FROM subscription_plans WHERE key = 'free' AND id = tenantkit.effective_plan($1)`, tenant); plan != 1 {
			t.Error("the restored tenant is not on the free plan")
		}
		if n := w.count(t, `SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action IN ('tenant.deleted', 'tenant.restored')`, tenant); n != 2 {
			t.Errorf("%d deletion/restore audit entries, want 2", n)
		}
		if n := w.count(t, `SELECT count(*) FROM tenantkit.tenant_deletions WHERE tenant_id = $1 AND restored_by = $2 AND restored_at IS NOT NULL`, tenant, owner); n != 1 {
			t.Error("the restore is not recorded")
		}

		// Deleted again; the window ends.
		if _, err := svc.DeleteTenant(ctx, as(owner), tenant); err != nil {
			t.Fatal(err)
		}
		svc.Now = func() time.Time { return now.Add(time.Hour) }
		_, _, err = svc.RestoreTenant(ctx, as(owner), tenant)
		if code(err) != team.RestoreExpired || !strings.Contains(err.Error(), "could be restored until") {
			t.Errorf("restore after the window: %v", err)
		}
		if n := w.count(t, `SELECT count(*) FROM tenants WHERE id = $1 AND deleted_at IS NOT NULL`, tenant); n != 1 {
			t.Error("a refused restore restored the tenant")
		}
	})
}
