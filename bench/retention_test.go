package bench_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/maintenance"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// retentionTables are the tables the maintenance job bounds, measured with their partitions,
// indexes and TOAST.
var retentionTables = []string{"tenantkit.usage_events", "tenantkit.usage_cuts", "tenantkit.stripe_events",
	"tenantkit.processed_events", "tenantkit.email_outbox", "tenantkit.invitation_sends", "tenantkit.stripe_outbox"}

// BenchmarkRetention simulates 18 months of traffic on a controlled clock: each month the job
// runs at its start (creating partitions ahead), a month of usage events and ledger rows is
// written with that month's times, the job runs again at its end (dropping and pruning), and a
// plain VACUUM of the pruned tables stands in for autovacuum. It reports the tables' sizes per
// month: they stop growing once the retention windows are full (13 months of usage events, 400
// days of sent emails, days to weeks for the other ledgers). The figure is the size after month 18
// against the size after month 13 (USAGE_RETENTION_MONTHS=13).
func BenchmarkRetention(b *testing.B) {
	ctx := b.Context()
	url := newDB(b)
	db, err := postgres.Open(ctx, url, "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)
	admin, err := pgxpool.New(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(admin.Close)
	exec := func(sql string, args ...any) {
		if _, err := admin.Exec(ctx, sql, args...); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}
	const (
		months           = 18
		tenants          = 100
		eventsPerMonth   = 30_000
		ledgerRowsPerDay = 100
	)
	exec(`INSERT INTO tenants (id, slug, name) SELECT gen_random_uuid(), 'bench-' || g, 'Bench ' || g FROM generate_series(1, $1) g`, tenants)
	clock := time.Time{}
	job := &maintenance.Service{Store: db, RetentionMonths: maintenance.DefaultRetentionMonths, Now: func() time.Time { return clock }}
	run := func() {
		r, err := job.Run(ctx)
		if err != nil || !r.Ran {
			b.Fatalf("%s: job: %+v, %v", clock.Format(time.DateOnly), r, err)
		}
	}
	total := func(s map[string]int64) (sum int64) {
		for _, v := range s {
			sum += v
		}
		return sum
	}
	start := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	var usage, ledgers [months + 1]float64
	for b.Loop() {
		for m := 1; m <= months; m++ {
			month := start.AddDate(0, m-1, 0)
			end := month.AddDate(0, 1, 0)
			clock = month.Add(time.Minute)
			run()
			// A month of usage: events spread over the month and the tenants, recorded as they occur,
			// marked for the usage fold as recordUsage marks counter events (the job folds them).
			exec(`INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at, recorded_at, recorded_month, xact)
				SELECT t.id, 'ev-' || $2::text || '-' || g, 'api_calls', 1, at, at, $2::date, pg_current_xact_id()
				FROM generate_series(1, $1) g
				CROSS JOIN LATERAL (SELECT $2::timestamptz + (g::float8 / $1) * ($3::timestamptz - $2::timestamptz) AS at) a
				JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM tenants) t ON t.n = g % $4`,
				eventsPerMonth, month, end, tenants)
			// Ledger rows, ledgerRowsPerDay per day each, with their times in the month.
			exec(`INSERT INTO tenantkit.stripe_events (id, type, created, received_at)
				SELECT 'evt_' || $2::text || '_' || g, 'invoice.paid', at, at
				FROM generate_series(1, $1) g, LATERAL (SELECT $2::timestamptz + (g::float8 / $1) * ($3::timestamptz - $2::timestamptz) AS at) a`,
				ledgerRowsPerDay*30, month, end)
			exec(`INSERT INTO tenantkit.processed_events (id, trigger_name, done_at, created_at)
				SELECT gen_random_uuid(), 'invitation_email', at, at
				FROM generate_series(1, $1) g, LATERAL (SELECT $2::timestamptz + (g::float8 / $1) * ($3::timestamptz - $2::timestamptz) AS at) a`,
				ledgerRowsPerDay*30, month, end)
			exec(`INSERT INTO tenantkit.email_outbox (tenant_id, to_email, subject, body, sent_at, created_at, dedupe_key)
				SELECT (SELECT id FROM tenants ORDER BY id LIMIT 1 OFFSET g % $4), 'owner' || g || '@example.com', 'Usage alert',
				       repeat('Your usage reached 80 % of the plan. ', 8), at, at, 'alert:' || $2::text || ':' || g
				FROM generate_series(1, $1) g, LATERAL (SELECT $2::timestamptz + (g::float8 / $1) * ($3::timestamptz - $2::timestamptz) AS at) a`,
				ledgerRowsPerDay*3, month, end, tenants)
			exec(`INSERT INTO tenantkit.invitation_sends (tenant_id, invitation_id, resend, sent_at)
				SELECT (SELECT id FROM tenants ORDER BY id LIMIT 1 OFFSET g % $4), gen_random_uuid(), false, at
				FROM generate_series(1, $1) g, LATERAL (SELECT $2::timestamptz + (g::float8 / $1) * ($3::timestamptz - $2::timestamptz) AS at) a`,
				ledgerRowsPerDay*30, month, end, tenants)
			exec(`INSERT INTO tenantkit.stripe_outbox (kind, tenant_id, subscription_id, idempotency_key, done_at, outcome, created_at)
				SELECT 'cancel_subscription', (SELECT id FROM tenants ORDER BY id LIMIT 1 OFFSET g % $4), 'sub_' || g,
				       'cancel-' || $2::text || '-' || g, at, 'sent', at
				FROM generate_series(1, $1) g, LATERAL (SELECT $2::timestamptz + (g::float8 / $1) * ($3::timestamptz - $2::timestamptz) AS at) a`,
				ledgerRowsPerDay*3, month, end, tenants)
			exec(`INSERT INTO tenantkit.usage_cuts (tenant_id, metric, cut, hour_total, below)
				SELECT (SELECT id FROM tenants ORDER BY id LIMIT 1 OFFSET g % $3), 'api_calls', $2::timestamptz + g * interval '1 minute', 10, 5
				FROM generate_series(1, $1) g`, tenants, month, tenants)
			clock = end.Add(-time.Minute)
			run()
			exec(`VACUUM (ANALYZE) tenantkit.stripe_events, tenantkit.processed_events, tenantkit.email_outbox,
				tenantkit.invitation_sends, tenantkit.stripe_outbox, tenantkit.usage_cuts`)
			sizes, err := db.TableSizes(ctx, retentionTables)
			if err != nil {
				b.Fatal(err)
			}
			usage[m] = float64(sizes["tenantkit.usage_events"]) / (1 << 20)
			ledgers[m] = float64(total(sizes)-sizes["tenantkit.usage_events"]) / (1 << 20)
			line := fmt.Sprintf("retention: month %2d: usage_events %6.1f MiB, ledgers %5.1f MiB:", m, usage[m], ledgers[m])
			for _, t := range retentionTables[1:] {
				line += fmt.Sprintf(" %s %.0f kB", t[len("tenantkit."):], float64(sizes[t])/1024)
			}
			b.Log(line)
		}
	}
	b.ReportMetric(usage[13], "usage-MiB@13")
	b.ReportMetric(usage[months], "usage-MiB@18")
	b.ReportMetric(ledgers[13], "ledgers-MiB@13")
	b.ReportMetric(ledgers[months], "ledgers-MiB@18")
	b.ReportMetric(usage[months]/usage[13], "usage-ratio-18/13")
	b.ReportMetric((usage[months]+ledgers[months])/(usage[13]+ledgers[13]), "total-ratio-18/13")
}
