package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// The isolation property test: a seeded random world of tenants, users, memberships (with roles and
// custom grants) and rows in every tenant table; for every user, table and command, the rows the
// database lets tenantkit_app touch under that user's Hasura session must equal the rows the role
// table allows, computed here in plain Go from the same world.
//
// Reproduce a failure with TENANTKIT_SEED=<seed printed in the failure>.

type membership struct {
	role   tenantkit.Role
	custom []string
}

type world struct {
	tenants     []string
	deleted     map[string]bool // tenants deleted (deleteTenant's mark): nobody's any more
	users       []string
	outsiders   []string                         // users with auth rows but no membership: insert targets
	members     map[string]map[string]membership // user -> tenant -> membership
	memberRows  []memberRow
	invitations []roleRow
	projects    []tenantRow
	usage       []tenantRow
	audit       []tenantRow // written by the audit triggers while loading
}

type memberRow struct {
	tenant, user string
	role         tenantkit.Role
}
type roleRow struct {
	tenant, id string
	role       tenantkit.Role
}
type tenantRow struct{ tenant, id string }

// customVocabulary is what custom grants are drawn from: wildcards, cross-resource grants and
// permissions no role has.
var customVocabulary = []string{
	"users:invite", "users:write", "users:*", "projects:write", "projects:*", "settings:write",
	"tenants:delete", "tenants:*", "billing:read", "reports:read", "*",
}

func seed(t *testing.T) uint64 {
	if s := os.Getenv("TENANTKIT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TENANTKIT_SEED: %v", err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

func newWorld(rng *rand.Rand, nTenants, nUsers int) *world {
	w := &world{members: map[string]map[string]membership{}, deleted: map[string]bool{}}
	id := func() string { return uuid.Must(uuid.NewRandomFromReader(rngReader{rng})).String() }
	for range nTenants {
		w.tenants = append(w.tenants, id())
	}
	for range nUsers {
		w.users = append(w.users, id())
	}
	for range 50 {
		w.outsiders = append(w.outsiders, id())
	}
	// every tenant gets an owner; then each user joins 0 to 5 random tenants (about a tenth join none)
	for i, tn := range w.tenants {
		w.join(w.users[i%len(w.users)], tn, tenantkit.Owner, nil)
	}
	for _, u := range w.users {
		if rng.IntN(10) == 0 {
			continue
		}
		for range rng.IntN(6) {
			tn := w.tenants[rng.IntN(len(w.tenants))]
			if _, ok := w.members[u][tn]; ok {
				continue
			}
			var custom []string
			for range rng.IntN(3) * rng.IntN(2) {
				custom = append(custom, customVocabulary[rng.IntN(len(customVocabulary))])
			}
			w.join(u, tn, tenantkit.Roles[rng.IntN(len(tenantkit.Roles))], custom)
		}
	}
	// about one tenant in six is deleted, with its members, invitations and rows still in place
	for _, tn := range w.tenants {
		if rng.IntN(6) == 0 {
			w.deleted[tn] = true
		}
	}
	for range 1200 {
		w.invitations = append(w.invitations, roleRow{w.tenants[rng.IntN(len(w.tenants))], id(), tenantkit.Roles[rng.IntN(len(tenantkit.Roles))]})
	}
	for range 3000 {
		w.projects = append(w.projects, tenantRow{w.tenants[rng.IntN(len(w.tenants))], id()})
	}
	for i := range 1000 {
		w.usage = append(w.usage, tenantRow{w.tenants[rng.IntN(len(w.tenants))], strconv.Itoa(i)})
	}
	return w
}

func (w *world) join(u, tn string, r tenantkit.Role, custom []string) {
	if w.members[u] == nil {
		w.members[u] = map[string]membership{}
	}
	w.members[u][tn] = membership{r, custom}
	w.memberRows = append(w.memberRows, memberRow{tn, u, r})
}

// load writes the world as the superuser. Tenants get the unlimited plan so limits stay out of it.
func (w *world) load(ctx context.Context, t *testing.T, admin *pgxpool.Pool) {
	t.Helper()
	exec := func(sql string, args ...any) {
		if _, err := admin.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("load: %v\n%s", err, sql)
		}
	}
	exec(`INSERT INTO auth.users (id, email) SELECT u, u || '@example.com' FROM unnest($1::uuid[]) u`, append(slices.Clone(w.users), w.outsiders...))
	exec(`INSERT INTO tenants (id, slug, name) SELECT t, 't-' || t, 'Tenant ' || t FROM unnest($1::uuid[]) t`, w.tenants)
	exec(`INSERT INTO tenant_subscriptions (tenant_id, plan_id, status)
	      SELECT t, (SELECT id FROM subscription_plans WHERE key = 'enterprise'), 'active' FROM unnest($1::uuid[]) t`, w.tenants)
	var mt, mu, mr, mc []string
	for _, m := range w.memberRows {
		mt, mu, mr = append(mt, m.tenant), append(mu, m.user), append(mr, string(m.role))
		mc = append(mc, jsonArray(w.members[m.user][m.tenant].custom))
	}
	exec(`INSERT INTO tenant_users (tenant_id, user_id, role, permissions)
	      SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::tenant_role[], $4::jsonb[])`, mt, mu, mr, mc)
	var it, ii, ir []string
	for _, r := range w.invitations {
		it, ii, ir = append(it, r.tenant), append(ii, r.id), append(ir, string(r.role))
	}
	exec(`INSERT INTO tenant_invitations (tenant_id, id, role, email, token_hash, status)
	      SELECT t, i, r, i || '@example.com', sha256(i::text::bytea), 'accepted' FROM unnest($1::uuid[], $2::uuid[], $3::tenant_role[]) x(t, i, r)`, it, ii, ir)
	var pt, pi []string
	for _, r := range w.projects {
		pt, pi = append(pt, r.tenant), append(pi, r.id)
	}
	exec(`INSERT INTO projects (tenant_id, id, name, owner_id)
	      SELECT t, p, 'project ' || p, (SELECT user_id FROM tenant_users m WHERE m.tenant_id = t AND role = 'owner' LIMIT 1)
	      FROM unnest($1::uuid[], $2::uuid[]) x(t, p)`, pt, pi)
	var ut, us []string
	for _, r := range w.usage {
		ut, us = append(ut, r.tenant), append(us, r.id)
	}
	exec(`INSERT INTO billing_usage (tenant_id, metric, period_start, period_end, slot, quantity)
	      SELECT t, 'metric_' || s, now(), now() + interval '1 hour', 0, 1 FROM unnest($1::uuid[], $2::text[]) x(t, s)`, ut, us)
	exec(`INSERT INTO tenantkit.usage_events (tenant_id, idempotency_key, metric, quantity, occurred_at)
	      SELECT t, s, 'api_calls', 1, now() FROM unnest($1::uuid[], $2::text[]) x(t, s)`, ut, us)
	rows, _ := admin.Query(ctx, `SELECT tenant_id::text, id::text FROM audit_log`)
	audit, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenantRow, error) {
		var tr tenantRow
		return tr, r.Scan(&tr.tenant, &tr.id)
	})
	if err != nil || len(audit) < len(w.tenants) {
		t.Fatalf("load: audit log has %d rows (%v)", len(audit), err)
	}
	w.audit = audit
	var deleted []string
	for tn := range w.deleted {
		deleted = append(deleted, tn)
	}
	exec(`UPDATE tenants SET deleted_at = now() WHERE id = ANY ($1::uuid[])`, deleted)
	// A test-only probe that runs one statement as the caller and reports "ok:<rows>" or the
	// SQLSTATE, so thousands of attempted writes cost one round trip.
	// Every attempt is undone (the success is reported through an exception), so attempts are
	// independent of each other.
	exec(`CREATE FUNCTION public.tk_try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
	      DECLARE n bigint;
	      BEGIN
	        EXECUTE stmt;
	        GET DIAGNOSTICS n = ROW_COUNT;
	        RAISE EXCEPTION USING ERRCODE = 'TKOK0', MESSAGE = n::text;
	      EXCEPTION
	        WHEN SQLSTATE 'TKOK0' THEN RETURN 'ok:' || SQLERRM;
	        WHEN OTHERS THEN RETURN SQLSTATE;
	      END $$`)
	exec(`GRANT EXECUTE ON FUNCTION public.tk_try(text) TO tenantkit_app`)
}

func jsonArray(xs []string) string {
	if len(xs) == 0 {
		return "[]"
	}
	return `["` + strings.Join(xs, `","`) + `"]`
}

// The model: what the role table allows.

func (w *world) has(u, tn, perm string) bool {
	m, ok := w.members[u][tn]
	return ok && !w.deleted[tn] && (perm == "" || tenantkit.Allows(m.role, m.custom, perm))
}

// manages: perm in the tenant and a role at least the row's.
func (w *world) manages(u, tn string, rowRole tenantkit.Role, perm string) bool {
	return w.has(u, tn, perm) && w.members[u][tn].role.AtLeast(rowRole)
}

// table describes one tenant table for the test: how to list its keys, how to touch rows without
// changing them, and which rows the model allows per command.
type table struct {
	name       string
	key        string // SQL expression of a row's key
	noopSet    string // SET clause that rewrites a row with its own values
	rows       func(w *world) []string
	canSelect  func(w *world, u, key string) bool
	canUpdate  func(w *world, u, key string) bool
	canDelete  func(w *world, u, key string) bool
	appCanRead bool // tenantkit_app has a grant to read the table at all
}

func tables() []table {
	none := func(*world, string, string) bool { return false }
	split := func(key string) (string, string) { a, b, _ := strings.Cut(key, "/"); return a, b }
	return []table{
		{
			name: "tenants", key: "id::text", noopSet: "name = name", appCanRead: true,
			rows:      func(w *world) []string { return w.tenants },
			canSelect: func(w *world, u, k string) bool { return w.has(u, k, "") },
			canUpdate: func(w *world, u, k string) bool { return w.has(u, k, "settings:write") },
			canDelete: none, // deleteTenant's soft deletion only, never a DELETE of the row
		},
		{
			name: "tenant_users", key: "tenant_id || '/' || user_id", noopSet: "role = role", appCanRead: true,
			rows: func(w *world) (keys []string) {
				for _, m := range w.memberRows {
					keys = append(keys, m.tenant+"/"+m.user)
				}
				return keys
			},
			canSelect: func(w *world, u, k string) bool { tn, _ := split(k); return w.has(u, tn, "") },
			canUpdate: func(w *world, u, k string) bool {
				tn, mu := split(k)
				return w.manages(u, tn, w.members[mu][tn].role, "users:write")
			},
			canDelete: func(w *world, u, k string) bool {
				tn, mu := split(k)
				return w.has(u, tn, "") && (mu == u || w.manages(u, tn, w.members[mu][tn].role, "users:write"))
			},
		},
		{
			name: "tenant_invitations", key: "tenant_id || '/' || id", noopSet: "email = email", appCanRead: true,
			rows: func(w *world) (keys []string) {
				for _, r := range w.invitations {
					keys = append(keys, r.tenant+"/"+r.id)
				}
				return keys
			},
			canSelect: func(w *world, u, k string) bool { tn, _ := split(k); return w.has(u, tn, "users:invite") },
			canUpdate: func(w *world, u, k string) bool { return w.invitationManaged(u, k) },
			canDelete: func(w *world, u, k string) bool { return w.invitationManaged(u, k) },
		},
		{
			name: "projects", key: "tenant_id || '/' || id", noopSet: "name = name", appCanRead: true,
			rows: func(w *world) (keys []string) {
				for _, r := range w.projects {
					keys = append(keys, r.tenant+"/"+r.id)
				}
				return keys
			},
			canSelect: func(w *world, u, k string) bool { tn, _ := split(k); return w.has(u, tn, "projects:read") },
			canUpdate: func(w *world, u, k string) bool {
				tn, _ := split(k)
				return w.has(u, tn, "projects:write") && w.has(u, tn, "projects:read")
			},
			canDelete: func(w *world, u, k string) bool {
				tn, _ := split(k)
				return w.has(u, tn, "projects:write") && w.has(u, tn, "projects:read")
			},
		},
		{
			name: "tenant_subscriptions", key: "tenant_id::text", noopSet: "status = status", appCanRead: true,
			rows:      func(w *world) []string { return w.tenants },
			canSelect: func(w *world, u, k string) bool { return w.has(u, k, "") },
			canUpdate: none, canDelete: none,
		},
		{
			name: "billing_usage", key: "tenant_id || '/' || substr(metric, 8)", noopSet: "quantity = quantity", appCanRead: true,
			rows: func(w *world) (keys []string) {
				for _, r := range w.usage {
					keys = append(keys, r.tenant+"/"+r.id)
				}
				return keys
			},
			canSelect: func(w *world, u, k string) bool { tn, _ := split(k); return w.has(u, tn, "") },
			canUpdate: none, canDelete: none,
		},
		{
			name: "audit_log", key: "tenant_id || '/' || id", noopSet: "action = action", appCanRead: true,
			rows: func(w *world) (keys []string) {
				for _, r := range w.audit {
					keys = append(keys, r.tenant+"/"+r.id)
				}
				return keys
			},
			canSelect: func(w *world, u, k string) bool { tn, _ := split(k); return w.has(u, tn, "settings:read") },
			canUpdate: none, canDelete: none,
		},
		{
			name: "tenantkit.invitation_outbox", key: "tenant_id || '/' || invitation_id", noopSet: "created_at = created_at",
			rows:      func(w *world) []string { return nil },
			canSelect: none, canUpdate: none, canDelete: none,
		},
		{
			name: "tenantkit.usage_events", key: "tenant_id || '/' || idempotency_key", noopSet: "quantity = quantity",
			rows:      func(w *world) []string { return nil },
			canSelect: none, canUpdate: none, canDelete: none,
		},
	}
}

func (w *world) invitationManaged(u, k string) bool {
	tn, id, _ := strings.Cut(k, "/")
	for _, r := range w.invitations {
		if r.id == id {
			return w.manages(u, tn, r.role, "users:invite")
		}
	}
	return false
}

var errRollback = errors.New("rollback")

// asUser runs fn as tenantkit_app under the user's Hasura session and always rolls back.
func asUser(ctx context.Context, db *postgres.DB, userID string, fn func(tx pgx.Tx) error) error {
	err := db.WithUser(ctx, tenantkit.UserSession(userID), func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errRollback
	})
	if errors.Is(err, errRollback) {
		return nil
	}
	return err
}

// keys runs a statement that returns one text key per row. A statement refused for lack of a
// grant (42501) counts as no rows: the command is closed to the role altogether.
func keys(ctx context.Context, tx pgx.Tx, sql string) ([]string, error) {
	for attempt := 0; ; attempt++ {
		if _, err := tx.Exec(ctx, "SAVEPOINT probe"); err != nil {
			return nil, err
		}
		rows, _ := tx.Query(ctx, sql)
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if _, rbErr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT probe"); rbErr != nil {
			return nil, rbErr
		}
		var pe *pgconn.PgError
		switch {
		case err == nil:
			slices.Sort(got)
			return got, nil
		case errors.As(err, &pe) && pe.Code == "42501":
			return nil, nil
		case errors.As(err, &pe) && pe.Code == "40P01" && attempt < 5:
			// Concurrent probes that cascade (deleting tenants) can deadlock each other; the victim
			// was rolled back to the savepoint, so the probe is simply run again.
			continue
		}
		return nil, fmt.Errorf("%s: %w", sql, err)
	}
}

func TestIsolationProperty(t *testing.T) {
	t.Parallel()
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
	w := newWorld(rng, 50, 200)
	db, admin := setup(t)
	ctx := context.Background()
	w.load(ctx, t, admin)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("seed %d (rerun with TENANTKIT_SEED=%d): %s", s, s, fmt.Sprintf(format, args...))
	}
	var nRows int
	for _, tb := range tables() {
		nRows += len(tb.rows(w))
	}
	t.Logf("seed %d: %d tenants, %d users, %d memberships, %d rows in tenant tables", s, len(w.tenants), len(w.users), len(w.memberRows), nRows)

	// Users are checked four at a time; each gets its own random stream so the run stays
	// reproducible from the seed.
	work := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if !t.Failed() { // one user's report is enough to act on
					w.checkUser(ctx, t, db, w.users[i], rand.New(rand.NewPCG(s, uint64(i))), fail)
				}
			}
		}()
	}
	for i := range w.users {
		work <- i
	}
	close(work)
	wg.Wait()
}

// checkUser compares, for one user, every table and command with the model.
func (w *world) checkUser(ctx context.Context, t *testing.T, db *postgres.DB, u string, rng *rand.Rand, fail func(string, ...any)) {
	for _, tb := range tables() {
		want := map[string][]string{}
		for _, k := range tb.rows(w) {
			if tb.canSelect(w, u, k) {
				want["select"] = append(want["select"], k)
			}
			if tb.canUpdate(w, u, k) {
				want["update"] = append(want["update"], k)
			}
			if tb.canDelete(w, u, k) {
				want["delete"] = append(want["delete"], k)
			}
		}
		stmts := map[string]string{
			"select": fmt.Sprintf("SELECT %s FROM %s", tb.key, tb.name),
			"update": fmt.Sprintf("UPDATE %s SET %s RETURNING %s", tb.name, tb.noopSet, tb.key),
			"delete": fmt.Sprintf("DELETE FROM %s RETURNING %s", tb.name, tb.key),
		}
		err := asUser(ctx, db, u, func(tx pgx.Tx) error {
			for _, cmd := range []string{"select", "update", "delete"} {
				got, err := keys(ctx, tx, stmts[cmd])
				if err != nil {
					return err
				}
				slices.Sort(want[cmd])
				if !slices.Equal(got, want[cmd]) {
					fail("user %s: %s on %s: database allows %d rows, role table %d\n  only database: %v\n  only model: %v",
						u, cmd, tb.name, len(got), len(want[cmd]), minus(got, want[cmd]), minus(want[cmd], got))
				}
			}
			return nil
		})
		if err != nil {
			fail("user %s, %s: %v", u, tb.name, err)
			return
		}
	}
	w.checkInserts(ctx, t, db, u, rng, fail)
}

// checkInserts tries, as user u, every kind of insert and move into a sample of tenants (all of
// the user's own and some others) and compares each outcome with the model.
func (w *world) checkInserts(ctx context.Context, t *testing.T, db *postgres.DB, u string, rng *rand.Rand, fail func(string, ...any)) {
	sample := map[string]bool{}
	for tn := range w.members[u] {
		sample[tn] = true
	}
	for range 3 {
		sample[w.tenants[rng.IntN(len(w.tenants))]] = true
	}
	type attempt struct {
		what string
		sql  string
		ok   bool
	}
	var attempts []attempt
	add := func(ok bool, what, format string, args ...any) {
		attempts = append(attempts, attempt{what, fmt.Sprintf(format, args...), ok})
	}
	add(false, "insert tenant", "INSERT INTO tenants (slug, name) VALUES ('x-%s', 'x')", u[:8])
	for tn := range sample {
		for i, r := range tenantkit.Roles {
			outsider := w.outsiders[rng.IntN(len(w.outsiders))]
			add(w.manages(u, tn, r, "users:write"), "add "+string(r)+" member to "+tn,
				"INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ('%s', '%s', '%s')", tn, outsider, r)
			add(w.manages(u, tn, r, "users:invite"), "invite "+string(r)+" to "+tn,
				"INSERT INTO tenant_invitations (tenant_id, email, role, token_hash) VALUES ('%s', 'n%d-%s@example.com', '%s', sha256('%s%d'))", tn, i, u[:8], r, u, i)
		}
		add(w.has(u, tn, "projects:write"), "create project in "+tn,
			"INSERT INTO projects (tenant_id, name, owner_id) VALUES ('%s', 'new', '%s')", tn, u)
		add(false, "create project owned by someone else in "+tn,
			"INSERT INTO projects (tenant_id, name, owner_id) VALUES ('%s', 'new', '%s')", tn, w.outsiders[0])
		add(false, "write subscription of "+tn, "UPDATE tenant_subscriptions SET status = 'active' WHERE tenant_id = '%s'", tn)
		add(false, "write usage of "+tn, "INSERT INTO billing_usage (tenant_id, metric, period_start, period_end) VALUES ('%s', 'x', now(), now() + interval '1h')", tn)
	}
	// moves: a project the user can write, into each sampled tenant; a membership the user can
	// manage, to each role
	for _, p := range w.projects {
		if !w.has(u, p.tenant, "projects:write") || !w.has(u, p.tenant, "projects:read") {
			continue
		}
		for tn := range sample {
			add(w.has(u, tn, "projects:write"), "move project to "+tn,
				"UPDATE projects SET tenant_id = '%s' WHERE tenant_id = '%s' AND id = '%s'", tn, p.tenant, p.id)
		}
		break
	}
	for _, m := range w.memberRows {
		if m.user == u || !w.manages(u, m.tenant, m.role, "users:write") {
			continue
		}
		for _, r := range tenantkit.Roles {
			add(w.manages(u, m.tenant, r, "users:write"), "change a "+string(m.role)+" to "+string(r),
				"UPDATE tenant_users SET role = '%s' WHERE tenant_id = '%s' AND user_id = '%s'", r, m.tenant, m.user)
		}
		break
	}
	var sqls []string
	for _, a := range attempts {
		sqls = append(sqls, a.sql)
	}
	err := asUser(ctx, db, u, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, "SELECT public.tk_try(s) FROM unnest($1::text[]) WITH ORDINALITY x(s, n) ORDER BY n", sqls)
		results, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for i, a := range attempts {
			// Concurrent users' probes may deadlock each other (cascades, audit rows); the victim
			// attempt was undone, so it is simply tried again.
			for retry := 0; results[i] == "40P01" && retry < 5; retry++ {
				if err := tx.QueryRow(ctx, "SELECT public.tk_try($1)", a.sql).Scan(&results[i]); err != nil {
					return err
				}
			}
			got := results[i] == "ok:1"
			if got != a.ok || (!got && results[i] != "42501" && results[i] != "ok:0") {
				fail("user %s: %s: database says %s, role table says allowed=%v\n  %s", u, a.what, results[i], a.ok, a.sql)
			}
		}
		return nil
	})
	if err != nil {
		fail("inserts as %s: %v", u, err)
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	if len(out) > 5 {
		return append(out[:5], fmt.Sprintf("… %d more", len(out)-5))
	}
	return out
}

type rngReader struct{ r *rand.Rand }

func (r rngReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.r.UintN(256))
	}
	return len(p), nil
}
