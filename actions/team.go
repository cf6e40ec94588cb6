package actions

import (
	"context"
	"strconv"
	"time"

	"github.com/tenantkit/tenantkit"
)

// Inputs and outputs of the team actions. Field names are the GraphQL argument and field names in
// hasura/metadata/actions.graphql; a test checks that the two agree, and that every uuid argument
// decodes into a tenantkit.ID (canonical, so the services never see two spellings of one id).

type createTenantInput struct {
	Name string `json:"name"`
	Slug string `json:"slug"`
}

type tenantOutput struct {
	TenantID string         `json:"tenantId"`
	Slug     string         `json:"slug"`
	Name     string         `json:"name"`
	Role     tenantkit.Role `json:"role"`
}

func (h *Handler) createTenant(ctx context.Context, s tenantkit.Session, in createTenantInput) (tenantOutput, error) {
	t, err := h.Team.CreateTenant(ctx, s, in.Name, in.Slug)
	if err != nil {
		return tenantOutput{}, err
	}
	return tenantOutput{TenantID: t.ID, Slug: t.Slug, Name: t.Name, Role: tenantkit.Owner}, nil
}

type inviteMemberInput struct {
	TenantID tenantkit.ID `json:"tenantId"`
	Email    string       `json:"email"`
	Role     string       `json:"role"`
}

type invitationOutput struct {
	InvitationID string         `json:"invitationId"`
	TenantID     string         `json:"tenantId"`
	Email        string         `json:"email"`
	Role         tenantkit.Role `json:"role"`
	Status       string         `json:"status"`
	ExpiresAt    time.Time      `json:"expiresAt"`
}

func (h *Handler) inviteMember(ctx context.Context, s tenantkit.Session, in inviteMemberInput) (invitationOutput, error) {
	inv, err := h.Team.Invite(ctx, s, string(in.TenantID), in.Email, in.Role)
	if err != nil {
		return invitationOutput{}, err
	}
	return invitationOutput{inv.ID, inv.TenantID, inv.Email, inv.Role, inv.Status, inv.ExpiresAt}, nil
}

type invitationIDInput struct {
	InvitationID tenantkit.ID `json:"invitationId"`
}

func (h *Handler) revokeInvitation(ctx context.Context, s tenantkit.Session, in invitationIDInput) (invitationOutput, error) {
	inv, err := h.Team.Revoke(ctx, s, string(in.InvitationID))
	if err != nil {
		return invitationOutput{}, err
	}
	return invitationOutput{inv.ID, inv.TenantID, inv.Email, inv.Role, "revoked", inv.ExpiresAt}, nil
}

func (h *Handler) resendInvitation(ctx context.Context, s tenantkit.Session, in invitationIDInput) (invitationOutput, error) {
	inv, err := h.Team.Resend(ctx, s, string(in.InvitationID))
	if err != nil {
		return invitationOutput{}, err
	}
	return invitationOutput{inv.ID, inv.TenantID, inv.Email, inv.Role, inv.Status, inv.ExpiresAt}, nil
}

type acceptInvitationInput struct {
	Token string `json:"token"`
}

type membershipOutput struct {
	TenantID    string         `json:"tenantId"`
	UserID      string         `json:"userId"`
	Role        tenantkit.Role `json:"role"`
	Permissions []string       `json:"permissions"`
}

func (h *Handler) acceptInvitation(ctx context.Context, s tenantkit.Session, in acceptInvitationInput) (membershipOutput, error) {
	m, err := h.Team.Accept(ctx, s, in.Token)
	if err != nil {
		return membershipOutput{}, err
	}
	return membershipOutput{m.TenantID, m.UserID, m.Role, nonNil(m.Permissions)}, nil
}

type changeMemberRoleInput struct {
	TenantID    tenantkit.ID `json:"tenantId"`
	UserID      tenantkit.ID `json:"userId"`
	Role        string       `json:"role"`
	Permissions []string     `json:"permissions"` // optional: null keeps the custom grants
}

func (h *Handler) changeMemberRole(ctx context.Context, s tenantkit.Session, in changeMemberRoleInput) (membershipOutput, error) {
	m, err := h.Team.ChangeRole(ctx, s, string(in.TenantID), string(in.UserID), in.Role, in.Permissions)
	if err != nil {
		return membershipOutput{}, err
	}
	return membershipOutput{m.TenantID, m.UserID, m.Role, nonNil(m.Permissions)}, nil
}

type memberInput struct {
	TenantID tenantkit.ID `json:"tenantId"`
	UserID   tenantkit.ID `json:"userId"`
}

type removeMemberOutput struct {
	TenantID string `json:"tenantId"`
	UserID   string `json:"userId"`
	Removed  bool   `json:"removed"`
}

type transferOwnershipOutput struct {
	TenantID        string `json:"tenantId"`
	OwnerID         string `json:"ownerId"`
	PreviousOwnerID string `json:"previousOwnerId"`
}

func (h *Handler) removeMember(ctx context.Context, s tenantkit.Session, in memberInput) (removeMemberOutput, error) {
	if err := h.Team.Remove(ctx, s, string(in.TenantID), string(in.UserID)); err != nil {
		return removeMemberOutput{}, err
	}
	return removeMemberOutput{TenantID: string(in.TenantID), UserID: string(in.UserID), Removed: true}, nil
}

func (h *Handler) transferOwnership(ctx context.Context, s tenantkit.Session, in memberInput) (transferOwnershipOutput, error) {
	if err := h.Team.Transfer(ctx, s, string(in.TenantID), string(in.UserID)); err != nil {
		return transferOwnershipOutput{}, err
	}
	return transferOwnershipOutput{TenantID: string(in.TenantID), OwnerID: string(in.UserID), PreviousOwnerID: s.UserID()}, nil
}

type checkPermissionInput struct {
	TenantID   tenantkit.ID `json:"tenantId"`
	Permission string       `json:"permission"`
}

// decodePlain decodes the plain form of the input, {"tenantId": "<uuid>", "permission": "…"} with
// both keys spelt so, once each, and no escape (plainjson.go); false for anything else.
func (in *checkPermissionInput) decodePlain(raw []byte) bool {
	var tenant, perm bool
	return plainObject(raw, func(key string, v []byte) bool {
		s, ok := plainString(v)
		if !ok {
			return false
		}
		switch {
		case key == "tenantId" && !tenant:
			id, err := tenantkit.ParseID("tenantId", s)
			in.TenantID, tenant = id, true
			return err == nil
		case key == "permission" && !perm:
			in.Permission, perm = s, true
			return true
		}
		return false
	})
}

// checkPermissionOutput: role is null for a non-member.
type checkPermissionOutput struct {
	Allowed bool            `json:"allowed"`
	Role    *tenantkit.Role `json:"role"`
}

// appendJSON writes {"allowed":…,"role":…} as encoding/json does, for a role of lower-case
// letters (every role); false for any other role.
func (o checkPermissionOutput) appendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"allowed":`...)
	b = strconv.AppendBool(b, o.Allowed)
	if o.Role == nil {
		return append(b, ",\"role\":null}\n"...), true
	}
	for _, c := range []byte(*o.Role) {
		if c < 'a' || c > 'z' {
			return nil, false
		}
	}
	b = append(b, `,"role":"`...)
	b = append(b, *o.Role...)
	return append(b, "\"}\n"...), true
}

// unmetered: a non-member's check (role null) is not metered as the tenant's API call.
func (o checkPermissionOutput) unmetered() bool { return o.Role == nil }

func (h *Handler) checkPermission(ctx context.Context, s tenantkit.Session, in checkPermissionInput) (checkPermissionOutput, error) {
	allowed, role, err := h.Team.Check(ctx, s, string(in.TenantID), in.Permission)
	if err != nil {
		return checkPermissionOutput{}, err
	}
	out := checkPermissionOutput{Allowed: allowed}
	if role != "" {
		out.Role = &role
	}
	return out, nil
}

func nonNil(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}
