package billing_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/team"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// alertWorld is billing over a fresh database whose Starter plan allows 100 api_calls, 50 reports
// and 5 storage_gb, with tenants made by the team service.
type alertWorld struct {
	bills *billing.Service
	teams *team.Service
	pool  *pgxpool.Pool
}

func newAlertWorld(t *testing.T) *alertWorld {
	t.Helper()
	db, pool := pgtest.Open(t)
	w := &alertWorld{bills: &billing.Service{Store: db}, teams: &team.Service{Store: db, TrialPlan: "starter"}, pool: pool}
	w.scan(t, `UPDATE subscription_plans SET limits = limits || '{"api_calls": 100, "reports": 50}' WHERE key = 'starter' RETURNING key`)
	return w
}

// scan runs q and returns its one text column.
func (w *alertWorld) scan(t *testing.T, q string, args ...any) string {
	t.Helper()
	var out string
	if err := w.pool.QueryRow(context.Background(), q, args...).Scan(&out); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// tenant makes a tenant named Acme with owners more owners besides its creator.
func (w *alertWorld) tenant(t *testing.T, owners int) string {
	t.Helper()
	user := func() string {
		return w.scan(t, `INSERT INTO auth.users (email) VALUES (gen_random_uuid() || '@example.com') RETURNING id::text`)
	}
	creator := user()
	tn, err := w.teams.CreateTenant(context.Background(), tenantkit.UserSession(creator), "Acme", "acme-"+creator[:8])
	if err != nil {
		t.Fatal(err)
	}
	for range owners {
		w.scan(t, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner') RETURNING role::text`, tn.ID, user())
	}
	w.scan(t, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'member') RETURNING role::text`, tn.ID, user())
	return tn.ID
}

// record sends one batch of one event as a trusted backend.
func (w *alertWorld) record(t *testing.T, tenant, metric, key string, q float64) {
	t.Helper()
	sess := tenantkit.NewSession(map[string]string{"x-hasura-role": "service"})
	if _, _, err := w.bills.RecordUsage(context.Background(), sess, []billing.UsageEvent{
		{TenantID: tenant, Metric: metric, Quantity: q, IdempotencyKey: key}}); err != nil {
		t.Fatal(err)
	}
}

// alerts counts the emails queued for the tenant's metric at a threshold.
func (w *alertWorld) alerts(t *testing.T, tenant, metric string, threshold int) int {
	t.Helper()
	var n int
	if err := w.pool.QueryRow(context.Background(), `SELECT count(*) FROM tenantkit.email_outbox WHERE tenant_id = $1 AND dedupe_key LIKE $2`,
		tenant, fmt.Sprintf("usage_alert:%s:%s:%d:%%", tenant, metric, threshold)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUsageAlerts: an alert at 80 % and at 100 % of a limit, once per period, to every owner;
// a batch jumping past both sends the higher only; a gauge counts its latest value.
func TestUsageAlerts(t *testing.T) {
	t.Parallel()
	w := newAlertWorld(t)

	t.Run("one batch after another", func(t *testing.T) {
		t.Parallel()
		tenant := w.tenant(t, 1) // two owners: each is emailed
		for i, st := range []struct {
			add             float64
			want80, want100 int
			situation       string
		}{
			{79, 0, 0, "79 %"}, {6, 2, 0, "85 %"}, {5, 2, 0, "90 %"}, {10, 2, 2, "100 %"}, {30, 2, 2, "130 %"},
		} {
			w.record(t, tenant, "reports", fmt.Sprint("r", i), st.add/2)
			if got80, got100 := w.alerts(t, tenant, "reports", 80), w.alerts(t, tenant, "reports", 100); got80 != st.want80 || got100 != st.want100 {
				t.Errorf("at %s: %d emails at 80 %%, %d at 100 %%; want %d and %d", st.situation, got80, got100, st.want80, st.want100)
			}
		}
		w.record(t, tenant, "reports", "r4", 15) // the same batch again (a retry) changes nothing
		if w.alerts(t, tenant, "reports", 100) != 2 {
			t.Error("a retried batch emailed again")
		}
		if subject := w.scan(t, `SELECT subject FROM tenantkit.email_outbox WHERE dedupe_key LIKE 'usage_alert:%:100:%'
			AND tenant_id = $1 LIMIT 1`, tenant); subject != "Acme has reached its reports limit" {
			t.Errorf("subject %q", subject)
		}
		if n := w.scan(t, `SELECT count(*)::text FROM tenantkit.email_outbox o WHERE o.tenant_id = $1 AND o.to_email NOT IN
			(SELECT u.email FROM tenant_users m JOIN auth.users u ON u.id = m.user_id WHERE m.tenant_id = $1 AND m.role = 'owner')`, tenant); n != "0" {
			t.Errorf("%s alerts to others than the owners", n)
		}
	})

	t.Run("one batch jumping past both thresholds sends the higher only", func(t *testing.T) {
		t.Parallel()
		tenant := w.tenant(t, 0)
		w.record(t, tenant, "api_calls", "big", 150)
		if a80, a100 := w.alerts(t, tenant, "api_calls", 80), w.alerts(t, tenant, "api_calls", 100); a80 != 0 || a100 != 1 {
			t.Errorf("%d emails at 80 %%, %d at 100 %%; want 0 and 1", a80, a100)
		}
	})

	t.Run("one batch over several tenants and metrics: each total is its own", func(t *testing.T) {
		t.Parallel()
		a, b := w.tenant(t, 0), w.tenant(t, 0)
		sess := tenantkit.NewSession(map[string]string{"x-hasura-role": "service"})
		if _, _, err := w.bills.RecordUsage(context.Background(), sess, []billing.UsageEvent{
			{TenantID: b, Metric: "api_calls", Quantity: 10, IdempotencyKey: "m1"},
			{TenantID: a, Metric: "storage_gb", Quantity: 1, IdempotencyKey: "m2"}, // a gauge between the counters
			{TenantID: a, Metric: "api_calls", Quantity: 85, IdempotencyKey: "m3"},
			{TenantID: b, Metric: "reports", Quantity: 50, IdempotencyKey: "m4"},
			{TenantID: a, Metric: "reports", Quantity: 5, IdempotencyKey: "m5"},
		}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			tenant, name, metric string
			want80, want100      int
		}{
			{a, "a", "api_calls", 1, 0}, {b, "b", "api_calls", 0, 0}, {a, "a", "reports", 0, 0}, {b, "b", "reports", 0, 1},
			{a, "a", "storage_gb", 0, 0},
		} {
			if a80, a100 := w.alerts(t, c.tenant, c.metric, 80), w.alerts(t, c.tenant, c.metric, 100); a80 != c.want80 || a100 != c.want100 {
				t.Errorf("tenant %s, %s: %d emails at 80 %%, %d at 100 %%; want %d and %d", c.name, c.metric, a80, a100, c.want80, c.want100)
			}
		}
	})

	t.Run("a limit set after use began counts from the next batch", func(t *testing.T) {
		t.Parallel()
		tenant := w.tenant(t, 0)
		w.record(t, tenant, "exports", "e1", 90) // no plan limits exports yet
		if n := w.scan(t, `SELECT count(*)::text FROM tenantkit.email_outbox WHERE tenant_id = $1`, tenant); n != "0" {
			t.Fatalf("%s emails for an unlimited metric", n)
		}
		w.scan(t, `UPDATE subscription_plans SET limits = limits || '{"exports": 100}' WHERE key = 'starter' RETURNING key`)
		w.record(t, tenant, "exports", "e2", 1)
		if a80, a100 := w.alerts(t, tenant, "exports", 80), w.alerts(t, tenant, "exports", 100); a80 != 1 || a100 != 0 {
			t.Errorf("91 of a new limit of 100: %d emails at 80 %%, %d at 100 %%; want 1 and 0", a80, a100)
		}
	})

	t.Run("a gauge's latest value", func(t *testing.T) {
		t.Parallel()
		tenant := w.tenant(t, 0) // Starter allows 5 storage_gb
		w.record(t, tenant, "storage_gb", "g1", 3.9)
		if w.alerts(t, tenant, "storage_gb", 80) != 0 {
			t.Error("alert at 78 %")
		}
		w.record(t, tenant, "storage_gb", "g2", 4.2)
		if w.alerts(t, tenant, "storage_gb", 80) != 1 {
			t.Error("no alert at 84 %")
		}
		if body := w.scan(t, `SELECT body FROM tenantkit.email_outbox WHERE tenant_id = $1 AND dedupe_key LIKE 'usage_alert:%:80:%' LIMIT 1`,
			tenant); !strings.Contains(body, "has used 4.2 of the 5 storage_gb its plan allows (84%)") {
			t.Errorf("the 80 %% alert says %q, want the share used (84%%)", body)
		}
		// down from above the limit: the 80 % email is not sent after the 100 % one
		other := w.tenant(t, 0)
		w.record(t, other, "storage_gb", "g1", 6)
		w.record(t, other, "storage_gb", "g2", 4.4)
		if a80, a100 := w.alerts(t, other, "storage_gb", 80), w.alerts(t, other, "storage_gb", 100); a80 != 0 || a100 != 1 {
			t.Errorf("120 %% then 88 %%: %d emails at 80 %%, %d at 100 %%; want 0 and 1", a80, a100)
		}
	})
}

// TestEntitlementsCountAllowances: Entitlements reports what the alerts count. A counter's use is
// its total over the billing period, whatever hours and counter slots it was recorded in; a
// gauge's is its latest value; users count members and pending invitations; events before the
// period do not count.
func TestEntitlementsCountAllowances(t *testing.T) {
	t.Parallel()
	w := newAlertWorld(t)
	ctx := context.Background()
	tenant := w.tenant(t, 0)
	owner := w.scan(t, `SELECT user_id::text FROM tenant_users WHERE tenant_id = $1 AND role = 'owner'`, tenant)
	// A billing period that began a day ago, so that events of the last hours are in it.
	w.scan(t, `UPDATE tenant_subscriptions SET current_period_start = now() - interval '1 day',
		current_period_end = now() + interval '29 days' WHERE tenant_id = $1 RETURNING status::text`, tenant)
	now := time.Now()
	sess := tenantkit.NewSession(map[string]string{"x-hasura-role": "service"})
	for i, e := range []struct {
		metric string
		q      float64
		at     time.Time
	}{
		{"api_calls", 7, now.Add(-30 * time.Hour)}, // before the period
		{"api_calls", 30, now.Add(-2 * time.Hour)},
		{"api_calls", 12.5, now.Add(-61 * time.Minute)},
		{"api_calls", 20, now.Add(-time.Minute)},
		{"storage_gb", 4, now.Add(-2 * time.Minute)},
		{"storage_gb", 3, now.Add(-time.Minute)},
	} {
		if _, _, err := w.bills.RecordUsage(ctx, sess, []billing.UsageEvent{{TenantID: tenant, Metric: e.metric, Quantity: e.q,
			IdempotencyKey: fmt.Sprint("allowance-", i), OccurredAt: e.at}}); err != nil {
			t.Fatal(err)
		}
	}
	// The same hour's calls in several counter slots, as concurrent writers leave them: 10 more in
	// a slot the recorded event did not use.
	w.scan(t, `INSERT INTO billing_usage (tenant_id, metric, period_start, period_end, slot, quantity)
		SELECT $1, 'api_calls', h, h + interval '1 hour', s, 10
		FROM (SELECT date_trunc('hour', $2::timestamptz, 'UTC') AS h) x,
		     LATERAL (SELECT s FROM generate_series(0, 15) s WHERE NOT EXISTS (SELECT FROM billing_usage u
		              WHERE u.tenant_id = $1 AND u.metric = 'api_calls' AND u.period_start = x.h AND u.slot = s) LIMIT 1) f
		RETURNING metric`, tenant, now.Add(-time.Minute))
	e, ok, err := w.bills.Entitlements(ctx, tenantkit.UserSession(owner), tenant)
	if err != nil || !ok {
		t.Fatalf("entitlements: %v %v", ok, err)
	}
	want := map[string]int64{"api_calls": 73, "storage_gb": 3, "users": 2, "reports": 0} // 30 + 12.5 + 20 + 10, rounded up
	got := map[string]int64{}
	for _, l := range e.Limits {
		got[l.Metric] = l.Used
	}
	for m, n := range want {
		if got[m] != n {
			t.Errorf("%s: used %d, want %d (all: %v)", m, got[m], n, got)
		}
	}
}
