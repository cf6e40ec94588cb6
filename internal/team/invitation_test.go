package team

import (
	"strings"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit"
)

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"kim1@example.com", "kim1@example.com"},
		{"  Kim1@Example.COM\t\r\n", "kim1@example.com"},
		{"bob+tag@sub.example.co.uk", "bob+tag@sub.example.co.uk"},
		// Letters outside ASCII are kept as they are, never folded into ASCII ones.
		{"\u212Aim1@example.com", "\u212Aim1@example.com"}, // Kelvin sign
		{"\u017Fam@example.com", "\u017Fam@example.com"},   // long s
		{"\u0130nan@example.com", "\u0130nan@example.com"}, // capital I with dot
		{"JOS\u00C9@example.com", "jos\u00C9@example.com"},
		{"jose\u0301@example.com", "jose\u0301@example.com"}, // decomposed é stays decomposed
	} {
		if got, err := NormalizeEmail(c.in); err != nil || got != c.want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{
		"kim1@example.com\u00A0",  // trailing no-break space
		"\u2003kim1@example.com",  // leading em space
		"\u3000kim1@example.com",  // ideographic space
		"ki\u200Bm1@example.com",  // zero-width space
		"\uFEFFkim1@example.com",  // byte order mark
		"kim1@example.com\u2028",  // line separator
		"kim1@exam\u00ADple.com",  // soft hyphen
		"kim1@example.com\x00",    // NUL
		"kim1@example.com\v",      // vertical tab: not among the trimmed ASCII whitespace
		"Kim <kim1@example.com>",  // display name
		"<kim1@example.com>",      // angle brackets
		"kim1@example.com (Kim)",  // comment
		`"kim1"@example.com`,      // quoted local part
		"team: kim1@example.com;", // group
		"kim1@example.com, eve@example.com",
		"kim1@example.com\r\nBcc: eve@example.com",
		"kim1\uFF20example.com", // fullwidth @
		"kim1@localhost",
		"",
		strings.Repeat("a", 250) + "@x.io",
	} {
		if got, err := NormalizeEmail(in); tenantkit.ErrorCode(err) != tenantkit.Invalid {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want invalid", in, got, err)
		}
	}
}

// TestAcceptDecision is the whole rule of Accept: who may accept an invitation, and in what order
// the refusals come.
func TestAcceptDecision(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	const uid = "11111111-1111-4111-8111-111111111111"
	pending := Invitation{ID: "i", TenantID: "t", Email: "kim1@example.com", Role: tenantkit.Admin, Status: "pending", ExpiresAt: now.Add(time.Hour)}
	kim := Invitee{Known: true, Email: "kim1@example.com", EmailVerified: true}
	with := func(f func(*Invitation)) Invitation { inv := pending; f(&inv); return inv }
	as := func(email string, verified bool) Invitee {
		return Invitee{Known: true, Email: email, EmailVerified: verified}
	}
	for _, c := range []struct {
		name            string
		inv             Invitation
		found           bool
		who             Invitee
		requireVerified bool
		done            bool
		code            string
	}{
		{"the invitee", pending, true, kim, true, false, ""},
		{"the invitee, email in another ASCII case", pending, true, as("KIM1@Example.com", true), true, false, ""},
		{"the invitee, ASCII whitespace around the email", pending, true, as(" kim1@example.com\t", true), true, false, ""},
		{"an unverified invitee", pending, true, as("kim1@example.com", false), true, false, EmailUnverified},
		{"an unverified invitee, verification not required", pending, true, as("kim1@example.com", false), false, false, ""},
		{"a Kelvin-sign look-alike", pending, true, as("\u212Aim1@example.com", true), true, false, InvitationEmailMismatch},
		{"a trailing no-break space", pending, true, as("kim1@example.com\u00A0", true), true, false, InvitationEmailMismatch},
		{"a leading em space", pending, true, as("\u2003kim1@example.com", true), true, false, InvitationEmailMismatch},
		{"a long-s look-alike", with(func(i *Invitation) { i.Email = "sam@example.com" }), true, as("\u017Fam@example.com", true), true, false, InvitationEmailMismatch},
		{"a display-name form of the address", pending, true, as("Kim <kim1@example.com>", true), true, false, InvitationEmailMismatch},
		{"another address", pending, true, as("eve@example.com", true), true, false, InvitationEmailMismatch},
		{"a user without an email", pending, true, as("", true), true, false, InvitationEmailMismatch},
		{"an unverified look-alike is a mismatch first", pending, true, as("\u212Aim1@example.com", false), true, false, InvitationEmailMismatch},
		{"a caller the auth table does not know", pending, true, Invitee{}, true, false, tenantkit.Unauthenticated},
		{"no such invitation", Invitation{}, false, kim, true, false, InvitationNotFound},
		{"accepted by the caller: done", with(func(i *Invitation) { i.Status, i.AcceptedBy = "accepted", uid }), true, kim, true, true, ""},
		{"accepted by someone else", with(func(i *Invitation) { i.Status, i.AcceptedBy = "accepted", "other" }), true, kim, true, false, InvitationUsed},
		{"revoked", with(func(i *Invitation) { i.Status = "revoked" }), true, kim, true, false, InvitationRevoked},
		{"expired by status", with(func(i *Invitation) { i.Status = "expired" }), true, kim, true, false, InvitationExpired},
		{"expired by time", with(func(i *Invitation) { i.ExpiresAt = now }), true, kim, true, false, InvitationExpired},
	} {
		t.Run(c.name, func(t *testing.T) {
			done, err := acceptDecision(c.inv, c.found, c.who, uid, c.requireVerified, now)
			if code := tenantkit.ErrorCode(err); done != c.done || (err == nil) != (c.code == "") || (err != nil && code != c.code) {
				t.Errorf("done %v, error %q (%v); want done %v, code %q", done, code, err, c.done, c.code)
			}
			if err != nil && tenantkit.ErrorMessage(err) == "" {
				t.Error("error without a message")
			}
		})
	}
}

func TestSendLimits(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 1, 14, 30, 0, 0, time.UTC)
	// n sends, newest first, one every `every`, the newest at `at`
	sends := func(n int, every time.Duration) []time.Time {
		out := make([]time.Time, n)
		for i := range out {
			out[i] = at.Add(-time.Duration(i) * every)
		}
		return out
	}
	l := SendLimits{PerTenant: 3, TenantWindow: time.Hour, PerInvitation: 2, InvitationWindow: 24 * time.Hour}

	if err := l.Allow(SendHistory{Tenant: sends(3, time.Minute)}); err != nil {
		t.Errorf("the third send of three allowed: %v", err)
	}
	if err := l.Allow(SendHistory{Tenant: sends(3, time.Minute), Invitation: sends(2, time.Minute)}); err != nil {
		t.Errorf("the second resend of two allowed: %v", err)
	}

	// The fourth send in the hour (the new one at 14:30, the others at 14:29, 14:28, 14:27): the
	// next may go once 14:27 leaves the window, at 15:27.
	err := l.Allow(SendHistory{Tenant: sends(4, time.Minute)})
	if tenantkit.ErrorCode(err) != RateLimited || !strings.Contains(tenantkit.ErrorMessage(err), "try again after 15:27 UTC on 1 March 2025") {
		t.Errorf("fourth send: %v", err)
	}
	// Rounded up to the minute, never before the real time: 13:59:59.5 leaves at 14:59:59.5.
	h := SendHistory{Tenant: []time.Time{at, at, at.Add(-10 * time.Second), at.Add(-30*time.Minute - 500*time.Millisecond)}}
	if err := l.Allow(h); !strings.Contains(tenantkit.ErrorMessage(err), "try again after 15:00 UTC") {
		t.Errorf("rounding: %v", err)
	}

	// The third resend within a day (14:30, 14:29, 14:28): the next may go at 14:28 tomorrow.
	err = l.Allow(SendHistory{Tenant: sends(1, time.Minute), Invitation: sends(3, time.Minute)})
	if tenantkit.ErrorCode(err) != RateLimited || !strings.Contains(tenantkit.ErrorMessage(err), "resent 2 times within 24 hours") ||
		!strings.Contains(tenantkit.ErrorMessage(err), "try again after 14:28 UTC on 2 March 2025") {
		t.Errorf("third resend: %v", err)
	}

	// Zero limits are the documented defaults.
	d := SendLimits{}.WithDefaults()
	if d.PerTenant != 50 || d.TenantWindow != time.Hour || d.PerInvitation != 5 || d.InvitationWindow != 24*time.Hour {
		t.Errorf("defaults: %+v", d)
	}
	if err := (SendLimits{}).Allow(SendHistory{Tenant: sends(50, time.Second)}); err != nil {
		t.Errorf("the 50th send of the hour: %v", err)
	}
	if err := (SendLimits{}).Allow(SendHistory{Tenant: sends(51, time.Second)}); tenantkit.ErrorCode(err) != RateLimited {
		t.Errorf("the 51st send of the hour: %v", err)
	}
}
