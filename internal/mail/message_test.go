package mail

import (
	"math/rand/v2"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/mail/mailtest"
)

// TestBuildRoundTrip builds messages from generated subjects and bodies and checks that a reader
// gets them back exactly, and that the wire form keeps to 7 bits and 78-character lines.
func TestBuildRoundTrip(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>32))
	from := &mail.Address{Name: "Tenantkit", Address: "tenantkit@example.com"}
	to := &mail.Address{Name: "Zoë Ünal", Address: "zoe@example.com"}
	for i := range 500 {
		m := tenantkit.Email{ID: "evt-1", Subject: randomText(rng, 120, false), Text: randomText(rng, 600, true)}
		if rng.IntN(2) == 0 {
			m.HTML = "<p>" + randomText(rng, 600, true) + "</p>"
		}
		data := build(from, to, "evt-1", m, time.Now())
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d, case %d, subject %q: "+format+"\n%s", append([]any{seed, i, m.Subject}, append(args, data)...)...)
		}
		for line := range strings.SplitSeq(string(data), "\r\n") {
			// Only a plain subject's single word too long for any line may exceed the limit.
			unbreakable := !strings.Contains(line, "=?utf-8?q?") && !strings.Contains(strings.Trim(strings.TrimPrefix(line, "Subject:"), " "), " ")
			if len(line) > maxLine && !unbreakable {
				fail("line longer than %d: %q", maxLine, line)
			}
			if strings.Contains(line, "=?utf-8?q?") && len(line) > 76 && !strings.HasPrefix(line, "Subject: ") {
				fail("encoded-word line longer than 76: %q", line)
			}
			if strings.Contains(line, "\n") || strings.Contains(line, "\r") {
				fail("bare CR or LF in %q", line)
			}
			if strings.TrimSpace(line) == "" && line != "" {
				fail("whitespace-only line %q", line)
			}
		}
		for _, c := range data {
			if c >= 0x80 {
				fail("non-ASCII byte %#x", c)
			}
		}
		if got := rawSubject(t, data); got != m.Subject {
			fail("subject unfolds and decodes to %q", got)
		}
		d, err := mailtest.Message{Data: data}.Decode()
		if err != nil {
			fail("decode: %v", err)
		}
		if d.Text != m.Text || d.HTML != m.HTML {
			fail("bodies decode to %q and %q, want %q and %q", d.Text, d.HTML, m.Text, m.HTML)
		}
	}
}

// rawSubject unfolds the Subject header as RFC 5322 says (delete each CRLF before whitespace;
// net/mail collapses the whitespace instead) and decodes its encoded words.
func rawSubject(t *testing.T, data []byte) string {
	head, _, _ := strings.Cut(string(data), "\r\n\r\n")
	head = strings.ReplaceAll(head, "\r\n ", " ")
	for line := range strings.SplitSeq(head, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Subject: "); ok {
			if strings.HasPrefix(v, "=?") {
				s, err := new(mime.WordDecoder).DecodeHeader(v)
				if err != nil {
					t.Fatalf("decode subject %q: %v", v, err)
				}
				return s
			}
			return v
		}
	}
	t.Fatal("no Subject header")
	return ""
}

// randomText returns up to n runes mixing words, runs of spaces, long words, non-ASCII letters,
// emoji, "=?" and characters that quoted-printable and Q encoding must escape; with lines, it
// also has line breaks, lines starting with dots and trailing spaces.
func randomText(rng *rand.Rand, n int, lines bool) string {
	pieces := []string{"word", "invitation", " ", " ", "  ", "Grüße", "Zürich", "日本語", "🎉", "=", "=?", "?=", "_", "?", "é", "\t",
		"https://app.example.com/invitations/accept?token=a=b&c=d", strings.Repeat("x", 30), "\"quoted\"", "<b>"}
	if lines {
		pieces = append(pieces, "\n", "\n.", "\n..", "\nFrom ", " \n", "\n\n", strings.Repeat("long line ", 12))
	}
	var b strings.Builder
	for target := rng.IntN(n + 1); b.Len() < target; {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

func TestFold(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"",
		"short",
		strings.Repeat("word ", 40),
		"a  b" + strings.Repeat(" spaced  out", 20),
		strings.Repeat("y", 120) + " tail",
		" leading and trailing " + strings.Repeat("z ", 50),
	} {
		f := fold(s, len("Subject: "))
		if got := strings.ReplaceAll(f, "\r\n", ""); got != s {
			t.Errorf("fold(%q) unfolds to %q", s, got)
		}
		for i, line := range strings.Split(f, "\r\n") {
			if i > 0 && strings.TrimSpace(line) == "" {
				t.Errorf("fold(%q) has a whitespace-only line", s)
			}
			width := len(line)
			if i == 0 {
				width += len("Subject: ")
			}
			if width > maxLine && strings.Contains(strings.TrimSpace(line), " ") {
				t.Errorf("fold(%q): line %q is too long and could have been folded", s, line)
			}
		}
	}
}
