package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit/internal/maintenance"
)

// maintenanceRun runs the maintenance job once (DATABASE_URL; the job serve runs every
// MAINTENANCE_INTERVAL, under the same lock).
func maintenanceRun(ctx context.Context, getenv func(string) string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("maintenance run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	batch := fs.Int("batch", maintenance.DefaultBatch, "rows deleted per statement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *batch < 1 {
		return errors.New("usage: tenantkit maintenance run [--batch N]")
	}
	if getenv("DATABASE_URL") == "" {
		return errors.New("config: DATABASE_URL is required")
	}
	months := maintenance.DefaultRetentionMonths
	if p := configInt(getenv, "USAGE_RETENTION_MONTHS", "months", maintenance.MinRetentionMonths, maintenance.MaxRetentionMonths, &months); p != nil {
		return fmt.Errorf("config: %s", p[0])
	}
	db, err := openSystemDB(ctx, getenv) // system work only
	if err != nil {
		return err
	}
	defer db.Close()
	r, err := (&maintenance.Service{Store: db, RetentionMonths: months, Batch: *batch}).Run(ctx)
	if err != nil {
		return fmt.Errorf("maintenance run: %s; then: %w", summary(r), err)
	}
	if !r.Ran {
		fmt.Fprintln(stdout, "maintenance run: another run holds the maintenance lock; nothing done")
		return nil
	}
	fmt.Fprintf(stdout, "maintenance run: %s\n", summary(r))
	return nil
}

// summary is one line saying what a run did.
func summary(r maintenance.Report) string {
	var pruned []string
	for _, l := range slices.Sorted(maps.Keys(r.Pruned)) {
		pruned = append(pruned, fmt.Sprintf("%s %d", l, r.Pruned[l]))
	}
	list := func(names []string) string {
		if len(names) == 0 {
			return "none"
		}
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("usage partitions created: %s; dropped: %s; rows deleted: %s; usage events folded into billing_usage: %d",
		list(r.Created), list(r.Dropped), list(pruned), r.Folded)
}

// logMaintenance logs one run of serve's maintenance job: info when it changed something, a
// warning when it failed (tried again at the next interval).
func logMaintenance(log zerolog.Logger, r maintenance.Report, err error) {
	if err == nil && !r.Ran {
		log.Debug().Msg("maintenance skipped: another replica holds the maintenance lock")
		return
	}
	changed := len(r.Created)+len(r.Dropped) > 0
	d := zerolog.Dict()
	for _, l := range slices.Sorted(maps.Keys(r.Pruned)) {
		changed = changed || r.Pruned[l] > 0
		d.Int(string(l), r.Pruned[l])
	}
	ev := log.Debug()
	switch {
	case err != nil:
		ev = log.Warn().Err(err)
	case changed:
		ev = log.Info()
	}
	msg := "maintenance run"
	if err != nil {
		msg = "maintenance run failed; tried again at the next interval"
	}
	ev.Int64("folded", r.Folded).Strs("created", r.Created).Strs("dropped", r.Dropped).Dict("deleted", d).Msg(msg)
}

// logFold logs a usage fold that added events at debug level, a failed one as a warning.
func logFold(log zerolog.Logger, folded int64, err error) {
	switch {
	case err != nil:
		log.Warn().Err(err).Msg("usage fold failed; tried again at the next interval (readers still count the events)")
	case folded > 0:
		log.Debug().Int64("folded", folded).Msg("usage fold")
	}
}
