package actions

import (
	"context"
	"time"

	"github.com/tenantkit/tenantkit"
)

type exportOutput struct {
	ExportID  tenantkit.ID `json:"exportId"`
	URL       string       `json:"url"`
	ExpiresAt time.Time    `json:"expiresAt"`
}

// unmetered: exporting its data is the tenant's right, and not an API call it is billed for
// (a metered call would also change the usage the next archive holds).
func (exportOutput) unmetered() bool { return true }

func (h *Handler) exportTenant(ctx context.Context, s tenantkit.Session, in tenantInput) (exportOutput, error) {
	if h.Exports == nil {
		return exportOutput{}, tenantkit.Errorf(tenantkit.Unavailable, "exports are not configured on this server; try again later")
	}
	l, err := h.Exports.Request(ctx, s, string(in.TenantID))
	if err != nil {
		return exportOutput{}, err
	}
	return exportOutput{ExportID: tenantkit.ID(l.ExportID), URL: l.URL, ExpiresAt: l.ExpiresAt}, nil
}
