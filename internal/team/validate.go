package team

import (
	"net/mail"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

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

// NormalizeEmail returns the address in the one form in which invitations store it and accept
// compares it, or an invalid error. The rule, chosen so that no two different mailboxes share a
// form and no look-alike of an address takes its form:
//
//   - only ASCII whitespace (space, tab, CR, LF) is trimmed from the ends; any other space,
//     control or format character anywhere (no-break space, em space, zero-width space, …)
//     makes the address invalid;
//   - what remains must be one plain addr-spec: net/mail.ParseAddress gives exactly it back (no
//     display name, angle brackets, comment, group, quoted local part or second address), at
//     most 254 bytes, with a dot in the domain;
//   - ASCII letters are lowered, in the domain and in the local part (mail providers treat local
//     parts case-insensitively, and tenantkit has always stored them lowered); every other
//     character is kept as it is: no Unicode case folding or normalisation, so the Kelvin sign
//     (U+212A) or a long s (U+017F) never becomes "k" or "s".
func NormalizeEmail(email string) (string, error) {
	e := strings.Trim(email, asciiSpace)
	a, err := mail.ParseAddress(e)
	if err != nil || a.Name != "" || a.Address != e || len(e) > 254 || !utf8.ValidString(e) ||
		strings.ContainsFunc(e, func(r rune) bool { return r == ' ' || !unicode.IsPrint(r) }) ||
		!strings.Contains(e[strings.LastIndexByte(e, '@')+1:], ".") {
		return "", tenantkit.Errorf(tenantkit.Invalid, "email is not a valid address")
	}
	return lowerASCII(e), nil
}

// SameEmail reports whether a and b are the same address: both valid and byte-equal once
// normalised (NormalizeEmail). It is how accepting an invitation compares the signed-in user's
// email with the invitation's.
func SameEmail(a, b string) bool {
	na, errA := NormalizeEmail(a)
	nb, errB := NormalizeEmail(b)
	return errA == nil && errB == nil && na == nb
}

// asciiSpace is the whitespace NormalizeEmail trims.
const asciiSpace = " \t\r\n"

// lowerASCII lowers A to Z and leaves every other byte as it is.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
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
