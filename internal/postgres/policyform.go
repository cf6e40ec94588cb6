package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PolicyForm is how every policy reads the caller's tenants (migration 00028, docs/pooling.md
// "Policy forms"). Both forms give the same answers; they differ in what each statement pays.
type PolicyForm string

const (
	// InlinePolicies: the members' sub-select is planned with each statement. Cheapest when
	// statements are prepared, as on a direct connection, where pgx plans each once per connection.
	InlinePolicies PolicyForm = "inline"
	// HelperPolicies: the sub-select sits in tenantkit.caller_tenants (PL/pgSQL), planned once per
	// session. Cheapest when every statement is planned again, as behind a transaction pooler.
	HelperPolicies PolicyForm = "helper"
)

// PolicyFormFor is the form that suits statements sent through pooler: the service prepares
// nothing behind a transaction pooler (PooledQueryMode), so there every statement is planned.
func PolicyFormFor(pooler Pooler) PolicyForm {
	if pooler == TransactionPooler {
		return HelperPolicies
	}
	return InlinePolicies
}

// SetPolicyForm rewrites every policy into form (tenantkit.set_policy_form) in one transaction and
// says how many policies changed. When form is installed already it changes nothing and needs no
// right to rewrite (tenantkit.policy_form() only reads the catalog), so a `migrate up` with nothing
// to do still succeeds for a role that may use the schema tenantkit; a rewrite needs the tables'
// owner (the migration owner). One statement at a time, nothing prepared: it runs through a pooler
// too.
func SetPolicyForm(ctx context.Context, databaseURL string, form PolicyForm) (int, error) {
	conn, err := Connect(ctx, databaseURL)
	if err != nil {
		return 0, fmt.Errorf("connect: %s", redact(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var installed string
	if err := conn.QueryRow(ctx, `SELECT tenantkit.policy_form()`, pgx.QueryExecModeExec).Scan(&installed); err != nil {
		return 0, fmt.Errorf("policy form: %w", err)
	}
	if PolicyForm(installed) == form {
		return 0, nil
	}
	var changed int
	if err := conn.QueryRow(ctx, `SELECT tenantkit.set_policy_form($1)`, pgx.QueryExecModeExec, string(form)).Scan(&changed); err != nil {
		return 0, fmt.Errorf("policy form %s: %w", form, err)
	}
	return changed, nil
}

// PolicyForm reports the installed form: inline, helper, or mixed (a rewrite that did not finish,
// which set_policy_form's single transaction should make impossible).
func (db *DB) PolicyForm(ctx context.Context) (PolicyForm, error) {
	var form string
	err := db.QueryRowAsSystem(ctx, func(row pgx.Row) error { return row.Scan(&form) }, `SELECT tenantkit.policy_form()`)
	return PolicyForm(form), err
}

// PolicyFormProblem reports, in one operator-facing sentence with the fix, when the installed form
// does not suit pooler (a migration run with another DATABASE_POOLER than the service's); "" when
// it does. Answers are the same in either form: only the cost of each statement differs.
func (db *DB) PolicyFormProblem(ctx context.Context, pooler Pooler) (string, error) {
	form, err := db.PolicyForm(ctx)
	if err != nil {
		return "", err
	}
	want := PolicyFormFor(pooler)
	if form == want {
		return "", nil
	}
	if pooler == "" {
		pooler = NoPooler
	}
	return fmt.Sprintf("the policies are in the %s form, which does not suit DATABASE_POOLER=%s (the %s form does): run `tenantkit migrate up` with DATABASE_POOLER=%s (docs/pooling.md, \"Policy forms\")",
		form, pooler, want, pooler), nil
}
