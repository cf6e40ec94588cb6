package team

import (
	"strings"
	"testing"
	"unicode"
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

// refEmailForm is NormalizeEmail's documented result written out by hand for an input it accepts:
// ASCII space, tab, CR and LF cut from both ends, then A to Z lowered, every other byte kept.
func refEmailForm(s string) string {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	out := make([]byte, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

// FuzzNormalizeEmail: an accepted address is a bare addr-spec in stored form (ASCII whitespace
// trimmed, ASCII letters lowered and nothing else changed, at most 254 bytes, one @, a dot in the
// domain, nothing a display name or comment would need, no space, control or format character of
// any script), and normalizing it again returns it unchanged.
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
		if want := refEmailForm(email); got != want {
			t.Errorf("NormalizeEmail(%q) = %q, want %q (ASCII whitespace trimmed, ASCII letters lowered, nothing else changed)", email, got, want)
		}
		local, domain, _ := strings.Cut(got, "@")
		switch {
		case len(got) > 254:
			t.Errorf("NormalizeEmail(%q) = %q: longer than 254 bytes", email, got)
		case !utf8.ValidString(got):
			t.Errorf("NormalizeEmail(%q) = %q: not UTF-8", email, got)
		case strings.Count(got, "@") != 1 || local == "" || domain == "":
			t.Errorf("NormalizeEmail(%q) = %q: want exactly one @ between a local part and a domain", email, got)
		case !strings.Contains(domain, "."):
			t.Errorf("NormalizeEmail(%q) = %q: the domain has no dot", email, got)
		case strings.ContainsFunc(got, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune(`"<>(),;\`, r) }):
			t.Errorf("NormalizeEmail(%q) = %q: contains a space, control or separator character", email, got)
		case strings.ContainsFunc(got, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }):
			t.Errorf("NormalizeEmail(%q) = %q: contains a Unicode space, control or format character", email, got)
		case strings.ContainsFunc(got, func(r rune) bool { return r >= 'A' && r <= 'Z' }):
			t.Errorf("NormalizeEmail(%q) = %q: an ASCII capital is left", email, got)
		}
		if again, err := NormalizeEmail(got); err != nil || again != got {
			t.Errorf("NormalizeEmail is not idempotent: %q -> %q -> %q, %v", email, got, again, err)
		}
	})
}

// lookAlikes returns variants of an ASCII address that a user could register elsewhere and that
// read, or case-fold, as the same address: each ASCII letter with a non-ASCII case variant (k and
// K: the Kelvin sign; s and S: the long s) replaced by it, and the address padded with Unicode
// spaces that are not ASCII whitespace.
func lookAlikes(addr string) []string {
	var out []string
	for i, r := range addr {
		// The members of r's case-folding orbit outside ASCII.
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f >= utf8.RuneSelf {
				out = append(out, addr[:i]+string(f)+addr[i+utf8.RuneLen(r):])
			}
		}
	}
	for _, pad := range []string{"\u00a0", "\u2003", "\u200b", "\u3000", "\u2028", "\ufeff"} {
		out = append(out, addr+pad, pad+addr)
	}
	return out
}

// FuzzSameEmail: SameEmail is the comparison accept uses. Two addresses are the same exactly when
// both normalise and the normalised forms are byte-equal; the forms differ from their inputs only
// in ASCII whitespace at the ends and ASCII case; normalising is idempotent; and no non-ASCII
// look-alike of an address (a Unicode case variant of one of its letters, a Unicode space around
// it) is ever the same as it.
func FuzzSameEmail(f *testing.F) {
	f.Fuzz(func(t *testing.T, a, b string) {
		na, errA := NormalizeEmail(a)
		nb, errB := NormalizeEmail(b)
		same := SameEmail(a, b)
		if want := errA == nil && errB == nil && na == nb; same != want {
			t.Fatalf("SameEmail(%q, %q) = %v; normalised %q (%v) and %q (%v)", a, b, same, na, errA, nb, errB)
		}
		if SameEmail(b, a) != same {
			t.Errorf("SameEmail(%q, %q) is not symmetric", a, b)
		}
		if same && refEmailForm(a) != refEmailForm(b) {
			t.Errorf("SameEmail(%q, %q): they differ in more than ASCII case and ASCII whitespace at the ends", a, b)
		}
		for _, in := range []string{a, b} {
			n, err := NormalizeEmail(in)
			if err != nil {
				if SameEmail(in, in) {
					t.Errorf("SameEmail(%q, itself) is true for an invalid address", in)
				}
				continue
			}
			if again, err := NormalizeEmail(n); err != nil || again != n {
				t.Errorf("NormalizeEmail is not idempotent: %q -> %q -> %q, %v", in, n, again, err)
			}
			if !SameEmail(in, n) {
				t.Errorf("%q is not the same as its own normalised form %q", in, n)
			}
			if strings.ContainsFunc(n, func(r rune) bool { return r >= utf8.RuneSelf }) {
				continue
			}
			for _, v := range lookAlikes(n) {
				if SameEmail(n, v) || SameEmail(in, v) {
					t.Errorf("the look-alike %q is the same address as %q", v, in)
				}
			}
		}
	})
}
