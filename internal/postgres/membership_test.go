package postgres_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/pgbouncer"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
)

// TestMembershipReadsCoalesced: concurrent membership reads, grouped into shared statements, each
// get their own answer: members with their role and grants, non-members and members of a deleted
// tenant nothing, ids in forms PostgreSQL reads (upper case, braces) the same answer, and an id it
// cannot read invalid, without failing anyone else's read.
func TestMembershipReadsCoalesced(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	checkCoalescedReads(t, db, admin, 0)
	// Groups are bounded: the reads beyond the bound wait for the next statement.
	db, admin = setup(t)
	postgres.SetMembershipGroupMax(db, 6)
	checkCoalescedReads(t, db, admin, 6)
}

// TestPoolerMembershipReadsCoalesced is TestMembershipReadsCoalesced behind PgBouncer (transaction
// pooling), in each query mode a transaction pooler allows: the group's arrays are sent as
// parameters of an unnamed statement, or as literals in simple_protocol.
func TestPoolerMembershipReadsCoalesced(t *testing.T) {
	for _, mode := range pooledModes { // one after the other: each holds its own connections
		t.Run("mode="+mode, func(t *testing.T) {
			url := pgtest.NewDB(t)
			b := pgbouncer.Start(t, pgtest.AdminURL(), pgbouncer.Options{})
			db := openPooled(t, withParams(t, b.URL(url), "default_query_exec_mode", mode), "")
			checkCoalescedReads(t, db, fxAdmin(t, url), 0)
		})
	}
}

// checkCoalescedReads runs the reads of TestMembershipReadsCoalesced; with max > 0, groups must
// reach max reads and never exceed it.
func checkCoalescedReads(t *testing.T, db *postgres.DB, admin *pgxpool.Pool, max int64) {
	ctx := context.Background()

	type pair struct{ tenant, user string }
	want := map[pair]string{} // role, with grants after a space; "" for no membership
	var tenants, users []string
	for range 4 {
		tn := fxTenant(t, admin, fxPlanKey("enterprise"))
		tenants, users = append(tenants, tn.id), append(users, tn.owner)
		want[pair{tn.id, tn.owner}] = "owner"
		for _, r := range []tenantkit.Role{tenantkit.Admin, tenantkit.Member, tenantkit.Guest} {
			u := fxMember(t, admin, tn.id, r)
			users = append(users, u)
			want[pair{tn.id, u}] = string(r)
		}
	}
	fxExec(t, admin, `UPDATE tenant_users SET permissions = '["reports:read", "reports:write"]' WHERE tenant_id = $1 AND role = 'guest'`, tenants[0])
	for p, r := range want {
		if p.tenant == tenants[0] && r == "guest" {
			want[p] = "guest reports:read,reports:write"
		}
	}
	fxExec(t, admin, `UPDATE tenants SET deleted_at = now() WHERE id = $1`, tenants[3])
	for p := range want {
		if p.tenant == tenants[3] {
			want[p] = ""
		}
	}
	answer := func(m tenantkit.Role, perms []string) string {
		if len(perms) == 0 {
			return string(m)
		}
		return string(m) + " " + strings.Join(perms, ",")
	}

	var groups, grouped, largest atomic.Int64
	postgres.SetMembershipHook(db, func(n int) {
		groups.Add(1)
		if n > 1 {
			grouped.Add(int64(n))
		}
		for l := largest.Load(); int64(n) > l && !largest.CompareAndSwap(l, int64(n)); l = largest.Load() {
		}
		time.Sleep(time.Millisecond) // a round trip's worth more, so that reads queue behind it
	})

	const workers, reads = 48, 40
	readsBefore, statementsBefore := db.MembershipReads()
	var wg sync.WaitGroup
	var failed, alone atomic.Int64
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range reads {
				p := pair{tenants[rng.IntN(len(tenants))], users[rng.IntN(len(users))]}
				ask := p
				switch rng.IntN(8) {
				case 0:
					ask.tenant = strings.ToUpper(p.tenant)
				case 1:
					ask.user = "{" + p.user + "}"
					alone.Add(1)
				case 2:
					ask.tenant = p.tenant[:35] + "g" // not a uuid
					alone.Add(1)
				}
				m, err := db.Membership(ctx, tenantkit.UserSession(ask.user), ask.tenant)
				var got string
				switch {
				case ask.tenant != p.tenant && strings.HasSuffix(ask.tenant, "g"):
					if tenantkit.ErrorCode(err) != tenantkit.Invalid {
						t.Errorf("tenant %q: %+v, %v; want invalid", ask.tenant, m, err)
						failed.Add(1)
					}
					continue
				case tenantkit.ErrorCode(err) == tenantkit.NotFound:
				case err != nil:
					t.Errorf("%+v: %v", ask, err)
					failed.Add(1)
					continue
				default:
					if got = answer(m.Role, m.Permissions); got == "" {
						got = "no role and no error (a non-member must be not found)"
					}
					if m.TenantID != ask.tenant || m.UserID != ask.user {
						t.Errorf("asked %+v, answered for %s / %s", ask, m.TenantID, m.UserID)
					}
				}
				if got != want[p] {
					t.Errorf("%+v: %q, want %q", ask, got, want[p])
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d reads in %d statements, %d of them in groups, the largest of %d", workers*reads, groups.Load(), grouped.Load(), largest.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d wrong answers", failed.Load())
	}
	if largest.Load() < 4 {
		t.Fatalf("no group of more than %d reads formed: the grouping was not exercised", largest.Load())
	}
	if max > 0 && largest.Load() != max {
		t.Fatalf("the largest group held %d reads, want the bound, %d", largest.Load(), max)
	}
	// The counters behind tenantkit_membership_{reads,statements}_total: every read, and every
	// statement (the groups, and the reads sent alone as given).
	rs, sts := db.MembershipReads()
	if rs-readsBefore != workers*reads || sts-statementsBefore != uint64(groups.Load()+alone.Load()) {
		t.Errorf("counted %d reads in %d statements, want %d in %d + %d", rs-readsBefore, sts-statementsBefore, workers*reads, groups.Load(), alone.Load())
	}
}

// TestMembershipReadWaitsForItsOwnStatement: a read that arrives while statements are in flight,
// even one for the same caller and tenant, is answered by a statement sent after it arrived, so it
// sees a change committed before it was asked. Callers that have gone fail no one's read.
func TestMembershipReadWaitsForItsOwnStatement(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	tn := fxTenant(t, admin)
	member := fxMember(t, admin, tn.id, tenantkit.Member)

	reached, release := holdStatements(db, nil)
	wait := func(what string) int { t.Helper(); return awaitStatement(t, reached, what) }
	type result struct {
		role tenantkit.Role
		err  error
	}
	read := func(ctx context.Context, user string) chan result {
		out := make(chan result, 1)
		go func() {
			m, err := db.Membership(ctx, tenantkit.UserSession(user), tn.id)
			out <- result{m.Role, err}
		}()
		return out
	}

	// Both leaders' statements have answered (the member read before the change) and are held.
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	first := read(leaderCtx, member)
	wait("the first leader")
	second := read(context.Background(), tn.owner)
	wait("the second leader")
	fxExec(t, admin, `UPDATE tenant_users SET role = 'guest' WHERE tenant_id = $1 AND user_id = $2`, tn.id, member)

	// Reads asked now wait; they must see the demotion. Their callers all go before the group's
	// statement is sent: it is sent all the same (one caller's cancellation must not fail the
	// others' reads), and answers them.
	laterCtx, cancelLater := context.WithCancel(context.Background())
	var later []chan result
	for range 3 {
		later = append(later, read(laterCtx, member))
	}
	time.Sleep(100 * time.Millisecond) // let them queue
	cancelLeader()
	cancelLater()
	release()
	if n := wait("the group of the later reads"); n != 3 {
		t.Errorf("the later reads went in a group of %d, want 3", n)
	}
	for i, r := range append([]chan result{first, second}, later...) {
		got := <-r
		want := map[int]tenantkit.Role{0: tenantkit.Member, 1: tenantkit.Owner}[i]
		if i >= 2 {
			want = tenantkit.Guest
		}
		if got.err != nil || got.role != want {
			t.Errorf("read %d: %q (%v), want %q", i, got.role, got.err, want)
		}
	}
	select {
	case n := <-reached:
		t.Errorf("one more statement, of %d reads", n)
	default:
	}
}

// TestMembershipGroupPanics: when a group's leader panics, the group's other reads are answered
// (what was read, or internal) rather than left waiting, and the leaders' places are freed for the
// reads that follow.
func TestMembershipGroupPanics(t *testing.T) {
	t.Parallel()
	db, admin := setup(t)
	tn := fxTenant(t, admin)
	reached, release := holdStatements(db, func(n int) {
		if n == 3 {
			panic("the group's statement panics")
		}
	})
	wait := func(what string) int { t.Helper(); return awaitStatement(t, reached, what) }
	type result struct {
		err      error
		panicked bool
	}
	read := func() chan result {
		out := make(chan result, 1)
		go func() {
			defer func() {
				if recover() != nil {
					out <- result{panicked: true}
				}
			}()
			_, err := db.Membership(context.Background(), tenantkit.UserSession(tn.owner), tn.id)
			out <- result{err: err}
		}()
		return out
	}
	leaders := []chan result{read()}
	wait("the first leader")
	leaders = append(leaders, read())
	wait("the second leader")
	var group []chan result
	for range 3 {
		group = append(group, read())
	}
	time.Sleep(100 * time.Millisecond) // let them queue
	release()
	if n := wait("the group"); n != 3 {
		t.Fatalf("a group of %d, want 3", n)
	}
	for i, r := range leaders {
		if got := <-r; got.err != nil || got.panicked {
			t.Errorf("leader %d: %+v", i, got)
		}
	}
	// The group's other reads return: with their answer, read before the panic, or internal.
	panicked := 0
	for i, r := range group {
		select {
		case got := <-r:
			if got.panicked {
				panicked++
			} else if got.err != nil && tenantkit.ErrorCode(got.err) != tenantkit.Internal {
				t.Errorf("a read of the panicking group: %v", got.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("read %d of the panicking group was left waiting", i)
		}
	}
	if panicked != 1 {
		t.Errorf("%d reads panicked, want the group's leader only", panicked)
	}
	postgres.SetMembershipHook(db, nil)
	for i := range 3 { // both places are free again: these do not wait for ever
		done := read()
		select {
		case got := <-done:
			if got.err != nil || got.panicked {
				t.Errorf("read %d after the panic: %+v", i, got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("read %d after the panic never returned", i)
		}
	}
}

// holdStatements makes every membership statement of db, once answered, send its group's size on
// reached and wait until release is called, then call then (if not nil) with the size.
func holdStatements(db *postgres.DB, then func(n int)) (reached <-chan int, release func()) {
	sizes := make(chan int, 16)
	released := make(chan struct{})
	postgres.SetMembershipHook(db, func(n int) {
		sizes <- n
		<-released
		if then != nil {
			then(n)
		}
	})
	return sizes, func() { close(released) }
}

// awaitStatement returns the size of the next held statement (holdStatements).
func awaitStatement(t *testing.T, reached <-chan int, what string) int {
	t.Helper()
	select {
	case n := <-reached:
		return n
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no statement answered", what)
		return 0
	}
}
