package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantkit/tenantkit/internal/billing"
)

// TestUsageTotalExact compares UsageTotals, over windows whose ends fall anywhere in an hour, with
// the sum of the events it stands for, before and after late events land in the hours the windows
// cut (which the cut cache must notice).
func TestUsageTotalExact(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()
	tenant, other := uuid.NewString(), uuid.NewString()
	for _, id := range []string{tenant, other} {
		if _, err := admin.Exec(ctx, `INSERT INTO tenants (id, slug, name) VALUES ($1::text::uuid, 't-' || left($1::text, 8), 'T')`, id); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().UTC().Truncate(time.Hour).Add(-48 * time.Hour)
	rng := rand.New(rand.NewPCG(7, 9))
	type ev struct {
		at time.Time
		q  float64
	}
	var events []ev
	seq := 0
	record := func(tenantID string, n int) {
		batch := make([]billing.UsageEvent, n)
		for i := range batch {
			at := base.Add(time.Duration(rng.IntN(48*3600)) * time.Second)
			q := float64(rng.IntN(40)) / 4 // quarters: numeric sums stay exact
			seq++
			batch[i] = billing.UsageEvent{TenantID: tenantID, Metric: "api_calls", Quantity: q, IdempotencyKey: fmt.Sprint("k", seq), OccurredAt: at}
			if tenantID == tenant {
				events = append(events, ev{at, q})
			}
		}
		if _, _, err := db.RecordUsage(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	record(tenant, 400)
	record(other, 100)
	want := func(from, to time.Time) float64 {
		sum := 0.0
		for _, e := range events {
			if !e.at.Before(from) && e.at.Before(to) {
				sum += e.q
			}
		}
		return sum
	}
	windows := [][2]time.Time{
		{base.Add(23*time.Minute + 17*time.Second), base.Add(24*time.Hour + 23*time.Minute + 17*time.Second)}, // a day, off the hour
		{base.Add(5 * time.Hour), base.Add(29 * time.Hour)},                                                   // on the hour
		{base.Add(3*time.Hour + 10*time.Minute), base.Add(3*time.Hour + 50*time.Minute)},                      // inside one hour
		{base.Add(47*time.Hour + 59*time.Minute), base.Add(72 * time.Hour)},                                   // to the future
	}
	check := func(when string) {
		t.Helper()
		ranges := make([]billing.UsageRange, len(windows))
		for i, w := range windows {
			ranges[i] = billing.UsageRange{TenantID: tenant, Metric: "api_calls", From: w[0], To: w[1]}
		}
		totals, err := db.UsageTotals(ctx, ranges) // all windows in one batch: each answer in its place
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range windows {
			if got, exp := totals[i], want(w[0], w[1]); got != exp {
				t.Errorf("%s: total [%s, %s) = %v, want %v", when, w[0].Format(time.TimeOnly), w[1].Format(time.TimeOnly), got, exp)
			}
		}
	}
	check("first")
	check("cached")
	record(tenant, 200) // late events, some in the hours the windows cut
	check("after late events")
	var cuts int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM tenantkit.usage_cuts WHERE tenant_id = $1`, tenant).Scan(&cuts); err != nil || cuts == 0 {
		t.Errorf("%d cuts cached (%v)", cuts, err)
	}
}
