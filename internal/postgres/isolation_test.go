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
	"github.com/tenantkit/tenantkit/internal/apikey"
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
	keys        []keyRow    // API keys; a principal of the model is a user id or a key id
	keyByID     map[string]keyRow
}

// keyRow is an API key of the world. Its scopes are drawn independently of its creator's grants
// (as after a demotion), its creator may have left its tenant, and some keys are revoked.
type keyRow struct {
	tenant, id, creator string
	scopes              []string
	revoked             bool
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
// scopeVocabulary is what API keys' scopes are drawn from.
var scopeVocabulary = []string{
	"projects:read", "projects:write", "projects:*", "users:invite", "users:write", "users:*",
	"settings:read", "settings:write", "tenants:delete", "api_keys:manage", "billing:read", "*",
}

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
	// API keys: mostly made by a member of their tenant, some by a user who has left it
	w.keyByID = map[string]keyRow{}
	for range nTenants * 3 {
		m := w.memberRows[rng.IntN(len(w.memberRows))]
		k := keyRow{tenant: m.tenant, id: id(), creator: m.user, revoked: rng.IntN(5) == 0}
		if rng.IntN(8) == 0 {
			k.creator = w.users[rng.IntN(len(w.users))]
		}
		for range 1 + rng.IntN(3) {
			k.scopes = append(k.scopes, scopeVocabulary[rng.IntN(len(scopeVocabulary))])
		}
		w.keys = append(w.keys, k)
		w.keyByID[k.id] = k
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
	var kt, ki, kc, ks []string
	var kr []bool
	for _, k := range w.keys {
		kt, ki, kc, ks, kr = append(kt, k.tenant), append(ki, k.id), append(kc, k.creator), append(ks, jsonArray(k.scopes)), append(kr, k.revoked)
	}
	exec(`INSERT INTO api_keys (tenant_id, id, name, prefix, key_hash, scopes, created_by, revoked_at)
	      SELECT t, i, 'key', 'tk_live_' || translate(substr(md5(i::text), 1, 16), '0189', 'wxyz'), sha256(i::text::bytea), s, c,
	             CASE WHEN r THEN now() END
	      FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::jsonb[], $5::bool[]) x(t, i, c, s, r)`, kt, ki, kc, ks, kr)
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

// The model: what the role table allows. A principal is a user id or an API key's id.

func (w *world) has(u, tn, perm string) bool {
	if k, isKey := w.keyByID[u]; isKey {
		// the key's tenant, not revoked, its creator still a member; a scope covers perm and the
		// creator's grants allow it (apikey.Allows)
		m, member := w.members[k.creator][tn]
		return tn == k.tenant && !k.revoked && member && !w.deleted[tn] && (perm == "" || apikey.Allows(k.scopes, m.role, m.custom, perm))
	}
	m, ok := w.members[u][tn]
	return ok && !w.deleted[tn] && (perm == "" || tenantkit.Allows(m.role, m.custom, perm))
}

// manages: perm in the tenant and a role at least the row's (a key's: its creator's role).
func (w *world) manages(u, tn string, rowRole tenantkit.Role, perm string) bool {
	return w.has(u, tn, perm) && w.members[w.person(u)][tn].role.AtLeast(rowRole)
}

// person is the user a principal acts as: the user, or the key's creator.
func (w *world) person(u string) string {
	if k, isKey := w.keyByID[u]; isKey {
		return k.creator
	}
	return u
}

func (w *world) isKey(u string) bool { _, isKey := w.keyByID[u]; return isKey }

// session is the principal's Hasura session: a user's, or an API client's as a token of the key
// would make it (apikey.Service.issue).
func (w *world) session(u string) tenantkit.Session {
	k, isKey := w.keyByID[u]
	if !isKey {
		return tenantkit.UserSession(u)
	}
	return tenantkit.NewSession(map[string]string{
		"x-hasura-role": apikey.Role, apikey.VarKeyID: k.id, apikey.VarTenantID: k.tenant,
		apikey.VarCreatorID: k.creator, apikey.VarScopes: "{" + strings.Join(k.scopes, ",") + "}",
	})
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
			canDelete: none, // deleteTenant's soft deletion only, never a DELETE of the row (nor by an API client)
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
			// memberships change through the team actions, for people only
			canUpdate: func(w *world, u, k string) bool {
				tn, mu := split(k)
				return !w.isKey(u) && w.manages(u, tn, w.members[mu][tn].role, "users:write")
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
			canUpdate: func(w *world, u, k string) bool { return !w.isKey(u) && w.invitationManaged(u, k) },
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
			name: "api_keys", key: "tenant_id || '/' || id", noopSet: "revoked_at = revoked_at", appCanRead: true,
			rows: func(w *world) (keys []string) {
				for _, k := range w.keys {
					keys = append(keys, k.tenant+"/"+k.id)
				}
				return keys
			},
			canSelect: func(w *world, u, k string) bool { tn, _ := split(k); return w.has(u, tn, "api_keys:manage") },
			// revocation is the service's, for people only
			canUpdate: func(w *world, u, k string) bool {
				tn, _ := split(k)
				return !w.isKey(u) && w.has(u, tn, "api_keys:manage")
			},
			canDelete: none,
		},
		{
			name: "tenantkit.invitation_outbox", key: "tenant_id || '/' || invitation_id", noopSet: "created_at = created_at",
			rows:      func(w *world) []string { return nil },
			canSelect: none, canUpdate: none, canDelete: none,
		},
		{
			// Read by the tenant's owners for an export (00016), written by the system only.
			name: "tenantkit.usage_events", key: "tenant_id || '/' || idempotency_key", noopSet: "quantity = quantity", appCanRead: true,
			rows: func(w *world) (keys []string) {
				for _, r := range w.usage { // one event per counter row, keyed like it
					keys = append(keys, r.tenant+"/"+r.id)
				}
				return keys
			},
			canSelect: func(w *world, u, k string) bool {
				tn, _ := split(k)
				m, ok := w.members[u][tn]
				return ok && !w.deleted[tn] && m.role == tenantkit.Owner
			},
			canUpdate: none, canDelete: none,
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

// as runs fn as tenantkit_app under the principal's Hasura session and always rolls back.
func (w *world) as(ctx context.Context, db *postgres.DB, u string, fn func(tx pgx.Tx) error) error {
	return asSession(ctx, db, w.session(u), fn)
}

func asSession(ctx context.Context, db *postgres.DB, s tenantkit.Session, fn func(tx pgx.Tx) error) error {
	err := db.WithUser(ctx, s, func(tx pgx.Tx) error {
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

// TestIsolationProperty runs in both forms of the policies (migration 00028): they must give the
// same answers.
func TestIsolationProperty(t *testing.T) {
	t.Parallel()
	for _, form := range []postgres.PolicyForm{postgres.InlinePolicies, postgres.HelperPolicies} {
		t.Run(string(form), func(t *testing.T) {
			t.Parallel()
			isolationProperty(t, form)
		})
	}
}

func isolationProperty(t *testing.T, form postgres.PolicyForm) {
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
	w := newWorld(rng, 50, 200)
	db, admin := setup(t)
	ctx := context.Background()
	if _, err := admin.Exec(ctx, `SELECT tenantkit.set_policy_form($1)`, string(form)); err != nil {
		t.Fatal(err)
	}
	if got, err := db.PolicyForm(ctx); err != nil || got != form {
		t.Fatalf("policy form %s (%v), want %s", got, err, form)
	}
	w.load(ctx, t, admin)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("seed %d (rerun with TENANTKIT_SEED=%d): %s", s, s, fmt.Sprintf(format, args...))
	}
	var nRows int
	for _, tb := range tables() {
		nRows += len(tb.rows(w))
	}
	t.Logf("seed %d: %d tenants, %d users, %d memberships, %d API keys, %d rows in tenant tables",
		s, len(w.tenants), len(w.users), len(w.memberRows), len(w.keys), nRows)

	// Every user, and every API key (as an API client's session), is checked; four at a time, each
	// with its own random stream so the run stays reproducible from the seed.
	principals := slices.Clone(w.users)
	for _, k := range w.keys {
		principals = append(principals, k.id)
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if !t.Failed() { // one user's report is enough to act on
					w.checkUser(ctx, t, db, principals[i], rand.New(rand.NewPCG(s, uint64(i))), fail)
				}
			}
		}()
	}
	for i := range principals {
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
		err := w.as(ctx, db, u, func(tx pgx.Tx) error {
			for _, cmd := range []string{"select", "update", "delete"} {
				got, err := keys(ctx, tx, stmts[cmd])
				if err != nil {
					return err
				}
				slices.Sort(want[cmd])
				if !slices.Equal(got, want[cmd]) {
					fail("principal %s: %s on %s: database allows %d rows, role table %d\n  only database: %v\n  only model: %v",
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
	for tn := range w.members[w.person(u)] {
		sample[tn] = true
	}
	// Memberships and invitations are written by people (the team actions); an API client owns what
	// it creates in its creator's name.
	person, owner := !w.isKey(u), w.person(u)
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
			add(person && w.manages(u, tn, r, "users:write"), "add "+string(r)+" member to "+tn,
				"INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ('%s', '%s', '%s')", tn, outsider, r)
			add(person && w.manages(u, tn, r, "users:invite"), "invite "+string(r)+" to "+tn,
				"INSERT INTO tenant_invitations (tenant_id, email, role, token_hash) VALUES ('%s', 'n%d-%s@example.com', '%s', sha256('%s%d'))", tn, i, u[:8], r, u, i)
		}
		add(w.has(u, tn, "projects:write"), "create project in "+tn,
			"INSERT INTO projects (tenant_id, name, owner_id) VALUES ('%s', 'new', '%s')", tn, owner)
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
			add(person && w.manages(u, m.tenant, r, "users:write"), "change a "+string(m.role)+" to "+string(r),
				"UPDATE tenant_users SET role = '%s' WHERE tenant_id = '%s' AND user_id = '%s'", r, m.tenant, m.user)
		}
		break
	}
	var sqls []string
	for _, a := range attempts {
		sqls = append(sqls, a.sql)
	}
	err := w.as(ctx, db, u, func(tx pgx.Tx) error {
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
				fail("principal %s: %s: database says %s, role table says allowed=%v\n  %s", u, a.what, results[i], a.ok, a.sql)
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
