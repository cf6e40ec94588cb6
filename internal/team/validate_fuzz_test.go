package team

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tenantkit/tenantkit"
)

// refSlug is ValidateSlug's documented rule written out by hand: 3 to 63 bytes of lowercase ASCII
// letters, digits and hyphens, no hyphen first, last or next to another, and not reserved.
func refSlug(s string) bool {
	if len(s) < 3 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return !reservedSlugs[s]
}

// invalid fails the test unless err is a tenantkit error with code invalid.
func invalid(t *testing.T, what string, err error) {
	t.Helper()
	if code := tenantkit.ErrorCode(err); code != tenantkit.Invalid {
		t.Errorf("%s: error code %q (%v), want invalid", what, code, err)
	}
}

// FuzzValidateSlug: a slug is accepted exactly when it has the documented shape; it is never
// rewritten, so an accepted slug is its own lower-case form.
func FuzzValidateSlug(f *testing.F) {
	f.Fuzz(func(t *testing.T, slug string) {
		err := ValidateSlug(slug)
		if want := refSlug(slug); (err == nil) != want {
			t.Fatalf("ValidateSlug(%q) = %v, the documented rule says accepted=%v", slug, err, want)
		}
		if err != nil {
			invalid(t, "ValidateSlug", err)
			return
		}
		if strings.ToLower(slug) != slug || !slugPattern.MatchString(slug) {
			t.Errorf("ValidateSlug accepted %q, which is not in the stored form", slug)
		}
	})
}

// FuzzValidateName: an accepted name comes back trimmed, 1 to 200 characters without control
// characters, and validating it again returns it unchanged.
func FuzzValidateName(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string) {
		got, err := ValidateName(name)
		if err != nil {
			invalid(t, "ValidateName", err)
			if got != "" {
				t.Errorf("ValidateName(%q) returned %q with an error", name, got)
			}
			return
		}
		if got != strings.TrimSpace(name) {
			t.Errorf("ValidateName(%q) = %q, want the input trimmed", name, got)
		}
		if n := utf8.RuneCountInString(got); n < 1 || n > 200 {
			t.Errorf("ValidateName(%q) = %q: %d characters", name, got, n)
		}
		if strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Errorf("ValidateName(%q) = %q: contains a control character", name, got)
		}
		if again, err := ValidateName(got); err != nil || again != got {
			t.Errorf("ValidateName is not idempotent: %q -> %q -> %q, %v", name, got, again, err)
		}
	})
}

// FuzzNormalizeEmail: an accepted address is a bare addr-spec in stored form (trimmed, lower case,
// at most 254 bytes, one @, a dot in the domain, nothing a display name or comment would need), and
// normalizing it again returns it unchanged.
func FuzzNormalizeEmail(f *testing.F) {
	f.Fuzz(func(t *testing.T, email string) {
		got, err := NormalizeEmail(email)
		if err != nil {
			invalid(t, "NormalizeEmail", err)
			if got != "" {
				t.Errorf("NormalizeEmail(%q) returned %q with an error", email, got)
			}
			return
		}
		if got != strings.ToLower(strings.TrimSpace(email)) {
			t.Errorf("NormalizeEmail(%q) = %q, want the input trimmed and lowered", email, got)
		}
		local, domain, _ := strings.Cut(got, "@")
		switch {
		case len(got) > 254:
			t.Errorf("NormalizeEmail(%q) = %q: longer than 254 bytes", email, got)
		case strings.Count(got, "@") != 1 || local == "" || domain == "":
			t.Errorf("NormalizeEmail(%q) = %q: want exactly one @ between a local part and a domain", email, got)
		case !strings.Contains(domain, "."):
			t.Errorf("NormalizeEmail(%q) = %q: the domain has no dot", email, got)
		case strings.ContainsFunc(got, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune(`"<>(),;\`, r) }):
			t.Errorf("NormalizeEmail(%q) = %q: contains a space, control or separator character", email, got)
		case strings.ToLower(got) != got:
			t.Errorf("NormalizeEmail(%q) = %q: not lower case", email, got)
		}
		if again, err := NormalizeEmail(got); err != nil || again != got {
			t.Errorf("NormalizeEmail is not idempotent: %q -> %q -> %q, %v", email, got, again, err)
		}
	})
}
