package actions

import (
	"context"
	"time"

	"github.com/tenantkit/tenantkit"
)

// deleteTenantOutput is what deleteTenant answers: when the tenant was deleted and until when
// restoreTenant can bring it back (the same on a repeated call).
type deleteTenantOutput struct {
	TenantID     string    `json:"tenantId"`
	DeletedAt    time.Time `json:"deletedAt"`
	RestoreUntil time.Time `json:"restoreUntil"`
}

func (h *Handler) deleteTenant(ctx context.Context, s tenantkit.Session, in tenantInput) (deleteTenantOutput, error) {
	d, err := h.Team.DeleteTenant(ctx, s, string(in.TenantID))
	if err != nil {
		return deleteTenantOutput{}, err
	}
	return deleteTenantOutput{TenantID: d.TenantID, DeletedAt: d.DeletedAt, RestoreUntil: d.RestoreUntil}, nil
}

func (h *Handler) restoreTenant(ctx context.Context, s tenantkit.Session, in tenantInput) (tenantOutput, error) {
	t, role, err := h.Team.RestoreTenant(ctx, s, string(in.TenantID))
	if err != nil {
		return tenantOutput{}, err
	}
	return tenantOutput{TenantID: t.ID, Slug: t.Slug, Name: t.Name, Role: role}, nil
}
