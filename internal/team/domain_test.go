package team

import (
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit"
)

func TestNormalizeDomain(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"acme.com": "acme.com", "  Acme.COM.\n": "acme.com", "eu.acme.co.uk": "eu.acme.co.uk",
		"xn--bcher-kva.example": "xn--bcher-kva.example", "a-b.c-d.io": "a-b.c-d.io", "acme.test": "acme.test",
	} {
		if got, err := NormalizeDomain(in); err != nil || got != want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "acme", "acme.", ".acme.com", "acme..com", "-acme.com", "acme-.com", "acme.com-", "ac me.com",
		"acme.com/path", "user@acme.com", "*.acme.com", "acme.123", "192.168.1.1", "bücher.de", "acme.c_m",
		strings.Repeat("a", 64) + ".com", strings.Repeat("abcdefghi.", 26) + "com",
		// public email providers and their subdomains
		"gmail.com", "GMAIL.COM", "outlook.com", "mail.yahoo.com", "proton.me", "eu.gmx.net",
	} {
		if got, err := NormalizeDomain(in); tenantkit.ErrorCode(err) != tenantkit.Invalid {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want invalid", in, got, err)
		}
	}
	if _, err := NormalizeDomain("notgmail.com"); err != nil {
		t.Errorf("a domain ending like a provider's: %v", err)
	}
}

func TestEmailDomain(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"kim@acme.com": "acme.com", "Kim@ACME.com": "acme.com", " kim@acme.com ": "acme.com", "kim@eu.acme.com": "eu.acme.com",
		"not an address": "", "": "",
	} {
		if got := EmailDomain(in); got != want {
			t.Errorf("EmailDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDomainPolicyAndRole(t *testing.T) {
	t.Parallel()
	if p, err := ParsePolicy(""); err != nil || p != PolicySuggest {
		t.Errorf("default policy %q, %v", p, err)
	}
	if _, err := ParsePolicy("auto"); tenantkit.ErrorCode(err) != tenantkit.Invalid {
		t.Errorf("unknown policy: %v", err)
	}
	if r, err := domainRole("", tenantkit.Admin); err != nil || r != tenantkit.Member {
		t.Errorf("default role %q, %v", r, err)
	}
	if _, err := domainRole("owner", tenantkit.Owner); tenantkit.ErrorCode(err) != tenantkit.Invalid {
		t.Errorf("owner as a domain's role: %v", err)
	}
	if _, err := domainRole("admin", tenantkit.Member); tenantkit.ErrorCode(err) != tenantkit.Forbidden {
		t.Errorf("a member letting people join as admins: %v", err)
	}
	tok, err := newChallenge()
	if err != nil || !strings.HasPrefix(tok, tokenPrefix) || len(tok) != len(tokenPrefix)+32 {
		t.Errorf("challenge %q, %v", tok, err)
	}
}
