package team

import (
	"fmt"
	"time"

	"github.com/tenantkit/tenantkit"
)

// Invitation emails go out through the service's own mail server, to addresses the inviter types:
// without a bound, one tenant could use tenantkit to mail anyone, as often as it likes. Every
// email counts (a new invitation and each resend) against the tenant, and resends of one
// invitation also count against that invitation. The windows slide: a send leaves its window
// exactly one window after it was made.
const (
	DefaultSendsPerTenant       = 50
	DefaultTenantWindow         = time.Hour
	DefaultResendsPerInvitation = 5
	DefaultInvitationWindow     = 24 * time.Hour
)

// SendLimits bounds the invitation emails of a tenant. A zero field takes its default.
type SendLimits struct {
	PerTenant        int           // emails (invitations and resends) per tenant per TenantWindow (50)
	TenantWindow     time.Duration // 1 hour
	PerInvitation    int           // resends of one invitation per InvitationWindow (5)
	InvitationWindow time.Duration // 24 hours
}

// WithDefaults returns l with every zero field set to its default.
func (l SendLimits) WithDefaults() SendLimits {
	if l.PerTenant <= 0 {
		l.PerTenant = DefaultSendsPerTenant
	}
	if l.TenantWindow <= 0 {
		l.TenantWindow = DefaultTenantWindow
	}
	if l.PerInvitation <= 0 {
		l.PerInvitation = DefaultResendsPerInvitation
	}
	if l.InvitationWindow <= 0 {
		l.InvitationWindow = DefaultInvitationWindow
	}
	return l
}

// SendHistory is what the store reads after recording the send being made, in its transaction and
// under the tenant's send lock (so concurrent sends are counted one after another): the times of
// the tenant's sends within TenantWindow and of the invitation's resends within InvitationWindow,
// each newest first, the new send included, at most one more than its limit.
type SendHistory struct {
	Tenant     []time.Time
	Invitation []time.Time // empty for a new invitation
}

// Allow decides whether the send just recorded in h may go out. Errors: rate_limited, whose
// message says when to try again (the time the oldest send that fills the window leaves it,
// rounded up to the minute).
func (l SendLimits) Allow(h SendHistory) error {
	l = l.WithDefaults()
	if len(h.Tenant) > l.PerTenant {
		return tenantkit.Errorf(RateLimited, "this team has sent %d invitation emails within %s, the most allowed: try again after %s",
			l.PerTenant, window(l.TenantWindow), retryAt(h.Tenant[l.PerTenant].Add(l.TenantWindow)))
	}
	if len(h.Invitation) > l.PerInvitation {
		return tenantkit.Errorf(RateLimited, "this invitation was resent %d times within %s, the most allowed: try again after %s",
			l.PerInvitation, window(l.InvitationWindow), retryAt(h.Invitation[l.PerInvitation].Add(l.InvitationWindow)))
	}
	return nil
}

// retryAt formats t, rounded up to the minute, as "15:04 UTC on 2 January 2006".
func retryAt(t time.Time) string {
	if r := t.Truncate(time.Minute); r.Before(t) {
		t = r.Add(time.Minute)
	}
	return t.UTC().Format("15:04 MST on 2 January 2006")
}

// window formats a window length: "an hour", "24 hours", "30 minutes".
func window(d time.Duration) string {
	switch {
	case d == time.Hour:
		return "an hour"
	case d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.String()
}
