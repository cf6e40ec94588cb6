package actions

import (
	"context"
	"time"

	"github.com/tenantkit/tenantkit"
)

// Inputs and outputs of the API key actions (hasura/metadata/actions.graphql).

type createAPIKeyInput struct {
	TenantID  tenantkit.ID `json:"tenantId"`
	Name      string       `json:"name"`
	Scopes    []string     `json:"scopes"`
	ExpiresAt *time.Time   `json:"expiresAt"` // optional: no expiry
}

// createAPIKeyOutput carries the key itself: the only time it is ever shown.
type createAPIKeyOutput struct {
	KeyID     string     `json:"keyId"`
	TenantID  string     `json:"tenantId"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Key       string     `json:"key"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt *time.Time `json:"expiresAt"`
}

func (h *Handler) createAPIKey(ctx context.Context, s tenantkit.Session, in createAPIKeyInput) (createAPIKeyOutput, error) {
	k, secret, err := h.Keys.Create(ctx, s, string(in.TenantID), in.Name, in.Scopes, in.ExpiresAt)
	if err != nil {
		return createAPIKeyOutput{}, err
	}
	return createAPIKeyOutput{KeyID: k.ID, TenantID: k.TenantID, Name: k.Name, Prefix: k.Prefix, Key: secret,
		Scopes: nonNil(k.Scopes), CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt}, nil
}

type revokeAPIKeyInput struct {
	KeyID tenantkit.ID `json:"keyId"`
}

type revokeAPIKeyOutput struct {
	KeyID     string    `json:"keyId"`
	TenantID  string    `json:"tenantId"`
	RevokedAt time.Time `json:"revokedAt"`
}

func (h *Handler) revokeAPIKey(ctx context.Context, s tenantkit.Session, in revokeAPIKeyInput) (revokeAPIKeyOutput, error) {
	k, err := h.Keys.Revoke(ctx, s, string(in.KeyID))
	if err != nil {
		return revokeAPIKeyOutput{}, err
	}
	var at time.Time
	if k.RevokedAt != nil {
		at = *k.RevokedAt
	}
	return revokeAPIKeyOutput{KeyID: k.ID, TenantID: k.TenantID, RevokedAt: at}, nil
}
