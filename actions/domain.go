package actions

import (
	"context"
	"encoding/json"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/team"
)

// Inputs and outputs of the verified-domain actions (hasura/metadata/actions.graphql).

type addDomainInput struct {
	TenantID    tenantkit.ID `json:"tenantId"`
	Domain      string       `json:"domain"`
	Policy      *string      `json:"policy"`      // auto_join or suggest (default)
	DefaultRole *string      `json:"defaultRole"` // default member
}

// domainOutput: the TXT record to publish (recordName, recordValue) and the domain's state.
type domainOutput struct {
	DomainID    string         `json:"domainId"`
	TenantID    string         `json:"tenantId"`
	Domain      string         `json:"domain"`
	Policy      string         `json:"policy"`
	DefaultRole tenantkit.Role `json:"defaultRole"`
	Verified    bool           `json:"verified"`
	VerifiedAt  *time.Time     `json:"verifiedAt"`
	RecordType  string         `json:"recordType"`
	RecordName  string         `json:"recordName"`
	RecordValue string         `json:"recordValue"`
}

func toDomainOutput(d team.Domain) domainOutput {
	return domainOutput{DomainID: d.ID, TenantID: d.TenantID, Domain: d.Domain, Policy: d.Policy, DefaultRole: d.DefaultRole,
		Verified: d.VerifiedAt != nil, VerifiedAt: d.VerifiedAt, RecordType: "TXT", RecordName: d.RecordName(), RecordValue: d.Token}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (h *Handler) addDomain(ctx context.Context, s tenantkit.Session, in addDomainInput) (domainOutput, error) {
	d, err := h.Domains.Add(ctx, s, string(in.TenantID), in.Domain, deref(in.Policy), deref(in.DefaultRole))
	if err != nil {
		return domainOutput{}, err
	}
	return toDomainOutput(d), nil
}

type domainIDInput struct {
	DomainID tenantkit.ID `json:"domainId"`
}

func (h *Handler) verifyDomain(ctx context.Context, s tenantkit.Session, in domainIDInput) (domainOutput, error) {
	d, err := h.Domains.Verify(ctx, s, string(in.DomainID))
	if err != nil {
		return domainOutput{}, err
	}
	return toDomainOutput(d), nil
}

func (h *Handler) removeDomain(ctx context.Context, s tenantkit.Session, in domainIDInput) (domainOutput, error) {
	d, err := h.Domains.Remove(ctx, s, string(in.DomainID))
	if err != nil {
		return domainOutput{}, err
	}
	return toDomainOutput(d), nil
}

type setDomainPolicyInput struct {
	DomainID    tenantkit.ID `json:"domainId"`
	Policy      string       `json:"policy"`
	DefaultRole *string      `json:"defaultRole"`
}

func (h *Handler) setDomainPolicy(ctx context.Context, s tenantkit.Session, in setDomainPolicyInput) (domainOutput, error) {
	d, err := h.Domains.SetPolicy(ctx, s, string(in.DomainID), in.Policy, deref(in.DefaultRole))
	if err != nil {
		return domainOutput{}, err
	}
	return toDomainOutput(d), nil
}

func (h *Handler) acceptDomainOffer(ctx context.Context, s tenantkit.Session, in tenantInput) (membershipOutput, error) {
	m, err := h.Domains.AcceptOffer(ctx, s, string(in.TenantID))
	if err != nil {
		return membershipOutput{}, err
	}
	return membershipOutput{m.TenantID, m.UserID, m.Role, nonNil(m.Permissions)}, nil
}

// signedUpRow is the part of an auth.users row the domain_join trigger delivers.
type signedUpRow struct {
	ID            tenantkit.ID `json:"id"`
	Email         *string      `json:"email"`
	EmailVerified *bool        `json:"email_verified"`
}

// domainJoin applies the domain rule to a user whose row was inserted, or whose email or its
// verification changed. The row is only a hint: the domain service reads the user afresh, so a
// late, repeated or out-of-order event decides on the current row and changes nothing twice.
func (h *Handler) domainJoin(ctx context.Context, ev *event) error {
	var row signedUpRow
	if err := json.Unmarshal(ev.Event.Data.New, &row); err != nil || row.ID == "" {
		return tenantkit.Errorf(tenantkit.Invalid, "event has no new user row")
	}
	zerolog.Ctx(ctx).UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("user_id", string(row.ID)) })
	if row.EmailVerified != nil && !*row.EmailVerified {
		return nil // not verified (yet): the update that verifies it brings another event
	}
	outcome, err := h.Domains.SignedUp(ctx, string(row.ID))
	if outcome != "" {
		zerolog.Ctx(ctx).UpdateContext(func(c zerolog.Context) zerolog.Context { return c.Str("domain_outcome", outcome) })
	}
	return err
}
