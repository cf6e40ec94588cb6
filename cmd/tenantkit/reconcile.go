package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit/internal/billing"
)

// reconcileOptions are what tests change about `stripe reconcile`.
type reconcileOptions struct {
	pageSize      int64         // objects per list request (0: Stripe's maximum, 100)
	progressEvery time.Duration // 0: every 2 s
}

// stripeReconcile runs `tenantkit stripe reconcile [--dry-run]`: the drift report and summary on
// stdout, progress and warnings on stderr. It fails (non-zero exit) when a change could not be
// applied or Stripe could not be listed.
func stripeReconcile(ctx context.Context, getenv func(string) string, args []string, stdout, stderr io.Writer, opts reconcileOptions) error {
	fs := flag.NewFlagSet("stripe reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dry := fs.Bool("dry-run", false, "report the drift, change nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("usage: tenantkit stripe reconcile [--dry-run]")
	}
	db, client, err := openBilling(ctx, getenv)
	if err != nil {
		return err
	}
	defer db.Close()
	client.PageSize = opts.pageSize
	log := zerolog.New(stderr).Level(zerolog.WarnLevel).With().Timestamp().Str("command", "stripe reconcile").Logger()
	ctx = log.WithContext(ctx)
	started := time.Now()
	r := &billing.Reconciler{
		Billing: &billing.Service{Store: db, Stripe: client}, Store: db, Stripe: client, DryRun: *dry,
		ProgressEvery: opts.progressEvery,
		Progress: func(s billing.ReconcileStats) {
			fmt.Fprintf(stderr, "stripe reconcile: %s after %s: %d events listed, %d missing, %d applied; %d subscriptions listed, %d drifted, %d fixed; %d customers listed\n",
				s.Phase, time.Since(started).Round(time.Millisecond), s.EventsListed, s.EventsMissing, s.EventsApplied,
				s.SubscriptionsListed, s.SubscriptionsDrifted, s.SubscriptionsFixed, s.CustomersListed)
		},
	}
	rep, err := r.Run(ctx)
	if len(rep.Rows) > 0 {
		w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "TENANT\tFIELD\tOURS\tSTRIPE\tACTION")
		for _, row := range rep.Rows {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", row.TenantID, row.Field, row.Ours, row.Stripe, row.Action)
		}
		w.Flush()
	}
	fmt.Fprintln(stdout, rep.Summary())
	return err
}
