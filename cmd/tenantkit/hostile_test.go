package main

// Malicious requests. Each must get its documented error — the status README gives its code and,
// on the routes Hasura calls, Hasura's error shape {"message", "extensions": {"code"}} — and change
// nothing: every table of the schemas public, auth and tenantkit keeps its row count and checksum
// (the api_calls meter is flushed before each comparison, so a metered call would show too). The
// cases of one test share a database and run one after another, each compared with the state the
// previous one left.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76/webhook"
	gqlast "github.com/vektah/gqlparser/v2/ast"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/stripetest"
)

// hostileStatus is README's table from error code to HTTP status, plus the shared-secret guard's
// unauthorized.
var hostileStatus = map[string]int{
	"invalid": 400, "unauthenticated": 401, "unauthorized": 401, "plan_limit": 402,
	"forbidden": 403, "invitation_email_mismatch": 403, "email_unverified": 403, "not_found": 404, "invitation_not_found": 404,
	"conflict": 409, "slug_taken": 409, "invitation_used": 409, "last_owner": 409, "domain_taken": 409, "domain_unverified": 409, "preview_expired": 409,
	"invitation_expired": 410, "invitation_revoked": 410, "restore_expired": 410, "rate_limited": 429, "unavailable": 424, "billing_unavailable": 424,
}

const (
	hostileMissingID = "00000000-0000-4000-8000-000000000000"
	hostileMB        = 10 << 20
)

// hostileValues go into every string input of every action. None is a valid slug, email, role,
// permission, id or token; some are valid names and idempotency keys, which must then be stored
// as they are (the base calls below fail after storing them, so nothing stays).
var hostileValues = []struct{ name, v string }{
	{"sql injection", "'; DROP TABLE tenants; --"},
	{"sql tautology", "' OR '1'='1"},
	{"sql after a uuid", hostileMissingID + "'; DELETE FROM tenant_users; --"},
	{"NUL", "\x00"},
	{"NUL inside", "nul\x00byte"},
	{"percent", "%"},
	{"underscore", "_"},
	{"LIKE injection", "%' OR tenant_id::text LIKE '%"},
	{"unicode", "Ωmega 名前 🚀 \u202egnp.exe"},
	{"empty", ""},
	{"blank", "   "},
	{"upper-case role", "OWNER"},
	{"10,000 characters", strings.Repeat("a", 10000)},
	{"10,000 two-byte characters", strings.Repeat("é", 10000)},
	{"10,000-character email", strings.Repeat("a", 10000-len("@example.com")) + "@example.com"},
	{"10,000-character permission", strings.Repeat("p", 4999) + ":" + strings.Repeat("q", 5000)},
	{"10,000-character slug", strings.Repeat("abcdefghij", 1000)},
	{"uuid in braces", "{" + hostileMissingID + "}"},
	{"uuid urn", "urn:uuid:" + hostileMissingID},
	{"header injection", "x\r\nX-Hasura-Role: admin"},
	{"operator object text", `{"$ne": null}`},
	{"markup", "<script>alert(1)</script>"},
}

// hostileDB fingerprints the database of a stack.
type hostileDB struct {
	s     *stack
	query string            // one row per table: name, row count and checksum
	last  map[string]string // the fingerprint after the previous case
}

func newHostileDB(t *testing.T, s *stack) *hostileDB {
	t.Helper()
	rows, _ := s.admin.Query(context.Background(), `
		SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
		WHERE schemaname IN ('public', 'auth', 'tenantkit') ORDER BY 1`)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) < 10 {
		t.Fatalf("tables: %v %v", tables, err)
	}
	parts := make([]string, len(tables))
	for i, tbl := range tables {
		parts[i] = fmt.Sprintf(`SELECT '%s', count(*) || ' rows, md5 ' || md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM %s t`,
			strings.ReplaceAll(tbl, "'", "''"), tbl)
	}
	db := &hostileDB{s: s, query: strings.Join(parts, "\nUNION ALL\n")}
	db.last = db.fingerprint(t)
	return db
}

func (db *hostileDB) fingerprint(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	if err := db.s.m.Meter.Flush(ctx); err != nil {
		t.Fatalf("flush the api_calls meter: %v", err)
	}
	pgtest.SettleUsage(t, db.s.admin) // the fold moves events into counters in its own time
	rows, _ := db.s.admin.Query(ctx, db.query)
	out := map[string]string{}
	var name, sum string
	if _, err := pgx.ForEachRow(rows, []any{&name, &sum}, func() error { out[name] = sum; return nil }); err != nil {
		t.Fatalf("fingerprint: %v", err)
	}
	return out
}

// unchanged fails the test when any table differs from the previous fingerprint.
func (db *hostileDB) unchanged(t *testing.T) {
	t.Helper()
	now := db.fingerprint(t)
	var diff []string
	for tbl, sum := range now {
		if db.last[tbl] != sum {
			diff = append(diff, fmt.Sprintf("%s: %s → %s", tbl, db.last[tbl], sum))
		}
	}
	db.last = now
	if len(diff) > 0 {
		slices.Sort(diff)
		t.Errorf("the database changed:\n%s", strings.Join(diff, "\n"))
	}
}

// hostileWorld is two tenants. In A: an owner, an admin, a member and a guest, a pending member
// invitation whose link was emailed, and a pending owner invitation. B has its own owner, who is
// nothing in A; a stranger belongs nowhere. Two more users belong nowhere: one whose email is the
// pending invitation's address followed by a no-break space, and one with exactly that address,
// not verified.
type hostileWorld struct {
	a, aSlug, b                 string
	owner, admin, member, guest string
	ownerB, stranger            string
	pending, pendingEmail       string
	lookAlike, unverified       string
	ownerInvite                 string
	token                       string // the link of pending
	plan                        string // professional
}

func newHostileWorld(t *testing.T, s *stack) *hostileWorld {
	t.Helper()
	w := &hostileWorld{}
	w.a, w.owner = s.tenant(t)
	w.aSlug = s.row(t, "tenants", "id = $1", w.a)["slug"].(string)
	w.admin, w.member, w.guest = s.user(t, ""), s.user(t, ""), s.user(t, "")
	exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'admin'), ($1, $3, 'member'), ($1, $4, 'guest')`,
		w.a, w.admin, w.member, w.guest)
	// Enterprise: no seat limit, so the invitations below fit.
	exec(t, s, `UPDATE tenant_subscriptions SET plan_id = (SELECT id FROM subscription_plans WHERE key = 'enterprise') WHERE tenant_id = $1`, w.a)
	w.b, w.ownerB = s.tenant(t)
	w.stranger = s.user(t, "")
	w.pendingEmail = "pending." + w.a[:8] + "@example.com"
	w.pending = s.ok(t, "inviteMember", map[string]any{"tenantId": w.a, "email": w.pendingEmail, "role": "member"}, w.owner)["invitationId"].(string)
	if st := s.deliver(t, "invitation_email", "INSERT", s.row(t, "tenant_invitations", "id = $1", w.pending)["id"]); st != http.StatusOK {
		t.Fatalf("invitation email: %d", st)
	}
	w.token = s.links(t, w.pendingEmail)[0]
	w.lookAlike = s.user(t, w.pendingEmail+"\u00a0")
	w.unverified = s.user(t, w.pendingEmail)
	exec(t, s, `UPDATE auth.users SET email_verified = false WHERE id = $1`, w.unverified)
	w.ownerInvite = s.ok(t, "inviteMember", map[string]any{"tenantId": w.a, "email": "co.owner." + w.a[:8] + "@example.com", "role": "owner"}, w.owner)["invitationId"].(string)
	w.plan = s.row(t, "subscription_plans", "key = 'professional'")["id"].(string)
	return w
}

// hostileBase is a well-formed call of an action that goes as deep as its valid values take it and
// is then refused with want, writing nothing ("" when it succeeds; it is then not run). A hostile
// value in place of any one argument must still be refused with a documented code.
type hostileBase struct {
	session map[string]string
	input   map[string]any
	want    string
}

func (w *hostileWorld) bases() map[string]hostileBase {
	return map[string]hostileBase{
		"createTenant":      {session(w.stranger), map[string]any{"name": "Fine Name", "slug": w.aSlug}, "slug_taken"},
		"inviteMember":      {session(w.owner), map[string]any{"tenantId": w.a, "email": w.pendingEmail, "role": "member"}, "conflict"},
		"acceptInvitation":  {session(w.stranger), map[string]any{"token": strings.Repeat("A", 43)}, "invitation_not_found"},
		"revokeInvitation":  {session(w.admin), map[string]any{"invitationId": w.ownerInvite}, "forbidden"},
		"resendInvitation":  {session(w.admin), map[string]any{"invitationId": w.ownerInvite}, "forbidden"},
		"changeMemberRole":  {session(w.admin), map[string]any{"tenantId": w.a, "userId": w.owner, "role": "admin", "permissions": []any{"users:invite"}}, "forbidden"},
		"removeMember":      {session(w.admin), map[string]any{"tenantId": w.a, "userId": w.owner}, "forbidden"},
		"transferOwnership": {session(w.admin), map[string]any{"tenantId": w.a, "userId": w.member}, "forbidden"},
		"checkPermission":   {session(w.owner), map[string]any{"tenantId": w.a, "permission": "users:invite"}, ""},
		"recordUsage": {serviceSession(), map[string]any{"events": []any{map[string]any{
			"tenantId": hostileMissingID, "metric": "api_calls", "quantity": 1, "idempotencyKey": "hostile-key",
			"occurredAt": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}}}, "invalid"}, // no such tenant
		"createCheckoutSession":      {session(w.owner), map[string]any{"tenantId": w.a, "planId": w.plan}, "invalid"}, // plan not linked to Stripe
		"createBillingPortalSession": {session(w.member), map[string]any{"tenantId": w.a}, "forbidden"},
		"cancelSubscription":         {session(w.owner), map[string]any{"tenantId": w.a}, "invalid"}, // no paid subscription
		"resumeSubscription":         {session(w.owner), map[string]any{"tenantId": w.a}, "invalid"},
		"changePlan":                 {session(w.owner), map[string]any{"tenantId": w.a, "planId": w.plan}, "invalid"},
		"createApiKey":               {session(w.admin), map[string]any{"tenantId": w.a, "name": "hostile", "scopes": []any{"*"}}, "forbidden"}, // beyond an admin's grants
		"revokeApiKey":               {session(w.owner), map[string]any{"keyId": hostileMissingID}, "not_found"},
		"addDomain":                  {session(w.member), map[string]any{"tenantId": w.a, "domain": "hostile.test", "policy": "auto_join", "defaultRole": "member"}, "forbidden"},
		"verifyDomain":               {session(w.owner), map[string]any{"domainId": hostileMissingID}, "not_found"},
		"setDomainPolicy":            {session(w.owner), map[string]any{"domainId": hostileMissingID, "policy": "suggest", "defaultRole": "guest"}, "not_found"},
		"removeDomain":               {session(w.owner), map[string]any{"domainId": hostileMissingID}, "not_found"},
		"acceptDomainOffer":          {session(w.stranger), map[string]any{"tenantId": w.a}, "not_found"}, // no offer
		"previewPlanChange":          {session(w.owner), map[string]any{"tenantId": w.a, "planId": w.plan}, "invalid"},
		"exportTenant":               {session(w.admin), map[string]any{"tenantId": w.a}, "forbidden"}, // owners only
		"deleteTenant":               {session(w.admin), map[string]any{"tenantId": w.a}, "forbidden"}, // owners only
		"restoreTenant":              {session(w.admin), map[string]any{"tenantId": w.a}, "forbidden"},
	}
}

// hostileAnswer is an action's answer as Hasura reads it.
type hostileAnswer struct {
	status     int
	code, msg  string
	out        map[string]any
	hasuraErr  error
	body       []byte
	actionName string
}

func hostileAct(t *testing.T, s *stack, name string, input map[string]any, sess map[string]string) hostileAnswer {
	t.Helper()
	res, err := s.hasura.Action(context.Background(), name, input, sess)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	a := hostileAnswer{status: res.Status, hasuraErr: res.HasuraError, body: res.Body, actionName: name}
	if res.Status >= 400 && res.Status < 500 {
		if ae, err := res.ActionError(); err == nil {
			a.code, a.msg = ae.Code, ae.Message
		}
	} else if res.Status == http.StatusOK {
		_ = json.Unmarshal(res.Body, &a.out)
	}
	return a
}

// refused fails unless the answer is an error Hasura passes on (4xx with a message), with one of
// codes and the status README gives that code.
func (a hostileAnswer) refused(t *testing.T, codes ...string) {
	t.Helper()
	switch {
	case a.hasuraErr != nil:
		t.Errorf("%s: Hasura would not pass the answer on (%d %s): %v", a.actionName, a.status, truncated(a.body), a.hasuraErr)
	case !slices.Contains(codes, a.code):
		t.Errorf("%s: %d %q (%s), want one of %v", a.actionName, a.status, a.code, a.msg, codes)
	case a.status != hostileStatus[a.code]:
		t.Errorf("%s: code %s with status %d; README gives %d", a.actionName, a.code, a.status, hostileStatus[a.code])
	case a.msg == "":
		t.Errorf("%s: error without a message", a.actionName)
	}
}

func truncated(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// documentedCodes reads an action's error codes from its description in actions.graphql
// ("Errors: a, b (why), c." or "Errors: as otherAction.").
func documentedCodes(t *testing.T, meta *hasuratest.Metadata, name string) []string {
	t.Helper()
	a := meta.Action(name)
	_, doc, ok := strings.Cut(a.Field.Description, "Errors:")
	if !ok {
		t.Fatalf("%s: no \"Errors:\" in its description in actions.graphql", name)
	}
	doc = regexp.MustCompile(`\([^)]*\)`).ReplaceAllString(doc, "")
	doc, _, _ = strings.Cut(doc, ".")
	if other, ok := strings.CutPrefix(strings.TrimSpace(doc), "as "); ok {
		return documentedCodes(t, meta, strings.TrimSpace(other))
	}
	var codes []string
	for c := range strings.SplitSeq(doc, ",") {
		c = strings.TrimSpace(c)
		if _, known := hostileStatus[c]; !known {
			t.Fatalf("%s documents code %q, which README's table does not give a status", name, c)
		}
		codes = append(codes, c)
	}
	return codes
}

// hostileSlot is one string input of an action: a path into its arguments (keys, and index 0 of
// lists), found from the argument types in actions.graphql.
type hostileSlot []any

func (p hostileSlot) String() string {
	var b strings.Builder
	for _, seg := range p {
		if k, ok := seg.(string); ok {
			if b.Len() > 0 {
				b.WriteString(".")
			}
			b.WriteString(k)
		} else {
			b.WriteString("[0]")
		}
	}
	return b.String()
}

// hostileSlots lists every input of a that JSON carries as a string: String, ID and custom scalars
// (uuid, timestamptz), in lists and input objects too.
func hostileSlots(meta *hasuratest.Metadata, a *hasuratest.Action) []hostileSlot {
	var out []hostileSlot
	var walk func(path hostileSlot, typ *gqlast.Type)
	walk = func(path hostileSlot, typ *gqlast.Type) {
		if typ.Elem != nil {
			walk(append(slices.Clone(path), 0), typ.Elem)
			return
		}
		if def := meta.Types[typ.NamedType]; def != nil && def.Kind == gqlast.InputObject {
			for _, f := range def.Fields {
				walk(append(slices.Clone(path), f.Name), f.Type)
			}
			return
		}
		if def := meta.Types[typ.NamedType]; def != nil && def.Kind == gqlast.Enum {
			return // Hasura itself refuses a value outside the enum
		}
		switch typ.NamedType {
		case "Int", "Float", "Boolean":
			return
		}
		out = append(out, path)
	}
	for _, arg := range a.Field.Arguments {
		walk(hostileSlot{arg.Name}, arg.Type)
	}
	return out
}

// with returns a deep copy of input with v at the slot (a missing list gets one element).
func (p hostileSlot) with(t *testing.T, input map[string]any, v string) map[string]any {
	t.Helper()
	var cp map[string]any
	b, _ := json.Marshal(input)
	if err := json.Unmarshal(b, &cp); err != nil {
		t.Fatal(err)
	}
	var set func(node any, path []any) any
	set = func(node any, path []any) any {
		if len(path) == 0 {
			return v
		}
		switch seg := path[0].(type) {
		case string:
			m, _ := node.(map[string]any)
			if m == nil {
				m = map[string]any{}
			}
			m[seg] = set(m[seg], path[1:])
			return m
		default:
			l, _ := node.([]any)
			if len(l) == 0 {
				l = []any{nil}
			}
			l[0] = set(l[0], path[1:])
			return l
		}
	}
	return set(cp, p).(map[string]any)
}

// TestHostileArguments puts every hostile value into every string input of every action declared
// in hasura/metadata (a new action or argument is covered without touching this test; a new
// action needs a base call in hostileWorld.bases), and a hostile x-hasura-user-id into every
// action's session.
func TestHostileArguments(t *testing.T) {
	t.Parallel()
	s := newStack(t, withStripe(t)...)
	w := newHostileWorld(t, s)
	db := newHostileDB(t, s)
	meta := s.hasura.Meta
	bases := w.bases()
	cases := 0
	for _, a := range meta.Actions {
		base, ok := bases[a.Name]
		if !ok {
			t.Errorf("action %s has no base call: add one to hostileWorld.bases", a.Name)
			continue
		}
		codes := documentedCodes(t, meta, a.Name)
		if base.want != "" {
			t.Run(a.Name+"/base call", func(t *testing.T) {
				hostileAct(t, s, a.Name, base.input, base.session).refused(t, base.want)
				db.unchanged(t)
			})
		}
		slots := hostileSlots(meta, a)
		if len(slots) == 0 {
			t.Errorf("action %s: no string inputs found", a.Name)
		}
		for _, slot := range slots {
			for _, v := range hostileValues {
				cases++
				t.Run(a.Name+"/"+slot.String()+"/"+v.name, func(t *testing.T) {
					hostileAct(t, s, a.Name, slot.with(t, base.input, v.v), base.session).refused(t, codes...)
					db.unchanged(t)
				})
			}
		}
		// Behind the secret the session is trusted, but its user id is still only an id.
		for _, v := range hostileValues[:5] {
			cases++
			t.Run(a.Name+"/x-hasura-user-id/"+v.name, func(t *testing.T) {
				sess := map[string]string{}
				for k, val := range base.session {
					sess[k] = val
				}
				_, hasUser := sess["x-hasura-user-id"]
				sess["x-hasura-user-id"] = v.v
				ans := hostileAct(t, s, a.Name, base.input, sess)
				switch {
				case a.Name == "checkPermission": // documented: nobody holds nothing
					if ans.status != http.StatusOK || ans.out["allowed"] != false || ans.out["role"] != nil {
						t.Errorf("checkPermission as %q: %d %s", v.v, ans.status, ans.body)
					}
				case hasUser:
					ans.refused(t, "unauthenticated")
				default:
					ans.refused(t, base.want)
				}
				db.unchanged(t)
			})
		}
	}
	if cases < 500 {
		t.Errorf("only %d hostile argument cases", cases)
	}
}

// TestHostileTenantBoundaries: members acting on another tenant's ids, and members, admins and
// guests trying to raise themselves.
func TestHostileTenantBoundaries(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	w := newHostileWorld(t, s)
	db := newHostileDB(t, s)
	in := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	x := "x." + w.a[:8] + "@example.com"
	for _, c := range []struct {
		name, user, action string
		input              map[string]any
		want               string
	}{
		// B's owner on A's ids: A is not theirs to know.
		{"invite into another tenant", w.ownerB, "inviteMember", in("tenantId", w.a, "email", x, "role", "member"), "not_found"},
		{"invite an owner into another tenant", w.ownerB, "inviteMember", in("tenantId", w.a, "email", x, "role", "owner"), "not_found"},
		{"change a role in another tenant", w.ownerB, "changeMemberRole", in("tenantId", w.a, "userId", w.member, "role", "admin"), "not_found"},
		{"make oneself owner of another tenant", w.ownerB, "changeMemberRole", in("tenantId", w.a, "userId", w.ownerB, "role", "owner"), "not_found"},
		{"change another tenant's member through one's own tenant", w.ownerB, "changeMemberRole", in("tenantId", w.b, "userId", w.member, "role", "admin"), "not_found"},
		{"remove from another tenant", w.ownerB, "removeMember", in("tenantId", w.a, "userId", w.member), "not_found"},
		{"remove another tenant's owner through one's own tenant", w.ownerB, "removeMember", in("tenantId", w.b, "userId", w.owner), "not_found"},
		{"revoke another tenant's invitation", w.ownerB, "revokeInvitation", in("invitationId", w.pending), "not_found"},
		{"resend another tenant's invitation", w.ownerB, "resendInvitation", in("invitationId", w.pending), "not_found"},
		{"take another tenant's ownership", w.ownerB, "transferOwnership", in("tenantId", w.a, "userId", w.ownerB), "not_found"},
		{"give one's tenant to another tenant's owner", w.ownerB, "transferOwnership", in("tenantId", w.b, "userId", w.owner), "not_found"},
		{"check out for another tenant", w.ownerB, "createCheckoutSession", in("tenantId", w.a, "planId", w.plan), "not_found"},
		{"open another tenant's billing portal", w.ownerB, "createBillingPortalSession", in("tenantId", w.a), "not_found"},
		{"cancel another tenant's subscription", w.ownerB, "cancelSubscription", in("tenantId", w.a), "not_found"},
		{"resume another tenant's subscription", w.ownerB, "resumeSubscription", in("tenantId", w.a), "not_found"},
		{"change another tenant's plan", w.ownerB, "changePlan", in("tenantId", w.a, "planId", w.plan), "not_found"},
		{"accept an invitation sent to someone else", w.ownerB, "acceptInvitation", in("token", w.token), "invitation_email_mismatch"},
		{"accept as a look-alike of the invited address", w.lookAlike, "acceptInvitation", in("token", w.token), "invitation_email_mismatch"},
		{"accept from the invited address, not verified", w.unverified, "acceptInvitation", in("token", w.token), "email_unverified"},
		{"a stranger invites", w.stranger, "inviteMember", in("tenantId", w.a, "email", x, "role", "guest"), "not_found"},
		// Ids in other spellings are the same ids (or refused), never a way around a check.
		{"invite into another tenant, its id in upper case", w.ownerB, "inviteMember", in("tenantId", strings.ToUpper(w.a), "email", x, "role", "member"), "not_found"},
		{"change a role in another tenant, ids in upper case", w.ownerB, "changeMemberRole", in("tenantId", strings.ToUpper(w.a), "userId", strings.ToUpper(w.member), "role", "admin"), "not_found"},
		{"a braced tenant id", w.owner, "inviteMember", in("tenantId", "{"+w.a+"}", "email", x, "role", "member"), "invalid"},
		{"a urn tenant id", w.owner, "removeMember", in("tenantId", "urn:uuid:"+w.a, "userId", w.member), "invalid"},
		// Invisible padding makes an address invalid rather than a look-alike.
		{"invite an address with a trailing no-break space", w.owner, "inviteMember", in("tenantId", w.a, "email", x+"\u00a0", "role", "member"), "invalid"},

		// An admin raising themself, or touching owners.
		{"admin makes themself owner", w.admin, "changeMemberRole", in("tenantId", w.a, "userId", w.admin, "role", "owner"), "forbidden"},
		{"admin transfers ownership to themself", w.admin, "transferOwnership", in("tenantId", w.a, "userId", w.admin), "forbidden"},
		{"admin grants themself everything", w.admin, "changeMemberRole", in("tenantId", w.a, "userId", w.admin, "role", "admin", "permissions", []any{"*"}), "forbidden"},
		{"admin grants themself tenants:delete", w.admin, "changeMemberRole", in("tenantId", w.a, "userId", w.admin, "role", "admin", "permissions", []any{"tenants:delete"}), "forbidden"},
		{"admin demotes the owner", w.admin, "changeMemberRole", in("tenantId", w.a, "userId", w.owner, "role", "member"), "forbidden"},
		{"admin removes the owner", w.admin, "removeMember", in("tenantId", w.a, "userId", w.owner), "forbidden"},
		{"admin invites an owner", w.admin, "inviteMember", in("tenantId", w.a, "email", x, "role", "owner"), "forbidden"},
		{"admin revokes an owner's invitation", w.admin, "revokeInvitation", in("invitationId", w.ownerInvite), "forbidden"},
		{"admin resends an owner's invitation", w.admin, "resendInvitation", in("invitationId", w.ownerInvite), "forbidden"},

		// Members and guests raising themselves.
		{"member makes themself admin", w.member, "changeMemberRole", in("tenantId", w.a, "userId", w.member, "role", "admin"), "forbidden"},
		{"member grants themself users:write", w.member, "changeMemberRole", in("tenantId", w.a, "userId", w.member, "role", "member", "permissions", []any{"users:write"}), "forbidden"},
		{"member promotes the guest", w.member, "changeMemberRole", in("tenantId", w.a, "userId", w.guest, "role", "member"), "forbidden"},
		{"member invites", w.member, "inviteMember", in("tenantId", w.a, "email", x, "role", "member"), "forbidden"},
		{"member removes the guest", w.member, "removeMember", in("tenantId", w.a, "userId", w.guest), "forbidden"},
		{"member takes ownership", w.member, "transferOwnership", in("tenantId", w.a, "userId", w.member), "forbidden"},
		{"member revokes an invitation they cannot see", w.member, "revokeInvitation", in("invitationId", w.pending), "not_found"},
		{"member checks out", w.member, "createCheckoutSession", in("tenantId", w.a, "planId", w.plan), "forbidden"},
		{"member cancels the subscription", w.member, "cancelSubscription", in("tenantId", w.a), "forbidden"},
		{"guest makes themself member", w.guest, "changeMemberRole", in("tenantId", w.a, "userId", w.guest, "role", "member"), "forbidden"},
		{"guest grants themself projects:write", w.guest, "changeMemberRole", in("tenantId", w.a, "userId", w.guest, "role", "guest", "permissions", []any{"projects:write"}), "forbidden"},
		{"guest invites a guest", w.guest, "inviteMember", in("tenantId", w.a, "email", x, "role", "guest"), "forbidden"},

		// The owner cannot leave the tenant ownerless either.
		{"owner transfers to themself", w.owner, "transferOwnership", in("tenantId", w.a, "userId", w.owner), "invalid"},
		{"owner demotes themself", w.owner, "changeMemberRole", in("tenantId", w.a, "userId", w.owner, "role", "admin"), "last_owner"},
		{"owner leaves", w.owner, "removeMember", in("tenantId", w.a, "userId", w.owner), "last_owner"},
	} {
		t.Run(c.name, func(t *testing.T) {
			hostileAct(t, s, c.action, c.input, session(c.user)).refused(t, c.want)
			db.unchanged(t)
		})
	}

	// Non-members asking about A are told nothing, and are not metered as A's API calls.
	for _, perm := range []string{"users:invite", "*"} {
		t.Run("another tenant's owner checks "+perm, func(t *testing.T) {
			a := hostileAct(t, s, "checkPermission", in("tenantId", w.a, "permission", perm), session(w.ownerB))
			if a.status != http.StatusOK || a.out["allowed"] != false || a.out["role"] != nil {
				t.Errorf("%d %s, want allowed false and no role", a.status, a.body)
			}
			db.unchanged(t)
		})
	}
	for _, c := range []struct {
		name, user, query, want string
		wantData                string
	}{
		{"another tenant's permissions", w.ownerB, `query($t: ID!) { myPermissions(tenantId: $t) { role permissions } }`, "", `{"myPermissions":{"permissions":[],"role":null}}`},
		{"another tenant's audit log", w.ownerB, `query($t: ID!) { auditLog(tenantId: $t, limit: 50) { action } }`, "not_found", ""},
		{"another tenant's usage", w.ownerB, `query($t: ID!) { usage(tenantId: $t) { metric } }`, "", `{"usage":[]}`},
		{"a guest reads the audit log", w.guest, `query($t: ID!) { auditLog(tenantId: $t, limit: 50) { action } }`, "forbidden", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			data, code := s.graph(t, c.query, map[string]any{"t": w.a}, session(c.user))
			got, _ := json.Marshal(data)
			if code != c.want || (c.want == "" && string(got) != c.wantData) {
				t.Errorf("code %q data %s, want code %q data %s", code, got, c.want, c.wantData)
			}
			db.unchanged(t)
		})
	}
}

// hostileReply is a raw HTTP answer.
type hostileReply struct {
	status int
	body   []byte
}

// hostileSend posts body (a *strings.Reader or *bytes.Reader has a length; anything else is sent
// chunked) with the given headers, name-value pairs; a name given twice sends two values.
func hostileSend(t *testing.T, url string, body io.Reader, headers ...string) hostileReply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return hostileReply{res.StatusCode, b}
}

// hasuraError fails unless r is status with Hasura's error shape and code.
func (r hostileReply) hasuraError(t *testing.T, status int, code string) {
	t.Helper()
	var e struct {
		Message    *string `json:"message"`
		Extensions struct {
			Code string `json:"code"`
		} `json:"extensions"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || r.status != status || e.Message == nil || *e.Message == "" || e.Extensions.Code != code {
		t.Errorf("got %d %s, want %d with {message, extensions: {code: %s}}", r.status, truncated(r.body), status, code)
	}
}

// graphqlError fails unless r is status with a GraphQL error whose extensions.code is code.
func (r hostileReply) graphqlError(t *testing.T, status int, code string) {
	t.Helper()
	var e struct {
		Errors []struct {
			Message    string `json:"message"`
			Extensions struct {
				Code string `json:"code"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || r.status != status || len(e.Errors) == 0 || e.Errors[0].Message == "" || e.Errors[0].Extensions.Code != code {
		t.Errorf("got %d %s, want %d with a GraphQL error coded %s", r.status, truncated(r.body), status, code)
	}
}

// hostileRoute is a route Hasura calls, with a well-formed body it would send there.
type hostileRoute struct {
	name, url string
	body      []byte
}

// hostileEvent is an event trigger delivery as Hasura sends it.
func hostileEvent(trigger, schema, table, id string, row map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{
		"event": map[string]any{"op": "INSERT", "data": map[string]any{"old": nil, "new": row},
			"session_variables": map[string]string{"x-hasura-role": "admin"}, "trace_context": nil},
		"created_at": time.Now().UTC().Format(hasuratest.CreatedAtFormat), "id": id,
		"delivery_info": map[string]int{"max_retries": 0, "current_retry": 0},
		"trigger":       map[string]string{"name": trigger}, "table": map[string]string{"schema": schema, "name": table},
	})
	return b
}

// hostileRoutes lists every route the metadata makes Hasura call: each action, each event trigger
// and each remote schema, with a well-formed body carrying a forged admin session.
func hostileRoutes(t *testing.T, s *stack, w *hostileWorld) []hostileRoute {
	t.Helper()
	base := s.m.HTTP.URL()
	resolve := func(u string) string {
		return regexp.MustCompile(`\{\{([A-Z_]+)\}\}`).ReplaceAllStringFunc(u, func(v string) string { return s.hasura.Env[v[2:len(v)-2]] })
	}
	bases := w.bases()
	var routes []hostileRoute
	for _, a := range s.hasura.Meta.ListActions() {
		in := bases[a.Name].input
		if a.Name == "createTenant" { // one that would succeed: see the control below
			in = map[string]any{"name": "Forged", "slug": "forged-" + w.a[:8]}
		}
		body, _ := json.Marshal(map[string]any{
			"action": map[string]string{"name": a.Name}, "input": in, "request_query": "mutation { " + a.Name + " }",
			"session_variables": map[string]string{"x-hasura-role": "admin", "x-hasura-user-id": w.owner},
		})
		routes = append(routes, hostileRoute{"action " + a.Name, base + a.HandlerPath, body})
	}
	for _, tr := range s.hasura.Meta.ListEventTriggers() {
		u := base + tr.WebhookPath
		if tr.WebhookFromEnv != "" {
			u = s.hasura.Env[tr.WebhookFromEnv]
		}
		row := s.row(t, tr.Schema+"."+tr.Table, "true LIMIT 1")
		routes = append(routes, hostileRoute{"event " + tr.Name, u, hostileEvent(tr.Name, tr.Schema, tr.Table, "0f4a4a46-7b2f-4f55-9d7e-1a2b3c4d5e6f", row)})
	}
	for _, rs := range s.hasura.Meta.RemoteSchemas {
		u := resolve(rs.URL)
		if rs.URLFromEnv != "" {
			u = s.hasura.Env[rs.URLFromEnv]
		}
		routes = append(routes, hostileRoute{"remote schema " + rs.Name, u, []byte(`{"query":"{ saasMetrics { tenantsTotal usersTotal } }"}`)})
	}
	if len(routes) < 18 {
		t.Fatalf("only %d routes in the metadata", len(routes))
	}
	return routes
}

// TestHostileSecret calls every route Hasura calls without the shared secret, or with a wrong one,
// with well-formed bodies and forged admin sessions (in the payload and as X-Hasura-* headers).
func TestHostileSecret(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	w := newHostileWorld(t, s)
	db := newHostileDB(t, s)
	forged := []string{"Content-Type", "application/json", "X-Hasura-Role", "admin", "X-Hasura-User-Id", w.owner,
		"X-Hasura-Admin-Secret", testSecret}
	secrets := []struct {
		name    string
		headers []string
	}{
		{"no secret", nil},
		{"empty secret", []string{"X-Tenantkit-Secret", ""}},
		{"wrong secret", []string{"X-Tenantkit-Secret", "wrong-secret-0123456789"}},
		{"secret with a character more", []string{"X-Tenantkit-Secret", testSecret + "x"}},
		{"secret with a character less", []string{"X-Tenantkit-Secret", testSecret[:len(testSecret)-1]}},
		{"secret in upper case", []string{"X-Tenantkit-Secret", strings.ToUpper(testSecret)}},
		{"secret as a bearer token", []string{"Authorization", "Bearer " + testSecret}},
		{"secret in another header", []string{"X-Tenantkit-Secret-Key", testSecret}},
		{"wrong secret before the right one", []string{"X-Tenantkit-Secret", "wrong", "X-Tenantkit-Secret", testSecret}},
	}
	routes := hostileRoutes(t, s, w)
	for _, r := range routes {
		for _, sec := range secrets {
			t.Run(r.name+"/"+sec.name, func(t *testing.T) {
				hostileSend(t, r.url, bytes.NewReader(r.body), append(slices.Clone(forged), sec.headers...)...).hasuraError(t, http.StatusUnauthorized, "unauthorized")
				db.unchanged(t)
			})
		}
		t.Run(r.name+"/secret in the query string", func(t *testing.T) {
			hostileSend(t, r.url+"?X-Tenantkit-Secret="+url.QueryEscape(testSecret), bytes.NewReader(r.body), forged...).hasuraError(t, http.StatusUnauthorized, "unauthorized")
			db.unchanged(t)
		})
	}

	// Control: the same forged createTenant, with the secret, is served — so the refusals above were
	// the secret's doing, not the payload's.
	for _, r := range routes {
		if r.name == "action createTenant" {
			res := hostileSend(t, r.url, bytes.NewReader(r.body), append(slices.Clone(forged), "X-Tenantkit-Secret", testSecret)...)
			if res.status != http.StatusOK || s.count(t, `SELECT count(*) FROM tenants WHERE slug = $1`, "forged-"+w.a[:8]) != 1 {
				t.Errorf("the forged createTenant with the secret: %d %s, want it served", res.status, res.body)
			}
		}
	}
}

// TestHostileBodies: oversized, malformed and mistyped bodies on every kind of route, and names
// that do not exist.
func TestHostileBodies(t *testing.T) {
	t.Parallel()
	s := newStack(t, withStripe(t)...)
	w := newHostileWorld(t, s)
	db := newHostileDB(t, s)
	base := s.m.HTTP.URL()
	secret := []string{"Content-Type", "application/json", "X-Tenantkit-Secret", testSecret}
	actionBody := func(name string, input any) string {
		b, _ := json.Marshal(map[string]any{"action": map[string]string{"name": name}, "input": input, "session_variables": session(w.stranger)})
		return string(b)
	}
	tenantRow := s.row(t, "tenants", "id = $1", w.b)
	eventID := "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
	eventBody := string(hostileEvent("tenant_created", "public", "tenants", eventID, tenantRow))
	signed := func(payload string) []string {
		p := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte(payload), Secret: testWebhookSecret, Timestamp: time.Now()})
		return []string{"Content-Type", "application/json", "Stripe-Signature", p.Header}
	}
	stripeBody := func(id string) string {
		b, _ := json.Marshal(map[string]any{"id": id, "object": "event", "api_version": "2023-10-16", "created": time.Now().Unix(),
			"type": "customer.subscription.updated", "livemode": false, "pending_webhooks": 1,
			"data": map[string]any{"object": stripetest.SubscriptionObject(w.a, w.plan, "active", time.Now().Unix())}})
		return string(b)
	}
	healthy := func(t *testing.T) {
		t.Helper()
		res, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("readyz after the request: %v", err)
		}
		res.Body.Close()
		if r := hostileSend(t, base+"/graphql", strings.NewReader(`{"query":"{ plans { key } }"}`), secret...); res.StatusCode != http.StatusOK || r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"starter"`)) {
			t.Errorf("the next calls: readyz %d, plans %d %s", res.StatusCode, r.status, truncated(r.body))
		}
	}

	t.Run("bodies over 1 MiB", func(t *testing.T) {
		big := strings.Repeat("a", hostileMB)
		pad := strings.Repeat(" ", hostileMB)
		type route struct {
			name, url string
			headers   []string
			inside    string // 10 MB inside a JSON value
			padded    string // a well-formed body, then 10 MB of white space
			check     func(t *testing.T, r hostileReply)
		}
		hasura413 := func(t *testing.T, r hostileReply) {
			t.Helper()
			r.hasuraError(t, http.StatusRequestEntityTooLarge, "invalid")
		}
		routes := []route{
			{"action", base + "/actions/createTenant", secret,
				actionBody("createTenant", map[string]any{"name": big, "slug": "big-body"}),
				actionBody("createTenant", map[string]any{"name": "Padded", "slug": "padded-body"}) + pad, hasura413},
			{"event", base + "/events/tenant_created", secret,
				string(hostileEvent("tenant_created", "public", "tenants", eventID, map[string]any{"id": w.b, "name": big})),
				eventBody + pad, hasura413},
			{"remote schema", base + "/graphql", secret,
				`{"query":"{ plans { key } }","variables":{"x":"` + big + `"}}`,
				`{"query":"{ plans { key } }"}` + pad, hasura413},
			{"stripe webhook", base + "/webhooks/stripe", signed(stripeBody("evt_big_" + w.a[:8])),
				`{"id":"evt_big","data":{"object":{"x":"` + big + `"}}}`,
				stripeBody("evt_pad_"+w.a[:8]) + pad,
				func(t *testing.T, r hostileReply) {
					t.Helper()
					if r.status != http.StatusRequestEntityTooLarge || !bytes.Contains(r.body, []byte(`"status"`)) {
						t.Errorf("got %d %s, want 413 {status}", r.status, truncated(r.body))
					}
				}},
		}
		for _, rt := range routes {
			for _, c := range []struct {
				name string
				body func() io.Reader
			}{
				{"10 MB inside a value", func() io.Reader { return strings.NewReader(rt.inside) }},
				{"a well-formed body padded to 10 MB", func() io.Reader { return strings.NewReader(rt.padded) }},
				{"10 MB streamed without a length", func() io.Reader { return io.MultiReader(strings.NewReader(rt.inside)) }},
			} {
				t.Run(rt.name+"/"+c.name, func(t *testing.T) {
					rt.check(t, hostileSend(t, rt.url, c.body(), rt.headers...))
					db.unchanged(t)
					healthy(t)
				})
			}
		}
		for _, path := range []string{"/actions/createTenant", "/events/tenant_created", "/graphql"} {
			t.Run(path+"/10 MB without the secret", func(t *testing.T) {
				hostileSend(t, base+path, strings.NewReader(big), "Content-Type", "application/json").hasuraError(t, http.StatusUnauthorized, "unauthorized")
				db.unchanged(t)
				healthy(t)
			})
		}
		t.Run("exactly 1 MiB is served, one byte more is not", func(t *testing.T) {
			q := `{"query":"{ plans { key } }"}`
			exact := q + strings.Repeat(" ", 1<<20-len(q))
			if r := hostileSend(t, base+"/graphql", strings.NewReader(exact), secret...); r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"starter"`)) {
				t.Errorf("1 MiB: %d %s", r.status, truncated(r.body))
			}
			hostileSend(t, base+"/graphql", strings.NewReader(exact+" "), secret...).hasuraError(t, http.StatusRequestEntityTooLarge, "invalid")
			db.unchanged(t)
		})
		// A normal action right after all that.
		hostileAct(t, s, "createTenant", map[string]any{"name": "After", "slug": w.aSlug}, session(w.stranger)).refused(t, "slug_taken")
		db.unchanged(t)
	})

	t.Run("malformed actions", func(t *testing.T) {
		u := base + "/actions/createTenant"
		good := map[string]any{"name": "Fine", "slug": "fine-" + w.a[:8]}
		for _, c := range []malformedCase{
			{"not JSON", "", "", `{"action":`, "invalid"},
			{"an array", "", "", `[{"action":{"name":"createTenant"}}]`, "invalid"},
			{"a string", "", "", `"createTenant"`, "invalid"},
			{"null", "", "", `null`, "invalid"},
			{"empty", "", "", ``, "invalid"},
			{"form-encoded", "", "application/x-www-form-urlencoded", `action=createTenant&name=Fine&slug=fine`, "invalid"},
			{"multipart", "", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nFine\r\n--x--\r\n", "invalid"},
			{"XML", "", "application/xml", `<action name="createTenant"/>`, "invalid"},
			{"input an array", "", "", actionBody("createTenant", []any{good}), "invalid"},
			{"input a string", "", "", actionBody("createTenant", "name=Fine"), "invalid"},
			{"input of the wrong types", "", "", actionBody("createTenant", map[string]any{"name": 5, "slug": true}), "invalid"},
			{"an undeclared input field", "", "", actionBody("createTenant", map[string]any{"name": "Fine", "slug": "fine-" + w.a[:8], "ownerId": w.owner}), "invalid"},
			{"session variables an array", "", "", `{"action":{"name":"createTenant"},"input":{"name":"Fine","slug":"fine-x"},"session_variables":["x-hasura-user-id"]}`, "invalid"},
			{"a session variable not a string", "", "", `{"action":{"name":"createTenant"},"input":{"name":"Fine","slug":"fine-x"},"session_variables":{"x-hasura-user-id":5}}`, "invalid"},
			{"a payload naming another action", "", "", actionBody("removeMember", map[string]any{"tenantId": w.a, "userId": w.member}), "invalid"},
			{"unknown action", "/actions/dropTables", "", actionBody("dropTables", good), "not_found"},
			{"unknown action named with SQL", "/actions/" + url.PathEscape("x'; DROP TABLE tenants; --"), "", actionBody("x'; DROP TABLE tenants; --", good), "not_found"},
		} {
			t.Run(c.name, func(t *testing.T) { c.send(t, base, u, db) })
		}
	})

	t.Run("malformed events", func(t *testing.T) {
		u := base + "/events/tenant_created"
		invitation := s.row(t, "tenant_invitations", "id = $1", w.pending)
		sqlRow := maps.Clone(invitation)
		sqlRow["id"], sqlRow["tenant_id"] = "'; DROP TABLE tenant_invitations; --", "' OR '1'='1"
		nulRow := maps.Clone(invitation)
		nulRow["tenant_id"] = w.a + "\x00"
		for _, c := range []malformedCase{
			{"not JSON", "", "", `{"id":`, "invalid"},
			{"an array", "", "", `[` + eventBody + `]`, "invalid"},
			{"null", "", "", `null`, "invalid"},
			{"empty", "", "", ``, "invalid"},
			{"form-encoded", "", "application/x-www-form-urlencoded", `id=` + eventID + `&trigger=tenant_created`, "invalid"},
			{"an id that is not a UUID", "", "", string(hostileEvent("tenant_created", "public", "tenants", "'; DROP TABLE tenants; --", tenantRow)), "invalid"},
			{"another trigger's name", "", "", string(hostileEvent("invitation_email", "public", "tenants", eventID, tenantRow)), "invalid"},
			{"another table", "", "", string(hostileEvent("tenant_created", "public", "tenant_users", eventID, tenantRow)), "invalid"},
			{"no new row", "", "", string(hostileEvent("tenant_created", "public", "tenants", eventID, nil)), "invalid"},
			{"a new row whose id is SQL", "", "", string(hostileEvent("tenant_created", "public", "tenants", eventID, map[string]any{"id": "'; DROP TABLE tenants; --"})), "invalid"},
			{"an invitation row whose ids are SQL", "/events/invitation_email", "", string(hostileEvent("invitation_email", "public", "tenant_invitations", eventID, sqlRow)), "invalid"},
			{"an invitation row with a NUL in its tenant id", "/events/invitation_email", "", string(hostileEvent("invitation_email", "public", "tenant_invitations", eventID, nulRow)), "invalid"},
			{"unknown trigger", "/events/drop_tables", "", string(hostileEvent("drop_tables", "public", "tenants", eventID, tenantRow)), "not_found"},
		} {
			t.Run(c.name, func(t *testing.T) { c.send(t, base, u, db) })
		}
	})

	t.Run("malformed remote-schema requests", func(t *testing.T) {
		u := base + "/graphql"
		for _, c := range []struct {
			name, contentType, body string
			status                  int
			code                    string
		}{
			{"not JSON", "application/json", `{"query":`, 400, "invalid"},
			{"an array", "application/json", `[{"query":"{ plans { key } }"}]`, 400, "invalid"},
			{"a query that is not a string", "application/json", `{"query":{"plans":"key"}}`, 400, "invalid"},
			{"plain text", "text/plain", `{"query":"{ plans { key } }"}`, 400, "invalid"},
			{"form-encoded", "application/x-www-form-urlencoded", `query=%7B+plans+%7B+key+%7D+%7D`, 400, "invalid"},
			{"no content type", "", `{"query":"{ plans { key } }"}`, 400, "invalid"},
			{"a query that does not parse", "application/json", `{"query":"{ plans { key "}`, 422, "GRAPHQL_PARSE_FAILED"},
			{"SQL as a tenant id", "application/json", `{"query":"{ myPermissions(tenantId: \"'; DROP TABLE tenants; --\") { role } }"}`, 200, "invalid"},
			{"a NUL in a tenant id", "application/json", `{"query":"query($t: ID!) { auditLog(tenantId: $t, limit: 5) { action } }","variables":{"t":"\u0000"}}`, 200, "invalid"},
			{"an out-of-range limit", "application/json", `{"query":"query($t: ID!) { auditLog(tenantId: $t, limit: 100000) { action } }","variables":{"t":"` + w.a + `"}}`, 200, "invalid"},
		} {
			t.Run(c.name, func(t *testing.T) {
				headers := []string{"X-Tenantkit-Secret", testSecret, "X-Hasura-Role", "user", "X-Hasura-User-Id", w.owner}
				if c.contentType != "" {
					headers = append(headers, "Content-Type", c.contentType)
				}
				hostileSend(t, u, strings.NewReader(c.body), headers...).graphqlError(t, c.status, c.code)
				db.unchanged(t)
			})
		}
	})

	t.Run("malformed Stripe webhooks", func(t *testing.T) {
		u := base + "/webhooks/stripe"
		evt := stripeBody("evt_hostile_" + w.a[:8])
		for _, c := range []struct {
			name    string
			body    string
			headers []string
		}{
			{"unsigned", evt, []string{"Content-Type", "application/json"}},
			{"signed with another secret", evt, func() []string {
				p := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte(evt), Secret: "whsec_other", Timestamp: time.Now()})
				return []string{"Stripe-Signature", p.Header}
			}()},
			{"the signature of another body", evt, signed(stripeBody("evt_other_" + w.a[:8]))},
			{"a signature an hour old", evt, func() []string {
				p := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte(evt), Secret: testWebhookSecret, Timestamp: time.Now().Add(-time.Hour)})
				return []string{"Stripe-Signature", p.Header}
			}()},
			{"signed, not JSON", `{"id":`, signed(`{"id":`)},
			{"signed, an array", `[` + evt + `]`, signed(`[` + evt + `]`)},
			{"signed, of another API version", strings.Replace(evt, "2023-10-16", "2022-11-15", 1), signed(strings.Replace(evt, "2023-10-16", "2022-11-15", 1))},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := hostileSend(t, u, strings.NewReader(c.body), c.headers...)
				var body struct{ Status string }
				if err := json.Unmarshal(r.body, &body); err != nil || r.status != http.StatusBadRequest || body.Status == "" {
					t.Errorf("got %d %s, want 400 {status}", r.status, truncated(r.body))
				}
				db.unchanged(t)
			})
		}
	})
}

// malformedCase is a body the route must refuse with code: sent to path (default: the route under
// test) with contentType (default JSON) and the secret.
type malformedCase struct {
	name, path, contentType, body, code string
}

func (c malformedCase) send(t *testing.T, base, route string, db *hostileDB) {
	t.Helper()
	target, ct := route, "application/json"
	if c.path != "" {
		target = base + c.path
	}
	if c.contentType != "" {
		ct = c.contentType
	}
	hostileSend(t, target, strings.NewReader(c.body), "Content-Type", ct, "X-Tenantkit-Secret", testSecret).hasuraError(t, hostileStatus[c.code], c.code)
	db.unchanged(t)
}
