package mail

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tenantkit/tenantkit"
)

// check validates m before anything is sent or logged and returns the parsed recipient and the
// message ID to use (a random one when m.ID is empty). Line breaks in To or Subject are refused
// outright rather than stripped: they are a header injection attempt or a bug, and either way the
// caller must know.
func check(m tenantkit.Email) (to *mail.Address, id string, err error) {
	if strings.ContainsAny(m.To, "\r\n") {
		return nil, "", tenantkit.Errorf(tenantkit.Invalid, "the recipient address must not contain line breaks")
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return nil, "", tenantkit.Errorf(tenantkit.Invalid, "the email subject must not contain line breaks")
	}
	to, err = mail.ParseAddress(m.To)
	if err != nil {
		return nil, "", tenantkit.Errorf(tenantkit.Invalid, "%q is not an email address", m.To)
	}
	id = m.ID
	if id == "" {
		id = strings.ToLower(rand.Text())
	}
	if !validID(id) {
		return nil, "", tenantkit.Errorf(tenantkit.Invalid, "the email ID %q is not usable in a Message-ID (use letters, digits, dots and RFC 5322 atom characters)", m.ID)
	}
	return to, id, nil
}

// validID reports whether id is an RFC 5322 dot-atom-text, the form of a Message-ID's left part.
func validID(id string) bool {
	if id == "" || len(id) > 200 || id[0] == '.' || id[len(id)-1] == '.' || strings.Contains(id, "..") {
		return false
	}
	for _, c := range []byte(id) {
		isAlnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !isAlnum && !strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", rune(c)) {
			return false
		}
	}
	return true
}

// build renders m as an RFC 5322 message with CRLF line endings. Every byte of the result is
// 7-bit: non-ASCII subjects and names are RFC 2047 encoded, bodies are quoted-printable, so the
// message passes any relay regardless of 8BITMIME support.
func build(from, to *mail.Address, id string, m tenantkit.Email, now time.Time) []byte {
	var b bytes.Buffer
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("From", from.String())
	header("To", to.String())
	header("Subject", encodeSubject(m.Subject))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+id+"@"+domain(from.Address)+">")
	header("MIME-Version", "1.0")

	if m.HTML == "" {
		header("Content-Type", "text/plain; charset=utf-8")
		header("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		writeQP(&b, m.Text)
		return b.Bytes()
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, part := range []struct{ contentType, content string }{
		{"text/plain; charset=utf-8", m.Text}, // least preferred first (RFC 2046 5.1.4)
		{"text/html; charset=utf-8", m.HTML},
	} {
		// CreatePart only fails when writing to body fails, which a bytes.Buffer does not.
		w, _ := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.contentType},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		writeQP(w, part.content)
	}
	mw.Close()
	// The boundary is 60 hex digits: fold to keep the line within maxLine.
	header("Content-Type", "multipart/alternative;\r\n boundary="+mw.Boundary())
	b.WriteString("\r\n")
	b.Write(body.Bytes())
	return b.Bytes()
}

// writeQP writes s quoted-printable encoded; its line breaks become CRLF.
func writeQP(w interface{ Write([]byte) (int, error) }, s string) {
	qp := quotedprintable.NewWriter(w)
	qp.Write([]byte(s))
	qp.Close()
}

// maxLine is RFC 5322's recommended limit on a header line, CRLF excluded.
const maxLine = 78

// encodeSubject returns the Subject header's value, folded so that no line exceeds maxLine.
// Printable ASCII goes as is, folded at spaces. Anything else becomes RFC 2047 Q-encoded words
// of whole UTF-8 sequences, one per line, each line within RFC 2047's 76 characters; the
// whitespace between encoded words is not part of the decoded text. "=?" also forces encoding,
// lest a reader decode it.
//
// The standard library's mime.QEncoding does not serve here: it leaves "=?" unencoded, and it
// separates the encoded words of a long value by single spaces on one line (each word up to 75
// characters), so the first line, after "Subject: ", exceeds 78 and nothing is folded.
func encodeSubject(s string) string {
	indent := len("Subject: ")
	if !needsEncoding(s) {
		// Plain text when it folds within the line limit; a word too long to fold (a URL, say)
		// goes into encoded words instead, which can be split anywhere.
		if f := fold(s, indent); fits(f, indent) {
			return f
		}
	}
	const prefix, suffix = "=?utf-8?q?", "?="
	var b, word strings.Builder
	limit := maxLine - indent // the first word shares its line with the header name
	flush := func() {
		if b.Len() > 0 {
			b.WriteString("\r\n ")
		}
		b.WriteString(prefix + word.String() + suffix)
		word.Reset()
		limit = 76 - 1 // a continuation line starts with a space
	}
	for i := 0; i < len(s); {
		_, n := utf8.DecodeRuneInString(s[i:])
		enc := qEncode(s[i : i+n])
		if word.Len() > 0 && len(prefix)+word.Len()+len(enc)+len(suffix) > limit {
			flush()
		}
		word.WriteString(enc)
		i += n
	}
	flush()
	return b.String()
}

// fits reports whether every line of a folded header value, the first after indent characters,
// is within the line limit and carries text.
func fits(folded string, indent int) bool {
	for i, line := range strings.Split(folded, "\r\n") {
		if i == 0 {
			line = strings.Repeat(" ", indent) + line
		}
		if len(line) > maxLine || (i > 0 && strings.TrimSpace(line) == "") {
			return false // too long, or a whitespace-only line (RFC 5322 forbids those)
		}
	}
	return true
}

// needsEncoding reports whether s cannot go in a header as is.
func needsEncoding(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c >= 0x7f {
			return true
		}
	}
	return strings.Contains(s, "=?")
}

// qEncode encodes s for an RFC 2047 Q encoded word in a Subject (RFC 2047 5(3)).
func qEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("!*+-/", c) >= 0:
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('_')
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

// fold turns spaces of s into CRLF+space where a line, starting after indent characters, would
// exceed maxLine. Unfolding (deleting the CRLFs) gives back s exactly. A word longer than a line
// stays whole.
func fold(s string, indent int) string {
	var b strings.Builder
	lineLen, lineHasText := indent, false
	for i, w := range strings.Split(s, " ") {
		if i > 0 {
			if w != "" && lineHasText && lineLen+1+len(w) > maxLine {
				b.WriteString("\r\n")
				lineLen, lineHasText = 0, false
			}
			b.WriteByte(' ')
			lineLen++
		}
		b.WriteString(w)
		lineLen += len(w)
		lineHasText = lineHasText || w != ""
	}
	return b.String()
}

// domain returns the part of addr after its last @.
func domain(addr string) string {
	return addr[strings.LastIndexByte(addr, '@')+1:]
}
