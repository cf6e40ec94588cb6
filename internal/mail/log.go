package mail

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
)

// LogSender is the development mode (SMTP_URL unset): instead of sending, it writes each message
// as one info-level line to Log, with the fields to, subject, id, text and html (whether an HTML
// part was given), so that a developer can follow an invitation link from the log. With Console
// set, the text goes there instead, as plain lines, and the log line leaves it out.
//
// Send checks the message exactly as the SMTP sender does, so a header injection or a malformed
// address fails in development too (Invalid); otherwise it returns nil.
type LogSender struct {
	Log zerolog.Logger
	// Console, when set (tenantkit dev, or console logs), receives each message as plain text after
	// the log line, so that its links stand on lines of their own, ready to click or copy, instead
	// of inside an escaped string of the log line.
	Console io.Writer
}

// consoleMu keeps the lines of two messages written at once from interleaving.
var consoleMu sync.Mutex

// Send implements Sender.
func (s LogSender) Send(_ context.Context, m tenantkit.Email) error {
	to, id, err := check(m)
	if err != nil {
		return err
	}
	ev := s.Log.Info().
		Str("to", to.Address).
		Str("subject", m.Subject).
		Str("id", id)
	if s.Console == nil {
		ev = ev.Str("text", m.Text)
	}
	ev.Bool("html", m.HTML != "").
		Msg("email not sent, written to the log (SMTP_URL is unset)")
	if s.Console != nil {
		consoleMu.Lock()
		defer consoleMu.Unlock()
		fmt.Fprintf(s.Console, "\n----- email to %s: %s -----\n%s\n-----\n\n", to.Address, m.Subject, strings.TrimRight(m.Text, "\n"))
	}
	return nil
}
