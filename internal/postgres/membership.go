package postgres

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/team"
)

// Membership reads are the hottest statement of the service (every checkPermission, every API-key
// and domain check). Under concurrency they are coalesced: while membershipLeaders reads are in
// flight, the reads that arrive wait, and the first read to finish sends the waiting ones (up to
// membershipGroupMax, in the order they came) together as one statement (MembershipsSQL) in one
// round trip. A read never joins a statement that was sent before it arrived, so each answer is
// read from a snapshot taken after its request came in, exactly as if it had been sent alone: a
// committed removal or role change counts from the next check. With fewer reads than leaders in
// flight, a read is sent alone at once (MembershipSQL), so a quiet service waits for nothing.
//
// membershipLeaders bounds the statements in flight: more leaders mean smaller groups and more
// round trips, fewer mean reads waiting for a round trip that is already under way.
const membershipLeaders = 2

// membershipPatience bounds a group's statement, which runs apart from any one caller's context
// (one caller's cancellation must not fail the others' reads); the statement timeout bounds it
// inside PostgreSQL.
const membershipPatience = 30 * time.Second

// membershipGroupMax bounds a group: the reads beyond it wait for the next statement, so that no
// statement grows with the number of waiting callers (1,000 pairs: about 9 ms of index probes on
// a 2-core machine, measured with EXPLAIN ANALYZE).
const membershipGroupMax = 1000

// MembershipsSQL reads the memberships of a group ($1 the tenants, $2 the callers, pairwise); each
// row carries the pair's position (from 1). The lateral sub-select keeps it an index probe per pair
// whatever the group's size: it is MembershipSQL per pair.
const MembershipsSQL = `SELECT r.i, m.role, m.permissions
	  FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS r(tenant_id, user_id, i),
	       LATERAL (SELECT m.role, m.permissions FROM tenant_users m
	                 WHERE m.tenant_id = r.tenant_id AND m.user_id = r.user_id
	                   AND NOT EXISTS (SELECT FROM tenants t WHERE t.id = m.tenant_id AND t.deleted_at IS NOT NULL)
	                OFFSET 0) m`

// memberships coalesces concurrent membership reads (zero value ready to use).
type memberships struct {
	mu      sync.Mutex
	leaders int               // statements in flight
	waiting []*membershipRead // reads that arrived while membershipLeaders statements were in flight

	// reads counts membership reads, statements the statements that answered them.
	reads, statements atomic.Uint64

	// afterRead, when set (tests only), runs after each statement has answered and before its
	// reads are: with the group's size.
	afterRead func(group int)
	// groupMax replaces membershipGroupMax when set (tests only).
	groupMax int
}

type membershipRead struct {
	tenant, user pgtype.UUID

	// done is closed when the read is answered, or when it must lead the group in group.
	done  chan struct{}
	group []*membershipRead

	role  tenantkit.Role
	perms []string
	err   error // not found (NotFound) when the caller is no member
}

// Membership implements team.Store.
func (db *DB) Membership(ctx context.Context, s tenantkit.Session, tenantID string) (team.Membership, error) {
	m := team.Membership{TenantID: tenantID, UserID: s.UserID()}
	db.members.reads.Add(1)
	tenant, okT := canonicalUUID(tenantID)
	user, okU := canonicalUUID(m.UserID)
	r := &membershipRead{tenant: tenant, user: user}
	if okT && okU {
		db.coalesce(ctx, r)
	} else {
		// Anything but a canonical id goes alone, as given, so that PostgreSQL's cast decides it
		// (invalid) as it always did, and one caller's bad id can never fail another's read.
		db.readOne(ctx, r, tenantID, m.UserID)
	}
	if r.err == nil {
		m.Role, m.Permissions = r.role, r.perms
	}
	return m, r.err
}

// coalesce answers r: at once when a leader's place is free, else in the group it waits to join.
func (db *DB) coalesce(ctx context.Context, r *membershipRead) {
	ms := &db.members
	ms.mu.Lock()
	if ms.leaders < membershipLeaders {
		ms.leaders++
		ms.mu.Unlock()
		db.lead(ctx, []*membershipRead{r})
		return
	}
	r.done = make(chan struct{})
	ms.waiting = append(ms.waiting, r)
	ms.mu.Unlock()
	<-r.done
	if r.group != nil {
		db.lead(ctx, r.group)
	}
}

// MembershipReads returns the membership reads since the DB was opened, and the statements that
// answered them: under concurrency, fewer statements than reads (tenantkit_membership_*_total).
func (db *DB) MembershipReads() (reads, statements uint64) {
	return db.members.reads.Load(), db.members.statements.Load()
}

// lead sends group's statement, answers its reads, then hands the reads that arrived meanwhile to
// one of them to send as the next group (or leaves the leader's place free). The statement of a
// group of more than one runs apart from the leader's cancellation, which must not fail the
// others' reads; a read that waits is answered by its group's statement, even when its own caller
// has gone meanwhile.
func (db *DB) lead(ctx context.Context, group []*membershipRead) {
	// Whatever happens to the statement, even a panic, the group's reads are answered and the
	// leader's place is passed on or freed: a read left waiting would wait for ever, and so would
	// every read after it once both places were lost.
	for _, r := range group {
		r.err = errUnanswered
	}
	defer db.handOff(group)
	if len(group) == 1 {
		// A group of one has no one else to answer: its caller's cancellation is its own.
		db.readOne(ctx, group[0], group[0].tenant, group[0].user)
	} else {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), membershipPatience)
		defer cancel()
		db.readGroup(qctx, group)
	}
	if db.members.afterRead != nil {
		db.members.afterRead(len(group))
	}
}

// errUnanswered is the answer of a read whose statement ended without answering it.
var errUnanswered = tenantkit.Errorf(tenantkit.Internal, "the membership read was not answered")

// handOff answers group's reads (but the leader's, group[0], whose caller is the one running
// lead), then hands the reads that arrived meanwhile to the first of them to send as the next
// group, or frees the leader's place.
func (db *DB) handOff(group []*membershipRead) {
	ms := &db.members
	ms.mu.Lock()
	next := ms.waiting
	if limit := cmp.Or(ms.groupMax, membershipGroupMax); len(next) > limit {
		next, ms.waiting = next[:limit:limit], next[limit:]
	} else {
		ms.waiting = nil
	}
	if next == nil {
		ms.leaders--
	}
	ms.mu.Unlock()
	for _, r := range group[1:] {
		close(r.done)
	}
	if next != nil {
		next[0].group = next
		close(next[0].done)
	}
}

// readOne answers r with the statement of a single read (MembershipSQL) for tenant and user.
func (db *DB) readOne(ctx context.Context, r *membershipRead, tenant, user any) {
	db.members.statements.Add(1)
	r.err = db.QueryRowAsSystem(ctx, func(row pgx.Row) error { return row.Scan(&r.role, &r.perms) },
		MembershipSQL, tenant, user)
}

// readGroup answers group's reads with one statement (MembershipsSQL).
func (db *DB) readGroup(ctx context.Context, group []*membershipRead) {
	db.members.statements.Add(1)
	tenants := make([]pgtype.UUID, len(group))
	users := make([]pgtype.UUID, len(group))
	for i, r := range group {
		tenants[i], users[i] = r.tenant, r.user
	}
	notFound := translate(pgx.ErrNoRows)
	err := db.querySystem(ctx, func(rows pgx.Rows) error {
		for _, r := range group {
			r.err = notFound // unless a row answers it
		}
		for rows.Next() {
			var i int64
			var role tenantkit.Role
			var perms []string
			if err := rows.Scan(&i, &role, &perms); err != nil {
				return err
			}
			if i < 1 || int(i) > len(group) {
				return fmt.Errorf("membership row for pair %d of %d", i, len(group))
			}
			r := group[i-1]
			r.role, r.perms, r.err = role, perms, nil
		}
		return rows.Err()
	}, MembershipsSQL, tenants, users)
	if err != nil {
		for _, r := range group {
			r.err = err // Membership reads role and grants only without an error
		}
	}
}

// MembershipSQL is a single membership read ($1 the tenant, $2 the caller), sent after
// SystemRoleSQL in one pipeline (QueryRowAsSystem); the checkPermission benchmark sends the same as
// its database baseline.
const MembershipSQL = `SELECT m.role, m.permissions FROM tenant_users m
		 WHERE m.tenant_id = $1 AND m.user_id = $2
		   AND NOT EXISTS (SELECT FROM tenants t WHERE t.id = m.tenant_id AND t.deleted_at IS NOT NULL)`
