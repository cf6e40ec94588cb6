// Package emailoutbox sends the emails other transactions queued (billing emails written with the
// Stripe event that caused them): at least once, never holding a transaction across SMTP, each
// email claimed for a lease so that two senders do not send it at the same time.
package emailoutbox

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
)

// Email is one queued email.
type Email struct {
	ID, To, Subject, Body string
	Attempts              int
}

// Store holds the queue.
type Store interface {
	// ClaimEmails leases up to limit due emails for lease and returns them.
	ClaimEmails(ctx context.Context, limit int, lease time.Duration) ([]Email, error)
	// EmailSent marks an email sent.
	EmailSent(ctx context.Context, id string) error
	// EmailFailed makes an email due again after retryIn, keeping reason.
	EmailFailed(ctx context.Context, id string, retryIn time.Duration, reason string) error
	// EmailRefused marks an email never to be sent again: the mail server refused it for good.
	EmailRefused(ctx context.Context, id, reason string) error
}

// Sender drains the queue.
type Sender struct {
	Store    Store
	Mailer   tenantkit.Mailer
	Log      zerolog.Logger
	Interval time.Duration // default 2 s
}

// Flush sends what is due and returns how many were sent. A failed send is retried later with
// growing back-off (up to an hour), the same Message-ID each time; one the mail server refused for
// good (an Invalid error from the Mailer) is marked refused and never retried.
func (s *Sender) Flush(ctx context.Context) (int, error) {
	emails, err := s.Store.ClaimEmails(ctx, 50, 2*time.Minute)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, e := range emails {
		err := s.Mailer.Send(ctx, tenantkit.Email{ID: "outbox-" + e.ID, To: e.To, Subject: e.Subject, Text: e.Body})
		if err != nil && tenantkit.ErrorCode(err) == tenantkit.Invalid {
			// A 5xx about this message or recipient (internal/mail): retrying will not help.
			s.Log.Warn().Err(err).Str("email_id", e.ID).Msg("outbox email refused by the mail server; not retried")
			if ferr := s.Store.EmailRefused(ctx, e.ID, err.Error()); ferr != nil {
				return sent, ferr
			}
			continue
		}
		if err != nil {
			backoff := min(time.Duration(e.Attempts*e.Attempts)*30*time.Second, time.Hour)
			s.Log.Warn().Err(err).Str("email_id", e.ID).Int("attempts", e.Attempts).Msg("outbox email failed; will retry")
			if ferr := s.Store.EmailFailed(ctx, e.ID, backoff, err.Error()); ferr != nil {
				return sent, ferr
			}
			continue
		}
		if err := s.Store.EmailSent(ctx, e.ID); err != nil {
			return sent, err
		}
		sent++
	}
	return sent, nil
}

// Run flushes every Interval until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := s.Flush(ctx); err != nil && ctx.Err() == nil {
				s.Log.Warn().Err(err).Msg("outbox flush failed")
			}
		}
	}
}
