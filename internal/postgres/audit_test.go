package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// The audit log records every change to tenants, memberships and invitations, whichever path made
// it (migrations/00012_audit_all.sql). These tests make each change on each path and read the log.

// auditEntry is an audit_log row as the tests compare it.
type auditEntry struct {
	Tenant, Action, Subject, Actor string // Actor "" for none
	Details                        map[string]any
}

func (e auditEntry) String() string {
	return fmt.Sprintf("%s %s subject=%s actor=%q", e.Tenant[:8], e.Action, e.Subject, e.Actor)
}

// auditSince returns the entries of the tenants written after seq, in order.
func auditSince(t *testing.T, admin *pgxpool.Pool, seq int64, tenants ...string) []auditEntry {
	t.Helper()
	rows, _ := admin.Query(context.Background(), `SELECT tenant_id::text, action, coalesce(subject, ''), coalesce(actor_id::text, ''), details
		FROM audit_log WHERE seq > $1 AND tenant_id = ANY ($2::uuid[]) ORDER BY seq`, seq, tenants)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (auditEntry, error) {
		var e auditEntry
		err := r.Scan(&e.Tenant, &e.Action, &e.Subject, &e.Actor, &e.Details)
		return e, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func auditSeq(t *testing.T, admin *pgxpool.Pool) int64 {
	t.Helper()
	var seq int64
	fxQueryRow(t, admin, `SELECT coalesce(max(seq), 0) FROM audit_log`).Scan(&seq)
	return seq
}

// userClaims is hasura.user for a signed-in user, as Hasura sets it.
func userClaims(userID string) string {
	b, _ := json.Marshal(map[string]string{"x-hasura-role": "user", "x-hasura-user-id": userID})
	return string(b)
}

// writePath is one way a change reaches the tables.
type writePath struct {
	name  string
	actor bool // the path names the caller, who is then the entries' actor
	exec  func(ctx context.Context, t *testing.T, db *postgres.DB, admin *pgxpool.Pool, caller, sql string, args ...any) error
}

var writePaths = []writePath{
	{"Hasura (its own connection, hasura.user set)", true,
		func(ctx context.Context, t *testing.T, _ *postgres.DB, admin *pgxpool.Pool, caller, sql string, args ...any) error {
			return pgx.BeginFunc(ctx, admin, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SELECT set_config('hasura.user', $1, true)`, userClaims(caller)); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, sql, args...)
				return err
			})
		}},
	{"the service's system path", true,
		func(ctx context.Context, t *testing.T, db *postgres.DB, _ *pgxpool.Pool, caller, sql string, args ...any) error {
			return db.WithSystemAs(ctx, tenantkit.UserSession(caller), func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, sql, args...)
				return err
			})
		}},
	{"plain SQL without a session", false,
		func(ctx context.Context, t *testing.T, _ *postgres.DB, admin *pgxpool.Pool, _, sql string, args ...any) error {
			_, err := admin.Exec(ctx, sql, args...)
			return err
		}},
}

// auditFixture is what a change case starts from: a tenant with an owner (the caller), a member,
// a pending invitation, and a second tenant to move rows to.
type auditFixture struct {
	tenant, owner, member, invitation, email, other string
}

func newAuditFixture(t *testing.T, admin *pgxpool.Pool) auditFixture {
	t.Helper()
	tn, other := fxTenant(t, admin), fxTenant(t, admin)
	f := auditFixture{tenant: tn.id, owner: tn.owner, member: fxMember(t, admin, tn.id, tenantkit.Member),
		invitation: fxInvite(t, admin, tn.id, "pending", time.Hour), other: other.id}
	f.email = f.invitation + "@example.com"
	fxExec(t, admin, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'member')`, other.id, f.owner)
	return f
}

// TestAuditEveryChange: every INSERT, UPDATE and DELETE on tenants, tenant_users and
// tenant_invitations writes its entry, on every path, with the caller as actor when the path names
// one; an update that changes nothing writes nothing; a row moved to another tenant leaves one
// tenant's log and enters the other's; a deleted tenant's log goes with it and the deletion is
// kept in tenantkit.tenant_deletions.
func TestAuditEveryChange(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	ctx := context.Background()

	type want struct {
		tenant  func(f auditFixture) string
		action  string
		subject func(f auditFixture) string
		details func(d map[string]any) bool // nil: any
	}
	ours := func(f auditFixture) string { return f.tenant }
	theirs := func(f auditFixture) string { return f.other }
	member := func(f auditFixture) string { return f.member }
	owner := func(f auditFixture) string { return f.owner }
	email := func(f auditFixture) string { return f.email }
	changes := func(cols ...string) func(map[string]any) bool {
		return func(d map[string]any) bool {
			c, _ := d["changes"].(map[string]any)
			if len(c) != len(cols) {
				return false
			}
			for _, col := range cols {
				if ch, ok := c[col].(map[string]any); !ok || fmt.Sprint(ch["from"]) == fmt.Sprint(ch["to"]) {
					return false
				}
			}
			return true
		}
	}
	cases := []struct {
		table, op, name string
		sql             string // $1 tenant, $2 owner, $3 member, $4 invitation, $5 other tenant (as literals)
		want            []want
	}{
		{"tenants", "INSERT", "a new tenant", `INSERT INTO tenants (id, slug, name) SELECT gen_random_uuid(), 'new-' || left($1::text, 8), 'New'`, nil},
		{"tenants", "UPDATE", "a renamed tenant", `UPDATE tenants SET name = 'Renamed' WHERE id = $1`,
			[]want{{ours, "tenant.updated", func(f auditFixture) string { return "t-" + f.tenant }, changes("name")}}},
		{"tenants", "UPDATE", "new settings", `UPDATE tenants SET settings = '{"theme": "dark"}' WHERE id = $1`,
			[]want{{ours, "tenant.updated", func(f auditFixture) string { return "t-" + f.tenant }, changes("settings")}}},
		{"tenants", "UPDATE", "nothing changed", `UPDATE tenants SET name = name WHERE id = $1`, nil},
		{"tenant_users", "INSERT", "a member joins", `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($5, $3, 'guest')`,
			[]want{{theirs, "member.joined", member, nil}}},
		{"tenant_users", "UPDATE", "a new role", `UPDATE tenant_users SET role = 'admin' WHERE tenant_id = $1 AND user_id = $3`,
			[]want{{ours, "member.role_changed", member, func(d map[string]any) bool { return d["from"] == "member" && d["to"] == "admin" }}}},
		{"tenant_users", "UPDATE", "custom permissions", `UPDATE tenant_users SET permissions = '["users:invite"]' WHERE tenant_id = $1 AND user_id = $3`,
			[]want{{ours, "member.role_changed", member, nil}}},
		{"tenant_users", "UPDATE", "another column", `UPDATE tenant_users SET invited_by = $2 WHERE tenant_id = $1 AND user_id = $3`,
			[]want{{ours, "member.updated", member, changes("invited_by")}}},
		{"tenant_users", "UPDATE", "nothing changed", `UPDATE tenant_users SET role = role WHERE tenant_id = $1 AND user_id = $3`, nil},
		{"tenant_users", "UPDATE", "moved to another tenant", `UPDATE tenant_users SET tenant_id = $5 WHERE tenant_id = $1 AND user_id = $3`,
			[]want{{ours, "member.removed", member, nil}, {theirs, "member.joined", member, nil}}},
		{"tenant_users", "DELETE", "a member removed", `DELETE FROM tenant_users WHERE tenant_id = $1 AND user_id = $3`,
			[]want{{ours, "member.removed", member, nil}}},
		{"tenant_users", "DELETE", "the caller leaves", `DELETE FROM tenant_users WHERE tenant_id = $5 AND user_id = $2`,
			[]want{{theirs, "member.left", owner, nil}}},
		{"tenant_invitations", "INSERT", "an invitation", `INSERT INTO tenant_invitations (tenant_id, email, role, token_hash) VALUES ($5, 'new@example.com', 'member', sha256($1::text::bytea))`,
			[]want{{theirs, "member.invited", func(auditFixture) string { return "new@example.com" }, nil}}},
		{"tenant_invitations", "UPDATE", "revoked", `UPDATE tenant_invitations SET status = 'revoked' WHERE id = $4`,
			[]want{{ours, "invitation.revoked", email, nil}}},
		{"tenant_invitations", "UPDATE", "accepted", `UPDATE tenant_invitations SET status = 'accepted', accepted_by = $3, accepted_at = now() WHERE id = $4`,
			[]want{{ours, "invitation.accepted", email, nil}}},
		{"tenant_invitations", "UPDATE", "expired", `UPDATE tenant_invitations SET status = 'expired' WHERE id = $4`,
			[]want{{ours, "invitation.expired", email, nil}}},
		{"tenant_invitations", "UPDATE", "a new token", `UPDATE tenant_invitations SET token_hash = sha256($2::text::bytea), expires_at = now() + interval '7 days' WHERE id = $4`,
			[]want{{ours, "invitation.resent", email, func(d map[string]any) bool { _, leak := d["changes"]; return !leak }}}},
		{"tenant_invitations", "UPDATE", "another column", `UPDATE tenant_invitations SET role = 'admin' WHERE id = $4`,
			[]want{{ours, "invitation.updated", email, changes("role")}}},
		{"tenant_invitations", "UPDATE", "nothing changed", `UPDATE tenant_invitations SET role = role WHERE id = $4`, nil},
		{"tenant_invitations", "UPDATE", "moved to another tenant", `UPDATE tenant_invitations SET tenant_id = $5 WHERE id = $4`,
			[]want{{ours, "invitation.deleted", email, nil}, {theirs, "member.invited", email, nil}}},
		{"tenant_invitations", "DELETE", "an invitation deleted", `DELETE FROM tenant_invitations WHERE id = $4`,
			[]want{{ours, "invitation.deleted", email, func(d map[string]any) bool { return d["status"] == "pending" && d["role"] == "guest" }}}},
		{"tenants", "DELETE", "a deleted tenant", `DELETE FROM tenants WHERE id = $1`, nil},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.table+" "+c.op] = true
	}
	for _, tbl := range []string{"tenants", "tenant_users", "tenant_invitations"} {
		for _, op := range []string{"INSERT", "UPDATE", "DELETE"} {
			if !covered[tbl+" "+op] {
				t.Errorf("no case for %s on %s", op, tbl)
			}
		}
	}

	for _, p := range writePaths {
		for _, c := range cases {
			t.Run(p.name+"/"+c.table+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				f := newAuditFixture(t, admin)
				seq := auditSeq(t, admin)
				sql := strings.NewReplacer("$1", lit(f.tenant), "$2", lit(f.owner), "$3", lit(f.member), "$4", lit(f.invitation), "$5", lit(f.other)).Replace(c.sql)
				if err := p.exec(ctx, t, db, admin, f.owner, sql); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
				got := auditSince(t, admin, seq, f.tenant, f.other)
				actor := ""
				if p.actor {
					actor = f.owner
				}

				if c.table == "tenants" && c.op == "INSERT" {
					// the new tenant's own log
					var n int64
					fxQueryRow(t, admin, `SELECT count(*) FROM audit_log a JOIN tenants t ON t.id = a.tenant_id
						WHERE t.slug = 'new-' || left($1::text, 8) AND a.action = 'tenant.created' AND a.subject = t.slug
						  AND a.actor_id IS NOT DISTINCT FROM nullif($2, '')::uuid`, f.tenant, actor).Scan(&n)
					if n != 1 {
						t.Errorf("tenant.created entries by %q: %d, want 1", actor, n)
					}
				}
				if c.table == "tenants" && c.op == "DELETE" {
					if n := fxCount(t, admin, `SELECT count(*) FROM audit_log WHERE tenant_id = $1`, f.tenant); n != 0 {
						t.Errorf("%d audit entries outlived their tenant", n)
					}
					var slug, name, by string
					fxQueryRow(t, admin, `SELECT slug, name, coalesce(actor_id::text, '') FROM tenantkit.tenant_deletions WHERE tenant_id = $1`, f.tenant).Scan(&slug, &name, &by)
					if slug != "t-"+f.tenant || name != "Tenant "+f.tenant || by != actor {
						t.Errorf("tenant_deletions: %q %q by %q, want the tenant's slug and name, by %q", slug, name, by, actor)
					}
				}

				if len(got) != len(c.want) {
					t.Fatalf("%d entries %v, want %d", len(got), got, len(c.want))
				}
				for i, w := range c.want {
					e := got[i]
					if w.action == "member.left" && !p.actor {
						w.action = "member.removed" // without a caller nobody leaves
					}
					if e.Tenant != w.tenant(f) || e.Action != w.action || e.Subject != w.subject(f) || e.Actor != actor ||
						(w.details != nil && !w.details(e.Details)) {
						t.Errorf("entry %d: %v %v, want %s in %s about %s by %q", i, e, e.Details, w.action, w.tenant(f)[:8], w.subject(f), actor)
					}
				}
			})
		}
	}
}

// lit is a uuid as a SQL literal.
func lit(id string) string { return "'" + uuid.MustParse(id).String() + "'::uuid" }

// auditPromise is what the audit log promises for a change Hasura's user role may make, in the
// words of the README's auditLog ("changes made through Hasura are recorded too").
type auditPromise struct {
	// audited is false for business data (projects), which the audit log does not cover.
	audited bool
	// scenarios make the change as a permitted caller and say which entry it must write.
	scenarios []hasuraScenario
}

// hasuraScenario is one change through a Hasura permission: the row (by its key) and the caller.
type hasuraScenario struct {
	name string
	// arrange returns the caller, the key of the row to change (column → value), the tenant
	// whose log must hold the entry, and the entry's action and subject.
	arrange func(t *testing.T, admin *pgxpool.Pool) (caller string, key map[string]string, tenant, action, subject string)
}

// TestHasuraPermissionsAreAudited walks every insert, update and delete permission
// hasura/metadata grants the user role, runs each as Hasura runs a mutation — the permission's
// filter (and check, and presets) compiled from the metadata, on Hasura's own connection with
// hasura.user set — and checks that the change wrote the audit entry the README promises, by
// the caller. A permission the test does not know fails it: whoever adds one says whether and
// how it is audited.
func TestHasuraPermissionsAreAudited(t *testing.T) {
	t.Parallel()
	_, admin := setup(t)
	ctx := context.Background()
	meta, cat, rules := userRules(ctx, t, admin, "../../hasura/metadata")

	invitationDelete := func(inviteeRole, callerRole tenantkit.Role) hasuraScenario {
		return hasuraScenario{fmt.Sprintf("%s deletes a %s invitation", callerRole, inviteeRole),
			func(t *testing.T, admin *pgxpool.Pool) (string, map[string]string, string, string, string) {
				tn := fxTenant(t, admin)
				caller := tn.owner
				if callerRole != tenantkit.Owner {
					caller = fxMember(t, admin, tn.id, callerRole)
				}
				inv := fxInvite(t, admin, tn.id, "pending", time.Hour)
				fxExec(t, admin, `UPDATE tenant_invitations SET role = $2 WHERE id = $1`, inv, string(inviteeRole))
				return caller, map[string]string{"tenant_id": tn.id, "id": inv}, tn.id, "invitation.deleted", inv + "@example.com"
			}}
	}
	promises := map[string]auditPromise{
		"tenant_invitations/delete": {true, []hasuraScenario{
			invitationDelete(tenantkit.Member, tenantkit.Owner),
			invitationDelete(tenantkit.Guest, tenantkit.Admin),
		}},
		"tenant_users/delete": {true, []hasuraScenario{
			{"an owner removes a member", func(t *testing.T, admin *pgxpool.Pool) (string, map[string]string, string, string, string) {
				tn := fxTenant(t, admin)
				m := fxMember(t, admin, tn.id, tenantkit.Member)
				return tn.owner, map[string]string{"tenant_id": tn.id, "user_id": m}, tn.id, "member.removed", m
			}},
			{"a guest leaves", func(t *testing.T, admin *pgxpool.Pool) (string, map[string]string, string, string, string) {
				tn := fxTenant(t, admin)
				g := fxMember(t, admin, tn.id, tenantkit.Guest)
				return g, map[string]string{"tenant_id": tn.id, "user_id": g}, tn.id, "member.left", g
			}},
		}},
		"tenants/update": {true, []hasuraScenario{
			{"an owner edits the tenant", func(t *testing.T, admin *pgxpool.Pool) (string, map[string]string, string, string, string) {
				tn := fxTenant(t, admin)
				return tn.owner, map[string]string{"id": tn.id}, tn.id, "tenant.updated", "t-" + tn.id
			}},
			{"an admin edits the tenant", func(t *testing.T, admin *pgxpool.Pool) (string, map[string]string, string, string, string) {
				tn := fxTenant(t, admin)
				return fxMember(t, admin, tn.id, tenantkit.Admin), map[string]string{"id": tn.id}, tn.id, "tenant.updated", "t-" + tn.id
			}},
		}},
		// Deleting a tenant is deleteTenant's, not Hasura's (tenants/delete is not granted).
		// Projects are the tenants' business data, not team events: not audited.
		"projects/insert": {audited: false},
		"projects/update": {audited: false},
		"projects/delete": {audited: false},
	}

	granted := map[string]bool{}
	ran := 0
	for _, r := range rules {
		if r.Command == "select" || !r.Allowed {
			continue
		}
		if r.BackendOnly {
			continue // not reachable by a client session
		}
		id := r.Table + "/" + r.Command
		granted[id] = true
		p, known := promises[id]
		switch {
		case !known:
			t.Errorf("Hasura's user role may %s %s.%s: say in this test whether (and how) that change is audited", r.Command, r.Schema, r.Table)
			continue
		case !p.audited:
			continue
		case len(p.scenarios) == 0:
			t.Errorf("%s is audited but has no scenario", id)
		}
		for _, sc := range p.scenarios {
			columns := []string{""} // insert and delete: one change
			if r.Command == "update" {
				columns = r.Columns // every column the permission lets the user set
				if slices.Equal(columns, []string{"*"}) {
					t.Fatalf("%s: update of all columns; list them", id)
				}
			}
			for _, col := range columns {
				ran++
				name := id + "/" + sc.name
				if col != "" {
					name += "/" + col
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					caller, key, tenant, action, subject := sc.arrange(t, admin)
					session := map[string]string{"x-hasura-role": "user", "x-hasura-user-id": caller}
					seq := auditSeq(t, admin)
					n, err := hasuraMutation(ctx, admin, meta, cat, r, session, key, col)
					if err != nil || n != 1 {
						t.Fatalf("Hasura's %s as %s changed %d rows (%v), want 1: the scenario's caller must be permitted", id, caller, n, err)
					}
					got := auditSince(t, admin, seq, tenant)
					if len(got) != 1 || got[0].Action != action || got[0].Subject != subject || got[0].Actor != caller {
						t.Fatalf("entries %v, want one %s about %s by %s", got, action, subject, caller)
					}
					if col != "" {
						if ch, ok := got[0].Details["changes"].(map[string]any); !ok || ch[col] == nil {
							t.Errorf("details %v do not show the change of %s", got[0].Details, col)
						}
					}
				})
			}
		}
	}
	for id, p := range promises {
		if !granted[id] {
			t.Errorf("%s is described here but not granted by the metadata: remove it (audited %v)", id, p.audited)
		}
	}
	if ran < 8 {
		t.Fatalf("only %d Hasura changes ran", ran)
	}
}

// hasuraMutation runs r as Hasura runs the mutation for it, on the row whose key columns equal
// key: in a transaction on Hasura's own connection (the database owner: Hasura's path has no RLS)
// with hasura.user set to the session, the statement restricted by the permission's filter; an
// update sets col to a new value of its type plus the permission's presets, and fails if the
// permission's check rejects the new row (Hasura then rolls back). It returns the rows changed.
func hasuraMutation(ctx context.Context, admin *pgxpool.Pool, meta *hasuratest.Metadata, cat hasuratest.Catalog, r hasuratest.Rule,
	session map[string]string, key map[string]string, col string) (int64, error) {
	table := pgx.Identifier{r.Schema, r.Table}.Sanitize()
	var where []string
	var args []any
	for c, v := range key {
		args = append(args, v)
		where = append(where, fmt.Sprintf("t.%s = $%d", pgx.Identifier{c}.Sanitize(), len(args)))
	}
	var set []string
	if r.Command == "update" {
		typ, err := cat.ColumnType(r.Schema, r.Table, col)
		if err != nil {
			return 0, err
		}
		var v string
		switch typ {
		case "text":
			v = "changed through Hasura"
		case "jsonb":
			v = `{"changed": "through Hasura"}`
		default:
			return 0, fmt.Errorf("no test value for %s.%s of type %s", r.Table, col, typ)
		}
		args = append(args, v)
		set = append(set, fmt.Sprintf("%s = $%d::%s", pgx.Identifier{col}.Sanitize(), len(args), typ))
		for c, pv := range r.Set {
			s := fmt.Sprint(pv)
			if strings.HasPrefix(strings.ToLower(s), "x-hasura-") {
				s = session[strings.ToLower(s)]
			}
			args = append(args, s)
			set = append(set, fmt.Sprintf("%s = $%d", pgx.Identifier{c}.Sanitize(), len(args)))
		}
	}
	filter, fargs, err := meta.SQL(r.Schema, r.Table, "t", r.Filter, session, len(args)+1, cat)
	if err != nil {
		return 0, err
	}
	args = append(args, fargs...)
	cond := strings.Join(where, " AND ") + " AND (" + filter + ")"
	var sql string
	if r.Command == "delete" {
		sql = "DELETE FROM " + table + " t WHERE " + cond
	} else {
		sql = "UPDATE " + table + " t SET " + strings.Join(set, ", ") + " WHERE " + cond
	}
	claims, _ := json.Marshal(session)
	var n int64
	err = pgx.BeginFunc(ctx, admin, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('hasura.user', $1, true)`, string(claims)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
		n = tag.RowsAffected()
		if r.Command != "update" || r.Check == nil || n == 0 {
			return nil
		}
		var kargs []any
		where = where[:0]
		for c, v := range key {
			kargs = append(kargs, v)
			where = append(where, fmt.Sprintf("t.%s = $%d", pgx.Identifier{c}.Sanitize(), len(kargs)))
		}
		check, cargs, err := meta.SQL(r.Schema, r.Table, "t", r.Check, session, len(kargs)+1, cat)
		if err != nil {
			return err
		}
		var ok bool
		if err := tx.QueryRow(ctx, "SELECT ("+check+") FROM "+table+" t WHERE "+strings.Join(where, " AND "), append(kargs, cargs...)...).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("check constraint of an update permission has failed")
		}
		return nil
	})
	return n, err
}
