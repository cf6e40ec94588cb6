package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantkit/tenantkit/internal/pgtest"
)

// TestMaintenanceRunCommand: `tenantkit maintenance run` prunes what the job prunes, says what it
// did, does nothing while another run holds the lock, and refuses a retention billing cannot live
// with.
func TestMaintenanceRunCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `INSERT INTO tenantkit.stripe_events (id, type, created, received_at) VALUES
		('evt_old', 'invoice.paid', now() - interval '40 days', now() - interval '40 days'),
		('evt_new', 'invoice.paid', now(), now())`); err != nil {
		t.Fatal(err)
	}
	run := func(env map[string]string, args ...string) (string, error) {
		var out, errs bytes.Buffer
		err := maintenanceRun(ctx, func(k string) string { return env[k] }, args, &out, &errs)
		return out.String() + errs.String(), err
	}
	env := map[string]string{"DATABASE_URL": url}
	out, err := run(env, "--batch", "1")
	if err != nil || !strings.Contains(out, "maintenance run: usage partitions created: none; dropped: none; rows deleted:") ||
		!strings.Contains(out, "stripe_events 1") {
		t.Errorf("maintenance run: %v\n%s", err, out)
	}
	var left []string
	rows, _ := admin.Query(ctx, `SELECT id FROM tenantkit.stripe_events ORDER BY id`)
	if left, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || strings.Join(left, ",") != "evt_new" {
		t.Errorf("stripe events left: %v, %v", left, err)
	}

	// Another run holds the lock (a session lock on the same key blocks the job's try-lock).
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock(x'746b6d61696e74'::bigint)`); err != nil {
		t.Fatal(err)
	}
	if out, err := run(env); err != nil || !strings.Contains(out, "another run holds the maintenance lock; nothing done") {
		t.Errorf("maintenance run with the lock taken: %v\n%s", err, out)
	}
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_unlock(x'746b6d61696e74'::bigint)`); err != nil {
		t.Fatal(err)
	}

	for _, bad := range []string{"12", "121", "x"} {
		if _, err := run(map[string]string{"DATABASE_URL": url, "USAGE_RETENTION_MONTHS": bad}); err == nil ||
			!strings.Contains(err.Error(), "USAGE_RETENTION_MONTHS") {
			t.Errorf("USAGE_RETENTION_MONTHS=%s: %v", bad, err)
		}
	}
	if _, err := run(map[string]string{}); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("without DATABASE_URL: %v", err)
	}
}

// TestMaintenanceConfig: USAGE_RETENTION_MONTHS and MAINTENANCE_INTERVAL have their defaults and
// are validated at start-up, one line each.
func TestMaintenanceConfig(t *testing.T) {
	t.Parallel()
	load := func(kv ...string) (Config, error) {
		env := map[string]string{"DATABASE_URL": "postgres://x@h/db", "TENANTKIT_SECRET": testSecret, "APP_URL": "https://app.example.com"}
		for i := 0; i+1 < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return LoadConfig(func(k string) string { return env[k] })
	}
	cfg, err := load()
	if err != nil || cfg.UsageRetentionMonths != 13 || cfg.MaintenanceInterval != time.Hour {
		t.Fatalf("defaults: %d months, %s (%v)", cfg.UsageRetentionMonths, cfg.MaintenanceInterval, err)
	}
	if cfg, err := load("USAGE_RETENTION_MONTHS", "24", "MAINTENANCE_INTERVAL", "15m"); err != nil ||
		cfg.UsageRetentionMonths != 24 || cfg.MaintenanceInterval != 15*time.Minute {
		t.Errorf("24 months, 15m: %d, %s (%v)", cfg.UsageRetentionMonths, cfg.MaintenanceInterval, err)
	}
	for _, bad := range [][2]string{{"USAGE_RETENTION_MONTHS", "12"}, {"USAGE_RETENTION_MONTHS", "121"}, {"USAGE_RETENTION_MONTHS", "1y"},
		{"MAINTENANCE_INTERVAL", "30s"}, {"MAINTENANCE_INTERVAL", "25h"}, {"MAINTENANCE_INTERVAL", "hourly"}} {
		_, err := load(bad[0], bad[1])
		if err == nil || !strings.Contains(err.Error(), "config: "+bad[0]+" must be") || strings.Count(err.Error(), "\n") != 0 {
			t.Errorf("%s=%s: %v, want one line about it", bad[0], bad[1], err)
		}
	}
}

// TestServeRunsMaintenance: serve runs the maintenance job when it starts (then every
// MAINTENANCE_INTERVAL): the partition two months ahead, missing, is created, and an expired
// Stripe event id is pruned.
func TestServeRunsMaintenance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	now := time.Now().UTC()
	ahead := "usage_events_" + time.Date(now.Year(), now.Month()+2, 1, 0, 0, 0, 0, time.UTC).Format("200601")
	for _, sql := range []string{
		`ALTER TABLE tenantkit.usage_events DETACH PARTITION tenantkit.` + ahead,
		`DROP TABLE tenantkit.` + ahead,
		`INSERT INTO tenantkit.stripe_events (id, type, created, received_at) VALUES ('evt_old', 'invoice.paid', now() - interval '40 days', now() - interval '40 days')`,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	start(t, "DATABASE_URL", url, "APP_DATABASE_URL", pgtest.AppURL(t, url))
	deadline := time.Now().Add(20 * time.Second)
	for {
		var created, pruned bool
		if err := admin.QueryRow(ctx, `SELECT to_regclass('tenantkit.' || $1) IS NOT NULL,
			NOT EXISTS (SELECT FROM tenantkit.stripe_events WHERE id = 'evt_old')`, ahead).Scan(&created, &pruned); err != nil {
			t.Fatal(err)
		}
		if created && pruned {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after serve started: partition %s created %v, expired Stripe event pruned %v", ahead, created, pruned)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
