package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantkit/tenantkit/internal/maintenance"
)

var _ maintenance.Store = (*DB)(nil)

// maintenanceLock is the advisory lock key of the maintenance job ("tkmaint").
const maintenanceLock int64 = 0x746b6d61696e74

// TryLockMaintenance implements maintenance.Store with a transaction-level advisory lock held for
// the whole run (holdXactLock), without waiting for it. The job's own statements run in other,
// short transactions.
func (db *DB) TryLockMaintenance(ctx context.Context) (func(), bool, error) {
	return db.holdXactLock(ctx, maintenanceLock, false)
}

// EnsureUsagePartitions implements maintenance.Store through tenantkit.usage_events_partition
// (00022), one month per transaction.
func (db *DB) EnsureUsagePartitions(ctx context.Context, months []time.Time) ([]string, error) {
	var created []string
	for _, m := range months {
		var made bool
		err := db.WithSystem(ctx, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT tenantkit.usage_events_partition($1::date)`, maintenance.Month(m).Format(time.DateOnly)).Scan(&made)
		})
		if err != nil {
			return created, err
		}
		if made {
			created = append(created, "usage_events_"+maintenance.Month(m).Format("200601"))
		}
	}
	return created, nil
}

// ensureCurrentUsagePartition creates the partition of the database clock's current UTC month,
// which recordUsage writes to.
func (db *DB) ensureCurrentUsagePartition(ctx context.Context) error {
	return db.WithSystem(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT tenantkit.usage_events_partition(date_trunc('month', now() AT TIME ZONE 'UTC')::date)`)
		return err
	})
}

// isNoPartition tells whether err is an insert that found no partition for its row.
func isNoPartition(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514" && pe.Routine == "ExecFindPartition"
}

// DropUsagePartitionsBefore implements maintenance.Store through
// tenantkit.usage_events_drop_before (00022): DETACH, then DROP, in one transaction. It drops
// nothing while an event of those months is not folded into billing_usage yet (those months get
// no new events, so the check holds until the drop).
func (db *DB) DropUsagePartitionsBefore(ctx context.Context, month time.Time) ([]string, error) {
	var dropped []string
	before := maintenance.Month(month).Format(time.DateOnly)
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		var unfolded int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM tenantkit.usage_events
			WHERE recorded_month < $1::date AND xact >= (SELECT watermark FROM tenantkit.usage_fold)`, before).Scan(&unfolded); err != nil {
			return err
		}
		if unfolded > 0 {
			return fmt.Errorf("%d usage event(s) recorded before %s are not folded into billing_usage yet (a transaction open since then holds the fold back): not dropped", unfolded, before)
		}
		rows, _ := tx.Query(ctx, `SELECT tenantkit.usage_events_drop_before($1::date)`, before)
		var err error
		dropped, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return dropped, err
}

// pruneSQL deletes at most $2 rows of each ledger that its maintenance.Rule lets go at $1: the
// ledger's table and the time it is kept from (a column or an expression of its columns). The
// rows are picked by ctid through the index that serves the condition where there is one, and
// the DELETE rechecks the condition. Built once, from these constants only.
var pruneSQL = func() map[maintenance.Ledger]string {
	m := map[maintenance.Ledger]string{}
	for ledger, r := range map[maintenance.Ledger]struct{ table, at string }{
		maintenance.StripeEvents:      {"stripe_events", "received_at"},
		maintenance.ProcessedEvents:   {"processed_events", "done_at"},
		maintenance.EmailOutbox:       {"email_outbox", "coalesce(sent_at, refused_at)"},
		maintenance.InvitationSends:   {"invitation_sends", "sent_at"},
		maintenance.StripeOutbox:      {"stripe_outbox", "done_at"},
		maintenance.UsageCuts:         {"usage_cuts", "cut"},
		maintenance.UsageBoundaryKeys: {"usage_boundary_keys", "claimed_at"},
	} {
		m[ledger] = `DELETE FROM tenantkit.` + r.table + ` WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM tenantkit.` + r.table + ` WHERE ` + r.at + ` < $1 LIMIT $2)) AND ` + r.at + ` < $1`
	}
	return m
}()

// PruneLedger implements maintenance.Store on the system path, one batch per transaction.
func (db *DB) PruneLedger(ctx context.Context, ledger maintenance.Ledger, cutoff time.Time, limit int) (int, error) {
	sql, ok := pruneSQL[ledger]
	if !ok {
		return 0, fmt.Errorf("prune: unknown ledger %q", ledger)
	}
	var n int64
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, sql, cutoff, limit)
		n = tag.RowsAffected()
		return err
	})
	return int(n), err
}

// TableSizes returns pg_total_relation_size of each named table, partitions included (for the
// benchmark and operators).
func (db *DB) TableSizes(ctx context.Context, tables []string) (map[string]int64, error) {
	sizes := map[string]int64{}
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			SELECT t, coalesce((SELECT sum(pg_total_relation_size(p.relid)) FROM pg_partition_tree(t::regclass) p),
			                   pg_total_relation_size(t::regclass))::bigint
			FROM unnest($1::text[]) t`, tables)
		var name string
		var size int64
		_, err := pgx.ForEachRow(rows, []any{&name, &size}, func() error {
			sizes[name] = size
			return nil
		})
		return err
	})
	return sizes, err
}

// FoldUsage implements maintenance.Store through tenantkit.fold_usage (00029), in a transaction of
// its own.
func (db *DB) FoldUsage(ctx context.Context) (int64, error) {
	var n int64
	err := db.WithSystem(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT tenantkit.fold_usage()`).Scan(&n)
	})
	return n, err
}

// partitionTries is how many times a usage batch that found no partition for its month creates
// it (or waits for a concurrent batch's) and is recorded again.
const partitionTries = 3
