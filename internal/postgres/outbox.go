package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/emailoutbox"
)

var _ emailoutbox.Store = (*DB)(nil)

// ClaimEmails implements emailoutbox.Store: due emails are leased (next_at moves past the lease) in one
// statement; SKIP LOCKED keeps concurrent senders apart.
func (db *DB) ClaimEmails(ctx context.Context, limit int, lease time.Duration) ([]emailoutbox.Email, error) {
	var emails []emailoutbox.Email
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			UPDATE tenantkit.email_outbox SET next_at = now() + make_interval(secs => $2), attempts = attempts + 1
			WHERE id IN (SELECT id FROM tenantkit.email_outbox WHERE sent_at IS NULL AND refused_at IS NULL AND next_at <= now()
			             ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED)
			RETURNING id::text, to_email, subject, body, attempts`, limit, lease.Seconds())
		var err error
		emails, err = pgx.CollectRows(rows, pgx.RowToStructByPos[emailoutbox.Email])
		return err
	})
	return emails, err
}

// EmailSent implements emailoutbox.Store.
func (db *DB) EmailSent(ctx context.Context, id string) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE tenantkit.email_outbox SET sent_at = now() WHERE id = $1`, id)
		return err
	})
}

// EmailRefused implements emailoutbox.Store.
func (db *DB) EmailRefused(ctx context.Context, id, reason string) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE tenantkit.email_outbox SET refused_at = now(), last_error = $2 WHERE id = $1`, id, reason)
		return err
	})
}

// EmailFailed implements emailoutbox.Store.
func (db *DB) EmailFailed(ctx context.Context, id string, retryIn time.Duration, reason string) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE tenantkit.email_outbox SET next_at = now() + make_interval(secs => $2), last_error = $3 WHERE id = $1`,
			id, retryIn.Seconds(), reason)
		return err
	})
}
