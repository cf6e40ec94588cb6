package tenantkit

import "context"

// Email is one message to send. ID is stable across retries of the same logical message (it
// becomes the Message-ID), so a duplicate delivery is recognisable downstream.
type Email struct {
	ID      string
	To      string
	Subject string
	Text    string
	HTML    string
}

// Mailer sends email. Send returns nil only once the message has been accepted for delivery.
// Errors: unavailable (transient: retry later), invalid (permanent: the recipient was refused).
type Mailer interface {
	Send(ctx context.Context, e Email) error
}
