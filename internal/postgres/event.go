package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit"
)

var _ tenantkit.EventLog = (*DB)(nil)

// ClaimEvent implements tenantkit.EventLog: a delivery claims an unfinished event whose lease is
// free; a finished event is AlreadyDone; a leased one is InProgress.
func (db *DB) ClaimEvent(ctx context.Context, id, trigger string, lease time.Duration) (tenantkit.Claim, error) {
	claim := tenantkit.Claimed
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO tenantkit.processed_events AS e (id, trigger_name, claimed_until)
			VALUES ($1, $2, now() + make_interval(secs => $3))
			ON CONFLICT (id) DO UPDATE SET claimed_until = EXCLUDED.claimed_until
			WHERE e.done_at IS NULL AND (e.claimed_until IS NULL OR e.claimed_until < now())`,
			id, trigger, lease.Seconds())
		if err != nil || tag.RowsAffected() == 1 {
			return err
		}
		var done bool
		if err := tx.QueryRow(ctx, `SELECT done_at IS NOT NULL FROM tenantkit.processed_events WHERE id = $1`, id).Scan(&done); err != nil {
			return err
		}
		claim = tenantkit.InProgress
		if done {
			claim = tenantkit.AlreadyDone
		}
		return nil
	})
	return claim, err
}

// FinishEvent implements tenantkit.EventLog.
func (db *DB) FinishEvent(ctx context.Context, id string) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE tenantkit.processed_events SET done_at = now(), claimed_until = NULL WHERE id = $1`, id)
		return err
	})
}

// ReleaseEvent implements tenantkit.EventLog: the claim goes away, so a delivery that failed
// leaves nothing behind and the next one claims afresh.
func (db *DB) ReleaseEvent(ctx context.Context, id string) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM tenantkit.processed_events WHERE id = $1 AND done_at IS NULL`, id)
		return err
	})
}
