package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// policyTexts is every policy's expressions as PostgreSQL prints them, by table and name.
func policyTexts(ctx context.Context, t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	rows, _ := pool.Query(ctx, `SELECT polrelid::regclass::text || ' ' || polname,
	    concat(pg_get_expr(polqual, polrelid), ' | ', pg_get_expr(polwithcheck, polrelid)) FROM pg_policy`)
	out := map[string]string{}
	var name, expr string
	if _, err := pgx.ForEachRow(rows, []any{&name, &expr}, func() error { out[name] = expr; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPolicyForms: the migrations install the inline form; set_policy_form rewrites every
// members' sub-select into the helper form and back to the very same texts, changes nothing the
// second time, refuses an unknown form and a caller that does not own the tables, and
// PolicyFormProblem names a form that does not suit the pooler.
func TestPolicyForms(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	db, err := postgres.Open(ctx, url, pgtest.AppURL(t, url))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	admin := connect(t, url)

	form := func() postgres.PolicyForm {
		t.Helper()
		f, err := db.PolicyForm(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	problems := func(want postgres.PolicyForm) {
		t.Helper()
		for _, pooler := range []postgres.Pooler{postgres.NoPooler, postgres.TransactionPooler} {
			p, err := db.PolicyFormProblem(ctx, pooler)
			if err != nil {
				t.Fatal(err)
			}
			if fits := postgres.PolicyFormFor(pooler) == want; fits != (p == "") {
				t.Errorf("form %s, DATABASE_POOLER=%s: problem %q", want, pooler, p)
			}
			if p != "" && !strings.Contains(p, "tenantkit migrate up") {
				t.Errorf("problem %q does not say how to fix it", p)
			}
		}
	}

	if f := form(); f != postgres.InlinePolicies {
		t.Fatalf("after the migrations: form %s, want inline", f)
	}
	problems(postgres.InlinePolicies)
	inline := policyTexts(ctx, t, admin)
	var members int
	for _, expr := range inline {
		if strings.Contains(expr, "tenantkit.caller_memberships") {
			members++
		}
	}
	if members < 10 {
		t.Fatalf("only %d policies read the caller's memberships", members)
	}

	n, err := postgres.SetPolicyForm(ctx, url, postgres.HelperPolicies)
	if err != nil || n != members {
		t.Fatalf("to helper: %d policies rewritten (%v), want %d", n, err, members)
	}
	if f := form(); f != postgres.HelperPolicies {
		t.Fatalf("form %s, want helper", f)
	}
	problems(postgres.HelperPolicies)
	helper := policyTexts(ctx, t, admin)
	for name, expr := range helper {
		if strings.Contains(expr, "caller_memberships") {
			t.Errorf("%s still reads caller_memberships inline: %s", name, expr)
		}
		if changed := expr != inline[name]; changed != strings.Contains(inline[name], "caller_memberships") {
			t.Errorf("%s: changed %t:\n inline: %s\n helper: %s", name, changed, inline[name], expr)
		}
	}
	if n, err := postgres.SetPolicyForm(ctx, url, postgres.HelperPolicies); err != nil || n != 0 {
		t.Errorf("helper again: %d rewritten (%v), want 0", n, err)
	}

	// Refused: an unknown form, and a role that may read the schema but does not own the tables
	// (tenantkit_app, which reaches set_policy_form itself). Asking that role for the form already
	// installed changes nothing and needs no right to rewrite (a `migrate up` with nothing to do).
	var pe *pgconn.PgError
	if _, err := postgres.SetPolicyForm(ctx, url, "sideways"); !errors.As(err, &pe) || pe.Code != "22023" {
		t.Errorf("unknown form: %v, want invalid_parameter_value", err)
	}
	appRole := pgtest.AppURL(t, url) + "&role=tenantkit_app"
	if _, err := postgres.SetPolicyForm(ctx, appRole, postgres.InlinePolicies); !errors.As(err, &pe) || pe.Code != "42501" {
		t.Errorf("as tenantkit_app: %v, want insufficient_privilege", err)
	}
	if n, err := postgres.SetPolicyForm(ctx, appRole, postgres.HelperPolicies); err != nil || n != 0 {
		t.Errorf("as tenantkit_app, the installed form: %d rewritten, %v", n, err)
	}
	if f := form(); f != postgres.HelperPolicies {
		t.Fatalf("after the refusals: form %s, want helper", f)
	}

	if n, err := postgres.SetPolicyForm(ctx, url, postgres.InlinePolicies); err != nil || n != members {
		t.Fatalf("back to inline: %d rewritten (%v), want %d", n, err, members)
	}
	back := policyTexts(ctx, t, admin)
	for name, expr := range inline {
		if back[name] != expr {
			t.Errorf("%s does not come back:\n before: %s\n after:  %s", name, expr, back[name])
		}
	}
	if len(back) != len(inline) {
		t.Errorf("%d policies before, %d after", len(inline), len(back))
	}
}
