package team

import (
	"net/mail"
	"regexp"
	"strings"

	"github.com/google/uuid"

	"github.com/tenantkit/tenantkit"
)

var slugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

// reservedSlugs would collide with the platform's own host names and routes.
var reservedSlugs = map[string]bool{
	"www": true, "api": true, "app": true, "admin": true, "auth": true, "billing": true, "dashboard": true,
	"docs": true, "help": true, "mail": true, "static": true, "status": true, "support": true, "graphql": true,
	"hasura": true, "console": true, "login": true, "logout": true, "signup": true, "settings": true,
	"system": true, "root": true, "tenantkit": true, "assets": true, "cdn": true, "blog": true, "dev": true,
	"staging": true, "test": true, "webhooks": true, "actions": true, "events": true, "metrics": true,
	"invitations": true, "account": true, "security": true, "null": true, "undefined": true,
}

// ValidateSlug checks a tenant slug: a DNS label of 3 to 63 lowercase letters, digits and inner
// hyphens, not reserved. The caller's input is not rewritten: "Acme" is refused, not lowered, so
// what the user typed is what the URL will be.
func ValidateSlug(slug string) error {
	switch {
	case !slugPattern.MatchString(slug):
		return tenantkit.Errorf(tenantkit.Invalid, "slug must be 3 to 63 lowercase letters, digits or inner hyphens")
	case strings.Contains(slug, "--"):
		return tenantkit.Errorf(tenantkit.Invalid, "slug must not contain consecutive hyphens")
	case reservedSlugs[slug]:
		return tenantkit.Errorf(tenantkit.Invalid, "slug %q is reserved", slug)
	}
	return nil
}

// ValidateName checks a tenant name: 1 to 200 characters after trimming, no control characters.
func ValidateName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len([]rune(name)) > 200 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", tenantkit.Errorf(tenantkit.Invalid, "name must be 1 to 200 printable characters")
	}
	return name, nil
}

// NormalizeEmail returns the address in its stored form (trimmed, lower case) or an invalid error.
// Only a bare address is accepted ("Bob <bob@x>" is refused): it is what the invitation targets.
func NormalizeEmail(email string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(email))
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" || len(e) > 254 || !strings.Contains(e[strings.LastIndexByte(e, '@')+1:], ".") {
		return "", tenantkit.Errorf(tenantkit.Invalid, "email is not a valid address")
	}
	return e, nil
}

// ValidateID checks that s is a UUID, naming the argument in the error.
func ValidateID(name, s string) error {
	if _, err := uuid.Parse(s); err != nil || len(s) != 36 {
		return tenantkit.Errorf(tenantkit.Invalid, "%s must be a UUID", name)
	}
	return nil
}

// ParseRole returns the role named by s, or an invalid error.
func ParseRole(s string) (tenantkit.Role, error) {
	r := tenantkit.Role(s)
	if !r.Valid() {
		return "", tenantkit.Errorf(tenantkit.Invalid, "role must be one of owner, admin, member, guest")
	}
	return r, nil
}
